"""Import: JSONL with bad lines, an MHSDS-style CSV extract, and the store equal to replay."""

from __future__ import annotations

import asyncio
from datetime import UTC, date, datetime
from pathlib import Path

import orjson
import pytest
from click.testing import CliRunner
from sqlalchemy import select

from mhst_tracker.adapters.store.database import create_engine
from mhst_tracker.adapters.store.models import EventRow, RejectedEventRow
from mhst_tracker.adapters.store.repository import Store
from mhst_tracker.cli import main
from mhst_tracker.domain.profile import TRAILBLAZER_4WW
from mhst_tracker.replay import replay
from mhst_tracker.simulate import simulate
from mhst_tracker.timesource import ManualClock
from tests.adapters.store.conftest import CONTRACT_FIELDS, NOW, PLANTED, event, jsonl

CSV_EXTRACT = """\
ServiceRequestId,ReferralRequestReceivedDate,AssessmentDate,AllocationDate,FirstInterventionContactDate,DischargeDate,TeamId,SchoolURN
SR1,2026-09-01,2026-09-01,2026-09-05,2026-09-20,,T1,100001
SR2,01/09/2026,01/09/2026,,,,T1,100002
SR3,2026-09-02,,,,2026-09-05,T2,
SR4,2026-13-45,,,,,T1,
,2026-09-02,,,,,T1,
SR6,2026-09-03,,,,,,
"""


def run_cli(args: list[str], url: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, args, env={"MHST_DATABASE_URL": url, "MHST_CLOCK": "wall"})
    if result.exception and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result.exit_code, result.stdout, result.stderr


def migrate(url: str) -> None:
    code, _, stderr = run_cli(["db", "upgrade"], url)
    assert code == 0, stderr


async def _counts(url: str) -> tuple[int, int]:
    store = Store(create_engine(url), TRAILBLAZER_4WW, ManualClock(NOW))
    try:
        return await store.count(EventRow), await store.count(RejectedEventRow)
    finally:
        await store.close()


def test_jsonl_with_bad_lines_keeps_the_good_ones(store_url: str, tmp_path: Path) -> None:
    migrate(store_url)
    path = tmp_path / "events.jsonl"
    path.write_bytes(
        jsonl(
            [
                event("e1", "referral_received", "R1", "2026-09-01T09:00:00Z", team_id="T1"),
                "{not json",
                event("e2", "allocated", "R1", "2026-09-03T09:00:00"),
                "",
                event("e3", "teleported", "R1", "2026-09-03T09:00:00Z"),
                event("e4", "allocated", "R1", "2026-09-04T09:00:00Z"),
            ]
        )
    )
    code, _, stderr = run_cli(["import", str(path)], store_url)
    assert code == 0
    assert "events.jsonl:2: invalid JSON" in stderr
    assert "events.jsonl:3: occurred_at has no UTC offset" in stderr
    assert "events.jsonl:5: type is not one of the allowed values" in stderr
    assert "2 events, 2 new; 3 lines rejected" in stderr
    assert asyncio.run(_counts(store_url)) == (2, 3)
    code, _, stderr = run_cli(["import", str(path)], store_url)
    assert "2 events, 0 new; 3 lines rejected" in stderr
    assert asyncio.run(_counts(store_url)) == (2, 3)


def test_csv_extract_becomes_events_at_local_midnight(store_url: str, tmp_path: Path) -> None:
    migrate(store_url)
    path = tmp_path / "extract.csv"
    path.write_text(CSV_EXTRACT)
    code, _, stderr = run_cli(["import", str(path)], store_url)
    assert code == 0, stderr
    assert "extract.csv:5: ReferralRequestReceivedDate is not a date" in stderr
    assert "extract.csv:6: ServiceRequestId is missing" in stderr
    assert "extract.csv:7: referral_received needs team_id" in stderr
    # SR1: receipt, assessment, allocation, intervention; SR2 and SR3: two each.
    assert "8 events, 8 new; 3 lines rejected" in stderr
    code, stdout, _ = run_cli(
        ["waiting-list", "--team", "T1", "--as-of", "2026-09-02", "--format", "csv"], store_url
    )
    assert code == 0
    assert stdout.splitlines() == [
        "referral_id,team_id,school_id,status,received_on,days_waited,next_stage,next_due_on,"
        "days_until_next_breach,breached_stages,at_risk_stages",
        "SR1,T1,100001,waiting_within_standard,2026-09-01,1,allocation,2026-09-08,7,,",
        "SR2,T1,100002,waiting_within_standard,2026-09-01,1,allocation,2026-09-08,7,,",
    ]


