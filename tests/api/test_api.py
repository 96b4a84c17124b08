"""``mhst-tracker api`` on the real broker with a real store: every format, the topic's
contents, each refusal (401, 403, 413, 415, 429), NHS numbers, logs and metrics."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import orjson
import pytest

from mhst_tracker.adapters.producer import canonical
from mhst_tracker.api.identifiers import pseudonym
from mhst_tracker.api.intake import (
    NDJSON,
    NHS_NUMBER_REFUSED,
    TEAM_OUT_OF_SCOPE,
    TEAM_REQUIRED,
)
from mhst_tracker.api.openapi import DOCUMENT
from mhst_tracker.api.tokens import REFRESH_SECONDS
from mhst_tracker.domain.errors import InvalidEvent
from mhst_tracker.domain.events import NOT_AN_OBJECT, parse_event
from tests.adapters.store.conftest import PLANTED, event
from tests.api.conftest import (
    PSEUDONYM_KEY,
    Api,
    ApiFactory,
    iter_log_lines,
    migrated_store,
    ndjson,
)
from tests.promtool import metrics_problems

pytestmark = pytest.mark.kafka


def received(n: int, team: str = "T1", **fields: object) -> dict[str, Any]:
    return event(
        f"e{n}", "referral_received", f"R{n}", "2026-09-01T09:00:00+01:00", team_id=team, **fields
    )


def reason_of(body: dict[str, Any] | str) -> str:
    raw = body.encode() if isinstance(body, str) else orjson.dumps(body)
    with pytest.raises(InvalidEvent) as parsed:
        parse_event(raw)
    return str(parsed.value)


BAD_TYPE = event("x1", "teleported", "R9", "2026-09-01T09:00:00Z", team_id="T1")
NO_OFFSET = event("x2", "allocated", "R9", "2026-09-01T09:00:00", team_id="T1")


def results(answer: Any) -> list[tuple[int, str, str]]:
    return [
        (item["index"], item["status"], item.get("reason") or item.get("event_id"))
        for item in answer["results"]
    ]


async def test_every_format_puts_exactly_the_valid_canonical_events_on_the_topic(
    api: Api,
) -> None:
    single = api.post({**received(1), **PLANTED, "nhs_number": None})
    assert single.status_code == 202, single.text
    assert single.json() == {
        "accepted": 1,
        "rejected": 0,
        "results": [{"index": 0, "status": "accepted", "event_id": "e1"}],
    }
    mixed: list[dict[str, Any] | str] = [
        received(2),
        "{not json",
        BAD_TYPE,
        received(3, team="T2"),
        NO_OFFSET,
    ]
    array = api.post([received(2), {"no": "event"}, BAD_TYPE, received(3, team="T2"), NO_OFFSET, 1])
    assert array.status_code == 202, array.text
    assert results(array.json()) == [
        (0, "accepted", "e2"),
        (1, "rejected", reason_of({"no": "event"})),
        (2, "rejected", reason_of(BAD_TYPE)),
        (3, "accepted", "e3"),
        (4, "rejected", reason_of(NO_OFFSET)),
        (5, "rejected", NOT_AN_OBJECT),
    ]
    lined = api.post(ndjson(*mixed, received(4)), content_type=NDJSON)
    assert lined.status_code == 202, lined.text
    assert results(lined.json()) == [
        (0, "accepted", "e2"),
        (1, "rejected", reason_of("{not json")),
        (2, "rejected", reason_of(BAD_TYPE)),
        (3, "accepted", "e3"),
        (4, "rejected", reason_of(NO_OFFSET)),
        (5, "accepted", "e4"),
    ]
    only_bad = api.post([BAD_TYPE, NO_OFFSET])
    assert only_bad.status_code == 202
    assert only_bad.json()["accepted"] == 0
    invalid_single = api.post(b"{not json")
    assert (invalid_single.status_code, results(invalid_single.json())) == (
        202,
        [(0, "rejected", reason_of("{not json"))],
    )

    records = await api.topic()
    sent = [
        received(1),
        received(2),
        received(3, team="T2"),
        received(2),
        received(3, team="T2"),
        received(4),
    ]
    assert sorted(record.value or b"" for record in records) == sorted(
        canonical(parse_event(orjson.dumps(body))) for body in sent
    )
    assert all(
        record.key == orjson.loads(record.value or b"")["referral_id"].encode()
        for record in records
    )
    assert not any(name.encode() in (record.value or b"") for record in records for name in PLANTED)


async def test_a_token_is_required_known_and_live(api: Api) -> None:
    valid = received(1)
    for headers in ({}, {"Authorization": "Basic dXNlcjpwYXNz"}, {"Authorization": "Bearer"}):
        answer = api.post(valid, source=None, headers=headers)
        assert answer.status_code == 401
        assert answer.headers["WWW-Authenticate"] == 'Bearer realm="mhst-tracker"'
    unknown = api.post(valid, source=None, headers={"Authorization": "Bearer mhst_not-a-token"})
    assert unknown.status_code == 401
    assert 'error="invalid_token"' in unknown.headers["WWW-Authenticate"]

    assert api.post(valid).status_code == 202
    store = await migrated_store(api.database_url)
    try:
        (token,) = await store.tokens()
        assert await store.revoke_token(token.token_id, datetime.now(UTC))
    finally:
        await store.close()
    deadline = time.monotonic() + REFRESH_SECONDS + 5
    while api.post(valid).status_code != 401:
        assert time.monotonic() < deadline, "a revoked token was still accepted"
        await asyncio.sleep(0.5)
    assert 'error="invalid_token"' in api.post(valid).headers["WWW-Authenticate"]


async def test_each_token_sends_for_its_own_teams_only(apis: ApiFactory) -> None:
    api = await apis.start(tokens={"emis": ["T1"], "portal": ["T2"]})
    without_team = event("e9", "allocated", "R1", "2026-09-03T09:00:00Z")
    mixed = api.post([received(1), received(2, team="T2"), without_team])
    assert mixed.status_code == 202
    assert results(mixed.json()) == [
        (0, "accepted", "e1"),
        (1, "rejected", TEAM_OUT_OF_SCOPE),
        (2, "rejected", TEAM_REQUIRED),
    ]
    none_in_scope = api.post([received(2, team="T2"), BAD_TYPE], source="emis")
    assert none_in_scope.status_code == 403
    assert results(none_in_scope.json()) == [
        (0, "rejected", TEAM_OUT_OF_SCOPE),
        (1, "rejected", reason_of(BAD_TYPE)),
    ]
    assert "teams" in none_in_scope.json()["detail"]
    assert api.post([received(2, team="T2")], source="portal").status_code == 202
    records = await api.topic()
    assert sorted(record.key or b"" for record in records) == [b"R1", b"R2"]
    metrics = api.metrics()
    rejected = 'mhst_api_events_rejected_total{{reason="{}",source="emis"}} {}'
    assert rejected.format(TEAM_OUT_OF_SCOPE, "2.0") in metrics
    assert rejected.format(TEAM_REQUIRED, "1.0") in metrics
    assert rejected.format(reason_of(BAD_TYPE), "1.0") in metrics
    assert 'mhst_api_events_accepted_total{source="emis"} 1.0' in metrics
    assert 'mhst_api_events_accepted_total{source="portal"} 1.0' in metrics
    assert 'mhst_api_requests_total{route="/v1/events",status="403"} 1.0' in metrics
    assert metrics_problems(metrics) == ""


async def test_bodies_too_large_batches_too_long_and_other_media_types(apis: ApiFactory) -> None:
    api = await apis.start({"MHST_API_MAX_BODY_BYTES": "2048", "MHST_API_MAX_BATCH": "3"})
    assert api.post([received(n) for n in range(3)]).status_code == 202
    too_long = api.post([received(n) for n in range(4)])
    assert (too_long.status_code, too_long.json()) == (
        413,
        {"detail": "body: more than 3 events in one request"},
    )
    too_large = api.post([received(1, notes="x" * 3000)])
    assert too_large.status_code == 413
    assert too_large.json() == {"detail": "body larger than 2048 bytes"}

    def chunks() -> Iterator[bytes]:  # no Content-Length: refused while reading
        yield b"["
        for n in range(40):
            yield orjson.dumps(received(n)) + b","
        yield b"1]"

    assert api.post(chunks()).status_code == 413
    for content_type in ("text/plain", "application/xml", "application/json; charset=latin-1"):
        assert api.post(received(1), content_type=content_type).status_code == 415
    assert api.post(b"[]").status_code == 400
    assert len(await api.topic()) == 3


async def test_a_source_over_its_rate_is_told_when_to_come_back(apis: ApiFactory) -> None:
    api = await apis.start(
        {"MHST_API_RATE_LIMIT": "0.5", "MHST_API_RATE_BURST": "2"},
        tokens={"emis": ["T1"], "portal": ["T1"]},
    )
    codes = [api.post(received(n)).status_code for n in range(3)]
    assert codes == [202, 202, 429]
    limited = api.post(received(9))
    assert limited.status_code == 429
    assert 1 <= int(limited.headers["Retry-After"]) <= 2
    assert api.post(received(5), source="portal").status_code == 202


async def test_nhs_numbers_are_refused_or_become_pseudonymous_referral_ids(
    apis: ApiFactory,
) -> None:
    refusing = await apis.start()
    refused = refusing.post(received(1, nhs_number="9434765919"))
    assert results(refused.json()) == [(0, "rejected", NHS_NUMBER_REFUSED)]
    pseudonymising = await apis.start(
        {"MHST_API_NHS_NUMBER": "pseudonymise", "MHST_API_PSEUDONYM_KEY": PSEUDONYM_KEY}
    )
    body = {k: v for k, v in received(2).items() if k != "referral_id"}
    answer = pseudonymising.post(
        [{**body, "nhs_number": "943 476 5919"}, received(3, nhs_number="9434765919")]
    )
    assert answer.json()["accepted"] == 2
    records = await pseudonymising.topic()
    assert sorted(record.key or b"" for record in records) == sorted(
        [pseudonym("9434765919", PSEUDONYM_KEY.encode()).encode(), b"R3"]
    )
    for api in (refusing, pseudonymising):
        assert "9434765919" not in api.log()
        assert "943 476 5919" not in api.log()
        assert "9434765919" not in api.metrics()


async def test_logs_are_json_with_the_source_and_never_a_token_a_body_or_an_id(api: Api) -> None:
    api.post([{**received(1), **PLANTED, "nhs_number": None}, BAD_TYPE])
    api.post(received(2), source=None, headers={"Authorization": "Bearer mhst_wrong"})
    lines = list(iter_log_lines(api.log()))
    answered = [line for line in lines if line["message"] == "events request answered"]
    assert [(line["source"], line["status"]) for line in answered] == [("emis", 202), (None, 401)]
    assert answered[0]["accepted"] == 1
    text = api.log()
    for secret in (
        api.tokens["emis"],
        "mhst_wrong",
        "R1",
        "R2",
        "e1",
        "teleported",
        *map(str, PLANTED.values()),
    ):
        assert secret not in text


async def test_the_served_document_is_the_checked_in_one(api: Api) -> None:
    served = api.get("/openapi.json")
    assert served.status_code == 200
    assert served.json() == orjson.loads(DOCUMENT.read_bytes())
    assert api.get("/healthz").json() == {"status": "ok"}
    assert api.get("/readyz").json() == {"status": "ready"}
