"""Training the Spleeter-style separator (`harness train remix/spleeter`): L1 on masked
magnitudes, summed over the four stems (Spleeter's loss), Adam.

Data (disjoint from every evaluation suite): songs of the music-remix generator's styles and
instruments, drawn with training seeds ([seed, 2, k]; the suites draw theirs from
item_rng(suite seed, "music-remix", i)), rendered once with fluidsynth and cached on disk
(float16). An example is `frames` STFT frames of each stem: with probability `same_song` all
four from one song at one offset, otherwise each stem from its own song and offset (the
"remixing" augmentation of Spleeter and Open-Unmix training), each stem with a random gain, the
sum brought to a random RMS level. Validation: whole songs rendered with validation seeds
([seed, 5, i]), separated as a run separates, SDR per stem.
"""

from __future__ import annotations

from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np

from harness import cache
from harness.training import OptimiserSpec, Stage, cached_data
from systems.remix import spleeter as sp

SILENT_RMS = 1e-4


def default_config() -> dict[str, Any]:
    return {
        "seed": 20261205,
        "batch_size": 8,
        "lr": 1e-3,
        "decay": 0.5,
        "decay_every": 1500,
        "clip_norm": 5.0,
        "arch": dict(sp.ARCH_SMALL),
        "steps": {"l1": 3000},
        "data": {"pool": 96, "pool_s": 12.0, "same_song": 0.5, "stem_gain_db": 3.0,
                 "level_dbfs": [-32.0, -16.0], "validation_items": 4, "validation_s": 8.0,
                 "cache": ""},
    }


class Pool:
    """The training (and validation) songs of one data config, deterministic from the seed."""

    def __init__(self, data: dict[str, Any], seed: int) -> None:
        self.cfg, self.seed = data, seed

    @staticmethod
    def render(seed: list[int], seconds: float) -> dict[str, np.ndarray]:
        from harness.suites.synth import music

        rng = np.random.default_rng(seed)
        return music.render(music.arrangement(rng, seconds), seconds, sp.RATE)

    def cache_path(self) -> Path:
        key = [self.seed, self.cfg["pool"], self.cfg["pool_s"], "spleeter-pool/1"]
        return cache.keyed("spleeter-pool", key, ".npz", self.cfg["cache"])

    @cached_property
    def songs(self) -> list[dict[str, np.ndarray]]:
        import os

        path, n = self.cache_path(), int(self.cfg["pool"])
        if path.is_file():
            with np.load(path) as z:
                return [{s: z[f"{s}_{k}"] for s in sp.STEMS} for k in range(n)]
        out = [{s: x.astype(np.float16) for s, x in self.render([self.seed, 2, k],
                                                                 float(self.cfg["pool_s"])).items()}
               for k in range(n)]
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp.npz")
        np.savez(tmp, **{f"{s}_{k}": x for k, song in enumerate(out) for s, x in song.items()})
        os.replace(tmp, path)
        return out

    def example(self, rng: np.random.Generator, n: int) -> dict[str, np.ndarray]:
        songs = self.songs
        length = songs[0][sp.STEMS[0]].shape[-1]
        k, a = int(rng.integers(len(songs))), int(rng.integers(0, length - n))
        same = rng.random() < float(self.cfg["same_song"])
        out = {}
        for s in sp.STEMS:
            if not same:
                k, a = int(rng.integers(len(songs))), int(rng.integers(0, length - n))
            gain = 10 ** (rng.uniform(-1, 1) * float(self.cfg["stem_gain_db"]) / 20)
            out[s] = songs[k][s][:, a:a + n].astype(np.float64) * gain
        mix = sum(out.values())
        rms = float(np.sqrt(np.mean(mix**2)))
        lo, hi = self.cfg["level_dbfs"]
        g = 10 ** (rng.uniform(lo, hi) / 20) / rms if rms > SILENT_RMS else 1.0
        return {s: x * g for s, x in out.items()}

    def batch(self, step: int, size: int, n: int) -> np.ndarray:
        """(size, stems, channels, n) stems; the mixture is their sum."""
        rng = np.random.default_rng([self.seed, 3, step])
        return np.stack([np.stack([e[s] for s in sp.STEMS]) for e in
                         (self.example(rng, n) for _ in range(size))])

    @cached_property
    def validation(self) -> list[dict[str, np.ndarray]]:
        s = float(self.cfg["validation_s"])
        return [self.render([self.seed, 5, i], s) for i in range(int(self.cfg["validation_items"]))]

    def record(self) -> dict[str, Any]:
        from harness.suites.synth import music

        return {"rate": sp.RATE, "pool": int(self.cfg["pool"]), "pool_s": float(self.cfg["pool_s"]),
                "styles": list(music.STYLES), "same_song": self.cfg["same_song"],
                "stem_gain_db": self.cfg["stem_gain_db"], "level_dbfs": list(self.cfg["level_dbfs"]),
                "seeds": {"pool": [self.seed, 2], "batches": [self.seed, 3], "validation": [self.seed, 5]},
                "disjoint_from_evaluation": "training seeds: no evaluation song's arrangement; the "
                                            "styles, instruments and soundfont are the generator's"}


def sdr_db(est: np.ndarray, ref: np.ndarray) -> float:
    """Plain SDR 10 log10(|s|^2 / |s - s_hat|^2) over the whole signal."""
    return float(10 * np.log10((np.sum(ref**2) + 1e-12) / (np.sum((ref - est) ** 2) + 1e-12)))


