"""Runs the national-scale benchmark described in :mod:`bench.national`."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import shutil
import tempfile
import time
from collections import Counter
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any, Final

import asyncpg
import orjson

from bench.bench_rebuild import MHST_TRACKER, deployment, environment, restore, timed_child
from bench.bench_replay import _last_moment
from bench.bench_takeover import kill_and_restart
from bench.bench_worker import (
    AlertWatch,
    Bench,
    clock_at,
    peak_rss_mib,
    rss_mib,
    summary,
    wait_log,
)
from bench.national.plots import draw
from deploy.local import KafkaBroker, PostgresServer
from deploy.local.process import ManagedProcess
from mhst_tracker.domain.alerts import decide_alerts
from mhst_tracker.domain.clock import WAITING_STATUSES
from mhst_tracker.domain.profile import TRAILBLAZER_4WW
from mhst_tracker.replay import Replayer
from mhst_tracker.simulate import ZONE, Shape, arrival_weight, simulate

ENGLAND_TEAMS: Final = 600
ENGLAND_SCHOOLS: Final = 10_000
ENGLAND_REFERRALS: Final = 1_000_000
SCHOOLS_PER_TEAM: Final = (12, 21)
YEAR_START: Final = date(2024, 12, 1)
QUIET_S: Final = 10.0
"""The midnight's alerts are over once none has come for this long."""
RESULTS: Final = Path(__file__).parents[1] / "results" / "national.json"
PLOT: Final = RESULTS.with_suffix(".png")
STOP_LOG: Final = "decided records"
"""What a stopping worker logs about the records its timer decided: written, or left."""


def slice_shape(teams: int) -> Shape:
    """``teams`` teams, each as busy as an average English MHST over a year."""
    year = sum(arrival_weight(YEAR_START + timedelta(days=day)) for day in range(365))
    per_team = ENGLAND_REFERRALS / ENGLAND_TEAMS
    return Shape(teams=teams, schools_per_team=SCHOOLS_PER_TEAM, rate=per_team / year)


def write_year(path: Path, teams: int, seed: int) -> dict[str, Any]:
    """The slice's year into ``path``; what it holds."""
    referrals = round(teams * ENGLAND_REFERRALS / ENGLAND_TEAMS)
    schools: set[str] = set()
    kinds: Counter[str] = Counter()
    with path.open("w", encoding="utf-8") as file:
        for line in simulate(seed, YEAR_START, referrals=referrals, shape=slice_shape(teams)):
            file.write(line)
            file.write("\n")
            try:
                event = orjson.loads(line)
                kinds[event["type"]] += 1
                if "school_id" in event:
                    schools.add(event["school_id"])
            except (orjson.JSONDecodeError, KeyError, TypeError):
                kinds["(bad line)"] += 1
    return {
        "teams": teams,
        "schools": len(schools),
        "referrals": referrals,
        "events": sum(kinds.values()),
        "events_by_type": dict(sorted(kinds.items())),
        "file_mib": round(path.stat().st_size / 2**20, 1),
    }


def next_midnight(moment: datetime) -> datetime:
    """The first local midnight after ``moment``."""
    local = moment.astimezone(ZONE)
    return datetime.combine(local.date() + timedelta(days=1), datetime.min.time(), tzinfo=ZONE)


def by_the_engine(path: Path, as_of: datetime, midnight: datetime) -> tuple[int, int]:
    """The alerts due as of ``as_of`` with no alert history, and the referrals waiting
    (breached or not) as of ``midnight``, by the engine."""
    replayer = Replayer()
    with path.open("rb") as file:
        replayer.feed(file)
    due = sum(
        len(decide_alerts(state, TRAILBLAZER_4WW, as_of, ()))
        for state in replayer.result(as_of, TRAILBLAZER_4WW).referrals
    )
    waiting = replayer.result(midnight, TRAILBLAZER_4WW).referrals
    return due, sum(1 for state in waiting if state.status in WAITING_STATUSES)


