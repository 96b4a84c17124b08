"""``mhst-tracker report`` in every format on a store of simulated events: the same figures
under headers a person reads, the suppression named in each, the workbook read back with
openpyxl, and the HTML opened in headless Chromium."""

from __future__ import annotations

import csv
import io
import json
import re
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import openpyxl
import pytest
from click.testing import CliRunner

from mhst_tracker.cli import main
from mhst_tracker.render.chromium import rendered_dom, screenshot
from mhst_tracker.simulate import simulate
from tests.render.png import assert_not_blank

CLOCK = "simulated:2026-10-05T08:00:00+01:00@1"
NHS_RULE = "1-7 as *, nearest 5"


@dataclass(frozen=True)
class Reporting:
    """A migrated SQLite store holding simulated events, and how to run the command on it."""

    url: str

    def run(self, *args: str) -> tuple[int, str, str]:
        result = CliRunner().invoke(
            main, list(args), env={"MHST_DATABASE_URL": self.url, "MHST_CLOCK": CLOCK}
        )
        if result.exception and not isinstance(result.exception, SystemExit):
            raise result.exception
        return result.exit_code, result.stdout, result.stderr

    def written(self, folder: Path, fmt: str) -> Path:
        """The September report written as ``fmt`` to a file in ``folder``."""
        path = folder / f"report.{fmt}"
        code, _, stderr = self.run(
            "report", "--period", "2026-09", "--format", fmt, "--out", str(path)
        )
        assert code == 0, stderr
        return path


@pytest.fixture(scope="module")
def reporting(tmp_path_factory: pytest.TempPathFactory) -> Reporting:
    folder = tmp_path_factory.mktemp("report")
    events = folder / "events.jsonl"
    events.write_text("\n".join(simulate(2, date(2026, 5, 4), referrals=1500)) + "\n")
    reporting = Reporting(f"sqlite+aiosqlite:///{folder / 'store.db'}")
    for args in (["db", "upgrade"], ["import", str(events)]):
        code, _, stderr = reporting.run(*args)
        assert code == 0, stderr
    return reporting


def overall_json(reporting: Reporting, *args: str) -> dict[str, object]:
    code, stdout, stderr = reporting.run("report", "--period", "2026-09", "--format", "json", *args)
    assert code == 0, stderr
    document = json.loads(stdout)
    (overall,) = [row for row in document["rows"] if row["group"] == "overall"]
    return {"document": document, **overall}


def test_json_names_the_rule_and_carries_the_trend_and_sources(reporting: Reporting) -> None:
    figures = overall_json(reporting)
    document = figures["document"]
    assert isinstance(document, dict)
    assert document["suppression"]["label"] == NHS_RULE
    assert "NHS England" in document["suppression"]["description"]
    assert document["as_of"] == "2026-09-30T22:59:59.999999+00:00"
    assert {row["period"] for row in document["trend"]} == {
        f"{year}-{month:02d}" for year, month in [(2025, 10), (2025, 11), (2025, 12)]
    } | {f"2026-{month:02d}" for month in range(1, 10)}
    sources = {row["id"] for row in document["rows"] if row["group"] == "source"}
    assert {"school", "gp", "parent"} <= sources
    assert any("Period: September 2026" in line for line in document["methods"])
    plain = overall_json(reporting, "--no-suppression")
    assert plain["document"]["suppression"]["label"] == "none"  # type: ignore[index]
    assert plain["seen_within_standard_pct"] == figures["seen_within_standard_pct"]
    completed = plain["completed"]
    assert isinstance(completed, int)
    assert completed > 50
    assert figures["completed"] == 5 * round(completed / 5)
    custom = overall_json(reporting, "--small-counts", "3", "--round-to", "10")
    assert custom["document"]["suppression"]["label"] == "1-3 as *, nearest 10"  # type: ignore[index]
    assert custom["completed"] == 10 * round(completed / 10)


def test_csv_says_which_suppression_was_applied(reporting: Reporting) -> None:
    code, stdout, _ = reporting.run("report", "--period", "2026-09", "--format", "csv")
    assert code == 0
    rows = list(csv.DictReader(io.StringIO(stdout)))
    assert {row["suppression"] for row in rows} == {NHS_RULE}
    assert rows[0]["group"] == "overall"
    code, stdout, _ = reporting.run(
        "report", "--period", "2026-09", "--format", "csv", "--no-suppression"
    )
    assert {row["suppression"] for row in csv.DictReader(io.StringIO(stdout))} == {"none"}


def test_table_has_headers_a_person_reads(reporting: Reporting) -> None:
    code, stdout, _ = reporting.run("report", "--period", "2026-09")
    assert code == 0
    figures = overall_json(reporting)
    assert "Small-number suppression (NHS England's rule" in stdout
    assert "% seen within 4 weeks" in stdout
    assert "seen_within_standard" not in stdout
    (all_teams,) = [line for line in stdout.splitlines() if line.startswith("All teams ")][:1]
    assert f"{figures['seen_within_standard_pct']}%" in all_teams
    for title in ("by school", "last 12 months", "by days waited", "Breaches per stage"):
        assert title in stdout
    assert "By referral source" in stdout
    assert "Methods" in stdout


def test_xlsx_reads_back_with_the_same_figures(reporting: Reporting, tmp_path: Path) -> None:
    path = reporting.written(tmp_path, "xlsx")
    figures = overall_json(reporting)
    workbook = openpyxl.load_workbook(path)
    assert workbook.sheetnames == [
        "Methods",
        "By team",
        "By school",
        "Trend",
        "Wait bands",
        "Breaches",
        "By source",
    ]
    methods = [row[0] for row in workbook["Methods"].iter_rows(values_only=True) if row[0]]
    assert any("NHS England" in str(line) for line in methods)
    sheet = workbook["By team"]
    rows = [list(row) for row in sheet.iter_rows(values_only=True)]
    assert "NHS England" in str(rows[1][0])
    header = rows[3]
    assert header[:4] == [
        "Team",
        "Seen (intervention started)",
        "Seen within 4 weeks",
        "% seen within 4 weeks",
    ]
    all_teams = rows[4]
    assert all_teams[0] == "All teams"
    assert all_teams[1] == figures["completed"]
    pct = figures["seen_within_standard_pct"]
    assert isinstance(pct, float)
    assert all_teams[3] == pytest.approx(pct / 100)
    assert sheet.cell(row=5, column=4).number_format == "0.0%"
    assert all_teams[4] == str(figures["seen_within_standard_rag"]).capitalize()
    assert sheet._charts, "the share by team is charted"


def test_xlsx_needs_a_file(reporting: Reporting) -> None:
    code, _, stderr = reporting.run("report", "--period", "2026-09", "--format", "xlsx")
    assert code == 2
    assert "--format xlsx needs --out FILE" in stderr


def test_html_report_in_chromium_shows_the_headline(reporting: Reporting, tmp_path: Path) -> None:
    page = reporting.written(tmp_path, "html")
    html = page.read_text(encoding="utf-8")
    assert not re.search(r"""(src|href)=["']?(https?:|//)""", html), "the page fetches nothing"
    assert "@page { size: A4" in html
    assert html.count("<svg") >= 5
    figures = overall_json(reporting)
    dom = rendered_dom(page)
    headline = re.search(r'id="headline".*?class="value">([^<]+)<', dom, re.DOTALL)
    assert headline is not None
    assert headline.group(1) == f"{figures['seen_within_standard_pct']}%"
    assert "NHS England" in dom
    assert_not_blank(screenshot(page, tmp_path / "report.png", height=1000))
