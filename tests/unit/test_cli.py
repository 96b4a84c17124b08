"""The command line: replay (JSON and tables, bad lines, stdin, profiles) and simulate."""

import subprocess
import sys
from datetime import UTC, date, datetime
from pathlib import Path

import click
import orjson
import pytest
from click.testing import CliRunner

from mhst_tracker.cli import COMMANDS, main
from mhst_tracker.commands import replay as replay_command
from mhst_tracker.domain.profile import TRAILBLAZER_4WW
from mhst_tracker.replay import replay
from tests.unit.domain.builders import DOMAIN_EXAMPLE_STATE

EXAMPLE_LINES = [
    '{"event_id":"e1","type":"referral_received","referral_id":"R1",'
    '"occurred_at":"2026-02-20T10:00:00Z","team_id":"T1"}',
    '{"event_id":"e2","type":"assessment_completed","referral_id":"R1",'
    '"occurred_at":"2026-02-20T11:00:00Z"}',
    '{"event_id":"e3","type":"referral_received","referral_id":"R2",'
    '"occurred_at":"2026-02-26T09:00:00+00:00","team_id":"T1","school_id":"100001","source":"gp"}',
    '{"event_id":"e4","type":"allocated","referral_id":"R2","occurred_at":"2026-02-27T09:00:00Z"}',
    '{"event_id":"e5","type":"intervention_started","referral_id":"R0",'
    '"occurred_at":"2026-02-10T09:00:00Z"}',
    '{"event_id":"e2","type":"assessment_completed","referral_id":"R1",'
    '"occurred_at":"2026-02-20T11:00:00Z"}',
    '{"event_id":"e6","type":"allocated","referral_id":"R1","occurred_at":"2026-02-25T10:00:00"}',
    '{"event_id":"e7","type":"allocated","referral_id":"R1","occurred_at":"2026-03-05T10:00:00Z"}',
]
"""The domain page's R1 plus a little more: line 6 repeats line 2, line 7 has no offset,
line 8 is dated after the as-of moment."""


def write(tmp_path: Path, lines: list[str], name: str = "events.jsonl") -> Path:
    path = tmp_path / name
    path.write_text("\n".join(lines) + "\n")
    return path


def run(*args: str, input_: str | None = None) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, list(args), input=input_)
    return result.exit_code, result.stdout, result.stderr


def test_replay_json_reproduces_the_domain_page_example(tmp_path: Path) -> None:
    path = write(tmp_path, EXAMPLE_LINES)
    code, out, _ = run(
        "replay", str(path), "--as-of", "2026-03-01T00:00:00+00:00", "--format", "json"
    )

    assert code == 0
    output = orjson.loads(out)
    assert list(output) == ["as_of", "profile", "referrals", "rejected", "duplicates", "summary"]
    assert output["as_of"] == "2026-03-01T00:00:00+00:00"
    assert output["profile"] == "trailblazer-4ww"
    assert [referral["referral_id"] for referral in output["referrals"]] == ["R0", "R1", "R2"]
    assert output["referrals"][1] == DOMAIN_EXAMPLE_STATE
    assert output["rejected"] == [{"line": 7, "reason": "occurred_at has no UTC offset"}]
    assert output["duplicates"] == 1
    assert list(output["summary"]) == ["overall", "by_team", "by_school"]


def test_replay_applies_every_valid_line_and_reports_every_bad_one(tmp_path: Path) -> None:
    path = write(tmp_path, EXAMPLE_LINES)
    _, out, _ = run("replay", str(path), "--as-of", "2026-03-01T00:00:00Z")
    output = orjson.loads(out)

    r0, _, r2 = output["referrals"]
    assert r0["status"] == "no_receipt"
    assert r0["stages"] == {"assessment": None, "allocation": None, "intervention": None}
    assert r2["school_id"] == "100001"
    assert r2["stages"]["allocation"]["state"] == "met"
    assert r2["stages"]["assessment"]["done_on"] == "2026-02-27"
    overall = output["summary"]["overall"]
    assert (overall["referrals"], overall["waiting"], overall["no_receipt"]) == (2, 2, 1)
    assert overall["rejected_events"] == 1
    assert list(output["summary"]["by_school"]) == ["100001"]


