"""Clean speech from offline synthesisers: flite voices slt, rms, awb, kal16 and festival's HTS
slt voice, speaking the Harvard sentences (IEEE 1969, public domain). Deterministic: the same
voice and text give the same samples."""

from __future__ import annotations

import os
import shutil
import tempfile
from functools import lru_cache
from pathlib import Path

import numpy as np

from harness import cache
from harness.audio import resample_samples as resample
from harness.errors import SuiteError
from harness.suites.synth.degrade import fade
from harness.suites.synth.tools import require, run_tool

VOICES = ("slt", "rms", "awb", "kal16", "hts_slt")
FEMALE_VOICES = ("slt", "hts_slt")
# Voices for training learned systems only, never in an evaluation suite: other speakers, from
# festival voice packages (apt: festvox-kdlpc16k festvox-ca-ona-hts festvox-suopuhe-lj
# festvox-suopuhe-mv festvox-italp16k festvox-itapc16k), speaking English text in their own
# phonology. Name -> festival voice function.
TRAINING_VOICES = {
    "ked": "voice_ked_diphone",  # US English, male
    "ona": "voice_upc_ca_ona_hts",  # Catalan, female (HTS)
    "lj": "voice_suo_fi_lj_diphone",  # Finnish, female
    "mv": "voice_hy_fi_mv_diphone",  # Finnish, male
    "lp": "voice_lp_diphone",  # Italian, female
    "pc": "voice_pc_diphone",  # Italian, male
}
# Training voices that festival renders at 32 kHz or more (the Czech voices, apt:
# festvox-czech-dita festvox-czech-krb festvox-czech-machac festvox-czech-ph), for models of the
# band above 8 kHz (unet-sr's wide-band checkpoint); no evaluation suite uses them.
WIDEBAND_TRAINING_VOICES = {
    "dita": "voice_czech_dita",  # Czech, female, 32 kHz
    "krb": "voice_czech_krb",  # Czech, child, 32 kHz
    "machac": "voice_czech_machac",  # Czech, male, 32 kHz
    "ph": "voice_czech_ph",  # Czech, male, 44.1 kHz
}
# More training voices, named in a training config's data.voices (not in the TRAINING_VOICES
# default, so that the shipped configs that use it keep their data): a unit-selection voice
# (recorded speech units, the nearest festival has to a natural speaker; apt: festvox-ru).
EXTRA_TRAINING_VOICES = {
    "nsh": "voice_msu_ru_nsh_clunits",  # Russian, male, unit selection, 16 kHz
}
FESTIVAL_VOICES = {"hts_slt": "voice_cmu_us_slt_arctic_hts", **TRAINING_VOICES, **WIDEBAND_TRAINING_VOICES,
                   **EXTRA_TRAINING_VOICES}
# The Debian package of each festival voice (named when a voice is missing).
VOICE_PACKAGES = {
    "hts_slt": "festvox-us-slt-hts", "ked": "festvox-kdlpc16k", "ona": "festvox-ca-ona-hts",
    "lj": "festvox-suopuhe-lj", "mv": "festvox-suopuhe-mv", "lp": "festvox-italp16k",
    "pc": "festvox-itapc16k", "dita": "festvox-czech-dita", "krb": "festvox-czech-krb",
    "machac": "festvox-czech-machac", "ph": "festvox-czech-ph", "nsh": "festvox-ru",
}
RATE = 16000

SENTENCES = (
    "The birch canoe slid on the smooth planks.",
    "Glue the sheet to the dark blue background.",
    "It's easy to tell the depth of a well.",
    "These days a chicken leg is a rare dish.",
    "Rice is often served in round bowls.",
    "The juice of lemons makes fine punch.",
    "The box was thrown beside the parked truck.",
    "The hogs were fed chopped corn and garbage.",
    "Four hours of steady work faced us.",
    "A large size in stockings is hard to sell.",
    "The boy was there when the sun rose.",
    "A rod is used to catch pink salmon.",
    "The source of the huge river is the clear spring.",
    "Kick the ball straight and follow through.",
    "Help the woman get back to her feet.",
    "A pot of tea helps to pass the evening.",
    "Smoky fires lack flame and heat.",
    "The soft cushion broke the man's fall.",
    "The salt breeze came across from the sea.",
    "The girl at the booth sold fifty bonds.",
    "The small pup gnawed a hole in the sock.",
    "The fish twisted and turned on the bent hook.",
    "Press the pants and sew a button on the vest.",
    "The swan dive was far short of perfect.",
    "The beauty of the view stunned the young boy.",
    "Two blue fish swam in the tank.",
    "Her purse was full of useless trash.",
    "The colt reared and threw the tall rider.",
    "It snowed, rained, and hailed the same morning.",
    "Read verse out loud for pleasure.",
    "Hoist the load to your left shoulder.",
    "Take the winding path to reach the lake.",
    "Note closely the size of the gas tank.",
    "Wipe the grease off his dirty face.",
    "Mend the coat before you go out.",
    "The wrist was badly strained and hung limp.",
    "The stray cat gave birth to kittens.",
    "The young girl gave no clear response.",
    "The meal was cooked before the bell rang.",
    "What joy there is in living.",
    "A king ruled the state in the early days.",
    "The ship was torn apart on the sharp reef.",
    "Sickness kept him home the third week.",
    "The wide road shimmered in the hot sun.",
    "The lazy cow lay in the cool grass.",
    "Lift the square stone over the fence.",
    "The rope will bind the seven books at once.",
    "Hop over the fence and plunge in.",
)


