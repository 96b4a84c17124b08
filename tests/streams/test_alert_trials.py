"""Alert trials on the real broker: restarts, a broker outage and backfills raise no breach
that events already in Kafka disprove.

Each trial publishes a simulated stream and audits the alerts against the events and the
moment each reached Kafka (:mod:`tests.streams.trials`):

* **restarts**: two workers, a simulated half-term published as its time passes (a day per
  wall second), one of them SIGKILLed and restarted at random moments;
* **broker outage**: the same with the broker stopped for 20 s across a simulated midnight;
* **backfill**: a simulated term loaded with ``mhst-tracker import --to kafka``, once with
  the workers stopped (then started) and once into running workers.

In every trial each breach that happened is raised (one ``alert_id`` per referral and
stage), every breach raised was shown by events that had arrived, and every withdrawal is
explained by an arrival after the breach was justified. Each trial prints its figures.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import random
from collections.abc import Callable
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Final

import pytest

from deploy.local import KafkaBroker
from mhst_tracker.config import Settings
from mhst_tracker.domain.alerts import AlertKind, decide_alerts
from mhst_tracker.replay import Replayer
from mhst_tracker.simulate import uploads
from mhst_tracker.timesource import SimulatedClock
from tests.streams.harness import MHST_TRACKER, Deployment, logged, wait_for
from tests.streams.trials import (
    DAY_PER_SECOND,
    PROFILE,
    Audit,
    StageKey,
    VisibilityProbe,
    arrivals,
    audit,
    morning_after,
    publish_as_time_passes,
    simulated_uploads,
    stamp_on_append,
    wait_until_simulated,
)

pytestmark = pytest.mark.kafka

SEED: Final = 17
REFERRALS: Final = 300
TERM: Final = date(2025, 9, 1)
LEAD: Final = 12.0
"""Wall seconds from the workers' start to the first upload."""
KILLS: Final = 6
OUTAGE: Final = 20.0
WAIT: Final = 120.0


def _clock(first: datetime, speed: float = DAY_PER_SECOND) -> SimulatedClock:
    """A clock shared by the test and its workers that reaches ``first`` in LEAD seconds."""
    return SimulatedClock.starting(first - timedelta(seconds=LEAD * speed), speed)


def _stamped(deployment: Deployment) -> tuple[str, str]:
    """The topics whose messages the trial dates by their arrival: events and alerts."""
    return (deployment.names.events, deployment.names.alerts)


def _probe(deployment: Deployment) -> VisibilityProbe:
    """A probe of when the deployment's events become readable (see :mod:`tests.streams.trials`)."""
    settings = deployment.settings
    return VisibilityProbe(settings.kafka_bootstrap, deployment.names.events, settings.partitions)


def _report(name: str, result: Audit, **extra: object) -> None:
    print(f"\n{name}: " + json.dumps({**result.figures(), **extra}, indent=1, default=str))


def _assert_trustworthy(result: Audit) -> None:
    assert not result.missing, f"breaches never raised: {sorted(result.missing)[:10]}"
    unjustified, unexplained = sorted(result.unjustified), sorted(result.unexplained)
    assert not unjustified, f"without cause: {unjustified[:10]}\n{result.story(unjustified[:3])}"
    assert not unexplained, f"unexplained: {unexplained[:10]}\n{result.story(unexplained[:3])}"
    assert not result.at_risk_unjustified, sorted(result.at_risk_unjustified)[:10]


async def _audit_when_complete(
    deployment: Deployment, clock: SimulatedClock, as_of: datetime, probe: VisibilityProbe
) -> Audit:
    """Once every breach up to ``as_of`` is raised (and the workers had a further simulated
    day), the audit of every alert about a moment up to ``as_of``."""
    await wait_until_simulated(clock, as_of + timedelta(days=1))
    return await _audit_until(
        deployment,
        clock,
        probe,
        lambda: as_of,
        lambda result: not result.missing,
        "every breach to be raised",
        settle=2,
    )


