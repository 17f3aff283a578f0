"""Degradations of a clean signal, each with the quantity it promises made measurable.

Noise (white, pink, brown, mains hum, babble), mixing at a stated SNR, shoebox rooms simulated
with pyroomacoustics and calibrated to the asked RT60, device models (zero-phase Butterworth
band-pass whose -3 dB points are exactly the stated edges, gain, clipping, resampling to the
device rate) and time offsets. All functions are deterministic given their numpy Generator.
Signals are float64 1-D arrays unless stated.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
from scipy import signal

from harness.audio import resample_samples as resample

NOISE_KINDS = ("white", "pink", "brown", "hum50", "hum60", "babble")
DEVICE_RATES = (8000, 16000, 22050, 44100)


def rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(x, dtype=np.float64))))


def energy(x: np.ndarray) -> float:
    return float(np.sum(np.square(x, dtype=np.float64)))


# ------------------------------------------------------------------ noise
def _coloured(n: int, rng: np.random.Generator, exponent: float) -> np.ndarray:
    """Gaussian noise with power spectral density proportional to 1/f**exponent."""
    spec = np.fft.rfft(rng.standard_normal(n))
    f = np.fft.rfftfreq(n)
    f[0] = f[1] if n > 2 else 1.0
    return np.fft.irfft(spec / f ** (exponent / 2), n)


def hum(n: int, rate: int, mains: float, rng: np.random.Generator, harmonics: int = 8) -> np.ndarray:
    """Mains hum: the fundamental and its harmonics up to Nyquist, amplitudes 1/k, random phases,
    plus a little broadband noise (-40 dB) as a real mains pick-up has."""
    t = np.arange(n) / rate
    out = np.zeros(n)
    for k in range(1, harmonics + 1):
        if k * mains >= rate / 2:
            break
        out += np.sin(2 * np.pi * mains * k * t + rng.uniform(0, 2 * np.pi)) / k
    return out + 0.01 * rms(out) * rng.standard_normal(n)


def make_noise(
    kind: str, n: int, rate: int, rng: np.random.Generator, babble: np.ndarray | None = None
) -> np.ndarray:
    """n samples of noise of a kind in NOISE_KINDS, unit RMS. Babble needs a pre-mixed babble
    signal (several talkers summed); a random excerpt of it is taken, looped when too short."""
    if kind == "white":
        x = rng.standard_normal(n)
    elif kind == "pink":
        x = _coloured(n, rng, 1.0)
    elif kind == "brown":
        x = _coloured(n, rng, 2.0)
    elif kind in ("hum50", "hum60"):
        x = hum(n, rate, 50.0 if kind == "hum50" else 60.0, rng)
    elif kind == "babble":
        if babble is None or len(babble) == 0:
            raise ValueError("babble noise needs a babble signal")
        start = int(rng.integers(0, len(babble)))
        x = np.resize(np.roll(babble, -start), n)
    else:
        raise ValueError(f"unknown noise kind {kind!r} (known: {', '.join(NOISE_KINDS)})")
    x = x - np.mean(x)
    return x / rms(x)


def scale_to_snr(target: np.ndarray, noise: np.ndarray, snr_db: float) -> np.ndarray:
    """The noise scaled so that 10 log10(||target||^2 / ||noise||^2) is exactly snr_db."""
    return noise * np.sqrt(energy(target) / energy(noise) * 10 ** (-snr_db / 10))


def measured_snr(target: np.ndarray, noise: np.ndarray) -> float:
    return float(10 * np.log10(energy(target) / energy(noise)))


# ------------------------------------------------------------------ filters and devices
def butterworth_gain(freqs: np.ndarray, low: float | None, high: float | None, order: int) -> np.ndarray:
    """Magnitude of an analogue Butterworth band-pass, product of a high-pass at `low` and a
    low-pass at `high` (either may be None): exactly 1/sqrt(2) (-3 dB) at each edge."""
    f = np.abs(np.asarray(freqs, dtype=np.float64))
    g = np.ones_like(f)
    if high is not None:
        g = g / np.sqrt(1.0 + (f / high) ** (2 * order))
    if low is not None:
        with np.errstate(divide="ignore"):
            g = g / np.sqrt(1.0 + (low / np.maximum(f, 1e-12)) ** (2 * order))
    return g


def bandlimit(x: np.ndarray, rate: int, low: float | None, high: float | None, order: int = 4) -> np.ndarray:
    """Zero-phase band-limiting by the Butterworth magnitude, applied in the frequency domain on
    a zero-padded copy (no circular wrap, no delay: offsets stay exact)."""
    if low is None and high is None:
        return np.array(x, dtype=np.float64)
    n = len(x)
    size = 1 << int(np.ceil(np.log2(2 * n)))
    spec = np.fft.rfft(x, size)
    spec *= butterworth_gain(np.fft.rfftfreq(size, 1 / rate), low, high, order)
    return np.fft.irfft(spec, size)[:n]


def hard_clip(x: np.ndarray, threshold: float) -> np.ndarray:
    return np.clip(x, -threshold, threshold)


@dataclass(frozen=True)
class Device:
    """A recording device: band-pass edges (Hz; None = open), order, gain, clipping threshold as
    a fraction of the signal's peak (None = no clipping) and its sample rate."""

    name: str
    rate: int
    low_hz: float | None = None
    high_hz: float | None = None
    order: int = 4
    gain_db: float = 0.0
    clip_fraction: float | None = None

    def to_json(self) -> dict:
        return asdict(self)

    def linear(self, x: np.ndarray, rate: int) -> np.ndarray:
        """Band-pass (at the source rate), resample to the device rate, gain: the linear part."""
        high = self.high_hz
        y = bandlimit(x, rate, self.low_hz, high, self.order)
        y = resample(y, rate, self.rate)
        return y * 10 ** (self.gain_db / 20)

    def clip_threshold(self, x: np.ndarray) -> float | None:
        if self.clip_fraction is None:
            return None
        return float(self.clip_fraction * np.max(np.abs(x)))


