"""Training losses shared by more than one learned system (torch)."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any


def in_float32(fn: Callable) -> Callable:
    """Run a loss in float32 (or float64, given that) whatever the autocast around it: its
    half-precision tensor arguments cast up to float32 and autocast off inside (a `precision =
    "bfloat16"` run would otherwise compute a loss's matrix products, e.g. ESTOI's third-octave
    bands, in bfloat16)."""

    @functools.wraps(fn)
    def wrapped(*args: Any, **kwargs: Any) -> Any:
        import torch

        device = next((a.device.type for a in args if torch.is_tensor(a)), "cpu")
        with torch.autocast(device, enabled=False):
            return fn(*(a.float() if torch.is_tensor(a) and a.is_floating_point() and a.element_size() < 4
                        else a for a in args), **kwargs)

    return wrapped


@in_float32
def neg_snr(est: Any, ref: Any, eps: float = 1e-8) -> Any:
    """Mean negative SNR (dB) over the batch, est and ref (batch, samples): 10 log10 of the
    reference's energy over the error's. Unlike SI-SDR it is not scale-invariant, so it pins the
    output's level (the `snr` metric equals it item by item)."""
    signal = (ref * ref).sum(-1)
    noise = ((ref - est) ** 2).sum(-1)
    return -(10 * (signal / (noise + eps)).add(eps).log10()).mean()


@in_float32
def neg_si_sdr(est: Any, ref: Any, eps: float = 1e-8) -> Any:
    """Mean negative SI-SDR (dB) over the batch: est, ref (batch, samples), both made zero-mean
    first (Le Roux et al. 2019; the `si_sdr` metric equals it on zero-mean signals)."""
    ref = ref - ref.mean(-1, keepdim=True)
    est = est - est.mean(-1, keepdim=True)
    alpha = (est * ref).sum(-1, keepdim=True) / ((ref * ref).sum(-1, keepdim=True) + eps)
    target = alpha * ref
    noise = est - target
    ratio = (target * target).sum(-1) / ((noise * noise).sum(-1) + eps)
    return -(10 * ratio.add(eps).log10()).mean()


@in_float32
def neg_estoi(est: Any, ref: Any, rate: int) -> Any:
    """Mean negative extended STOI (Jensen & Taal 2016) over the batch, est and ref (batch,
    samples) at `rate` Hz: pystoi's algorithm in torch with a gradient
    (`harness.metrics.fast.stoi.estoi_differentiable`; the `estoi` metric equals it item by item
    up to its 1e-12 band-power floor). An item with under 30 frames of speech (ESTOI's segment)
    is left out of the mean; a batch of only such items gives 0 (no gradient)."""
    from harness.metrics.fast.stoi import TooShort, estoi_differentiable

    values = []
    for e, r in zip(est, ref, strict=True):
        try:
            values.append(estoi_differentiable(r[None], e[None], rate)[0])
        except TooShort:
            continue
    if not values:
        return est.sum() * 0.0
    import torch

    return -torch.stack(values).mean()
