"""``mhst-tracker replay``: the engine over a JSONL file, printed as JSON or as tables.

Bad lines are reported in the output and never change the exit status. A progress bar goes
to standard error only when it is a terminal and the input is a file of at least
:data:`PROGRESS_MIN_BYTES`.
"""

import gc
import os
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

import click

from mhst_tracker.commands.options import chosen_profile, profile_option
from mhst_tracker.commands.progress import stderr_is_terminal, with_progress
from mhst_tracker.commands.running import cyclic_gc_paused
from mhst_tracker.config import Settings
from mhst_tracker.domain.events import parse_timestamp
from mhst_tracker.domain.measures import WAIT_BANDS, GroupMeasures
from mhst_tracker.replay import ReplayResult, replay

PROGRESS_MIN_BYTES = 16 * 1024 * 1024
_PROGRESS_EVERY_LINES = 20_000


class Timestamp(click.ParamType):
    """An RFC 3339 date-time with ``Z`` or a ``±hh:mm`` offset."""

    name = "timestamp"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if isinstance(value, datetime):
            return value
        try:
            return parse_timestamp(str(value), repr(value), ValueError)
        except ValueError as error:
            self.fail(str(error), param, ctx)


@click.command("replay")
@click.argument(
    "events_file",
    metavar="FILE",
    type=click.Path(exists=True, dir_okay=False, allow_dash=True, path_type=str),
)
@click.option(
    "--as-of",
    type=Timestamp(),
    default=None,
    help="Evaluate as of this moment (RFC 3339 with offset). Default: now.",
)
@click.option(
    "--format",
    "output_format",
    type=click.Choice(["json", "table"]),
    default="json",
    show_default=True,
)
@profile_option(
    "Profile TOML file. Default: MHST_PROFILE if set, else the built-in trailblazer-4ww."
)
def replay_command(
    events_file: str, as_of: datetime | None, output_format: str, profile_path: Path | None
) -> None:
    """Replay the events of FILE (JSONL; - for standard input) as of a moment.

    Prints every referral's state, the rejected lines, the duplicates and the measures.
    The profile and the largest event accepted are the workers' (MHST_PROFILE,
    MHST_MAX_EVENT_BYTES), so a replay of a topic's history gives the states they hold;
    --profile replaces MHST_PROFILE."""
    settings = Settings.from_env()
    profile = chosen_profile(profile_path, settings.profile)
    moment = datetime.now(UTC) if as_of is None else as_of
    # One pause of the cyclic collector over the whole command: re-enabled between
    # phases, its next young collection would walk every object the replay has built so
    # far (about 0.7 s per walk on a million events).
    with cyclic_gc_paused():
        if events_file == "-":
            result = replay(
                click.get_binary_stream("stdin"), moment, profile, settings.max_event_bytes
            )
        else:
            with open(events_file, "rb") as file:
                result = replay(
                    _with_progress(file, events_file),
                    moment,
                    profile,
                    settings.max_event_bytes,
                )
        if output_format == "json":
            output = result.to_json() + b"\n"
        else:
            output = render_tables(result).encode()
        # The command ends once the output is written, and reference counting frees the
        # replay's objects (none is in a cycle). Freezing them keeps the collector from
        # walking them all once more when it is re-enabled and at interpreter exit.
        gc.freeze()
    stdout = click.get_binary_stream("stdout")
    stdout.write(output)
    stdout.flush()


def _with_progress(lines: IO[bytes], path: str) -> Iterable[bytes]:
    size = os.path.getsize(path)
    if size < PROGRESS_MIN_BYTES or not stderr_is_terminal():
        return lines
    return with_progress(
        lines, size, "replaying", lambda _line: lines.tell(), every=_PROGRESS_EVERY_LINES
    )


def render_tables(result: ReplayResult) -> str:
    """The replay result for a person: referrals, rejected lines, then the measures."""
    stage_names = [stage.name for stage in result.profile.stages]
    referral_rows = [
        ["referral", "team", "school", "status", "received", "days", "dna", "flags", *stage_names]
    ]
    for state in result.referrals:
        stage_cells = []
        for name in stage_names:
            stage = state.stages[name]
            if stage is None:
                stage_cells.append("-")
            elif stage.done_on is not None:
                stage_cells.append(f"{stage.state} {stage.done_on}")
            else:
                stage_cells.append(f"{stage.state} (due {stage.due_on})")
        referral_rows.append(
            [
                state.referral_id,
                state.team_id or "-",
                state.school_id or "-",
                state.status,
                "-" if state.received_on is None else str(state.received_on),
                "-" if state.days_waited is None else str(state.days_waited),
                str(state.dna_count),
                ",".join(state.flags) or "-",
                *stage_cells,
            ]
        )
    summary = result.summary
    groups = [("overall", summary.overall)]
    groups += [(f"team {team}", summary.by_team[team]) for team in sorted(summary.by_team)]
    groups += [
        (f"school {school}", summary.by_school[school]) for school in sorted(summary.by_school)
    ]
    measure_rows = [
        [
            "group",
            "referrals",
            "waiting",
            *(f"w {band}" for band, _ in WAIT_BANDS),
            "past std",
            "at risk",
            "completed",
            "within std",
            "share",
            "median",
            "p90",
            "closed",
            *(f"{name} breaches" for name in stage_names),
        ]
    ]
    measure_rows += [_measure_row(label, group, stage_names) for label, group in groups]
    parts = [
        f"as of {result.as_of.isoformat()}   profile {result.profile.name}",
        "",
        _table(referral_rows),
        "",
        f"rejected lines: {len(result.rejected)}",
        *(f"  line {item.line}: {item.reason}" for item in result.rejected),
        f"duplicates: {result.duplicates}",
        f"no receipt: {summary.no_receipt}",
        "",
        _table(measure_rows),
    ]
    return "\n".join(parts) + "\n"


def _measure_row(label: str, group: GroupMeasures, stage_names: list[str]) -> list[str]:
    share = group.seen_within_standard_share
    return [
        label,
        str(group.referrals),
        str(group.waiting),
        *(str(group.waiting_by_band[band]) for band, _ in WAIT_BANDS),
        str(group.waiting_past_standard),
        str(group.at_risk),
        str(group.completed),
        str(group.seen_within_standard),
        "-" if share is None else f"{share:.1%}",
        _optional(group.median_days_waited),
        _optional(group.p90_days_waited),
        str(group.closed_before_intervention),
        *(str(group.breaches[name]) for name in stage_names),
    ]


def _optional(value: int | None) -> str:
    return "-" if value is None else str(value)


def _table(rows: list[list[str]]) -> str:
    widths = [max(len(row[column]) for row in rows) for column in range(len(rows[0]))]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in rows
    )
