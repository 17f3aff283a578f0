"""Model checkpoints: a safetensors file of tensors plus a JSON sidecar that says what they are.

`model.safetensors` holds the weights (no pickle: nothing in it can run code); `model.json`
beside it holds the record a reader needs to trust and rebuild them: the architecture (name and
config), the parameter count, the training config and data seeds, steps and loss history, the
harness version and git commit, and the sha256 of the weights file. Loading refuses, in one line
naming the file: a missing file, a pickled PyTorch file (`torch.save`), a corrupt or truncated
file, a missing or malformed sidecar, weights that do not match their sidecar, a checkpoint of
another architecture, and tensors that do not fit the model.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

from harness.errors import CheckpointError

FORMAT = "harness-checkpoint/1"
EMBEDDED = "harness_record"  # header key of a record carried inside the file (load_embedded)


def looks_pickled(blob: bytes) -> bool:
    """A torch.save file (a zip container, or a bare pickle) rather than safetensors. A
    safetensors file starts with the 8-byte length of its JSON header, which follows: that is
    checked first, since the length's bytes can be anything (0x80, 'PK')."""
    if len(blob) >= 9:
        n = int.from_bytes(blob[:8], "little")
        if 8 + n <= len(blob) and blob[8:9] == b"{":
            return False
    pickle_protocol = blob[:1] == b"\x80" and blob[1:2] in (b"\x02", b"\x03", b"\x04", b"\x05")
    return blob.startswith(b"PK\x03\x04") or pickle_protocol


