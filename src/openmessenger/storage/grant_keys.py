"""The keys of app grants, one file each, outside the database.

What an app holds for one account (the bodies and metadata of the messages it
sent, the keys of the node-held device it uses) is encrypted under that
grant's key before it reaches the database. Deleting the app's data destroys
the key: copies of the database made before (backups, replicas) keep only
ciphertext that nothing can open any more. The keys live in their own
directory so that database backups do not carry them; several hosts of one
node share the directory (or mount the same volume).
"""

from __future__ import annotations

import os
import re
import secrets
import threading
from pathlib import Path
from typing import Protocol

from openmessenger.crypto.local_box import LocalBox, LocalBoxError

KEY_BYTES = 32
WRAP_PREFIX = "om.grant.v1:"
_KEY_ID = re.compile(r"[0-9a-f]{32}")


class GrantKeys(Protocol):
    """What the repositories need: wrap a value under a grant's key, and open it."""

    def wrap(self, key_id: str, text: str) -> str: ...

    def unwrap(self, stored: str) -> str | None: ...


class FileGrantKeys:
    """The ``GrantKeys`` port: ``<dir>/<key id>`` holds 32 random bytes (hex), mode 0600."""

    def __init__(self, directory: Path) -> None:
        self._dir = directory
        self._cache: dict[str, LocalBox] = {}
        self._lock = threading.Lock()

    def create(self) -> str:
        self._dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        key_id = secrets.token_hex(16)
        fd = os.open(self._path(key_id), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(secrets.token_hex(KEY_BYTES))
            handle.flush()
            os.fsync(handle.fileno())
        _fsync_dir(self._dir)
        return key_id

    def destroy(self, key_id: str) -> None:
        with self._lock:
            self._cache.pop(key_id, None)
        path = self._path(key_id)
        if path.exists():
            # Overwrite before unlinking: on most file systems the old blocks
            # then no longer hold the key (copy-on-write ones may still).
            size = path.stat().st_size
            with path.open("r+b") as handle:
                handle.write(b"\0" * size)
                handle.flush()
                os.fsync(handle.fileno())
            path.unlink()
            _fsync_dir(self._dir)

    def key(self, key_id: str) -> bytes | None:
        """The raw key (None once destroyed), for keys derived from it."""
        try:
            return bytes.fromhex(self._path(key_id).read_text().strip())
        except (FileNotFoundError, ValueError):
            return None

    def wrap(self, key_id: str, text: str) -> str:
        box = self._box(key_id)
        if box is None:
            raise LookupError(f"grant key {key_id} does not exist")
        return f"{WRAP_PREFIX}{key_id}:{box.seal(text.encode())}"

    def unwrap(self, stored: str) -> str | None:
        """The text of a wrapped value (an unwrapped one as it is); None when its
        key was destroyed."""
        if not stored.startswith(WRAP_PREFIX):
            return stored
        key_id, _, sealed = stored[len(WRAP_PREFIX) :].partition(":")
        box = self._box(key_id)
        if box is None:
            return None
        try:
            return box.open(sealed).decode()
        except LocalBoxError:
            return None

    def _box(self, key_id: str) -> LocalBox | None:
        with self._lock:
            box = self._cache.get(key_id)
        if box is not None:
            return box
        raw = self.key(key_id)
        if raw is None or len(raw) != KEY_BYTES:
            return None
        box = LocalBox(raw)
        with self._lock:
            self._cache[key_id] = box
        return box

    def _path(self, key_id: str) -> Path:
        if not _KEY_ID.fullmatch(key_id):
            raise ValueError("not a grant key id")
        return self._dir / key_id


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
