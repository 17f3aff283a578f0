"""Shared fixtures: synthetic signals with known properties, and a quick way to run the CLI."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from harness.suites import resolve_suite

ROOT = Path(__file__).resolve().parent.parent


def pytest_collection_modifyitems(config, items):
    try:
        import torch

        has_gpu = torch.cuda.is_available()
    except ImportError:
        has_gpu = False
    if not has_gpu:
        skip = pytest.mark.skip(reason="needs a CUDA device")
        for item in items:
            if "gpu" in item.keywords:
                item.add_marker(skip)


@pytest.fixture(scope="session")
def speech():
    """A real utterance (clean reference of the speech quick suite) as float64 at 16 kHz."""
    item = resolve_suite("speech-enhancement-quick").items[0]
    return item.reference("clean").mono().astype(np.float64)


@pytest.fixture(scope="session")
def music_item():
    return resolve_suite("music-remix-quick").items[0]


def run_cli(*args: str, cwd: Path | None = None, timeout: float = 600) -> subprocess.CompletedProcess:
    """Run `harness ...` in a subprocess (as a user would) and capture its output."""
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    return subprocess.run(
        [sys.executable, "-m", "harness.cli", *args],
        capture_output=True, text=True, cwd=cwd or ROOT, timeout=timeout, env=env,
    )


def assert_anchors_ordered(store_folder: Path) -> None:
    """The latest run in a store scored everything ok and `oracle` beats `unprocessed` on the
    mean of every metric (all of the harness's metrics are higher-is-better)."""
    from harness.store import Store

    store = Store(store_folder)
    try:
        df = store.scores(store.resolve("latest"))
    finally:
        store.close()
    assert (df.status == "ok").all(), df[df.status != "ok"].reason.unique()
    means = df.groupby(["system", "metric"]).value.mean().unstack()
    assert (means.loc["oracle"] > means.loc["unprocessed"]).all(), means
