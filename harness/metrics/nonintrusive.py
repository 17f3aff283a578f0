"""Non-intrusive speech quality (no reference): DNSMOS P.835 (SIG, BAK, OVRL) and P.808, and
PLCMOS v2, from the ONNX models the `speechmos` wheel ships, and DistillMOS from the weights the
`distillmos` wheel ships (nothing is downloaded).

- Rate: the models take 16 kHz. An estimate at another rate is resampled to 16 kHz with the
  harness's resampler (soxr VHQ) first, as VERSA and the URGENT scripts do; the parity tests
  call speechmos on the same 16 kHz signal.
- Range: the models take samples within [-1, 1] (speechmos refuses anything else). A signal
  clipped at full scale is scored as it is (the models judge the distortion); samples beyond
  full scale are `invalid` with the peak named, never rescaled silently.
- Channels: mono only (a multichannel estimate is `invalid`).
- DNSMOS is speechmos's `dnsmos.run(x, 16000)`: 9.01 s windows hopped by 1 s (a shorter signal
  is repeated to 9.01 s), the P.835 outputs mapped by the published polynomials, the means over
  windows. One model call gives all four numbers, so the four metrics share it (cached per
  signal in the process).
- PLCMOS averages 15 random "rater embeddings" drawn from numpy's global generator; the harness
  seeds it with the job's seed first (as HAAQI's noise) and restores it after, so reruns give
  the same number.
- DistillMOS (Stahl & Gamper 2025, variant 7: a convolutional transformer distilled from an
  XLS-R SQA model) is the package's own `ConvTransformerSQAModel` with its shipped weights, in
  eval mode, on the 16 kHz signal as a (1, samples) float32 tensor; it segments long signals
  itself. Deterministic (no random draws). Its module imports `torchaudio` for its command-line
  file reader only; where torchaudio's binary does not load (its wheels lag torch's), the import
  is given an empty stand-in for that one name.
"""

from __future__ import annotations

import contextlib
import hashlib
from collections import OrderedDict

import numpy as np

from harness.audio import Audio, resample
from harness.errors import InvalidInput
from harness.metrics.base import NON_INTRUSIVE, FunctionMetric, process_state

RATE = 16000
_CACHE: OrderedDict[str, dict] = OrderedDict()
_DISTILLMOS: list = []  # the loaded model, once per process


def prepared(estimate: Audio, name: str) -> np.ndarray:
    """The estimate as the models take it: mono float32 at 16 kHz within [-1, 1]."""
    if estimate.channels != 1:
        raise InvalidInput(f"{name} scores mono speech; got {estimate.channels} channels")
    x = (estimate if estimate.rate == RATE else resample(estimate, RATE)).samples[0]
    peak = float(np.max(np.abs(x))) if x.size else 0.0
    if peak > 1.0:
        raise InvalidInput(f"{name} takes samples within [-1, 1] (its models' range); the estimate "
                           f"peaks at {peak:.3g}")
    return np.ascontiguousarray(x, dtype=np.float32)


def dnsmos_all(x: np.ndarray) -> dict[str, float]:
    """speechmos's DNSMOS of a 16 kHz signal: sig_mos, bak_mos, ovrl_mos, p808_mos."""
    key = hashlib.sha1(x.tobytes()).hexdigest()
    if key not in _CACHE:
        from speechmos import dnsmos

        with process_state():
            out = dnsmos.run(x, RATE)
        _CACHE[key] = {k: float(out[k]) for k in ("sig_mos", "bak_mos", "ovrl_mos", "p808_mos")}
        while len(_CACHE) > 64:
            _CACHE.popitem(last=False)
    return _CACHE[key]


def plcmos_value(x: np.ndarray, seed: int | None) -> float:
    """speechmos's PLCMOS v2 of a 16 kHz signal, numpy's global generator seeded with `seed`."""
    from speechmos import plcmos

    with process_state(None if seed is None else seed % 2**32):
        return float(plcmos.run(x, RATE)["plcmos"])


@contextlib.contextmanager
def _importable_torchaudio():
    """While importing distillmos: torchaudio as it is, or, when its binary does not load, an empty
    module under that name (distillmos uses torchaudio only in its file-list CLI)."""
    import sys
    import types

    try:
        import torchaudio  # noqa: F401
    except (ImportError, OSError):
        sys.modules["torchaudio"] = types.ModuleType("torchaudio")
        try:
            yield
        finally:
            sys.modules.pop("torchaudio", None)
        return
    yield


def distillmos_model():
    """distillmos's ConvTransformerSQAModel with its shipped weights, in eval mode (cached)."""
    with process_state():  # one load per process, its print of where the weights are swallowed
        if not _DISTILLMOS:
            with _importable_torchaudio():
                from distillmos import ConvTransformerSQAModel
            _DISTILLMOS.append(ConvTransformerSQAModel(load_weights=True).eval())
    return _DISTILLMOS[0]


def distillmos_value(x: np.ndarray) -> float:
    """DistillMOS of a 16 kHz float32 signal: the model's call on a batch of one."""
    import torch

    with torch.no_grad():
        return float(distillmos_model()(torch.tensor(x, dtype=torch.float32)[None]).reshape(-1)[0])


def _distillmos(estimate: Audio, reference=None, **_) -> float:
    return distillmos_value(prepared(estimate, "distillmos"))


def _dnsmos(key: str, name: str):
    def fn(estimate: Audio, reference=None, **_) -> float:
        return dnsmos_all(prepared(estimate, name))[key]

    return fn


def _plcmos(estimate: Audio, reference=None, *, seed=None, **_) -> float:
    return plcmos_value(prepared(estimate, "plcmos"), seed)


def _metric(name: str, fn, description: str) -> FunctionMetric:
    return FunctionMetric(name, fn, unit="MOS", sample_rate=None, needs_reference=False,
                          kind=NON_INTRUSIVE, description=description)


DNSMOS_SIG = _metric("dnsmos_sig", _dnsmos("sig_mos", "dnsmos_sig"),
                     "DNSMOS P.835 speech signal quality (speechmos ONNX; 16 kHz, no reference)")
DNSMOS_BAK = _metric("dnsmos_bak", _dnsmos("bak_mos", "dnsmos_bak"),
                     "DNSMOS P.835 background-noise quality (speechmos ONNX; 16 kHz, no reference)")
DNSMOS_OVRL = _metric("dnsmos_ovrl", _dnsmos("ovrl_mos", "dnsmos_ovrl"),
                      "DNSMOS P.835 overall quality (speechmos ONNX; 16 kHz, no reference)")
DNSMOS_P808 = _metric("dnsmos_p808", _dnsmos("p808_mos", "dnsmos_p808"),
                      "DNSMOS P.808 overall quality (speechmos ONNX; 16 kHz, no reference)")
PLCMOS = _metric("plcmos", _plcmos,
                 "PLCMOS v2 packet-loss-concealment quality (speechmos ONNX; 16 kHz, no reference; "
                 "seeded rater draws)")
DISTILLMOS = _metric("distillmos", _distillmos,
                     "DistillMOS v7 speech quality (distillmos wheel's weights; 16 kHz, no reference)")
NONINTRUSIVE = (DNSMOS_SIG, DNSMOS_BAK, DNSMOS_OVRL, DNSMOS_P808, PLCMOS, DISTILLMOS)
