"""Summaries and reports of runs."""