def test_many_kinds_of_bad_lines_never_stop_the_replay(tmp_path: Path) -> None:
    lines = [
        EXAMPLE_LINES[0],
        "{this is not json",
        '{"event_id":"b1","type":"referral_received","referral_id":"R9",'
        '"occurred_at":"2026-02-21T10:00:00Z"}',
        '{"event_id":"b2","type":"x","referral_id":"R9","occurred_at":"2026-02-21T10:00:00Z"}',
        "",
        '["an", "array"]',
        '{"type":"allocated","referral_id":"R9","occurred_at":"2026-02-21T10:00:00Z"}',
        '{"event_id":"b3","type":"allocated","referral_id":"' + "R" * 65 + '",'
        '"occurred_at":"2026-02-21T10:00:00Z"}',
        EXAMPLE_LINES[1],
    ]
    path = write(tmp_path, lines)
    code, out, _ = run("replay", str(path), "--as-of", "2026-03-01T00:00:00Z")
    output = orjson.loads(out)

    assert code == 0
    rejected = {item["line"]: item["reason"] for item in output["rejected"]}
    assert list(rejected) == [2, 3, 4, 6, 7, 8]
    assert rejected[2].startswith("invalid JSON")
    assert rejected[3] == "referral_received needs team_id"
    assert rejected[4] == "type is not one of the allowed values"
    assert rejected[6] == "event is not a JSON object"
    assert rejected[7] == "missing event_id"
    assert rejected[8] == "referral_id longer than 64 characters"
    assert [referral["referral_id"] for referral in output["referrals"]] == ["R1"]
    assert output["referrals"][0]["stages"]["assessment"]["state"] == "met"


def test_replay_reads_standard_input(tmp_path: Path) -> None:
    path = write(tmp_path, EXAMPLE_LINES)
    from_file = run("replay", str(path), "--as-of", "2026-03-01T00:00:00Z")[1]
    from_stdin = run("replay", "-", "--as-of", "2026-03-01T00:00:00Z", input_=path.read_text())[1]
    assert from_stdin == from_file


def test_as_of_must_have_an_offset(tmp_path: Path) -> None:
    path = write(tmp_path, EXAMPLE_LINES)
    code, _, err = run("replay", str(path), "--as-of", "2026-03-01T00:00:00")
    assert code == 2
    assert "has no UTC offset" in err


def test_as_of_defaults_to_now(tmp_path: Path) -> None:
    path = write(tmp_path, EXAMPLE_LINES[:2])
    before = datetime.now().astimezone()
    output = orjson.loads(run("replay", str(path))[1])
    as_of = datetime.fromisoformat(output["as_of"])
    assert as_of.tzinfo is not None
    assert before <= as_of <= datetime.now().astimezone()
    assert output["referrals"][0]["status"] == "waiting_breached"


def test_events_after_as_of_are_ignored_by_replay(tmp_path: Path) -> None:
    path = write(tmp_path, EXAMPLE_LINES)
    before = orjson.loads(run("replay", str(path), "--as-of", "2026-03-05T09:00:00Z")[1])
    after = orjson.loads(run("replay", str(path), "--as-of", "2026-03-05T10:00:00Z")[1])
    assert before["referrals"][1]["stages"]["allocation"]["done_on"] is None
    assert after["referrals"][1]["stages"]["allocation"]["done_on"] == "2026-03-05"


def test_replay_table_shows_referrals_rejections_and_measures(tmp_path: Path) -> None:
    path = write(tmp_path, EXAMPLE_LINES)
    code, out, _ = run("replay", str(path), "--as-of", "2026-03-01T00:00:00Z", "--format", "table")
    assert code == 0
    assert "profile trailblazer-4ww" in out
    r1 = next(line for line in out.splitlines() if line.startswith("R1 "))
    assert "waiting_within_standard" in r1
    assert "breached (due 2026-02-27)" in r1
    assert "line 7: occurred_at has no UTC offset" in out
    assert "duplicates: 1" in out
    assert any(line.startswith("team T1") for line in out.splitlines())