async def alerts_read(
    watch: AlertWatch,
    worker: ManagedProcess,
    since: datetime,
    origin: float,
    expected: int | None = None,
) -> list[float]:
    """Broker timestamps (less ``origin``) of the alerts detected at or after ``since``, read
    until ``expected`` have come or, without ``expected``, until none has come for
    :data:`QUIET_S` (or none at all by ``origin`` plus six times that)."""
    appended: list[float] = []
    last = time.monotonic()
    give_up = time.monotonic() + 3600
    while True:
        if expected is not None and len(appended) >= expected:
            return appended
        if expected is None and appended and time.monotonic() - last >= QUIET_S:
            return appended
        if expected is None and not appended and time.time() > origin + 6 * QUIET_S:
            return appended
        if time.monotonic() > give_up or worker.exit_code() is not None:
            raise RuntimeError(f"{len(appended)} alerts of {expected}:\n{worker.log_tail()}")
        for stamp, body in await watch.fetch():
            if datetime.fromisoformat(body["detected_at"]) >= since:
                appended.append(stamp - origin)
                last = time.monotonic()


async def first_run(
    bench: Bench, as_of: datetime, watch: AlertWatch, expected: int
) -> dict[str, Any]:
    """The restored worker started again as of the rebuild: it raises what is due then (with
    no alert history, every breach of the year that is still true, ``expected`` by the
    engine), once. ``watch`` was started before the restore, which may have raised some."""
    began = time.time()
    worker = bench.worker("first", "restore", clock_at(as_of))
    try:
        indexed = await wait_log(worker, "deadline index rebuilt", 3600)
        appended = await alerts_read(watch, worker, as_of, indexed, expected)
        rss, peak = rss_mib(worker.pid or 0), peak_rss_mib(worker.pid or 0)
    finally:
        await watch.stop()
        stopping = time.monotonic()
        worker.stop(timeout=300)
    return {
        "alerts_due_by_the_engine": expected,
        "alerts": len(appended),
        "last_alert_after_start_s": round(max(appended, default=0.0) + indexed - began, 1),
        "worker_rss_mib_after": round(rss, 1),
        "worker_peak_rss_mib": round(peak, 1),
        "stop_s": round(time.monotonic() - stopping, 1),
        "stop_log": [line for line in worker.log_tail(200).splitlines() if STOP_LOG in line],
    }


async def midnight(bench: Bench, at: datetime, margin: float) -> dict[str, Any]:
    """The restored worker started again ``margin`` seconds before the midnight ``at``; the
    alerts detected at it, timed from the midnight's wall time."""
    watch = AlertWatch(bench.settings.kafka_bootstrap, bench.names.alerts)
    await watch.start()
    wall = time.time() + margin
    worker = bench.worker("midnight", "restore", f"simulated:{at.isoformat()}@1/{wall:.6f}")
    try:
        indexed = await wait_log(worker, "deadline index rebuilt", margin)
        if indexed >= wall:
            raise RuntimeError("the worker was not ready before midnight: lateness is invalid")
        appended = await alerts_read(watch, worker, at, wall)
        rss, peak = rss_mib(worker.pid or 0), peak_rss_mib(worker.pid or 0)
    finally:
        await watch.stop()
        worker.stop(timeout=300)
    return {
        "midnight": at.isoformat(),
        "index_ready_before_midnight_s": round(wall - indexed, 1),
        "alerts": len(appended),
        "lateness_appended_s": summary(appended, 3) if appended else None,
        "worker_rss_mib_after": round(rss, 1),
        "worker_peak_rss_mib": round(peak, 1),
    }


