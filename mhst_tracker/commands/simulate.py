"""``mhst-tracker simulate``: write a synthetic event stream as JSONL."""

from datetime import datetime
from typing import TextIO

import click

from mhst_tracker.simulate import simulate

DEFAULT_REFERRALS = 1000


@click.command("simulate")
@click.option("--seed", type=int, default=1, show_default=True, help="Random seed.")
@click.option(
    "--referrals",
    type=click.IntRange(min=0),
    help=f"How many referrals arrive (default {DEFAULT_REFERRALS} unless --events is given).",
)
@click.option("--events", type=click.IntRange(min=0), help="How many lines to write instead.")
@click.option(
    "--start",
    type=click.DateTime(formats=["%Y-%m-%d"]),
    default="2025-09-01",
    show_default=True,
    help="Date of the first arrivals.",
)
@click.option(
    "--out",
    type=click.File("w", encoding="utf-8"),
    default="-",
    show_default=True,
    help="Output file; - for standard output.",
)
def simulate_command(
    seed: int, referrals: int | None, events: int | None, start: datetime, out: TextIO
) -> None:
    """Write a realistic synthetic referral event stream (JSONL), the same for the same seed.

    Several teams and schools, arrivals by weekday and term time, realistic delays and
    breaches, DNAs, closures, late uploads, duplicates and a few bad lines.
    """
    if referrals is not None and events is not None:
        raise click.UsageError("give --referrals or --events, not both")
    if referrals is None and events is None:
        referrals = DEFAULT_REFERRALS
    for line in simulate(seed, start.date(), referrals=referrals, events=events):
        out.write(line)
        out.write("\n")
