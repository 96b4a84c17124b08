"""The ``mhst-tracker`` command line: a thin group; each command lives in its own module."""

import click

from mhst_tracker.commands.replay import replay_command
from mhst_tracker.commands.simulate import simulate_command


@click.group()
@click.version_option(package_name="mhst-tracker")
def main() -> None:
    """Track the four-week waiting-time standard of school Mental Health Support Teams."""


main.add_command(replay_command)
main.add_command(simulate_command)
