"""The composition root: reads settings once and builds every adapter and service."""

from __future__ import annotations

import asyncio
import gc
import logging
import socket
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import uvicorn
from starlette.types import ASGIApp

from openmessenger import __version__
from openmessenger.api.app import create_app
from openmessenger.api.observability import configure_logging
from openmessenger.api.render import message as render_message
from openmessenger.bus.memory import MemoryBus
from openmessenger.core.ephemeral import RelayLimits
from openmessenger.core.ids import Domain
from openmessenger.crypto.keys import NodeSecrets
from openmessenger.federation.client import AiohttpTransport
from openmessenger.federation.rate_limits import SlidingWindowLimiter
from openmessenger.federation.webhook_client import AiohttpWebhookPoster
from openmessenger.notify import SmsWebhookSender, SmtpEmailSender
from openmessenger.protocol.ephemeral_federation import EPHEMERAL
from openmessenger.protocol.group_federation import GROUPS
from openmessenger.protocol.message_federation import GROUP_RECEIPTS, REVISIONS
from openmessenger.protocol.request_federation import REQUESTS
from openmessenger.services.account_data import AccountData
from openmessenger.services.accounts import AccountService
from openmessenger.services.apps import AppService
from openmessenger.services.backup import BackupService
from openmessenger.services.blocks import BlockService
from openmessenger.services.contact_requests import ContactRequestService
from openmessenger.services.devices import DeviceService
from openmessenger.services.ephemeral import EphemeralService
from openmessenger.services.ephemeral_federation import EphemeralFederation
from openmessenger.services.federation import FederationService
from openmessenger.services.federation_gate import FederationGate, FederationRates, NodeAdmin
from openmessenger.services.group_federation import GroupFederation
from openmessenger.services.groups import GroupService
from openmessenger.services.keys import KeyService
from openmessenger.services.linking import LinkingService
from openmessenger.services.links import Links
from openmessenger.services.managed_accounts import ManagedAccounts
from openmessenger.services.message_federation import MessageFederation
from openmessenger.services.messaging import MessagingService
from openmessenger.services.node import NodeServices
from openmessenger.services.node_held import NodeHeldReader
from openmessenger.services.operator import Operator, OperatorAuth
from openmessenger.services.outbox import OutboxSender
from openmessenger.services.pairing import PairingService
from openmessenger.services.peers import PeerDirectory
from openmessenger.services.policies import PolicyService
from openmessenger.services.ports import Clock, EmailSender, FederationTransport, SmsSender
from openmessenger.services.preferences import PreferenceService
from openmessenger.services.registration import RegistrationService
from openmessenger.services.remote_keys import FederatedKeyDirectory
from openmessenger.services.request_federation import RequestFederation
from openmessenger.services.request_limits import RequestLimits, RequestRates
from openmessenger.services.revisions import RevisionService
from openmessenger.services.signed_requests import SignedRequests, SignedRequestVerifier
from openmessenger.services.webhooks import WebhookPoster, WebhookSender, WebhookService
from openmessenger.settings import Settings
from openmessenger.storage.database import Database, connect_and_migrate, is_sqlite, normalise_url
from openmessenger.storage.grant_keys import FileGrantKeys
from openmessenger.storage.group_commit import GroupCommitMessageLog, GroupCommitReceiveLog

log = logging.getLogger("openmessenger")


class SystemClock:
    def now(self) -> datetime:
        return datetime.now(UTC)


@dataclass
class Node:
    settings: Settings
    database: Database
    services: NodeServices
    app: ASGIApp
    outbox: OutboxSender
    transport: FederationTransport
    webhook_poster: WebhookPoster | None = None

    async def close(self) -> None:
        await self.outbox.stop()
        if self.services.groups.federation is not None:
            await self.services.groups.federation.stop()
        if self.services.revisions.remote is not None:
            await self.services.revisions.remote.stop()
        await self.services.webhooks.sender.stop()
        if isinstance(self.services.ephemeral.remote, EphemeralFederation):
            await self.services.ephemeral.remote.close()
        await self.services.policies.stop()
        if self.webhook_poster is not None:
            await self.webhook_poster.close()
        await self.transport.close()
        await self.database.dispose()


