"""Deleting for real: every row that holds an account's (or one app's) data.

Rows go, in an order the foreign keys accept. What stays is what other
accounts own: a contact's own connection row and its copies of keys. The keys
of the grants deleted here are returned for the caller to destroy once the
transaction has committed.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import delete, exists, or_, select, update

from openmessenger.core.groups import MEMBER_EVENT_MEDIA_TYPE
from openmessenger.core.ids import AccountId, Address, DeviceId
from openmessenger.storage._base import Repository
from openmessenger.storage.grant_keys import GrantKeys
from openmessenger.storage.groups import SqlGroups
from openmessenger.storage.tables import (
    account_identities,
    account_keys,
    accounts,
    address_blocks,
    api_keys,
    app_allowlists,
    app_grants,
    app_media_types,
    apps,
    connections,
    contact_requests,
    conversation_members,
    conversation_policies,
    conversations,
    device_streams,
    device_tokens,
    devices,
    group_forwards,
    key_backup,
    link_requests,
    messages,
    one_time_keys,
    openmsg_links,
    openmsg_outbox,
    openmsg_received,
    openmsg_revisions_out,
    openmsg_sent,
    outgoing_contact_requests,
    pass_code_budgets,
    pass_codes,
    preferences,
    receipts,
    remote_contact_requests,
    to_device,
    totp_secrets,
    verifications,
    webhook_deliveries,
    webhooks,
)


class SqlErasure(Repository):
    async def delete_app_data(self, account_id: AccountId, app_id: str) -> list[str]:
        """Everything ``app_id`` holds for the account: the messages sent through it,
        its devices in the account (and all that hangs off them), its webhook
        deliveries and its grant. Returns the grant key ids to destroy."""
        address = await self._address(account_id)
        if address is not None:
            await self._delete_messages(
                select(messages.c.id).where(
                    messages.c.app_id == app_id, messages.c.sender == address
                )
            )
        app_devices = select(devices.c.id).where(
            devices.c.account_id == account_id, devices.c.app_id == app_id
        )
        await self._delete_devices([DeviceId(r.id) for r in await self._conn.execute(app_devices)])
        await self._conn.execute(
            delete(webhook_deliveries).where(
                webhook_deliveries.c.account_id == account_id,
                webhook_deliveries.c.app_id == app_id,
            )
        )
        key_ids = [
            r.key_id
            for r in await self._conn.execute(
                select(app_grants.c.key_id).where(
                    app_grants.c.account_id == account_id, app_grants.c.app_id == app_id
                )
            )
        ]
        await self._conn.execute(
            delete(app_grants).where(
                app_grants.c.account_id == account_id, app_grants.c.app_id == app_id
            )
        )
        return key_ids

    async def is_abandoned(self, account_id: AccountId) -> bool:
        """No app holds the account and no device of it is left (revoked ones aside)."""
        granted = exists().where(app_grants.c.account_id == account_id)
        live_device = exists().where(
            devices.c.account_id == account_id, devices.c.revoked_at.is_(None)
        )
        has_grant = (await self._conn.execute(select(granted))).scalar()
        has_device = (await self._conn.execute(select(live_device))).scalar()
        return not has_grant and not has_device

    async def owns_apps(self, account_id: AccountId) -> bool:
        query = select(exists().where(apps.c.owner_account_id == account_id))
        return bool((await self._conn.execute(query)).scalar())

    async def delete_account(self, account_id: AccountId) -> list[str]:
        """The account and everything of it: messages it sent or received, devices,
        connections, codes, keys, backups, identities, grants. Returns the grant
        key ids to destroy. (An account owning apps is refused by the service.)"""
        address = await self._address(account_id)
        if address is None:
            return []
        await self._delete_messages(
            select(messages.c.id).where(
                or_(messages.c.sender == address, messages.c.recipient == address),
                # A group's membership events are the group's record (who joined,
                # left, ran it), written by the node, not something the account said.
                messages.c.media_type != MEMBER_EVENT_MEDIA_TYPE,
            )
        )
        await self._conn.execute(delete(receipts).where(receipts.c.reader_account_id == account_id))
        all_devices = select(devices.c.id).where(devices.c.account_id == account_id)
        await self._delete_devices([DeviceId(r.id) for r in await self._conn.execute(all_devices)])
        key_ids = [
            r.key_id
            for r in await self._conn.execute(
                select(app_grants.c.key_id).where(app_grants.c.account_id == account_id)
            )
        ]
        conversation_ids = [
            r.conversation_id
            for r in await self._conn.execute(
                select(connections.c.conversation_id).where(
                    connections.c.owner_account_id == account_id
                )
            )
        ]
        await SqlGroups(self._conn).hand_over(account_id)  # no group is left without owner
        owned: list[tuple[Any, Any]] = [
            (webhook_deliveries, webhook_deliveries.c.account_id),
            (openmsg_outbox, openmsg_outbox.c.owner_account_id),
            (openmsg_received, openmsg_received.c.owner_account_id),
            (openmsg_links, openmsg_links.c.owner_account_id),
            (pass_codes, pass_codes.c.owner_account_id),
            (pass_code_budgets, pass_code_budgets.c.owner_account_id),
            (connections, connections.c.owner_account_id),
            (account_keys, account_keys.c.account_id),
            (key_backup, key_backup.c.account_id),
            (account_identities, account_identities.c.account_id),
            (verifications, verifications.c.account_id),
            (totp_secrets, totp_secrets.c.account_id),
            (app_grants, app_grants.c.account_id),
            (app_allowlists, app_allowlists.c.account_id),
            (conversation_members, conversation_members.c.account_id),
            (preferences, preferences.c.account_id),
            (address_blocks, address_blocks.c.account_id),
            (contact_requests, contact_requests.c.target_account_id),
            (contact_requests, contact_requests.c.sender_account_id),
            (conversation_policies, conversation_policies.c.account_id),
            (group_forwards, group_forwards.c.sender_account_id),
            (remote_contact_requests, remote_contact_requests.c.target_account_id),
            (outgoing_contact_requests, outgoing_contact_requests.c.sender_account_id),
        ]
        for table, column in owned:
            await self._conn.execute(delete(table).where(column == account_id))
        # Local contacts' entries for the address go too: were the address ever
        # drawn again for a new account, they must not reach a stranger.
        conversation_ids += [
            r.conversation_id
            for r in await self._conn.execute(
                select(connections.c.conversation_id).where(connections.c.peer_address == address)
            )
        ]
        await self._conn.execute(delete(connections).where(connections.c.peer_address == address))
        # A conversation goes with its last connection (a local contact keeps it).
        if conversation_ids:
            await self._conn.execute(
                delete(conversation_policies).where(
                    conversation_policies.c.conversation_id.in_(conversation_ids),
                    ~exists().where(
                        connections.c.conversation_id == conversation_policies.c.conversation_id
                    ),
                )
            )
            await self._conn.execute(
                delete(conversations).where(
                    conversations.c.id.in_(conversation_ids),
                    ~exists().where(connections.c.conversation_id == conversations.c.id),
                    ~exists().where(messages.c.conversation_id == conversations.c.id),
                )
            )
        await self._conn.execute(delete(accounts).where(accounts.c.id == account_id))
        return key_ids

    async def accounts_of_app(self, app_id: str) -> list[AccountId]:
        query = select(app_grants.c.account_id).where(app_grants.c.app_id == app_id)
        return [AccountId(r.account_id) for r in await self._conn.execute(query)]

    async def delete_app(self, app_id: str) -> None:
        """The app itself, once its data for every account is gone: its webhook and
        delivery log, media types and API keys."""
        for table, column in (
            (webhook_deliveries, webhook_deliveries.c.app_id),
            (webhooks, webhooks.c.app_id),
            (app_media_types, app_media_types.c.app_id),
            (api_keys, api_keys.c.app_id),
        ):
            await self._conn.execute(delete(table).where(column == app_id))
        await self._conn.execute(delete(apps).where(apps.c.id == app_id))

    async def move_devices(self, from_account: AccountId, to_account: AccountId) -> None:
        """Merging accounts: the devices of one become the other's."""
        await self._conn.execute(
            update(devices)
            .where(devices.c.account_id == from_account)
            .values(account_id=to_account)
        )

    async def _address(self, account_id: AccountId) -> Address | None:
        query = select(accounts.c.address).where(accounts.c.id == account_id)
        found = (await self._conn.execute(query)).scalar()
        return Address(found) if found is not None else None

    async def _delete_messages(self, ids: Any) -> None:
        """``ids``: a SELECT of message ids. The rows that point at them go first."""
        found = [r.id for r in await self._conn.execute(ids)]
        for start in range(0, len(found), 500):
            chunk = found[start : start + 500]
            for table, column in (
                (device_streams, device_streams.c.message_id),
                (webhook_deliveries, webhook_deliveries.c.message_id),
                (openmsg_outbox, openmsg_outbox.c.message_id),
                (openmsg_received, openmsg_received.c.message_id),
                (receipts, receipts.c.message_id),
                (openmsg_sent, openmsg_sent.c.message_id),
                (openmsg_revisions_out, openmsg_revisions_out.c.message_id),
            ):
                await self._conn.execute(delete(table).where(column.in_(chunk)))
            await self._conn.execute(delete(messages).where(messages.c.id.in_(chunk)))

    async def _delete_devices(self, ids: Sequence[DeviceId]) -> None:
        if not ids:
            return
        for table, column in (
            (device_streams, device_streams.c.device_id),
            (device_tokens, device_tokens.c.device_id),
            (one_time_keys, one_time_keys.c.device_id),
            (to_device, to_device.c.device_id),
            (link_requests, link_requests.c.device_id),
        ):
            await self._conn.execute(delete(table).where(column.in_(list(ids))))
        await self._conn.execute(delete(devices).where(devices.c.id.in_(list(ids))))


