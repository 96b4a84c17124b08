"""The failures a command reports in one line, and how each maps to an exit code.

A command that meets a setting it cannot use raises
:class:`~mhst_tracker.config.ConfigError` (exit code 2, as for a usage error); one that
cannot reach a server it needs (the database, Kafka, Prometheus) raises
:class:`ServiceUnavailable` (exit code 1). Each carries one sentence naming the setting or
the server and what to do; the adapters word it where the failure is understood (the
database's connection, the Kafka client's bootstrap, the metrics port), and the command
line (:mod:`mhst_tracker.cli`) prints it without a traceback.
"""

from typing import Final

USAGE: Final = 2
"""The exit code of a usage or configuration error (click's own for a usage error)."""
UNAVAILABLE: Final = 1
"""The exit code of a server that cannot be reached."""


class ServiceUnavailable(Exception):
    """A server the command needs cannot be reached; the message says which and why."""
