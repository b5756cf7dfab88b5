"""Whole-file writes beside a target: checks, temporary names, publishing into place, leftovers of killed writers.

A whole-file write (a store build, an import, an export, a CSV) writes a hidden temporary beside its target and
renames it into place, so the target holds the old or the new file, never a part. Each temporary's name says which
process on which machine writes it (:func:`temporary_beside`), so the next write can remove what a killed one left
(:func:`remove_leftover_temporaries`). Small files go through :func:`stage_file` (or :func:`stage_text`), then
:func:`publish_staged`; a store file built under a temporary name goes into place with :func:`publish`, which never
replaces an existing file unless asked.
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import socket
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

from harp.store.errors import StoreError

__all__ = [
    "LeftoverFileWarning",
    "check_store_file",
    "check_target",
    "discard_staged",
    "publish",
    "publish_staged",
    "remove_leftover_temporaries",
    "remove_quietly",
    "stage_file",
    "stage_text",
    "sync_folder",
    "temporary_beside",
    "write_atomically",
]


def check_store_file(path: Path) -> None:
    """Refuse, before DuckDB sees it, a path that cannot be a store."""
    if not path.exists():
        raise StoreError(
            f"no store at {path}: the file does not exist; create one with `harp synth`, `harp import` "
            "or the pipeline"
        )
    if path.is_dir():
        raise StoreError(f"{path} is a folder, not a store file; give the path of a .duckdb store")
    with open(path, "rb") as handle:
        header = handle.read(12)
    if not header:
        raise StoreError(
            f"{path} is empty (0 bytes), not a HARP store; delete it, or recreate the store there"
        )
    if len(header) < 12 or header[8:12] != b"DUCK":
        raise StoreError(
            f"{path} is not a DuckDB file (it is corrupt or some other kind of file), so not a HARP store"
        )


def publish(temporary: Path, target: Path, *, overwrite: bool) -> None:
    """Move a finished store file into place: never over an existing file unless ``overwrite``.

    Parameters
    ----------
    temporary : Path
        The finished file, beside ``target`` (:func:`temporary_beside`), closed.
    target : Path
        Where it goes. With ``overwrite``, an existing file there (and a ``.wal`` a killed writer left for it) is
        replaced in one rename; without it, a hard link refuses an existing file atomically.
    overwrite : bool

    Raises
    ------
    StoreError
        ``target`` exists and ``overwrite`` is False.
    """
    if overwrite:
        # A write-ahead log left by a killed writer belongs to the old file; it must not be replayed on the new one.
        with contextlib.suppress(FileNotFoundError):
            os.remove(f"{target}.wal")
        os.replace(temporary, target)
    else:
        try:
            os.link(temporary, target)
        except FileExistsError:
            raise StoreError(
                f"{target} already exists; pass overwrite=True (--force) to replace it"
            ) from None
        except OSError:  # a filesystem without hard links: check, then rename
            if target.exists():
                raise StoreError(
                    f"{target} already exists; pass overwrite=True (--force) to replace it"
                ) from None
            os.replace(temporary, target)
        else:
            os.remove(temporary)
    sync_folder(target.parent)


def sync_folder(folder: Path) -> None:
    """Make a rename inside ``folder`` durable (a no-op where folders cannot be opened)."""
    with contextlib.suppress(OSError):
        directory = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(directory)
        finally:
            os.close(directory)


class LeftoverFileWarning(UserWarning):
    """Temporary files that a killed whole-file write left beside its target were removed."""


def _host_tag() -> str:
    """This machine's name as it goes into temporary names: letters and digits only, at most 32."""
    return re.sub(r"[^A-Za-z0-9]", "", socket.gethostname())[:32] or "host"


def temporary_beside(target: Path, purpose: str) -> Path:
    """A fresh hidden name beside ``target`` that says which process on which machine is writing it.

    ``.NAME.PURPOSE-PID@HOST-RANDOM.tmp``: :func:`remove_leftover_temporaries` removes it once that process is
    gone. DuckDB may add ``.wal`` to it, and a temporary built by :meth:`Store.create` adds its own suffix.
    """
    return target.with_name(
        f".{target.name}.{purpose}-{os.getpid()}@{_host_tag()}-{secrets.token_hex(4)}.tmp"
    )


def _process_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (OSError, OverflowError):  # PermissionError: alive, someone else's; other errors: do not guess
        return True
    return True


