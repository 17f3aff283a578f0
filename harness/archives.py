"""Untrusted archives (zip, tar), extracted safely: every entry is checked before anything is
written (no absolute paths, no `..`, no links or devices, bounded file count, total size and
compression ratio) and streamed with the same bounds enforced on the bytes actually read, into
a folder the caller names; nothing is written anywhere else."""

from __future__ import annotations

import shutil
import stat
import tarfile
import zipfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from harness.errors import HarnessError


class SubmissionError(HarnessError):
    """A submission cannot be read or is refused as a whole (bad archive, unsafe entry)."""


@dataclass(frozen=True)
class Limits:
    max_files: int
    max_bytes: int  # total uncompressed
    max_ratio: float = 200.0  # uncompressed / compressed, per entry and over the archive


def _safe_name(name: str, archive: Path) -> PurePosixPath | None:
    """The entry's relative path, or raise for anything that could escape the work folder."""
    if "\x00" in name or "\\" in name:
        raise SubmissionError(f"{archive}: entry {name!r} has a backslash or NUL in its name")
    p = PurePosixPath(name)
    if p.is_absolute() or (p.parts and p.parts[0].endswith(":")):
        raise SubmissionError(f"{archive}: entry {name!r} is an absolute path (refused)")
    if any(part == ".." for part in p.parts):
        raise SubmissionError(
            f"{archive}: entry {name!r} points outside the archive (path traversal, refused)"
        )
    parts = [x for x in p.parts if x not in ("", ".")]
    return PurePosixPath(*parts) if parts else None


def _copy_bounded(src, dst: Path, declared: int, budget: list[int], archive: Path, name: str) -> None:
    """Stream an entry to dst, refusing more bytes than declared or than the budget left."""
    written = 0
    with open(dst, "xb") as f:
        while True:
            chunk = src.read(1 << 20)
            if not chunk:
                break
            written += len(chunk)
            if written > declared:
                raise SubmissionError(
                    f"{archive}: entry {name!r} holds more bytes than its header says (refused)"
                )
            if written > budget[0]:
                raise SubmissionError(f"{archive}: uncompressed size exceeds the limit (refused as a bomb)")
            f.write(chunk)
    budget[0] -= written


def _check_totals(archive: Path, count: int, total: int, limits: Limits) -> None:
    if count > limits.max_files:
        raise SubmissionError(f"{archive}: {count} entries, more than the limit of {limits.max_files}")
    if total > limits.max_bytes:
        raise SubmissionError(
            f"{archive}: {total} bytes uncompressed, more than the limit of {limits.max_bytes} "
            "(refused as a bomb)"
        )
    size = max(archive.stat().st_size, 1)
    if total / size > limits.max_ratio:
        raise SubmissionError(
            f"{archive}: compression ratio {total / size:.0f}:1 exceeds {limits.max_ratio:.0f}:1 "
            "(refused as a bomb)"
        )


def extract(archive: Path, dest: Path, limits: Limits) -> Path:
    """Extract a zip or tar archive into dest (created; must not exist) and return it."""
    archive = Path(archive)
    if zipfile.is_zipfile(archive):
        kind = "zip"
    else:
        try:
            is_tar = tarfile.is_tarfile(archive)
        except OSError as exc:
            raise SubmissionError(f"{archive}: cannot read ({exc})") from None
        if not is_tar:
            raise SubmissionError(f"{archive}: neither a folder nor a zip or tar archive")
        kind = "tar"
    dest.mkdir(parents=True, exist_ok=False)
    budget = [limits.max_bytes]
    try:
        if kind == "zip":
            _extract_zip(archive, dest, limits, budget)
        else:
            _extract_tar(archive, dest, limits, budget)
    except BaseException:
        shutil.rmtree(dest, ignore_errors=True)
        raise
    return dest


def _target(dest: Path, rel: PurePosixPath, archive: Path, name: str) -> Path:
    out = dest.joinpath(*rel.parts)
    root = dest.resolve()
    if not out.resolve().is_relative_to(root):  # belt and braces after the name checks
        raise SubmissionError(f"{archive}: entry {name!r} resolves outside the work folder (refused)")
    return out