DEVICES = {
    # plausible consumer chains, band edges inside each device rate's Nyquist
    "studio": Device("studio", 16000),
    "headset": Device("headset", 16000, 100.0, 7000.0),
    "laptop": Device("laptop", 16000, 200.0, 6000.0, order=3),
    "phone": Device("phone", 8000, 300.0, 3400.0),
    "camcorder": Device("camcorder", 22050, 80.0, 9000.0, order=2),
    "handheld-clipping": Device("handheld-clipping", 44100, 150.0, 10000.0, gain_db=6.0,
                                clip_fraction=0.5),
}


# ------------------------------------------------------------------ rooms
def schroeder_rt60(h: np.ndarray, rate: int, fit_db: tuple[float, float] = (-5.0, -25.0)) -> float:
    """RT60 from the Schroeder backward-integrated energy decay, fitted by least squares between
    fit_db (T20 by default) and extrapolated to -60 dB."""
    edc = np.cumsum(np.square(h[::-1], dtype=np.float64))[::-1]
    edc_db = 10 * np.log10(np.maximum(edc / edc[0], 1e-30))
    hi, lo = fit_db
    sel = np.flatnonzero((edc_db <= hi) & (edc_db >= lo))
    if len(sel) < 2:
        raise ValueError("impulse response too short to measure its decay")
    t = sel / rate
    slope, _ = np.polyfit(t, edc_db[sel], 1)
    return float(-60.0 / slope)


def shoebox_rir(
    rt60: float, rate: int, rng: np.random.Generator, distance: float | None = None,
    tolerance: float = 0.05,
) -> tuple[np.ndarray, dict]:
    """A shoebox room impulse response with the asked RT60 (Schroeder T20 measure), the direct
    path moved to sample 0. The room size grows with the RT60; absorption from Sabine's formula,
    then corrected (up to 6 simulations) until the measured RT60 is within `tolerance`."""
    import pyroomacoustics as pra

    scale = 1.0 + 1.5 * min(rt60, 1.5)
    dims = np.array([rng.uniform(4.0, 6.0), rng.uniform(3.0, 5.0), rng.uniform(2.5, 3.2)])
    dims[:2] *= scale
    if distance is None:
        distance = float(rng.uniform(0.5, 2.5))
    mic = dims * np.array([rng.uniform(0.3, 0.7), rng.uniform(0.3, 0.7), 0.0]) + [0, 0, 1.5]
    angle = rng.uniform(0, 2 * np.pi)
    src = mic + distance * np.array([np.cos(angle), np.sin(angle), 0.0])
    src[:2] = np.clip(src[:2], 0.3, dims[:2] - 0.3)
    distance = float(np.linalg.norm(src - mic))
    asked = rt60
    info: dict = {}
    for attempt in range(6):
        absorption, max_order = pra.inverse_sabine(asked, dims.tolist())
        room = pra.ShoeBox(dims.tolist(), fs=rate, materials=pra.Material(absorption),
                           max_order=max_order)
        room.add_source(src.tolist())
        room.add_microphone(mic.tolist())
        room.compute_rir()
        h = np.asarray(room.rir[0][0], dtype=np.float64)
        measured = schroeder_rt60(h, rate)
        info = {"room_m": [round(float(d), 3) for d in dims], "distance_m": round(distance, 3),
                "absorption": round(float(absorption), 4), "max_order": int(max_order),
                "rt60_measured_s": round(measured, 4), "simulations": attempt + 1}
        if abs(measured - rt60) <= tolerance * rt60:
            break
        asked = float(np.clip(asked * rt60 / measured, 0.05, 5.0))
    peak = int(np.argmax(np.abs(h)))
    h = h[peak:]
    info["direct_path_removed_samples"] = peak
    return 0.5 * h / np.max(np.abs(h)), info  # direct path 0.5: storable in PCM


def reverberate(x: np.ndarray, h: np.ndarray) -> np.ndarray:
    """x convolved with h, cut to len(x) (the direct path is at h[0], so no delay)."""
    return signal.fftconvolve(x, h)[: len(x)]


# ------------------------------------------------------------------ level
def loudness_lufs(x: np.ndarray, rate: int) -> float:
    """Integrated loudness (ITU-R BS.1770-4, pyloudnorm) of a 1-D or (ch, n) signal."""
    import pyloudnorm

    data = np.asarray(x, dtype=np.float64)
    data = data.T if data.ndim == 2 else data
    return float(pyloudnorm.Meter(rate).integrated_loudness(data))


def to_loudness(x: np.ndarray, rate: int, lufs: float) -> np.ndarray:
    return x * 10 ** ((lufs - loudness_lufs(x, rate)) / 20)


def quantise(x: np.ndarray, bits: int = 24) -> np.ndarray:
    """Round onto soundfile's PCM grid (1/2**(bits-1)) so that the file stores x exactly."""
    scale = float(2 ** (bits - 1))
    return np.clip(np.round(np.asarray(x, dtype=np.float64) * scale), -scale, scale - 1) / scale


def fade(x: np.ndarray, rate: int, seconds: float = 0.02) -> np.ndarray:
    """Raised-cosine fade-in and fade-out, so cut signals start and end at zero."""
    n = min(int(seconds * rate), len(x) // 2)
    if n == 0:
        return x
    ramp = 0.5 - 0.5 * np.cos(np.pi * np.arange(n) / n)
    y = np.array(x, dtype=np.float64)
    y[..., :n] *= ramp
    y[..., -n:] *= ramp[::-1]
    return y
