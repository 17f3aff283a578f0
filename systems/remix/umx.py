"""Open-Unmix (Stöter et al. 2019) for the remix pipeline's `openunmix` separator, with the
published checkpoints' parameter names (a module of its own so that the separator pickles: the
run sends systems to worker processes). Imported only when the separator is built."""

from __future__ import annotations

import torch
from torch import nn

from harness.tasks.music_remix import STEMS


class OpenUnmix(nn.Module):
    """One target of Open-Unmix (Stöter et al. 2019): magnitude spectrogram in, magnitude out.
    fc1 (bins x channels -> hidden, no bias) + BN + tanh -> 3-layer BLSTM (hidden/2 per
    direction) -> concat skip -> fc2 + BN + ReLU -> fc3 + BN -> ReLU mask x input."""

    def __init__(self, nb_bins: int = 4097, nb_channels: int = 2, hidden_size: int = 512,
                 nb_layers: int = 3, max_bin: int | None = None, unidirectional: bool = False):
        super().__init__()
        self.nb_output_bins = nb_bins
        self.nb_bins = max_bin or nb_bins
        self.hidden_size = hidden_size
        self.nb_channels = nb_channels
        self.fc1 = nn.Linear(self.nb_bins * nb_channels, hidden_size, bias=False)
        self.bn1 = nn.BatchNorm1d(hidden_size)
        lstm_hidden = hidden_size if unidirectional else hidden_size // 2
        self.lstm = nn.LSTM(input_size=hidden_size, hidden_size=lstm_hidden, num_layers=nb_layers,
                            bidirectional=not unidirectional, batch_first=False,
                            dropout=0.4 if nb_layers > 1 else 0.0)
        self.fc2 = nn.Linear(hidden_size * 2, hidden_size, bias=False)
        self.bn2 = nn.BatchNorm1d(hidden_size)
        self.fc3 = nn.Linear(hidden_size, self.nb_output_bins * nb_channels, bias=False)
        self.bn3 = nn.BatchNorm1d(self.nb_output_bins * nb_channels)
        self.input_mean = nn.Parameter(torch.zeros(self.nb_bins))
        self.input_scale = nn.Parameter(torch.ones(self.nb_bins))
        self.output_scale = nn.Parameter(torch.ones(self.nb_output_bins))
        self.output_mean = nn.Parameter(torch.ones(self.nb_output_bins))

    def forward(self, mag):  # (batch, channels, bins, frames)
        x = mag.permute(3, 0, 1, 2)  # (frames, batch, channels, bins)
        frames, batch, channels, bins = x.shape
        mix = x.detach().clone()
        x = x[..., : self.nb_bins]
        x = (x + self.input_mean) * self.input_scale
        x = self.fc1(x.reshape(-1, channels * self.nb_bins))
        x = torch.tanh(self.bn1(x)).reshape(frames, batch, self.hidden_size)
        out, _ = self.lstm(x)
        x = torch.cat([x, out], -1)
        x = torch.relu(self.bn2(self.fc2(x.reshape(-1, x.shape[-1]))))
        x = self.bn3(self.fc3(x)).reshape(frames, batch, channels, self.nb_output_bins)
        x = x * self.output_scale + self.output_mean
        x = torch.relu(x) * mix
        return x.permute(1, 2, 3, 0)

class UmxSeparator(nn.Module):
    """Four Open-Unmix targets on one STFT (n_fft 4096, hop 1024, Hann); the estimated
    magnitudes become soft masks (ratio of powers) on the complex mixture STFT: no
    multichannel Wiener post-filter. State-dict keys `target_models.<stem>.<param>`, as the
    published separator's."""

    def __init__(self, n_fft: int = 4096, n_hop: int = 1024, nb_channels: int = 2,
                 hidden_size: int = 512, nb_layers: int = 3, max_bin: int | None = None,
                 unidirectional: bool = False):
        super().__init__()
        self.n_fft, self.n_hop = n_fft, n_hop
        bins = n_fft // 2 + 1
        self.target_models = nn.ModuleDict({
            s: OpenUnmix(bins, nb_channels, hidden_size, nb_layers, max_bin, unidirectional)
            for s in STEMS
        })
        self.register_buffer("window", torch.hann_window(n_fft), persistent=False)

    def forward(self, x):  # (1, channels, frames)
        n = x.shape[-1]
        spec = torch.stft(x[0], self.n_fft, self.n_hop, window=self.window, center=True,
                          return_complex=True)  # (channels, bins, frames)
        mag = spec.abs()[None]
        est = {s: m(mag)[0] for s, m in self.target_models.items()}
        power = {s: v**2 for s, v in est.items()}
        total = sum(power.values()) + 1e-10
        out = {}
        for s in STEMS:
            y = torch.istft(spec * (power[s] / total), self.n_fft, self.n_hop,
                            window=self.window, center=True, length=n)
            out[s] = y
        return out
