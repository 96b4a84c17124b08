"""Rebuild benchmark: ``mhst-tracker rebuild`` against ``replay`` and the worker, same events.

Run from the repository root::

    .venv/bin/python -m bench.bench_rebuild --events 1000000 --events 10000000

It starts its own Kafka broker (12 partitions) and, for each size, in the same run:

* simulates the stream into a scratch JSONL file (:func:`mhst_tracker.simulate.simulate`);
* **replay**: ``mhst-tracker replay FILE --as-of T --format json`` in a child process, its
  output discarded, timed from start to exit (T: the last simulated moment);
* publishes every line on a fresh events topic, keyed by referral id (bad lines included,
  unkeyed when they have no readable referral id), not timed;
* **rebuild**: ``mhst-tracker rebuild`` in a child process on a clock reading T, timed from
  start to exit (end to end: start-up, reading, folding, writing the changelog, handing
  over), with a process per CPU (the default); then **again**, with ``--profile`` (targets
  6 and 27) over the changelog the first run wrote, as after a profile change; and with
  ``--jobs 1`` (in one process, as replay runs) on a copy of the events topic of its own;
* **restore**: a worker with an empty data directory, from start to "Worker ready" and to
  its deadline index rebuilt from the rebuilt records, and its RSS then;
* **take-over and restart**: two workers on empty data directories over the rebuilt table
  (one standby replica, as shipped), one SIGKILLed, then restarted on its data directory
  (:func:`bench.bench_takeover.kill_and_restart`);
* **worker**: the worker's own rate in the same run, on the first ``--worker-sample``
  events of the same stream on topics of their own, from "Worker ready" to the alert of a
  sentinel event published last on every partition (as ``bench.bench_worker`` measures it).

Once per run, **CLI start**: the median wall time of five ``mhst-tracker --help`` and five
``mhst-tracker replay --help`` processes, against a bare ``python -c pass``.

Rates are events (lines) per second of wall time. Figures go to ``bench/results/rebuild.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from datetime import date, datetime
from pathlib import Path
from typing import Any, Final

import orjson
from aiokafka import AIOKafkaProducer
from aiokafka.producer.message_accumulator import BatchBuilder

from bench.bench_replay import _last_moment
from bench.bench_takeover import kill_and_restart
from bench.bench_worker import (
    PARTITIONS,
    START,
    AlertWatch,
    Bench,
    clock_at,
    peak_rss_mib,
    rss_mib,
    sentinel_done,
    sentinels,
    wait_log,
)
from bench.bench_worker import produce as produce_keyed
from deploy import DAY1_PROFILE
from deploy.local import KafkaBroker
from mhst_tracker.adapters.kafka import create_topics
from mhst_tracker.config import Settings
from mhst_tracker.simulate import simulate
from mhst_tracker.tracking.alert_messages import key_hash

RESULTS: Final = Path(__file__).parent / "results" / "rebuild.json"
MHST_TRACKER: Final = Path(sys.executable).parent / "mhst-tracker"
SIMULATION_START: Final = date(2025, 9, 1)
TARGET_SHARE_OF_REPLAY: Final = 0.5


def write_stream(path: Path, events: int, seed: int) -> None:
    """The simulated stream of ``events`` lines into ``path``."""
    with path.open("w", encoding="utf-8") as file:
        for line in simulate(seed, SIMULATION_START, events=events):
            file.write(line)
            file.write("\n")


def keyed_lines(path: Path) -> Iterator[tuple[bytes | None, bytes]]:
    """Every line of ``path`` with its referral id as the key (``None`` if unreadable)."""
    with path.open("rb") as file:
        for line in file:
            value = line.rstrip(b"\n")
            try:
                key: bytes | None = orjson.loads(value)["referral_id"].encode()
            except (orjson.JSONDecodeError, KeyError, TypeError, AttributeError):
                key = None
            yield key, value


async def publish(
    bootstrap: str, topic: str, messages: Iterator[tuple[bytes | None, bytes]]
) -> None:
    """Publish ``messages`` in record batches, partitioned as the default partitioner does
    (an unkeyed message on partition 0)."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", max_batch_size=1 << 20)
    await producer.start()
    try:
        batches: dict[int, BatchBuilder] = {}
        sent = []
        for key, value in messages:
            partition = 0 if key is None else key_hash(key) % PARTITIONS
            batch = batches.get(partition)
            if batch is None:
                batch = batches[partition] = producer.create_batch()
            if batch.append(key=key, value=value, timestamp=None) is None:
                sent.append(await producer.send_batch(batch, topic, partition=partition))
                batch = batches[partition] = producer.create_batch()
                batch.append(key=key, value=value, timestamp=None)
        for partition, batch in batches.items():
            sent.append(await producer.send_batch(batch, topic, partition=partition))
        await asyncio.gather(*sent)
    finally:
        await producer.stop()


