"""The ingestion API as an ASGI application (FastAPI): ``POST /v1/events``, ``/healthz``,
``/readyz`` and the OpenAPI document.

A request to ``POST /v1/events`` is checked in this order, each failure answered at once:
the token (401 with ``WWW-Authenticate``), the source's rate (429 with ``Retry-After``), the
``Content-Type`` (415), the body's size (413, from ``Content-Length`` before reading, or
while reading), the batch's length (413). Then every item gets its verdict
(:mod:`~mhst_tracker.api.intake`); if valid events were sent but none is for the token's
teams, the answer is 403 with the verdicts. Otherwise the accepted events are produced and
the answer, 202 with a result per item, comes only once the broker has acknowledged them
all; if it did not, 503 with ``Retry-After`` (the whole request may be sent again: see
:mod:`mhst_tracker.adapters.producer`).

The request path stays lean: the body is read as bytes and split without decoding the
items, each item is parsed once by the engine's parser, and answers are msgspec structs
encoded straight to bytes. No pydantic model is built per request or per item; FastAPI
only routes and documents.

Each ``POST`` is logged as one line with the source's name, the status and the counts:
never the token, the body or any value from it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass
from typing import Any, Final

import msgspec
from fastapi import FastAPI, Request, Response

from mhst_tracker.adapters.metrics import ApiMetrics
from mhst_tracker.adapters.producer import EventProducer, ProduceFailed
from mhst_tracker.adapters.store.records import ApiToken
from mhst_tracker.api import openapi
from mhst_tracker.api.answers import Health, IngestResult, ItemResult, Problem
from mhst_tracker.api.intake import (
    JSON,
    Accepted,
    IntakeRules,
    Refused,
    Rejected,
    Verdict,
    judge,
    media_type,
    split_body,
)
from mhst_tracker.api.ratelimit import RateLimiter, retry_after
from mhst_tracker.api.tokens import TokenCache, TokensUnavailable

EVENTS_ROUTE: Final = "/v1/events"
RETRY_AFTER_UNAVAILABLE: Final = 5
"""Seconds a client is asked to wait after a 503."""
REALM: Final = 'Bearer realm="mhst-tracker"'

log = logging.getLogger(__name__)


_encode: Final = msgspec.json.encode


@dataclass
class ApiService:
    """What the application runs on (built by :func:`mhst_tracker.bootstrap.api`)."""

    producer: EventProducer
    tokens: TokenCache
    limiter: RateLimiter
    metrics: ApiMetrics
    rules: IntakeRules
    max_body_bytes: int
    max_batch: int


def create_app(service: ApiService) -> FastAPI:
    """The application serving ``service``; its lifespan keeps the tokens fresh and closes
    the producer."""
    app = routes()
    app.state.service = service
    return app


def routes() -> FastAPI:
    """The application's routes and document, without a service to run on (what
    :mod:`~mhst_tracker.api.openapi` documents)."""

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        service: ApiService = app.state.service
        refreshing = asyncio.create_task(service.tokens.refresh_forever())
        try:
            yield
        finally:
            refreshing.cancel()
            await asyncio.gather(refreshing, return_exceptions=True)
            await service.producer.stop()

    app = FastAPI(
        title=openapi.TITLE,
        version=openapi.VERSION,
        description=openapi.DESCRIPTION,
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
    )

    @app.post(
        EVENTS_ROUTE,
        status_code=202,
        summary="Send referral events",
        openapi_extra=openapi.EVENTS_OPERATION,
    )
    async def post_events(request: Request) -> Response:
        return await _post_events(request.app.state.service, request)

    @app.get("/healthz", summary="Process up", openapi_extra=openapi.health_operation(False))
    async def healthz(request: Request) -> Response:
        service: ApiService = request.app.state.service
        return _answer(service, "/healthz", time.perf_counter(), 200, Health("ok"))

    @app.get("/readyz", summary="Broker reachable", openapi_extra=openapi.health_operation(True))
    async def readyz(request: Request) -> Response:
        service: ApiService = request.app.state.service
        started = time.perf_counter()
        if not service.tokens.loaded:
            return _answer(service, "/readyz", started, 503, Health("tokens not loaded"))
        if not await service.producer.reachable():
            headers = {"Retry-After": str(RETRY_AFTER_UNAVAILABLE)}
            return _answer(service, "/readyz", started, 503, Health("broker unreachable"), headers)
        return _answer(service, "/readyz", started, 200, Health("ready"))

    app.openapi = lambda: openapi.document(app)  # type: ignore[method-assign]
    return app


async def _post_events(service: ApiService, request: Request) -> Response:
    started = time.perf_counter()
    source: str | None = None
    try:
        token = await _authenticated(service, request)
        source = token.source
        wait = service.limiter.take(source)
        if wait:
            raise Refused(429, "rate limit of this source exceeded", _retry(wait))
        items = split_body(
            await _body(request, service.max_body_bytes),
            media_type(request.headers.get("content-type")),
            service.max_batch,
        )
        verdicts = judge(items, service.rules, frozenset(token.teams))
        return await _ingest(service, source, verdicts, started)
    except Refused as refused:
        problem = Problem(refused.detail)
        return _answer(
            service, EVENTS_ROUTE, started, refused.status, problem, refused.headers, source
        )


async def _ingest(
    service: ApiService, source: str, verdicts: list[Verdict], started: float
) -> Response:
    accepted = [verdict.event for verdict in verdicts if isinstance(verdict, Accepted)]
    reasons = [verdict.reason for verdict in verdicts if isinstance(verdict, Rejected)]
    result = IngestResult(len(accepted), len(reasons), list(_results(verdicts)))
    if not accepted and any(isinstance(v, Rejected) and v.out_of_scope for v in verdicts):
        result.detail = "no event in this request is for this token's teams"
        service.metrics.events(source, 0, reasons)
        return _answer(service, EVENTS_ROUTE, started, 403, result, source=source)
    if accepted:
        sending = time.perf_counter()
        try:
            await service.producer.send(accepted)
        except ProduceFailed:
            problem = Problem("the event broker is unavailable; send the same request again")
            headers = {"Retry-After": str(RETRY_AFTER_UNAVAILABLE)}
            return _answer(service, EVENTS_ROUTE, started, 503, problem, headers, source)
        service.metrics.produce_seconds.observe(time.perf_counter() - sending)
    service.metrics.events(source, len(accepted), reasons)
    return _answer(service, EVENTS_ROUTE, started, 202, result, source=source)


def _results(verdicts: Iterable[Verdict]) -> Iterable[ItemResult]:
    for index, verdict in enumerate(verdicts):
        if isinstance(verdict, Accepted):
            yield ItemResult(index, "accepted", event_id=verdict.event.event_id)
        else:
            yield ItemResult(index, "rejected", reason=verdict.reason)


async def _authenticated(service: ApiService, request: Request) -> ApiToken:
    scheme, _, credentials = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not credentials.strip():
        raise Refused(401, "a bearer token is required", {"WWW-Authenticate": REALM})
    try:
        token = await service.tokens.find(credentials.strip())
    except TokensUnavailable:
        retry = _retry(RETRY_AFTER_UNAVAILABLE)
        raise Refused(503, "tokens cannot be checked now", retry) from None
    if token is None:
        challenge = f'{REALM}, error="invalid_token"'
        raise Refused(401, "unknown or revoked token", {"WWW-Authenticate": challenge})
    return token


async def _body(request: Request, limit: int) -> bytes:
    """The body, refused with 413 as soon as it is known to exceed ``limit`` bytes."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise Refused(413, f"body larger than {limit} bytes")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise Refused(413, f"body larger than {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def _retry(seconds: float) -> dict[str, str]:
    return {"Retry-After": retry_after(seconds)}


def _answer(
    service: ApiService,
    route: str,
    started: float,
    status: int,
    body: Any,
    headers: dict[str, str] | None = None,
    source: str | None = None,
) -> Response:
    seconds = time.perf_counter() - started
    service.metrics.answered(route, status, seconds)
    if route == EVENTS_ROUTE:
        counts = (
            {"accepted": body.accepted, "rejected": body.rejected}
            if isinstance(body, IngestResult)
            else {}
        )
        log.info(
            "events request answered",
            extra={"source": source, "status": status, "seconds": round(seconds, 4), **counts},
        )
    return Response(_encode(body), status, headers, media_type=JSON)
