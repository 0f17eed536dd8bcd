"""A real SMTP server for tests: aiosmtpd on 127.0.0.1, on a port the system
picked, collecting every mail it takes (or refusing recipients, when told)."""

from __future__ import annotations

import queue
import socket
from dataclasses import dataclass
from email import message_from_bytes, policy
from email.message import EmailMessage
from typing import Any

from aiosmtpd.controller import Controller


@dataclass(frozen=True)
class ReceivedMail:
    mail_from: str
    rcpt_tos: list[str]
    message: EmailMessage

    @property
    def text(self) -> str:
        body = self.message.get_body(preferencelist=("plain",))
        assert body is not None
        return str(body.get_content())


class _Collector:
    def __init__(self) -> None:
        self.mails: queue.Queue[ReceivedMail] = queue.Queue()
        self.refuse = False

    async def handle_RCPT(  # noqa: N802 - aiosmtpd's hook name
        self, server: Any, session: Any, envelope: Any, address: str, options: list[str]
    ) -> str:
        if self.refuse:
            return "550 5.1.1 mailbox unavailable"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802
        message = message_from_bytes(envelope.original_content, policy=policy.default)
        assert isinstance(message, EmailMessage)
        self.mails.put(ReceivedMail(envelope.mail_from, list(envelope.rcpt_tos), message))
        return "250 Message accepted for delivery"


class _BoundController(Controller):
    """aiosmtpd's controller on a socket bound beforehand: no port guessing."""

    def __init__(self, handler: Any, sock: socket.socket) -> None:
        host, port = sock.getsockname()[:2]
        super().__init__(handler, hostname=host, port=port)
        self._sock = sock

    def _create_server(self) -> Any:
        return self.loop.create_server(self._factory_invoker, sock=self._sock)


class SmtpServer:
    def __init__(self) -> None:
        self._collector = _Collector()
        self._controller = _BoundController(self._collector, socket.create_server(("127.0.0.1", 0)))
        self.host = "127.0.0.1"
        self.port: int = self._controller.port

    def start(self) -> SmtpServer:
        self._controller.start()
        return self

    def stop(self) -> None:
        self._controller.stop()

    def refuse_recipients(self, refuse: bool = True) -> None:
        self._collector.refuse = refuse

    def next_mail(self, timeout: float = 10) -> ReceivedMail:
        """The next mail the server took, waiting for it at most ``timeout`` s."""
        return self._collector.mails.get(timeout=timeout)

    def pending(self) -> int:
        """Mails taken and not read yet."""
        return self._collector.mails.qsize()
