"""Take-over and restart benchmark: how long a worker's partitions go untimed.

Run from the repository root::

    .venv/bin/python -m bench.bench_takeover --open 1000000

It starts its own Kafka broker (12 partitions) and, for each standby setting given
(``--standbys 1,0``: Faust's ``table_standby_replicas``, ``MHST_STANDBY_REPLICAS``):

* writes ``--open`` waiting referrals straight to the table's changelog (as
  :mod:`bench.bench_worker` does) and starts two workers on empty data directories, timed
  to "Worker ready" and to both having indexed their deadlines (the restore from the
  changelog; each restores its own partitions and, with standbys, the other's);
* **take-over**: SIGKILLs one worker and times, from the kill, until the other has indexed
  the deadlines of the partitions it gained (it then times them again), with how many
  referrals it indexed. The group notices the kill when the worker's session times out
  (``broker_session_timeout``, 10 s);
* **restart on the same data directory**: starts the killed worker again on its data
  directory and times it to "Worker ready" and to indexing the partitions it gets back.

Figures go to ``bench/results/takeover.json``. With ``--profile-restore PATH`` it instead
runs one worker under cProfile while it restores ``--open`` referrals from the changelog
into an empty data directory, and prints where the time went (stats kept in PATH).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import pstats
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.bench_worker import (
    MHST_TRACKER,
    PARTITIONS,
    START,
    Bench,
    clock_at,
    peak_rss_mib,
    rss_mib,
    seed_changelog,
    wait_log,
)
from deploy.local import KafkaBroker
from deploy.local.process import ManagedProcess
from mhst_tracker.adapters.kafka import create_topics
from mhst_tracker.config import Settings

RESULTS = Path(__file__).parent / "results" / "takeover.json"
WORKER = [str(MHST_TRACKER), "worker"]
INDEXED = "deadline index rebuilt for "
"""The start of the line a worker logs once it has indexed the deadlines of the partitions
it gained: from then on it times them."""


def indexed_lines(process: ManagedProcess) -> list[str]:
    """The worker's "deadline index rebuilt" lines so far."""
    return [line for line in process.log_tail(1_000_000).splitlines() if INDEXED in line]


async def wait_indexed(process: ManagedProcess, after: int, within: float) -> tuple[float, str]:
    """Wall time at which the worker logged a new "deadline index rebuilt" line for at least
    one partition (its ``after``-th or later), and the line."""
    deadline = time.monotonic() + within
    while True:
        lines = indexed_lines(process)[after:]
        gained = [line for line in lines if f"{INDEXED}0 partitions" not in line]
        if gained:
            return time.time(), gained[0]
        if time.monotonic() > deadline or process.exit_code() is not None:
            raise RuntimeError(f"{process.name}: no new {INDEXED!r}:\n{process.log_tail()}")
        await asyncio.sleep(0.05)


async def settled(workers: tuple[ManagedProcess, ...], quiet: float = 15.0) -> float:
    """Once no worker has indexed new partitions for ``quiet`` seconds (the group and its
    restores are done), the wall time of the last indexing."""
    counts = [len(indexed_lines(worker)) for worker in workers]
    last = time.time()
    while time.time() - last < quiet:
        await asyncio.sleep(0.5)
        now = [len(indexed_lines(worker)) for worker in workers]
        if now != counts:
            counts, last = now, time.time()
    return last


def referrals_in(line: str) -> int:
    """The referral count of a "deadline index rebuilt" line."""
    return int(line.split(": ")[-1].split()[0])


async def trial(bootstrap: str, count: int, standbys: int, base: Path) -> dict[str, Any]:
    """Two workers over ``count`` open referrals; one killed, then restarted."""
    settings = Settings(
        kafka_bootstrap=bootstrap,
        topic_prefix=f"takeover{standbys}x{int(time.time())}.",
        partitions=PARTITIONS,
    )
    await create_topics(settings)
    bench = Bench(settings, base / f"standbys-{standbys}", [])
    bench.base.mkdir(parents=True)
    try:
        seeded = await seed_changelog(bench, count)
        figures = await kill_and_restart(bench, clock_at(START), standbys)
    finally:
        bench.stop_all()
    return {
        "standby_replicas": standbys,
        "open_referrals": count,
        "changelog_seeded_s": round(seeded, 1),
        **figures,
    }