async def open_node_database(settings: Settings) -> Database:
    """The node's database, migrated (SQLite: in the data directory, made if new)."""
    url = settings.effective_database_url()
    if is_sqlite(url):
        settings.data_dir.mkdir(parents=True, exist_ok=True)
    return await connect_and_migrate(url, sqlite_synchronous=settings.sqlite_synchronous)


def _email_sender(settings: Settings, clock: Clock) -> EmailSender | None:
    """Verification mail, when an SMTP server is configured."""
    if not settings.smtp_host:
        return None
    password = settings.smtp_password.get_secret_value() if settings.smtp_password else None
    return SmtpEmailSender(
        host=settings.smtp_host,
        port=settings.smtp_port,
        sender=settings.smtp_from or f"openmessenger@{settings.domain}",
        clock=clock,
        username=settings.smtp_username,
        password=password,
        starttls=settings.smtp_starttls,
    )


def _sms_sender(settings: Settings, clock: Clock) -> SmsSender | None:
    """Verification texts, when an SMS webhook is configured (always signed)."""
    if not settings.sms_webhook_url:
        return None
    if settings.sms_webhook_secret is None:
        raise ValueError("sms_webhook_url needs sms_webhook_secret to sign its requests")
    return SmsWebhookSender(
        url=settings.sms_webhook_url,
        secret=settings.sms_webhook_secret.get_secret_value(),
        clock=clock,
    )