def test_a_profile_file_changes_the_standard(tmp_path: Path) -> None:
    profile = tmp_path / "strict.toml"
    profile.write_text(
        'name = "strict"\n'
        '[[stages]]\nname = "assessment"\ncompleted_by = "assessment_completed"\ntarget_days = 0\n'
        '[[stages]]\nname = "intervention"\ncompleted_by = "intervention_started"\n'
        "target_days = 5\n"
    )
    path = write(tmp_path, EXAMPLE_LINES)
    output = orjson.loads(
        run("replay", str(path), "--as-of", "2026-03-01T00:00:00Z", "--profile", str(profile))[1]
    )
    assert output["profile"] == "strict"
    r1 = output["referrals"][1]
    assert list(r1["stages"]) == ["assessment", "intervention"]
    assert r1["status"] == "waiting_breached"


def test_a_bad_profile_is_a_clear_error(tmp_path: Path) -> None:
    profile = tmp_path / "bad.toml"
    profile.write_text('name = "bad"\nstages = []\n')
    code, _, err = run("replay", str(write(tmp_path, EXAMPLE_LINES)), "--profile", str(profile))
    assert code == 2
    assert "stages must be a non-empty array" in err


def test_a_missing_events_file_is_a_usage_error(tmp_path: Path) -> None:
    code, _, err = run("replay", str(tmp_path / "absent.jsonl"))
    assert code == 2
    assert "does not exist" in err


def test_large_files_go_through_the_progress_bar_only_for_a_terminal(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write(tmp_path, EXAMPLE_LINES)
    plain = run("replay", str(path), "--as-of", "2026-03-01T00:00:00Z")
    monkeypatch.setattr(replay_command, "PROGRESS_MIN_BYTES", 0)
    monkeypatch.setattr(replay_command, "stderr_is_terminal", lambda: True)
    observed = run("replay", str(path), "--as-of", "2026-03-01T00:00:00Z")
    assert observed[:2] == plain[:2]


def test_simulate_writes_the_same_stream_for_the_same_seed(tmp_path: Path) -> None:
    first, second = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    for out in (first, second):
        code, _, _ = run(
            "simulate",
            "--seed",
            "4",
            "--referrals",
            "50",
            "--start",
            "2026-01-05",
            "--out",
            str(out),
        )
        assert code == 0
    assert first.read_bytes() == second.read_bytes()
    result = replay(
        first.read_text().splitlines(), datetime(2026, 12, 1, tzinfo=UTC), TRAILBLAZER_4WW
    )
    assert min(state.received_on for state in result.referrals if state.received_on) == date(
        2026, 1, 5
    )


def test_simulate_to_standard_output_with_an_event_count() -> None:
    code, out, _ = run("simulate", "--events", "120", "--seed", "2")
    assert code == 0
    assert len(out.splitlines()) == 120


def test_simulate_refuses_both_sizes() -> None:
    code, _, err = run("simulate", "--events", "10", "--referrals", "10")
    assert code == 2
    assert "not both" in err


def test_simulated_streams_replay_cleanly(tmp_path: Path) -> None:
    out = tmp_path / "sim.jsonl"
    run("simulate", "--seed", "9", "--referrals", "300", "--out", str(out))
    code, replayed, _ = run("replay", str(out), "--as-of", "2026-06-01T00:00:00Z")
    output = orjson.loads(replayed)
    lines = out.read_text().splitlines()
    assert code == 0
    assert len(output["referrals"]) > 250
    assert len(output["rejected"]) < 0.02 * len(lines)
    assert all(0 < item["line"] <= len(lines) for item in output["rejected"])


def test_importing_the_command_line_loads_no_heavy_library() -> None:
    code = (
        "import sys, mhst_tracker.cli\n"
        "heavy = ('faust', 'sqlalchemy', 'alembic', 'aiokafka', 'streams')\n"
        "print(sorted(name for name in sys.modules if name.split('.')[0] in heavy))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, check=True)
    assert result.stdout.decode().strip() == "[]"


def test_help_lists_every_command_with_its_own_summary() -> None:
    context = click.Context(main)
    for name, (_path, summary) in COMMANDS.items():
        command = main.get_command(context, name)
        assert command is not None
        assert command.name == name
        assert " ".join((command.help or "").split("\n\n")[0].split()) == summary
    code, out, _ = run("--help")
    assert code == 0
    listed = [
        line.split()[0] for line in out.split("Commands:")[1].splitlines() if line[:3].strip()
    ]
    assert listed == sorted(COMMANDS)


def test_an_unknown_command_is_a_usage_error() -> None:
    code, _, err = run("no-such-command")
    assert code == 2
    assert "No such command 'no-such-command'" in err