async def _audit_until(
    deployment: Deployment,
    clock: SimulatedClock,
    probe: VisibilityProbe,
    as_of: Callable[[], datetime],
    done: Callable[[Audit], bool],
    what: str,
    *,
    settle: float,
) -> Audit:
    """Audit the alerts about moments up to ``as_of()`` until ``done`` holds (waiting up to
    WAIT seconds for ``what``), and once more ``settle`` seconds later."""
    events = deployment.reader(deployment.names.events)
    alerts = deployment.reader(deployment.names.alerts)
    result: list[Audit] = []

    async def check() -> bool:
        by_referral = arrivals(await events.poll(), clock, probe)
        result[:] = [audit(await alerts.poll(), by_referral, as_of(), clock)]
        return done(result[0])

    try:
        await wait_for(what, check, WAIT, deployment.workers)
        await asyncio.sleep(settle)
        await check()
    finally:
        await events.close()
        await alerts.close()
    return result[0]


class Pair:
    """Two workers of a deployment, restarted by slot name."""

    def __init__(self, deployment: Deployment) -> None:
        self.deployment = deployment
        self.running = {name: deployment.start_worker(name) for name in ("w1", "w2")}

    def kill_and_restart(self, name: str) -> None:
        """SIGKILL the worker ``name`` and start it again on its data directory."""
        self.running[name].kill()
        self.running[name] = self.deployment.start_worker(name)

    async def ready(self) -> None:
        """Until both have logged "Worker ready"."""
        for worker in self.running.values():
            await wait_for(
                "the workers to be ready",
                lambda worker=worker: logged(worker, "Worker ready"),  # type: ignore[misc]
                WAIT,
                self.deployment.workers,
            )


async def _kill_at_random(pair: Pair, clock: SimulatedClock, begin: datetime, end: datetime) -> int:
    """SIGKILL and restart a random worker at KILLS random moments between the two."""
    rng = random.Random(SEED)
    span = (end - begin).total_seconds()
    moments = sorted(begin + timedelta(seconds=rng.uniform(0, span)) for _ in range(KILLS))
    for moment in moments:
        await wait_until_simulated(clock, moment)
        pair.kill_and_restart(rng.choice(sorted(pair.running)))
    return len(moments)


async def test_restarted_workers_raise_each_breach_once_and_withdraw_only_for_late_uploads(
    deployment: Deployment,
) -> None:
    stream = simulated_uploads(SEED, TERM, REFERRALS)
    clock = _clock(stream[0].at)
    deployment.settings = dataclasses.replace(deployment.settings, clock=clock.spec)
    await deployment.create_topics()
    bootstrap = deployment.settings.kafka_bootstrap
    await stamp_on_append(bootstrap, _stamped(deployment))
    async with _probe(deployment) as probe:
        pair = Pair(deployment)
        publishing = asyncio.create_task(
            publish_as_time_passes(bootstrap, deployment.names.events, stream, clock)
        )
        kills = await _kill_at_random(pair, clock, stream[0].at, stream[-1].at)
        await publishing
        as_of = stream[-1].at + timedelta(days=1)
        result = await _audit_when_complete(deployment, clock, as_of, probe)
    _report("restart trial", result, kills=kills, referrals=REFERRALS, events=len(stream))
    _assert_trustworthy(result)


async def _outage(broker: KafkaBroker, clock: SimulatedClock, midnight: datetime) -> None:
    """Stop the broker just before ``midnight`` and start it again OUTAGE seconds later."""
    await wait_until_simulated(clock, midnight - timedelta(hours=6))
    process = broker.process
    assert process is not None
    await asyncio.to_thread(process.stop)
    await asyncio.sleep(OUTAGE)
    process.start()
    await asyncio.to_thread(broker.wait_ready)


