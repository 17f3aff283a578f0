"""Training `mrx`: mixtures drawn on the fly from a pool of training sources, the paper's negative
SI-SDR loss (mean over the three sources), Adam with gradient clipping.

Data (disjoint from every evaluation suite): speech from the festival TRAINING_VOICES speaking
training sentences (never an evaluation sentence), music from arrangements rendered with
training seeds, effects from the effects generator with training seeds; `pool` sources of each
class, `pool_s` seconds long, rendered once and cached on disk (float16). A training example
takes a random excerpt of one speech, one music and one effects source (independently drawn, so
the pool's combinations are many), brings each to its class level as the cocktail-fork generator
does (-17 / -24 / -21 LUFS, a class offset of +/-2 LU and an excerpt offset of +/-1 LU) and sums
them. Validation: mixtures made the same way from sources rendered with validation seeds.
"""

from __future__ import annotations

from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np

from harness import cache
from harness.training import OptimiserSpec, Stage, cached_data
from harness.training.losses import neg_si_sdr
from systems.mrx import model as mrx

RATE = 44100
LEVELS = {"speech": -17.0, "music": -24.0, "sfx": -21.0}  # the cocktail-fork generator's (DnR's)
SILENT_RMS = 1e-4


def default_config() -> dict[str, Any]:
    from harness.suites.synth.speech import TRAINING_VOICES

    return {
        "seed": 20261208,
        "batch_size": 6,
        "segment_s": 4.0,
        "lr": 1e-3,
        "decay": 1.0,
        "decay_every": 1000,
        "clip_norm": 5.0,
        "arch": dict(mrx.ARCH_SMALL),
        "steps": {"sisdr": 3000},
        "data": {
            "voices": list(TRAINING_VOICES), "allow_evaluation_voices": False, "texts": 300, "pool": 64,
            "pool_s": 12.0,
            "class_spread_lu": 2.0, "clip_spread_lu": 1.0, "validation_items": 6,
            "validation_s": 6.0, "cache": "",
        },
    }


def _loudness(x: np.ndarray) -> float:
    import pyloudnorm as pyln

    return float(pyln.Meter(RATE).integrated_loudness(x))


