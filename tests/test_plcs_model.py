"""PLCA/PLCS EM: invariants (monotone likelihood, distributions), recovery of known components,
float32/float64 agreement, no NaN on silence or missing bands, and the neighbour searches."""

from __future__ import annotations

import numpy as np
import torch

from systems.plcs.model import (
    PLCS,
    Prior,
    WTAHash,
    cross_entropy,
    plca,
    popcount64,
    select_exhaustive,
    select_two_stage,
)


def known_scene(dtype=torch.float64, silent_frames=False):
    """3 recordings of one source (2 common components with disjoint spectra, shared
    activations) plus one individual component each on its own band."""
    rng = np.random.default_rng(0)
    F, T = 40, 60
    Wc = np.zeros((F, 2))
    Wc[0:10, 0] = rng.uniform(0.5, 1, 10)
    Wc[10:20, 1] = rng.uniform(0.5, 1, 10)
    Hc = rng.uniform(0, 1, (2, T)) ** 2
    common, V = [], []
    for l_ in range(3):
        wi = np.zeros(F)
        wi[20 + 6 * l_: 26 + 6 * l_] = 1.0
        hi = rng.uniform(0, 1, T) ** 2
        c = (0.5 + 0.5 * l_) * Wc @ Hc  # recordings at different levels
        v = c + 0.8 * np.outer(wi, hi)
        if silent_frames:
            c[:, 25:30] = v[:, 25:30] = 0
        common.append(c)
        V.append(v)
    return torch.tensor(np.array(V), dtype=dtype), np.array(common)


def test_likelihood_never_decreases_and_distributions_sum_to_one():
    V, _ = known_scene()
    m = PLCS(V, n_common=2, n_individual=2, seed=1)
    ll = [m.log_likelihood()]
    for _ in range(60):
        m.step()
        ll.append(m.log_likelihood())
    assert np.all(np.diff(ll) >= -1e-9 * abs(ll[0])), np.diff(ll).min()
    assert ll[-1] > ll[0]
    ones = torch.ones((), dtype=torch.float64)
    assert torch.allclose(m.Wc.sum(0), ones) and torch.allclose(m.Hc.sum(1), ones)
    assert torch.allclose(m.Wi.sum(1), ones) and torch.allclose(m.Hi.sum(2), ones)
    assert torch.allclose(m.g.sum(1), ones)
    assert torch.allclose(m.model().sum((1, 2)), ones)


def test_neighbourhood_steps_keep_the_others_fixed_and_distributions_normalised():
    V, _ = known_scene()
    m = PLCS(V, n_common=2, n_individual=2, seed=1)
    before = m.Wi[2].clone(), m.Hi[2].clone(), m.g[2].clone()
    for _ in range(5):
        m.step(torch.tensor([0, 1]))
    assert all(torch.equal(a, b) for a, b in zip(before, (m.Wi[2], m.Hi[2], m.g[2]), strict=True))
    assert torch.allclose(m.g.sum(1), torch.ones((), dtype=torch.float64))


def test_recovers_the_common_part_of_each_recording():
    V, common = known_scene()
    m = PLCS(V, n_common=2, n_individual=1, seed=3)
    for _ in range(300):
        m.step()
    est = (V * m.masks()).numpy()
    err = np.sum((est - common) ** 2) / np.sum(common**2)
    assert err < 1e-3, err


def test_float32_and_float64_agree():
    V, _ = known_scene()
    fits = []
    for dtype in (torch.float64, torch.float32):
        m = PLCS(V.to(dtype), n_common=2, n_individual=2, seed=5)
        for _ in range(40):
            m.step()
        fits.append(m.masks().double())
    # Where V > 0 (where the masks are applied); where V = 0 both models tend to 0 and the
    # posterior is a ratio of underflowing numbers in either precision.
    assert torch.max(torch.abs(fits[0] - fits[1])[V > 0]) < 1e-4


def test_silent_frames_and_missing_bands_give_no_nan():
    V, _ = known_scene(silent_frames=True)
    V[1, 30:] = 0  # recording 1 lacks the upper band (a low-pass device)
    V[2] = 0  # recording 2 is silent throughout
    prior = Prior(torch.rand(40, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(0)),
                  weight=50.0)
    m = PLCS(V, n_individual=2, source_prior=prior, seed=0)
    for _ in range(20):
        m.step()
    for t in (m.Wc, m.Hc, m.Wi, m.Hi, m.g, m.masks(), m.source_magnitude()):
        assert torch.isfinite(t).all()
    assert torch.allclose(m.g.sum(1), torch.ones((), dtype=torch.float64))


def test_prior_pulls_the_common_spectra_towards_the_bases():
    V, _ = known_scene()
    bases = torch.zeros(40, 2, dtype=torch.float64)
    bases[0:10, 0] = 1
    bases[10:20, 1] = 1
    free = PLCS(V, n_common=2, n_individual=1, seed=2)
    held = PLCS(V, n_individual=1, seed=2, source_prior=Prior(bases, weight=1e6, decay=0.0))
    for _ in range(10):
        free.step()
        held.step()
    target = bases / bases.sum(0)
    assert torch.max(torch.abs(held.Wc - target)) < 1e-3
    assert torch.max(torch.abs(free.Wc - target)) > torch.max(torch.abs(held.Wc - target))


