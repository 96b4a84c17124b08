"""The ``mhst-tracker`` command line: a thin group whose commands are loaded when invoked.

Each command lives in its own module, named in :data:`COMMANDS` with its one-line help, so
``mhst-tracker --help`` lists them without importing any, and a command imports only what
it uses (the worker's Faust, the store's SQLAlchemy, the sink's Kafka client) when it runs.
The worker's command is Faust wiring and lives in ``streams``; this table is the only place
the package names it, as a module path loaded when that command runs.
"""

import importlib
import logging
from typing import Any, Final

import click

from mhst_tracker import logs
from mhst_tracker.config import ConfigError, log_format
from mhst_tracker.failures import UNAVAILABLE, USAGE, ServiceUnavailable

COMMANDS: Final = {
    "replay": (
        "mhst_tracker.commands.replay:replay_command",
        "Replay the events of FILE (JSONL; - for standard input) as of a moment.",
    ),
    "simulate": (
        "mhst_tracker.commands.simulate:simulate_command",
        "Write a realistic synthetic referral event stream (JSONL), the same for the same seed.",
    ),
    "worker": (
        "streams.command:worker_command",
        "Run a stream worker: per-referral clocks, deadline timers, breach alerts, dead letters.",
    ),
    "rebuild": (
        "mhst_tracker.commands.rebuild:rebuild_command",
        "Recompute the stopped workers' referral table from the whole events topic.",
    ),
    "topics": ("mhst_tracker.commands.topics:topics_command", "Manage the Kafka topics."),
    "db": (
        "mhst_tracker.commands.db:db_command",
        "Manage the store's schema (PostgreSQL or SQLite).",
    ),
    "sink": (
        "mhst_tracker.commands.sink:sink_command",
        "Write every event, alert and dead letter from Kafka into the store.",
    ),
    "import": (
        "mhst_tracker.commands.import_events:import_command",
        "Import the events of FILE (JSONL events or an MHSDS-style CSV extract).",
    ),
    "waiting-list": (
        "mhst_tracker.commands.waiting_list:waiting_list_command",
        "Print the open referrals of a team, a school or all teams, most urgent first.",
    ),
    "report": (
        "mhst_tracker.commands.report:report_command",
        "Write the monthly report of PERIOD per team, school and referral source.",
    ),
    "notify": (
        "mhst_tracker.commands.notify:notify_command",
        "Deliver breach alerts to the recipients of the routing file, each once.",
    ),
    "api": (
        "mhst_tracker.commands.api:api_command",
        "Serve the ingestion API: authenticated HTTP intake of referral events.",
    ),
    "tokens": (
        "mhst_tracker.commands.tokens:tokens_command",
        "Manage the ingestion API's tokens.",
    ),
    "dashboard-check": (
        "mhst_tracker.commands.dashboard_check:dashboard_check_command",
        "Print every dashboard panel with the value it shows now.",
    ),
}
"""Command name to ``module:attribute`` and the command's summary (the first paragraph of
its own help), which ``--help`` lists."""


class LazyGroup(click.Group):
    """A group that imports a command's module only when that command is invoked."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        entry = COMMANDS.get(cmd_name)
        if entry is None:
            return None
        module_name, attribute = entry[0].split(":")
        command = getattr(importlib.import_module(module_name), attribute)
        if not isinstance(command, click.Command):
            raise TypeError(f"{entry[0]} is not a click command")
        return command

    def invoke(self, ctx: click.Context) -> Any:
        """Run the command; a failure it words (:mod:`mhst_tracker.failures`) is one line
        on standard error and its exit code, its traceback only with ``--debug``."""
        try:
            return super().invoke(ctx)
        except (ConfigError, ServiceUnavailable) as error:
            if ctx.params.get("debug"):
                raise
            click.echo(f"Error: {error}", err=True)
            ctx.exit(USAGE if isinstance(error, ConfigError) else UNAVAILABLE)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        rows = [(name, COMMANDS[name][1]) for name in self.list_commands(ctx)]
        with formatter.section("Commands"):
            formatter.write_dl(rows)


@click.group(cls=LazyGroup)
@click.version_option(package_name="mhst-tracker")
@click.option("--debug", is_flag=True, help="Show the traceback of a failure.")
def main(debug: bool) -> None:
    """Track the four-week waiting-time standard of school Mental Health Support Teams.

    A failure is one line on standard error: exit code 2 for a usage or configuration
    error, 1 for a server that cannot be reached."""
    # A command reports its own outcome; the libraries' log lines (a client retrying a
    # server that is down, say) would only repeat it. A long-running command (the worker,
    # the sink) logs from its own --loglevel up.
    logs.configure(log_format(), logging.DEBUG if debug else logging.CRITICAL)
