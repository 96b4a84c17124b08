"""``make demo``: the tracker end to end on a local Kafka broker, with simulated referrals.

It starts a real Kafka broker, creates the topics, starts two stream workers, the store
sink (SQLite, the embedded default) and the ingestion API with a token it makes for the
simulated referral portal, and sends a simulated half-term of referrals through the API as
they happen on a simulated clock shared by every process (one day passes every
``--seconds-per-day`` seconds). Breach alerts are printed as the workers
raise them, most of them by deadline timers at midnight with no new event. At the end it
prints the measures that ``mhst-tracker replay`` gives for the same events at the same
moment, a team's waiting list from the store, and a sample of the workers' metrics.

Alerts are shown by team, school and stage only: the demo prints no referral id.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import re
import shutil
import subprocess
import sys
import time
import urllib.request
from collections import Counter
from datetime import UTC, date, datetime, timedelta
from datetime import time as clock_time
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import httpx
import orjson
from aiokafka import AIOKafkaConsumer
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError

from deploy.local.errors import ServiceError
from deploy.local.kafka import KafkaBroker
from deploy.local.process import CACHE_DIR, ManagedProcess, free_port
from deploy.local.prometheus import PrometheusServer
from deploy.local.receivers import Mailbox, WebhookReceiver, smtp_server, webhook_receiver
from mhst_tracker.domain.errors import InvalidEvent
from mhst_tracker.domain.events import Event, parse_event
from mhst_tracker.domain.measures import WAIT_BANDS
from mhst_tracker.domain.profile import TRAILBLAZER_4WW
from mhst_tracker.replay import replay
from mhst_tracker.simulate import simulate
from mhst_tracker.timesource import SimulatedClock
from mhst_tracker.topics import ALERTS_TOPIC

START = date(2026, 9, 7)
"""A Monday early in the autumn term."""
WORKER_START_SECONDS = 12.0
"""Wall seconds given to the workers to start before the simulated clock reaches the first day."""
TRACKER = [str(Path(sys.executable).with_name("mhst-tracker"))]
SOURCE = "demo-portal"
"""The source system the demo's events come from: the name of its API token."""
_WAITING_SERIES = re.compile(r'^mhst_referrals_waiting\{band="(?P<band>[^"]+)".*\} (?P<value>\S+)$')
ROUTING = Path(__file__).resolve().parents[1] / "notify" / "notify.toml"
DEMO_WEBHOOK_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``python -m deploy.local.demo``."""
    parser = argparse.ArgumentParser(prog="python -m deploy.local.demo", description=__doc__)
    parser.add_argument("--referrals", type=int, default=240, help="simulated referrals")
    parser.add_argument("--seed", type=int, default=2026, help="simulation seed")
    parser.add_argument(
        "--seconds-per-day", type=float, default=1.0, help="wall seconds per simulated day"
    )
    parser.add_argument(
        "--keep", action="store_true", help="keep the workers running until Ctrl-C at the end"
    )
    args = parser.parse_args(argv)
    try:
        run(args.referrals, args.seed, args.seconds_per_day, args.keep)
    except ServiceError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("\nstopped")
    return 0


def run(referrals: int, seed: int, seconds_per_day: float, keep: bool) -> None:
    """Run the whole demo; every process it starts is stopped before it returns."""
    lines = list(simulate(seed, START, referrals=referrals))
    work = CACHE_DIR / "demo"
    shutil.rmtree(work, ignore_errors=True)  # each demo has a new broker: no stale state
    work.mkdir(parents=True)
    (work / "events.jsonl").write_text("\n".join(lines) + "\n")
    database = work / "mhst-tracker.db"
    last_event = max(_occurred(line) or datetime.min.replace(tzinfo=UTC) for line in lines)
    # Stop the day after the last event: the referrals still open then are really waiting.
    end = datetime.combine(last_event.date() + timedelta(days=2), clock_time(), UTC)
    begin = datetime.combine(START, clock_time(7, 0), UTC)
    print(f"==> simulated {len(lines)} events for {referrals} referrals from {START}")

    broker = KafkaBroker()
    prometheus = PrometheusServer()
    processes: list[ManagedProcess] = []
    # The notifier's SMTP server and webhook receiver run in this process.
    receivers = contextlib.ExitStack()
    smtp_port, mailbox = receivers.enter_context(
        smtp_server(mailbox=Mailbox(on_message=_print_email))
    )
    receiver = receivers.enter_context(webhook_receiver(DEMO_WEBHOOK_SECRET))
    try:
        print("==> starting a local Kafka broker")
        broker.start()
        broker.wait_ready()
        print(f"    Kafka at {broker.bootstrap}")
        metrics_ports = [free_port(), free_port()]
        env = {
            **os.environ,
            "MHST_KAFKA_BOOTSTRAP": broker.bootstrap,
            "MHST_PARTITIONS": "6",
            "MHST_DATABASE_URL": f"sqlite+aiosqlite:///{database}",
        }
        _run_tracker(["topics", "create"], env)
        _run_tracker(["db", "upgrade"], env)
        teams = sorted({event.team_id for event in map(_parsed, lines) if event and event.team_id})
        token = _run_tracker(
            ["tokens", "create", "--source", SOURCE, "--teams", ",".join(teams)], env
        )
        api_port = free_port()
        api = {**env, "MHST_API_PORT": str(api_port), "MHST_API_METRICS_PORT": str(free_port())}
        processes.append(_start_tracker("api", ["api", "--loglevel", "warning"], api, work))
        api_url = f"http://127.0.0.1:{api_port}"
        _wait_ready(api_url, processes)
        print(f"==> the ingestion API is at {api_url}, with a token for {SOURCE}")
        # The simulated day begins once the workers have had time to join their group.
        clock = SimulatedClock.starting(
            begin, 86400 / seconds_per_day, time.time() + WORKER_START_SECONDS
        )
        env["MHST_CLOCK"] = clock.spec
        for number, port in enumerate(metrics_ports, start=1):
            processes.append(
                _start_tracker(
                    f"worker {number}",
                    ["worker", "--loglevel", "warning"],
                    {
                        **env,
                        "MHST_METRICS_PORT": str(port),
                        "MHST_WORKER_DATA_DIR": str(work / f"worker-{number}"),
                    },
                    work,
                )
            )
        processes.append(
            _start_tracker(
                "sink", ["sink"], {**env, "MHST_SINK_METRICS_PORT": str(free_port())}, work
            )
        )
        notifier_port = free_port()
        processes.append(
            _start_tracker(
                "notifier",
                ["notify", "--loglevel", "warning"],
                {
                    **env,
                    "MHST_NOTIFY_CONFIG": str(_routing(work, smtp_port, receiver.url)),
                    "MHST_NOTIFY_METRICS_PORT": str(notifier_port),
                    "MHST_NOTIFY_PORT": str(free_port()),
                    "MHST_WEBHOOK_SECRET_LA": DEMO_WEBHOOK_SECRET,
                },
                work,
            )
        )
        prometheus.start([f"127.0.0.1:{port}" for port in metrics_ports])
        prometheus.wait_ready()
        prometheus.set_targets(
            [f"127.0.0.1:{port}" for port in metrics_ports], (), [f"127.0.0.1:{notifier_port}"]
        )
        env["MHST_PROMETHEUS_URL"] = prometheus.url
        started = time.monotonic()
        asyncio.run(_wait_for_group(broker.bootstrap, "mhst-tracker", 2, processes))
        print(f"==> workers joined their consumer group in {time.monotonic() - started:.1f} s")
        if clock.now() > begin:
            print("    (later than planned: the first alerts may come in a burst)")
        print(
            f"==> two workers and the sink are running; one simulated day every "
            f"{seconds_per_day:g} s, from {begin:%a %d %b %Y} to {end:%a %d %b %Y}"
        )
        counts, refused = asyncio.run(
            _play(broker.bootstrap, (api_url, token.strip()), lines, clock, end, processes)
        )
        _report(lines, clock, end, counts, env, metrics_ports, refused)
        _print_notifications(mailbox, receiver)
        if keep:
            print("workers still running; Ctrl-C stops everything")
            while True:
                time.sleep(3600)
    finally:
        for process in reversed(processes):
            process.stop()
        prometheus.stop()
        broker.stop()
        receivers.close()


async def _wait_for_group(
    bootstrap: str, group: str, members: int, processes: list[ManagedProcess]
) -> None:
    """Wait until the workers' consumer group is stable with ``members`` members."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            _check_alive(processes)
            try:
                (response,) = await admin.describe_consumer_groups([group])
            except KafkaError:  # the offsets topic and the group's coordinator are still coming up
                response = None
            if response is not None:
                _error, _group, state, _type, _protocol, joined = response.groups[0][:6]
                if state == "Stable" and len(joined) == members:
                    return
            await asyncio.sleep(0.25)
        raise ServiceError(f"the workers did not form a stable group of {members} in 120 s")
    finally:
        await admin.close()


