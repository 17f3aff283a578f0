"""Training HiFi-GAN: batches drawn on the fly from the speech-enhancement generator's degradation
chain, the paper's three stages, validation on held-out generated data.

Data (all disjoint from the evaluation suites): voices from TRAINING_VOICES (festival voices of
speakers no suite uses), texts drawn from the suites' vocabulary but never a suite sentence,
rooms from a bank simulated with training seeds, noises drawn with training seeds (babble from
the training voices). Each example: clean speech (speed-perturbed when data.speed says so; level
jittered around -30 LUFS) -> a room (none with probability p_dry) -> a random device's band-limit
and rate -> noise of a random kind at an SNR drawn from [snr_min, snr_max] -> the device's
clipping -> resampled to 16 kHz; input
and target scaled together so that the input's RMS is 0.1 (as the system does at inference).
"""

from __future__ import annotations

import os
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np

from harness import cache
from harness.training import OptimiserSpec, Stage, cached_data
from harness.training.losses import neg_estoi, neg_si_sdr, neg_snr
from systems.speech import hifigan as hg

RATE = hg.RATE
VALIDATION_OFFSET = 10**9  # validation examples use seeds no training step reaches


def default_config() -> dict[str, Any]:
    from harness.suites.synth.speech import TRAINING_VOICES

    return {
        "seed": 20261204,
        "batch_size": 8,
        "segment_s": 1.0,
        "arch": dict(hg.ARCH_SMALL),
        "steps": {"wavenet": 2000, "postnet": 300, "adversarial": 300},
        "lr": {"wavenet": 1e-3, "postnet": 1e-4, "generator": 1e-5, "discriminators": 1e-3},
        "loss": {"l1": 1.0, "spec": 0.0002, "mrstft": 0.0, "sisdr": 0.0, "snr": 0.0, "estoi": 0.0,
                 "adv": 1.0, "fm": 2.0},
        "clip_norm": 10.0,
        "data": {
            "voices": list(TRAINING_VOICES), "texts": 60, "rooms": 48, "rt60_min": 0.2,
            "rt60_max": 1.0, "p_dry": 0.25, "snr_min": -5.0, "snr_max": 25.0,
            "level_lufs": -30.0, "level_jitter_db": 6.0, "validation_items": 16, "lead_s": 0.0,
            "target": "clean", "early_ms": 50.0, "speed": [1.0, 1.0], "allow_evaluation_voices": False,
            "cache": "",  # folder for the simulated room bank ("" = harness.cache.root())
        },
    }