def timed_child(argv: list[str], env: dict[str, str], output: Path) -> dict[str, Any]:
    """Run ``argv`` to its end (standard output to ``output``); wall and CPU seconds and
    peak RSS, and its standard error."""
    started = time.perf_counter()
    with output.open("wb") as stdout:
        process = subprocess.Popen(argv, env=env, stdout=stdout, stderr=subprocess.PIPE)
        assert process.stderr is not None
        stderr = process.stderr.read()
        _, status, usage = os.wait4(process.pid, 0)
    wall = time.perf_counter() - started
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode != 0:
        raise RuntimeError(f"{argv[1]} failed ({process.returncode}): {stderr.decode()[-2000:]}")
    return {
        "wall_s": round(wall, 2),
        "cpu_s": round(usage.ru_utime + usage.ru_stime, 2),
        "peak_rss_mb": round(usage.ru_maxrss / 1024, 1),
        "stderr": stderr.decode().strip().splitlines()[-2:],
    }


def environment(settings: Settings, clock: str, data_dir: Path) -> dict[str, str]:
    """A command's environment for ``settings``, as :class:`Bench` gives its workers."""
    return Bench(settings, data_dir, []).env(data_dir, clock)


async def worker_rate(bootstrap: str, data: Path, sample: int, scratch: Path) -> dict[str, Any]:
    """The worker's events/s over the first ``sample`` lines of ``data`` (see the module)."""
    settings = Settings(
        kafka_bootstrap=bootstrap, topic_prefix=f"worker{time.time_ns()}.", partitions=PARTITIONS
    )
    await create_topics(settings)
    lines = keyed_lines(data)
    messages = [(key, value) for (key, value), _ in zip(lines, range(sample), strict=False) if key]
    tail = sentinels("r")
    await produce_keyed(bootstrap, settings.topics.events, messages, tail)
    bench = Bench(settings, scratch, [])
    try:
        watch = AlertWatch(bootstrap, settings.topics.alerts)
        await watch.start()
        worker = bench.worker("rate", "rate", clock_at(START))
        ready = await wait_log(worker, "Worker ready")
        seen = await watch.until(sentinel_done("r"), 3600, worker)
        await watch.stop()
        finished = max(stamp for stamp, body in seen if body["referral_id"].startswith("Sr"))
    finally:
        bench.stop_all()
    total = len(messages) + len(tail)
    return {"events": total, "events_per_s": round(total / (finished - ready))}


async def restore(bench: Bench, clock: str) -> dict[str, Any]:
    """A worker with an empty data directory (``restore``) restoring the rebuilt table; it
    is stopped once its deadlines are indexed."""
    began = time.time()
    worker = bench.worker("restore", "restore", clock)
    try:
        ready = await wait_log(worker, "Worker ready", 3600)
        indexed = await wait_log(worker, "deadline index rebuilt", 3600)
        rss, peak = rss_mib(worker.pid or 0), peak_rss_mib(worker.pid or 0)
    finally:
        worker.stop(timeout=300)
    return {
        "to_worker_ready_s": round(ready - began, 2),
        "to_deadline_index_s": round(indexed - began, 2),
        "worker_rss_mib": round(rss, 1),
        "worker_peak_rss_mib": round(peak, 1),
    }


def cli_start(runs: int = 5) -> dict[str, Any]:
    """Median wall seconds of the command line's start, against a bare interpreter."""

    def median_of(argv: list[str]) -> float:
        times = []
        for _ in range(runs):
            began = time.perf_counter()
            subprocess.run(argv, stdout=subprocess.DEVNULL, check=True)
            times.append(time.perf_counter() - began)
        return round(statistics.median(times), 3)

    return {
        "python_c_pass_s": median_of([sys.executable, "-c", "pass"]),
        "help_s": median_of([str(MHST_TRACKER), "--help"]),
        "replay_help_s": median_of([str(MHST_TRACKER), "replay", "--help"]),
        "target_s": 0.3,
    }