def _parsed(line: str) -> Event | None:
    try:
        return parse_event(line)
    except InvalidEvent:
        return None


def _occurred(line: str) -> datetime | None:
    event = _parsed(line)
    return None if event is None else event.occurred_at


def _run_tracker(args: list[str], env: dict[str, str]) -> str:
    """Run a command to its end; its standard output."""
    result = subprocess.run([*TRACKER, *args], env=env, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise ServiceError(f"mhst-tracker {' '.join(args)} failed:\n{result.stderr[-2000:]}")
    return result.stdout


def _wait_ready(url: str, processes: list[ManagedProcess]) -> None:
    """Until the API's ``/readyz`` answers 200 (60 s at most)."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        _check_alive(processes)
        try:
            if httpx.get(f"{url}/readyz", timeout=5).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.25)
    raise ServiceError(f"the ingestion API at {url} was not ready in 60 s")


def _start_tracker(name: str, args: list[str], env: dict[str, str], work: Path) -> ManagedProcess:
    log = work / f"{name.replace(' ', '-')}.log"
    log.unlink(missing_ok=True)
    process = ManagedProcess(name, [*TRACKER, *args], log, env=env)
    process.start()
    return process


async def _play(
    bootstrap: str,
    api: tuple[str, str],
    lines: list[str],
    clock: SimulatedClock,
    end: datetime,
    processes: list[ManagedProcess],
) -> tuple[Counter[str], Counter[str]]:
    """Send the events through the API; the alerts printed and counted, and the reasons of
    the events the API refused."""
    consumer = AIOKafkaConsumer(
        ALERTS_TOPIC, bootstrap_servers=bootstrap, auto_offset_reset="earliest"
    )
    await consumer.start()
    watcher = asyncio.create_task(_print_alerts(consumer, clock, end))
    try:
        refused = await _send(api, lines, clock, processes)
        while clock.now() < end:
            _check_alive(processes)
            await asyncio.sleep(0.2)
        await asyncio.sleep(3)  # alerts detected by the end still on their way
    finally:
        watcher.cancel()
        counts = await asyncio.gather(watcher, return_exceptions=True)
        await consumer.stop()
    result = counts[0]
    return (result if isinstance(result, Counter) else Counter()), refused


async def _send(
    api: tuple[str, str], lines: list[str], clock: SimulatedClock, processes: list[ManagedProcess]
) -> Counter[str]:
    """POST each event (NDJSON, with the portal's token) when the simulated clock reaches it;
    late uploads go when they come. Returns the reasons of the events the API refused."""
    url, token = api
    refused: Counter[str] = Counter()
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/x-ndjson"}
    async with httpx.AsyncClient(base_url=url, headers=headers, timeout=30) as client:

        async def post(batch: list[str]) -> None:
            if not batch:
                return
            answer = await client.post("/v1/events", content="\n".join(batch).encode())
            if answer.status_code != 202:
                raise ServiceError(f"the API answered {answer.status_code}: {answer.text}")
            for item in answer.json()["results"]:
                if item["status"] == "rejected":
                    refused[item["reason"]] += 1
            batch.clear()

        due: list[str] = []
        uploaded_up_to = datetime.min.replace(tzinfo=UTC)
        for line in lines:
            occurred = _occurred(line)
            if occurred is not None and occurred > uploaded_up_to:
                await post(due)
                uploaded_up_to = occurred
                await asyncio.sleep(clock.wall_seconds_until(occurred))
                _check_alive(processes)
            due.append(line)
        await post(due)
    return refused


def _check_alive(processes: list[ManagedProcess]) -> None:
    for process in processes:
        code = process.exit_code()
        if code is not None:
            raise ServiceError(
                f"{process.name} exited with code {code}; log {process.log_path}:\n"
                f"{process.log_tail()}"
            )


async def _print_alerts(
    consumer: AIOKafkaConsumer, clock: SimulatedClock, end: datetime
) -> Counter[str]:
    """Print each alert detected by ``end`` once; a re-sent one (same ``alert_id``) is counted."""
    counts: Counter[str] = Counter()
    seen: set[str] = set()
    zone = TRAILBLAZER_4WW.timezone
    try:
        async for record in consumer:
            assert record.value is not None
            alert: dict[str, Any] = orjson.loads(record.value)
            if datetime.fromisoformat(alert["detected_at"]) > end:
                continue
            if alert["alert_id"] in seen:
                counts["re-sent (same alert_id, ignored)"] += 1
                continue
            seen.add(alert["alert_id"])
            counts[f"{alert['kind']} {alert['stage']}"] += 1
            school = alert.get("school_id") or "-"
            print(
                f"  {clock.now().astimezone(zone):%a %d %b %H:%M}  {alert['kind']:<16} "
                f"{alert['stage']:<12} team {alert['team_id']:<7} school {school:<6}  "
                f"due {alert['due_on']}  waited {alert['days_waited']} d"
            )
    except asyncio.CancelledError:
        pass
    return counts


def _report(
    lines: list[str],
    clock: SimulatedClock,
    end: datetime,
    counts: Counter[str],
    env: dict[str, str],
    metrics_ports: list[int],
    refused: Counter[str],
) -> None:
    result = replay(lines, end, TRAILBLAZER_4WW)
    overall = result.summary.overall
    print(f"\n==> the API refused {sum(refused.values())} events, by reason (as it answered them):")
    for reason, count in sorted(refused.items()):
        print(f"    {reason:<60} {count}")
    print("\n==> alerts raised by the workers, by kind and stage:")
    for key, count in sorted(counts.items()):
        print(f"    {key:<30} {count}")
    print(f"\n==> the same events replayed as of {end:%d %b %Y} (mhst-tracker replay):")
    print(
        f"    referrals: {len(result.referrals)}, rejected lines: {len(result.rejected)}, "
        f"duplicates: {result.duplicates}"
    )
    share = overall.seen_within_standard_share
    print(
        f"    completed pathways: {overall.completed}, seen within four weeks: "
        f"{overall.seen_within_standard}" + (f" ({share:.0%})" if share is not None else "")
    )
    print(
        f"    still waiting: {overall.waiting}, past the standard: {overall.waiting_past_standard}"
    )
    print(f"    breaches by stage: {dict(overall.breaches)}")
    team = min(result.summary.by_team)
    listing = subprocess.run(
        [*TRACKER, "waiting-list", "--team", team, "--as-of", end.isoformat()],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    print(f"\n==> waiting list of team {team} from the store (mhst-tracker waiting-list):")
    print(listing.stdout or listing.stderr)
    print("==> metrics served by the workers (each reports only the partitions it owns):")
    for port in metrics_ports:
        print(f"    http://127.0.0.1:{port}/metrics")
    # Wait bands move at local midnight, and each worker restates its metrics just after
    # (once that midnight's alerts are out); sample at the next local noon, well clear of it.
    zone = TRAILBLAZER_4WW.timezone
    today = clock.now().astimezone(zone).date()
    noon = datetime.combine(today, clock_time(12), zone)
    if noon <= clock.now():
        noon += timedelta(days=1)
    time.sleep(clock.wall_seconds_until(noon))
    seen_at = clock.now()
    bands = _waiting_by_band(metrics_ports)
    expected = replay(lines, seen_at, TRAILBLAZER_4WW).summary.overall.waiting_by_band
    print(f"    waiting by band, summed over both workers at {seen_at:%d %b %H:%M}: {bands}")
    print(f"    replay of the same events as of that moment:       {dict(expected)}")
    print(
        f"\nevents file: {CACHE_DIR / 'demo' / 'events.jsonl'}; store: {env['MHST_DATABASE_URL']}"
    )
    _pages(env, end)


def _pages(env: dict[str, str], end: datetime) -> None:
    """The dashboards drawn from the demo's Prometheus, and the monthly report, as pages."""
    pages = CACHE_DIR / "demo"
    month = (end - timedelta(days=1)).strftime("%Y-%m")
    for args in (
        ["dashboard-check", "--html", str(pages / "dashboards.html")],
        ["report", "--period", month, "--format", "html", "--out", str(pages / "report.html")],
    ):
        subprocess.run([*TRACKER, *args], env=env, check=False)
    print(f"==> open in a browser: {pages / 'dashboards.html'} and {pages / 'report.html'}")


def _routing(work: Path, smtp_port: int, webhook_url: str) -> Path:
    """The worked routing file, its SMTP server and webhook pointed at this process's."""
    text = ROUTING.read_text()
    text = re.sub(r"(?m)^host = .*$", 'host = "127.0.0.1"', text)
    text = re.sub(r"(?m)^port = .*$", f"port = {smtp_port}", text)
    text = re.sub(r"(?m)^security = .*$", 'security = "none"', text)
    text = re.sub(r"(?m)^(username|password)_env = .*\n", "", text)
    text = re.sub(r"(?m)^url = .*$", f'url = "{webhook_url}"', text)
    # A "no new breaches" digest every simulated day (a wall second) would drown the rest.
    text = text.replace("empty_digest = true", "empty_digest = false")
    path = work / "notify.toml"
    path.write_text(text)
    return path


def _print_email(message: EmailMessage) -> None:
    """One line per email as it arrives; a digest whole."""
    subject = str(message["Subject"])
    print(f"  email to {message['To']}: {subject}")
    if subject.startswith("Daily digest"):
        body = message.get_body(("plain",))
        text = body.get_content() if isinstance(body, EmailMessage) else ""
        for line in text.replace("\r\n", "\n").splitlines():
            print(f"      | {line}")


def _print_notifications(mailbox: Mailbox, receiver: WebhookReceiver) -> None:
    """What the notifier sent, by recipient."""
    emails = Counter(str(message["To"]) for message in mailbox.received())
    print("\n==> notifications sent by the notifier (mhst-tracker notify):")
    for address, count in sorted(emails.items()):
        print(f"    {count:>4} email(s) to {address}")
    hooks = receiver.delivered_ids()
    print(
        f"    {len(hooks):>4} signed webhook(s) to the local authority's receiver, each"
        f" checked against its signature ({sum(hooks.values()) - len(hooks)} repeated)"
    )


def _waiting_by_band(ports: list[int]) -> dict[str, int]:
    """``mhst_referrals_waiting`` summed over every worker's series, by wait band."""
    totals: Counter[str] = Counter()
    for port in ports:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=3) as resp:
            text = resp.read().decode()
        for line in text.splitlines():
            match = _WAITING_SERIES.match(line)
            if match:
                totals[match["band"]] += int(float(match["value"]))
    return {band: totals[band] for band, _upper in WAIT_BANDS}


if __name__ == "__main__":
    sys.exit(main())
