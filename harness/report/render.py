"""Render a `Report` as Markdown (+ PNG files), one self-contained HTML file, or LaTeX (+ PNGs)."""

from __future__ import annotations

import base64
import html
import json
import math
import re
from pathlib import Path

import pandas as pd

from harness.metrics import get_metric
from harness.report.build import Report, SuiteSection


def _f(x, digits: int = 3) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "—"
    return f"{x:.{digits}f}"


def _p(x) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "—"
    return "<0.0001" if x < 1e-4 else f"{x:.4f}"


def _arrow(metric: str) -> str:
    try:
        return "↑" if get_metric(metric.split("[", 1)[0]).higher_is_better else "↓"
    except Exception:  # noqa: BLE001
        return ""


def _safe(name: str) -> str:
    """A file name without characters LaTeX or URLs would need escaped."""
    return re.sub(r"[^A-Za-z0-9.-]+", "-", name)


def summary_rows(sec: SuiteSection) -> tuple[list[str], list[list[str]]]:
    """Header and rows: system, then 'mean [lo, hi] (n ok, k not ok)' per metric."""
    header = ["system"] + [f"{m} {_arrow(m)}" for m in sec.metrics]
    rows = []
    for sys_, g in sec.summary.groupby("system", sort=False):
        cells = [sys_]
        for m in sec.metrics:
            r = g[g.metric == m]
            if r.empty:
                cells.append("")
                continue
            r = r.iloc[0]
            cell = f"{_f(r['mean'])} [{_f(r.ci_low)}, {_f(r.ci_high)}] (n={r.n_ok}"
            cell += f", {r.n_not_ok} not ok)" if r.n_not_ok else ")"
            cells.append(cell)
        rows.append(cells)
    return header, rows


def versus_rows(sec: SuiteSection) -> tuple[list[str], list[list[str]]]:
    header = ["system", "metric", "n", "Δ mean [95% CI]", "p (Holm)", "d_z"]
    rows = []
    for r in sec.versus.itertuples():
        rows.append([r.system, r.metric, str(r.n), f"{_f(r.delta)} [{_f(r.ci_low)}, {_f(r.ci_high)}]",
                     _p(getattr(r, "p_holm", float("nan"))), _f(r.d_z, 2)])
    return header, rows


def frame_rows(df: pd.DataFrame) -> tuple[list[str], list[list[str]]]:
    header = [str(df.index.name or "")] + [str(c) for c in df.columns]
    rows = [[str(i)] + ["—" if v is None or (isinstance(v, float) and math.isnan(v)) else str(v) for v in row]
            for i, row in zip(df.index, df.to_numpy(), strict=True)]
    return header, rows


def manifest_digest(m: dict) -> dict:
    """The fields of a run manifest a reader needs beside the numbers."""
    keys = ("run_id", "harness_version", "git", "created_utc", "device", "metrics_backend", "suites",
            "systems", "seeds", "python", "platform", "packages")
    out = {k: m[k] for k in keys if k in m}
    if "panel" in m:
        out["panel"] = {"name": m["panel"].get("name"), "listeners": sorted(m["panel"].get("listeners", {}))}
    return out


# ------------------------------------------------------------------------- markdown


def _md_table(header: list[str], rows: list[list[str]]) -> str:
    esc = [[c.replace("|", "\\|") for c in r] for r in [header, *rows]]
    lines = ["| " + " | ".join(esc[0]) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in esc[1:]]
    return "\n".join(lines)


def to_markdown(rep: Report, out: Path) -> list[Path]:
    """out.md plus figures in out's sibling folder `<stem>_files/`; returns every file written."""
    assets = out.parent / f"{out.stem}_files"
    written = [out]
    md = [f"# {rep.title}", ""]
    md += _intro(rep)
    for sec in rep.sections:
        md += [f"## {sec.suite} ({sec.task})", "",
               "Mean over units with a 95% bootstrap CI; n = units scored ok.", ""]
        md += [_md_table(*summary_rows(sec)), ""]
        if not sec.versus.empty:
            md += [f"### Difference to `{rep.baseline}` (paired over units both scored ok)", "",
                   _md_table(*versus_rows(sec)), ""]
        for title, t in sec.breakdowns.items():
            md += [f"### {title}", "", _md_table(*frame_rows(t)), ""]
        for fig in sec.figures:
            assets.mkdir(parents=True, exist_ok=True)
            path = assets / f"{_safe(fig.name)}.png"
            path.write_bytes(fig.png)
            written.append(path)
            md += [f"![{fig.caption}]({assets.name}/{path.name})", "", f"*{fig.caption}*", ""]
    md += ["## Runs", ""]
    for r in rep.runs:
        md += [f"### {r['label']}", "", "```json", json.dumps(manifest_digest(r["manifest"]), indent=1,
                                                              default=str), "```", ""]
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(md) + "\n")
    return written