async def kill_and_restart(bench: Bench, clock: str, standbys: int) -> dict[str, Any]:
    """Two workers on empty data directories restore the table's changelog; one is
    SIGKILLed (the take-over), then started again on its data directory (the restart)."""
    extra = {"MHST_STANDBY_REPLICAS": str(standbys)}
    began = time.time()
    first = bench.start("w1", WORKER, "w1", clock, extra)
    second = bench.start("w2", WORKER, "w2", clock, extra)
    for worker in (first, second):
        await wait_indexed(worker, 0, 1800)
    restored = await settled((first, second))
    before = len(indexed_lines(second))
    killed = time.time()
    first.kill()
    taken_over, line = await wait_indexed(second, before, 1800)
    rss_survivor, peak_survivor = rss_mib(second.pid or 0), peak_rss_mib(second.pid or 0)
    restarted_at = time.time()
    again = bench.start("w1-again", WORKER, "w1", clock, extra)
    back, back_line = await wait_indexed(again, 0, 1800)
    return {
        "two_workers_restored_from_changelog_s": round(restored - began, 1),
        "takeover_after_sigkill_s": round(taken_over - killed, 1),
        "takeover_referrals_indexed": referrals_in(line),
        "survivor_rss_mib": round(rss_survivor, 1),
        "survivor_peak_rss_mib": round(peak_survivor, 1),
        "restart_same_data_dir_s": round(back - restarted_at, 1),
        "restart_referrals_indexed": referrals_in(back_line),
    }


async def profiled_restore(bootstrap: str, count: int, base: Path, profile: Path) -> float:
    """One worker under cProfile restoring ``count`` open referrals; seconds to its index."""
    settings = Settings(
        kafka_bootstrap=bootstrap, topic_prefix=f"profile{int(time.time())}.", partitions=PARTITIONS
    )
    await create_topics(settings)
    bench = Bench(settings, base / "profile", [])
    bench.base.mkdir(parents=True)
    try:
        await seed_changelog(bench, count)
        began = time.time()
        worker = bench.worker("restore", "restore", clock_at(START), profile)
        indexed = await wait_log(worker, INDEXED, 3600)
        worker.stop(timeout=300)
    finally:
        bench.stop_all()
    return indexed - began


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--open", type=int, default=1_000_000)
    parser.add_argument("--standbys", default="1,0", help="standby settings to try, in order")
    parser.add_argument("--profile-restore", type=Path, help="cProfile one worker's restore")
    args = parser.parse_args()
    settings = [int(value) for value in args.standbys.split(",")]
    broker = KafkaBroker()
    broker.start()
    scratch = Path(tempfile.mkdtemp(prefix="mhst-takeover-"))
    try:
        broker.wait_ready()
        if args.profile_restore is not None:
            took = asyncio.run(
                profiled_restore(broker.bootstrap, args.open, scratch, args.profile_restore)
            )
            print(f"restored {args.open:,} open referrals to the deadline index in {took:.1f} s")
            stats = pstats.Stats(str(args.profile_restore))
            stats.sort_stats("cumulative").print_stats(40)
            stats.sort_stats("tottime").print_stats(30)
            return
        started = time.monotonic()
        trials = [
            asyncio.run(trial(broker.bootstrap, args.open, standbys, scratch))
            for standbys in settings
        ]
        figures: dict[str, Any] = {
            "trials": trials,
            "bench_wall_s": round(time.monotonic() - started),
        }
    finally:
        broker.stop()
        shutil.rmtree(scratch, ignore_errors=True)
    figures["command"] = (
        f".venv/bin/python -m bench.bench_takeover --open {args.open} --standbys {args.standbys}"
    )
    figures["machine"] = {"python": platform.python_version(), "cpus": os.cpu_count()}
    print(json.dumps(figures, indent=2))
    RESULTS.write_text(json.dumps(figures, indent=2) + "\n")


if __name__ == "__main__":
    main()
