"""SRMR, the speech-to-reverberation modulation energy ratio (Falk, Zheng & Chan 2010; the
SRMRpy / SRMRToolbox algorithm as torchmetrics 1.9 translated it): non-intrusive, signal
processing only, no model and no download.

The signal, scaled to peak 1 where it peaks above 1 (SRMR is a ratio of energies, so the scale
changes nothing else), goes through 23 gammatone (ERB) filters from 125 Hz (Slaney's filters from
the `gammatone` package, each as four cascaded biquads); each band's Hilbert envelope (an FFT of
the length rounded up to a multiple of 16, as torchmetrics) through 8 modulation band-passes (Q 2,
centres spaced geometrically from 4 to 128 Hz); the energy of each modulation band in 256 ms
Hamming frames hopped by 64 ms (zero-padded at the end), averaged over frames. The acoustic bands
holding 90% of the energy set the speech bandwidth, which picks how many modulation bands count
as reverberation (k* from 5 to 8); SRMR = energy of modulation bands 1-4 / energy of bands 5..k*.
Defaults as torchmetrics' (`norm=False`, `max_cf=128`, the slow, filter-bank version).

The harness scores at 16 kHz (an estimate at another rate is resampled with soxr VHQ first, as
for DNSMOS), mono only. A silent signal has no modulation energy: `invalid`.
The reference in the parity test is torchmetrics' own function; it needs torchaudio only for
`lfilter`, which the test supplies from scipy where torchaudio's binary does not load.
"""

from __future__ import annotations

import math

import numpy as np
import scipy.signal

from harness.audio import Audio, resample
from harness.errors import InvalidInput
from harness.metrics.base import NON_INTRUSIVE, FunctionMetric

RATE = 16000
EAR_Q, MIN_BW = 9.26449, 24.7  # Glasberg and Moore


def modulation_filterbank(fs: float, min_cf: float = 4.0, max_cf: float = 128.0, n: int = 8,
                          q: float = 2.0):
    """(b, a) of the n modulation band-passes (n x 3 each) and their lower cutoffs (Hz)."""
    cfs = min_cf * ((max_cf / min_cf) ** (1.0 / (n - 1))) ** np.arange(n)
    w0 = np.tan(2 * np.pi * cfs / fs / 2)
    b0 = w0 / q
    b = np.stack([b0, np.zeros(n), -b0], 1)
    a = np.stack([1 + b0 + w0 ** 2, 2 * w0 ** 2 - 2, 1 - b0 + w0 ** 2], 1)
    low = cfs - b0 * fs / (2 * np.pi)
    return b, a, low


def erb_filterbank(x: np.ndarray, fs: int, n_filters: int, low_freq: float) -> np.ndarray:
    """Slaney's gammatone filters (the `gammatone` package), n_filters x samples, highest first."""
    from gammatone.filters import centre_freqs, make_erb_filters

    coefs = make_erb_filters(fs, centre_freqs(fs, n_filters, low_freq))
    gain = coefs[:, 9]
    bs = coefs[:, 6:9]
    y = np.broadcast_to(x, (len(coefs), len(x)))
    for col in (1, 2, 3, 4):  # A0, A1k, A2 over B0, B1, B2, four times
        y = np.stack([scipy.signal.lfilter(coefs[i, (0, col, 5)], bs[i], y[i]) for i in range(len(coefs))])
    return y / gain[:, None]


def srmr_value(x: np.ndarray, fs: int, *, n_filters: int = 23, low_freq: float = 125.0,
               min_cf: float = 4.0, max_cf: float = 128.0) -> float:
    """SRMR of a mono signal at fs (torchmetrics' `norm=False`, slow version)."""
    from gammatone.filters import centre_freqs

    x = np.asarray(x, dtype=np.float64)
    peak = float(np.max(np.abs(x))) if x.size else 0.0
    if peak == 0.0:
        raise InvalidInput("srmr: the signal is silent (no modulation energy)")
    if peak > 1.0:
        x = x / peak
    n = len(x)
    bands = erb_filterbank(x, fs, n_filters, low_freq)
    env = np.abs(scipy.signal.hilbert(bands, N=math.ceil(n / 16) * 16, axis=-1)[:, :n])
    b, a, cutoffs = modulation_filterbank(fs, min_cf, max_cf)
    w_len, w_inc = math.ceil(0.256 * fs), math.ceil(0.064 * fs)
    frames = int(1 + (n - w_len) // w_inc)
    if frames < 1:
        raise InvalidInput(f"srmr needs at least 256 ms of signal; got {1000 * n / fs:.0f} ms")
    window = 0.54 - 0.46 * np.cos(2 * np.pi * np.arange(w_len) / (w_len + 1))  # torch's periodic
    pad = max(math.ceil(n / w_inc) * w_inc - n, w_len - n)
    avg = np.empty((n_filters, len(b)))
    for m in range(len(b)):
        mod = scipy.signal.lfilter(b[m], a[m], env, axis=-1)
        mod = np.pad(mod, ((0, 0), (0, pad)))
        idx = np.arange(frames)[:, None] * w_inc + np.arange(w_len)[None, :]
        avg[:, m] = np.mean(np.sum((mod[:, idx] * window) ** 2, -1), -1)
    erbs = (centre_freqs(fs, n_filters, low_freq) / EAR_Q + MIN_BW)[::-1]
    ac = avg.sum(1)
    cum = np.cumsum((ac * 100 / ac.sum())[::-1])
    bw = erbs[int(np.argmax(cum > 90))]
    if cutoffs[4] <= bw < cutoffs[5]:
        kstar = 5
    elif cutoffs[5] <= bw < cutoffs[6]:
        kstar = 6
    elif cutoffs[6] <= bw < cutoffs[7]:
        kstar = 7
    elif cutoffs[7] <= bw:
        kstar = 8
    else:  # torchmetrics raises here too: a bandwidth below the fifth band's cutoff
        raise InvalidInput(f"srmr: speech bandwidth {bw:.1f} Hz is below the modulation cutoffs")
    return float(avg[:, :4].sum() / avg[:, 4:kstar].sum())


def _srmr(estimate: Audio, reference=None, **_) -> float:
    if estimate.channels != 1:
        raise InvalidInput(f"srmr scores mono speech; got {estimate.channels} channels")
    x = (estimate if estimate.rate == RATE else resample(estimate, RATE)).samples[0]
    return srmr_value(x, RATE)


SRMR = FunctionMetric("srmr", _srmr, unit="", sample_rate=None, needs_reference=False,
                      kind=NON_INTRUSIVE,
                      description="SRMR speech-to-reverberation modulation energy ratio (signal "
                                  "processing; 16 kHz, no reference)")
