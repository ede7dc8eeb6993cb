"""Mail: rendered from `app/mail/templates/` (plain text + HTML alternative)
with fastapi-mail, sent from a background task after the answer has gone out.

With `QUARRY_SMTP_HOST` set, mail goes to that server. Without it (the
development default; production refuses to start without it) each mail is
written to `QUARRY_DATA_DIR/outbox/*.eml` and the file's path is printed in the
server log, so a newcomer can open it and verify an account without a mail
server. No environment logs a link: its token is a live credential. A failed
send is logged with the request id and never fails the request that caused it.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fastapi import BackgroundTasks
from fastapi_mail import ConnectionConfig, FastMail, MessageSchema, MessageType
from fastapi_mail.schemas import MultipartSubtypeEnum

from app.clock import utc_now
from app.kit import bind_request_id, current_request_id, reset_request_id
from app.settings import Settings

logger = logging.getLogger("quarry.mail")

TEMPLATES = Path(__file__).resolve().parent / "templates"


@dataclass(frozen=True)
class Mail:
    to: str
    subject: str
    template: str
    context: dict[str, Any]


class Mailer:
    def __init__(self, settings: Settings) -> None:
        self.outbox = None if settings.smtp_host else settings.data_dir.resolve() / "outbox"
        config = ConnectionConfig(
            MAIL_USERNAME=settings.smtp_username,
            MAIL_PASSWORD=settings.smtp_password,
            MAIL_SERVER=settings.smtp_host or "localhost",
            MAIL_PORT=settings.smtp_port,
            MAIL_STARTTLS=settings.smtp_starttls,
            MAIL_SSL_TLS=settings.smtp_ssl,
            MAIL_FROM=settings.mail_from,
            MAIL_FROM_NAME=settings.mail_from_name,
            TEMPLATE_FOLDER=TEMPLATES,
            USE_CREDENTIALS=bool(settings.smtp_username),
            TIMEOUT=settings.smtp_timeout_seconds,
        )
        self._fastmail = FastMail(config)

    async def send(self, mail: Mail, request_id: str | None = None) -> None:
        token = bind_request_id(request_id)
        try:
            message = MessageSchema(
                subject=mail.subject,
                recipients=[mail.to],
                template_body=mail.context,
                subtype=MessageType.html,
                multipart_subtype=MultipartSubtypeEnum.alternative,
            )
            templates = {
                "html_template": f"{mail.template}.html",
                "plain_template": f"{mail.template}.txt",
            }
            if self.outbox is None:
                await self._fastmail.send_message(message, **templates)
                logger.info("mail '%s' sent", mail.template)
                return
            built = await self._fastmail.get_message(message, **templates)
            self.outbox.mkdir(parents=True, exist_ok=True)
            stamp = utc_now().strftime("%Y%m%dT%H%M%S")
            path = self.outbox / f"{stamp}-{mail.template}-{uuid.uuid4().hex[:8]}.eml"
            path.write_bytes(built.as_bytes())  # type: ignore[union-attr]
            # Where to find it; the link inside is a live credential, never logged.
            logger.info("mail '%s' written to %s (open it for its link)", mail.template, path)
        except Exception as exc:
            logger.error("mail '%s' could not be sent: %s", mail.template, type(exc).__name__)
        finally:
            reset_request_id(token)


class MailQueue:
    """What a service hands mail to: sent after the response, never before."""

    def __init__(self, mailer: Mailer, background: BackgroundTasks) -> None:
        self._mailer = mailer
        self._background = background

    def enqueue(self, mail: Mail) -> None:
        self._background.add_task(self._mailer.send, mail, current_request_id())
