"""Email through SMTP (aiosmtplib): plain text with an HTML alternative.

Each message's ``Message-ID`` is the delivery's id at the sender's domain, the same on every
attempt, so a mail system or a reader can tell a re-send from a new message; a correction
names the message it corrects (``In-Reply-To``, ``References``). The connection is made per
message, with STARTTLS or implicit TLS and authentication as the routing file says
(``[smtp]``); ``Date`` is the wall clock's.
"""

from __future__ import annotations

import ssl
from email.message import EmailMessage
from email.utils import formatdate

import aiosmtplib

from mhst_tracker.adapters.notify import DeliveryError
from mhst_tracker.notify.config import Recipient, Security, Smtp
from mhst_tracker.notify.messages import Notice


def message_id_header(message_id: str, sender: str) -> str:
    """The ``Message-ID`` of a delivery: ``<id@domain of the sender>``."""
    return f"<{message_id}@{sender.rpartition('@')[2]}>"


def email_message(notice: Notice, recipient: Recipient, sender: str) -> EmailMessage:
    """The email of ``notice`` to ``recipient``."""
    message = EmailMessage()
    message["From"] = sender
    message["To"] = recipient.address
    message["Subject"] = notice.subject
    message["Date"] = formatdate(localtime=False)
    message["Message-ID"] = message_id_header(notice.message_id, sender)
    if notice.refers_to is not None:
        earlier = message_id_header(notice.refers_to, sender)
        message["In-Reply-To"] = earlier
        message["References"] = earlier
    message.set_content(notice.text)
    message.add_alternative(notice.html, subtype="html")
    return message


class EmailSender:
    """Sends notices through one SMTP server."""

    def __init__(
        self, smtp: Smtp, timeout: float, tls_context: ssl.SSLContext | None = None
    ) -> None:
        self.smtp = smtp
        self.timeout = timeout
        self.tls_context = tls_context

    async def send(self, notice: Notice, recipient: Recipient) -> None:
        """One message, one connection; :class:`DeliveryError` names what failed."""
        smtp = self.smtp
        try:
            await aiosmtplib.send(
                email_message(notice, recipient, smtp.sender),
                hostname=smtp.host,
                port=smtp.port,
                username=smtp.username,
                password=smtp.password,
                use_tls=smtp.security is Security.TLS,
                start_tls=smtp.security is Security.STARTTLS,
                tls_context=self.tls_context,
                timeout=self.timeout,
            )
        except aiosmtplib.SMTPTimeoutError:
            raise DeliveryError("SMTP server timed out") from None
        except aiosmtplib.SMTPResponseException as error:
            raise DeliveryError(f"SMTP server answered {error.code}") from None
        except (aiosmtplib.SMTPException, OSError) as error:
            raise DeliveryError(f"SMTP server unreachable ({type(error).__name__})") from None

    async def close(self) -> None:
        """Nothing is kept open between messages."""
