"""The SDK's entry point: one ``Client`` per device profile.

    async with Client("https://chat.example.org", state_dir) as client:
        code = await client.issue_code()
        for message in await client.sync():
            print(message.sender, message.text)

The device registers itself on first use: a new identity is saved in
``state_dir``, the node issues a challenge, and the device proves it holds the
identity's Ed25519 key by signing it. Only public keys leave the device.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import uuid
from collections.abc import AsyncGenerator, Mapping
from pathlib import Path
from types import TracebackType
from typing import Any
from urllib.parse import quote

import httpx
from websockets.asyncio.client import ClientConnection

from openmessenger.client import transport
from openmessenger.client.apps import AppSigning, AppTag, ProvenanceError, app_signature, check_tag
from openmessenger.client.crypto_store import CryptoStore
from openmessenger.client.devices import AccountDevices, canonical_address
from openmessenger.client.e2e import KEY_CACHE_SECONDS, DecryptionError, EndToEnd
from openmessenger.client.ephemeral import EphemeralMessaging
from openmessenger.client.errors import (
    ApiError,
    DowngradeError,
    InvalidArgumentError,
    NotAContactError,
    ServerUnreachableError,
    StateError,
    api_error,
)
from openmessenger.client.groups import AccountGroups
from openmessenger.client.models import (
    CodeInfo,
    Contact,
    IssuedCode,
    Me,
    Message,
)
from openmessenger.client.owner import AccountOwner
from openmessenger.client.policies import ConversationPolicies
from openmessenger.client.preferences import Preferences
from openmessenger.client.revisions import Revisions, apply_revisions
from openmessenger.client.state import DeviceState, StateStore
from openmessenger.core.envelope import MAX_BODY_CHARS
from openmessenger.core.ids import Address, DeviceId
from openmessenger.crypto.device_identity import DeviceIdentity
from openmessenger.protocol import apps_api as apps_wire
from openmessenger.protocol import client_api as wire
from openmessenger.protocol import e2e as e2e_wire
from openmessenger.protocol import openmsg

DEFAULT_TIMEOUT_SECONDS = 10.0
PAGE_SIZE = 100
SEND_ATTEMPTS = 3
"""A send is retried after a network failure; its client_txn_id makes that safe."""
RETRY_DELAYS_SECONDS = (0.2, 1.0)
# How often wait_until_settled asks: soon at first (most deliveries take
# milliseconds), then at most once a second.
WAIT_FIRST_PAUSE_SECONDS = 0.02
WAIT_MAX_PAUSE_SECONDS = 1.0


class Client(
    AccountDevices,
    AccountOwner,
    Preferences,
    ConversationPolicies,
    AccountGroups,
    EphemeralMessaging,
    Revisions,
):
    """An async client for one device (one profile directory) on one node."""

    def __init__(
        self,
        server_url: str,
        state_dir: str | os.PathLike[str],
        *,
        timeout: float = DEFAULT_TIMEOUT_SECONDS,
        key_cache_seconds: float = KEY_CACHE_SECONDS,
        app: AppSigning | None = None,
    ) -> None:
        """``app``: this device is an app's backend (a managed account made with
        :func:`create_app_account`); its sends are signed with the app key."""
        self.server_url = transport.normalise_server_url(server_url)
        self._store = StateStore(Path(state_dir))
        self._state = self._store.load()
        if self._state is not None and self._state.server != self.server_url:
            raise StateError(
                f"this profile belongs to {self._state.server}, not {self.server_url}; "
                "use another profile for another node"
            )
        self._timeout = timeout
        self._http = transport.NodeHttp(self.server_url, timeout=timeout)
        self._identity: DeviceIdentity | None = None
        self._session_lock = asyncio.Lock()
        self._key_cache_seconds = key_cache_seconds
        self._engine: EndToEnd | None = None
        self._crypto_store: CryptoStore | None = None
        self._bootstrapped = False
        self._app = app
        self._node: openmsg.NodeDescriptor | None = None

    @classmethod
    async def create_app_account(
        cls,
        server_url: str,
        state_dir: str | os.PathLike[str],
        *,
        api_key: str,
        app: AppSigning,
        display_name: str | None = None,
    ) -> Client:
        """For an app's backend: make a managed account for one of the app's users
        (``POST /v1/apps/{app}/accounts``) whose device is this new profile, with
        its own keys: end to end, like any device. The profile then signs in with
        its own key; ``api_key`` is used for this call only."""
        client = cls(server_url, state_dir, app=app)
        if client._state is not None and client._state.device_id is not None:
            raise StateError(f"the profile in {client.state_dir} has a device already")
        state = client._store.load_or_create(client.server_url)
        identity = client._device_identity(state)
        challenge = await client._challenge()
        proof = identity.sign(wire.signed_challenge_bytes(challenge.challenge, challenge.domain))
        body = transport.request_body(
            apps_wire.ManagedAccountIn,
            {
                "display_name": display_name,
                "device": {
                    "ed25519_key": identity.ed25519_key,
                    "curve25519_key": identity.curve25519_key,
                    "challenge": challenge.challenge,
                    "signature": proof,
                },
            },
        )
        path = f"{wire.API_PREFIX}/apps/{quote(app.app_id)}/accounts"
        response = await client._http.request("POST", path, token=api_key, body=body)
        if response.is_error:
            await client.aclose()
            raise transport.error_from_response(response)
        transport.parse_response(apps_wire.ManagedAccountOut, response)
        client._state = await client._authenticate(identity)
        await client.end_to_end()  # publish its keys: others encrypt to it from now on
        return client

    async def __aenter__(self) -> Client:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()
        if self._crypto_store is not None:
            self._crypto_store.close()
            self._crypto_store = None
            self._engine = None

    @property
    def state_dir(self) -> Path:
        return self._store.directory

    @property
    def address(self) -> Address | None:
        """This device's address, once registered (no network call)."""
        return self._state.address if self._state is not None else None

    @property
    def device_id(self) -> DeviceId | None:
        return self._state.device_id if self._state is not None else None

    @property
    def stream_position(self) -> int:
        """The last stream position handed over by ``sync`` or ``listen``."""
        return self._state.stream_position if self._state is not None else 0

    # -- account -------------------------------------------------------------

    async def whoami(self) -> Me:
        response = await self._call("GET", "/me")
        return Me.from_wire(transport.parse_response(wire.MeOut, response))

    async def set_display_name(self, name: str) -> Me:
        body = transport.request_body(wire.SetNameIn, {"display_name": name})
        response = await self._call("PATCH", "/me", body=body)
        return Me.from_wire(transport.parse_response(wire.MeOut, response))

    # -- pass codes and connections --------------------------------------------

    async def issue_code(self, for_address: str | None = None) -> IssuedCode:
        """A one-time pass code; bound to ``for_address`` when given."""
        body = transport.request_body(wire.IssueCodeIn, {"for": for_address})
        response = await self._call("POST", "/codes", body=body)
        return IssuedCode.from_wire(transport.parse_response(wire.PassCodeOut, response))

    async def list_codes(self) -> list[CodeInfo]:
        response = await self._call("GET", "/codes")
        codes = transport.parse_response(wire.PassCodeList, response).codes
        return [CodeInfo.from_wire(code) for code in codes]

    async def withdraw_code(self, code_id: str) -> None:
        await self._call("DELETE", f"/codes/{quote(code_id, safe='')}")

    async def connect(self, address: str, pass_code: str, *, allow_replies: bool = True) -> Contact:
        """Connect with ``address`` using a pass code its owner gave you; the
        address may be on another node. ``allow_replies=False``: you send, it
        cannot answer.

        Raises RefusedError, without saying why, for a wrong, used or expired
        code and for an unknown address alike."""
        body = transport.request_body(
            wire.ConnectIn,
            {"address": address, "pass_code": pass_code, "allow_replies": allow_replies},
        )
        response = await self._call("POST", "/connections", body=body)
        return Contact.from_wire(transport.parse_response(wire.ContactOut, response))

    async def contacts(self) -> list[Contact]:
        response = await self._call("GET", "/connections")
        contacts = transport.parse_response(wire.ContactList, response).contacts
        return [Contact.from_wire(contact) for contact in contacts]

    # -- messages ------------------------------------------------------------

    async def send(
        self,
        to: str,
        text: str,
        client_txn_id: str | None = None,
        *,
        media_type: str = "text",
        metadata: dict[str, Any] | None = None,
    ) -> Message:
        """Send ``text`` to a contact. Retried on network failures under one
        ``client_txn_id``, so the node stores it once however often it arrives.
        ``media_type`` and ``metadata`` are envelope fields the node validates
        (docs/apps.md); the content itself is ``text``, encrypted."""
        txn_id = client_txn_id or uuid.uuid4().hex
        if not text or len(text) > MAX_BODY_CHARS:
            raise InvalidArgumentError("text", f"must be 1 to {MAX_BODY_CHARS} characters")
        target = canonical_address(to)
        engine = await self.end_to_end()
        try:
            devices = await engine.devices_of(target)
        except ApiError as exc:
            if exc.status == 404:  # not a contact: the same refusal the send would get
                raise api_error(403, "refused") from exc
            raise
        fields: dict[str, object] = {
            "to": to,
            "client_txn_id": txn_id,
            "media_type": media_type,
            "metadata": metadata,
        }
        if devices.encryption == e2e_wire.END_TO_END:
            fields |= {"body": await engine.encrypt(target, text), "encryption": "end-to-end"}
        elif engine.was_end_to_end(target):
            raise DowngradeError(target)
        else:
            fields |= {"body": text, "encryption": "transport-encrypted"}
        if self._app is not None:
            fields["app_signature"] = app_signature(
                self._app,
                sender=str(self.address),
                sender_device=str(self.device_id),
                to=target,
                body=str(fields["body"]),
                media_type=media_type,
                metadata=metadata,
            )
        body = transport.request_body(wire.SendIn, fields)
        for attempt in range(SEND_ATTEMPTS):
            try:
                response = await self._call("POST", "/messages", body=body)
                break
            except ServerUnreachableError:
                if attempt == SEND_ATTEMPTS - 1:
                    raise
                await asyncio.sleep(RETRY_DELAYS_SECONDS[attempt])
        await engine.back_up()
        sent = transport.parse_response(wire.MessageOut, response)
        try:
            tag = await self._app_tag(sent, str(body.body))
        except ProvenanceError as exc:  # sent, but the node's answer does not check out
            return Message.from_wire(sent, text=text, error=str(exc))
        return Message.from_wire(sent, text=text, app=tag)

    async def message(self, message_id: str) -> Message:
        """One message this account sent or received, with its current ``status``."""
        response = await self._call("GET", f"/messages/{message_id}")
        return await self._open(transport.parse_response(wire.MessageOut, response))

    async def wait_until_settled(self, message: Message) -> Message:
        """Wait until a sent message is ``delivered`` or ``failed``. A message to
        another node settles when that node answers, or at the node's give-up time;
        one to this node's own addresses is delivered at once."""
        pause = WAIT_FIRST_PAUSE_SECONDS
        while message.status == "accepted":
            await asyncio.sleep(pause)
            pause = min(pause * 2, WAIT_MAX_PAUSE_SECONDS)
            message = await self.message(message.id)
        return message

    async def sync(self) -> list[Message]:
        """Messages that arrived after the saved cursor, oldest first; the cursor
        then moves past them, so each message is returned by one sync only."""
        engine = await self.end_to_end()
        since = self.stream_position
        messages: list[Message] = []
        while True:
            page_start = since
            params = {
                "since": since,
                "limit": PAGE_SIZE,
                "to_device_since": engine.to_device_cursor(),
            }
            page = transport.parse_response(
                wire.SyncOut, await self._call("GET", "/sync", params=params)
            )
            # Account secrets and room keys first: the messages may need them.
            await engine.receive_to_device(page.to_device)
            for event in page.events:
                if event.position > since:  # at-least-once on the wire: drop repeats
                    messages.append(await self._open(event.message, event.position))
                    since = event.position
            since = max(since, page.next_since)
            if not page.has_more or since == page_start:  # the second guards a stuck cursor
                break
        self._state = self._store.advance_cursor(since)
        await engine.publish_keys()  # replace the one-time keys others claimed
        await engine.back_up()
        await self._acknowledge_delivered(messages)  # receipts (client/revisions.py)
        return messages

    async def history(self, address: str) -> list[Message]:
        """Every message of the conversation with ``address``, oldest first."""
        wanted = canonical_address(address)
        for contact in await self.contacts():
            if canonical_address(contact.address) == wanted:
                # Edits and deletions folded in: the latest version of each message.
                return apply_revisions(await self._conversation_messages(contact.conversation_id))
        raise NotAContactError(address)

    async def listen(self) -> AsyncGenerator[Message, None]:
        """Messages from the live stream, starting after the saved cursor.

        The cursor is saved as each message is handed over, so what ``listen``
        delivered will not come again from ``sync``. Reconnects after a dropped
        connection; raises ServerUnreachableError when the node cannot be
        reached at the start or after repeated attempts."""
        token = await self._session_token()
        await self._receive_to_device(await self.end_to_end())

        def open_(token: str) -> contextlib.AbstractAsyncContextManager[ClientConnection]:
            # From the cursor as it is at each (re)connection.
            return transport.open_stream(
                self.server_url, self.stream_position, token, open_timeout_seconds=self._timeout
            )

        frames = transport.reconnecting_frames(open_, token, self._reauthenticate)
        try:
            async for frame in frames:
                event = transport.parse_stream_frame(frame)
                if event.position <= self.stream_position:
                    continue
                try:
                    opened = await self._open(event.message, event.position)
                    await self._acknowledge_delivered([opened])  # receipts
                    yield opened
                finally:
                    # Runs when the caller asks for the next message or stops
                    # listening: either way this message was handed over.
                    self._state = self._store.advance_cursor(event.position)
        finally:
            await frames.aclose()

    async def _conversation_messages(self, conversation_id: str) -> list[Message]:
        path = f"/conversations/{quote(conversation_id, safe='')}/messages"
        messages: list[Message] = []
        after_seq = 0
        while True:
            params = {"after_seq": after_seq, "limit": PAGE_SIZE}
            page = transport.parse_response(
                wire.MessageList, await self._call("GET", path, params=params)
            )
            messages.extend([await self._open(message) for message in page.messages])
            # The second test guards against a node that claims more but sends nothing.
            if not page.has_more or not page.messages:
                return messages
            after_seq = page.messages[-1].seq

    async def _open(self, message: wire.MessageOut, position: int | None = None) -> Message:
        engine = await self.end_to_end()
        try:
            opened = await engine.open(message)
        except DecryptionError as exc:
            return Message.from_wire(message, position, error=str(exc))
        signed = opened.text if message.encryption == e2e_wire.TRANSPORT_ENCRYPTED else message.body
        try:
            tag = await self._app_tag(message, signed)
        except ProvenanceError as exc:
            return Message.from_wire(message, position, error=str(exc))
        return Message.from_wire(message, position, text=opened.text, app=tag)

    async def _app_tag(self, message: wire.MessageOut, signed_body: str) -> AppTag | None:
        if message.app is None:
            return None
        node = await self._node_descriptor()
        return check_tag(message, signed_body, node.domain, node.signing_key)

    async def _node_descriptor(self) -> openmsg.NodeDescriptor:
        """This device's node as it describes itself (its signing key checks the
        app tags it attests); asked once per client."""
        if self._node is None:
            response = await self._http.request("GET", openmsg.DESCRIPTOR_PATH)
            if response.is_error:
                raise transport.error_from_response(response)
            self._node = transport.parse_response(openmsg.NodeDescriptor, response)
        return self._node

    async def _receive_to_device(self, engine: EndToEnd) -> None:
        params = {"since": self.stream_position, "limit": 1}
        while True:
            params["to_device_since"] = engine.to_device_cursor()
            page = transport.parse_response(
                wire.SyncOut, await self._call("GET", "/sync", params=params)
            )
            if not page.to_device:
                return
            await engine.receive_to_device(page.to_device)

    # -- end-to-end ------------------------------------------------------------

    async def end_to_end(self) -> EndToEnd:
        """This device's encryption engine, registering the device and publishing
        its keys first if that never happened."""
        if self._engine is not None and self._bootstrapped:
            return self._engine
        await self._session_token()
        engine = await self._engine_without_bootstrap()
        store = self._crypto_store
        assert store is not None
        if store.setting("published") is None:
            await engine.publish_keys()
            await engine.ensure_account_keys()
            with store.transaction():
                store.set_setting("published", "1")
        self._bootstrapped = True
        return engine

    async def _engine_without_bootstrap(self) -> EndToEnd:
        state = self._state
        assert state is not None and state.device_id is not None and state.address is not None
        if self._engine is None:
            identity = self._device_identity(state)
            store = CryptoStore(self.state_dir, self._store.pickle_key())
            self._crypto_store = store
            self._engine = EndToEnd(
                store=store,
                identity=identity,
                save_identity=lambda: self._save_identity(identity),
                call=self._call,
                address=state.address,
                device_id=state.device_id,
                key_cache_seconds=self._key_cache_seconds,
            )
        return self._engine

    # -- session -------------------------------------------------------------

    async def _call(
        self,
        method: str,
        path: str,
        *,
        body: wire.Request | None = None,
        params: Mapping[str, str | int] | None = None,
    ) -> httpx.Response:
        """An authenticated request to ``/v1{path}``; re-authenticates once if the
        token was turned away (expired or revoked)."""
        url = f"{wire.API_PREFIX}{path}"
        token = await self._session_token()
        response = await self._http.request(method, url, token=token, body=body, params=params)
        if transport.is_unauthenticated(response):
            token = await self._reauthenticate(stale_token=token)
            response = await self._http.request(method, url, token=token, body=body, params=params)
        if response.is_error:
            raise transport.error_from_response(response)
        return response

    async def _session_token(self) -> str:
        """The access token, registering this device first if it never was."""
        if self._state is not None and self._state.access_token is not None:
            return self._state.access_token
        async with self._session_lock:
            state = self._store.load_or_create(self.server_url)
            registered = state.access_token is None
            if registered:
                state = await self._register(state)
            self._state = state
            assert state.access_token is not None
        if registered:
            # Publish the new device's keys at once: others can encrypt to it from now on.
            await self.end_to_end()
        return state.access_token

    async def _register(self, state: DeviceState) -> DeviceState:
        identity = self._device_identity(state)
        challenge = await self._challenge()
        proof = identity.sign(wire.signed_challenge_bytes(challenge.challenge, challenge.domain))
        body = transport.request_body(
            wire.RegisterDeviceIn,
            {
                "ed25519_key": identity.ed25519_key,
                "curve25519_key": identity.curve25519_key,
                "challenge": challenge.challenge,
                "signature": proof,
            },
        )
        response = await self._http.request("POST", f"{wire.API_PREFIX}/devices", body=body)
        if response.status_code == 409 and transport.error_from_response(response).code == (
            "device_exists"
        ):
            # An earlier run registered this key but died before saving the answer.
            return await self._authenticate(identity)
        if response.is_error:
            raise transport.error_from_response(response)
        return self._save_session(transport.parse_response(wire.DeviceSessionOut, response))

    async def _reauthenticate(self, *, stale_token: str) -> str:
        async with self._session_lock:
            state = self._store.load()
            if state is None or state.device_id is None:
                raise StateError(f"the profile in {self.state_dir} lost its device")
            if state.access_token not in (None, stale_token):
                # Another task or process already fetched a fresh token.
                self._state = state
                return state.access_token
            self._state = await self._authenticate(self._device_identity(state))
            assert self._state.access_token is not None
            return self._state.access_token

    async def _authenticate(self, identity: DeviceIdentity) -> DeviceState:
        challenge = await self._challenge()
        proof = identity.sign(wire.signed_challenge_bytes(challenge.challenge, challenge.domain))
        body = transport.request_body(
            wire.DeviceKeys,
            {
                "ed25519_key": identity.ed25519_key,
                "challenge": challenge.challenge,
                "signature": proof,
            },
        )
        response = await self._http.request("POST", f"{wire.API_PREFIX}/auth/token", body=body)
        if response.is_error:
            raise transport.error_from_response(response)
        return self._save_session(transport.parse_response(wire.DeviceSessionOut, response))

    async def _challenge(self) -> wire.ChallengeOut:
        response = await self._http.request("POST", f"{wire.API_PREFIX}/auth/challenge")
        if response.is_error:
            raise transport.error_from_response(response)
        return transport.parse_response(wire.ChallengeOut, response)

    def _save_session(self, session: wire.DeviceSessionOut) -> DeviceState:
        return self._store.save_session(
            DeviceId(session.device_id), Address(session.address), session.access_token
        )

    def _save_identity(self, identity: DeviceIdentity) -> None:
        self._state = self._store.save_identity(identity)

    def _device_identity(self, state: DeviceState) -> DeviceIdentity:
        # One restored account per Client: vodozemac twins of one account diverge.
        if self._identity is None:
            self._identity = self._store.identity(state)
        return self._identity
