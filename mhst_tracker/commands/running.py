"""How the commands run their asynchronous work: one coroutine on a uvloop event loop.

uvloop (libuv under asyncio's API) runs the event loop, its sockets and its callbacks in
C. The store sink hands the loop thousands of Kafka fetches, PostgreSQL messages and task
switches a second: in three alternate runs of ``bench/bench_sink.py`` each way, its rate
was 0.529-0.537 of a COPY of the same rows under uvloop and 0.505-0.517 under asyncio's
own loop. The stream workers keep the loop Faust gives them.
"""

import asyncio
from collections.abc import Coroutine
from typing import Any, TypeVar

import uvloop

_T = TypeVar("_T")


def run(main: Coroutine[Any, Any, _T]) -> _T:
    """Run ``main`` to completion on a new uvloop event loop, as ``asyncio.run`` does
    (the loop's async generators and default executor are shut down after it)."""
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(main)