class SpeechData:
    """The training examples of one data config, deterministic from (seed, step, index)."""

    def __init__(self, data: dict[str, Any], seed: int) -> None:
        self.cfg, self.seed = data, seed

    @cached_property
    def texts(self) -> tuple[str, ...]:
        from harness.suites.synth.speech import training_sentences

        return training_sentences(self.seed, int(self.cfg["texts"]))

    def bank_path(self) -> Path:
        key = [self.seed, self.cfg["rooms"], self.cfg["rt60_min"], self.cfg["rt60_max"]]
        return cache.keyed("rooms", key, ".npz", self.cfg["cache"])

    @cached_property
    def rooms(self) -> list[np.ndarray]:
        """A bank of simulated shoebox rooms (training seeds), cached on disk (simulating one
        takes seconds)."""
        from harness.suites.synth import degrade as dg

        path = self.bank_path()
        if path.is_file():
            with np.load(path) as z:
                return [z[k] for k in sorted(z.files, key=int)]
        rng = np.random.default_rng([self.seed, 2])
        bank = []
        for _ in range(int(self.cfg["rooms"])):
            rt60 = float(rng.uniform(self.cfg["rt60_min"], self.cfg["rt60_max"]))
            h, _ = dg.shoebox_rir(rt60, RATE, rng)
            bank.append(h.astype(np.float32))
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp.npz")
        np.savez(tmp, **{str(i): h for i, h in enumerate(bank)})
        os.replace(tmp, path)
        return bank

    def room(self, rt60: float, rate: int, rng: np.random.Generator) -> tuple[np.ndarray, dict]:
        i = int(rng.integers(len(self.rooms)))
        return self.rooms[i].astype(np.float64), {"bank_room": i}

    def talk(self, voice: str, rng: np.random.Generator, seconds: float) -> np.ndarray:
        """`seconds` of talk by `voice` at 16 kHz, speed-perturbed by a factor from `data.speed`
        (harness.suites.synth.speech.speed_perturbed_talk; none drawn when it is [1, 1])."""
        from harness.suites.synth import speech

        return speech.speed_perturbed_talk(voice, rng, seconds, RATE, self.texts,
                                           tuple(self.cfg.get("speed", (1.0, 1.0))))

    def example(self, rng: np.random.Generator, seconds: float) -> tuple[np.ndarray, np.ndarray]:
        """(noisy input at 16 kHz, training target), scaled together to input RMS 0.1."""
        noisy, target, _ = self.example_parts(rng, seconds)
        return noisy, target

    def example_parts(self, rng: np.random.Generator, seconds: float
                      ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(noisy input, training target, dry full-band clean speech), all at 16 kHz and scaled
        together to input RMS 0.1. The target is the clean speech (`data.target` = "clean", the
        paper's), or the clean speech through the device's linear part: its band-limit and gain,
        no room, noise or clipping (`"device-band"`: enhancement without bandwidth extension), or
        that with the room's first `data.early_ms` ms kept (`"early"`: the direct path and early
        reflections, the usual dereverberation target (e.g. the DNS challenge's), late reverberation
        and noise removed; the room's response scaled so that its direct path has gain 1, as the
        dry speech of the other targets; a dry example's target is its device-band one)."""
        from harness.audio import resample_samples
        from harness.suites.synth import degrade as dg
        from harness.suites.synth.gen_speech import degrade_speech
        from harness.suites.synth.generators import device_chain

        c = self.cfg
        voices = tuple(c["voices"])
        voice = voices[int(rng.integers(len(voices)))]
        # a random stretch of a longer talk, so segments do not all start at a sentence's start
        lead = float(self.cfg.get("lead_s", 0.0)) * float(rng.random())
        clean = self.talk(voice, rng, seconds + lead)
        level = c["level_lufs"] + rng.uniform(-c["level_jitter_db"], c["level_jitter_db"])
        clean = dg.to_loudness(clean, RATE, level)
        rt60 = 0.0 if rng.random() < c["p_dry"] else 1.0  # > 0: a room from the bank
        devices = sorted(dg.DEVICES)
        device = dg.DEVICES[devices[int(rng.integers(len(devices)))]]
        kind = dg.NOISE_KINDS[int(rng.integers(len(dg.NOISE_KINDS)))]
        snr = float(rng.uniform(c["snr_min"], c["snr_max"]))
        others = tuple(v for v in voices if v != voice)
        d = degrade_speech(clean, rng, snr, rt60, device, kind, others, make_rir=self.room,
                           sentences=self.texts)
        n = len(clean)

        def at_16k(x: np.ndarray) -> np.ndarray:
            y = resample_samples(x, device.rate, RATE)
            return np.pad(y[:n], (0, max(0, n - len(y))))

        noisy = at_16k(d.noisy)
        if c.get("target", "clean") == "early" and d.rir is not None:
            h = d.rir[: int(round(float(c.get("early_ms", 50.0)) * RATE / 1000)) + 1]
            target = at_16k(device_chain(device, dg.reverberate(clean, h / abs(d.rir[0])), RATE))
        elif c.get("target", "clean") in ("device-band", "early"):
            target = at_16k(device_chain(device, clean, RATE))
        else:
            target = clean
        a = n - int(round(seconds * RATE))
        noisy, target, clean = noisy[a:], target[a:], clean[a:]
        scale = 0.1 / max(float(np.sqrt(np.mean(noisy ** 2))), 1e-8)
        return noisy * scale, target * scale, clean * scale

    def batch(self, step: int, size: int, seconds: float) -> tuple[np.ndarray, np.ndarray]:
        xs, ys = [], []
        for i in range(size):
            x, y = self.example(np.random.default_rng([self.seed, 3, step, i]), seconds)
            xs.append(x)
            ys.append(y)
        return np.stack(xs), np.stack(ys)

    def record(self) -> dict[str, Any]:
        from harness.suites.synth.speech import voices_record

        return {"generator": "speech-enhancement degradation chain (harness.suites.synth.gen_speech."
                             "degrade_speech)",
                "voices": list(self.cfg["voices"]), **voices_record(self.cfg["voices"]),
                "texts": f"{self.cfg['texts']} sentences drawn from the suites' vocabulary with seed "
                         f"[{self.seed}, 1]; no suite sentence",
                "rooms": f"{self.cfg['rooms']} shoebox rooms, RT60 {self.cfg['rt60_min']}-"
                         f"{self.cfg['rt60_max']} s, seed [{self.seed}, 2]; dry with probability "
                         f"{self.cfg['p_dry']}",
                "examples": f"seed [{self.seed}, 3, step, index]; validation seed [{self.seed}, 3, "
                            f"{VALIDATION_OFFSET}, index]",
                "snr_db": [self.cfg["snr_min"], self.cfg["snr_max"]],
                "speed_perturbation": list(self.cfg.get("speed", [1.0, 1.0])),
                "noises": "white, pink, brown, hum50, hum60, babble (training voices)",
                "devices": "every device model of the generator, drawn uniformly"}


class HifiganTraining:
    """The Trainable of `hifigan` (harness.training.spec)."""

    architecture = "hifigan"

    def defaults(self) -> dict[str, Any]:
        return default_config()

    # values each key may take (harness.training.trainer.COMMON_LIMITS adds seed, steps, losses...)
    limits = {
        "segment_s": "(0, 60]",
        **{f"arch.{k}": "integer [1, inf)" for k in ("channels", "skip_channels", "stacks", "layers",
                                                     "head_channels", "postnet_layers", "postnet_channels",
                                                     "postnet_kernel", "disc_channels", "mel_channels")},
        "arch.gate_channels": "integer [2, inf)",
        "data.texts": "integer [1, inf)", "data.rooms": "integer [1, inf)", "data.rt60_min": "[0.05, 2]",
        "data.rt60_max": "[0.05, 2]", "data.p_dry": "[0, 1]", "data.snr_min": "[-30, 80]",
        "data.snr_max": "[-30, 80]", "data.level_lufs": "[-60, -10]", "data.level_jitter_db": "[0, 20]",
        "data.lead_s": "[0, 30]", "data.target": ("clean", "device-band", "early"),
        "data.early_ms": "[0, 1000]",
    }

    def check(self, cfg: dict[str, Any]) -> str | None:
        """What is wrong with a merged config's values beyond their limits (types are checked by the
        trainer)."""
        d, a = cfg["data"], cfg["arch"]
        if a["gate_channels"] % 2:
            return f"arch.gate_channels must be even (the gate splits it in halves), not {a['gate_channels']}"
        for lo, hi in (("snr_min", "snr_max"), ("rt60_min", "rt60_max")):
            if d[lo] > d[hi]:
                return f"data.{lo} ({d[lo]:g}) must not exceed data.{hi} ({d[hi]:g})"
        from harness.suites.synth.speech import speed_problem, voices_problem

        return voices_problem(d["voices"], d["allow_evaluation_voices"]) or speed_problem(d["speed"])

    def data(self, cfg: dict[str, Any]) -> SpeechData:
        return cached_data(self, cfg, SpeechData)

    def build(self, cfg: dict[str, Any]) -> dict[str, Any]:
        return {"generator": hg.Generator(cfg["arch"]), "discriminators": hg.Discriminators(cfg["arch"])}

    def optimisers(self, cfg: dict[str, Any]) -> list[OptimiserSpec]:
        clip = float(cfg["clip_norm"]) or None
        return [OptimiserSpec("generator", ("generator",), cfg["lr"]["wavenet"], clip_norm=clip),
                OptimiserSpec("discriminators", ("discriminators",), cfg["lr"]["discriminators"],
                              clip_norm=clip)]

    def stages(self, cfg: dict[str, Any]) -> list[Stage]:
        s, lr = cfg["steps"], cfg["lr"]
        return [Stage("wavenet", int(s["wavenet"]), ("generator",), {"generator": lr["wavenet"]}),
                Stage("postnet", int(s["postnet"]), ("generator",), {"generator": lr["postnet"]}),
                Stage("adversarial", int(s["adversarial"]), ("discriminators", "generator"),
                      {"generator": lr["generator"], "discriminators": lr["discriminators"]})]

    @cached_property
    def mrstft(self) -> Any:
        """auraloss's multi-resolution STFT loss (spectral convergence + log magnitude at FFT sizes
        1024/2048/512), not in the paper: a denoising gradient a short CPU training can follow."""
        import auraloss

        return auraloss.freq.MultiResolutionSTFTLoss()

    def batch(self, cfg: dict[str, Any], step: int, device: str) -> Any:
        import torch

        x, y = self.data(cfg).batch(step, int(cfg["batch_size"]), float(cfg["segment_s"]))
        return (torch.tensor(x, dtype=torch.float32, device=device)[:, None],
                torch.tensor(y, dtype=torch.float32, device=device)[:, None])

    def loss(self, cfg: dict[str, Any], stage: str, optimiser: str, modules: dict[str, Any],
             batch: Any, cache: dict[str, Any]) -> tuple[Any, dict[str, float]]:
        import torch

        x, clean = batch
        w = {k: float(v) for k, v in cfg["loss"].items()}
        gen, disc = modules["generator"], modules["discriminators"]
        if stage in ("wavenet", "postnet"):
            y = gen(x, postnet=stage == "postnet")
            l1, spec = hg.l1_loss(y, clean), hg.spectrogram_loss(y, clean)
            total = w["l1"] * l1 + w["spec"] * spec
            logs = {"l1": float(l1.detach()), "spec": float(spec.detach())}
            if w.get("mrstft", 0.0):
                mr = self.mrstft(y, clean)
                total, logs["mrstft"] = total + w["mrstft"] * mr, float(mr.detach())
            if w.get("sisdr", 0.0):
                neg = neg_si_sdr(y[:, 0], clean[:, 0])
                total, logs["si_sdr"] = total + w["sisdr"] * neg, -float(neg.detach())
            if w.get("snr", 0.0):
                neg = neg_snr(y[:, 0], clean[:, 0])
                total, logs["snr"] = total + w["snr"] * neg, -float(neg.detach())
            if w.get("estoi", 0.0):
                neg = neg_estoi(y[:, 0], clean[:, 0], RATE)
                total, logs["estoi"] = total + w["estoi"] * neg, -float(neg.detach())
            return total, logs
        if "y" not in cache:
            cache["y"] = gen(x)
        y = cache["y"]
        if optimiser == "discriminators":
            real = [o for o, _ in disc(clean)]
            fake = [o for o, _ in disc(y.detach())]
            loss = hg.hinge_d(real, fake)
            return loss, {"d_hinge": float(loss.detach())}
        fake_out = disc(y)
        with torch.no_grad():
            real_feats = [f for _, f in disc(clean)]
        l1, spec = hg.l1_loss(y, clean), hg.spectrogram_loss(y, clean)
        mr = self.mrstft(y, clean) if w.get("mrstft", 0.0) else 0.0
        neg = neg_si_sdr(y[:, 0], clean[:, 0]) if w.get("sisdr", 0.0) else 0.0
        neg_level = neg_snr(y[:, 0], clean[:, 0]) if w.get("snr", 0.0) else 0.0
        neg_intel = neg_estoi(y[:, 0], clean[:, 0], RATE) if w.get("estoi", 0.0) else 0.0
        adv = hg.hinge_g([o for o, _ in fake_out])
        fm = hg.feature_matching(real_feats, [f for _, f in fake_out])
        total = (w["l1"] * l1 + w["spec"] * spec + w.get("mrstft", 0.0) * mr + w.get("sisdr", 0.0) * neg
                 + w.get("snr", 0.0) * neg_level + w.get("estoi", 0.0) * neg_intel + w["adv"] * adv
                 + w["fm"] * fm)
        return total, {"l1": float(l1.detach()), "spec": float(spec.detach()), "g_adv": float(adv.detach()),
                       "fm": float(fm.detach())}

    def validate(self, cfg: dict[str, Any], modules: dict[str, Any], device: str) -> dict[str, float]:
        from pesq import pesq

        from harness.metrics.fast.stoi import stoi_scores
        from harness.metrics.snr import si_sdr_db

        data = self.data(cfg)
        gen = modules["generator"]
        rows = []
        for i in range(int(cfg["data"]["validation_items"])):
            rng = np.random.default_rng([int(cfg["seed"]), 3, VALIDATION_OFFSET, i])
            x, _, clean = data.example_parts(rng, 3.0)  # scored against the dry full-band speech
            y = hg.enhance(gen, x)
            try:
                p_in, p_out = pesq(RATE, clean, x, "wb"), pesq(RATE, clean, y, "wb")
            except Exception:  # a validation item PESQ cannot score (no utterance found)
                p_in = p_out = float("nan")
            e_in, e_out = stoi_scores([clean, clean], [x, y], RATE, extended=True)
            rows.append((si_sdr_db(x, clean), si_sdr_db(y, clean), p_in, p_out,
                         *(v if isinstance(v, float) else float("nan") for v in (e_in, e_out))))
        a = np.array(rows, dtype=float)
        return {"si_sdr_in": float(np.nanmean(a[:, 0])), "si_sdr": float(np.nanmean(a[:, 1])),
                "pesq_in": float(np.nanmean(a[:, 2])), "pesq": float(np.nanmean(a[:, 3])),
                "estoi_in": float(np.nanmean(a[:, 4])), "estoi": float(np.nanmean(a[:, 5]))}

    def export(self, modules: dict[str, Any]) -> dict[str, Any]:
        return dict(modules["generator"].state_dict())

    def data_record(self, cfg: dict[str, Any]) -> dict[str, Any]:
        return self.data(cfg).record()
