"""Synthetic suite material: offline speech and music synthesis, degradations, generators."""