class SpleeterTraining:
    """The Trainable of the remix pipeline's `spleeter` separator (harness.training.spec)."""

    architecture = "spleeter"

    def defaults(self) -> dict[str, Any]:
        return default_config()

    limits = {
        "data.pool": "integer [1, inf)", "data.pool_s": "(0, 600]", "data.same_song": "[0, 1]",
        "data.stem_gain_db": "[0, 40]", "data.level_dbfs": "[-80, 0]", "data.validation_s": "(0, 600]",
    }

    def check(self, cfg: dict[str, Any]) -> str | None:
        a, d = cfg["arch"], cfg["data"]
        if len(d["level_dbfs"]) != 2 or d["level_dbfs"][0] > d["level_dbfs"][1]:
            return f"data.level_dbfs must be [lo, hi] with lo <= hi, not {d['level_dbfs']}"
        if sorted(a["stems"]) != sorted(sp.STEMS):
            return f"arch.stems must be {list(sp.STEMS)}, not {a['stems']!r}"
        if int(a["channels"]) not in (1, 2):
            return f"arch.channels must be 1 or 2, not {a['channels']!r}"
        if int(a["frame"]) & (int(a["frame"]) - 1) or int(a["hop"]) <= 0 or int(a["frame"]) % int(a["hop"]):
            return f"arch.frame must be a power of two that arch.hop divides, not {a['frame']}/{a['hop']}"
        m = 2 ** len(a["filters"])
        if int(a["bins"]) % m or int(a["frames"]) % m or int(a["bins"]) > int(a["frame"]) // 2:
            return (f"arch.bins and arch.frames must be multiples of {m} (2^layers) and bins at most "
                    f"frame/2, not {a['bins']}/{a['frames']}")
        if not a["filters"] or any(int(f) < 1 for f in a["filters"]):
            return f"arch.filters must be positive channel counts, not {a['filters']!r}"
        n = (int(a["frames"]) - 1) * int(a["hop"])
        if n >= float(d["pool_s"]) * sp.RATE:
            return f"arch.frames x arch.hop ({n} samples) must be shorter than data.pool_s"
        if len(d["level_dbfs"]) != 2 or d["level_dbfs"][0] > d["level_dbfs"][1]:
            return f"data.level_dbfs must be [low, high], not {d['level_dbfs']!r}"
        return None

    def data(self, cfg: dict[str, Any]) -> Pool:
        return cached_data(self, cfg, Pool)

    def build(self, cfg: dict[str, Any]) -> dict[str, Any]:
        return {"spleeter": sp.Spleeter(cfg["arch"])}

    def optimisers(self, cfg: dict[str, Any]) -> list[OptimiserSpec]:
        return [OptimiserSpec("spleeter", ("spleeter",), float(cfg["lr"]), decay=float(cfg["decay"]),
                              decay_every=int(cfg["decay_every"]),
                              clip_norm=float(cfg["clip_norm"]) or None)]

    def stages(self, cfg: dict[str, Any]) -> list[Stage]:
        return [Stage("l1", int(cfg["steps"]["l1"]), ("spleeter",))]

    def batch(self, cfg: dict[str, Any], step: int, device: str) -> Any:
        import torch

        a = cfg["arch"]
        n = (int(a["frames"]) - 1) * int(a["hop"])  # centred frames: exactly `frames` of them
        stems = self.data(cfg).batch(step, int(cfg["batch_size"]), n)
        if int(a["channels"]) == 1:
            stems = stems.mean(axis=2, keepdims=True)
        t = torch.tensor(stems, dtype=torch.float32, device=device)
        b, s, c, _ = t.shape
        spec = sp.stft(t.reshape(b * s, c, n), a)[..., : int(a["bins"])].abs()
        spec = spec.reshape(b, s, c, *spec.shape[-2:])
        mix = sp.stft(t.sum(dim=1), a)[..., : int(a["bins"])].abs()
        return mix, spec

    def loss(self, cfg: dict[str, Any], stage: str, optimiser: str, modules: dict[str, Any],
             batch: Any, cache: dict[str, Any]) -> tuple[Any, dict[str, float]]:
        mix, refs = batch
        est = modules["spleeter"](mix)
        parts = {s: (est[s] - refs[:, i]).abs().mean() for i, s in enumerate(sp.STEMS)}
        total = sum(parts.values())
        return total, {f"l1_{s}": float(v.detach()) for s, v in parts.items()}

    def validate(self, cfg: dict[str, Any], modules: dict[str, Any], device: str) -> dict[str, float]:
        model = modules["spleeter"]
        rows: dict[str, list[float]] = {s: [] for s in sp.STEMS}
        for song in self.data(cfg).validation:
            mix = sum(song.values())
            if int(cfg["arch"]["channels"]) == 1:
                mix = mix.mean(axis=0, keepdims=True)
            est = sp.separate(model, mix, device)
            for s in sp.STEMS:
                ref = song[s] if int(cfg["arch"]["channels"]) == 2 else song[s].mean(axis=0, keepdims=True)
                rows[s].append(sdr_db(est[s], ref))
        out = {f"sdr_{s}": float(np.mean(v)) for s, v in rows.items()}
        out["sdr_mean"] = float(np.mean(list(out.values())))
        return out

    def export(self, modules: dict[str, Any]) -> dict[str, Any]:
        return dict(modules["spleeter"].state_dict())

    def data_record(self, cfg: dict[str, Any]) -> dict[str, Any]:
        return self.data(cfg).record()
