"""``mhst-tracker api``: the ingestion API, served by uvicorn until SIGTERM or Ctrl-C.

It listens on ``MHST_API_HOST``:``MHST_API_PORT`` and serves its metrics on
``MHST_API_METRICS_PORT``; the tokens it accepts are made with ``mhst-tracker tokens
create``. Its log lines are JSON, one per request with the source's name (never a token,
a body or a value from one). See docs/api.md.

The process-wide policy is set here: once the application is built, everything that exists
is frozen out of the cyclic garbage collector (``gc.freeze``). The libraries the API loads
leave about 117,000 tracked objects; a full collection over them took 30 ms on the
development machine, a stall every request in flight waits for (the single-event p99 target
is 25 ms), and none of them is ever garbage.
"""

import gc
import logging
from datetime import UTC, datetime
from typing import Final

import click
import orjson
import uvicorn

from mhst_tracker import bootstrap
from mhst_tracker.adapters.store.database import StoreNotMigrated
from mhst_tracker.api.app import create_app
from mhst_tracker.commands import running
from mhst_tracker.config import ConfigError, Settings

LOG_FIELDS: Final = ("source", "status", "seconds", "accepted", "rejected")
"""The extra fields a log line may carry: names and counts, never a value from a request."""


class JsonLines(logging.Formatter):
    """One JSON object per log line: time, level, logger, message and :data:`LOG_FIELDS`."""

    def format(self, record: logging.LogRecord) -> str:
        line = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for name in LOG_FIELDS:
            if name in record.__dict__:
                line[name] = record.__dict__[name]
        if record.exc_info:
            line["error"] = record.exc_info[0].__name__ if record.exc_info[0] else "unknown"
        return orjson.dumps(line).decode()


@click.command("api")
@click.option(
    "--loglevel",
    type=click.Choice(["debug", "info", "warning", "error"]),
    default="info",
    show_default=True,
)
def api_command(loglevel: str) -> None:
    """Serve the ingestion API: authenticated HTTP intake of referral events."""
    handler = logging.StreamHandler()
    handler.setFormatter(JsonLines())
    logging.basicConfig(level=loglevel.upper(), handlers=[handler], force=True)
    try:
        settings = Settings.from_env()
        running.run(_serve(settings))
    except (ConfigError, StoreNotMigrated) as error:
        raise click.ClickException(str(error)) from None


async def _serve(settings: Settings) -> None:
    parts = await bootstrap.api(settings)
    try:
        bootstrap.serve_metrics(parts.registry, settings.api_metrics_port)
        app = create_app(parts.service)
        app.openapi()  # built once, before the freeze
        gc.collect()
        gc.freeze()
        config = uvicorn.Config(
            app,
            host=settings.api_host,
            port=settings.api_port,
            log_config=None,
            access_log=False,
            server_header=False,
            lifespan="on",
        )
        await uvicorn.Server(config).serve()
    finally:
        await parts.store.close()
