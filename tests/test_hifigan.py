"""HiFi-GAN (Su et al. 2020): each loss against a hand computation, the discriminators' input
rates, the mel filters, the WaveNet's receptive field, and the two sizes' parameter counts."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from systems.speech import hifigan as hg


def test_l1_hinge_and_feature_matching_equal_hand_computed_values():
    y = torch.tensor([[[0.5, -1.0, 2.0, 0.0]]])
    x = torch.tensor([[[0.0, -0.5, 1.0, 1.0]]])
    assert float(hg.l1_loss(y, x)) == pytest.approx((0.5 + 0.5 + 1.0 + 1.0) / 4)
    real = [torch.tensor([0.5, 2.0]), torch.tensor([-1.0])]
    fake = [torch.tensor([-2.0, 0.5]), torch.tensor([0.0])]
    # D: mean(relu(1 - r)) + mean(relu(1 + f)) per discriminator, summed
    want_d = ((0.5 + 0.0) / 2 + (1.5 + 0.0) / 2) + (2.0 + 1.0)
    assert float(hg.hinge_d(real, fake)) == pytest.approx(want_d)
    assert float(hg.hinge_g(fake)) == pytest.approx(-(-2.0 + 0.5) / 2 - 0.0)
    rf = [[torch.tensor([1.0, 2.0]), torch.tensor([[0.0]])], [torch.tensor([3.0])]]
    ff = [[torch.tensor([1.5, 1.0]), torch.tensor([[2.0]])], [torch.tensor([1.0])]]
    assert float(hg.feature_matching(rf, ff)) == pytest.approx((0.5 + 1.0) / 2 + 2.0 + 2.0)


def numpy_db_spectrogram(x: np.ndarray, n_fft: int, hop: int) -> np.ndarray:
    """torch.stft's framing written out: reflect-pad n_fft/2 each side, periodic Hann window."""
    pad = np.pad(x, n_fft // 2, mode="reflect")
    win = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(n_fft) / n_fft)
    frames = [pad[i:i + n_fft] * win for i in range(0, len(pad) - n_fft + 1, hop)]
    spec = np.abs(np.fft.rfft(np.array(frames), axis=1)) ** 2
    return 10 * np.log10(spec + 1e-8)


def test_spectrogram_loss_is_the_mse_of_db_spectrograms_at_both_resolutions():
    rng = np.random.default_rng(0)
    x = rng.standard_normal(4096) * 0.1
    y = x + 0.05 * rng.standard_normal(4096)
    want = np.mean([np.mean((numpy_db_spectrogram(y, n, h) - numpy_db_spectrogram(x, n, h)) ** 2)
                    for n, h in hg.SPEC_RESOLUTIONS])
    got = hg.spectrogram_loss(torch.tensor(y)[None, None], torch.tensor(x)[None, None])
    assert float(got) == pytest.approx(want, rel=1e-6)
    # the same signal scaled by 4 (12 dB) is 144 dB^2 away in every bin: no scale mismatch
    scaled = hg.spectrogram_loss(torch.tensor(4 * x)[None, None], torch.tensor(x)[None, None])
    assert float(scaled) == pytest.approx((20 * np.log10(4)) ** 2, rel=1e-3)


def test_mrstft_term_is_spectral_convergence_plus_log_magnitude_l1_at_three_resolutions():
    """The small configuration's extra loss (auraloss's multi-resolution STFT loss), against the
    formula of Yamamoto et al. 2020 written out in numpy: per resolution ||Y| - |X||_F / ||X||_F
    + mean |log |Y| - log |X||, averaged over (1024, 120, 600), (2048, 240, 1200), (512, 50, 240)."""
    from systems.speech.hifigan_train import HifiganTraining

    rng = np.random.default_rng(1)
    x = rng.standard_normal(6000) * 0.1
    y = 0.7 * x + 0.05 * rng.standard_normal(6000)

    def mag(s, n_fft, hop, win_len):
        pad = np.pad(s, n_fft // 2, mode="reflect")
        win = np.zeros(n_fft)
        a = (n_fft - win_len) // 2
        win[a:a + win_len] = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(win_len) / win_len)
        frames = np.array([pad[i:i + n_fft] * win for i in range(0, len(pad) - n_fft + 1, hop)])
        return np.sqrt(np.maximum(np.abs(np.fft.rfft(frames, axis=1)) ** 2, 1e-8))

    want = []
    for n_fft, hop, win_len in ((1024, 120, 600), (2048, 240, 1200), (512, 50, 240)):
        my, mx = mag(y, n_fft, hop, win_len), mag(x, n_fft, hop, win_len)
        want.append(np.linalg.norm(mx - my) / np.linalg.norm(mx) + np.mean(np.abs(np.log(my) - np.log(mx))))
    loss = HifiganTraining().mrstft(torch.tensor(y, dtype=torch.float64)[None, None],
                                    torch.tensor(x, dtype=torch.float64)[None, None])
    assert float(loss) == pytest.approx(np.mean(want), rel=1e-5)


