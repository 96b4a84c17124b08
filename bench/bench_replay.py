"""Replay benchmark: throughput and peak memory of the engine on a simulated event stream.

Run from the repository root::

    .venv/bin/python -m bench.bench_replay --events 1000000 --seed 1

It simulates the stream once (kept in a scratch file), then replays it in fresh child
processes so each run's peak RSS is its own: ingest (read, parse and fold every line),
evaluation (every referral's state as of the stream's last moment, sorted, and the
measures) and the JSON rendering of the replay output. It also times the JSON decoders on
the same lines in the same child: the standard library's ``json`` against ``orjson``, alone
and inside :func:`parse_event`. Figures go to ``bench/results/replay.json``.
"""

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from datetime import date, datetime
from pathlib import Path
from typing import Any

import orjson

from mhst_tracker.domain.errors import InvalidEvent
from mhst_tracker.domain.events import parse_event
from mhst_tracker.domain.profile import TRAILBLAZER_4WW
from mhst_tracker.replay import Replayer, cyclic_gc_paused
from mhst_tracker.simulate import simulate

TARGET_EVENTS_PER_S = 200_000
TARGET_PEAK_RSS_MB = 1536
START = date(2025, 9, 1)
RESULTS = Path(__file__).parent / "results" / "replay.json"


def main() -> None:
    """Parse the command line and run the parent or a child measurement."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--runs", type=int, default=3, help="replay runs; the best is kept")
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--data", type=Path, default=None, help="scratch JSONL file")
    parser.add_argument("--child", choices=["replay", "parsers"], help=argparse.SUPPRESS)
    arguments = parser.parse_args()
    data = arguments.data or Path(tempfile.gettempdir()) / (
        f"mhst-bench-{arguments.seed}-{arguments.events}.jsonl"
    )
    if arguments.child == "replay":
        print(json.dumps(measure_replay(data)))
    elif arguments.child == "parsers":
        print(json.dumps(measure_parsers(data)))
    else:
        run(arguments.events, arguments.seed, arguments.runs, data, arguments.out)


def run(events: int, seed: int, runs: int, data: Path, out: Path) -> None:
    """Simulate (if needed), measure in child processes and write the figures."""
    generation = None
    if not data.exists():
        started = time.perf_counter()
        with data.open("w", encoding="utf-8") as file:
            for line in simulate(seed, START, events=events):
                file.write(line)
                file.write("\n")
        seconds = time.perf_counter() - started
        generation = {"seconds": round(seconds, 2), "lines_per_s": round(events / seconds)}
    replays = [_child("replay", data) for _ in range(runs)]
    best = min(replays, key=lambda figures: float(figures["total_s"]))
    parsers = _child("parsers", data)
    peak_rss_mb = max(float(figures["peak_rss_mb"]) for figures in replays)
    results = {
        "command": f"python -m bench.bench_replay --events {events} --seed {seed} --runs {runs}",
        "machine": {
            "python": platform.python_version(),
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
            "processor": _processor(),
        },
        "input": {
            "lines": best["lines"],
            "bytes": data.stat().st_size,
            "referrals": best["referrals"],
            "rejected": best["rejected"],
            "duplicates": best["duplicates"],
            "as_of": best["as_of"],
        },
        "generation": generation,
        "replay_best": {key: best[key] for key in sorted(best) if key.endswith(("_s", "_per_s"))},
        "replay_runs_total_s": [figures["total_s"] for figures in replays],
        "peak_rss_mb": peak_rss_mb,
        "json_parsers": parsers,
        "targets": {"events_per_s": TARGET_EVENTS_PER_S, "peak_rss_mb": TARGET_PEAK_RSS_MB},
        "targets_met": {
            "ingest_events_per_s": best["ingest_events_per_s"] >= TARGET_EVENTS_PER_S,
            "replay_events_per_s": best["replay_events_per_s"] >= TARGET_EVENTS_PER_S,
            "peak_rss_mb": peak_rss_mb <= TARGET_PEAK_RSS_MB,
        },
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    print(json.dumps(results, indent=2))


def _child(kind: str, data: Path) -> dict[str, Any]:
    command = [sys.executable, "-m", "bench.bench_replay", "--child", kind, "--data", str(data)]
    completed = subprocess.run(command, check=True, capture_output=True, text=True)
    figures: dict[str, Any] = json.loads(completed.stdout)
    return figures


def measure_replay(data: Path) -> dict[str, Any]:
    """One replay of ``data`` in this process: timings, counts and peak RSS."""
    as_of = _last_moment(data)
    replayer = Replayer()
    started = time.perf_counter()
    with data.open("rb") as file:
        replayer.feed(file)
    ingested = time.perf_counter()
    result = replayer.result(as_of, TRAILBLAZER_4WW)
    evaluated = time.perf_counter()
    with cyclic_gc_paused():
        rendered = orjson.dumps(result.to_dict(), option=orjson.OPT_INDENT_2)
    finished = time.perf_counter()
    lines = replayer.lines
    return {
        "lines": lines,
        "referrals": len(result.referrals),
        "rejected": len(result.rejected),
        "duplicates": result.duplicates,
        "as_of": as_of.isoformat(),
        "output_bytes": len(rendered),
        "ingest_s": round(ingested - started, 3),
        "evaluate_s": round(evaluated - ingested, 3),
        "render_json_s": round(finished - evaluated, 3),
        "total_s": round(evaluated - started, 3),
        "ingest_events_per_s": round(lines / (ingested - started)),
        "replay_events_per_s": round(lines / (evaluated - started)),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    }


def measure_parsers(data: Path) -> dict[str, Any]:
    """Decode every line with ``json`` and ``orjson``, alone and through ``parse_event``."""
    lines = data.read_bytes().splitlines()

    def decode_all(decode: Any) -> float:
        failures = 0
        started = time.perf_counter()
        for line in lines:
            try:
                decode(line)
            except ValueError:
                failures += 1
        return time.perf_counter() - started

    def parse_all(decode: Any) -> float:
        failures = 0
        started = time.perf_counter()
        for line in lines:
            try:
                parse_event(decode(line))
            except (ValueError, InvalidEvent):
                failures += 1
        return time.perf_counter() - started

    stdlib = decode_all(json.loads)
    fast = decode_all(orjson.loads)
    parse_stdlib = parse_all(json.loads)
    parse_orjson = parse_all(orjson.loads)
    count = len(lines)
    return {
        "lines": count,
        "stdlib_json_loads_s": round(stdlib, 3),
        "orjson_loads_s": round(fast, 3),
        "loads_speedup": round(stdlib / fast, 2),
        "parse_event_with_stdlib_json_events_per_s": round(count / parse_stdlib),
        "parse_event_with_orjson_events_per_s": round(count / parse_orjson),
    }


def _last_moment(data: Path) -> datetime:
    """The ``occurred_at`` of the last valid line: the moment the stream was cut."""
    with data.open("rb") as file:
        file.seek(max(0, data.stat().st_size - 65536))
        tail = file.read().splitlines()
    for line in reversed(tail):
        try:
            return parse_event(line).occurred_at
        except InvalidEvent:
            continue
    raise SystemExit(f"no valid event near the end of {data}")


def _processor() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


if __name__ == "__main__":
    main()
