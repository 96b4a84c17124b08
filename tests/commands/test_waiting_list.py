"""``mhst-tracker waiting-list``: one team, every team or a school, with the days until each
referral's next breach and the as-of moment in local time; unknown names are one-line errors."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from mhst_tracker.cli import main
from tests.adapters.store.conftest import jsonl
from tests.adapters.store.test_repository import T1_EVENTS

AS_OF = "2026-09-30"


@pytest.fixture(scope="module")
def store_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    folder = tmp_path_factory.mktemp("waiting")
    url = f"sqlite+aiosqlite:///{folder / 'store.db'}"
    events = folder / "events.jsonl"
    events.write_bytes(jsonl(T1_EVENTS))
    for args in (["db", "upgrade"], ["import", str(events)]):
        assert run(url, *args).exit_code == 0
    return url


def run(url: str, *args: str) -> Result:
    return CliRunner().invoke(main, list(args), env={"MHST_DATABASE_URL": url})


def listed(url: str, *args: str) -> list[dict[str, object]]:
    result = run(url, "waiting-list", "--as-of", AS_OF, "--format", "json", *args)
    assert result.exit_code == 0, result.output
    referrals: list[dict[str, object]] = json.loads(result.stdout)["referrals"]
    return referrals


def test_all_teams_most_urgent_first_with_days_until_the_next_breach(store_url: str) -> None:
    referrals = listed(store_url, "--all-teams")
    assert [
        (row["referral_id"], row["team_id"], row["days_until_next_breach"]) for row in referrals
    ] == [
        # R2: allocation and intervention both breached: no breach left to come.
        ("R2", "T1", None),
        # R6: assessment and allocation breached; intervention due 13 October.
        ("R6", "T2", 14),
        # R3 (at risk): intervention due 6 October breaches at midnight after it.
        ("R3", "T1", 7),
        # R4: allocation due 5 October.
        ("R4", "T1", 6),
    ]


def test_one_team_and_one_school(store_url: str) -> None:
    assert [row["referral_id"] for row in listed(store_url, "--team", "T1")] == ["R2", "R3", "R4"]
    assert [row["referral_id"] for row in listed(store_url, "--school", "S9")] == ["R6"]
    assert listed(store_url, "--team", "T1", "--school", "S9") == []


def test_the_as_of_is_local(store_url: str) -> None:
    result = run(store_url, "waiting-list", "--team", "T2", "--as-of", AS_OF)
    assert result.exit_code == 0
    lines = result.stdout.splitlines()
    assert lines[0] == (
        "Waiting list of team T2 as of Wed 30 September 2026 23:59 BST: 1 referrals"
    )
    assert "Days until next breach" in lines[1]
    document = json.loads(
        run(store_url, "waiting-list", "--team", "T2", "--as-of", AS_OF, "--format", "json").stdout
    )
    assert document["as_of"] == "2026-09-30T23:59:59.999999+01:00"
    assert document["time_zone"] == "Europe/London"


def test_csv_has_the_team_and_the_days_until_the_next_breach(store_url: str) -> None:
    result = run(store_url, "waiting-list", "--all-teams", "--as-of", AS_OF, "--format", "csv")
    rows = list(csv.DictReader(io.StringIO(result.stdout)))
    assert [(row["referral_id"], row["team_id"], row["days_until_next_breach"]) for row in rows][
        :2
    ] == [("R2", "T1", ""), ("R6", "T2", "14")]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--team", "NOSUCH"], "Error: unknown team 'NOSUCH'; known teams: T1, T2\n"),
        (["--school", "S0"], "Error: unknown school 'S0'; known schools: S9\n"),
    ],
)
def test_an_unknown_team_or_school_is_one_line_naming_the_known_ones(
    store_url: str, args: list[str], message: str
) -> None:
    result = run(store_url, "waiting-list", *args)
    assert result.exit_code == 2
    assert result.stderr == message


def test_a_list_must_say_whose(store_url: str, tmp_path: Path) -> None:
    result = run(store_url, "waiting-list")
    assert result.exit_code == 2
    assert "give --team T, --all-teams or --school URN" in result.stderr
