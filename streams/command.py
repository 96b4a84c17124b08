"""``mhst-tracker worker``: run one stream worker until SIGTERM or Ctrl-C.

It builds the worker's parts (:func:`mhst_tracker.bootstrap.worker`: any missing topic
created, the broker's message limits read), then runs the Faust app of
:func:`streams.app.create_app` with the ``MHST_*`` settings. Start more of them (each with
its own ``MHST_WORKER_DATA_DIR``) to share the partitions. The plain Faust form,
``faust -A streams.app:app worker -l info``, runs the same app but does not create the topics.
The command line loads this module only when the command runs (``mhst_tracker.cli``).
"""

import click

from mhst_tracker.commands.options import loglevel_option
from mhst_tracker.config import Settings


@click.command("worker")
@click.option(
    "--partitions",
    type=click.IntRange(min=1),
    help="Partitions of the events topic (default MHST_PARTITIONS).",
)
@loglevel_option
def worker_command(partitions: int | None, loglevel: str) -> None:
    """Run a stream worker: per-referral clocks, deadline timers, breach alerts, dead letters."""
    import faust

    from mhst_tracker import bootstrap, logs
    from streams.app import create_app

    settings = Settings.from_env().with_partitions(partitions)
    logs.configure(settings.log_format, loglevel.upper())
    app = create_app(bootstrap.worker(settings))
    faust.Worker(
        app,
        loglevel=loglevel,
        logging_config=logs.config(settings.log_format, loglevel.upper()),
        quiet=True,  # no banner on standard output: every line the worker writes is a log line
    ).execute_from_commandline()