def _write_entry(dest: Path, name: str, is_dir: bool, size: int, opener, budget: list[int],
                 archive: Path) -> None:
    """Create one checked entry under dest: a folder, or a file streamed within the bounds."""
    rel = _safe_name(name, archive)
    if rel is None:
        return
    out = _target(dest, rel, archive, name)
    if is_dir:
        if out.exists() and not out.is_dir():
            raise SubmissionError(f"{archive}: entry {name!r} is both a file and a folder in the "
                                  "archive (refused)")
        try:
            out.mkdir(parents=True, exist_ok=True)
        except (FileExistsError, NotADirectoryError):
            raise SubmissionError(f"{archive}: entry {name!r} lies in a folder that the archive also "
                                  "holds as a file (refused)") from None
        return
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        raise SubmissionError(f"{archive}: entry {name!r} lies in a folder that the archive also "
                              "holds as a file (refused)") from None
    if out.is_dir():
        raise SubmissionError(f"{archive}: entry {name!r} is both a file and a folder in the archive "
                              "(refused)")
    try:
        src = opener()
        if src is None:
            raise SubmissionError(f"{archive}: entry {name!r} cannot be read")
        with src:
            _copy_bounded(src, out, size, budget, archive, name)
    except FileExistsError:
        raise SubmissionError(f"{archive}: entry {name!r} appears twice") from None
    except (zipfile.BadZipFile, tarfile.TarError, OSError, EOFError) as exc:
        raise SubmissionError(f"{archive}: entry {name!r} is corrupt ({exc})") from None


def _extract_zip(archive: Path, dest: Path, limits: Limits, budget: list[int]) -> None:
    try:
        zf = zipfile.ZipFile(archive)
    except (zipfile.BadZipFile, OSError) as exc:
        raise SubmissionError(f"{archive}: bad zip archive ({exc})") from None
    with zf:
        infos = zf.infolist()
        total = 0
        for info in infos:
            rel = _safe_name(info.filename, archive)
            mode = info.external_attr >> 16
            if stat.S_ISLNK(mode):
                raise SubmissionError(f"{archive}: entry {info.filename!r} is a symbolic link (refused)")
            kind = stat.S_IFMT(mode)  # 0 when the writer recorded permissions only
            if kind and kind not in (stat.S_IFREG, stat.S_IFDIR):
                raise SubmissionError(
                    f"{archive}: entry {info.filename!r} is not a regular file (refused)"
                )
            if info.flag_bits & 0x1:
                raise SubmissionError(f"{archive}: entry {info.filename!r} is encrypted (refused)")
            if rel is None and not info.is_dir():
                raise SubmissionError(f"{archive}: entry {info.filename!r} has an empty name")
            total += info.file_size
            ratio = info.file_size / max(info.compress_size, 1)
            if info.file_size > 0 and ratio > limits.max_ratio:
                raise SubmissionError(
                    f"{archive}: entry {info.filename!r} expands {ratio:.0f}:1, "
                    f"over the limit of {limits.max_ratio:.0f}:1 (refused as a bomb)"
                )
        _check_totals(archive, len(infos), total, limits)
        for info in infos:
            _write_entry(dest, info.filename, info.is_dir(), info.file_size,
                         lambda info=info: zf.open(info), budget, archive)


def _extract_tar(archive: Path, dest: Path, limits: Limits, budget: list[int]) -> None:
    try:
        tf = tarfile.open(archive)
    except (tarfile.TarError, OSError) as exc:
        raise SubmissionError(f"{archive}: bad tar archive ({exc})") from None
    with tf:
        members = []
        total = 0
        try:
            for m in tf:  # iterates headers only
                rel = _safe_name(m.name, archive)
                if m.issym() or m.islnk():
                    kind = "symbolic" if m.issym() else "hard"
                    raise SubmissionError(f"{archive}: entry {m.name!r} is a {kind} link (refused)")
                if not (m.isfile() or m.isdir()):
                    raise SubmissionError(f"{archive}: entry {m.name!r} is not a regular file (refused)")
                members.append((m, rel))
                total += m.size
                if len(members) > limits.max_files:
                    raise SubmissionError(f"{archive}: more than {limits.max_files} entries (refused)")
                if total > limits.max_bytes:
                    break
        except tarfile.TarError as exc:
            raise SubmissionError(f"{archive}: bad tar archive ({exc})") from None
        _check_totals(archive, len(members), total, limits)
        for m, _ in members:
            _write_entry(dest, m.name, m.isdir(), m.size, lambda m=m: tf.extractfile(m), budget,
                         archive)