def remove_leftover_temporaries(target: str | os.PathLike[str]) -> list[Path]:
    """Remove the temporary files of whole-file writes to ``target`` whose writing process has died.

    A store build, import, export or CSV write that is killed (kill -9, power loss) leaves its hidden
    temporary (and DuckDB's ``.wal`` of it) beside the target. Each name carries the writer's PID and machine
    (see :func:`temporary_beside`); a file is removed only when it was written on this machine by a process
    that no longer runs. Names without a machine (older versions) are judged by the PID alone. Emits one
    :class:`LeftoverFileWarning` naming what was removed.

    Returns
    -------
    list of Path
        The files removed.
    """
    path = Path(target)
    pattern = re.compile(
        r"\.+"
        + re.escape(path.name)
        + r"\.[a-z]+-(?P<pid>\d+)(?:@(?P<host>[A-Za-z0-9]*))?-[0-9a-f]+\.tmp(?:\..*)?",
        re.DOTALL,
    )
    host = _host_tag()
    removed: list[tuple[Path, int]] = []
    try:
        entries = list(os.scandir(path.parent))
    except OSError:
        return []
    for entry in entries:
        match = pattern.fullmatch(entry.name)
        if match is None or (match["host"] is not None and match["host"] != host):
            continue
        if _process_alive(int(match["pid"])):
            continue
        try:
            if not entry.is_file(follow_symlinks=False):
                continue
            size = entry.stat(follow_symlinks=False).st_size
            os.remove(entry.path)
        except OSError:  # gone already (another run cleaned it), or not ours to remove
            continue
        removed.append((Path(entry.path), size))
    if removed:
        total = sum(size for _, size in removed) / 1e6
        names = ", ".join(p.name for p, _ in sorted(removed)[:4]) + (", ..." if len(removed) > 4 else "")
        warnings.warn(
            f"removed {len(removed)} temporary file(s) ({total:.1f} MB) that a killed earlier write left "
            f"beside {path}: {names}",
            LeftoverFileWarning,
            stacklevel=2,
        )
    return [p for p, _ in removed]


def stage_text(target: str | os.PathLike[str], text: str, purpose: str = "write") -> Path:
    """Write ``text`` (UTF-8, as is) to a fresh temporary beside ``target``, flushed to disk; return its path.

    The first step of a whole-file write of a small text file: :func:`publish_staged` then renames it over
    ``target`` (or :func:`discard_staged` removes it), so ``target`` holds the old or the new text, never a part.
    Leftovers of killed earlier writes to ``target`` are removed first.
    """
    data = text.encode("utf-8")
    return stage_file(target, lambda stream: stream.write(data), purpose)


def stage_file(
    target: str | os.PathLike[str], write: Callable[[BinaryIO], object], purpose: str = "write"
) -> Path:
    """:func:`stage_text` for any content: ``write(stream)`` fills a fresh binary temporary beside ``target``.

    For example ``stage_file(path, lambda f: numpy.save(f, array))``; then :func:`publish_staged`.
    """
    final = Path(target)
    remove_leftover_temporaries(final)
    temporary = temporary_beside(final, purpose)
    try:
        with open(temporary, "xb") as stream:
            write(stream)
            stream.flush()
            os.fsync(stream.fileno())
    except BaseException:
        discard_staged(temporary)
        raise
    return temporary


def write_atomically(
    target: str | os.PathLike[str], write: Callable[[BinaryIO], object], purpose: str = "write"
) -> None:
    """Replace ``target`` with what ``write(stream)`` writes, whole or not at all.

    :func:`stage_file`, then :func:`publish_staged`; the temporary is removed when either fails. Use the two
    steps where several files are published together (a CSV and its manifest).
    """
    temporary = stage_file(target, write, purpose)
    try:
        publish_staged(temporary, target)
    except BaseException:
        discard_staged(temporary)
        raise


def publish_staged(temporary: Path, target: str | os.PathLike[str]) -> None:
    """Rename a file from :func:`stage_text` over ``target`` (replacing it) and make the rename durable."""
    os.replace(temporary, target)
    sync_folder(Path(target).parent)


def discard_staged(temporary: Path) -> None:
    """Remove a staged temporary that will not be published (missing is fine)."""
    with contextlib.suppress(FileNotFoundError):
        os.remove(temporary)


def remove_quietly(path: Path) -> None:
    """Remove ``path`` and DuckDB's ``.wal`` beside it; either may be missing."""
    for candidate in (path, Path(f"{path}.wal")):
        with contextlib.suppress(FileNotFoundError):
            os.remove(candidate)


def check_target(target: Path, overwrite: bool) -> None:
    """Refuse a target that may not be written; first remove what killed earlier writes to it left.

    Creates ``target``'s folder when it is missing.

    Raises
    ------
    StoreError
        ``target`` is a folder, or exists and ``overwrite`` is False.
    """
    remove_leftover_temporaries(target)
    if target.is_dir():
        raise StoreError(f"{target} is a folder; give the path of a store file")
    if target.exists() and not overwrite:
        raise StoreError(f"{target} already exists; pass overwrite=True (--force) to replace it")
    target.parent.mkdir(parents=True, exist_ok=True)