async def deployment(bootstrap: str, data: Path) -> tuple[Settings, float]:
    """Topics of their own with every line of ``data`` on the events topic; the seconds the
    publishing took."""
    settings = Settings(
        kafka_bootstrap=bootstrap, topic_prefix=f"rebuild{time.time_ns()}.", partitions=PARTITIONS
    )
    await create_topics(settings)
    began = time.perf_counter()
    await publish(bootstrap, settings.topics.events, keyed_lines(data))
    return settings, time.perf_counter() - began


async def one_size(
    bootstrap: str, events: int, seed: int, sample: int, base: Path
) -> dict[str, Any]:
    scratch = base / str(events)
    scratch.mkdir()
    data = scratch / f"events-{events}.jsonl"
    began = time.perf_counter()
    write_stream(data, events, seed)
    simulated = time.perf_counter() - began
    as_of = _last_moment(data)
    replay = timed_child(
        [str(MHST_TRACKER), "replay", str(data), "--as-of", as_of.isoformat()],
        dict(os.environ),
        Path(os.devnull),
    )
    settings, publishing = await deployment(bootstrap, data)
    alone_settings, _ = await deployment(bootstrap, data)
    published = sum(1 for _ in keyed_lines(data))
    clock = f"simulated:{as_of.isoformat()}@1"
    env = environment(settings, clock, scratch / "unused")
    rebuild = timed_child([str(MHST_TRACKER), "rebuild"], env, Path(os.devnull))
    again = timed_child(
        [str(MHST_TRACKER), "rebuild", "--profile", str(DAY1_PROFILE)], env, Path(os.devnull)
    )
    alone = timed_child(
        [str(MHST_TRACKER), "rebuild", "--jobs", "1"],
        environment(alone_settings, clock, scratch / "unused"),
        Path(os.devnull),
    )
    restored = await restore(Bench(settings, scratch, []), clock)
    pair = Bench(settings, scratch / "takeover", [])
    pair.base.mkdir()
    try:
        takeover = await kill_and_restart(pair, clock, 1)
    finally:
        pair.stop_all()
    worker = await worker_rate(bootstrap, data, sample, scratch)
    rebuild_rate = published / rebuild["wall_s"]
    replay_rate = published / replay["wall_s"]
    return {
        "events": published,
        "file_bytes": data.stat().st_size,
        "simulated_s": round(simulated, 1),
        "published_s": round(publishing, 1),
        "replay": replay | {"events_per_s": round(replay_rate)},
        "rebuild": rebuild | {"events_per_s": round(rebuild_rate)},
        "rebuild_again_new_profile_over_its_changelog": again
        | {"events_per_s": round(published / again["wall_s"])},
        "rebuild_one_process": alone | {"events_per_s": round(published / alone["wall_s"])},
        "rebuild_share_of_replay": round(rebuild_rate / replay_rate, 3),
        "rebuild_one_process_share_of_replay": round(published / alone["wall_s"] / replay_rate, 3),
        "target_share_of_replay": TARGET_SHARE_OF_REPLAY,
        "worker": worker,
        "rebuild_over_worker": round(rebuild_rate / worker["events_per_s"], 1),
        "restore_after_rebuild": restored,
        "takeover_after_rebuild_standby_1": takeover,
    }


async def run(sizes: list[int], seed: int, sample: int, bootstrap: str) -> dict[str, Any]:
    scratch = Path(tempfile.mkdtemp(prefix="mhst-bench-rebuild-"))
    try:
        return {
            str(events): await one_size(bootstrap, events, seed, sample, scratch)
            for events in sizes
        }
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, action="append", help="repeat for several sizes")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--worker-sample", type=int, default=50_000)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    sizes = args.events or [1_000_000]
    broker = KafkaBroker()
    broker.start()
    try:
        broker.wait_ready()
        load_before = os.getloadavg()[0]
        started = time.monotonic()
        figures = asyncio.run(run(sizes, args.seed, args.worker_sample, broker.bootstrap))
    finally:
        broker.stop()
    results = {
        "command": "python -m bench.bench_rebuild "
        + " ".join(f"--events {size}" for size in sizes)
        + f" --worker-sample {args.worker_sample}",
        "machine": {
            "python": platform.python_version(),
            "cpus": os.cpu_count(),
            "load_average_1min_before": round(load_before, 2),
            "date": datetime.now().date().isoformat(),
        },
        "bench_wall_s": round(time.monotonic() - started),
        "cli_start": cli_start(),
        "sizes": figures,
    }
    print(json.dumps(results, indent=2))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
