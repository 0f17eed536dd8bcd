"""Verification mail over SMTP (aiosmtplib): STARTTLS unless the operator turns
it off (a local relay), authentication when a username is set."""

from __future__ import annotations

from email.message import EmailMessage
from email.utils import format_datetime, make_msgid

import aiosmtplib

from openmessenger.services.ports import Clock, DeliveryFailed


class SmtpEmailSender:
    """The ``EmailSender`` port: one connection per mail (codes are rare)."""

    def __init__(
        self,
        *,
        host: str,
        port: int,
        sender: str,
        clock: Clock,
        username: str | None = None,
        password: str | None = None,
        starttls: bool = True,
        timeout_seconds: float = 10.0,
    ) -> None:
        self._host = host
        self._port = port
        self._sender = sender
        self._clock = clock
        self._username = username
        self._password = password
        self._starttls = starttls
        self._timeout = timeout_seconds

    async def send(self, to: str, subject: str, text: str) -> None:
        message = EmailMessage()
        message["From"] = self._sender
        message["To"] = to
        message["Subject"] = subject
        message["Date"] = format_datetime(self._clock.now())
        message["Message-ID"] = make_msgid(domain=self._sender.rpartition("@")[2] or None)
        message.set_content(text)
        try:
            await aiosmtplib.send(
                message,
                hostname=self._host,
                port=self._port,
                username=self._username,
                password=self._password,
                start_tls=self._starttls,
                use_tls=False,
                timeout=self._timeout,
            )
        except (aiosmtplib.SMTPException, OSError) as exc:
            # Not chained, and only the type: the server's answer may quote the recipient.
            raise DeliveryFailed(
                f"the SMTP server {self._host}:{self._port} did not take the mail "
                f"({type(exc).__name__})"
            ) from None
