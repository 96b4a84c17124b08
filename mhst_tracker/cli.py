"""The ``mhst-tracker`` command line: a thin group; each command lives in its own module."""

import click

from mhst_tracker.commands.dashboard_check import dashboard_check_command
from mhst_tracker.commands.db import db_command
from mhst_tracker.commands.import_events import import_command
from mhst_tracker.commands.replay import replay_command
from mhst_tracker.commands.report import report_command
from mhst_tracker.commands.simulate import simulate_command
from mhst_tracker.commands.sink import sink_command
from mhst_tracker.commands.waiting_list import waiting_list_command
from mhst_tracker.commands.worker import topics_command, worker_command


@click.group()
@click.version_option(package_name="mhst-tracker")
def main() -> None:
    """Track the four-week waiting-time standard of school Mental Health Support Teams."""


main.add_command(replay_command)
main.add_command(simulate_command)
main.add_command(worker_command)
main.add_command(topics_command)
main.add_command(db_command)
main.add_command(sink_command)
main.add_command(import_command)
main.add_command(waiting_list_command)
main.add_command(report_command)
main.add_command(dashboard_check_command)
