"""MRX, the multi-resolution cross-net of the cocktail-fork paper (Petermann, Wichern, Wisdom &
Le Roux 2022; facts in ../shared/reference/systems.md), for a mono mixture -> speech, music, sfx.

Per resolution r (window w_r, shared hop): |STFT| -> BatchNorm over bins -> Linear(F_r -> H, no
bias) -> BatchNorm -> tanh; the resolutions' encodings averaged; `blstms` stacks of `layers`
BLSTM layers (H/2 per direction) on it, averaged; concatenated with the averaged encoding
(2H); per source and resolution a decoder Linear(2H -> H) + BN + ReLU -> Linear(H -> F_r) + BN +
ReLU gives a magnitude mask; each masked complex STFT inverted, the resolutions' signals summed
(so each resolution's mask learns its share).

The paper: windows 1024/2048/8192, hop 256, H 512, three 3-layer BLSTMs (about 30 M
parameters). The shipped small model: windows 1024/2048/4096, hop 512, H 128, one 2-layer BLSTM.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

SOURCES = ("speech", "music", "sfx")
ARCH_PAPER = {"windows": [1024, 2048, 8192], "hop": 256, "hidden": 512, "blstms": 3, "layers": 3,
              "dropout": 0.4}
ARCH_SMALL = {"windows": [1024, 2048, 4096], "hop": 512, "hidden": 128, "blstms": 1, "layers": 2,
              "dropout": 0.2}


class MRX(nn.Module):
    def __init__(self, arch: dict[str, Any]) -> None:
        super().__init__()
        self.arch = dict(arch)
        self.windows = [int(w) for w in arch["windows"]]
        self.hop = int(arch["hop"])
        # torch.stft(normalized=True) as the cocktail-fork repository's MRX (its converted
        # checkpoints); the harness's own training uses the plain STFT
        self.normalized = bool(arch.get("normalized", False))
        h = int(arch["hidden"])
        bins = [w // 2 + 1 for w in self.windows]
        self.in_norm = nn.ModuleList([nn.BatchNorm1d(f) for f in bins])
        self.enc = nn.ModuleList([nn.Linear(f, h, bias=False) for f in bins])
        self.enc_norm = nn.ModuleList([nn.BatchNorm1d(h) for _ in bins])
        self.blstm = nn.ModuleList([
            nn.LSTM(h, h // 2, num_layers=int(arch["layers"]), bidirectional=True, batch_first=True,
                    dropout=float(arch["dropout"]) if int(arch["layers"]) > 1 else 0.0)
            for _ in range(int(arch["blstms"]))])
        keys = [(f"{s}_{i}", f) for s in SOURCES for i, f in enumerate(bins)]
        self.dec1 = nn.ModuleDict({k: nn.Linear(2 * h, h) for k, _ in keys})
        self.dec1_norm = nn.ModuleDict({k: nn.BatchNorm1d(h) for k, _ in keys})
        self.dec2 = nn.ModuleDict({k: nn.Linear(h, f) for k, f in keys})
        self.dec2_norm = nn.ModuleDict({k: nn.BatchNorm1d(f) for k, f in keys})
        for i, w in enumerate(self.windows):
            self.register_buffer(f"window_{i}", torch.hann_window(w), persistent=False)

    @staticmethod
    def _bn(norm: nn.BatchNorm1d, x: torch.Tensor) -> torch.Tensor:  # x: (batch, frames, features)
        return norm(x.transpose(1, 2)).transpose(1, 2)

    def forward(self, x: torch.Tensor, with_masks: bool = False) -> Any:
        """x: (batch, samples) -> {source: (batch, samples)}; with `with_masks`, also
        {"<source>_<resolution>": mask (batch, bins, frames)}."""
        n = x.shape[-1]
        specs, codes = [], []
        frames = None
        for i, w in enumerate(self.windows):
            spec = torch.stft(x, w, self.hop, window=getattr(self, f"window_{i}"), center=True,
                              normalized=self.normalized, return_complex=True)  # (batch, bins, frames)
            frames = spec.shape[-1] if frames is None else min(frames, spec.shape[-1])
            specs.append(spec)
        for i, spec in enumerate(specs):
            mag = spec[..., :frames].abs().transpose(1, 2)  # (batch, frames, bins)
            z = self._bn(self.in_norm[i], mag)
            z = torch.tanh(self._bn(self.enc_norm[i], self.enc[i](z)))
            codes.append(z)
        code = torch.stack(codes).mean(0)
        seq = torch.stack([lstm(code)[0] for lstm in self.blstm]).mean(0)
        feat = torch.cat([code, seq], dim=-1)
        out, masks = {}, {}
        for s in SOURCES:
            y = 0
            for i, (w, spec) in enumerate(zip(self.windows, specs, strict=True)):
                k = f"{s}_{i}"
                hdn = torch.relu(self._bn(self.dec1_norm[k], self.dec1[k](feat)))
                mask = torch.relu(self._bn(self.dec2_norm[k], self.dec2[k](hdn))).transpose(1, 2)
                masks[k] = mask
                masked = spec[..., :frames] * mask
                y = y + torch.istft(masked, w, self.hop, window=getattr(self, f"window_{i}"),
                                    center=True, normalized=self.normalized, length=n)
            out[s] = y
        return (out, masks) if with_masks else out


def parameter_count(arch: dict[str, Any]) -> int:
    return sum(p.numel() for p in MRX(arch).parameters())


