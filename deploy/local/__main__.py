"""Command line for the local stack: ``python -m deploy.local up|fetch|check``."""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from types import FrameType

from deploy.local.errors import ServiceError
from deploy.local.kafka import KAFKA_VERSION, kafka_lib_dir
from deploy.local.postgres import postgres_bindir
from deploy.local.prometheus import prometheus_binary
from deploy.local.stack import STACK_ENV, env_port, running_stack, write_env_file


def _up() -> None:
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    with running_stack(
        env_port("MHST_KAFKA_PORT"),
        env_port("MHST_POSTGRES_PORT"),
        env_port("MHST_PROMETHEUS_PORT"),
    ) as addresses:
        write_env_file(addresses)
        print("local stack is up:")
        for key, value in addresses.as_env().items():
            print(f"  {key}={value}")
        print(f"addresses written to {STACK_ENV}; Ctrl-C stops everything", flush=True)
        stop.wait()
        STACK_ENV.unlink(missing_ok=True)
    print("local stack stopped")


def _check() -> None:
    print(f"kafka {KAFKA_VERSION} jars: {kafka_lib_dir()}")
    print(f"postgresql: {postgres_bindir()}")
    print(f"prometheus: {prometheus_binary()}")


def main(argv: list[str] | None = None) -> int:
    """Entry point."""
    parser = argparse.ArgumentParser(prog="python -m deploy.local", description=__doc__)
    parser.add_argument(
        "command",
        choices=["up", "fetch", "check"],
        help="up: run Kafka, PostgreSQL and Prometheus until Ctrl-C; "
        "fetch: download the Kafka jars; check: show what is installed",
    )
    args = parser.parse_args(argv)
    try:
        if args.command == "up":
            _up()
        elif args.command == "fetch":
            print(kafka_lib_dir())
        else:
            _check()
    except ServiceError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