def _plain(row: Any, skip: frozenset[str] = frozenset()) -> dict[str, Any]:
    return {k: v for k, v in row._mapping.items() if k not in skip}


class SqlExport(Repository):
    """Everything an account's owner may take away, as plain rows (GDPR-style export).
    HMACs of codes and tokens are left out: they open nothing and mean nothing."""

    def __init__(self, conn: Any, keys: GrantKeys | None = None) -> None:
        super().__init__(conn)
        self._keys = keys

    async def account_rows(self, account_id: AccountId) -> dict[str, list[dict[str, Any]]]:
        address = (
            await self._conn.execute(select(accounts.c.address).where(accounts.c.id == account_id))
        ).scalar()
        out: dict[str, list[dict[str, Any]]] = {}
        by_account: list[tuple[str, Any, Any, frozenset[str]]] = [
            ("account", accounts, accounts.c.id, frozenset()),
            ("devices", devices, devices.c.account_id, frozenset({"stream_head"})),
            (
                "identities",
                account_identities,
                account_identities.c.account_id,
                frozenset({"value_hmac"}),
            ),
            ("connections", connections, connections.c.owner_account_id, frozenset()),
            ("pass_codes", pass_codes, pass_codes.c.owner_account_id, frozenset({"code_hmac"})),
            ("account_keys", account_keys, account_keys.c.account_id, frozenset()),
            ("key_backup", key_backup, key_backup.c.account_id, frozenset()),
            ("apps_linked", app_grants, app_grants.c.account_id, frozenset({"key_id"})),
            ("app_allowlists", app_allowlists, app_allowlists.c.account_id, frozenset()),
            ("preferences", preferences, preferences.c.account_id, frozenset()),
            ("blocks", address_blocks, address_blocks.c.account_id, frozenset()),
            (
                "contact_requests",
                contact_requests,
                contact_requests.c.target_account_id,
                frozenset(),
            ),
            (
                "remote_contact_requests",
                remote_contact_requests,
                remote_contact_requests.c.target_account_id,
                frozenset(),
            ),
            (
                "outgoing_contact_requests",
                outgoing_contact_requests,
                outgoing_contact_requests.c.sender_account_id,
                frozenset(),
            ),
            ("apps_owned", apps, apps.c.owner_account_id, frozenset()),
            ("groups", conversation_members, conversation_members.c.account_id, frozenset()),
            (
                "conversation_policies",
                conversation_policies,
                conversation_policies.c.account_id,
                frozenset(),
            ),
        ]
        for name, table, column, skip in by_account:
            rows = await self._conn.execute(select(table).where(column == account_id))
            out[name] = [_plain(r, skip) for r in rows]
        found = await self._conn.execute(
            select(messages)
            .where(or_(messages.c.sender == address, messages.c.recipient == address))
            .order_by(messages.c.sent_at, messages.c.id)
        )
        out["messages"] = [self._message(_plain(r, frozenset({"client_txn_id"}))) for r in found]
        return out

    def _message(self, row: dict[str, Any]) -> dict[str, Any]:
        if self._keys is not None:
            row["body"] = self._keys.unwrap(row["body"])
            if row["media_metadata"]:
                row["media_metadata"] = self._keys.unwrap(row["media_metadata"])
        return row