def test_si_sdr_term_of_the_stage_loss_is_minus_the_metric_on_each_item():
    """`loss.sisdr` (not in the paper): the WaveNet stage's loss with only that weight is minus the
    mean over the batch of the `si_sdr` metric (harness.metrics.snr) on zero-mean signals."""
    from harness.metrics.snr import si_sdr_db
    from systems.speech.hifigan_train import HifiganTraining, default_config

    rng = np.random.default_rng(2)
    clean = rng.standard_normal((3, 1, 4000)) * 0.1
    clean -= clean.mean(-1, keepdims=True)
    noisy = clean + 0.05 * rng.standard_normal(clean.shape)
    cfg = default_config()
    cfg["loss"] = {k: 0.0 for k in cfg["loss"]} | {"sisdr": 1.0}

    class Identity(torch.nn.Module):
        def forward(self, x, postnet=False):
            return x - x.mean(-1, keepdim=True)

    loss, logs = HifiganTraining().loss(cfg, "wavenet", "generator", {"generator": Identity(),
                                        "discriminators": None},
                                        (torch.tensor(noisy), torch.tensor(clean)), {})
    want = -np.mean([si_sdr_db(noisy[i, 0] - noisy[i, 0].mean(), clean[i, 0]) for i in range(3)])
    assert float(loss) == pytest.approx(want, abs=1e-6)
    assert logs["si_sdr"] == pytest.approx(-want, abs=1e-6)


def test_snr_term_of_the_stage_loss_is_minus_the_metric_and_not_scale_invariant():
    """`loss.snr` (not in the paper): with only that weight the WaveNet stage's loss is minus the
    mean `snr` metric over the batch; and, unlike SI-SDR, it sees a gain: the clean speech itself
    at half its level has an error of the other half, an SNR of 20 log10 2 = 6.02 dB, so a loss
    of -6.02 (the SI-SDR term would give it its ceiling)."""
    from harness.metrics.snr import snr_db
    from systems.speech.hifigan_train import HifiganTraining, default_config

    class Gain(torch.nn.Module):
        def __init__(self, gain):
            super().__init__()
            self.gain = gain

        def forward(self, x, postnet=False):
            return self.gain * x

    rng = np.random.default_rng(3)
    clean = rng.standard_normal((3, 1, 4000)) * 0.1
    noisy = clean + 0.05 * rng.standard_normal(clean.shape)
    cfg = default_config()
    cfg["loss"] = {k: 0.0 for k in cfg["loss"]} | {"snr": 1.0}

    def stage_loss(gain, x):
        return HifiganTraining().loss(cfg, "wavenet", "generator", {"generator": Gain(gain),
                                      "discriminators": None}, (torch.tensor(x), torch.tensor(clean)), {})

    for gain in (1.0, 0.5):
        loss, logs = stage_loss(gain, noisy)
        want = -np.mean([snr_db(gain * noisy[i, 0], clean[i, 0]) for i in range(3)])
        assert float(loss) == pytest.approx(want, abs=1e-6)
        assert logs["snr"] == pytest.approx(-want, abs=1e-6)
    loss, _ = stage_loss(0.5, clean)
    assert float(loss) == pytest.approx(-20 * np.log10(2), abs=1e-5)


def test_estoi_term_of_the_stage_loss_is_minus_pystois_extended_stoi():
    """`loss.estoi` (not in the paper): with only that weight the postnet stage's loss is minus
    the mean over the batch of pystoi's extended STOI of the output against the target."""
    import warnings

    from pystoi import stoi

    from systems.speech.hifigan_train import RATE, HifiganTraining, default_config

    rng = np.random.default_rng(4)
    t = np.arange(RATE) / RATE  # 1 s: a voiced-like carrier with a 3 Hz envelope, and noise
    clean = np.stack([np.sin(2 * np.pi * f * t) * (1.2 + np.sin(2 * np.pi * 3 * t)) * 0.1
                      for f in (150, 220)])[:, None] + 0.01 * rng.standard_normal((2, 1, RATE))
    noisy = clean + 0.05 * rng.standard_normal(clean.shape)
    cfg = default_config()
    cfg["loss"] = {k: 0.0 for k in cfg["loss"]} | {"estoi": 1.0}

    class Identity(torch.nn.Module):
        def forward(self, x, postnet=False):
            return x

    loss, logs = HifiganTraining().loss(cfg, "postnet", "generator", {"generator": Identity(),
                                        "discriminators": None},
                                        (torch.tensor(noisy), torch.tensor(clean)), {})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        want = -np.mean([stoi(clean[i, 0], noisy[i, 0], RATE, extended=True) for i in range(2)])
    assert -1 < want < -0.05
    assert float(loss) == pytest.approx(want, abs=1e-5)
    assert logs["estoi"] == pytest.approx(-want, abs=1e-5)


