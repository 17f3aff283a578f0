"""Guards on what the harness writes: user-given names and output files.

Every name a user gives that becomes part of a path is one plain path component. No command
writes over a results store or a leaderboard (any SQLite database), over one of its own inputs,
or over an existing file unless the user says --force.
"""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path

from harness.errors import ConfigError, HarnessError

SQLITE_MAGIC = b"SQLite format 3\x00"


def plain_name(value: str, what: str) -> str:
    """`value` when it is one plain path component (no separator, not '.' or '..', not empty,
    no control characters); a ConfigError naming `what` otherwise."""
    from harness.suites.types import plain_component

    if not plain_component(value) or len(value.encode()) > 200:
        raise ConfigError(f"{what} {value!r}: must be one plain name (no '/' or '\\', not '.' or "
                          "'..', not empty, no control characters, at most 200 bytes)")
    return value


def is_sqlite(path: Path) -> bool:
    try:
        with open(path, "rb") as fh:
            return fh.read(16) == SQLITE_MAGIC
    except OSError:
        return False


def _database_part(path: Path) -> Path | None:
    """The SQLite database that `path` is, or is a journal of (name-wal, name-shm, name-journal)."""
    if is_sqlite(path):
        return path
    for suffix in ("-wal", "-shm", "-journal"):
        if path.name.endswith(suffix):
            base = path.with_name(path.name[: -len(suffix)])
            if is_sqlite(base):
                return base
    return None


def check_output(dest: Path, *, force: bool, inputs: tuple[Path, ...] = (), what: str = "output") -> Path:
    """Refuse to write `dest` over a database, over one of `inputs`, over a folder, or over an
    existing file without `force`; return it otherwise."""
    dest = Path(dest)
    db = _database_part(dest) if dest.exists() or dest.name.endswith(("-wal", "-shm", "-journal")) else None
    if db is not None:
        raise ConfigError(f"{dest}: refusing to write the {what} over "
                          f"{'an SQLite database' if db == dest else f'part of the SQLite database {db}'}"
                          " (a results store or leaderboard); choose another --out")
    target = dest.resolve()
    for src in inputs:
        if Path(src).exists() and Path(src).resolve() == target:
            raise ConfigError(f"{dest}: refusing to write the {what} over its own input; choose "
                              "another --out")
    if dest.is_dir():
        raise ConfigError(f"{dest}: is a folder; give a file name for the {what}")
    if dest.exists() and not force:
        raise ConfigError(f"{dest}: already exists (--force overwrites it)")
    return dest


@contextmanager
def writing(dest: Path, what: str = "output"):
    """Turn an OSError while writing `dest` (a full disk, no permission) into a one-line error
    naming it."""
    try:
        yield
    except OSError as exc:
        reason = exc.strerror or str(exc)
        raise HarnessError(f"{dest}: cannot write the {what} ({reason})") from None
