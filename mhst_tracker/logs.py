"""One log format for every process, the same field names everywhere, repeated errors summarised.

Every process of the tracker (a stream worker under Faust, the store sink, the ingestion
API, the notifier, the command line) logs through :func:`configure`: JSON lines by default
(``MHST_LOG_FORMAT=json``), or plain text for a person at a terminal
(``MHST_LOG_FORMAT=text``). A JSON line has the fields ``time`` (RFC 3339, UTC,
milliseconds), ``level``, ``logger`` and ``message``, then any structured fields the call
passed (``extra={"source": ...}``), ``repeated`` when it stands for more, and ``error``
with the exception's type when it reports one; the text form shows the same fields in the
same order.

**Repeats are summarised.** A broker or database outage makes every client retry many
times a second, each retry a log line (about 2,200 a process in a 20-second Kafka outage).
:class:`Summary` lets the first warning or error of a kind (the same logger, level and
message template) through, counts the others for :data:`SUMMARY_SECONDS`, and reports them
on the next line of that kind as ``repeated``; what is still counted when the process
ends is reported then.

**Privacy.** The tracker's own log lines carry counts, topics, partitions, offsets,
reasons and error types, never a referral id or a value that came from outside. A
traceback is shown as its frames and the exception's type, never the exception's message
(a driver's message can quote a value); ``--debug`` on the command line shows failures in
full.
"""

from __future__ import annotations

import atexit
import logging
import logging.config
import threading
import time
import traceback
from datetime import UTC, datetime
from typing import Any, Final

import orjson

FORMATS: Final = ("json", "text")
SUMMARY_SECONDS: Final = 10.0
"""How long the repeats of a warning or error are counted before the next is let through."""
_STANDARD: Final = frozenset(
    {*vars(logging.LogRecord("", 0, "", 0, "", (), None)), "message", "asctime", "repeated"}
)
"""A log record's own attributes: any other is a structured field the caller passed."""


def fields(record: logging.LogRecord) -> dict[str, Any]:
    """A record as the fields of a line, in order."""
    line: dict[str, Any] = {
        "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
        "level": record.levelname.lower(),
        "logger": record.name,
        "message": record.getMessage(),
    }
    line.update((key, value) for key, value in vars(record).items() if key not in _STANDARD)
    repeated = getattr(record, "repeated", 0)
    if repeated:
        line["repeated"] = repeated
    if record.exc_info and record.exc_info[0] is not None:
        line["error"] = record.exc_info[0].__name__
        line["traceback"] = "".join(traceback.format_tb(record.exc_info[2])).rstrip()
    return line


class JsonFormatter(logging.Formatter):
    """One JSON object a line (:func:`fields`)."""

    def format(self, record: logging.LogRecord) -> str:
        return orjson.dumps(fields(record), default=str).decode()


class TextFormatter(logging.Formatter):
    """The same fields as plain text: time, level, logger, message, then ``key=value``."""

    def format(self, record: logging.LogRecord) -> str:
        line = fields(record)
        head = f"{line.pop('time')} {line.pop('level').upper():7} {line.pop('logger')}: "
        text = head + line.pop("message")
        trace = line.pop("traceback", None)
        if line:
            text += " " + " ".join(f"{key}={value}" for key, value in line.items())
        return text if trace is None else f"{text}\n{trace}"


class Summary(logging.Filter):
    """Lets the first warning or error of a kind through, and counts the rest for
    ``seconds``; the next of its kind after that carries the count (``repeated``)."""

    def __init__(self, seconds: float = SUMMARY_SECONDS) -> None:
        super().__init__()
        self.seconds = seconds
        self._lock = threading.Lock()
        self._kinds: dict[tuple[str, int, str], list[float | int]] = {}
        """A kind's first moment in the current interval and how many were held back."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < logging.WARNING:
            return True
        template = record.msg if isinstance(record.msg, str) else type(record.msg).__name__
        kind = (record.name, record.levelno, template)
        now = time.monotonic()
        with self._lock:
            counted = self._kinds.get(kind)
            if counted is not None and now - counted[0] < self.seconds:
                counted[1] += 1
                return False
            self._kinds[kind] = [now, 0]
        if counted is not None and counted[1]:
            record.repeated = int(counted[1])
        return True

    def held_back(self) -> list[tuple[tuple[str, int, str], int]]:
        """The kinds with repeats not reported yet, and how many (they are forgotten)."""
        with self._lock:
            held = [(kind, int(counted[1])) for kind, counted in self._kinds.items() if counted[1]]
            self._kinds.clear()
        return held


_summary = Summary()


def _report_held_back() -> None:
    """At exit: one line for each kind of warning or error whose repeats are still counted."""
    for (name, level, message), count in _summary.held_back():
        logging.getLogger(name).log(
            level, "%s (repeated %d times before the process ended)", message, count
        )


atexit.register(_report_held_back)


def config(fmt: str, level: str | int) -> dict[str, Any]:
    """The ``logging.config.dictConfig`` of the tracker's format and summary (also handed
    to Faust's worker, which sets up logging itself)."""
    if fmt not in FORMATS:
        raise ValueError(f"unknown log format {fmt!r}")
    formatter = JsonFormatter if fmt == "json" else TextFormatter
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"tracker": {"()": formatter}},
        "filters": {"summary": {"()": lambda: _summary}},
        "handlers": {
            "stderr": {
                "class": "logging.StreamHandler",
                "stream": "ext://sys.stderr",
                "formatter": "tracker",
                "filters": ["summary"],
            }
        },
        "root": {"level": level, "handlers": ["stderr"]},
    }


def configure(fmt: str, level: str | int) -> None:
    """Log in the tracker's format (``json`` or ``text``) from ``level`` up."""
    logging.config.dictConfig(config(fmt, level))
