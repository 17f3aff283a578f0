"""CPU kernels for the sample-by-sample parts of the fast HAAQI: recursive filters and the
short-lag segment cross-covariances. Each loops over time inside compiled code and runs its rows
(bands, signals, segments) in parallel threads; the gammatone also runs its 32 bands side
by side, vectorised. They are CPU-only: on a GPU the fast HAAQI runs `haaqi.torch_engine` instead.

Filters are direct form II transposed, as scipy's `lfilter`, so the results agree with the
reference's scipy calls to rounding.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange


@njit(parallel=True, cache=True)
def lfilter_rows(b, a, x, y):  # pragma: no cover - compiled
    """y[r] = lfilter(b[r], a[r], x[r]) for every row r; a[:, 0] == 1, len(b[r]) == len(a[r]).
    Coefficients and state are float64 whatever x's type: a float32 recursion near a repeated
    pole at |z| ~ 1 (the gammatone's) can turn unstable."""
    R, N = x.shape
    M = a.shape[1]
    for r in prange(R):
        z = np.zeros(M)  # state in float64 whatever the data type
        br = b[r]
        ar = a[r]
        for n in range(N):
            xn = x[r, n]
            yn = z[0] + br[0] * xn
            for i in range(M - 2):
                z[i] = z[i + 1] + br[i + 1] * xn - ar[i + 1] * yn
            z[M - 2] = br[M - 1] * xn - ar[M - 1] * yn
            y[r, n] = yn


BANDS = 32  # the bands gammatone_bands runs side by side (HAAQI's); a constant, so the
# compiler lays the band loop out in vector registers
TILE = 1024  # samples per tile of gammatone_bands
PITCH = TILE + 16  # a tile row's stride: not a multiple of 4 KiB, so its rows do not alias


@njit(cache=True, nogil=True, boundscheck=False, inline="always")
def _gammatone_step(xn, g, C, state):  # pragma: no cover - compiled
    """One sample of band g (state: 10 x 32 band-minor: the two filters' four delays, then cos
    and sin of the oscillator; C: 8 x 32: cos w, sin w, a1..a5, gain): the filtered real and
    imaginary parts and the oscillator. Kates's gammatone band: x demodulated by the recursive
    oscillator at the band's centre frequency, the real and imaginary parts low-passed by
    (1 + a1 z^-1 + a5 z^-2) / (1 - a z^-1)^4 in direct form II transposed (state in float64
    whatever the data type: a float32 recursion near the repeated pole at |z| ~ 1 can turn
    unstable), as pyclarity's lfilter calls; a1 = 4a, a2 = -6a^2, a3 = 4a^3, a4 = -a^4,
    a5 = 4a^2."""
    G = BANDS
    c = state[8 * G + g]
    s = state[9 * G + g]
    arg = c * C[g] + s * C[G + g]
    s = s * C[g] - c * C[G + g]
    c = arg
    ur_in = xn * c
    ui_in = xn * s
    a1 = C[2 * G + g]
    a2 = C[3 * G + g]
    a3 = C[4 * G + g]
    a4 = C[5 * G + g]
    a5 = C[6 * G + g]
    ur = state[g] + ur_in
    state[g] = state[G + g] + a1 * ur_in + a1 * ur
    state[G + g] = state[2 * G + g] + a5 * ur_in + a2 * ur
    state[2 * G + g] = state[3 * G + g] + a3 * ur
    state[3 * G + g] = a4 * ur
    ui = state[4 * G + g] + ui_in
    state[4 * G + g] = state[5 * G + g] + a1 * ui_in + a1 * ui
    state[5 * G + g] = state[6 * G + g] + a5 * ui_in + a2 * ui
    state[6 * G + g] = state[7 * G + g] + a3 * ui
    state[7 * G + g] = a4 * ui
    state[8 * G + g] = c
    state[9 * G + g] = s
    return ur, ui, c, s


@njit(cache=True, nogil=True, boundscheck=False)
def _envelope_tile(x, n0, L, C, state, acc, out):  # pragma: no cover - compiled
    """Samples n0 .. n0 + L - 1 (n0 >= 1) of the 32 bands' envelopes, written time-major:
    out[n * 32 + g] (in out's type), acc[g] += its square. The band loop is the inner loop, so
    it is vectorised (each band's recursion is independent)."""
    G = BANDS
    for i in range(L):
        xn = np.float64(x[n0 + i])
        o = (n0 + i) * G
        for g in range(G):
            ur, ui, c, s = _gammatone_step(xn, g, C, state)
            e = out.dtype.type(C[7 * G + g] * np.sqrt(ur * ur + ui * ui))
            out[o + g] = e
            acc[g] += np.float64(e) * np.float64(e)


@njit(cache=True, nogil=True, boundscheck=False)
def _motion_tile(x, n0, L, C, state, acc, gain, lp, te, tb):  # pragma: no cover - compiled
    """Samples n0 .. n0 + L - 1 (n0 >= 1) of the 32 bands' envelope and BM motion, each times
    the compression gain (time-major, gain[n * 32 + g]) low-passed by (lp[0] + lp[1] z^-1) /
    (1 + lp[2] z^-1) (its state in state[10 x 32 + g]); acc[g] += the square of the envelope
    before the gain. The tile's outputs te and tb are band-major with stride PITCH, ready to be
    copied out row by row. Rounded as the separate passes would: the envelope and motion to
    their type, then their products with the gain."""
    G = BANDS
    b0 = lp[0]
    b1 = lp[1]
    a1 = lp[2]
    for i in range(L):
        xn = np.float64(x[n0 + i])
        o = (n0 + i) * G
        for g in range(G):
            ur, ui, c, s = _gammatone_step(xn, g, C, state)
            e = te.dtype.type(C[7 * G + g] * np.sqrt(ur * ur + ui * ui))
            acc[g] += np.float64(e) * np.float64(e)
            b = tb.dtype.type(C[7 * G + g] * (ur * c + ui * s))
            gv = np.float64(gain[o + g])
            y = state[10 * G + g] + b0 * gv
            state[10 * G + g] = b1 * gv - a1 * y
            te[g * PITCH + i] = np.float64(e) * y
            tb[g * PITCH + i] = np.float64(b) * y


@njit(cache=True, nogil=True, boundscheck=False)
def _first_sample(xn, C, state):  # pragma: no cover - compiled
    """Sample 0 of the 32 bands (zero state, the oscillator at (1, 0)): sets state and returns
    the bands' unscaled real parts (the imaginary parts are 0)."""
    G = BANDS
    for g in range(G):
        state[G + g] = C[6 * G + g] * xn + C[3 * G + g] * xn
        state[g] = C[2 * G + g] * xn + C[2 * G + g] * xn
        state[2 * G + g] = C[4 * G + g] * xn
        state[3 * G + g] = C[5 * G + g] * xn
        for j in range(4, 8):
            state[j * G + g] = 0.0
        state[8 * G + g] = 1.0
        state[9 * G + g] = 0.0


@njit(cache=True, nogil=True)
def _band_minor(coef_s):  # pragma: no cover - compiled
    C = np.empty(8 * BANDS)
    for g in range(BANDS):
        for j in range(8):
            C[j * BANDS + g] = coef_s[g, j]
    return C


@njit(parallel=True, cache=True, boundscheck=False)
def gammatone_envelopes(x, coef, out, rms):  # pragma: no cover - compiled
    """The gammatone envelopes (gain x |u|) of the 32 bands of each signal, bands side by side
    and written time-major: x is S x N, coef S x 32 x 8 (per band cos w, sin w, a1..a5, gain),
    out S x (N * 32) with out[s, n * 32 + g] band g's sample n, rms S * 32 (of the envelopes as
    stored, summed in float64); the signals go in parallel."""
    S, N = x.shape
    G = BANDS
    for s in prange(S):
        C = _band_minor(coef[s])
        state = np.zeros(11 * G)
        acc = np.zeros(G)
        o = out[s]
        if N > 0:
            xn = np.float64(x[s, 0])
            _first_sample(xn, C, state)
            for g in range(G):
                e = o.dtype.type(C[7 * G + g] * np.sqrt(xn * xn))
                o[g] = e
                acc[g] += np.float64(e) * np.float64(e)
        for n0 in range(1, N, TILE):
            _envelope_tile(x[s], n0, min(TILE, N - n0), C, state, acc, o)
        for g in range(G):
            rms[s * G + g] = np.sqrt(acc[g] / N)


@njit(parallel=True, cache=True, boundscheck=False)
def gammatone_bands(x, coef, env, bm, rms, gain, lp):  # pragma: no cover - compiled
    """The gammatone envelopes and BM motion (gain x Re(u e^(jwn))) of the 32 bands of each
    signal, bands side by side, with the outer hair cells' compression applied: x is S x N,
    coef S x 32 x 8 (as gammatone_envelopes'), env and bm
    (S * 32) x N (band-major), rms S * 32 (of the envelopes before the gain), gain S x (N * 32)
    time-major (gain[s, n * 32 + g]), low-passed by (lp[0] + lp[1] z^-1) / (1 + lp[2] z^-1)
    before it multiplies the envelope and the BM motion (a unit gain and lp = (1, 0, 0) leave
    them as they are). The signals go in parallel. The band loop is vectorised (about 1.5-2x
    less time than a kernel row by row); copying the tiles out to band-major rows is most of
    the time left."""
    S, N = x.shape
    G = BANDS
    for s in prange(S):
        C = _band_minor(coef[s])
        state = np.zeros(11 * G)
        acc = np.zeros(G)
        te = np.zeros(G * PITCH, env.dtype)
        tb = np.zeros(G * PITCH, env.dtype)
        gs = gain[s]
        if N > 0:  # sample 0
            xn = np.float64(x[s, 0])
            _first_sample(xn, C, state)
            for g in range(G):
                e = env.dtype.type(C[7 * G + g] * np.sqrt(xn * xn))
                acc[g] += np.float64(e) * np.float64(e)
                b = bm.dtype.type(C[7 * G + g] * xn)
                gv = np.float64(gs[g])
                y = lp[0] * gv
                state[10 * G + g] = lp[1] * gv - lp[2] * y
                env[s * G + g, 0] = np.float64(e) * y
                bm[s * G + g, 0] = np.float64(b) * y
        for n0 in range(1, N, TILE):
            L = min(TILE, N - n0)
            _motion_tile(x[s], n0, L, C, state, acc, gs, lp, te, tb)
            for g in range(G):
                row = env[s * G + g]
                for i in range(L):
                    row[n0 + i] = te[g * PITCH + i]
            for g in range(G):
                row = bm[s * G + g]
                for i in range(L):
                    row[n0 + i] = tb[g * PITCH + i]
        for g in range(G):
            rms[s * G + g] = np.sqrt(acc[g] / N)


@njit(parallel=True, fastmath=True, cache=True)
def segment_covariance(x, y, nx, ny, gain, delays, window, half_corr, win_corr, half_norm,
                       win_norm, maxlag, nseg, cov, msx, msy):  # pragma: no cover - compiled
    """Kates's bm_covary tiles of the signals X = x + gain nx and Y = y + gain ny, row k
    delayed by delays[k] samples (zeros first), formed on the fly (the model's noise and band
    delays cost no pass of their own): per row k and segment s (hop = len(window) / 2; the
    first and last are half windows), the zero-mean windowed segments' normalised
    cross-covariance, the maximum over lags -maxlag..maxlag of |R_xy(l) / R_ww(l)| /
    sqrt(ms_x ms_y), and the mean squares (normalised by the window power). Rows in parallel,
    segments in turn through one pair of scratch buffers per row; products and lag sums in the
    data's type (float32 runs twice as many lanes), the mean squares in float64. Each lag's sum
    is one dot product vectorised over the segment (sums reassociated: float64 results move by
    ~1e-15)."""
    K = x.shape[0]
    W = window.shape[0]
    h = W // 2
    J = 2 * maxlag + 1
    small = 1e-30
    for k in prange(K):
        xs = np.zeros(W + 2 * maxlag, x.dtype)  # the segment, zero-padded by maxlag both sides
        ys = np.empty(W, x.dtype)
        zero = np.zeros(1, x.dtype)[0]  # a zero of the data's type for the lag sums
        g = zero + gain
        d = delays[k]
        for s in range(nseg):
            if s == 0:
                start, L, w0, corr, norm = 0, h, h, half_corr, half_norm
            elif s == nseg - 1:
                start, L, w0, corr, norm = s * h, h, 0, half_corr, half_norm
            else:
                start, L, w0, corr, norm = s * h, W, 0, win_corr, win_norm
            sum_x = 0.0
            sum_y = 0.0
            for n in range(L):
                t = start + n - d
                if t >= 0:
                    xv = (x[k, t] + g * nx[k, t]) * window[w0 + n]
                    yv = (y[k, t] + g * ny[k, t]) * window[w0 + n]
                else:
                    xv = zero
                    yv = zero
                xs[maxlag + n] = xv
                ys[n] = yv
                sum_x += xv
                sum_y += yv
            for n in range(maxlag + L, W + 2 * maxlag):
                xs[n] = 0.0  # a half segment after a whole one: clear the whole one's tail
            mean_x = sum_x / L
            mean_y = sum_y / L
            mx = 0.0
            my = 0.0
            for n in range(L):
                xs[maxlag + n] -= mean_x
                ys[n] -= mean_y
                mx += xs[maxlag + n] * xs[maxlag + n]
                my += ys[n] * ys[n]
            mx *= norm
            my *= norm
            best = 0.0
            for j in range(J):  # R_xy(j - maxlag) = sum_n x[n + j - maxlag] y[n]
                a = zero
                for n in range(L):
                    a += xs[n + j] * ys[n]
                v = abs(a * corr[j])
                if v > best:
                    best = v
            if mx > small and my > small:
                c = best / np.sqrt(mx * my)
                cov[k, s] = min(max(c, 0.0), 1.0)
            else:
                cov[k, s] = 0.0
            msx[k, s] = mx
            msy[k, s] = my


@njit(parallel=True, cache=True)
def ihc_adaptation_rows(env, bm, out, r_1, r_2, p1, p2, a11, a12, a21, a22, denom):  # pragma: no cover
    """Per row, out holding the envelope in dB SL (clipped at 0, from `haaqi._db_sl`) on entry:
    the IHC rapid and short-term adaptation (Kates's two-capacitor equivalent circuit, the
    coefficients `haaqi._ihc_circuit`'s), clipped at 0, written to out; the BM motion scaled in
    place as the envelope was: to dB SL, then by the adaptation's gain, (v0 + small) /
    (env + small) times (a + small) / (v0 + small), taken as the one ratio (a + small) /
    (env + small) (v0 >= 0, so nothing is lost; one division a sample where the reference has
    two: 8% less time in the kernel)."""
    R, N = env.shape
    small = 1e-30
    r_1_inv = 1 / r_1
    for r in prange(R):
        v_1 = 0.0
        v_2 = 0.0
        for n in range(N):
            e = env[r, n]
            v_0 = out[r, n]
            b_1 = v_0 * r_2 + p1 * v_1
            b_2 = p2 * v_2
            v_1 = denom * (a22 * b_1 - a12 * b_2)
            v_2 = denom * (-a21 * b_1 + a11 * b_2)
            a = max((v_0 - v_1) * r_1_inv, 0.0)
            bm[r, n] = ((a + small) / (e + small)) * bm[r, n]
            out[r, n] = a


@njit(parallel=True, cache=True)
def shift_rows(x, advance):  # pragma: no cover - compiled
    """Row r of x advanced by advance[r] samples in place (delayed when negative), zero-filled:
    no copy per row."""
    R, N = x.shape
    for r in prange(R):
        d = advance[r]
        if d > 0:
            for n in range(N - d):
                x[r, n] = x[r, n + d]
            for n in range(max(N - d, 0), N):
                x[r, n] = 0
        elif d < 0:
            for n in range(N - 1, -d - 1, -1):
                x[r, n] = x[r, n + d]
            for n in range(min(-d, N)):
                x[r, n] = 0


# ---------------------------------------------------------------- numpy's legacy Gaussian draws
# MT19937 (Matsumoto & Nishimura 1998) and the polar method as numpy's RandomState draws them
# (`legacy_gauss`: two 53-bit doubles per attempt from four 32-bit words, the second normal of
# a pair kept for the next draw), so the draws match numpy's bit for bit.

TWO53 = 9007199254740992.0


@njit(cache=True, nogil=True)
def _mt_twist(mt):  # pragma: no cover - compiled
    """The MT19937 recurrence over the 624 words, in three runs with no modulo (i < 227 reads
    words not yet replaced; 227 <= i < 623 reads i - 227, replaced earlier in this pass; then
    the last word), so the compiler can vectorise each run."""
    for i in range(227):
        y = (mt[i] & np.uint32(0x80000000)) | (mt[i + 1] & np.uint32(0x7FFFFFFF))
        v = mt[i + 397] ^ (y >> np.uint32(1))
        if y & np.uint32(1):
            v ^= np.uint32(0x9908B0DF)
        mt[i] = v
    for i in range(227, 623):
        y = (mt[i] & np.uint32(0x80000000)) | (mt[i + 1] & np.uint32(0x7FFFFFFF))
        v = mt[i - 227] ^ (y >> np.uint32(1))
        if y & np.uint32(1):
            v ^= np.uint32(0x9908B0DF)
        mt[i] = v
    y = (mt[623] & np.uint32(0x80000000)) | (mt[0] & np.uint32(0x7FFFFFFF))
    v = mt[396] ^ (y >> np.uint32(1))
    if y & np.uint32(1):
        v ^= np.uint32(0x9908B0DF)
    mt[623] = v


@njit(cache=True, nogil=True)
def _mt_temper(mt, out):  # pragma: no cover - compiled
    for i in range(624):
        y = mt[i]
        y ^= y >> np.uint32(11)
        y ^= (y << np.uint32(7)) & np.uint32(0x9D2C5680)
        y ^= (y << np.uint32(15)) & np.uint32(0xEFC60000)
        y ^= y >> np.uint32(18)
        out[i] = y


@njit(cache=True, nogil=True)
def legacy_gauss_fill(mt, pos, has_gauss, gauss, out):  # pragma: no cover - compiled
    """Fill the 1-D out with standard normals from the MT19937 state (mt: 624 uint32, advanced
    in place; pos), as RandomState.standard_normal would (a float32 out holds them rounded);
    returns the new (pos, has_gauss, gauss). Releases the GIL.

    In batches of A attempts, A never more than the pairs still wanted, so no batch draws a
    word the sequential method would not: the batch's 4A words are copied out of the stream,
    its A candidate points (x1, x2, r2) computed in one branch-free loop, then the accepted
    ones (0 < r2 < 1) transformed in order with the same libm log as numpy's C code."""
    n = out.shape[0]
    i = 0
    if has_gauss and n > 0:
        out[0] = gauss
        i = 1
        has_gauss = False
        gauss = 0.0
    words = np.empty(624, np.uint32)
    _mt_temper(mt, words)
    cap = 2048
    buf = np.empty(4 * cap, np.uint32)
    xs1 = np.empty(cap)
    xs2 = np.empty(cap)
    rs2 = np.empty(cap)
    while i < n:
        A = min(cap, (n - i + 1) // 2)
        k = 0
        while k < 4 * A:
            if pos >= 624:
                _mt_twist(mt)
                _mt_temper(mt, words)
                pos = 0
            m = min(624 - pos, 4 * A - k)
            buf[k:k + m] = words[pos:pos + m]
            k += m
            pos += m
        for a in range(A):
            j = 4 * a
            # two 53-bit doubles from four words: (a >> 5) 2^26 + (b >> 6), over 2^53
            d1 = ((buf[j] >> np.uint32(5)) * 67108864.0 + (buf[j + 1] >> np.uint32(6))) / TWO53
            d2 = ((buf[j + 2] >> np.uint32(5)) * 67108864.0 + (buf[j + 3] >> np.uint32(6))) / TWO53
            x1 = 2.0 * d1 - 1.0
            x2 = 2.0 * d2 - 1.0
            xs1[a] = x1
            xs2[a] = x2
            rs2[a] = x1 * x1 + x2 * x2
        for a in range(A):
            r2 = rs2[a]
            if r2 < 1.0 and r2 != 0.0:
                f = np.sqrt(-2.0 * np.log(r2) / r2)
                out[i] = f * xs2[a]
                i += 1
                if i < n:
                    out[i] = f * xs1[a]
                    i += 1
                else:
                    has_gauss = True
                    gauss = f * xs1[a]
    return pos, has_gauss, gauss
