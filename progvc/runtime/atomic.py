"""Atomic file writes: the one way progvc writes a file.

Every output (streams, decoded videos, weights, manifests, benchmark results, training caches and
checkpoints) is written into a temporary file beside its target, flushed to disk, and renamed onto
the target only when complete. An interrupted or failed write never leaves a file that looks whole,
and never harms the file it would have replaced::

    with atomic_path(target) as tmp:       # tmp: ".<name>.XXXX.part<suffix>" in target's folder
        write_something(tmp)               # any writer that takes a path
    write_bytes_atomic(target, data)
    write_text_atomic(target, text)

Errors name the target, never the temporary file, since the temporary name means nothing to a user.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

__all__ = ["atomic_path", "file_mode", "write_bytes_atomic", "write_text_atomic"]


@contextlib.contextmanager
def atomic_path(target: str | os.PathLike[str]) -> Iterator[Path]:
    """A temporary path beside ``target`` with the same suffix (writers that pick a format by name
    still work), moved onto ``target`` when the ``with`` block completes, after an fsync and with the
    permissions a new file gets under the umask (``mkstemp`` alone would leave 0600). On any error or
    interrupt the temporary file is removed and ``target`` is untouched; an :class:`OSError` about
    the temporary file is raised again naming ``target``."""
    target = Path(target)
    try:
        fd, name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".part" + target.suffix)
    except OSError as exc:
        raise _naming(exc, target) from None
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        _fsync(tmp)
        os.chmod(tmp, file_mode())
        os.replace(tmp, target)
    except OSError as exc:
        if exc.filename in (name, str(tmp)) or exc.filename2 == str(target):
            raise _naming(exc, target) from exc
        raise
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)


def write_bytes_atomic(target: str | os.PathLike[str], data: bytes) -> None:
    """Write ``data`` to ``target`` atomically (see :func:`atomic_path`)."""
    with atomic_path(target) as tmp:
        tmp.write_bytes(data)


def write_text_atomic(target: str | os.PathLike[str], text: str) -> None:
    """Write ``text`` (UTF-8) to ``target`` atomically (see :func:`atomic_path`)."""
    write_bytes_atomic(target, text.encode())


def file_mode() -> int:
    """Permissions of a new file under the current umask (what ``open(path, "w")`` would give)."""
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


def _fsync(path: Path) -> None:
    """Flush ``path``'s bytes to disk, so the rename can never land before them."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _naming(exc: OSError, target: Path) -> OSError:
    """The same kind of OSError (PermissionError, FileNotFoundError, ...) about ``target``."""
    return type(exc)(exc.errno, exc.strerror or str(exc), str(target))
