"""The device's local store: one profile directory per device.

    <profile>/              0700
      state.json            0600  versioned JSON: server, device, token, cursor,
                                  and the identity as an encrypted vodozemac pickle
      pickle.key            0600  the 32 random bytes that pickle is encrypted under
      state.lock            0600  serialises read-modify-write between processes

Keeping the key apart from the pickle means a copy of ``state.json`` alone (a
backup, a pasted bug report) does not hold usable private keys.

Every write goes to a temporary file that then replaces the old one, so a crash
leaves either the old or the new file, never half of one. Every change is a
read-modify-write under the lock, so ``listen`` in one terminal and ``send`` in
another do not undo each other's changes.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, TypeVar

from openmessenger.client.errors import StateError
from openmessenger.core.ids import Address, DeviceId
from openmessenger.crypto.device_identity import PICKLE_KEY_BYTES, DeviceIdentity, IdentityError

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows: no advisory locks, one process per profile
    fcntl = None  # type: ignore[assignment]

_Id = TypeVar("_Id", bound=str)

STATE_VERSION = 1
STATE_FILE = "state.json"
PICKLE_KEY_FILE = "pickle.key"
LOCK_FILE = "state.lock"
DIR_MODE = 0o700
FILE_MODE = 0o600

Migration = Callable[[dict[str, Any]], dict[str, Any]]
MIGRATIONS: dict[int, Migration] = {}
"""``MIGRATIONS[n]`` turns a version ``n`` document into a version ``n + 1`` one.

Add an entry (and a golden old state file in the tests) whenever the layout of
``state.json`` changes; :func:`migrate` applies them in order on load.
"""


@dataclass(frozen=True, slots=True)
class DeviceState:
    """What a device remembers between runs. ``device_id`` is None until registered."""

    server: str
    ed25519_key: str
    identity_pickle: str
    device_id: DeviceId | None = None
    address: Address | None = None
    access_token: str | None = None
    stream_position: int = 0
    """The last stream position handed to the user: sync and listen resume after it."""

    @property
    def is_registered(self) -> bool:
        return self.device_id is not None


def migrate(document: dict[str, Any]) -> dict[str, Any]:
    """Bring a state document of any known version up to :data:`STATE_VERSION`."""
    version = document.get("version")
    if not isinstance(version, int) or version < 1:
        raise StateError("the state file has no valid format version")
    if version > STATE_VERSION:
        raise StateError(
            f"the state file has format version {version}, written by a newer openmessenger "
            f"(this one reads up to {STATE_VERSION})"
        )
    while version < STATE_VERSION:
        step = MIGRATIONS.get(version)
        if step is None:
            raise StateError(f"no migration from state format version {version}")
        document = step(document)
        version += 1
        document["version"] = version
    return document


def to_document(state: DeviceState) -> dict[str, Any]:
    return {
        "version": STATE_VERSION,
        "server": state.server,
        "ed25519_key": state.ed25519_key,
        "identity_pickle": state.identity_pickle,
        "device_id": state.device_id,
        "address": state.address,
        "access_token": state.access_token,
        "stream_position": state.stream_position,
    }


def from_document(document: dict[str, Any]) -> DeviceState:
    document = migrate(document)
    try:
        state = DeviceState(
            server=_required_str(document, "server"),
            ed25519_key=_required_str(document, "ed25519_key"),
            identity_pickle=_required_str(document, "identity_pickle"),
            device_id=_optional_id(document, "device_id", DeviceId),
            address=_optional_id(document, "address", Address),
            access_token=_optional_str(document, "access_token"),
            stream_position=_position(document),
        )
    except (KeyError, TypeError) as exc:
        raise StateError(f"the state file is damaged: {exc}") from exc
    return state


class StateStore:
    """Reads and writes one profile directory."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    @property
    def state_path(self) -> Path:
        return self.directory / STATE_FILE

    @property
    def pickle_key_path(self) -> Path:
        return self.directory / PICKLE_KEY_FILE

    def load(self) -> DeviceState | None:
        """The saved state, or None for a profile that was never used."""
        try:
            raw = self.state_path.read_bytes()
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise StateError(f"cannot read {self.state_path}: {exc}") from exc
        try:
            document = json.loads(raw)
        except ValueError as exc:
            raise StateError(f"{self.state_path} is not valid JSON: {exc}") from exc
        if not isinstance(document, dict):
            raise StateError(f"{self.state_path} does not hold a JSON object")
        return from_document(document)

    def load_or_create(self, server: str) -> DeviceState:
        """The saved state; on first use a new identity is made and saved first.

        The identity is on disk before the node ever sees its key, so a crash
        during registration is recovered by authenticating the same key later.
        """
        with self._locked():
            state = self.load()
            if state is not None:
                return state
            key = secrets.token_bytes(PICKLE_KEY_BYTES)
            identity = DeviceIdentity.create()
            state = DeviceState(
                server=server,
                ed25519_key=identity.ed25519_key,
                identity_pickle=identity.to_pickle(key),
            )
            write_private_file(self.pickle_key_path, key)
            self._write(state)
            return state

    def identity(self, state: DeviceState) -> DeviceIdentity:
        """Decrypt the identity pickle held in ``state`` with the profile's pickle key."""
        try:
            key = self.pickle_key_path.read_bytes()
        except OSError as exc:
            raise StateError(f"cannot read the pickle key {self.pickle_key_path}: {exc}") from exc
        try:
            return DeviceIdentity.from_pickle(state.identity_pickle, key)
        except (IdentityError, ValueError) as exc:
            raise StateError(f"cannot open the device identity: {exc}") from exc

    def pickle_key(self) -> bytes:
        try:
            return self.pickle_key_path.read_bytes()
        except OSError as exc:
            raise StateError(f"cannot read the pickle key {self.pickle_key_path}: {exc}") from exc

    def save_identity(self, identity: DeviceIdentity) -> DeviceState:
        """Persist the live identity (its one-time keys change as sessions are made)."""
        pickle = identity.to_pickle(self.pickle_key())
        return self._update(lambda state: replace(state, identity_pickle=pickle))

    def save_session(self, device_id: DeviceId, address: Address, access_token: str) -> DeviceState:
        return self._update(
            lambda state: replace(
                state, device_id=device_id, address=address, access_token=access_token
            )
        )

    def advance_cursor(self, position: int) -> DeviceState:
        """Remember ``position`` as handed over; never moves the cursor back."""
        return self._update(
            lambda state: replace(state, stream_position=max(state.stream_position, position))
        )

    def _update(self, change: Callable[[DeviceState], DeviceState]) -> DeviceState:
        with self._locked():
            current = self.load()
            if current is None:
                raise StateError(f"{self.state_path} disappeared")
            updated = change(current)
            if updated != current:
                self._write(updated)
            return updated

    def _write(self, state: DeviceState) -> None:
        data = json.dumps(to_document(state), indent=2, sort_keys=True).encode() + b"\n"
        write_private_file(self.state_path, data)

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        ensure_private_dir(self.directory)
        fd = os.open(self.directory / LOCK_FILE, os.O_RDWR | os.O_CREAT, FILE_MODE)
        try:
            if fcntl is not None:
                fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # closing releases the lock


