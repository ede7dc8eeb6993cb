"""Outgoing mail: `Mailer` renders a template from `templates/` (plain text and an
HTML alternative) and sends it over SMTP, or logs that it would in development;
`MailQueue` sends off the request's path, keeping the request id on the log
lines it writes.
"""

from app.mail.mailer import Mail, Mailer, MailQueue

__all__ = ["Mail", "MailQueue", "Mailer"]
