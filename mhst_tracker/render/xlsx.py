"""The monthly report as an Excel workbook (openpyxl): a sheet per table, a methods sheet.

Figures are numbers (percentages with a ``%`` number format), suppressed cells the text
``*``; the red/amber/green status is a filled cell; the share by team and the trend carry
native Excel charts, so the workbook needs nothing else to be read.
"""

from __future__ import annotations

import io
from typing import Final

from openpyxl import Workbook
from openpyxl.chart import BarChart, LineChart, Reference
from openpyxl.styles import Alignment, Font, PatternFill
from openpyxl.utils import get_column_letter
from openpyxl.worksheet.worksheet import Worksheet

from mhst_tracker.adapters.store.report import MonthlyReport
from mhst_tracker.rag import COLOURS
from mhst_tracker.render.sections import Section, display, sections

SHEET_NAMES: Final = {
    "teams": "By team",
    "schools": "By school",
    "trend": "Trend",
    "bands": "Wait bands",
    "breaches": "Breaches",
    "sources": "By source",
}
_BOLD: Final = Font(bold=True)
_HEADER_FILL: Final = PatternFill("solid", fgColor="E8EDEE")


def _write_section(sheet: Worksheet, section: Section, report: MonthlyReport) -> None:
    sheet.append([section.title])
    sheet["A1"].font = Font(bold=True, size=13)
    sheet.append([report.suppression.describe()])
    sheet.append([])
    sheet.append([section.label, *section.headers])
    header_row = sheet.max_row
    for cell in sheet[header_row]:
        cell.font = _BOLD
        cell.fill = _HEADER_FILL
        cell.alignment = Alignment(wrap_text=True, vertical="top")
    for name, cells in section.rows:
        values: list[object] = [name]
        for column, value in zip(section.columns, cells, strict=True):
            if column.endswith("_rag"):
                values.append(display(value, column))
            else:
                values.append(value)
        sheet.append(values)
        row = sheet.max_row
        for offset, (column, value) in enumerate(zip(section.columns, cells, strict=True)):
            cell = sheet.cell(row=row, column=offset + 2)
            if column.endswith("_pct") and isinstance(value, int | float):
                cell.value = value / 100
                cell.number_format = "0.0%"
            if column.endswith("_rag") and isinstance(value, str) and value in COLOURS:
                cell.fill = PatternFill("solid", fgColor=COLOURS[value].lstrip("#").upper())
            cell.alignment = Alignment(horizontal="right")
    sheet.column_dimensions["A"].width = 22
    for index in range(2, len(section.columns) + 2):
        sheet.column_dimensions[get_column_letter(index)].width = 16
    sheet.freeze_panes = sheet.cell(row=header_row + 1, column=2)
    if "seen_within_standard_pct" in section.columns and section.rows:
        _chart(sheet, section, header_row)


def _chart(sheet: Worksheet, section: Section, header_row: int) -> None:
    """The share column as a chart beside the table (bars; a line for the trend)."""
    column = section.columns.index("seen_within_standard_pct") + 2
    last = header_row + len(section.rows)
    chart: BarChart | LineChart = LineChart() if section.key == "trend" else BarChart()
    if isinstance(chart, BarChart):
        chart.type = "bar"
    chart.title = section.headers[column - 2]
    chart.y_axis.number_format = "0%"
    chart.y_axis.scaling.min = 0
    chart.y_axis.scaling.max = 1
    data = Reference(sheet, min_col=column, min_row=header_row, max_row=last)
    labels = Reference(sheet, min_col=1, min_row=header_row + 1, max_row=last)
    chart.add_data(data, titles_from_data=True)
    chart.set_categories(labels)
    chart.height = 7.5
    chart.width = 16
    sheet.add_chart(chart, f"{get_column_letter(len(section.columns) + 3)}{header_row}")


def report_xlsx(report: MonthlyReport) -> bytes:
    """The workbook's bytes."""
    workbook = Workbook()
    methods = workbook.active
    assert methods is not None
    methods.title = "Methods"
    methods.append([f"Four-week waiting-time standard: {report.period.title}"])
    methods["A1"].font = Font(bold=True, size=14)
    methods.append([f"Profile {report.profile.name}; as of {report.as_of.isoformat()}"])
    methods.append([])
    for line in report.methods():
        methods.append([line])
        methods.cell(row=methods.max_row, column=1).alignment = Alignment(wrap_text=True)
    methods.column_dimensions["A"].width = 120
    for section in sections(report):
        _write_section(workbook.create_sheet(SHEET_NAMES[section.key]), section, report)
    buffer = io.BytesIO()
    workbook.save(buffer)
    return buffer.getvalue()