def ensure_private_dir(directory: Path) -> None:
    try:
        directory.mkdir(mode=DIR_MODE, parents=True, exist_ok=True)
        # mkdir's mode is filtered by the umask, and an existing dir keeps its own.
        os.chmod(directory, DIR_MODE)
    except OSError as exc:
        raise StateError(f"cannot create the profile directory {directory}: {exc}") from exc


def write_private_file(path: Path, data: bytes) -> None:
    """Atomically replace ``path`` with ``data``, readable by the owner only."""
    ensure_private_dir(path.parent)
    temporary = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")
    try:
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE)
        with os.fdopen(fd, "wb") as file:
            file.write(data)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
        _fsync_dir(path.parent)
    except OSError as exc:
        temporary.unlink(missing_ok=True)
        raise StateError(f"cannot write {path}: {exc}") from exc


def _fsync_dir(directory: Path) -> None:
    # Makes the rename itself durable; not every platform can open a directory.
    with contextlib.suppress(OSError):
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _required_str(document: dict[str, Any], name: str) -> str:
    value = document[name]
    if not isinstance(value, str) or not value:
        raise TypeError(f"{name} must be a non-empty string")
    return value


def _optional_str(document: dict[str, Any], name: str) -> str | None:
    value = document.get(name)
    if value is not None and not isinstance(value, str):
        raise TypeError(f"{name} must be a string or null")
    return value


def _optional_id(document: dict[str, Any], name: str, kind: Callable[[str], _Id]) -> _Id | None:
    value = _optional_str(document, name)
    return None if value is None else kind(value)


def _position(document: dict[str, Any]) -> int:
    value = document.get("stream_position", 0)
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise TypeError("stream_position must be a non-negative integer")
    return value
