"""A webhook destination on its own against real servers on loopback: TLS settings, the GET
signature over awkward characters, and what a timeout or a refused certificate becomes."""

from __future__ import annotations

import hashlib
import hmac
import ssl
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import msgspec
import pytest
from aiohttp import web

from herald_incident_forwarder.destinations.webhooks import WebhookDestination, WebhookSettings
from herald_shared import samples
from herald_shared.delivery.destination import TransientError
from herald_testkit.http import Answer, HttpReceiver
from herald_testkit.ports import free_port
from herald_testkit.tls import make_certificates

TOKEN = "whtoken-3b7e90c2d1"
HMAC_SECRET = "hmac-secret-Zq8vR3xK"


async def _deliver(settings: dict[str, Any]) -> str | None:
    destination = WebhookDestination(WebhookSettings.model_validate(settings))
    await destination.start()
    try:
        return await destination.deliver(samples.sample_failed(), "")
    finally:
        await destination.close()


@pytest.fixture
async def https_url(tmp_path: Path) -> AsyncIterator[tuple[str, Path]]:
    """An HTTPS receiver whose certificate only a throwaway CA vouches for; (url, that CA)."""
    certificates = make_certificates(tmp_path / "tls")
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(certificates.cert, certificates.key)

    async def accept(request: web.Request) -> web.Response:
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_post("/{tail:.*}", accept)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port, ssl_context=context).start()
    try:
        yield f"https://127.0.0.1:{port}/hooks/{TOKEN}", certificates.ca
    finally:
        await runner.cleanup()


async def test_a_webhooks_own_ca_or_verify_false_reach_a_server_the_system_does_not_trust(
    https_url: tuple[str, Path],
) -> None:
    url, ca = https_url
    assert await _deliver({"name": "ca", "url": url, "ca_file": str(ca)}) == (
        "webhook ca answered 200 to POST"
    )
    assert await _deliver({"name": "lax", "url": url, "verify": False}) == (
        "webhook lax answered 200 to POST"
    )
    with pytest.raises(TransientError) as refused:
        await _deliver({"name": "strict", "url": url})
    assert refused.value.reason.startswith("webhook strict: ")
    assert "certificate" in refused.value.reason.lower()
    assert TOKEN not in refused.value.reason


async def test_a_get_signature_covers_the_query_as_sent_whatever_characters_it_holds() -> None:
    message = "a/b?c=d&e+f#g;h 100% Göran: x@y, (z)*!'$"
    event = msgspec.structs.replace(samples.sample_failed(), log_message=message)
    async with HttpReceiver() as receiver:
        destination = WebhookDestination(
            WebhookSettings.model_validate(
                {
                    "name": "get",
                    "url": f"{receiver.url}hooks/get?code=a%2Fb+c",
                    "method": "GET",
                    "hmac_secret": HMAC_SECRET,
                }
            )
        )
        await destination.start()
        try:
            await destination.deliver(event, "")
        finally:
            await destination.close()

    [request] = receiver.accepted
    query = urlsplit(request.path).query
    pairs = parse_qsl(query)
    assert pairs[0] == ("code", "a/b c")  # the URL's own query, first
    assert dict(pairs[1:])["logMessage"] == message
    mac = hmac.new(HMAC_SECRET.encode(), query.encode(), hashlib.sha256).hexdigest()
    assert hmac.compare_digest(request.headers["X-Herald-Signature-256"], f"sha256={mac}")


async def test_a_webhook_that_never_answers_is_transient_and_its_url_stays_out_of_the_reason() -> (
    None
):
    async with HttpReceiver() as receiver:
        receiver.respond_with(Answer(hang=True))
        with pytest.raises(TransientError) as timed_out:
            await _deliver({"name": "slow", "url": f"{receiver.url}{TOKEN}", "timeout": 0.2})
        receiver.release_hung()
    assert timed_out.value.reason == "webhook slow: no answer within 0.2 s"
    assert timed_out.value.retry_after is None
