"""Replay benchmark: throughput and peak memory of the engine on a simulated event stream.

Run from the repository root::

    .venv/bin/python -m bench.bench_replay --events 1000000 --seed 1 --runs 3

It simulates the stream into a scratch file (or takes ``--data FILE`` as it is), then
replays it in fresh child processes so each run's peak RSS is its own: ingest (read, parse
and fold every line), evaluation (every referral's state as of the stream's last moment,
sorted, and the measures) and the JSON rendering of the replay output (``replay --format
json``); the total and the replay's events/s cover all three phases. Another child times
the JSON decoders on the same lines: the standard library's ``json``, ``orjson`` and
``msgspec`` alone, and :func:`parse_event` on bytes (its msgspec fast path) against
``parse_event`` on mappings decoded by ``json`` or ``orjson``. Figures go to
``bench/results/replay.json``.
"""

import argparse
import gc
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import date, datetime
from pathlib import Path
from typing import Any

import msgspec
import orjson

from mhst_tracker.commands.running import cyclic_gc_paused
from mhst_tracker.domain.errors import InvalidEvent
from mhst_tracker.domain.events import parse_event
from mhst_tracker.domain.profile import TRAILBLAZER_4WW
from mhst_tracker.replay import Replayer
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
    parser.add_argument("--data", type=Path, default=None, help="replay this JSONL file as it is")
    parser.add_argument("--child", choices=["replay", "parsers"], help=argparse.SUPPRESS)
    arguments = parser.parse_args()
    if arguments.child is not None:
        data: Path = arguments.data
        measure = measure_replay if arguments.child == "replay" else measure_parsers
        print(json.dumps(measure(data)))
    elif arguments.data is not None:
        run(arguments.events, arguments.seed, arguments.runs, arguments.data, arguments.out, False)
    else:
        with tempfile.TemporaryDirectory(prefix="mhst-bench-") as scratch:
            data = Path(scratch) / "events.jsonl"
            run(arguments.events, arguments.seed, arguments.runs, data, arguments.out, True)


def run(events: int, seed: int, runs: int, data: Path, out: Path, generate: bool) -> None:
    """Simulate (if asked), measure in child processes and write the figures."""
    generation = None
    if generate:
        started = time.perf_counter()
        with data.open("w", encoding="utf-8") as file:
            for line in simulate(seed, START, events=events):
                file.write(line)
                file.write("\n")
        seconds = time.perf_counter() - started
        generation = {"seconds": round(seconds, 2), "lines_per_s": round(events / seconds)}
    load_before = os.getloadavg()[0]
    replays = [_child("replay", data) for _ in range(runs)]
    best = min(replays, key=lambda figures: float(figures["cpu_total_s"]))
    parsers = _child("parsers", data)
    peak_rss_mb = max(float(figures["peak_rss_mb"]) for figures in replays)
    results = {
        "command": f"python -m bench.bench_replay --events {events} --seed {seed} --runs {runs}",
        "machine": {
            "python": platform.python_version(),
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
            "processor": _processor(),
            "load_average_1min_before_runs": round(load_before, 2),
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
        "replay_best_run": {key: best[key] for key in sorted(best) if key.endswith("_s")},
        "replay_runs_wall_total_s": [figures["wall_total_s"] for figures in replays],
        "replay_runs_cpu_total_s": [figures["cpu_total_s"] for figures in replays],
        "peak_rss_mb": peak_rss_mb,
        "json_parsers": parsers,
        "targets": {"events_per_s": TARGET_EVENTS_PER_S, "peak_rss_mb": TARGET_PEAK_RSS_MB},
        "targets_met": {
            f"{clock}_{phase}_events_per_s": best[f"{clock}_{phase}_events_per_s"]
            >= TARGET_EVENTS_PER_S
            for clock in ("wall", "cpu")
            for phase in ("ingest", "replay")
        }
        | {"peak_rss_mb": peak_rss_mb <= TARGET_PEAK_RSS_MB},
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
    """One replay of ``data`` in this process, as ``mhst-tracker replay --format json`` runs
    it: timings, counts and peak RSS.

    The phases run under one pause of the cyclic garbage collector, as in the command, and
    the last phase ends after the collector is back on (see :func:`_after_pause`), so a
    collection that the pause only postponed would be counted too.
    """
    as_of = _last_moment(data)
    replayer = Replayer()
    marks = [_now()]
    with cyclic_gc_paused():
        with data.open("rb") as file:
            replayer.feed(file)
        marks.append(_now())
        result = replayer.result(as_of, TRAILBLAZER_4WW)
        marks.append(_now())
        rendered = result.to_json() + b"\n"
        gc.freeze()  # as the command does before it writes the output and exits
    _after_pause()
    marks.append(_now())
    lines = replayer.lines
    figures: dict[str, Any] = {
        "lines": lines,
        "referrals": len(result.referrals),
        "rejected": len(result.rejected),
        "duplicates": result.duplicates,
        "as_of": as_of.isoformat(),
        "output_bytes": len(rendered),
    }
    for clock, index in (("wall", 0), ("cpu", 1)):
        ingest = marks[1][index] - marks[0][index]
        replay = marks[3][index] - marks[0][index]
        figures |= {
            f"{clock}_ingest_s": round(ingest, 3),
            f"{clock}_evaluate_s": round(marks[2][index] - marks[1][index], 3),
            f"{clock}_render_json_s": round(marks[3][index] - marks[2][index], 3),
            f"{clock}_total_s": round(replay, 3),
            f"{clock}_ingest_events_per_s": round(lines / ingest),
            f"{clock}_replay_events_per_s": round(lines / replay),
        }
    return figures | {
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    }


def _after_pause() -> None:
    """The young-generation collection that the first allocation after the pause would
    run (over every object the replay built), here inside the timed phase."""
    gc.collect(0)


def measure_parsers(data: Path) -> dict[str, Any]:
    """Decode every line with each decoder, alone and on the way into :func:`parse_event`."""
    lines = data.read_bytes().splitlines()
    count = len(lines)

    def per_second(function: Callable[[bytes], object]) -> int:
        failures = 0
        started = time.process_time()
        for line in lines:
            try:
                function(line)
            except (ValueError, InvalidEvent):
                failures += 1
        return round(count / (time.process_time() - started))

    return {
        "lines": count,
        "decode_lines_per_cpu_s": {
            "json": per_second(json.loads),
            "orjson": per_second(orjson.loads),
            "msgspec": per_second(msgspec.json.decode),
        },
        "parse_event_events_per_cpu_s": {
            "bytes_msgspec_fast_path": per_second(parse_event),
            "mapping_from_orjson": per_second(lambda line: parse_event(orjson.loads(line))),
            "mapping_from_json": per_second(lambda line: parse_event(json.loads(line))),
        },
    }


def _now() -> tuple[float, float]:
    """Wall-clock and CPU time of this process, in seconds."""
    return time.perf_counter(), time.process_time()


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
