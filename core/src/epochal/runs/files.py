"""File helpers shared by the backends: atomic writes, what a failed write left behind, and
opening the files of a run folder without following links or blocking on a FIFO.

A run folder may come from someone else (a copied or shared folder): a symbolic link in it
named ``metrics.csv`` or ``.epochal.lock`` would make epochal read a secret into its own files
or truncate the file the link points to, and a FIFO named ``checkpoint_last.pt`` would block
the process forever. :func:`open_run_file` and :func:`check_run_file` refuse both.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import socket
import stat
import tempfile
import zlib
from collections.abc import Iterator
from typing import IO, Any

from epochal.errors import ConfigError

__all__ = [
    "atomic_write",
    "check_run_file",
    "open_run_file",
    "os_error_in",
    "remove_stale_temp_files",
    "run_file_error",
    "write_error_message",
]

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
    try:  # lstat: a link's target's permissions are not this file's (a link is replaced)
        info = os.lstat(target)
        permissions = info.st_mode & 0o7777 if stat.S_ISREG(info.st_mode) else None
    except OSError:
        permissions = None
    if permissions is None:
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
    ``__cause__``/``__context__`` chain (PyTorch's ``save`` turns a failed write into a
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


#: What a file of a run folder may not be, by its type bits.
_NOT_REGULAR = {
    stat.S_IFLNK: "a symbolic link",
    stat.S_IFIFO: "a FIFO (named pipe)",
    stat.S_IFSOCK: "a socket",
    stat.S_IFCHR: "a character device",
    stat.S_IFBLK: "a block device",
    stat.S_IFDIR: "a folder",
}
_LINK = _NOT_REGULAR[stat.S_IFLNK]


def _problem(info: os.stat_result, writable: bool = False) -> str | None:
    """Why a file with ``info`` (from ``lstat``/``fstat``) is refused; ``None`` if it is not."""
    if stat.S_ISREG(info.st_mode):
        if writable and info.st_nlink > 1:  # written in place, it would change the others too
            return f"a hard link (one file with {info.st_nlink} names)"
        return None
    return _NOT_REGULAR.get(stat.S_IFMT(info.st_mode), "not a regular file")


def run_file_error(path: str | os.PathLike[str], problem: str) -> ConfigError:
    """The one-line error for the run-folder file ``path`` that is ``problem`` (a link...)."""
    path = os.fspath(path)
    if problem == _LINK:
        return ConfigError(
            f"{path} is a symbolic link: epochal does not follow links in a run folder (it "
            "could read or overwrite the file the link points to); remove it, or put the file "
            "itself there"
        )
    if problem.startswith("a hard link"):
        return ConfigError(
            f"{path} is {problem}: epochal writes it in place, which would change the file "
            "under its other names too; remove it (a new one is made)"
        )
    return ConfigError(
        f"{path} is {problem}, not a regular file: epochal reads and writes only regular files "
        "in a run folder; remove it"
    )


def check_run_file(path: str | os.PathLike[str]) -> None:
    """Refuse (:class:`ConfigError` naming it) a ``path`` that exists and is not a regular
    file: a symbolic link (not followed), a FIFO, a socket, a device or a folder. A missing
    ``path`` passes. For files read by path later (``config.toml``); :func:`open_run_file`
    checks the file it opens, with no window between the check and the use."""
    try:
        info = os.lstat(path)
    except (FileNotFoundError, NotADirectoryError):
        return
    problem = _problem(info)
    if problem is not None:
        raise run_file_error(path, problem)


def open_run_file(
    path: str | os.PathLike[str], mode: str = "rb", create: bool = False, **kwargs: Any
) -> IO[Any]:
    """Open a file of a run folder, refusing what is not a regular file.

    The last component of ``path`` is never followed (``O_NOFOLLOW``: a symbolic link is
    refused), and the open does not block (``O_NONBLOCK``: a FIFO is opened, seen and
    refused, instead of waiting for a writer forever). ``mode`` is ``"r"``/``"rb"``, or
    ``"r+"``/``"r+b"`` to write in place (then a file with several hard links is refused
    too); ``create`` makes a missing file (``0o666`` less the umask). ``kwargs`` go to
    :func:`open` (``encoding``, ``newline``). A missing file raises ``FileNotFoundError``;
    a refused one a :class:`ConfigError` naming it and what to do.
    """
    if mode not in ("r", "rb", "r+", "r+b", "rb+"):
        raise ValueError(f"open_run_file: mode must be 'r', 'rb', 'r+' or 'r+b', got {mode!r}")
    writable = "+" in mode
    flags = os.O_RDWR if writable else os.O_RDONLY
    flags |= getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0)
    flags |= getattr(os, "O_CLOEXEC", 0) | (os.O_CREAT if create else 0)
    try:
        fd = os.open(path, flags, 0o666)
    except OSError as exc:
        # ELOOP: a link as the last component; EISDIR: a folder opened to write; ENXIO: a
        # socket, or a FIFO opened to write without a reader. Say what it is (lstat).
        if exc.errno not in (errno.ELOOP, errno.EISDIR, errno.ENXIO, errno.EOPNOTSUPP):
            raise
        try:
            problem = _problem(os.lstat(path))
        except OSError:
            problem = None
        if problem is None:
            raise
        raise run_file_error(path, problem) from None
    try:
        problem = _problem(os.fstat(fd), writable)
        if problem is None and not hasattr(os, "O_NOFOLLOW"):  # no O_NOFOLLOW: look (racy)
            problem = _problem(os.lstat(path), writable)
        if problem is not None:
            raise run_file_error(path, problem)
        os.set_blocking(fd, True)  # a regular file: reads and writes as usual
    except BaseException:
        os.close(fd)
        raise
    return os.fdopen(fd, mode, **kwargs)  # closes fd itself if it fails