async def build_node(settings: Settings, *, clock: Clock | None = None) -> Node:
    database = await open_node_database(settings)
    grant_keys = FileGrantKeys(settings.effective_grant_key_dir())
    database.grant_keys = grant_keys
    uow = database.uow
    secrets = NodeSecrets(settings.load_node_secret())
    clock = clock or SystemClock()
    bus = MemoryBus()
    domain = Domain(settings.domain)
    transport = AiohttpTransport(
        ca_file=settings.ca_file,
        proxy=settings.federation_proxy,
        timeout_seconds=settings.federation_timeout_seconds,
        user_agent=f"openmessenger/{__version__}",
    )
    gate = FederationGate(
        uow,
        clock,
        # Shared through Redis too when one is configured, like the API's limits.
        SlidingWindowLimiter.from_uri(settings.rate_limit_storage),
        FederationRates(
            per_domain=settings.openmsg_domain_rate_limit,
            per_address=settings.openmsg_address_rate_limit,
            auth_per_domain=settings.openmsg_auth_rate_limit,
        ),
    )
    directory = PeerDirectory(transport, clock)
    links = Links(uow, clock, secrets)
    outbox = OutboxSender(
        uow=uow,
        clock=clock,
        secrets=secrets,
        transport=transport,
        gate=gate,
        give_up_after=timedelta(seconds=settings.federation_give_up_seconds),
        domain=domain,
        directory=directory,
        links=links,
    )
    pairing = PairingService(uow, clock, secrets, domain)
    blocks = BlockService(uow, clock)
    verifier = SignedRequestVerifier(
        uow=uow, clock=clock, domain=domain, gate=gate, directory=directory
    )
    federation = FederationService(
        uow=uow,
        clock=clock,
        secrets=secrets,
        domain=domain,
        transport=transport,
        gate=gate,
        pairing=pairing,
        bus=bus,
        receive_log=GroupCommitReceiveLog(uow).append,
        confirm_lookup=outbox.is_ours,
        directory=directory,
        links=links,
        verifier=verifier,
        blocks=blocks,
    )
    pairing.remote = federation
    devices = DeviceService(uow, clock, secrets, domain)
    keys = KeyService(
        uow,
        clock,
        domain,
        revoked=devices,
        remote=FederatedKeyDirectory(
            SignedRequests(secrets=secrets, clock=clock, domain=domain, transport=transport),
            directory,
        ),
    )
    federation.keys = keys
    apps = AppService(uow, clock, secrets)
    registration = RegistrationService(
        uow,
        clock,
        secrets,
        domain,
        email=_email_sender(settings, clock),
        sms=_sms_sender(settings, clock),
    )
    policies = PolicyService(
        uow,
        clock,
        settings.plans.policies(),
        SlidingWindowLimiter.from_uri(settings.rate_limit_storage),
        sweep_every=timedelta(seconds=settings.retention_sweep_seconds),
    )
    messaging = MessagingService(
        uow, GroupCommitMessageLog(uow), bus, clock, secrets, domain, outbox, policies=policies
    )
    messaging.reader = NodeHeldReader(uow, grant_keys)
    webhook_poster = AiohttpWebhookPoster(
        timeout_seconds=settings.webhook_timeout_seconds,
        user_agent=f"openmessenger/{__version__}",
        ca_file=settings.ca_file,
    )
    webhooks = WebhookService(
        uow,
        clock,
        secrets,
        WebhookSender(
            uow=uow,
            clock=clock,
            secrets=secrets,
            poster=webhook_poster,
            reader=NodeHeldReader(uow, grant_keys),
            render=render_message,
            give_up_after=timedelta(seconds=settings.webhook_give_up_seconds),
            lease=timedelta(seconds=2 * settings.webhook_timeout_seconds + 30),
            keep_log=timedelta(days=settings.webhook_log_days),
        ),
    )
    messaging.webhooks = webhooks
    groups = GroupService(
        uow,
        bus,
        clock,
        secrets,
        domain,
        policies.max_participants_in,
        send_policy=policies.check_send,
    )
    groups.webhooks = webhooks
    groups.federation = GroupFederation(
        uow=uow,
        clock=clock,
        secrets=secrets,
        domain=domain,
        transport=transport,
        gate=gate,
        directory=directory,
        groups=groups,
        verifier=verifier,
        give_up_after=timedelta(seconds=settings.federation_give_up_seconds),
    )
    federation.add_extension(GROUPS, groups.federation.handlers())
    policies.groups = groups
    federation.webhooks = webhooks
    ephemeral = EphemeralService(
        uow,
        clock,
        secrets,
        domain,
        RelayLimits(
            hold_seconds=settings.ephemeral_hold_seconds,
            max_body_chars=settings.ephemeral_max_body_chars,
            per_device=settings.ephemeral_max_pending_per_device,
            total=settings.ephemeral_max_pending_total,
        ),
    )
    ephemeral.policy = policies
    ephemeral_federation = EphemeralFederation(
        clock=clock,
        secrets=secrets,
        domain=domain,
        transport=transport,
        directory=directory,
        verifier=verifier,
        ephemeral=ephemeral,
        limits=ephemeral.limits,
    )
    ephemeral.remote = ephemeral_federation
    federation.add_extension(EPHEMERAL, ephemeral_federation.handlers())
    preferences = PreferenceService(uow, clock, apps)
    revisions = RevisionService(uow, bus, clock, secrets, domain, preferences, policies)
    revisions.groups = groups
    groups.federation.revisions = revisions  # edits and deletions from member nodes
    revisions.webhooks = webhooks
    revisions.remote = MessageFederation(
        uow=uow,
        clock=clock,
        secrets=secrets,
        domain=domain,
        transport=transport,
        directory=directory,
        verifier=verifier,
        bus=bus,
        publish_receipts=revisions.hub.publish,
        give_up_after=timedelta(seconds=settings.federation_give_up_seconds),
    )
    revisions.remote.webhooks = webhooks
    federation.add_extension(REVISIONS, revisions.remote.handlers())
    federation.add_extension(GROUP_RECEIPTS, {})  # an item type of message-revisions/
    services = NodeServices(
        domain=domain,
        clock=clock,
        devices=devices,
        accounts=AccountService(uow),
        pairing=pairing,
        messaging=messaging,
        federation=federation,
        admin=NodeAdmin(uow, clock),
        keys=keys,
        linking=LinkingService(uow, clock, secrets, domain, devices),
        backup=BackupService(uow),
        registration=registration,
        apps=apps,
        managed=ManagedAccounts(uow, clock, secrets, devices, grant_keys, registration),
        account_data=AccountData(uow, clock, grant_keys, devices, apps, groups),
        limits=RequestLimits(
            SlidingWindowLimiter.from_uri(settings.rate_limit_storage),
            RequestRates(
                per_app_key=settings.app_key_rate_limit,
                per_account=settings.account_rate_limit,
                per_device=settings.device_rate_limit,
            ),
        ),
        operator=Operator(uow, apps, OperatorAuth(settings.load_operator_token())),
        webhooks=webhooks,
        groups=groups,
        policies=policies,
        preferences=preferences,
        contact_requests=ContactRequestService(
            uow,
            clock,
            secrets,
            domain,
            pairing,
            SlidingWindowLimiter.from_uri(settings.rate_limit_storage),
            settings.contact_request_rate_limit,
        ),
        blocks=blocks,
        ephemeral=ephemeral,
        revisions=revisions,
    )
    services.contact_requests.federation = request_federation = RequestFederation(
        uow=uow,
        clock=clock,
        secrets=secrets,
        domain=domain,
        transport=transport,
        directory=directory,
        verifier=verifier,
        pairing=pairing,
        requests=services.contact_requests,
    )
    federation.add_extension(REQUESTS, request_federation.handlers())
    app = create_app(services, max_request_bytes=settings.max_request_bytes)
    outbox.start()
    groups.federation.start()
    revisions.remote.start()
    webhooks.sender.start()
    policies.start()
    return Node(
        settings=settings,
        database=database,
        services=services,
        app=app,
        outbox=outbox,
        transport=transport,
        webhook_poster=webhook_poster,
    )