def programs_for(voices: tuple[str, ...] | list[str]) -> list[str]:
    progs = []
    if any(v in VOICES and v != "hts_slt" for v in voices):
        progs.append("flite")
    if any(v in FESTIVAL_VOICES for v in voices):
        progs.append("text2wave")
    return progs


def training_sentence(rng: np.random.Generator) -> str:
    """A training text: 5 to 9 words drawn from the evaluation sentences' vocabulary, so the
    training speech never says an evaluation sentence (but covers the same sounds)."""
    words = sorted({w.strip(".,'").lower() for s in SENTENCES for w in s.split()} - {""})
    k = int(rng.integers(5, 10))
    text = " ".join(words[int(i)] for i in rng.integers(0, len(words), k))
    return text[0].upper() + text[1:] + "."


def training_sentences(seed: int, n: int) -> tuple[str, ...]:
    """A trainer's pool of n training texts, drawn with seed [seed, 1] (every trainer's texts)."""
    rng = np.random.default_rng([seed, 1])
    return tuple(training_sentence(rng) for _ in range(n))


def festival_cache_path(voice: str, text: str) -> Path:
    """Where festival's wav for (voice, text) is kept: festival starts and loads its voice for
    every sentence (about a second), so a training pool of a thousand sentences is synthesised
    once per machine, not once per training process."""
    return cache.keyed(f"speech/{voice}", [FESTIVAL_VOICES[voice], text], ".wav")


@lru_cache(maxsize=4096)  # a training pool: texts x voices (about 0.4 MB each)
def _synth(voice: str, text: str) -> tuple[np.ndarray, int]:
    import soundfile as sf

    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "tts.wav"
        if voice in FESTIVAL_VOICES:
            kept = festival_cache_path(voice, text)
            if kept.is_file():
                x, rate = sf.read(str(kept), dtype="float64", always_2d=True)
                return x[:, 0].copy(), int(rate)
            fn = FESTIVAL_VOICES[voice]
            cmd = ["text2wave", "-eval", f"({fn})", "-o", str(out)]
            run_tool(cmd, f"festival voice {voice!r} saying {text[:40]!r}", stdin=text.encode())
            if not out.is_file():  # text2wave exits 0 when the voice function is unbound
                raise SuiteError(f"festival voice {voice!r} ({fn}) is not installed: sudo apt-get "
                                 f"install {VOICE_PACKAGES.get(voice, 'its festvox package')}")
            try:  # the wav festival wrote, byte for byte (a cache that cannot be written is skipped)
                kept.parent.mkdir(parents=True, exist_ok=True)
                part = kept.with_name(f"{kept.stem}.{os.getpid()}.part")
                shutil.copyfile(out, part)
                os.replace(part, kept)
            except OSError:
                pass
        elif voice in VOICES:
            run_tool(["flite", "-voice", voice, "-t", text, "-o", str(out)],
                     f"flite voice {voice!r} saying {text[:40]!r}")
        else:
            raise ValueError(f"unknown voice {voice!r} (known: {', '.join(VOICES)}; for training: "
                             f"{', '.join(TRAINING_VOICES)}, {', '.join(WIDEBAND_TRAINING_VOICES)}, "
                             f"{', '.join(EXTRA_TRAINING_VOICES)})")
        x, rate = sf.read(str(out), dtype="float64", always_2d=True)
    return x[:, 0].copy(), int(rate)


def trim(x: np.ndarray, rate: int, pad: float = 0.05, floor: float = 0.01) -> np.ndarray:
    """Cut leading and trailing silence (below floor x peak), keeping `pad` seconds."""
    idx = np.flatnonzero(np.abs(x) > floor * np.max(np.abs(x)))
    a = max(int(idx[0] - pad * rate), 0)
    b = min(int(idx[-1] + pad * rate) + 1, len(x))
    return x[a:b]


def say(voice: str, text: str, rate: int = RATE) -> np.ndarray:
    """One sentence by one voice at `rate`, silence trimmed."""
    require(programs_for([voice]), f"speech voice {voice}")
    x, r = _synth(voice, text)
    return trim(resample(x, r, rate), rate)


