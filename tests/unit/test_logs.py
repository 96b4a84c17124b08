"""The one log format: JSON lines (or text) with the same fields, and repeats summarised."""

import io
import logging
from collections.abc import Iterator

import orjson
import pytest

from mhst_tracker import logs


@pytest.fixture
def captured(request: pytest.FixtureRequest) -> Iterator[tuple[logging.Logger, io.StringIO]]:
    """A logger writing through the tracker's formatter and summary into a buffer."""
    fmt = getattr(request, "param", "json")
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logs.JsonFormatter() if fmt == "json" else logs.TextFormatter())
    handler.addFilter(logs.Summary(seconds=60))
    logger = logging.getLogger(f"test.logs.{id(stream)}")
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    logger.propagate = False
    yield logger, stream
    logger.removeHandler(handler)


def lines(stream: io.StringIO) -> list[dict[str, object]]:
    return [orjson.loads(line) for line in stream.getvalue().splitlines()]


def test_a_line_has_the_same_fields_in_the_same_order(
    captured: tuple[logging.Logger, io.StringIO],
) -> None:
    logger, stream = captured
    logger.info("sent %d alerts", 3, extra={"topic": "mhst.breach-alerts"})
    [line] = lines(stream)
    assert list(line) == ["time", "level", "logger", "message", "topic"]
    assert line["level"] == "info"
    assert line["message"] == "sent 3 alerts"
    assert str(line["time"]).endswith("+00:00")


def test_an_error_shows_its_type_and_frames_but_never_its_message(
    captured: tuple[logging.Logger, io.StringIO],
) -> None:
    logger, stream = captured
    planted = "".join(["943", "476", "5919"])  # not in the source lines a traceback shows
    try:
        raise ValueError(f"value {planted} is not allowed")
    except ValueError:
        logger.exception("could not write a batch")
    [line] = lines(stream)
    assert line["error"] == "ValueError"
    assert "test_logs.py" in str(line["traceback"])
    assert planted not in stream.getvalue()


def test_repeats_of_a_warning_are_counted_and_reported_on_the_next_of_its_kind(
    captured: tuple[logging.Logger, io.StringIO],
) -> None:
    logger, stream = captured
    summary = next(f for f in logger.handlers[0].filters if isinstance(f, logs.Summary))
    for attempt in range(500):
        logger.error("Unable connect to %s: refused", f"node-{attempt % 3}")
    logger.warning("another kind")
    assert [line["message"] for line in lines(stream)] == [
        "Unable connect to node-0: refused",
        "another kind",
    ]
    summary.seconds = 0.0  # the interval is over: the next one carries the count
    logger.error("Unable connect to %s: refused", "node-1")
    assert lines(stream)[-1]["repeated"] == 499


def test_information_is_never_held_back(captured: tuple[logging.Logger, io.StringIO]) -> None:
    logger, stream = captured
    for _ in range(5):
        logger.info("a partition assigned")
    assert len(lines(stream)) == 5


@pytest.mark.parametrize("captured", ["text"], indirect=True)
def test_the_text_form_shows_the_same_fields(captured: tuple[logging.Logger, io.StringIO]) -> None:
    logger, stream = captured
    logger.warning("lag is %d", 12, extra={"topic": "t"})
    text = stream.getvalue().strip()
    assert " WARNING " in text
    assert text.endswith("lag is 12 topic=t")


def test_the_configuration_names_only_the_two_formats() -> None:
    assert logs.config("text", "INFO")["root"] == {"level": "INFO", "handlers": ["stderr"]}
    with pytest.raises(ValueError, match="unknown log format"):
        logs.config("xml", "INFO")
