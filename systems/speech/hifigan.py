"""HiFi-GAN speech enhancement (Su, Jin & Finkelstein, Interspeech 2020): the networks and losses.

Generator: a non-causal feed-forward WaveNet (1x1 input conv to R channels; stacks of dilated
kernel-3 convs, dilations 1, 2, ..., 2^(L-1), gated tanh x sigmoid, 1x1 to a residual and a skip
path; the skips summed -> ReLU -> conv k3 -> ReLU -> conv k3 -> 1x1 to one channel), then a
postnet of Conv1d layers with tanh between them, added to the WaveNet's output.
Discriminators: three waveform discriminators (MelGAN-like) at 16, 8 and 4 kHz (average-pool
downsampling by 2 between them), and one on the log-mel spectrogram (n_fft 2048, hop 512, 80
mels 20-8000 Hz, gated Conv2d blocks).
Losses: L1 on samples; MSE between dB spectrograms at (2048, 512) and (512, 128); hinge
adversarial; L1 deep feature matching (on the generator's side only).

Two sizes (ARCH_PAPER, ARCH_SMALL); `parameter_count` gives each.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from harness.training.losses import in_float32

RATE = 16000

ARCH_PAPER: dict[str, Any] = {
    "channels": 128, "gate_channels": 256, "skip_channels": 128, "stacks": 2, "layers": 10,
    "head_channels": [2048, 256], "postnet_layers": 12, "postnet_channels": 128,
    "postnet_kernel": 31, "disc_channels": [16, 64, 256, 1024, 1024], "mel_channels": 32,
    "input_skip": False,
}
ARCH_SMALL: dict[str, Any] = {
    "channels": 32, "gate_channels": 64, "skip_channels": 32, "stacks": 2, "layers": 10,
    "head_channels": [128, 64], "postnet_layers": 4, "postnet_channels": 32,
    "postnet_kernel": 31, "disc_channels": [16, 32, 64, 128, 128], "mel_channels": 16,
    # Not in the paper: the input added to the WaveNet's output, and the last layers of the
    # WaveNet's head and of the postnet initialised to zero, so that training starts exactly at
    # the identity (with a few thousand CPU steps the plain mapping stays below its own input).
    "input_skip": True,
}


# ------------------------------------------------------------------ generator
class WaveNet(nn.Module):
    def __init__(self, channels: int, gate_channels: int, skip_channels: int, stacks: int,
                 layers: int, head_channels: list[int], **_: Any) -> None:
        super().__init__()
        self.inp = nn.Conv1d(1, channels, 1)
        self.dilations = [2 ** i for _ in range(stacks) for i in range(layers)]
        self.gates = nn.ModuleList(nn.Conv1d(channels, gate_channels, 3, dilation=d, padding=d)
                                   for d in self.dilations)
        half = gate_channels // 2
        self.res = nn.ModuleList(nn.Conv1d(half, channels, 1) for _ in self.dilations)
        self.skip = nn.ModuleList(nn.Conv1d(half, skip_channels, 1) for _ in self.dilations)
        a, b = head_channels
        self.head = nn.Sequential(nn.ReLU(), nn.Conv1d(skip_channels, a, 3, padding=1), nn.ReLU(),
                                  nn.Conv1d(a, b, 3, padding=1), nn.Conv1d(b, 1, 1))

    @property
    def receptive_field(self) -> int:
        return 1 + 2 * sum(self.dilations) + 4  # two k3 convs in the head

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, 1, T) -> (B, 1, T)
        h = self.inp(x)
        skips = 0
        for gate, res, skip in zip(self.gates, self.res, self.skip, strict=True):
            a, b = gate(h).chunk(2, dim=1)
            z = torch.tanh(a) * torch.sigmoid(b)
            h = h + res(z)
            skips = skips + skip(z)
        return self.head(skips)


class Postnet(nn.Module):
    def __init__(self, postnet_layers: int, postnet_channels: int, postnet_kernel: int, **_: Any) -> None:
        super().__init__()
        c, k = postnet_channels, postnet_kernel
        sizes = [1] + [c] * (postnet_layers - 1) + [1]
        self.convs = nn.ModuleList(nn.Conv1d(i, o, k, padding=k // 2)
                                   for i, o in zip(sizes, sizes[1:], strict=False))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = x
        for i, conv in enumerate(self.convs):
            h = conv(h)
            if i < len(self.convs) - 1:
                h = torch.tanh(h)
        return x + h


class Generator(nn.Module):
    def __init__(self, arch: dict[str, Any]) -> None:
        super().__init__()
        self.wavenet = WaveNet(**arch)
        self.postnet = Postnet(**arch)
        self.input_skip = bool(arch.get("input_skip", False))
        if self.input_skip:  # start exactly at the identity: both residual branches output 0
            for conv in (self.wavenet.head[-1], self.postnet.convs[-1]):
                nn.init.zeros_(conv.weight)
                nn.init.zeros_(conv.bias)

    def forward(self, x: torch.Tensor, postnet: bool = True) -> torch.Tensor:
        w = self.wavenet(x) + (x if self.input_skip else 0)
        return self.postnet(w) if postnet else w


# ------------------------------------------------------------------ discriminators
class WaveDiscriminator(nn.Module):
    """MelGAN's: conv k15, four strided grouped convs k41 stride 4, conv k5, conv k3 to one map."""

    def __init__(self, channels: list[int]) -> None:
        super().__init__()
        c0 = channels[0]
        layers = [nn.Conv1d(1, c0, 15, padding=7)]
        for i, o in zip(channels[:-1], channels[1:], strict=True):
            layers.append(nn.Conv1d(i, o, 41, stride=4, padding=20, groups=max(1, i // 4)))
        layers.append(nn.Conv1d(channels[-1], channels[-1], 5, padding=2))
        self.layers = nn.ModuleList(layers)
        self.out = nn.Conv1d(channels[-1], 1, 3, padding=1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        feats = []
        for layer in self.layers:
            x = F.leaky_relu(layer(x), 0.2)
            feats.append(x)
        return self.out(x), feats


def mel_filterbank(n_fft: int, rate: int, n_mels: int, fmin: float, fmax: float) -> np.ndarray:
    """HTK-style triangular mel filters, (n_mels, n_fft // 2 + 1), each peaking at 1."""
    def mel(f):
        return 2595.0 * np.log10(1.0 + np.asarray(f) / 700.0)

    def hz(m):
        return 700.0 * (10 ** (np.asarray(m) / 2595.0) - 1.0)

    edges = hz(np.linspace(mel(fmin), mel(fmax), n_mels + 2))
    freqs = np.linspace(0, rate / 2, n_fft // 2 + 1)
    lo, mid, hi = edges[:-2, None], edges[1:-1, None], edges[2:, None]
    up = (freqs[None] - lo) / (mid - lo)
    down = (hi - freqs[None]) / (hi - mid)
    return np.maximum(0.0, np.minimum(up, down))


class MelDiscriminator(nn.Module):
    """On the log-mel spectrogram (n_fft 2048, hop 512, 80 mels, 20-8000 Hz): gated Conv2d blocks
    (conv -> a x sigmoid(b)), strided in time and frequency, then a conv to one map."""

    def __init__(self, channels: int, n_fft: int = 2048, hop: int = 512, n_mels: int = 80) -> None:
        super().__init__()
        self.n_fft, self.hop = n_fft, hop
        self.register_buffer("window", torch.hann_window(n_fft), persistent=False)
        self.register_buffer("mel", torch.tensor(mel_filterbank(n_fft, RATE, n_mels, 20.0, 8000.0),
                                                 dtype=torch.float32), persistent=False)
        sizes = [1, channels, channels * 2, channels * 4]
        self.blocks = nn.ModuleList(nn.Conv2d(i, 2 * o, 3, stride=(2, 1) if k else 1, padding=1)
                                    for k, (i, o) in enumerate(zip(sizes, sizes[1:], strict=False)))
        self.out = nn.Conv2d(sizes[-1], 1, 3, padding=1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        spec = torch.stft(x[:, 0], self.n_fft, self.hop, window=self.window, return_complex=True)
        m = torch.log(torch.clamp(self.mel @ spec.abs() ** 2, min=1e-8))[:, None]  # (B,1,mels,T)
        feats = []
        for block in self.blocks:
            a, b = block(m).chunk(2, dim=1)
            m = a * torch.sigmoid(b)
            feats.append(m)
        return self.out(m), feats


class Discriminators(nn.Module):
    def __init__(self, arch: dict[str, Any]) -> None:
        super().__init__()
        self.wave = nn.ModuleList(WaveDiscriminator(arch["disc_channels"]) for _ in range(3))
        self.pool = nn.AvgPool1d(4, stride=2, padding=1, count_include_pad=False)
        self.mel = MelDiscriminator(arch["mel_channels"])

    @staticmethod
    def rates() -> list[int]:
        return [RATE, RATE // 2, RATE // 4]

    def inputs(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The waveform discriminators' inputs: x at 16 kHz, pooled to 8 and 4 kHz."""
        out = [x]
        for _ in range(2):
            out.append(self.pool(out[-1]))
        return out

    def forward(self, x: torch.Tensor) -> list[tuple[torch.Tensor, list[torch.Tensor]]]:
        outs = [d(xi) for d, xi in zip(self.wave, self.inputs(x), strict=True)]
        return outs + [self.mel(x)]


# ------------------------------------------------------------------ losses
@in_float32
def l1_loss(y: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    return (y - x).abs().mean()


SPEC_RESOLUTIONS = ((2048, 512), (512, 128))


@in_float32
def spectrogram_loss(y: torch.Tensor, x: torch.Tensor,
                     resolutions=SPEC_RESOLUTIONS, eps: float = 1e-8) -> torch.Tensor:
    """Mean over resolutions of the MSE between 10 log10(power + eps) spectrograms (Hann window,
    one scaling for both signals)."""
    total = 0.0
    for n_fft, hop in resolutions:
        w = torch.hann_window(n_fft, device=y.device, dtype=y.dtype)
        sy = torch.stft(y.reshape(-1, y.shape[-1]), n_fft, hop, window=w, return_complex=True)
        sx = torch.stft(x.reshape(-1, x.shape[-1]), n_fft, hop, window=w, return_complex=True)
        dy = 10 * torch.log10(sy.abs() ** 2 + eps)
        dx = 10 * torch.log10(sx.abs() ** 2 + eps)
        total = total + F.mse_loss(dy, dx)
    return total / len(resolutions)


def hinge_d(real: list[torch.Tensor], fake: list[torch.Tensor]) -> torch.Tensor:
    """Discriminator hinge loss, summed over discriminators: mean relu(1 - D(x)) + mean relu(1 +
    D(G(z)))."""
    return sum(F.relu(1 - r).mean() + F.relu(1 + f).mean() for r, f in zip(real, fake, strict=True))


def hinge_g(fake: list[torch.Tensor]) -> torch.Tensor:
    return sum(-f.mean() for f in fake)


def feature_matching(real: list[list[torch.Tensor]], fake: list[list[torch.Tensor]]) -> torch.Tensor:
    """L1 between the discriminators' feature maps of the clean and the enhanced signal, mean per
    layer, summed; the clean side is detached (the generator's loss only)."""
    total = 0.0
    for rf, ff in zip(real, fake, strict=True):
        for r, f in zip(rf, ff, strict=True):
            total = total + (r.detach() - f).abs().mean()
    return total


def parameter_count(module: nn.Module) -> int:
    return int(sum(p.numel() for p in module.parameters()))


def enhance(generator: Generator, x: np.ndarray, chunk_s: float = 10.0) -> np.ndarray:
    """Enhance a 16 kHz signal: scaled to RMS 0.1 (as in training) and back, in chunks of
    `chunk_s` seconds with a receptive-field margin on each side, so any length fits in memory."""
    scale = 0.1 / max(float(np.sqrt(np.mean(x ** 2))), 1e-8)
    n, chunk = len(x), int(chunk_s * RATE)
    post = generator.postnet.convs
    margin = generator.wavenet.receptive_field // 2 + post[0].kernel_size[0] * len(post)
    out = np.zeros(n)
    device = next(generator.parameters()).device
    with torch.no_grad():
        for start in range(0, n, chunk):
            a, b = max(0, start - margin), min(n, start + chunk + margin)
            seg = torch.tensor(x[a:b] * scale, dtype=torch.float32, device=device)[None, None]
            y = generator(seg)[0, 0].cpu().numpy().astype(np.float64)
            out[start:min(n, start + chunk)] = y[start - a: start - a + min(chunk, n - start)]
    return out / scale


def receptive_seconds(arch: dict[str, Any]) -> float:
    dil = sum(2 ** i for i in range(arch["layers"])) * arch["stacks"]
    return (1 + 2 * dil) / RATE

