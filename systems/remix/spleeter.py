"""A Spleeter-style separator (Hennequin et al. 2020, the published 4-stem configuration), written
in torch: one U-Net per stem on the magnitude STFT of the stereo mixture, soft masks.

Per stem (`UNet`): six encoder layers (5x5 conv, stride 2, TensorFlow "same" padding, batch norm,
leaky ReLU 0.2) with `filters` channels (16 ... 512 in the paper); six decoder layers (5x5
transposed conv, stride 2, ReLU, batch norm, dropout 0.5 on the first three) each concatenated
with the encoder's convolution output of the same size, the last one to a single channel; then a
4x4 convolution of dilation 2 to the input's channels and a sigmoid: the stem's mask. As in
Spleeter's code, the first decoder layer takes the last encoder convolution before its batch
norm and activation (which Spleeter computes and discards, so they are left out here), and the
skips are the encoder convolutions' outputs before their batch norm.

Training (systems/remix/train_spleeter.py): L1 between mask x mixture magnitude and the stem's
magnitude, summed over stems. Separation (`separate`): the U-Nets' magnitude estimates become
ratio masks (power 2, normalised over the stems: Spleeter's `separation_exponent` 2), extended
above the model's `bins` (Spleeter's `mask_extension`: "average" repeats each frame's mean mask,
"zeros" drops the band), applied to the mixture's complex STFT; optionally a multichannel Wiener
filter (the `norbert` package, which Spleeter itself uses) on the estimates instead. With ratio
masks the stems sum to the mixture.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from harness.tasks.music_remix import STEMS

RATE = 44100
# The published 4-stem configuration (4stems.json): 44.1 kHz stereo, frame 4096, hop 1024,
# patches of 512 frames x 1024 bins; 9.83 M parameters per stem, 39.3 M in all.
ARCH_PAPER: dict[str, Any] = {"stems": list(STEMS), "channels": 2, "frame": 4096, "hop": 1024,
                              "bins": 1024, "frames": 512, "filters": [16, 32, 64, 128, 256, 512],
                              "kernel": 5, "dropout": 0.5, "leaky": 0.2}
# The shipped size: every layer a quarter as wide (2.46 M parameters, 9.8 MB), 128-frame patches.
ARCH_SMALL: dict[str, Any] = {**ARCH_PAPER, "frames": 128, "filters": [4, 8, 16, 32, 64, 128]}
EPS = 1e-10  # Spleeter's EPSILON in its ratio masks


def _same_pad(kernel: int, stride: int) -> tuple[int, int]:
    """TensorFlow's "same" padding (before, after) for an input divisible by the stride."""
    total = max(kernel - stride, 0)
    return total // 2, total - total // 2