def test_plca_with_fixed_bases_keeps_them():
    V, _ = known_scene()
    fixed = torch.rand(40, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    W, g, H = plca(V[0], 3, 20, W_fixed=fixed)
    assert torch.allclose(W[:, :2], fixed / fixed.sum(0))
    assert torch.allclose(g.sum(), torch.ones((), dtype=torch.float64))


def test_wta_similarity_counts_agreeing_draws():
    gen = torch.Generator().manual_seed(0)
    X = torch.rand(20, 500, generator=gen)
    h = WTAHash((25, 20), draws=300, m=3, seed=1, pool=(1, 1), whiten=False)
    codes = h.codes(X)
    winners = X[:, h.positions].argmax(2)  # independent count: draws whose winners agree
    expected = (winners == winners[7]).sum(1).to(torch.int64)
    assert torch.equal(h.similarity(codes, codes[7]).to(torch.int64), expected)


def test_popcount_counts_bits_of_any_int64():
    gen = torch.Generator().manual_seed(3)
    x = torch.randint(-2**63, 2**63 - 1, (2000,), generator=gen, dtype=torch.int64)
    x[:3] = torch.tensor([-1, 0, -2**63])
    expected = [bin(v & (2**64 - 1)).count("1") for v in x.tolist()]
    assert popcount64(x).tolist() == expected


def test_wta_features_pool_then_divide_each_band_by_its_mean():
    X = torch.arange(1.0, 1.0 + 4 * 6, dtype=torch.float64).reshape(4, 6) ** 2
    h = WTAHash((4, 6), pool=(2, 3))
    blocks = torch.tensor([[X[a:a + 2, b:b + 3].mean() for b in (0, 3)] for a in (0, 2)])
    expected = blocks / blocks.mean(1, keepdim=True)
    assert torch.allclose(h.features(X.reshape(-1))[0], expected.reshape(-1))


def test_two_stage_search_equals_exhaustive_when_every_recording_is_a_candidate():
    gen = torch.Generator().manual_seed(0)
    V = torch.rand(12, 30, 20, generator=gen, dtype=torch.float64)
    Vhat = (V / V.sum((1, 2), keepdim=True)).reshape(12, -1)
    src = V[3] + 0.1 * torch.rand(30, 20, generator=gen, dtype=torch.float64)
    h = WTAHash((30, 20), draws=256, m=2, pool=(4, 4))
    both = select_two_stage(Vhat, h.codes(Vhat), h, src, 4), select_exhaustive(Vhat, src, 4)
    assert torch.equal(*both)  # 3k = 12 = L: the exact stage sees every recording
    ce = cross_entropy(Vhat, src)
    s = (src / src.sum()).reshape(-1)
    assert torch.allclose(ce[5], -(Vhat[5] * torch.log(s)).sum())
    assert 3 in both[0].tolist()  # the recording the source was made from is a neighbour


def test_cross_entropy_of_chosen_rows_follows_the_definition_in_float32():
    gen = torch.Generator().manual_seed(5)
    V = torch.rand(9, 40, 30, generator=gen, dtype=torch.float64) ** 4
    Vhat = V / V.sum((1, 2), keepdim=True)
    src = torch.rand(40, 30, generator=gen, dtype=torch.float64) ** 4
    s = src / src.sum()
    rows = torch.tensor([7, 2, 5])
    expected = -(Vhat[rows] * torch.log(s)).sum((1, 2))  # float64, by the formula
    got = cross_entropy(Vhat.reshape(9, -1).float(), src.float(), rows)
    assert torch.allclose(got.double(), expected, rtol=1e-6)
    full = cross_entropy(Vhat.reshape(9, -1).float(), src.float())
    assert torch.equal(full[rows], got)  # the same sums whichever rows are asked for


def test_wta_codes_of_pooled_whitened_maps_match_the_torch_features_and_argmax():
    gen = torch.Generator().manual_seed(2)
    X = torch.rand(6, 37 * 29, generator=gen) ** 3  # 37 x 29: edge blocks are partial
    h = WTAHash((37, 29), draws=200, m=4, seed=4, pool=(8, 5))
    winners = h.features(X)[:, h.positions].argmax(2)  # torch's pooling, whitening and argmax
    bits = torch.zeros(6, 13 * 64, dtype=torch.int64)  # 200 draws x 4 bits in 13 words
    bits.scatter_(1, torch.arange(200) * 4 + winners, 1)
    expected = [[sum(int(b) << j for j, b in enumerate(row[w * 64:(w + 1) * 64].tolist()))
                 for w in range(13)] for row in bits]
    got = [[v & (2**64 - 1) for v in row] for row in h.codes(X).tolist()]
    assert got == expected
