"""``mhst-tracker api``: the ingestion API, served by uvicorn until SIGTERM or Ctrl-C.

It listens on ``MHST_API_HOST``:``MHST_API_PORT`` and serves its metrics on
``MHST_API_METRICS_PORT``; the tokens it accepts are made with ``mhst-tracker tokens
create``. It logs in the tracker's format (:mod:`mhst_tracker.logs`), one line per request
with the source's name (never a token, a body or a value from one). See docs/api.md.

The process-wide policy is set here: once the application is built, everything that exists
is frozen out of the cyclic garbage collector (``gc.freeze``). The libraries the API loads
leave about 117,000 tracked objects; a full collection over them took 30 ms on the
development machine, a stall every request in flight waits for (the single-event p99 target
is 25 ms), and none of them is ever garbage.
"""

import gc
import socket

import click
import uvicorn

from mhst_tracker import bootstrap, logs
from mhst_tracker.api.app import create_app
from mhst_tracker.commands import running
from mhst_tracker.commands.options import loglevel_option
from mhst_tracker.config import ConfigError, Settings


@click.command("api")
@loglevel_option
def api_command(loglevel: str) -> None:
    """Serve the ingestion API: authenticated HTTP intake of referral events."""
    settings = Settings.from_env()
    logs.configure(settings.log_format, loglevel.upper())
    listening = _bound(settings.api_host, settings.api_port)
    running.run(_serve(settings, listening))


def _bound(host: str, port: int) -> socket.socket:
    """The API's listening socket, bound before anything starts: a port another process has
    is a ``ConfigError`` naming ``MHST_API_PORT``, not uvicorn's exit."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    listening = socket.socket(family, socket.SOCK_STREAM)
    listening.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        listening.bind((host, port))
    except OSError as error:
        listening.close()
        raise ConfigError(
            f"cannot serve the API on {host}:{port} (MHST_API_HOST, MHST_API_PORT): "
            f"{error.strerror}; choose another address or port"
        ) from None
    return listening


async def _serve(settings: Settings, listening: socket.socket) -> None:
    parts = await bootstrap.api(settings)
    try:
        bootstrap.serve_metrics(
            parts.registry, settings.api_metrics_port, setting="MHST_API_METRICS_PORT"
        )
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
        await uvicorn.Server(config).serve(sockets=[listening])
    finally:
        await parts.store.close()
