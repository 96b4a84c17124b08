"""The monthly report as sections of a document: what the HTML, the xlsx and the text table
each lay out in their own way, so the three carry the same figures under the same headers."""

from __future__ import annotations

from dataclasses import dataclass

from mhst_tracker.adapters.store.report import (
    EN_DASH,
    SHARE_COLUMNS,
    SUPPRESSED,
    Cell,
    MonthlyReport,
    headers,
    standard_wording,
)
from mhst_tracker.domain.measures import WAIT_BANDS

SOURCE_NAMES = {
    "school": "School",
    "gp": "GP",
    "parent": "Parent or carer",
    "self": "Self-referral",
    "social_care": "Social care",
    "other": "Other",
}
"""The contract's referral sources as a person reads them."""
NO_VALUE = EN_DASH
"""What a cell with no figure (no pathway seen, so no share) shows."""


@dataclass(frozen=True, slots=True)
class Section:
    """A titled table: a first column naming each row, then figures by machine column."""

    key: str
    title: str
    label: str
    """Header of the first column (Team, School, ...)."""
    columns: tuple[str, ...]
    headers: tuple[str, ...]
    rows: tuple[tuple[str, tuple[Cell, ...]], ...]


def display(value: Cell, column: str) -> str:
    """A cell as a person reads it."""
    if value is None:
        return NO_VALUE
    if value == SUPPRESSED:
        return SUPPRESSED
    if column.endswith("_pct"):
        return f"{value:.1f}%"
    if column.endswith("_rag"):
        return str(value).capitalize()
    return str(value)


def sections(report: MonthlyReport) -> list[Section]:
    """The report's tables, in reading order."""
    profile = report.profile
    names = headers(profile)
    share = SHARE_COLUMNS
    bands = ("waiting", "waiting_past_standard", *(f"waiting_{band}" for band, _ in WAIT_BANDS))
    breaches = ("received", *(f"breaches_{stage.name}" for stage in profile.stages))
    by_source = (
        "received",
        "completed",
        "seen_within_standard",
        "seen_within_standard_pct",
        "seen_within_standard_rag",
        "waiting",
    )
    trend = (
        "completed",
        "seen_within_standard",
        "seen_within_standard_pct",
        "seen_within_standard_rag",
    )
    standard = standard_wording(profile)
    month = report.period.title
    teams = [("All teams", row) for row in report.rows_of("overall")] + [
        (str(row["id"]), row) for row in report.rows_of("team")
    ]
    schools = [(str(row["id"]), row) for row in report.rows_of("school")]
    sources = [
        (SOURCE_NAMES.get(str(row["id"]), str(row["id"])), row) for row in report.rows_of("source")
    ]
    months = [(str(row["period"]), row) for row in report.trend if row["group"] == "overall"]

    def section(
        key: str,
        title: str,
        label: str,
        columns: tuple[str, ...],
        rows: list[tuple[str, dict[str, Cell]]],
    ) -> Section:
        return Section(
            key,
            title,
            label,
            columns,
            tuple(names[column] for column in columns),
            tuple((name, tuple(row.get(column) for column in columns)) for name, row in rows),
        )

    return [
        section("teams", f"Seen within {standard} in {month}, by team", "Team", share, teams),
        section(
            "schools",
            f"Seen within {standard} in {month}, by school",
            "School (URN)",
            share,
            schools,
        ),
        section(
            "trend", f"Seen within {standard}, last {len(months)} months", "Month", trend, months
        ),
        section("bands", f"Waiting at the end of {month}, by days waited", "Team", bands, teams),
        section(
            "breaches", f"Breaches per stage, referrals active in {month}", "Team", breaches, teams
        ),
        section("sources", f"By referral source, {month}", "Referral source", by_source, sources),
    ]
