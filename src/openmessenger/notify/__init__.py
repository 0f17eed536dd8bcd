"""Verification senders: the adapters behind the ``EmailSender`` and ``SmsSender``
ports (``services/ports.py``). They see a plaintext address or number only to
hand one message to the operator's server, and never log it."""

from __future__ import annotations

from openmessenger.notify.email import SmtpEmailSender
from openmessenger.notify.sms import SmsWebhookSender, webhook_signature

__all__ = ["SmsWebhookSender", "SmtpEmailSender", "webhook_signature"]