def talk(voice: str, rng: np.random.Generator, seconds: float, rate: int = RATE,
         gap: float = 0.25, sentences: tuple[str, ...] = SENTENCES) -> tuple[np.ndarray, list[str]]:
    """Sentences drawn without repeats, spoken by one voice with short gaps, until `seconds` are
    filled; cut to exactly `seconds` with a 20 ms fade. Returns the signal and the texts."""
    n = int(round(seconds * rate))
    order = rng.permutation(len(sentences))
    parts, texts, total, k = [], [], 0, 0
    while total < n:
        text = sentences[order[k % len(order)]]
        k += 1
        x = say(voice, text, rate)
        parts += [x, np.zeros(int(gap * rate))]
        texts.append(text)
        total += len(x) + int(gap * rate)
    y = np.concatenate(parts)[:n]
    return fade(y, rate), texts


def speed_perturbed_talk(voice: str, rng: np.random.Generator, seconds: float, rate: int,
                         sentences: tuple[str, ...], speed: tuple[float, float] = (1.0, 1.0)) -> np.ndarray:
    """`seconds` of `talk` at `rate`, sped up by a factor drawn uniformly from speed = (lo, hi) by
    resampling (tempo and pitch together, the speed perturbation of Ko et al. 2015): rendered at
    rate / factor, read as `rate`. With lo == hi == 1 no factor is drawn (the random stream is
    that of a plain `talk`)."""
    lo, hi = (float(v) for v in speed)
    if lo == hi == 1.0:
        return talk(voice, rng, seconds, rate, sentences=sentences)[0]
    n = int(round(seconds * rate))
    factor = float(rng.uniform(lo, hi))
    slow = int(round(rate / factor))
    clean, _ = talk(voice, rng, n / slow + 0.01, slow, sentences=sentences)
    return np.pad(clean[:n], (0, max(0, n - len(clean))))


def training_voice_note(voices: list[str]) -> str | None:
    """A note for a suite whose items speak with training voices (`-O voices=ked`): a learned
    system trained on them is not held-out there. None when every voice is an evaluation one."""
    trained = sorted({str(v) for v in voices if v} & set(FESTIVAL_VOICES) - set(VOICES))
    if not trained:
        return None
    return (f"{', '.join(trained)}: training voice(s), not an evaluation suite's; a learned system "
            "trained on them is not held-out here (harness run names it)")


def speed_problem(speed: list[float]) -> str | None:
    """What is wrong with a trainer's `data.speed` range, or None."""
    if len(speed) != 2 or not 0.5 <= speed[0] <= speed[1] <= 2.0:
        return f"data.speed must be [lo, hi] with 0.5 <= lo <= hi <= 2, not {speed}"
    return None


def voices_problem(voices: list[str], allow_evaluation: bool) -> str | None:
    """What is wrong with a trainer's `data.voices`, or None: empty, a voice nobody can render,
    or a voice of the evaluation suites (VOICES) where `data.allow_evaluation_voices` is false.
    A model trained on an evaluation voice cannot be judged fairly on the suites that speak with
    it; tests and diagnostics may still ask for one (flite's voices need no festival package)."""
    if not voices:
        return "data.voices is empty"
    unknown = [v for v in voices if v not in VOICES and v not in FESTIVAL_VOICES]
    if unknown:
        training = [v for v in FESTIVAL_VOICES if v not in VOICES]
        return f"data.voices: unknown voice {unknown[0]!r} (training voices: {', '.join(training)})"
    used = [v for v in voices if v in VOICES]
    if used and not allow_evaluation:
        return (f"data.voices has {', '.join(used)}, voices of the evaluation suites: a model trained "
                "on them cannot be judged on those suites (set data.allow_evaluation_voices = true "
                "for a test or diagnostic model)")
    return None


def voices_record(voices: list[str]) -> dict[str, list[str]]:
    """The sidecar's word on the training voices against the evaluation suites' (VOICES)."""
    used = [v for v in voices if v in VOICES]
    return {"evaluation_voices_used": used} if used else {"evaluation_voices_excluded": list(VOICES)}


def babble(rng: np.random.Generator, seconds: float, rate: int = RATE, talkers: int = 4,
           voices: tuple[str, ...] = ("slt", "rms", "awb", "kal16"),
           sentences: tuple[str, ...] = SENTENCES) -> np.ndarray:
    """Several voices talking at once at equal level (each at unit RMS), summed."""
    n = int(round(seconds * rate))
    out = np.zeros(n)
    for i in range(talkers):
        x, _ = talk(voices[i % len(voices)], rng, seconds, rate, sentences=sentences)
        start = int(rng.integers(0, max(n // 4, 1)))
        x = np.roll(x, start)
        out += x / max(float(np.sqrt(np.mean(x**2))), 1e-12)
    return out
