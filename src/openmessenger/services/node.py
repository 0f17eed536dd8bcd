"""The set of use cases the edges (HTTP, WebSocket) call into."""

from __future__ import annotations

from dataclasses import dataclass

from openmessenger.core.ids import Domain
from openmessenger.services.account_data import AccountData
from openmessenger.services.accounts import AccountService
from openmessenger.services.apps import AppService
from openmessenger.services.backup import BackupService
from openmessenger.services.devices import DeviceService
from openmessenger.services.federation import FederationService
from openmessenger.services.federation_gate import NodeAdmin
from openmessenger.services.keys import KeyService
from openmessenger.services.linking import LinkingService
from openmessenger.services.managed_accounts import ManagedAccounts
from openmessenger.services.messaging import MessagingService
from openmessenger.services.operator import Operator
from openmessenger.services.pairing import PairingService
from openmessenger.services.ports import Clock
from openmessenger.services.registration import RegistrationService
from openmessenger.services.request_limits import RequestLimits
from openmessenger.services.webhooks import WebhookService


@dataclass(frozen=True, slots=True)
class NodeServices:
    domain: Domain
    clock: Clock
    devices: DeviceService
    accounts: AccountService
    pairing: PairingService
    messaging: MessagingService
    federation: FederationService
    admin: NodeAdmin
    keys: KeyService
    linking: LinkingService
    backup: BackupService
    registration: RegistrationService
    apps: AppService
    managed: ManagedAccounts
    account_data: AccountData
    limits: RequestLimits
    operator: Operator
    webhooks: WebhookService