def test_missing_file_and_unusable_csv_fail(store_url: str, tmp_path: Path) -> None:
    migrate(store_url)
    code, _, _ = run_cli(["import", str(tmp_path / "absent.jsonl")], store_url)
    assert code != 0
    bad = tmp_path / "bad.csv"
    bad.write_text("Id,Date\n1,2026-09-01\n")
    code, _, stderr = run_cli(["import", str(bad)], store_url)
    assert code != 0
    assert "CSV header lacks ServiceRequestId, ReferralRequestReceivedDate, TeamId" in stderr


async def stored_payloads(url: str) -> list[dict[str, object]]:
    """Every ``events.payload``, decoded."""
    engine = create_engine(url)
    try:
        async with engine.connect() as connection:
            result = await connection.execute(select(EventRow.payload))
            return [dict(payload) for payload in result.scalars()]
    finally:
        await engine.dispose()


def test_fields_outside_the_contract_never_reach_the_events_table(
    store_url: str, tmp_path: Path
) -> None:
    migrate(store_url)
    path = tmp_path / "events.jsonl"
    bodies = [
        event("e1", "referral_received", "R1", "2026-09-01T09:00:00+01:00", team_id="T1"),
        event("e2", "allocated", "R1", "2026-09-03T09:00:00+01:00"),
    ]
    path.write_bytes(jsonl([body | PLANTED for body in bodies]))
    code, _, stderr = run_cli(["import", str(path)], store_url)
    assert code == 0, stderr
    payloads = asyncio.run(stored_payloads(store_url))
    assert sorted(payloads, key=lambda payload: str(payload["event_id"])) == [
        body | {"schema_version": 1} for body in bodies
    ]
    assert all(set(payload) <= CONTRACT_FIELDS for payload in payloads)


def test_an_event_that_does_not_fit_the_store_is_a_rejected_line(
    store_url: str, tmp_path: Path
) -> None:
    migrate(store_url)
    path = tmp_path / "events.jsonl"
    receipt = event("e1", "referral_received", "R1", "2026-09-01T09:00:00Z", team_id="T1")
    deep = orjson.dumps(event("e3", "allocated", "R1", "2026-09-02T09:00:00Z"))[:-1]
    deep += b',"x":' + b"[" * 5000 + b"]" * 5000 + b"}"
    path.write_bytes(
        jsonl(
            [
                receipt,
                event("e2", "referral_received", "R2", "2026-09-01T09:00:00Z", team_id="T" * 65),
                deep.decode(),
            ]
        )
    )
    code, _, stderr = run_cli(["import", str(path)], store_url)
    assert code == 0, stderr
    assert "events.jsonl:2: team_id longer than 64 characters" in stderr
    assert "events.jsonl:3: event nested deeper than 32 levels" in stderr
    assert asyncio.run(_counts(store_url)) == (1, 2)


def test_commands_refuse_an_unmigrated_store(store_url: str) -> None:
    code, _, stderr = run_cli(["waiting-list", "--team", "T1"], store_url)
    assert code != 0
    assert "run `mhst-tracker db upgrade`" in stderr


async def _states(url: str, as_of: datetime) -> list[dict[str, object]]:
    store = Store(create_engine(url), TRAILBLAZER_4WW, ManualClock(NOW))
    try:
        return [state.to_dict() for state in await store.states_as_of(as_of)]
    finally:
        await store.close()


@pytest.mark.parametrize("as_of", [datetime(2026, 9, 20, tzinfo=UTC), NOW])
def test_store_after_import_equals_replay(store_url: str, tmp_path: Path, as_of: datetime) -> None:
    lines = list(simulate(5, date(2026, 9, 1), referrals=80))
    path = tmp_path / "simulated.jsonl"
    path.write_text("\n".join(lines) + "\n")
    migrate(store_url)
    code, _, _ = run_cli(["import", str(path)], store_url)
    assert code == 0
    expected = replay(lines, as_of, TRAILBLAZER_4WW)
    assert asyncio.run(_states(store_url, as_of)) == [s.to_dict() for s in expected.referrals]
    assert asyncio.run(_counts(store_url))[1] == len(expected.rejected)
