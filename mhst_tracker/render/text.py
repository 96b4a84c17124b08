"""Plain-text tables for a terminal: the monthly report and the waiting list."""

from __future__ import annotations

from collections.abc import Sequence

from mhst_tracker.adapters.store.report import MonthlyReport
from mhst_tracker.render.sections import display, sections


def text_table(headers: Sequence[str], rows: Sequence[Sequence[str]], right: int = 1) -> str:
    """Columns padded to their widest cell; columns from index ``right`` on are right-aligned
    (figures), the ones before it left-aligned (names)."""
    table = [list(headers), *(list(row) for row in rows)]
    widths = [max(len(row[index]) for row in table) for index in range(len(headers))]
    lines = []
    for row in table:
        cells = [
            cell.rjust(width) if index >= right else cell.ljust(width)
            for index, (cell, width) in enumerate(zip(row, widths, strict=True))
        ]
        lines.append("  ".join(cells).rstrip())
    return "\n".join(lines)


def report_text(report: MonthlyReport) -> str:
    """The report's tables and methods note, for a terminal."""
    parts = [
        f"Four-week waiting-time standard: {report.period.title} (profile {report.profile.name})",
        report.suppression.describe(),
    ]
    for section in sections(report):
        rows = [
            [
                name,
                *(
                    display(cell, column)
                    for cell, column in zip(cells, section.columns, strict=True)
                ),
            ]
            for name, cells in section.rows
        ]
        body = text_table([section.label, *section.headers], rows) if rows else "(none)"
        parts.append(f"{section.title}\n{body}")
    parts.append("Methods\n" + "\n".join(f"- {line}" for line in report.methods()))
    return "\n\n".join(parts) + "\n"