def test_waveform_discriminators_see_16_8_and_4_khz():
    rate = hg.RATE
    t = np.arange(rate) / rate
    x = torch.tensor(np.sin(2 * np.pi * 1000 * t), dtype=torch.float32)[None, None]
    d = hg.Discriminators(hg.ARCH_SMALL)
    inputs = d.inputs(x)
    assert d.rates() == [16000, 8000, 4000]
    for sig, r in zip(inputs, d.rates(), strict=True):
        s = sig[0, 0].numpy()
        assert len(s) == r  # one second at that rate
        peak = np.argmax(np.abs(np.fft.rfft(s))) * r / len(s)
        assert peak == pytest.approx(1000, abs=2)  # the tone keeps its frequency
    outs = d(x)
    assert len(outs) == 4 and all(o.ndim >= 3 for o, _ in outs)


def test_mel_filters_peak_at_one_on_an_even_mel_grid_from_20_to_8000_hz():
    fb = hg.mel_filterbank(2048, 16000, 80, 20.0, 8000.0)
    assert fb.shape == (80, 1025)
    freqs = np.linspace(0, 8000, 1025)
    centres = freqs[np.argmax(fb, axis=1)]
    mel = 2595 * np.log10(1 + centres / 700)
    assert np.all(np.diff(centres) > 0) and np.ptp(np.diff(mel)[10:]) < 30  # even in mel
    assert fb.max(axis=1).min() > 0.5 and fb[:, freqs < 20].sum() == 0


def test_wavenet_receptive_field_is_what_its_dilations_say():
    arch = dict(hg.ARCH_SMALL, layers=4, stacks=2)
    net = hg.WaveNet(**arch).double()
    n = 2001
    x = torch.zeros(1, 1, n, dtype=torch.float64)
    base = net(x)[0, 0]
    x[0, 0, n // 2] = 1.0
    changed = torch.nonzero((net(x)[0, 0] - base).abs() > 0).flatten()
    width = int(changed.max() - changed.min() + 1)
    assert width == net.receptive_field == 1 + 2 * 2 * (1 + 2 + 4 + 8) + 4


def test_parameter_counts_of_the_two_sizes():
    paper = hg.parameter_count(hg.Generator(hg.ARCH_PAPER))
    small = hg.parameter_count(hg.Generator(hg.ARCH_SMALL))
    assert 9e6 < paper < 11.5e6  # the paper: about 10 M
    assert small < 0.5e6 and small * 4 * 2 < 16 * 2**20  # float32 file well under 16 MB


@pytest.mark.gpu
def test_generator_and_losses_on_cuda_match_the_cpu():
    torch.manual_seed(0)
    gen = hg.Generator(hg.ARCH_SMALL).eval()
    disc = hg.Discriminators(hg.ARCH_SMALL).eval()
    x = torch.randn(2, 1, 8000) * 0.1
    with torch.no_grad():
        cpu = gen(x)
        d_cpu = [o for o, _ in disc(cpu)]
        gen_c, disc_c = gen.cuda(), disc.cuda()
        gpu = gen_c(x.cuda())
        d_gpu = [o for o, _ in disc_c(gpu)]
    assert torch.allclose(cpu, gpu.cpu(), atol=1e-4)
    for a, b in zip(d_cpu, d_gpu, strict=True):
        assert torch.allclose(a, b.cpu(), atol=1e-3)
    assert float(hg.spectrogram_loss(gpu, x.cuda())) == pytest.approx(
        float(hg.spectrogram_loss(cpu, x)), rel=1e-4)


def test_the_small_generator_starts_at_the_identity():
    torch.manual_seed(0)
    x = torch.randn(1, 1, 4000) * 0.1
    with torch.no_grad():
        assert torch.equal(hg.Generator(hg.ARCH_SMALL)(x), x)
        assert not torch.allclose(hg.Generator(hg.ARCH_PAPER)(x), x, atol=1e-3)  # the paper's does not