class Pool:
    """The training (and validation) sources of one data config, deterministic from the seed."""

    def __init__(self, data: dict[str, Any], seed: int) -> None:
        self.cfg, self.seed = data, seed

    @cached_property
    def texts(self) -> tuple[str, ...]:
        from harness.suites.synth.speech import training_sentences

        return training_sentences(self.seed, int(self.cfg["texts"]))

    def render(self, tag: int, k: int, seconds: float) -> dict[str, np.ndarray]:
        """One source of each class, rendered from seeds [seed, tag, k]."""
        from harness.audio import resample_samples
        from harness.suites.synth import effects, music, speech

        rng = np.random.default_rng([self.seed, tag, k])
        voices = tuple(self.cfg["voices"])
        voice = voices[int(rng.integers(len(voices)))]
        talk, _ = speech.talk(voice, rng, seconds, speech.RATE, sentences=self.texts)
        n = int(round(seconds * RATE))
        sp = resample_samples(talk, speech.RATE, RATE)[:n]
        arr = music.arrangement(rng, seconds)
        mu = np.mean(sum(music.render(arr, seconds, RATE).values()), axis=0)[:n]
        fx, _ = effects.effects_track(rng, seconds, RATE)
        return {"speech": np.pad(sp, (0, n - len(sp))), "music": mu, "sfx": fx[:n]}

    def cache_path(self) -> Path:
        return cache.keyed("mrx-pool", [self.seed, self.cfg["pool"], self.cfg["pool_s"], self.cfg["voices"],
                                        self.cfg["texts"]], ".npz", self.cfg["cache"])

    @cached_property
    def sources(self) -> dict[str, list[np.ndarray]]:
        import os

        path = self.cache_path()
        if path.is_file():
            with np.load(path) as z:
                return {s: [z[f"{s}_{k}"] for k in range(int(self.cfg["pool"]))] for s in mrx.SOURCES}
        out: dict[str, list[np.ndarray]] = {s: [] for s in mrx.SOURCES}
        for k in range(int(self.cfg["pool"])):
            for s, x in self.render(2, k, float(self.cfg["pool_s"])).items():
                out[s].append(x.astype(np.float16))
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp.npz")
        np.savez(tmp, **{f"{s}_{k}": x for s, xs in out.items() for k, x in enumerate(xs)})
        os.replace(tmp, path)
        return out

    def excerpt(self, rng: np.random.Generator, source: str, n: int) -> np.ndarray:
        """An excerpt of `n` samples of a random pool source that is not silent."""
        pool = self.sources[source]
        for _ in range(20):
            x = pool[int(rng.integers(len(pool)))].astype(np.float64)
            a = int(rng.integers(0, max(1, len(x) - n)))
            y = x[a:a + n]
            if np.sqrt(np.mean(y**2)) > SILENT_RMS:
                return y
        return y

    def mix(self, rng: np.random.Generator, parts: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """The parts at their class levels (with the generator's offsets)."""
        out = {}
        for s, x in parts.items():
            level = (LEVELS[s] + rng.uniform(-1, 1) * float(self.cfg["class_spread_lu"])
                     + rng.uniform(-1, 1) * float(self.cfg["clip_spread_lu"]))
            lufs = _loudness(x)
            out[s] = x * 10 ** ((level - lufs) / 20) if np.isfinite(lufs) else x
        return out

    def batch(self, step: int, size: int, n: int) -> tuple[np.ndarray, np.ndarray]:
        rng = np.random.default_rng([self.seed, 3, step])
        mixes, refs = [], []
        for _ in range(size):
            parts = self.mix(rng, {s: self.excerpt(rng, s, n) for s in mrx.SOURCES})
            refs.append(np.stack([parts[s] for s in mrx.SOURCES]))
            mixes.append(sum(parts.values()))
        return np.stack(mixes), np.stack(refs)

    @cached_property
    def validation(self) -> list[dict[str, np.ndarray]]:
        out = []
        for i in range(int(self.cfg["validation_items"])):
            src = self.render(5, i, float(self.cfg["validation_s"]))
            rng = np.random.default_rng([self.seed, 6, i])
            out.append(self.mix(rng, src))
        return out

    def record(self) -> dict[str, Any]:
        from harness.suites.synth.speech import VOICES, voices_record

        return {"rate": RATE, "voices": list(self.cfg["voices"]), "texts": int(self.cfg["texts"]),
                "pool": int(self.cfg["pool"]), "pool_s": float(self.cfg["pool_s"]),
                "seeds": {"pool": [self.seed, 2], "batches": [self.seed, 3], "validation": [self.seed, 5]},
                "levels_lufs": LEVELS, "class_spread_lu": self.cfg["class_spread_lu"],
                "clip_spread_lu": self.cfg["clip_spread_lu"],
                **voices_record(self.cfg["voices"]),
                "disjoint_from_evaluation": "training sentences and seeds"
                                            + ("" if set(self.cfg["voices"]) & set(VOICES) else ", voices")}


class MrxTraining:
    """The Trainable of `mrx` (harness.training.spec)."""

    architecture = "mrx"

    def defaults(self) -> dict[str, Any]:
        return default_config()

    limits = {
        "arch.blstms": "integer [1, inf)", "arch.layers": "integer [1, inf)", "arch.dropout": "[0, 1)",
        "data.texts": "integer [1, inf)", "data.pool": "integer [1, inf)", "data.pool_s": "(0, 600]",
        "data.class_spread_lu": "[0, 20]", "data.clip_spread_lu": "[0, 20]", "data.validation_s": "(0, 600]",
    }

    def check(self, cfg: dict[str, Any]) -> str | None:
        a, d = cfg["arch"], cfg["data"]
        if not a["windows"] or any(int(w) < 64 or int(w) & (int(w) - 1) for w in a["windows"]):
            return f"arch.windows must be powers of two >= 64, not {a['windows']!r}"
        if int(a["hop"]) <= 0 or any(int(w) % int(a["hop"]) for w in a["windows"]):
            return f"arch.hop must divide every window, not {a['hop']!r}"
        if int(a["hidden"]) < 2 or int(a["hidden"]) % 2:
            return f"arch.hidden must be an even number >= 2, not {a['hidden']!r}"
        from harness.suites.synth.speech import voices_problem

        problem = voices_problem(d["voices"], d["allow_evaluation_voices"])
        if problem:
            return problem
        if float(cfg["segment_s"]) <= 0 or float(cfg["segment_s"]) > float(d["pool_s"]):
            return f"segment_s must be in (0, data.pool_s], not {cfg['segment_s']}"
        return None

    def data(self, cfg: dict[str, Any]) -> Pool:
        return cached_data(self, cfg, Pool)

    def build(self, cfg: dict[str, Any]) -> dict[str, Any]:
        return {"mrx": mrx.MRX(cfg["arch"])}

    def optimisers(self, cfg: dict[str, Any]) -> list[OptimiserSpec]:
        return [OptimiserSpec("mrx", ("mrx",), float(cfg["lr"]), decay=float(cfg["decay"]),
                              decay_every=int(cfg["decay_every"]),
                              clip_norm=float(cfg["clip_norm"]) or None)]

    def stages(self, cfg: dict[str, Any]) -> list[Stage]:
        return [Stage("sisdr", int(cfg["steps"]["sisdr"]), ("mrx",))]

    def batch(self, cfg: dict[str, Any], step: int, device: str) -> Any:
        import torch

        n = int(round(float(cfg["segment_s"]) * RATE))
        x, refs = self.data(cfg).batch(step, int(cfg["batch_size"]), n)
        t = dict(dtype=torch.float32, device=device)
        return torch.tensor(x, **t), torch.tensor(refs, **t)

    def loss(self, cfg: dict[str, Any], stage: str, optimiser: str, modules: dict[str, Any],
             batch: Any, cache: dict[str, Any]) -> tuple[Any, dict[str, float]]:
        x, refs = batch
        out = modules["mrx"](x)
        parts = {s: neg_si_sdr(out[s], refs[:, i]) for i, s in enumerate(mrx.SOURCES)}
        total = sum(parts.values()) / len(parts)
        return total, {f"si_sdr_{s}": -float(v.detach()) for s, v in parts.items()}

    def validate(self, cfg: dict[str, Any], modules: dict[str, Any], device: str) -> dict[str, float]:
        from harness.metrics.snr import si_sdr_db

        model = modules["mrx"]
        rows = {s: [] for s in mrx.SOURCES}
        for parts in self.data(cfg).validation:
            mix = sum(parts.values())
            est = separate(model, mix, device)
            for s in mrx.SOURCES:
                rows[s].append(si_sdr_db(est[s], parts[s]) - si_sdr_db(mix, parts[s]))
        return {f"si_sdri_{s}": float(np.mean(v)) for s, v in rows.items()}

    def export(self, modules: dict[str, Any]) -> dict[str, Any]:
        return dict(modules["mrx"].state_dict())

    def data_record(self, cfg: dict[str, Any]) -> dict[str, Any]:
        return self.data(cfg).record()


def separate(model: Any, x: np.ndarray, device: str = "cpu", chunk_s: float = 30.0) -> dict[str, np.ndarray]:
    """The model's three sources of a mono mixture (chunks of `chunk_s` seconds, no overlap:
    the BLSTM sees each chunk whole)."""
    import torch

    n = len(x)
    step = int(chunk_s * RATE)
    out = {s: np.zeros(n) for s in mrx.SOURCES}
    with torch.inference_mode():
        for a in range(0, n, step):
            seg = torch.as_tensor(x[a:a + step], dtype=torch.float32, device=device)[None]
            y = model(seg)
            for s in mrx.SOURCES:
                out[s][a:a + seg.shape[-1]] = y[s][0].double().cpu().numpy()
    return out
