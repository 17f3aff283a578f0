"""Audiogram panels shipped with the harness (data) and their loaders."""