async def store(data: Path) -> dict[str, Any]:
    """The year imported into a PostgreSQL server of its own: time and sizes."""
    server = PostgresServer()
    server.start()
    try:
        await asyncio.to_thread(server.wait_ready)
        env = {**os.environ, "MHST_DATABASE_URL": server.url}
        timed_child([str(MHST_TRACKER), "db", "upgrade"], env, Path(os.devnull))
        imported = timed_child([str(MHST_TRACKER), "import", str(data)], env, Path(os.devnull))
        connection = await asyncpg.connect(server.dsn)
        try:
            await connection.execute("VACUUM ANALYZE")
            database = await connection.fetchval("SELECT pg_database_size(current_database())")
            tables = await connection.fetch(
                "SELECT relname, n_live_tup, pg_total_relation_size(relid) AS bytes"
                " FROM pg_stat_user_tables ORDER BY bytes DESC"
            )
        finally:
            await connection.close()
    finally:
        server.stop()
    return {
        "import": imported,
        "database_mib": round(database / 2**20, 1),
        "tables": {
            row["relname"]: {"rows": row["n_live_tup"], "mib": round(row["bytes"] / 2**20, 1)}
            for row in tables
            if row["bytes"] >= 2**20
        },
    }


async def one_slice(bootstrap: str, teams: int, seed: int, scratch: Path) -> dict[str, Any]:
    data = scratch / f"year-{teams}.jsonl"
    began = time.perf_counter()
    history = write_year(data, teams, seed)
    history["simulated_s"] = round(time.perf_counter() - began, 1)
    settings, published = await deployment(bootstrap, data)
    history["published_s"] = round(published, 1)
    as_of = _last_moment(data)
    at = next_midnight(as_of)
    history["as_of"] = as_of.isoformat()
    due, history["waiting_at_midnight"] = by_the_engine(data, as_of, at)
    env = environment(settings, clock_at(as_of), scratch / "unused")
    rebuilt = timed_child([str(MHST_TRACKER), "rebuild"], env, Path(os.devnull))
    rebuilt["events_per_s"] = round(history["events"] / rebuilt["wall_s"])
    bench = Bench(settings, scratch / f"slice-{teams}", [])
    bench.base.mkdir(parents=True)
    try:
        watch = AlertWatch(bootstrap, settings.topics.alerts)
        await watch.start()
        restored = await restore(bench, clock_at(as_of))
        first = await first_run(bench, as_of, watch, due)
        margin = 2 * restored["to_deadline_index_s"] + 10
        timed = await midnight(bench, at, margin)
        takeover = await kill_and_restart(bench, clock_at(at + timedelta(minutes=1)), 1)
    finally:
        bench.stop_all()
    return {
        "history": history,
        "rebuild": rebuilt,
        "restore": restored,
        "first_run_after_rebuild": first,
        "midnight_timers": timed,
        "takeover_standby_1": takeover,
        "store_postgresql": await store(data),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--teams", type=int, action="append", help="repeat for several slices")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    sizes = sorted(args.teams or [30, 60, 120])
    results: dict[str, Any] = {
        "command": "python -m bench.national " + " ".join(f"--teams {n}" for n in sizes),
        "england": {
            "teams": ENGLAND_TEAMS,
            "schools": ENGLAND_SCHOOLS,
            "referrals_a_year": ENGLAND_REFERRALS,
        },
        "machine": {
            "python": platform.python_version(),
            "cpus": os.cpu_count(),
            "load_average_1min_before": round(os.getloadavg()[0], 2),
            "date": datetime.now().date().isoformat(),
        },
        "slices": [],
    }
    broker = KafkaBroker()
    broker.start()
    scratch = Path(tempfile.mkdtemp(prefix="mhst-national-"))
    try:
        broker.wait_ready()
        for teams in sizes:
            began = time.monotonic()
            figures = asyncio.run(one_slice(broker.bootstrap, teams, args.seed, scratch))
            figures["slice_wall_s"] = round(time.monotonic() - began)
            results["slices"].append(figures)
            (scratch / f"year-{teams}.jsonl").unlink()
            RESULTS.write_text(json.dumps(results, indent=2) + "\n")
            print(json.dumps(figures, indent=2), flush=True)
    finally:
        broker.stop()
        shutil.rmtree(scratch, ignore_errors=True)
    results["fitted_lines"] = draw(results["slices"], ENGLAND_TEAMS, PLOT)
    RESULTS.write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results["fitted_lines"], indent=2))


if __name__ == "__main__":
    main()
