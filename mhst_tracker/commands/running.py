"""Process-wide policy the entry points choose: the event loop and the garbage collector.

Library code (the engine, the store, the tracker) never decides these; a command, the
worker's bootstrap or a benchmark does, through this module.

How the commands run their asynchronous work: one coroutine on a uvloop event loop.

uvloop (libuv under asyncio's API) runs the event loop, its sockets and its callbacks in
C. The store sink hands the loop thousands of Kafka fetches, PostgreSQL messages and task
switches a second: in three alternate runs of ``bench/bench_sink.py`` each way, its rate
was 0.529-0.537 of a COPY of the same rows under uvloop and 0.505-0.517 under asyncio's
own loop. The stream workers keep the loop Faust gives them.
"""

import asyncio
import gc
from collections.abc import Coroutine, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

import uvloop

_T = TypeVar("_T")


def run(main: Coroutine[Any, Any, _T]) -> _T:
    """Run ``main`` to completion on a new uvloop event loop, as ``asyncio.run`` does
    (the loop's async generators and default executor are shut down after it)."""
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(main)


@contextmanager
def cyclic_gc_paused() -> Iterator[None]:
    """Pause the cyclic garbage collector for a while (restored on the way out).

    For work that allocates many long-lived objects none of which is in a reference cycle
    (a replay, a burst of alerts): each full collection would walk them all again, about a
    third of a replay's time, or a fraction of a second in the middle of a midnight's
    alerts."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()
