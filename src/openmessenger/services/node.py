"""The set of use cases the edges (HTTP, WebSocket) call into."""

from __future__ import annotations

from dataclasses import dataclass

from openmessenger.core.ids import Domain
from openmessenger.services.account_data import AccountData
from openmessenger.services.accounts import AccountService
from openmessenger.services.apps import AppService
from openmessenger.services.backup import BackupService
from openmessenger.services.blocks import BlockService
from openmessenger.services.contact_requests import ContactRequestService
from openmessenger.services.devices import DeviceService
from openmessenger.services.ephemeral import EphemeralService
from openmessenger.services.federation import FederationService
from openmessenger.services.federation_gate import NodeAdmin
from openmessenger.services.groups import GroupService
from openmessenger.services.keys import KeyService
from openmessenger.services.linking import LinkingService
from openmessenger.services.managed_accounts import ManagedAccounts
from openmessenger.services.messaging import MessagingService
from openmessenger.services.operator import Operator
from openmessenger.services.pairing import PairingService
from openmessenger.services.policies import PolicyService
from openmessenger.services.ports import Clock
from openmessenger.services.preferences import PreferenceService
from openmessenger.services.registration import RegistrationService
from openmessenger.services.request_limits import RequestLimits
from openmessenger.services.revisions import RevisionService
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
    preferences: PreferenceService
    contact_requests: ContactRequestService
    blocks: BlockService
    groups: GroupService
    policies: PolicyService
    ephemeral: EphemeralService
    revisions: RevisionService
