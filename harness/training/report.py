"""What a training run leaves beside its checkpoint: the loss curve (PNG) and a short report."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def loss_curve(history: list[dict[str, Any]], out: Path, title: str) -> Path | None:
    """One panel per logged loss (log scale when positive), stage changes marked."""
    if not history:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    skip = {"step", "stage", "steps_per_s"}
    keys = sorted({k for h in history for k in h if k not in skip and not k.endswith("_grad_norm")})
    fig, axes = plt.subplots(len(keys), 1, figsize=(7, 1.8 * len(keys) + 0.6), sharex=True, squeeze=False)
    changes = [h["step"] for a, h in zip(history, history[1:], strict=False) if a["stage"] != h["stage"]]
    for ax, key in zip(axes[:, 0], keys, strict=True):
        pts = [(h["step"], h[key]) for h in history if key in h]
        ax.plot([p[0] for p in pts], [p[1] for p in pts], lw=1)
        if pts and min(p[1] for p in pts) > 0:
            ax.set_yscale("log")
        for c in changes:
            ax.axvline(c, color="grey", lw=0.6, ls="--")
        ax.set_ylabel(key, fontsize=8)
    axes[-1, 0].set_xlabel("step")
    axes[0, 0].set_title(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def write_report(record: dict[str, Any], out: Path, command: str) -> Path:
    train = record["training"]
    lines = [
        f"# Training report: {record['architecture']['name']}",
        "",
        f"Command: `{command}`",
        "",
        f"- steps: {train['steps']} of {train['total_steps']} on {train['device']} in "
        f"{train.get('config', {}).get('precision', 'float32')}, "
        f"{train['seconds'] / 60:.1f} min ({train['steps'] / max(train['seconds'], 1e-9):.2f} steps/s)",
        f"- parameters (inference model): {record.get('parameters', '?')}",
        "- stages: " + ", ".join(f"{s['name']} ({s['steps']} steps: {', '.join(s['optimisers'])})"
                                  for s in train["stages"]),
    ]
    if train.get("init"):
        init = train["init"]
        lines.append(f"- fine-tuned from: `{init['from']}` (sha256 {init['sha256'][:12]}, "
                     f"{init['steps']} steps, seed {init['seed']})")
    lines += [
        "",
        "## Trained on",
        "",
        "```json",
        json.dumps(record.get("data", {}), indent=1),
        "```",
        "",
        "## Validation (held-out generated data)",
        "",
    ]
    val = train.get("validation", [])
    if val:
        keys = [k for k in val[-1] if k != "step"]
        lines += ["| step | " + " | ".join(keys) + " |", "|---" * (len(keys) + 1) + "|"]
        lines += ["| " + " | ".join([str(v["step"])] + [f"{v.get(k, float('nan')):.3f}" for k in keys]) + " |"
                  for v in val]
    else:
        lines.append("(no validation run)")
    if train.get("loss_history"):
        last = train["loss_history"][-1]
        lines += ["", "## Last logged losses", "", "```json", json.dumps(last, indent=1), "```"]
    lines += ["", "## Architecture", "", "```json", json.dumps(record["architecture"], indent=1), "```", ""]
    out.write_text("\n".join(lines))
    return out