def _intro(rep: Report) -> list[str]:
    lines = ["Runs: " + ", ".join(f"`{r['label']}` ({r['run_id']})" for r in rep.runs) + ".", ""]
    lines += [f"Baseline for the differences: `{rep.baseline}`. p-values: two-sided Wilcoxon "
              "signed-rank over paired units, Holm-adjusted over every comparison in this report; "
              "d_z = mean difference / SD of the differences. Counts of units that are not ok "
              "(failed or invalid) are shown beside each mean and never enter it.", ""]
    for w in rep.warnings:
        lines += [f"> **Warning:** {w}", ""]
    return lines


# ------------------------------------------------------------------------- html

CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2em auto;max-width:1200px;
color:#222;line-height:1.4;padding:0 1em}
table{border-collapse:collapse;margin:0.6em 0 1.4em;font-size:0.88em}
th,td{border:1px solid #ccc;padding:3px 8px;text-align:right}
th:first-child,td:first-child{text-align:left}
th{background:#f0f0f4}
figure{display:inline-block;margin:0.5em;vertical-align:top}
figcaption{font-size:0.8em;color:#555;max-width:520px}
.clips{display:flex;flex-wrap:wrap;gap:12px}
.clip{border:1px solid #ddd;padding:6px;border-radius:4px;font-size:0.8em}
.clip img{display:block;width:288px}
.warn{background:#fff3cd;border:1px solid #e0c060;padding:6px 10px}
pre{background:#f7f7f7;padding:8px;overflow:auto;font-size:0.8em;max-height:400px}
"""

# Checks in the browser that every image and audio element decodes, and says so in the footer
# (the report's own self-check; the headless-browser test reads it).
CHECK_JS = """
window.addEventListener('load', function () {
  var imgs = Array.from(document.images);
  var bad = imgs.filter(function (i) { return !(i.complete && i.naturalWidth > 0); }).length;
  var auds = Array.from(document.querySelectorAll('audio'));
  var pending = auds.length, failed = 0;
  function done() {
    var el = document.getElementById('selfcheck');
    el.textContent = 'self-check: ' + (imgs.length - bad) + '/' + imgs.length + ' images and ' +
      (auds.length - failed) + '/' + auds.length + ' audio clips decoded';
    el.dataset.status = (bad === 0 && failed === 0) ? 'ok' : 'failed';
  }
  if (pending === 0) { done(); return; }
  auds.forEach(function (a) {
    if (a.readyState >= 1) { if (--pending === 0) done(); return; }
    a.addEventListener('loadedmetadata', function () { if (--pending === 0) done(); });
    a.addEventListener('error', function () { failed++; if (--pending === 0) done(); });
    a.load();
  });
});
"""


def _html_table(header: list[str], rows: list[list[str]]) -> str:
    h = "".join(f"<th>{html.escape(c)}</th>" for c in header)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in r) + "</tr>" for r in rows)
    return f"<table><thead><tr>{h}</tr></thead><tbody>{body}</tbody></table>"


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def to_html(rep: Report, out: Path) -> list[Path]:
    """One self-contained file: figures, spectrograms and audio are embedded as data URIs."""
    parts = ["<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>",
             f"<title>{html.escape(rep.title)}</title><style>{CSS}</style></head><body>",
             f"<h1>{html.escape(rep.title)}</h1>"]
    intro = _intro(rep)
    parts.append(f"<p>{html.escape(intro[0].replace('`', ''))}</p>"
                 f"<p>{html.escape(intro[2].replace('`', ''))}</p>")
    for w in rep.warnings:
        parts.append(f"<p class='warn'>Warning: {html.escape(w)}</p>")
    parts.append("<nav><ul>" + "".join(
        f"<li><a href='#{html.escape(s.suite)}'>{html.escape(s.suite)}</a></li>" for s in rep.sections
    ) + "<li><a href='#runs'>runs</a></li></ul></nav>")
    for sec in rep.sections:
        parts.append(f"<section id='{html.escape(sec.suite)}'><h2>{html.escape(sec.suite)} "
                     f"({html.escape(sec.task)})</h2>")
        parts.append("<p>Mean over units with a 95% bootstrap CI; n = units scored ok.</p>")
        parts.append(_html_table(*summary_rows(sec)))
        if not sec.versus.empty:
            parts.append(f"<h3>Difference to {html.escape(str(rep.baseline))}</h3>")
            parts.append(_html_table(*versus_rows(sec)))
        for title, t in sec.breakdowns.items():
            parts.append(f"<h3>{html.escape(title)}</h3>" + _html_table(*frame_rows(t)))
        if sec.figures:
            parts.append("<h3>Figures</h3>")
        for fig in sec.figures:
            parts.append(f"<figure><img alt='{html.escape(fig.caption)}' src='data:image/png;base64,"
                         f"{_b64(fig.png)}'><figcaption>{html.escape(fig.caption)}</figcaption></figure>")
        for ex in sec.audio:
            who = f", listener {ex.listener_id}" if ex.listener_id != "-" else ""
            parts.append(f"<h3>Listen: {html.escape(ex.item_id)}{html.escape(who)}</h3><div class='clips'>")
            for c in ex.clips:
                label = html.escape(c.label)
                parts.append(
                    f"<div class='clip'><div>{label}</div><img alt='spectrogram of {label}' "
                    f"src='data:image/png;base64,{_b64(c.spectrogram)}'><audio controls "
                    f"preload='metadata' src='data:audio/flac;base64,{_b64(c.flac)}'></audio></div>"
                )
            parts.append("</div>")
        parts.append("</section>")
    parts.append("<section id='runs'><h2>Runs</h2>")
    for r in rep.runs:
        parts.append(f"<details><summary>{html.escape(r['label'])} "
                     f"({html.escape(r['run_id'])})</summary><pre>"
                     + html.escape(json.dumps(manifest_digest(r["manifest"]), indent=1, default=str))
                     + "</pre></details>")
    parts.append("</section><footer><p id='selfcheck' data-status='pending'>self-check: pending</p></footer>")
    parts.append(f"<script>{CHECK_JS}</script></body></html>")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("".join(parts))
    return [out]


# ------------------------------------------------------------------------- latex

_TEX = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
        "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}",
        "↑": r"$\uparrow$", "↓": r"$\downarrow$", "Δ": r"$\Delta$", "—": "--", "<": r"$<$"}


def tex(s: str) -> str:
    return "".join(_TEX.get(ch, ch) for ch in str(s))


def _tex_table(header: list[str], rows: list[list[str]], caption: str) -> str:
    cols = "l" + "r" * (len(header) - 1)
    lines = [r"\begin{table}[ht]", r"\centering", r"\small", rf"\caption{{{tex(caption)}}}",
             rf"\begin{{tabular}}{{{cols}}}", r"\toprule", " & ".join(tex(h) for h in header) + r" \\",
             r"\midrule"]
    lines += [" & ".join(tex(c) for c in r) + r" \\" for r in rows]
    lines += [r"\bottomrule", r"\end{tabular}", r"\end{table}", ""]
    return "\n".join(lines)


def to_latex(rep: Report, out: Path) -> list[Path]:
    """A standalone LaTeX document (booktabs, graphicx); figures as PNGs beside it."""
    assets = out.parent / f"{out.stem}_files"
    written = [out]
    doc = [r"\documentclass{article}", r"\usepackage[margin=2cm]{geometry}", r"\usepackage{booktabs}",
           r"\usepackage{graphicx}", r"\usepackage[T1]{fontenc}", r"\begin{document}",
           rf"\section*{{{tex(rep.title)}}}", tex(_intro(rep)[2]), ""]
    for w in rep.warnings:
        doc += [r"\paragraph{Warning.} " + tex(w), ""]
    for sec in rep.sections:
        doc += [rf"\subsection*{{{tex(sec.suite)} ({tex(sec.task)})}}", ""]
        doc.append(_tex_table(*summary_rows(sec), f"{sec.suite}: mean [95% CI] (n ok, not ok)"))
        if not sec.versus.empty:
            doc.append(_tex_table(*versus_rows(sec), f"{sec.suite}: difference to {rep.baseline}"))
        for title, t in sec.breakdowns.items():
            doc.append(_tex_table(*frame_rows(t), f"{sec.suite}: {title}"))
        for fig in sec.figures:
            assets.mkdir(parents=True, exist_ok=True)
            path = assets / f"{_safe(fig.name)}.png"
            path.write_bytes(fig.png)
            written.append(path)
            doc += [r"\begin{figure}[ht]", r"\centering",
                    rf"\includegraphics[width=0.6\linewidth]{{{assets.name}/{path.name}}}",
                    rf"\caption{{{tex(fig.caption)}}}", r"\end{figure}", ""]
        doc.append(r"\clearpage")
    doc += [r"\subsection*{Runs}", r"\begin{itemize}"]
    for r in rep.runs:
        m = r["manifest"]
        git = (m.get("git") or {}).get("commit") or "unknown"
        doc.append(rf"\item {tex(r['label'])}: run {tex(r['run_id'])}, "
                   rf"harness {tex(m.get('harness_version', '?'))}, "
                   rf"commit {tex(str(git)[:12])}, backend {tex(json.dumps(m.get('metrics_backend')))}")
    doc += [r"\end{itemize}", r"\end{document}", ""]
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(doc))
    return written


RENDERERS = {"md": to_markdown, "html": to_html, "latex": to_latex}