class UNet(nn.Module):
    """One stem's U-Net: (batch, channels, frames, bins) magnitudes -> a mask of that shape."""

    def __init__(self, cfg: dict[str, Any]) -> None:
        super().__init__()
        f, k, c = [int(v) for v in cfg["filters"]], int(cfg["kernel"]), int(cfg["channels"])
        self.pad = _same_pad(k, 2)
        self.leaky, self.p = float(cfg["leaky"]), float(cfg["dropout"])
        self.enc = nn.ModuleList(nn.Conv2d(cin, cout, k, stride=2)
                                 for cin, cout in zip([c] + f[:-1], f, strict=True))
        self.enc_bn = nn.ModuleList(nn.BatchNorm2d(n) for n in f[:-1])  # the last one is unused
        outs = list(reversed(f[:-1])) + [1]
        ins = [f[-1]] + [2 * n for n in reversed(f[:-1])]
        self.dec = nn.ModuleList(nn.ConvTranspose2d(i, o, k, stride=2, padding=k // 2, output_padding=1)
                                 for i, o in zip(ins, outs, strict=True))
        self.dec_bn = nn.ModuleList(nn.BatchNorm2d(n) for n in outs)
        self.out = nn.Conv2d(1, c, 4, dilation=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a, b = self.pad
        convs, h = [], x
        for i, conv in enumerate(self.enc):
            y = conv(F.pad(h, (a, b, a, b)))
            convs.append(y)
            if i < len(self.enc_bn):
                h = F.leaky_relu(self.enc_bn[i](y), self.leaky)
        u = convs[-1]
        for i, (deconv, bn) in enumerate(zip(self.dec, self.dec_bn, strict=True)):
            u = bn(F.relu(deconv(u)))
            if i < 3:
                u = F.dropout(u, self.p, self.training)
            if i < len(self.dec) - 1:
                u = torch.cat([convs[-2 - i], u], dim=1)
        return torch.sigmoid(self.out(F.pad(u, (3, 3, 3, 3))))  # 4x4, dilation 2, "same"


class Spleeter(nn.Module):
    """One U-Net per stem; forward(magnitudes) -> {stem: mask x magnitudes}."""

    def __init__(self, cfg: dict[str, Any]) -> None:
        super().__init__()
        self.cfg = dict(cfg)
        self.stems = tuple(cfg["stems"])
        self.nets = nn.ModuleDict({s: UNet(cfg) for s in self.stems})

    def forward(self, mag: torch.Tensor) -> dict[str, torch.Tensor]:
        return {s: net(mag) * mag for s, net in self.nets.items()}


def stft(x, cfg: dict[str, Any]):
    """Complex STFT (batch, channels, frames, all bins) of a (batch, channels, samples) tensor
    (periodic Hann window, centred frames)."""
    b, c, n = x.shape
    w = torch.hann_window(int(cfg["frame"]), device=x.device, dtype=x.dtype)
    s = torch.stft(x.reshape(b * c, n), int(cfg["frame"]), int(cfg["hop"]), window=w,
                   center=True, return_complex=True)
    return s.reshape(b, c, *s.shape[-2:]).transpose(-1, -2)


def istft(spec, cfg: dict[str, Any], length: int):
    b, c, t, f = spec.shape
    w = torch.hann_window(int(cfg["frame"]), device=spec.device, dtype=torch.float32 if
                          spec.dtype == torch.complex64 else torch.float64)
    y = torch.istft(spec.transpose(-1, -2).reshape(b * c, f, t), int(cfg["frame"]), int(cfg["hop"]),
                    window=w, center=True, length=length)
    return y.reshape(b, c, length)


def model_input(spec, cfg: dict[str, Any]):
    """The model's input: magnitudes of the first `bins` bins, frames padded to a multiple of
    2^layers (the U-Net halves them that many times)."""
    mag = spec[..., : int(cfg["bins"])].abs()
    m = 2 ** len(cfg["filters"])
    pad = (-mag.shape[-2]) % m
    return torch.nn.functional.pad(mag, (0, 0, 0, pad)), mag.shape[-2]


def separate(model, x: np.ndarray, device: str = "cpu", mask_extension: str = "average",
             wiener: bool = False, wiener_iterations: int = 1) -> dict[str, np.ndarray]:
    """Stems of a (channels, samples) mixture at RATE with the model's channels."""
    cfg = model.cfg
    n = x.shape[-1]
    with torch.inference_mode():
        t = torch.as_tensor(np.ascontiguousarray(x), dtype=torch.float32, device=device)[None]
        spec = stft(t, cfg)  # (1, C, T, F_all)
        mag, frames = model_input(spec, cfg)
        est = {s: v[..., :frames, :] for s, v in model(mag).items()}
        power = {s: v**2 for s, v in est.items()}
        total = sum(power.values())
        masks = {s: (p + EPS / len(power)) / (total + EPS) for s, p in power.items()}
        extra = spec.shape[-1] - int(cfg["bins"])
        out = {}
        for s, m in masks.items():
            if mask_extension == "average":
                ext = m.mean(dim=-1, keepdim=True).expand(*m.shape[:-1], extra)
            else:
                ext = torch.zeros(*m.shape[:-1], extra, device=m.device, dtype=m.dtype)
            masks[s] = torch.cat([m, ext], dim=-1)
        if wiener:
            import norbert

            X = spec[0].permute(1, 2, 0).cpu().numpy().astype(np.complex128)  # (T, F, C)
            v = np.stack([(masks[s][0] * spec[0].abs()).permute(1, 2, 0).cpu().numpy()
                          for s in model.stems], axis=-1)
            y = norbert.wiener(v.astype(np.float64), X, iterations=int(wiener_iterations))
            for i, s in enumerate(model.stems):
                ys = torch.as_tensor(np.ascontiguousarray(y[..., i].transpose(2, 0, 1)))[None]
                out[s] = istft(ys, cfg, n)[0].double().numpy()
            return out
        for s, m in masks.items():
            out[s] = istft(spec * m, cfg, n)[0].double().cpu().numpy()
    return out


def parameter_count(cfg: dict[str, Any]) -> int:
    return sum(p.numel() for p in Spleeter(cfg).parameters())


class SpleeterSeparator:
    """The remix pipeline's `spleeter` backend: a local harness checkpoint (the shipped small
    one by default: systems/remix/checkpoints/spleeter-small.safetensors)."""

    name = "spleeter"
    needs_item = False

    def __init__(self, checkpoint: str = "", mask_extension: str = "average", wiener: bool = False,
                 wiener_iterations: int = 1) -> None:
        from harness.errors import ConfigError

        if mask_extension not in ("average", "zeros"):
            raise ConfigError(f"separator spleeter: mask_extension must be average or zeros, "
                              f"not {mask_extension!r}")
        self.checkpoint = checkpoint or str(default_checkpoint())
        self.check_checkpoint()
        self.mask_extension, self.wiener = mask_extension, bool(wiener)
        self.wiener_iterations = int(wiener_iterations)
        self.device = "cpu"
        self.model = None

    def check_checkpoint(self) -> None:
        """At plan time: the file is there and its sidecar says it is a spleeter checkpoint (the
        weights are checked against the sidecar when they are loaded)."""
        from pathlib import Path

        from harness import checkpoints
        from harness.errors import CheckpointError

        path = Path(self.checkpoint)
        if not path.is_file():
            raise CheckpointError(f"{path}: no such checkpoint file (separator spleeter: "
                                  "separator_options.checkpoint)")
        name = checkpoints.read_record(path)["architecture"]["name"]
        if name != "spleeter":
            raise CheckpointError(f"{path}: a {name!r} checkpoint, expected 'spleeter'")

    def load(self):
        if self.model is None:
            from harness import checkpoints

            tensors, record = checkpoints.load(self.checkpoint, "spleeter")
            model = Spleeter(record["architecture"]["config"])
            checkpoints.load_into(model, tensors, self.checkpoint)
            self.model = model.to(self.device).eval().requires_grad_(False)
        return self.model

    def prepare(self, device: str) -> None:
        self.device = device
        self.model = None
        self.load()

    def digest(self) -> str:
        from harness import checkpoints

        try:
            return checkpoints.read_record(self.checkpoint).get("sha256", "")
        except Exception:
            return "missing"

    def separate(self, x: np.ndarray, rate: int) -> dict[str, np.ndarray]:
        from harness.audio import resample_samples

        model = self.load()
        c = int(model.cfg["channels"])
        y = x if x.ndim == 2 else x[None]
        y = y.mean(axis=0, keepdims=True) if c == 1 else (np.repeat(y, c, axis=0) if len(y) == 1 else y)
        if rate != RATE:
            y = resample_samples(y, rate, RATE)
        out = separate(model, y, self.device, self.mask_extension, self.wiener, self.wiener_iterations)
        for s, v in out.items():
            if rate != RATE:
                v = resample_samples(v, RATE, rate)
                v = np.pad(v[..., : x.shape[-1]], [(0, 0), (0, max(0, x.shape[-1] - v.shape[-1]))])
            if x.ndim == 1:
                v = v.mean(axis=0)
            elif v.shape[0] != x.shape[0]:
                v = np.repeat(v.mean(axis=0, keepdims=True), x.shape[0], axis=0)
            out[s] = v
        return out


def default_checkpoint():
    from pathlib import Path

    return Path(__file__).resolve().parent / "checkpoints" / "spleeter-small.safetensors"
