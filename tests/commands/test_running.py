"""The commands' runner: a coroutine on a uvloop loop, its result or its error returned."""

import asyncio

import pytest
import uvloop

from mhst_tracker.commands import running


async def _loop_type() -> type[asyncio.AbstractEventLoop]:
    await asyncio.sleep(0)
    return type(asyncio.get_running_loop())


async def _fails() -> None:
    await asyncio.sleep(0)
    raise LookupError("no such referral")


def test_the_coroutine_runs_on_uvloop_and_its_result_is_returned() -> None:
    assert running.run(_loop_type()) is uvloop.Loop


def test_an_error_in_the_coroutine_is_raised_to_the_caller() -> None:
    with pytest.raises(LookupError, match="no such referral"):
        running.run(_fails())


def test_each_run_has_a_loop_of_its_own_and_closes_it() -> None:
    loops: list[asyncio.AbstractEventLoop] = []

    async def keep() -> None:
        loops.append(asyncio.get_running_loop())

    running.run(keep())
    running.run(keep())
    assert loops[0] is not loops[1]
    assert all(loop.is_closed() for loop in loops)
