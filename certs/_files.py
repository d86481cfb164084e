"""Writing certificate and key files safely.

Three guarantees the rest of the package relies on:

* a reader never sees a half-written file: data goes to a temporary file in the same
  directory, is fsync'd and then renamed over the target (rename is atomic on POSIX);
* a private key is never readable by anyone but its owner, not even for an instant: the
  temporary file is created with mode 0600 by ``os.open`` itself (the umask can only remove
  bits), so there is no create-then-chmod window;
* two processes (gunicorn workers, two ``ec2gw`` commands started at once) that both decide
  to create files serialise on an exclusive ``flock`` on a lock file in the directory, so the
  second one sees what the first wrote instead of overwriting it.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import secrets
from collections.abc import Iterator
from pathlib import Path

#: mode of private keys
PRIVATE = 0o600
#: mode of certificates (public data)
PUBLIC = 0o644
#: name of the lock file taken by writers in a directory
LOCK_NAME = ".certs.lock"


def ensure_directory(directory: Path) -> Path:
    """Create ``directory`` (0700, it holds private keys) if it is missing and return it."""
    directory = Path(directory)
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    return directory


def write_atomically(path: Path, data: bytes, mode: int) -> None:
    """Replace ``path`` with ``data``, atomically; the file has exactly ``mode`` when it appears.

    The temporary file starts out 0600 whatever ``mode`` is, and is only widened (for a
    certificate) once it holds the complete data, just before the rename.
    """
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(8)}.tmp")
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC | os.O_NOFOLLOW
    fd = os.open(tmp, flags, PRIVATE)
    try:
        try:
            view = memoryview(data)
            while view:
                written = os.write(fd, view)
                view = view[written:]
            # exact mode whatever the umask (which may have removed owner bits)
            os.fchmod(fd, mode)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    _fsync_directory(path.parent)


def _fsync_directory(directory: Path) -> None:
    """Make the rename durable, so a crash does not bring back the old file (or none)."""
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextlib.contextmanager
def locked(directory: Path) -> Iterator[None]:
    """Hold an exclusive lock on ``directory`` (a ``flock`` on its lock file) for the block.

    The lock file is left in place: removing it would let a third process lock a fresh file
    while the second still waits on the old one. Closing the descriptor releases the lock,
    also when the process dies.
    """
    fd = os.open(Path(directory) / LOCK_NAME, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, PRIVATE)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)
