"""Evaluation and benchmarking harness for audio enhancement and hearing-aid music processing."""

__version__ = "0.1.0"
