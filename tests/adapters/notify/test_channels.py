"""The channels against real servers: SMTP with STARTTLS and authentication (aiosmtpd), and
webhooks checked by the specification's rules, a tampered body refused."""

from __future__ import annotations

import asyncio
import ssl
import subprocess
import time
from email.message import EmailMessage
from pathlib import Path

import httpx
import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

from deploy.local.process import free_port
from deploy.local.receivers import Mailbox, spec_verify, webhook_receiver
from mhst_tracker.adapters.notify import DeliveryError
from mhst_tracker.adapters.notify.email import EmailSender
from mhst_tracker.adapters.notify.webhook import WebhookSender, signed_request
from mhst_tracker.notify.config import Channel, Security, Smtp
from mhst_tracker.notify.messages import alert_notice
from tests.unit.notify.builders import alert, recipient

SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
HOOK = recipient("icb", channel=Channel.WEBHOOK, secret=SECRET)


@pytest.fixture
def certificate(tmp_path: Path) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 (openssl)."""
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
         "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True,
    )  # fmt: skip
    return cert, key


class _Accounts:
    def __init__(self) -> None:
        self.logins: list[str] = []

    def __call__(
        self, server: object, session: object, envelope: object, mechanism: str, data: object
    ) -> AuthResult:
        assert isinstance(data, LoginPassword)
        self.logins.append(f"{mechanism} {data.login.decode()} {data.password.decode()}")
        return AuthResult(success=True)


async def test_email_over_starttls_with_authentication(certificate: tuple[Path, Path]) -> None:
    cert, key = certificate
    server_tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_tls.load_cert_chain(cert, key)
    mailbox, accounts, port = Mailbox(), _Accounts(), free_port()
    controller = Controller(
        mailbox, hostname="127.0.0.1", port=port, tls_context=server_tls,
        require_starttls=True, authenticator=accounts, auth_require_tls=True,
    )  # fmt: skip
    controller.start()
    try:
        client_tls = ssl.create_default_context(cafile=str(cert))
        smtp = Smtp("127.0.0.1", port, Security.STARTTLS, "tracker@mhst.test", "tracker", "s3cret")
        sender = EmailSender(smtp, timeout=5, tls_context=client_tls)
        notice = alert_notice(alert(), recipient(), "delivery-1", None)
        await sender.send(notice, recipient())
        plain = EmailSender(Smtp("127.0.0.1", port, Security.NONE, "tracker@mhst.test"), timeout=5)
        with pytest.raises(DeliveryError, match="SMTP server answered 530"):
            await plain.send(notice, recipient())
    finally:
        controller.stop()
    (message,) = mailbox.received()
    assert accounts.logins == ["PLAIN tracker s3cret"]
    assert message["Message-ID"] == "<delivery-1@mhst.test>"
    assert isinstance(message.get_body(("plain",)), EmailMessage)
    assert isinstance(message.get_body(("html",)), EmailMessage)


async def test_an_unreachable_smtp_server_is_a_delivery_error() -> None:
    sender = EmailSender(Smtp("127.0.0.1", free_port(), Security.NONE, "t@mhst.test"), timeout=2)
    with pytest.raises(DeliveryError, match=r"SMTP server unreachable \(\w+\)"):
        await sender.send(alert_notice(alert(), recipient(), "d", None), recipient())


def test_a_tampered_body_fails_the_specifications_check() -> None:
    notice = alert_notice(alert(), HOOK, "delivery-1", None)
    body, headers = signed_request(notice, SECRET)
    assert spec_verify(SECRET, headers, body, time.time())
    tampered = body.replace(b'"days_waited":8', b'"days_waited":9')
    assert tampered != body
    assert not spec_verify(SECRET, headers, tampered, time.time())
    assert not spec_verify("whsec_" + "A" * 32, headers, body, time.time())
    assert not spec_verify(SECRET, headers, body, time.time() + 600)  # replayed too late


async def test_the_receiver_refuses_a_tampered_request_and_takes_a_signed_one() -> None:
    notice = alert_notice(alert(), HOOK, "delivery-1", None)
    with webhook_receiver(SECRET) as receiver:
        hook = recipient("icb", channel=Channel.WEBHOOK, secret=SECRET, address=receiver.url)
        sender = WebhookSender(timeout=5, connections=4)
        try:
            await sender.send(notice, hook)
            body, headers = signed_request(notice, SECRET)
            async with httpx.AsyncClient() as client:
                response = await client.post(
                    receiver.url, content=body.replace(b"R0000001", b"R0000002"), headers=headers
                )
            assert response.status_code == 401
            receiver.plan = [500]
            with pytest.raises(DeliveryError, match="webhook answered 500"):
                await sender.send(notice, hook)
            receiver.plan = [3.0]
            slow = WebhookSender(timeout=0.5, connections=1)
            with pytest.raises(DeliveryError, match="webhook timed out"):
                await slow.send(notice, hook)
            await slow.close()
        finally:
            await sender.close()
        await asyncio.sleep(3)
    assert [(r.verified, r.status) for r in receiver.requests] == [
        (True, 200), (False, 401), (True, 500), (True, 200),
    ]  # fmt: skip
    assert receiver.requests[0].body == notice.body