def uvicorn_config(app: ASGIApp, settings: Settings) -> uvicorn.Config:
    return uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        ws="wsproto",  # about half the memory per idle WebSocket of the default
        lifespan="off",
        access_log=False,  # our own request log never prints query strings or headers
        log_config=None,
        server_header=False,
        ssl_certfile=settings.tls_cert,
        ssl_keyfile=settings.tls_key,
    )


class _AnnouncingServer(uvicorn.Server):
    """Says where it listens on stdout, whatever the log level (port 0 picks one)."""

    def __init__(self, config: uvicorn.Config, scheme: str) -> None:
        super().__init__(config)
        self._scheme = scheme

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        if self.started:
            for server in self.servers:
                for sock in server.sockets:
                    host, port = sock.getsockname()[:2]
                    print(f"listening on {self._scheme}://{host}:{port}", flush=True)


async def serve(settings: Settings) -> None:
    configure_logging(settings.log_level)
    node = await build_node(settings)
    _tune_garbage_collector()
    server = _AnnouncingServer(uvicorn_config(node.app, settings), settings.scheme)
    log.info(
        "node starting",
        extra={
            "fields": {
                "domain": settings.domain,
                "listen": f"{settings.scheme}://{settings.host}:{settings.port}",
                "database": normalise_url(settings.effective_database_url()).render_as_string(),
            }
        },
    )
    try:
        await server.serve()
    finally:
        await node.close()


def _tune_garbage_collector() -> None:
    """Everything built at start is kept for good: move it out of the collector's
    sight, and collect the young generation less often. Under load the cyclic
    collector otherwise took a sixth of a node's time (bench/RESULTS.md)."""
    gc.collect()
    gc.freeze()
    _, older, oldest = gc.get_threshold()
    gc.set_threshold(20_000, older, oldest)


def run(settings: Settings) -> None:
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop ships with uvicorn[standard]
        asyncio.run(serve(settings))
        return
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(serve(settings))
