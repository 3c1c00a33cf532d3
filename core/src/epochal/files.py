"""File helpers shared by the backends: atomic writes, and what a failed write left behind."""

from __future__ import annotations

import contextlib
import errno
import os
import re
import socket
import tempfile
import zlib
from collections.abc import Iterator
from typing import IO, Any

__all__ = ["atomic_write", "os_error_in", "remove_stale_temp_files", "write_error_message"]

#: The writing host, in the names of temporary files: a run folder on a shared file system
#: may be written from several machines, and a process id only means something on its own.
_HOST = f"{zlib.crc32(socket.gethostname().encode()) & 0xFFFFFFFF:08x}"

#: ``.<target>.<host>-<pid>-<random>.tmp``: what :func:`atomic_write` writes before the rename.
_TEMP_NAME = re.compile(r"^\.(?P<target>.+)\.(?P<host>[0-9a-f]{8})-(?P<pid>\d+)-[^.]+\.tmp$")


def _umask() -> int:
    try:  # Linux >= 4.7: read it without changing it (os.umask would, for all threads)
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _writer_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    return True


def remove_stale_temp_files(
    directory: str | os.PathLike[str], target: str | None = None
) -> list[str]:
    """Remove the temporary files that :func:`atomic_write` calls on this host left in
    ``directory`` when their process died mid-write (``kill -9``, out of memory, power); only
    those of ``target`` (a file name) if given. Files of live writers are kept. Returns the
    removed paths."""
    removed = []
    try:
        names = os.listdir(directory)
    except OSError:
        return removed
    for name in names:
        match = _TEMP_NAME.match(name)
        if match is None or match["host"] != _HOST or (target and match["target"] != target):
            continue
        pid = int(match["pid"])
        if pid == os.getpid() or _writer_alive(pid):
            continue
        path = os.path.join(directory, name)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
            removed.append(path)
    return removed


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike[str], mode: str = "wb") -> Iterator[IO[Any]]:
    """Write to a temporary file beside ``path`` and move it into place on success.

    A crash, a full disk or an exception inside the block leaves any previous
    ``path`` untouched and no temporary file behind; a process killed mid-write
    leaves one, which the next write of ``path`` removes. The file gets the
    permissions of the file it replaces, else the usual ones (``0o666`` less the
    umask), not ``mkstemp``'s owner-only ``0o600``.
    """
    target = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(target))
    base = os.path.basename(target)
    remove_stale_temp_files(directory, base)
    try:
        permissions = os.stat(target).st_mode & 0o7777
    except OSError:
        permissions = 0o666 & ~_umask()
    fd, tmp_path = tempfile.mkstemp(
        prefix=f".{base}.{_HOST}-{os.getpid()}-", suffix=".tmp", dir=directory
    )
    handle = None
    try:
        with contextlib.suppress(OSError):  # a file system without modes (FAT, some mounts)
            os.fchmod(fd, permissions)
        handle = os.fdopen(fd, mode)
        try:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
            handle.close()
            os.replace(tmp_path, target)
        except OSError as exc:  # a full disk, a file size limit: say which file
            named = _naming(exc, target)
            if named is exc:
                raise
            raise named from exc
    except BaseException:
        if handle is None:
            os.close(fd)
        else:
            with contextlib.suppress(OSError):  # flushes what failed to write: fails again
                handle.close()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp_path)
        raise


def _naming(exc: OSError, target: str) -> OSError:
    """``exc`` with ``target`` as its file name (``[Errno 28] No space left on device: 'x'``)."""
    if exc.filename is not None or exc.errno is None:
        return exc
    return OSError(exc.errno, exc.strerror or os.strerror(exc.errno), target)


def os_error_in(exc: BaseException | None) -> OSError | None:
    """The :class:`OSError` behind ``exc``: ``exc`` itself, else the first one in its
    ``__cause__``/``__context__`` chain (``torch.save`` turns a failed write into a
    ``RuntimeError`` about the zip position, with the ``OSError`` as its context)."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        if isinstance(exc, OSError):
            return exc
        seen.add(id(exc))
        exc = exc.__cause__ or exc.__context__
    return None


def write_error_message(what: str, path: str, error: OSError) -> str:
    """One line for a failed write of ``path``: the cause, and that nothing was replaced."""
    code = errno.errorcode.get(error.errno or 0, "")
    cause = f"{error.strerror or error} ({code})" if code else str(error)
    hint = {
        errno.ENOSPC: "free some disk space",
        errno.EDQUOT: "free some space or raise the disk quota",
        errno.EFBIG: "raise the file size limit (ulimit -f)",
    }.get(error.errno or 0, "fix the cause")
    return (
        f"cannot write {what} {path}: {cause}. Nothing was replaced: the previous "
        f"{os.path.basename(path)}, if any, is intact; {hint} and resume from it"
    )