def sidecar_of(path: str | Path) -> Path:
    """The JSON sidecar of a checkpoint: `x.safetensors` -> `x.json`."""
    return Path(path).with_suffix(".json")


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _atomic_write(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def save(path: str | Path, tensors: dict[str, Any], record: dict[str, Any],
         metadata: dict[str, str] | None = None) -> Path:
    """Write `tensors` (name -> torch tensor) to `path` and the sidecar beside it, each
    atomically (a kill mid-write leaves the previous checkpoint). `record` must name the
    `architecture` ({"name": ..., "config": {...}}); the format, parameter count, file hash,
    harness version and git commit are added here. `metadata` goes into the safetensors header
    (string to string; the remix separators read their constructor arguments from it)."""
    from safetensors.torch import save as st_save

    from harness.manifest import environment

    path = Path(path)
    if path.suffix != ".safetensors":
        raise CheckpointError(f"{path}: a checkpoint file ends in .safetensors")
    if "architecture" not in record or "name" not in record["architecture"]:
        raise CheckpointError(f"{path}: the record must name its architecture")
    path.parent.mkdir(parents=True, exist_ok=True)
    flat = {k: v.detach().to("cpu").contiguous() for k, v in tensors.items()}
    blob = st_save(flat, metadata=metadata)
    _atomic_write(path, blob)
    env = environment()
    side = {
        "format": FORMAT,
        **record,
        "parameters": int(sum(v.numel() for v in flat.values())),
        "sha256": hashlib.sha256(blob).hexdigest(),
        "harness_version": env["harness_version"],
        "git": env["git"],
        "saved_utc": env["created_utc"],
    }
    _atomic_write(sidecar_of(path), (json.dumps(side, indent=1, default=str) + "\n").encode())
    return path


def read_record(path: str | Path) -> dict[str, Any]:
    """The sidecar of a checkpoint, checked for form (not against the weights)."""
    path = Path(path)
    side = sidecar_of(path)
    if not side.is_file():
        raise CheckpointError(f"{path}: no sidecar {side.name} beside it (the architecture and "
                              "training record; harness train and harness checkpoints write one)")
    try:
        record = json.loads(side.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"{side}: not a readable JSON sidecar ({exc})") from None
    if not isinstance(record, dict) or record.get("format") != FORMAT:
        raise CheckpointError(f"{side}: not a checkpoint sidecar (expected format {FORMAT!r})")
    arch = record.get("architecture")
    if not isinstance(arch, dict) or not isinstance(arch.get("name"), str):
        raise CheckpointError(f"{side}: 'architecture' must be an object with a 'name'")
    return record


def load(path: str | Path, architecture: str | None = None) -> tuple[dict[str, Any], dict[str, Any]]:
    """(tensors, record) of a checkpoint; with `architecture`, refuse one of another model."""
    from safetensors import SafetensorError
    from safetensors.torch import load as st_load

    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint file")
    blob = path.read_bytes()
    if looks_pickled(blob):
        raise CheckpointError(f"{path}: a pickled PyTorch file (torch.save); the harness loads "
                              "only safetensors (convert it: harness checkpoints convert)")
    record = read_record(path)
    if architecture is not None and record["architecture"]["name"] != architecture:
        raise CheckpointError(f"{path}: a {record['architecture']['name']!r} checkpoint, expected "
                              f"{architecture!r}")
    if hashlib.sha256(blob).hexdigest() != record.get("sha256"):
        raise CheckpointError(f"{path}: its content does not match its sidecar's sha256 (a "
                              "changed, truncated or mismatched file)")
    try:
        # st_load's tensors are views of immutable bytes objects (16-byte aligned): a training
        # state is updated in place, so each gets its own torch storage.
        tensors = {k: v.clone() for k, v in st_load(blob).items()}
    except (SafetensorError, ValueError, RuntimeError) as exc:
        raise CheckpointError(f"{path}: not a readable safetensors file ({exc})") from None
    return tensors, record


def torch_load_safely(path: str | Path, what: str, allowed: list | None = None) -> Any:
    """A PyTorch file read with torch.load(weights_only=True): tensors and plain containers only
    (and the classes `allowed`), nothing in it runs; anything else, bytes that are no PyTorch file
    at all included, is one line naming the file and saying it is not `what` the harness can read
    safely."""
    import torch

    try:
        with torch.serialization.safe_globals(allowed or []):
            return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # pickle, zip and legacy-format errors of every kind (a text file: KeyError)
        text = str(exc).strip()
        bare = isinstance(exc, (KeyError, UnicodeDecodeError)) or not text  # says nothing alone
        first = f"{type(exc).__name__}: {text}" if bare else text.splitlines()[0]
        if first.startswith("Weights only load failed"):  # torch's advice (weights_only=False) would run it
            first = "it holds objects other than tensors and plain containers; none of it was run"
        raise CheckpointError(f"{path}: not {what} the harness can read safely ({first[:200]})") from None


def require_tensors(state: dict[str, Any], path: str | Path) -> dict[str, Any]:
    """A loaded state dict whose every entry is a tensor, or one line naming the first that is not."""
    import torch

    bad = [k for k, v in state.items() if not isinstance(v, torch.Tensor)]
    if bad:
        raise CheckpointError(f"{path}: state entry {bad[0]!r} is not a tensor")
    return state


def header_metadata(blob: bytes) -> dict[str, str]:
    """The `__metadata__` of a safetensors file's JSON header ({} when it has none)."""
    n = int.from_bytes(blob[:8], "little")
    header = json.loads(blob[8:8 + n])
    return dict(header.get("__metadata__") or {})


def load_embedded(path: str | Path, architecture: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """(tensors, record) of a checkpoint that carries its record inside its own header (the
    trainer's state: one file, written atomically, so a kill can never pair the tensors of one
    step with the record of another). The sidecar beside it is for people and is not read,
    except for a file without an embedded record (then it must match the file's sha256)."""
    from safetensors import SafetensorError
    from safetensors.torch import load as st_load

    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint file")
    blob = path.read_bytes()
    if looks_pickled(blob):
        raise CheckpointError(f"{path}: a pickled PyTorch file (torch.save), not a training state")
    try:
        meta = header_metadata(blob)
        if EMBEDDED not in meta:  # written before records were embedded: the sidecar, hash-checked
            return load(path, architecture)
        record = json.loads(meta[EMBEDDED])
        # st_load's tensors are views of immutable bytes objects (16-byte aligned): a training
        # state is updated in place, so each gets its own torch storage.
        tensors = {k: v.clone() for k, v in st_load(blob).items()}
    except (SafetensorError, ValueError, RuntimeError, UnicodeDecodeError) as exc:
        raise CheckpointError(f"{path}: not a readable safetensors file ({exc})") from None
    name = (record.get("architecture") or {}).get("name")
    if name != architecture:
        raise CheckpointError(f"{path}: a {name!r} training state, expected {architecture!r}")
    return tensors, record


def load_into(module: Any, tensors: dict[str, Any], path: str | Path, prefix: str = "") -> None:
    """Load `tensors` (those under `prefix`) into a torch module, strictly; a mismatch is one line
    naming the file, the missing and unexpected keys and the first shape that differs."""
    own = module.state_dict()
    given = {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}
    missing = sorted(set(own) - set(given))
    extra = sorted(set(given) - set(own))
    shapes = [f"{k} {tuple(given[k].shape)} != {tuple(own[k].shape)}" for k in own
              if k in given and tuple(given[k].shape) != tuple(own[k].shape)]
    if missing or extra or shapes:
        parts = []
        if missing:
            parts.append(f"missing {', '.join(missing[:3])}{' ...' if len(missing) > 3 else ''}")
        if extra:
            parts.append(f"unexpected {', '.join(extra[:3])}{' ...' if len(extra) > 3 else ''}")
        if shapes:
            parts.append(f"shape of {shapes[0]}")
        raise CheckpointError(f"{path}: does not fit the {type(module).__name__} model "
                              f"({'; '.join(parts)})")
    module.load_state_dict(given, strict=True)


SIDECAR_KEYS = ("format", "parameters", "sha256", "harness_version", "git", "saved_utc")  # save() adds them


def average(paths: list[str | Path], out: str | Path) -> Path:
    """Write the uniform average of the weights of checkpoints of one model to `out`
    (checkpoint averaging, as fairseq's `average_checkpoints.py` and ESPnet do with the last or
    best snapshots of a run: a cheap ensemble that smooths the noise of a constant learning
    rate). Every input must have the same architecture (name and config), the same tensor names,
    shapes and dtypes, and the same safetensors header metadata; floating-point tensors are
    averaged in float64 and cast back, any other tensor (a step counter, an index) must be equal
    in all of them. The sidecar is the last input's record plus `averaged_from` (each input's
    path, sha256 and training steps). Anything that does not fit is one line naming the file."""
    import torch

    paths = [Path(p) for p in paths]
    if len(paths) < 2:
        raise CheckpointError(f"{paths[0] if paths else out}: averaging needs at least two checkpoints")
    loaded = [load(p) for p in paths]
    metas = [header_metadata(p.read_bytes()) for p in paths]
    ref_t, ref_r = loaded[0]
    for p, (t, r), meta in zip(paths[1:], loaded[1:], metas[1:], strict=True):
        if r["architecture"] != ref_r["architecture"]:
            raise CheckpointError(f"{p}: its architecture ({json.dumps(r['architecture'])}) differs "
                                  f"from {paths[0]}'s ({json.dumps(ref_r['architecture'])})")
        if set(t) != set(ref_t):
            odd = sorted(set(t) ^ set(ref_t))[0]
            raise CheckpointError(f"{p}: tensor {odd!r} is in one of it and {paths[0]} only")
        for k, v in t.items():
            if v.shape != ref_t[k].shape or v.dtype != ref_t[k].dtype:
                raise CheckpointError(f"{p}: tensor {k!r} is {v.dtype} {tuple(v.shape)}, {paths[0]}'s "
                                      f"is {ref_t[k].dtype} {tuple(ref_t[k].shape)}")
            if not v.is_floating_point() and not torch.equal(v, ref_t[k]):
                raise CheckpointError(f"{p}: non-floating tensor {k!r} differs from {paths[0]}'s "
                                      "(only floating-point weights can be averaged)")
        if meta != metas[0]:
            raise CheckpointError(f"{p}: its safetensors header metadata differs from {paths[0]}'s")
    averaged = {}
    for k, v in ref_t.items():
        if v.is_floating_point():
            total = torch.zeros(v.shape, dtype=torch.float64)
            for t, _ in loaded:
                total += t[k].to(torch.float64)
            averaged[k] = (total / len(loaded)).to(v.dtype)
        else:
            averaged[k] = v
    record = {k: v for k, v in loaded[-1][1].items() if k not in SIDECAR_KEYS}
    record["averaged_from"] = [
        {"path": str(p), "sha256": r["sha256"], "steps": (r.get("training") or {}).get("steps")}
        for p, (_, r) in zip(paths, loaded, strict=True)]
    return save(out, averaged, record, metadata=metas[0] or None)
