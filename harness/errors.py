"""Errors a user can cause. The CLI prints them on one line and exits non-zero."""

from __future__ import annotations


class HarnessError(Exception):
    """Base of every user-facing error; its message says what is wrong and where."""


class AudioError(HarnessError):
    """An audio file cannot be read, or its content breaks a stated requirement."""


class SuiteError(HarnessError):
    """A suite folder or manifest is missing or malformed."""


class ListenerError(HarnessError):
    """A listener file is malformed or a listener id is unknown."""


class ConfigError(HarnessError):
    """A run configuration (TOML or flags) is invalid."""


class RegistryError(HarnessError):
    """A system, metric, panel or protocol name is unknown or fails to load."""


class CheckpointError(HarnessError):
    """A checkpoint (safetensors + JSON sidecar) is missing, unreadable or of another model."""


class StoreError(HarnessError):
    """The results store cannot be opened, or a run id is unknown."""


class InvalidInput(Exception):
    """Raised inside scoring: the input makes the metric undefined (status `invalid`)."""


class MetricFailed(Exception):
    """Raised inside scoring: the metric ran and could not produce a number (status `failed`)."""


def read_structured(path, error: type[HarnessError], what: str, missing: str = "file not found",
                    repeated: str = "key {key!r} appears twice in one object"):
    """Parse a JSON (or, by suffix, TOML) file; every problem is `error('<path>: <reason>')`,
    a key repeated in one JSON object too (`repeated` says it, given the key)."""
    import json
    import tomllib
    from pathlib import Path

    path = Path(path)
    if not path.is_file():
        raise error(f"{path}: {missing}")
    toml = path.suffix.lower() == ".toml"

    def unique(pairs):  # JSON keeps the last of a repeated key silently; TOML refuses it already
        out = {}
        for k, v in pairs:
            if k in out:
                raise error(f"{path}: {repeated.format(key=k)}")
            out[k] = v
        return out

    try:
        text = path.read_text()
        return tomllib.loads(text) if toml else json.loads(text, object_pairs_hook=unique)
    except (json.JSONDecodeError, tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise error(f"{path}: not valid {'TOML' if toml else 'JSON'} ({exc})") from None
    except OSError as exc:
        raise error(f"{path}: cannot read {what} ({exc.strerror})") from None
