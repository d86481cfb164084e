"""The installation's pagination-token key: 32 random bytes in <data dir>/token.key (mode 0600).

Made once, at the first start, with `secrets`; every process of the installation reads the same
file (with PostgreSQL, the processes share the data dir, as they share the object store and the
CA). Creation is atomic: the key is written to a private temporary file and linked into place, so
two processes starting at once end up with the one key that was linked first.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

FILE_NAME = "token.key"
KEY_BYTES = 32


def load_or_create(data_dir: Path | str) -> bytes:
    """The installation's key, created in ``data_dir`` if it has none yet."""
    path = Path(data_dir) / FILE_NAME
    try:
        return _read(path)
    except FileNotFoundError:
        pass
    Path(data_dir).mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{FILE_NAME}.{os.getpid()}.{secrets.token_hex(4)}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(secrets.token_hex(KEY_BYTES) + "\n")
            f.flush()
            os.fsync(f.fileno())
        try:
            os.link(tmp, path)
        except FileExistsError:
            pass  # another process made it first: use theirs
    finally:
        tmp.unlink(missing_ok=True)
    return _read(path)


def _read(path: Path) -> bytes:
    text = path.read_text().strip()
    try:
        key = bytes.fromhex(text)
    except ValueError:
        key = b""
    if len(key) < 16:
        raise RuntimeError(f"{path} does not hold a token key (64 hex digits); remove it and restart the service "
                           "to make a new one (pagination tokens handed out before then stop working).")
    return key
