"""The cache folder: where it is, and how its files are named (by what made them)."""

from __future__ import annotations

import hashlib
from pathlib import Path

from harness import cache


def test_root_is_the_override_then_harness_cache_then_the_home_default(monkeypatch, tmp_path):
    monkeypatch.delenv("HARNESS_CACHE", raising=False)
    assert cache.root() == Path.home() / ".cache" / "audio-harness"
    monkeypatch.setenv("HARNESS_CACHE", str(tmp_path / "env"))
    assert cache.root() == tmp_path / "env"
    assert cache.root("") == tmp_path / "env"  # an empty data.cache means "not set"
    assert cache.root(tmp_path / "cfg") == tmp_path / "cfg"


def test_keyed_names_a_file_by_the_sha256_of_its_json_key(tmp_path):
    digest = hashlib.sha256(b'[7, 48, 0.2, 1.0]').hexdigest()[:16]
    assert cache.keyed("rooms", [7, 48, 0.2, 1.0], ".npz", tmp_path) == tmp_path / f"rooms-{digest}.npz"
    assert cache.keyed("rooms", [7, 49, 0.2, 1.0], ".npz", tmp_path) != tmp_path / f"rooms-{digest}.npz"
