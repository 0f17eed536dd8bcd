"""The Open Messenger client SDK: async, typed, usable without the CLI.

Shares ``core``, ``protocol`` and ``crypto`` with the node and never imports
the node's adapters (storage, api, services, bus, wiring).
"""

from openmessenger.client.apps import AppSigning, AppTag, ProvenanceError
from openmessenger.client.client import Client
from openmessenger.client.ephemeral import (
    EphemeralExpired,
    EphemeralMessage,
    EphemeralSent,
)
from openmessenger.client.errors import (
    ApiError,
    ClientError,
    DowngradeError,
    FieldProblem,
    InvalidArgumentError,
    NotAContactError,
    ProtocolError,
    RefusedError,
    ServerUnreachableError,
    StateError,
)
from openmessenger.client.groups import Group, GroupMember
from openmessenger.client.models import CodeInfo, Contact, IssuedCode, Me, Message
from openmessenger.client.state import STATE_VERSION, DeviceState, StateStore

__all__ = [
    "STATE_VERSION",
    "ApiError",
    "AppSigning",
    "AppTag",
    "Client",
    "ClientError",
    "CodeInfo",
    "Contact",
    "DeviceState",
    "DowngradeError",
    "EphemeralExpired",
    "EphemeralMessage",
    "EphemeralSent",
    "FieldProblem",
    "Group",
    "GroupMember",
    "InvalidArgumentError",
    "IssuedCode",
    "Me",
    "Message",
    "NotAContactError",
    "ProtocolError",
    "ProvenanceError",
    "RefusedError",
    "ServerUnreachableError",
    "StateError",
    "StateStore",
]
