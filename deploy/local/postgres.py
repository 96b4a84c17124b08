"""A throwaway PostgreSQL cluster owned by the run: initdb in a temp dir, its own port.

As root the server runs as the ``postgres`` user, since PostgreSQL refuses to run as root.
The cluster trusts loopback connections and is deleted on ``stop()``.
"""

from __future__ import annotations

import asyncio
import glob
import os
import shutil
import signal
import subprocess
from pathlib import Path

from deploy.local.errors import ServiceError
from deploy.local.process import (
    LocalServer,
    ManagedProcess,
    free_port,
    make_run_dir,
    require_free_port,
    service_user,
)

SUPERUSER = "mhst"
DATABASE = "mhst"
_FAILURE_HINTS = {
    "Address already in use": "its port is already in use by another process",
    "could not create shared memory": "the machine refused shared memory",
}


def postgres_bindir() -> Path:
    """Where ``initdb`` and ``postgres`` live (Debian keeps them out of PATH)."""
    override = os.environ.get("MHST_PG_BINDIR")
    candidates = [override] if override else sorted(glob.glob("/usr/lib/postgresql/*/bin"))
    for candidate in reversed(candidates):
        if candidate and (Path(candidate) / "initdb").exists():
            return Path(candidate)
    raise ServiceError("PostgreSQL is not installed: run `make deps` (apt-get install postgresql)")


class PostgresServer(LocalServer):
    """One PostgreSQL server on 127.0.0.1 with a database ``mhst`` and superuser ``mhst``."""

    name = "PostgreSQL"
    ready_when = "SELECT 1"
    ready_timeout = 60.0
    failure_hints = _FAILURE_HINTS

    def __init__(self, port: int | None = None) -> None:
        self.port = port or free_port()
        self.user = service_user()
        self.run_dir: Path | None = None
        self.process: ManagedProcess | None = None

    @property
    def url(self) -> str:
        """SQLAlchemy URL for the asyncpg driver."""
        return f"postgresql+asyncpg://{SUPERUSER}@127.0.0.1:{self.port}/{DATABASE}"

    @property
    def dsn(self) -> str:
        """libpq/asyncpg DSN."""
        return f"postgresql://{SUPERUSER}@127.0.0.1:{self.port}/{DATABASE}"

    def start(self) -> None:
        """initdb a new cluster and start the server (returns before it is ready)."""
        require_free_port("PostgreSQL", self.port)
        bindir = postgres_bindir()
        self.run_dir = make_run_dir("postgres", owner=self.user)
        data = self.run_dir / "data"
        initdb = subprocess.run(
            [
                str(bindir / "initdb"),
                "-D",
                str(data),
                "-U",
                SUPERUSER,
                "--auth=trust",
                "-E",
                "UTF8",
                "--locale=C",
                "--no-sync",
            ],
            capture_output=True,
            text=True,
            check=False,
            user=self.user,
            cwd=self.run_dir,
        )
        if initdb.returncode != 0:
            raise ServiceError(f"initdb failed:\n{initdb.stdout}\n{initdb.stderr}")
        self.process = ManagedProcess(
            "PostgreSQL",
            [
                str(bindir / "postgres"),
                "-D",
                str(data),
                "-p",
                str(self.port),
                "-k",
                str(self.run_dir),
                "-c",
                "listen_addresses=127.0.0.1",
                # A throwaway cluster: durability is not needed, speed is.
                "-c",
                "fsync=off",
                "-c",
                "synchronous_commit=off",
                "-c",
                "full_page_writes=off",
                "-c",
                "max_connections=200",
            ],
            self.run_dir / "postgres.log",
            stop_signal=signal.SIGINT,  # "fast" shutdown
            user=self.user,
            cwd=self.run_dir,
        )
        self.process.start()

    def answers(self) -> bool:
        """Whether the database exists and a query succeeds."""
        return asyncio.run(_ensure_database(self.port))

    def kill(self) -> None:
        """SIGKILL the server, as a crash would; ``restart()`` brings it back."""
        if self.process is not None:
            self.process.kill()

    def pause(self) -> None:
        """Stop the server but keep its data, to simulate an outage."""
        if self.process is not None:
            self.process.stop()

    def restart(self) -> None:
        """Start the same cluster again after ``pause()`` or ``kill()``."""
        if self.process is None:
            raise ServiceError("PostgreSQL was never started")
        self.process.start()
        self.wait_ready()

    def stop(self) -> None:
        """Stop the server and delete the cluster."""
        if self.process is not None:
            self.process.stop()
        if self.run_dir is not None:
            shutil.rmtree(self.run_dir, ignore_errors=True)


async def _ensure_database(port: int) -> bool:
    import asyncpg

    try:
        conn = await asyncpg.connect(
            host="127.0.0.1", port=port, user=SUPERUSER, database="postgres", timeout=2
        )
    except (TimeoutError, OSError, asyncpg.PostgresError):
        return False
    try:
        if not await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", DATABASE):
            await conn.execute(f'CREATE DATABASE "{DATABASE}"')
        return bool(await conn.fetchval("SELECT 1"))
    finally:
        await conn.close()
