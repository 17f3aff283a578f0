"""Where a bandwidth extender's error lies, band by band: a diagnostic for the SNR it can gain.

    python -m systems.sr.band_errors SUITE [--system unet-sr] [--param unet-sr.KEY=VALUE ...]

For every item of a bandwidth-extension suite (one ratio per suite), the error energy of the
spline input (`unprocessed`) and of the system's output in bands fixed by the ratio: below the
anti-alias filter's edge (0.8 of the low rate's Nyquist, where the spline's input carries the
signal), the filter's transition band (edge to Nyquist: attenuated before decimation, so lost),
and the octaves above. Energies are in dB relative to the clean signal's total energy, summed
over items (so the table's bands add up, in power, to the suite's pooled error). Also: the SNR an
output would have with the clean signal below the low rate's Nyquist and nothing above, the most
a system gains without predicting the lost band in phase.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

ANTI_ALIAS_EDGE = 0.8  # scipy.signal.decimate's Chebyshev I cut-off, as a fraction of the low Nyquist


def band_edges(rate: int, ratio: int) -> list[float]:
    """0, the anti-alias edge, the low rate's Nyquist, its octaves up to the high Nyquist."""
    nyq = rate / 2 / ratio
    edges = [0.0, ANTI_ALIAS_EDGE * nyq, nyq]
    while edges[-1] * 2 < rate / 2:
        edges.append(edges[-1] * 2)
    return edges + [rate / 2 + 1]


def band_energies(x: np.ndarray, rate: int, edges: Sequence[float]) -> np.ndarray:
    """Energy of x in each band [edges[k], edges[k+1]) (Parseval: they sum to sum(x**2))."""
    spec = np.abs(np.fft.rfft(x)) ** 2
    spec[1:] *= 2  # one-sided: every bin but DC (and Nyquist, below) stands for two
    if len(x) % 2 == 0:
        spec[-1] /= 2
    f = np.fft.rfftfreq(len(x), 1 / rate)
    bands = zip(edges[:-1], edges[1:], strict=True)
    return np.array([spec[(f >= a) & (f < b)].sum() for a, b in bands]) / len(x)


def lowband(x: np.ndarray, rate: int, cutoff: float) -> np.ndarray:
    """x with every FFT bin at or above `cutoff` Hz set to zero."""
    spec = np.fft.rfft(x)
    spec[np.fft.rfftfreq(len(x), 1 / rate) >= cutoff] = 0
    return np.fft.irfft(spec, len(x))


def table(suite: str, system: str, params: dict[str, object]) -> str:
    from harness.api import get_system
    from harness.metrics.snr import snr_db
    from harness.suites import resolve_suite

    items = list(resolve_suite(suite).items)
    ratios = {int(it.metadata.get("ratio") or 0) for it in items}
    if len(ratios) != 1 or min(ratios) < 2:
        raise SystemExit(f"{suite}: band_errors wants a bandwidth-extension suite of one ratio, "
                         f"not ratios {sorted(ratios)}")
    ratio = ratios.pop()
    sysobj = get_system(system, **params)
    sysobj.prepare("cpu")
    outs = sysobj.process(items, None)
    rate = items[0].reference("clean").rate
    edges = band_edges(rate, ratio)
    rows = ("clean", "input (spline) error", f"{system} output error")
    acc = {k: np.zeros(len(edges) - 1) for k in rows}
    snrs = []
    for it, out in zip(items, outs, strict=True):
        clean = it.reference("clean").mono().astype(np.float64)
        x = it.input("input").mono().astype(np.float64)
        y = out["enhanced"].mono().astype(np.float64)
        total = float(np.sum(clean ** 2))
        for key, s in zip(rows, (clean, x - clean, y - clean), strict=True):
            acc[key] += band_energies(s, rate, edges) / total
        snrs.append((snr_db(x, clean), snr_db(y, clean), snr_db(lowband(clean, rate, edges[2]), clean)))
    names = [f"{a:.0f}-{b:.0f} Hz" for a, b in zip(edges[:-1], [*edges[1:-1], rate / 2], strict=True)]
    lines = [f"{suite}: {len(items)} items at {ratio}x; dB re the clean energy (summed over items)", "",
             "| | " + " | ".join(names) + " |", "|---" * (len(names) + 1) + "|"]
    for key, v in acc.items():
        lines.append(f"| {key} | " + " | ".join(f"{10 * np.log10(e / len(items)):.1f}" for e in v) + " |")
    s = np.mean(snrs, axis=0)
    lines += ["", f"mean SNR: input {s[0]:.2f} dB, {system} {s[1]:.2f} dB; clean below "
                  f"{edges[2]:.0f} Hz and nothing above: {s[2]:.2f} dB"]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> None:
    import argparse

    ap = argparse.ArgumentParser(prog="python -m systems.sr.band_errors",
                                 description=(__doc__ or "").split("\n\n")[0])
    ap.add_argument("suite", help="a bandwidth-extension suite (name or folder) of one ratio")
    ap.add_argument("--system", default="unet-sr", help="the system to analyse (default: unet-sr)")
    ap.add_argument("--param", action="append", default=[], metavar="SYSTEM.KEY=VALUE",
                    help="a system parameter as harness run takes it (repeatable), e.g. "
                         "unet-sr.checkpoint=PATH")
    a = ap.parse_args(argv)
    from harness.config import apply_params
    from harness.errors import HarnessError, InvalidInput

    try:
        print(table(a.suite, a.system, apply_params({}, a.param).get(a.system, {})))
    except (HarnessError, InvalidInput) as exc:
        raise SystemExit(f"error: {exc}") from None


if __name__ == "__main__":
    main()
