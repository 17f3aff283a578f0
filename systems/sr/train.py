"""Training `unet-sr`: examples drawn on the fly from the bandwidth-extension generator's chain,
the paper's L2 loss, validation per ratio on held-out generated speech.

Data (disjoint from the evaluation suites): voices from TRAINING_VOICES (festival voices of
speakers no suite uses), texts drawn from the suites' vocabulary but never a suite sentence.
Each example: a stretch of a talk (level jittered around -26 LUFS, the suites' level) at
`data.rate` (16 kHz, the bandwidth-extension suites' rate; 32 kHz for the wide-band checkpoint)
-> scipy's decimate by a ratio drawn from `ratios` (Chebyshev I order 8, zero phase, as the
suite generator) -> cubic spline back onto the 16 kHz grid (the generator's own function) -> a
segment cut at a random point; input and target scaled together to input RMS 0.1 (as the system
does at inference).
"""

from __future__ import annotations

from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np

from harness import cache
from harness.training import OptimiserSpec, Stage, cached_data
from harness.training.losses import in_float32
from systems.sr import unet

VALIDATION_OFFSET = 10**9  # validation examples use seeds no training step reaches


def default_config() -> dict[str, Any]:
    from harness.suites.synth.speech import TRAINING_VOICES

    return {
        "seed": 20261205,
        "batch_size": 8,
        "segment": 8192,  # samples per training patch (the paper's)
        "arch": dict(unet.ARCH_SMALL),
        "steps": {"l2": 3000},
        "lr": 3e-4,
        "decay": 1.0,  # learning rate x decay every decay_every steps
        "decay_every": 1000,
        "loss": {"l2": 1.0, "lsd": 0.0},
        "clip_norm": 10.0,
        "data": {
            "voices": list(TRAINING_VOICES), "texts": 120, "ratios": [2, 4, 6],
            "speed": [1.0, 1.0],  # speed perturbation: a factor drawn from [lo, hi] per talk
            "allow_evaluation_voices": False,  # true only for test and diagnostic models
            "level_lufs": -26.0, "level_jitter_db": 6.0, "lead_s": 2.0, "validation_items": 12,
            "rate": 16000,  # the high rate (the wide-band checkpoint: 32000, with 32 kHz voices)
            "source": "speech",  # or "music": arrangements rendered by fluidsynth (training seeds)
            "songs": 48,  # music: the pool of rendered songs (cached on disk)
            "song_s": 20.0,
            "cache": "",  # folder for the song pool ("" = ~/.cache/audio-harness)
        },
    }