async def test_a_broker_outage_across_midnight_raises_each_breach_once_and_no_false_one(
    own_broker: KafkaBroker, tmp_path: Path
) -> None:
    stream = simulated_uploads(SEED + 1, TERM, REFERRALS)
    clock = _clock(stream[0].at)
    settings = Settings(
        kafka_bootstrap=own_broker.bootstrap, topic_prefix="outage.", partitions=6, clock=clock.spec
    )
    deployment = Deployment(settings=settings, base_dir=tmp_path)
    try:
        await deployment.create_topics()
        await stamp_on_append(settings.kafka_bootstrap, _stamped(deployment))
        async with _probe(deployment) as probe:
            Pair(deployment)
            publishing = asyncio.create_task(
                publish_as_time_passes(
                    settings.kafka_bootstrap, deployment.names.events, stream, clock
                )
            )
            middle = stream[0].at + (stream[-1].at - stream[0].at) / 3
            midnight = morning_after(middle) - timedelta(hours=6)
            await _outage(own_broker, clock, midnight)
            await publishing
            as_of = stream[-1].at + timedelta(days=1)
            result = await _audit_when_complete(deployment, clock, as_of, probe)
        exited = [worker.name for worker in deployment.workers if worker.exit_code() is not None]
    finally:
        deployment.stop_all()
    _report("broker outage trial", result, outage_s=OUTAGE, workers_exited=exited)
    _assert_trustworthy(result)


async def _import(deployment: Deployment, path: Path) -> None:
    """``mhst-tracker import PATH --to kafka`` into the deployment's events topic."""
    settings = deployment.settings
    process = await asyncio.create_subprocess_exec(
        str(MHST_TRACKER),
        "import",
        str(path),
        "--to",
        "kafka",
        env={
            **os.environ,
            "MHST_KAFKA_BOOTSTRAP": settings.kafka_bootstrap,
            "MHST_TOPIC_PREFIX": settings.topic_prefix,
            "MHST_PARTITIONS": str(settings.partitions),
        },
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await process.communicate()
    assert process.returncode == 0, (out + err).decode()


def _history(tmp_path: Path) -> tuple[Path, datetime]:
    """A simulated term as a JSONL file, and 06:00 on the day after its last upload."""
    lines = list(uploads(SEED + 2, TERM, referrals=REFERRALS))
    path = tmp_path / "history.jsonl"
    path.write_text("".join(line + "\n" for _at, line in lines))
    return path, morning_after(lines[-1][0])


Due = dict[str, set[StageKey]]


def _due(path: Path, now: datetime) -> Due:
    """The engine's alerts due as of ``now`` for the history, with none raised before."""
    replayer = Replayer()
    replayer.feed(path.read_bytes().splitlines())
    due: Due = {kind: set() for kind in AlertKind}
    for referral_id, clock in replayer.clocks.items():
        for alert in decide_alerts(clock, PROFILE, now):
            due[alert.kind].add((referral_id, alert.stage))
    return due


async def _backfill(tmp_path: Path, deployment: Deployment, *, running: bool) -> tuple[Audit, Due]:
    """Import a simulated term with the workers running or not yet started; the audit once
    every alert due is raised, and those due."""
    path, start = _history(tmp_path)
    clock = SimulatedClock.starting(start, 1.0)
    deployment.settings = dataclasses.replace(deployment.settings, clock=clock.spec)
    await deployment.create_topics()
    bootstrap = deployment.settings.kafka_bootstrap
    await stamp_on_append(bootstrap, _stamped(deployment))
    async with _probe(deployment) as probe:
        if running:
            await Pair(deployment).ready()
        await _import(deployment, path)
        if not running:
            await Pair(deployment).ready()
        due = _due(path, clock.now())
        result = await _audit_until(
            deployment,
            clock,
            probe,
            clock.now,
            lambda audited: all(due[kind] <= audited.raised[kind] for kind in due),
            "every alert due to be raised",
            settle=5,
        )
    return result, due


async def test_history_imported_before_the_workers_start_raises_what_is_due_now_once(
    deployment: Deployment, tmp_path: Path
) -> None:
    result, due = await _backfill(tmp_path, deployment, running=False)
    _report("backfill, workers stopped", result)
    assert result.raised[AlertKind.BREACH] == due[AlertKind.BREACH]
    assert result.raised[AlertKind.AT_RISK] == due[AlertKind.AT_RISK]
    assert result.raised[AlertKind.BREACH_WITHDRAWN] == set()


async def test_history_imported_into_running_workers_withdraws_only_for_later_lines(
    deployment: Deployment, tmp_path: Path
) -> None:
    result, due = await _backfill(tmp_path, deployment, running=True)
    _report("backfill, workers running", result, withdrawn_for_later_lines=result.later_lines())
    _assert_trustworthy(result)
    assert result.raised[AlertKind.BREACH] == due[AlertKind.BREACH] | result.explained
