"""bandwidth-extension (audio super-resolution, Kuleshov, Enam & Ermon 2017).

Items hold `input`: the low-rate signal (decimated by 2, 4 or 6 with an order-8 Chebyshev
anti-alias filter) cubic-spline interpolated back onto the 16 kHz grid, as the paper's network
sees it (input[::ratio] is the decimated signal; the ratio is in the item metadata), and the
16 kHz `clean` reference. Systems return {'enhanced': mono 16 kHz of the reference's length}.
The `unprocessed` anchor is therefore the cubic-spline baseline.
Metrics: SNR and log-spectral distance (LSD, lower is better) against the reference.
"""

from __future__ import annotations

from harness.tasks.speech_enhancement import SpeechEnhancement


class BandwidthExtension(SpeechEnhancement):
    task = "bandwidth-extension"
    version = "bandwidth-extension/1"
    default_metrics = ("snr", "lsd")
    supported_metrics = ("snr", "lsd", "si_sdr", "pesq", "stoi", "estoi")
    resampling_note = (
        "Inputs and references are 16 kHz; outputs must be 16 kHz mono of the reference's length. "
        "The `unprocessed` anchor is the cubic-spline interpolation stored as the input."
    )