class SpeechSR:
    """The training examples of one data config, deterministic from (seed, step, index)."""

    def __init__(self, data: dict[str, Any], seed: int) -> None:
        self.cfg, self.seed = data, seed
        self.rate = int(data["rate"])

    @cached_property
    def texts(self) -> tuple[str, ...]:
        from harness.suites.synth.speech import training_sentences

        return training_sentences(self.seed, int(self.cfg["texts"]))

    def pool_path(self) -> Path:
        return cache.keyed("songs", [self.seed, self.cfg["songs"], self.cfg["song_s"], self.rate], ".npz",
                           self.cfg["cache"])

    @cached_property
    def songs(self) -> list[np.ndarray]:
        """The music pool: `songs` arrangements of `song_s` seconds (seeds [seed, 4, k]), rendered
        once and cached on disk (rendering takes about a second per song)."""
        import os

        from harness.suites.synth.gen_speech import music_excerpt

        path = self.pool_path()
        if path.is_file():
            with np.load(path) as z:
                return [z[k] for k in sorted(z.files, key=int)]
        pool = [music_excerpt(np.random.default_rng([self.seed, 4, k]), float(self.cfg["song_s"]),
                              self.rate)[0].astype(np.float32) for k in range(int(self.cfg["songs"]))]
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp.npz")
        np.savez(tmp, **{str(i): x for i, x in enumerate(pool)})
        os.replace(tmp, path)
        return pool

    def source(self, rng: np.random.Generator, seconds: float) -> np.ndarray:
        """`seconds` of training material at the data's rate: a talk or a stretch of a song."""
        if self.cfg["source"] == "speech":
            return self.talk(rng, seconds)
        from harness.suites.synth import degrade as dg

        song = self.songs[int(rng.integers(len(self.songs)))].astype(np.float64)
        n = int(round(seconds * self.rate))
        a = int(rng.integers(0, max(1, len(song) - n)))
        x = np.pad(song[a:a + n], (0, max(0, n - (len(song) - a))))
        jitter = float(self.cfg["level_jitter_db"])
        level = self.cfg["level_lufs"] + rng.uniform(-jitter, jitter)
        return dg.to_loudness(x, self.rate, level) if np.any(x) else x

    def talk(self, rng: np.random.Generator, seconds: float) -> np.ndarray:
        from harness.suites.synth import degrade as dg
        from harness.suites.synth import speech

        voices = tuple(self.cfg["voices"])
        voice = voices[int(rng.integers(len(voices)))]
        clean = speech.speed_perturbed_talk(voice, rng, seconds, self.rate, self.texts,
                                            tuple(self.cfg["speed"]))
        jitter = float(self.cfg["level_jitter_db"])
        level = self.cfg["level_lufs"] + rng.uniform(-jitter, jitter)
        return dg.to_loudness(clean, self.rate, level)

    def pair(self, clean: np.ndarray, ratio: int) -> np.ndarray:
        """The spline-upsampled low-rate version of `clean`, exactly as the suite generator makes it."""
        from scipy import signal

        from harness.suites.synth.gen_speech import spline_upsample

        low = signal.decimate(clean, ratio, n=8, ftype="iir", zero_phase=True)
        return spline_upsample(low, ratio, len(clean))

    def example(self, rng: np.random.Generator, segment: int) -> tuple[np.ndarray, np.ndarray, int]:
        """(spline input, clean target, ratio), scaled together to input RMS 0.1."""
        ratios = [int(r) for r in self.cfg["ratios"]]
        ratio = ratios[int(rng.integers(len(ratios)))]
        block = int(np.lcm.reduce(ratios))
        lead = int(float(self.cfg["lead_s"]) * self.rate * float(rng.random())) // block * block
        # at least 0.5 s: loudness needs 400 ms blocks (8192 samples at 32 kHz are 0.26 s; at
        # 16 kHz a segment is longer already, so the 16 kHz examples are as they were)
        clean = self.source(rng, max(0.5, (segment + lead + 4 * block) / self.rate))
        n = len(clean) // block * block
        x = self.pair(clean[:n], ratio)
        x, y = x[lead:lead + segment], clean[lead:lead + segment]
        scale = 0.1 / max(float(np.sqrt(np.mean(x ** 2))), 1e-8)
        return x * scale, y * scale, ratio

    def batch(self, step: int, size: int, segment: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        xs, ys, rs = [], [], []
        for i in range(size):
            x, y, r = self.example(np.random.default_rng([self.seed, 3, step, i]), segment)
            xs.append(x)
            ys.append(y)
            rs.append(r)
        return np.stack(xs), np.stack(ys), np.array(rs, dtype=float)

    def validation(self, i: int, ratio: int) -> tuple[np.ndarray, np.ndarray]:
        """Validation item i at `ratio`: 4 s of talk (seeds no training step reaches)."""
        if self.cfg["source"] == "music":  # songs of their own (seeds no pool song has)
            from harness.suites.synth import degrade as dg
            from harness.suites.synth.gen_speech import music_excerpt

            if not hasattr(self, "_validation_songs"):
                self._validation_songs = {}
            if i not in self._validation_songs:
                x, _ = music_excerpt(np.random.default_rng([self.seed, 5, i]), 4.0, self.rate)
                self._validation_songs[i] = dg.to_loudness(x, self.rate, self.cfg["level_lufs"])
            clean = self._validation_songs[i]
        else:
            rng = np.random.default_rng([self.seed, 3, VALIDATION_OFFSET, i])
            clean = self.talk(rng, 4.0)
        n = len(clean) // 12 * 12
        return self.pair(clean[:n], ratio), clean[:n]

    def record(self) -> dict[str, Any]:
        from harness.suites.synth.speech import voices_record

        if self.cfg["source"] == "music":
            return {"rate": self.rate, "source": "music",
                    "generator": "arrangements of harness.suites.synth.music rendered by fluidsynth, "
                                 "down-mixed to mono; bandwidth-extension chain (scipy.signal.decimate, "
                                 "Chebyshev I order 8, zero phase; spline_upsample)",
                    "songs": f"{self.cfg['songs']} x {self.cfg['song_s']} s, seeds [{self.seed}, 4, k]; "
                             f"validation songs [{self.seed}, 5, i]",
                    "ratios": [int(r) for r in self.cfg["ratios"]],
                    "examples": f"seed [{self.seed}, 3, step, index]"}
        return {"rate": self.rate, "source": "speech",
                "generator": "bandwidth-extension chain (scipy.signal.decimate, Chebyshev I order 8, "
                             "zero phase; harness.suites.synth.gen_speech.spline_upsample)",
                "voices": list(self.cfg["voices"]), **voices_record(self.cfg["voices"]),
                "speed_perturbation": list(self.cfg["speed"]),
                "texts": f"{self.cfg['texts']} sentences drawn from the suites' vocabulary with seed "
                         f"[{self.seed}, 1]; no suite sentence",
                "ratios": [int(r) for r in self.cfg["ratios"]],
                "examples": f"seed [{self.seed}, 3, step, index]; validation seed [{self.seed}, 3, "
                            f"{VALIDATION_OFFSET}, index]"}


@in_float32
def lsd_loss(y: Any, target: Any, n_fft: int = 2048, hop: int = 512) -> Any:
    """The LSD metric (harness.metrics.spectral) as a differentiable loss: mean over frames of the
    root mean square over frequencies of the log10-power difference (floor 1e-10); frames taken
    without padding, as the metric's."""
    import torch

    win = torch.hann_window(n_fft, periodic=True, dtype=y.dtype, device=y.device)

    def logp(s: Any) -> Any:
        frames = s.unfold(-1, n_fft, hop) * win
        return torch.log10(torch.fft.rfft(frames, dim=-1).abs() ** 2 + 1e-10)

    d = logp(y.squeeze(1)) - logp(target.squeeze(1))
    return torch.sqrt(torch.mean(d ** 2, dim=-1) + 1e-12).mean()


class UnetSRTraining:
    """The Trainable of `unet-sr` (harness.training.spec)."""

    architecture = "unet-sr"

    def defaults(self) -> dict[str, Any]:
        return default_config()

    limits = {
        "segment": "integer [1, inf)", "arch.filters": "integer [1, inf)", "arch.kernels": "integer [1, inf)",
        "arch.bottleneck": "integer [1, inf)", "arch.bottleneck_kernel": "integer [1, inf)",
        "arch.final_kernel": "integer [1, inf)", "data.texts": "integer [1, inf)",
        "data.level_lufs": "[-60, -10]", "data.level_jitter_db": "[0, 20]", "data.songs": "integer [1, inf)",
        "data.song_s": "(0, 600]", "arch.dropout": "[0, 1)", "data.source": ("speech", "music"),
        "data.rate": "integer [8000, 192000]", "data.lead_s": "[0, 30]",
    }

    def check(self, cfg: dict[str, Any]) -> str | None:
        d, a = cfg["data"], cfg["arch"]
        if not d["ratios"] or any(not isinstance(r, int) or r < 2 for r in d["ratios"]):
            return f"data.ratios must be integers >= 2, not {d['ratios']!r}"
        if d["source"] == "speech":
            from harness.suites.synth.speech import voices_problem

            problem = voices_problem(d["voices"], d["allow_evaluation_voices"])
            if problem:
                return problem
        if len(a["filters"]) != len(a["kernels"]) or not a["filters"]:
            return "arch.filters and arch.kernels must be non-empty lists of one length"
        m = 2 ** (len(a["filters"]) + 1)
        if cfg["segment"] <= 0 or cfg["segment"] % m:
            return f"segment must be a positive multiple of {m} (the network halves it {m.bit_length() - 1}x)"
        from harness.suites.synth.speech import speed_problem

        return speed_problem(d["speed"])

    def data(self, cfg: dict[str, Any]) -> SpeechSR:
        return cached_data(self, cfg, SpeechSR)

    def build(self, cfg: dict[str, Any]) -> dict[str, Any]:
        return {"unet": unet.UNetSR(cfg["arch"])}

    def optimisers(self, cfg: dict[str, Any]) -> list[OptimiserSpec]:
        return [OptimiserSpec("unet", ("unet",), float(cfg["lr"]), decay=float(cfg["decay"]),
                              decay_every=int(cfg["decay_every"]), clip_norm=float(cfg["clip_norm"]) or None)]

    def stages(self, cfg: dict[str, Any]) -> list[Stage]:
        return [Stage("l2", int(cfg["steps"]["l2"]), ("unet",))]

    def batch(self, cfg: dict[str, Any], step: int, device: str) -> Any:
        import torch

        x, y, r = self.data(cfg).batch(step, int(cfg["batch_size"]), int(cfg["segment"]))
        t = dict(dtype=torch.float32, device=device)
        return torch.tensor(x, **t)[:, None], torch.tensor(y, **t)[:, None], torch.tensor(r, **t)

    def loss(self, cfg: dict[str, Any], stage: str, optimiser: str, modules: dict[str, Any],
             batch: Any, cache: dict[str, Any]) -> tuple[Any, dict[str, float]]:
        import torch

        x, clean, ratio = batch
        y = modules["unet"](x, ratio)
        w = {k: float(v) for k, v in cfg["loss"].items()}
        l2 = torch.mean((y - clean) ** 2)
        total, logs = w["l2"] * l2, {"l2": float(l2.detach())}
        if w["lsd"]:
            ls = lsd_loss(y, clean)
            total, logs["lsd"] = total + w["lsd"] * ls, float(ls.detach())
        return total, logs

    def validate(self, cfg: dict[str, Any], modules: dict[str, Any], device: str) -> dict[str, float]:
        from harness.metrics.snr import snr_db
        from harness.metrics.spectral import lsd

        data = self.data(cfg)
        model = modules["unet"]
        out: dict[str, float] = {}
        for ratio in (int(r) for r in cfg["data"]["ratios"]):
            rows = []
            for i in range(int(cfg["data"]["validation_items"])):
                x, clean = data.validation(i, ratio)
                y = unet.upsample(model, x, ratio)
                rows.append((snr_db(x, clean), snr_db(y, clean), lsd(x, clean), lsd(y, clean)))
            a = np.mean(np.array(rows), axis=0)
            out.update({f"snr_spline_{ratio}x": float(a[0]), f"snr_{ratio}x": float(a[1]),
                        f"lsd_spline_{ratio}x": float(a[2]), f"lsd_{ratio}x": float(a[3])})
        return out

    def export(self, modules: dict[str, Any]) -> dict[str, Any]:
        return dict(modules["unet"].state_dict())

    def data_record(self, cfg: dict[str, Any]) -> dict[str, Any]:
        return self.data(cfg).record()
