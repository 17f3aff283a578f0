"""The audio super-resolution U-Net of Kuleshov, Enam & Ermon (ICLR workshop 2017): the network.

Input: the low-rate signal spline-interpolated onto the high-rate grid. B down blocks (Conv1d
stride 2, LeakyReLU 0.2), a bottleneck (Conv1d stride 2, dropout, LeakyReLU), B up blocks (Conv1d
to 2F channels, dropout, ReLU, 1-D subpixel shuffle (2F, n) -> (F, 2n), concatenated with the
matching down block's output), a last Conv1d to 2 channels and a subpixel shuffle to one channel,
added to the input: the network predicts the residual the spline misses.

Not in the paper (ARCH_SMALL, documented in the README): the inverse ratio as a second, constant
input channel, so one model serves every ratio (the paper trains one per ratio); the last conv
initialised to zero, so training starts at the spline.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

# The paper's network (B = 4): its filter counts and kernel sizes (the authors' audiounet.py).
ARCH_PAPER: dict[str, Any] = {
    "filters": [128, 384, 512, 512], "kernels": [65, 33, 17, 9], "bottleneck": 512,
    "bottleneck_kernel": 9, "final_kernel": 9, "dropout": 0.5, "condition": False, "zero_last": False,
}
# The shipped small network: the same shape, a quarter of the channels or fewer.
ARCH_SMALL: dict[str, Any] = {
    "filters": [32, 64, 128, 128], "kernels": [65, 33, 17, 9], "bottleneck": 128,
    "bottleneck_kernel": 9, "final_kernel": 9, "dropout": 0.0, "condition": True, "zero_last": True,
}


def subpixel1d(x: torch.Tensor, r: int = 2) -> torch.Tensor:
    """1-D subpixel shuffle (Shi et al. 2016, the paper's SubPixel1D): (B, r*C, N) -> (B, C, r*N)
    with out[b, c, r*n + i] = x[b, i*C + c, n] (TensorFlow's batch_to_space on the channels, as
    the authors' code does)."""
    b, rc, n = x.shape
    if rc % r:
        raise ValueError(f"subpixel1d: {rc} channels are not a multiple of {r}")
    c = rc // r
    return x.view(b, r, c, n).permute(0, 2, 3, 1).reshape(b, c, n * r)


class UNetSR(nn.Module):
    def __init__(self, arch: dict[str, Any]) -> None:
        super().__init__()
        self.arch = dict(arch)
        filters, kernels = list(arch["filters"]), list(arch["kernels"])
        if len(filters) != len(kernels) or not filters:
            raise ValueError("unet-sr: arch.filters and arch.kernels must be non-empty and of one length")
        c_in = 2 if arch["condition"] else 1
        self.down = nn.ModuleList()
        prev = c_in
        for f, k in zip(filters, kernels, strict=True):
            self.down.append(nn.Conv1d(prev, f, k, stride=2, padding=k // 2))
            prev = f
        bk = int(arch["bottleneck_kernel"])
        self.bottleneck = nn.Conv1d(prev, int(arch["bottleneck"]), bk, stride=2, padding=bk // 2)
        prev = int(arch["bottleneck"])
        self.up = nn.ModuleList()
        for f, k in reversed(list(zip(filters, kernels, strict=True))):
            self.up.append(nn.Conv1d(prev, 2 * f, k, padding=k // 2))
            prev = f + f  # the shuffled F channels and the matching down block's F
        fk = int(arch["final_kernel"])
        self.final = nn.Conv1d(prev, 2, fk, padding=fk // 2)
        self.dropout = float(arch["dropout"])
        if arch.get("zero_last"):
            nn.init.zeros_(self.final.weight)
            nn.init.zeros_(self.final.bias)

    @property
    def multiple(self) -> int:
        """Input lengths must be multiples of this (one halving per down block and the bottleneck)."""
        return 2 ** (len(self.down) + 1)

    def forward(self, x: torch.Tensor, ratio: torch.Tensor | float | None = None) -> torch.Tensor:
        """x: (B, 1, N) spline-upsampled signal, N a multiple of `multiple`; ratio: the
        upsampling ratio per example (needed when the model is conditioned)."""
        h = x
        if self.arch["condition"]:
            if ratio is None:
                raise ValueError("unet-sr: this model is conditioned on the ratio; give one")
            r = torch.as_tensor(ratio, dtype=x.dtype, device=x.device).reshape(-1, 1, 1)
            h = torch.cat([x, (1.0 / r).expand(x.shape[0], 1, x.shape[2])], dim=1)
        skips = []
        for conv in self.down:
            h = F.leaky_relu(conv(h), 0.2)
            skips.append(h)
        h = F.leaky_relu(F.dropout(self.bottleneck(h), self.dropout, self.training), 0.2)
        for conv, skip in zip(self.up, reversed(skips), strict=True):
            h = F.relu(F.dropout(conv(h), self.dropout, self.training))
            h = torch.cat([subpixel1d(h), skip], dim=1)
        return x + subpixel1d(self.final(h))


def parameter_count(arch: dict[str, Any]) -> int:
    return sum(p.numel() for p in UNetSR(arch).parameters())


def upsample(model: UNetSR, x: np.ndarray, ratio: int, chunk: int = 16384 * 8) -> np.ndarray:
    """Super-resolve a spline-upsampled signal (any length): scaled to RMS 0.1 as in training
    and back, zero-padded to the model's multiple, in chunks with a margin of the model's
    receptive field on each side so that long inputs fit in memory."""
    scale = 0.1 / max(float(np.sqrt(np.mean(x ** 2))), 1e-8)
    n, m = len(x), model.multiple
    margin = receptive_samples(model.arch)
    margin = -(-margin // m) * m
    chunk = max(m, chunk // m * m)
    out = np.zeros(n)
    device = next(model.parameters()).device
    with torch.no_grad():
        for start in range(0, n, chunk):
            a, b = max(0, start - margin), min(n, start + chunk + margin)
            seg = x[a:b] * scale
            pad = -len(seg) % m
            t = torch.tensor(np.pad(seg, (0, pad)), dtype=torch.float32, device=device)[None, None]
            y = model(t, float(ratio))[0, 0].cpu().numpy().astype(np.float64)
            k = min(chunk, n - start)
            out[start:start + k] = y[start - a: start - a + k]
    return out / scale


def receptive_samples(arch: dict[str, Any]) -> int:
    """Half-width of the receptive field in input samples (an upper bound)."""
    stride, half = 1, 0
    for k in arch["kernels"]:
        stride *= 2
        half += (k // 2) * stride
    half += (int(arch["bottleneck_kernel"]) // 2) * stride * 2
    for k in reversed(arch["kernels"]):
        half += (k // 2) * stride
        stride //= 2
    return half + int(arch["final_kernel"]) // 2
