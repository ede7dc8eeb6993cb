"""The inbox of the test SMTP server: parsed mails, and the links in them."""

from __future__ import annotations

import email
import re
import threading
import time
from dataclasses import dataclass
from email import policy
from email.message import EmailMessage
from typing import Any


@dataclass
class ReceivedMail:
    sender: str
    recipients: list[str]
    message: EmailMessage

    @property
    def subject(self) -> str:
        return str(self.message["Subject"])

    def part(self, subtype: str) -> str:
        body = self.message.get_body(preferencelist=(subtype,))
        assert body is not None, f"no text/{subtype} part"
        return str(body.get_content())

    def link(self, path: str) -> str:
        match = re.search(
            rf"https?://[^\s\"<>]+{re.escape(path)}\?token=[A-Za-z0-9._-]+", self.part("plain")
        )
        assert match, f"no {path} link in the mail"
        return match.group(0)

    def token(self, path: str) -> str:
        return self.link(path).split("token=", 1)[1]


class Inbox:
    """aiosmtpd handler; runs in the controller's thread."""

    def __init__(self) -> None:
        self.port = 0
        self._mails: list[ReceivedMail] = []
        self._lock = threading.Lock()

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        message = email.message_from_bytes(envelope.content, policy=policy.default)
        with self._lock:
            self._mails.append(
                ReceivedMail(envelope.mail_from, list(envelope.rcpt_tos), message)  # type: ignore[arg-type]
            )
        return "250 Message accepted for delivery"

    def clear(self) -> None:
        with self._lock:
            self._mails.clear()

    def mails_to(self, address: str) -> list[ReceivedMail]:
        with self._lock:
            return [m for m in self._mails if address in m.recipients]

    def wait_for(self, address: str, count: int = 1, timeout: float = 5.0) -> ReceivedMail:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            mails = self.mails_to(address)
            if len(mails) >= count:
                return mails[count - 1]
            time.sleep(0.02)
        raise AssertionError(f"no mail #{count} to {address} within {timeout}s")
