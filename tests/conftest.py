"""Shared fixtures: synthetic signals with known properties, and a quick way to run the CLI."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

# Several xdist workers share the cores: each worker, and every process it starts (the CLI runs,
# their system and scoring processes), computes on one thread. Torch's and BLAS's thread pools
# sized to every core, beside another worker doing the same, spin and wait on each other (a
# training step measured 6 times slower so). Set before numpy, torch or numba is imported.
if int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1")) > 1:
    for _var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMBA_NUM_THREADS"):
        os.environ.setdefault(_var, "1")

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


def jobs_stored(db: Path) -> int:
    """Jobs committed in a results store that a run may be writing (0 while it cannot be read)."""
    import sqlite3

    if not db.exists():
        return 0
    try:
        con = sqlite3.connect(db, timeout=1)
        n = con.execute("SELECT COUNT(*) FROM jobs").fetchone()[0]
        con.close()
        return n
    except sqlite3.OperationalError:
        return 0


def descendants(pid: int) -> set[int]:
    """Every process below `pid` (children, grandchildren, ...), from /proc."""
    out, todo = set(), [pid]
    while todo:
        p = todo.pop()
        try:  # a process that exits while it is read is simply gone (ProcessLookupError)
            tasks = list(Path(f"/proc/{p}/task").glob("*"))
        except OSError:
            continue
        for task in tasks:
            try:
                kids = [int(c) for c in (task / "children").read_text().split()]
            except OSError:
                continue
            for k in kids:
                if k not in out:
                    out.add(k)
                    todo.append(k)
    return out


def assert_anchors_ordered(store_folder: Path) -> None:
    """The latest run in a store scored everything ok and `oracle` beats `unprocessed` on the
    mean of every metric, in that metric's direction (LSD: lower is better)."""
    from harness.metrics import get_metric
    from harness.store import Store

    store = Store(store_folder)
    try:
        df = store.scores(store.resolve("latest"))
    finally:
        store.close()
    assert (df.status == "ok").all(), df[df.status != "ok"].reason.unique()
    means = df.groupby(["system", "metric"]).value.mean().unstack()
    for metric in means.columns:
        better = means.loc["oracle", metric] - means.loc["unprocessed", metric]
        assert better * (1 if get_metric(metric).higher_is_better else -1) > 0, (metric, means)
