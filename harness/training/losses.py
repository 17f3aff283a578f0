"""Training losses shared by more than one learned system (torch)."""

from __future__ import annotations

from typing import Any


def neg_snr(est: Any, ref: Any, eps: float = 1e-8) -> Any:
    """Mean negative SNR (dB) over the batch, est and ref (batch, samples): 10 log10 of the
    reference's energy over the error's. Unlike SI-SDR it is not scale-invariant, so it pins the
    output's level (the `snr` metric equals it item by item)."""
    signal = (ref * ref).sum(-1)
    noise = ((ref - est) ** 2).sum(-1)
    return -(10 * (signal / (noise + eps)).add(eps).log10()).mean()


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
