"""The tracker's Prometheus metrics: the clinical measures, the workers' and the sink's health.

Every metric the project defines lives here, registered on an injectable
``CollectorRegistry``, named ``mhst_*`` in base units. Labels are only ``team``,
``school``, ``stage``, ``band``, ``kind``, ``reason`` and ``type`` (and the sink's and the
notifier's ``topic``, ``table``, ``outcome``, ``channel``, ``status`` and ``recipient``, a
name from the routing file; the ingestion API's ``route``, ``status`` and ``source``, a
source system's name): never a referral or alert id.

**Clinical gauges are computed at scrape time** by a custom collector from per-partition
aggregates. A stream worker reports each referral's state as it changes
(:meth:`ClinicalMetrics.observe_state`), loads a whole partition when it is assigned and
whenever the local date rolls over (:meth:`ClinicalMetrics.replace_partition`: days waited,
and so the wait bands, move with the date without any event) and drops the partitions it
loses (:meth:`ClinicalMetrics.partitions_revoked`). A worker therefore only reports the
referrals of the partitions it owns, and summing a gauge over all workers gives the true
figure, before and after a rebalance, with no stale series left behind.

The collector remembers what each referral last contributed, so a new state replaces the
old contribution exactly even when the two were computed on different days. That costs one
small dictionary entry per tracked referral.

What a referral contributes (waiting and in which band, past the standard, at risk,
completed and seen within the standard, breached stages) is the engine's own summary of
that single referral (:func:`mhst_tracker.domain.measures.summarise`), so the metrics and
``replay`` cannot disagree about a classification.

Counters (alerts, events processed and rejected) and histograms (processing lag, timer
lateness) are ordinary per-worker series; query them with ``rate``/``increase`` summed
over workers. The store sink's own metrics (:class:`SinkMetrics`: lag, retries, rows
written) are labelled by topic, table and outcome only; the notifier's
(:class:`NotifierMetrics`) by channel, recipient, outcome and status.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any, Final
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server
from wsgiref.types import StartResponse

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, make_wsgi_app
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.exposition import ThreadingWSGIServer
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector
from prometheus_client.samples import Sample

from mhst_tracker.domain.alerts import Alert
from mhst_tracker.domain.clock import ReferralState
from mhst_tracker.domain.measures import WAIT_BANDS, summarise
from mhst_tracker.domain.profile import Profile

SECONDS_PER_DAY: Final = 86_400
WAIT_BUCKET_DAYS: Final = (0, 7, 14, 21, 28, 42, 56, 84, 126, 182, 365)
"""Upper bounds, in days waited, of the completed-pathway histogram (the profile's stage
targets and warning days are added): the standard's boundaries, so ``le`` of 28 days counts
pathways seen within four weeks and 84 days the end of the ``28-84`` band."""

LAG_BUCKETS_SECONDS: Final = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
NO_SCHOOL: Final = ""
"""The school of a referral without one: its series carry no ``school`` label at all (an
empty label value is what Prometheus means by an absent label; exposing it is noise)."""
MILLISECONDS_SUFFIX: Final = "_ms"

_REASON_QUOTED: Final = re.compile(r"""'[^']*'|"[^"]*\"""")
_REASON_DIGITS: Final = re.compile(r"\d+")
_REASON_MAX_LENGTH: Final = 80


def reason_label(reason: str) -> str:
    """A bounded ``reason`` label for a rejection reason.

    The engine's reasons name the field and the rule, never a value; what detail a reason
    may still carry (a JSON parser's position after a colon, a size limit) is dropped, and
    anything quoted too, so the label set stays small and no input value can reach a label:
    ``invalid JSON``, ``event larger than N bytes``, ``type is not one of the allowed
    values``.
    """
    head = reason.split(":", 1)[0]
    head = _REASON_QUOTED.sub("", head)
    head = _REASON_DIGITS.sub("N", head)
    return " ".join(head.split())[:_REASON_MAX_LENGTH] or "unknown"


@dataclass(frozen=True, slots=True)
class _Layout:
    """Where each count sits in a group's vector of counts."""

    bands: tuple[str, ...]
    stages: tuple[str, ...]
    bucket_days: tuple[int, ...]

    # Fixed slots first, then one per band, one per stage, one per histogram bucket,
    # then the histogram's sum of seconds.
    WAITING_PAST_STANDARD = 0
    AT_RISK = 1
    COMPLETED = 2
    SEEN_WITHIN_STANDARD = 3
    CLOSED_BEFORE_INTERVENTION = 4
    FIXED = 5

    @property
    def band_offset(self) -> int:
        return self.FIXED

    @property
    def stage_offset(self) -> int:
        return self.FIXED + len(self.bands)

    @property
    def bucket_offset(self) -> int:
        return self.stage_offset + len(self.stages)

    @property
    def sum_index(self) -> int:
        return self.bucket_offset + len(self.bucket_days)

    @property
    def size(self) -> int:
        return self.sum_index + 1


_GroupKey = tuple[str, str]
"""``(team, school)`` of a group of referrals; school is ``NO_SCHOOL`` when not labelled."""


_Contribution = tuple[_GroupKey, tuple[int, ...]] | None
"""What one referral adds to its group's counts; ``None`` for a referral with no receipt."""


class _Partition:
    """One partition's counts per group, and what each of its referrals contributed."""

    __slots__ = ("groups", "referrals")

    def __init__(self) -> None:
        self.groups: dict[_GroupKey, list[int]] = {}
        self.referrals: dict[str, _Contribution] = {}


class Restatement:
    """Partitions' counts being rebuilt from their referrals' states
    (:meth:`ClinicalMetrics.restatement`)."""

    __slots__ = ("_metrics", "parts")

    def __init__(self, metrics: ClinicalMetrics, partitions: Iterable[int]) -> None:
        self._metrics = metrics
        self.parts = {partition: _Partition() for partition in partitions}

    def add(self, partition: int, state: ReferralState) -> None:
        """A referral of ``partition`` in ``state``."""
        metrics = self._metrics
        metrics._put(self.parts[partition], state.referral_id, metrics._contribution(state))


class ClinicalMetrics:
    """The clinical measures and the worker's health metrics, on one registry.

    ``school_labels=False`` (``Settings.metrics_school_labels``) drops the ``school`` label
    from every series, for deployments with many schools per team.
    """

    def __init__(
        self,
        profile: Profile,
        registry: CollectorRegistry | None = None,
        *,
        school_labels: bool = True,
    ) -> None:
        self.profile = profile
        self.registry = ExpositionRegistry() if registry is None else registry
        self.school_labels = school_labels
        extra_days = {stage.target_days for stage in profile.stages} | {
            stage.at_risk_day for stage in profile.stages if stage.at_risk_day is not None
        }
        self._layout = _Layout(
            bands=tuple(name for name, _ in WAIT_BANDS),
            stages=tuple(stage.name for stage in profile.stages),
            bucket_days=tuple(sorted(set(WAIT_BUCKET_DAYS) | extra_days)),
        )
        self._partitions: dict[int, _Partition] = {}
        self._lock = threading.Lock()
        self._contributions: dict[tuple[object, ...], tuple[int, ...]] = {}

        self._alerts: dict[tuple[str, str, str, str], int] = {}
        self.events_processed = Counter(
            "mhst_events_processed",
            "Valid events applied to a referral's clock, by event type.",
            ("type",),
            registry=self.registry,
        )
        self.events_duplicate = Counter(
            "mhst_events_duplicate",
            "Valid events ignored because their event_id was seen before, by event type.",
            ("type",),
            registry=self.registry,
        )
        self._event_series: dict[tuple[bool, str], Any] = {}
        """The child series of the two event counters, by (duplicate, type): a ``labels``
        lookup per event was a measurable share of a worker's time."""
        self.events_rejected = Counter(
            "mhst_events_rejected",
            "Invalid events sent to the dead-letter topic, by reason and declared type.",
            ("reason", "type"),
            registry=self.registry,
        )
        self.processing_lag = Histogram(
            "mhst_event_processing_lag_seconds",
            "Wall time from an event's Kafka timestamp to the end of its processing.",
            buckets=LAG_BUCKETS_SECONDS,
            registry=self.registry,
        )
        self.timer_lateness = Histogram(
            "mhst_timer_lateness_seconds",
            "Wall time between a deadline (breach or warning moment) and its timer's alert.",
            buckets=LAG_BUCKETS_SECONDS,
            registry=self.registry,
        )
        self.registry.register(_ClinicalCollector(self))

    # --- the seam the stream workers call ------------------------------------------------

    def observe_state(self, partition: int, state: ReferralState) -> None:
        """A referral of ``partition`` is now in ``state`` (after an event or a deadline)."""
        contribution = self._contribution(state)
        with self._lock:
            part = self._partitions.get(partition)
            if part is None:
                part = self._partitions[partition] = _Partition()
            self._put(part, state.referral_id, contribution)

    def replace_partition(self, partition: int, states: Iterable[ReferralState]) -> None:
        """``partition`` is owned and holds exactly ``states``: call on assignment (after
        the table is recovered) and for every owned partition when the local date changes."""
        restatement = self.restatement({partition})
        for state in states:
            restatement.add(partition, state)
        self.install(restatement)

    def restatement(self, partitions: Iterable[int]) -> Restatement:
        """Counts for ``partitions`` built state by state, put in place by :meth:`install`
        (only each referral's contribution is kept, not its state)."""
        return Restatement(self, partitions)

    def install(self, restatement: Restatement, *, skip: Iterable[int] = ()) -> None:
        """Each partition of ``restatement`` but ``skip`` is owned and holds exactly the
        states added to it."""
        skipped = set(skip)
        with self._lock:
            for partition, part in restatement.parts.items():
                if partition not in skipped:
                    self._partitions[partition] = part

    def partitions_revoked(self, partitions: Iterable[int]) -> None:
        """The worker no longer owns ``partitions``: their contribution disappears."""
        with self._lock:
            for partition in partitions:
                self._partitions.pop(partition, None)

    @property
    def owned_partitions(self) -> frozenset[int]:
        """The partitions whose referrals this worker currently reports."""
        with self._lock:
            return frozenset(self._partitions)

    def observe_alert(self, alert: Alert) -> None:
        """An alert was sent to the alerts topic."""
        school = (alert.school_id or NO_SCHOOL) if self.school_labels else NO_SCHOOL
        key = (alert.team_id or "", school, alert.stage, alert.kind.value)
        with self._lock:
            self._alerts[key] = self._alerts.get(key, 0) + 1

    def observe_event(self, event_type: str, *, duplicate: bool = False) -> None:
        """A valid event of ``event_type`` was applied (or ignored as a duplicate)."""
        series = self._event_series.get((duplicate, event_type))
        if series is None:
            counter = self.events_duplicate if duplicate else self.events_processed
            series = self._event_series[duplicate, event_type] = counter.labels(event_type)
        series.inc()

    def observe_rejected(self, reason: str, event_type: str | None = None) -> None:
        """An invalid event went to the dead-letter topic.

        ``event_type`` is the declared ``type`` when it is a known event type, else ``None``
        (reported as ``unknown``); ``reason`` is reduced by :func:`reason_label`.
        """
        self.events_rejected.labels(reason_label(reason), event_type or "unknown").inc()

    def observe_processing_lag(self, seconds: float) -> None:
        """An event finished processing ``seconds`` after its Kafka timestamp."""
        self.processing_lag.observe(max(0.0, seconds))

    def observe_timer_lateness(self, seconds: float) -> None:
        """A timer raised an alert ``seconds`` (wall time) after its deadline."""
        self.timer_lateness.observe(max(0.0, seconds))

    # --- aggregation ---------------------------------------------------------------------

    def _put(self, part: _Partition, referral_id: str, contribution: _Contribution) -> None:
        previous = part.referrals.get(referral_id)
        if previous is not None:
            key, counts = previous
            old_group = part.groups[key]
            for index, value in enumerate(counts):
                if value:
                    old_group[index] -= value
            if not any(old_group):
                del part.groups[key]
        part.referrals[referral_id] = contribution
        if contribution is not None:
            key, counts = contribution
            group = part.groups.get(key)
            if group is None:
                group = part.groups[key] = [0] * self._layout.size
            for index, value in enumerate(counts):
                if value:
                    group[index] += value

    def _contribution(self, state: ReferralState) -> _Contribution:
        """What one referral adds to the counts of its team and school."""
        team = state.team_id
        if team is None:  # no receipt: tracked, but in no measure
            return None
        school = (state.school_id or NO_SCHOOL) if self.school_labels else NO_SCHOOL
        return (team, school), self._counts(state)

    def _counts(self, state: ReferralState) -> tuple[int, ...]:
        """One referral's counts: the engine's summary of that referral alone (memoised)."""
        key = (
            state.status,
            state.days_waited,
            bool(state.at_risk_stages),
            tuple(None if stage is None else stage.state for stage in state.stages.values()),
        )
        cached = self._contributions.get(key)
        if cached is not None:
            return cached
        layout = self._layout
        measures = summarise([state], self.profile).overall
        counts = [0] * layout.size
        counts[layout.WAITING_PAST_STANDARD] = measures.waiting_past_standard
        counts[layout.AT_RISK] = measures.at_risk
        counts[layout.COMPLETED] = measures.completed
        counts[layout.SEEN_WITHIN_STANDARD] = measures.seen_within_standard
        counts[layout.CLOSED_BEFORE_INTERVENTION] = measures.closed_before_intervention
        for offset, band in enumerate(layout.bands):
            counts[layout.band_offset + offset] = measures.waiting_by_band[band]
        for offset, stage in enumerate(layout.stages):
            counts[layout.stage_offset + offset] = measures.breaches[stage]
        days = measures.median_days_waited  # of one completed pathway: its days waited
        if measures.completed and days is not None:
            for offset, bound in enumerate(layout.bucket_days):
                counts[layout.bucket_offset + offset] = int(days <= bound)
            counts[layout.sum_index] = days * SECONDS_PER_DAY
        contribution = tuple(counts)
        if len(self._contributions) > 100_000:
            self._contributions.clear()
        self._contributions[key] = contribution
        return contribution

    def _totals(self) -> tuple[dict[_GroupKey, list[int]], int, int]:
        """Counts per group summed over the owned partitions, referrals tracked, partitions."""
        totals: dict[_GroupKey, list[int]] = {}
        with self._lock:
            tracked = 0
            for part in self._partitions.values():
                tracked += len(part.referrals)
                for key, counts in part.groups.items():
                    total = totals.get(key)
                    if total is None:
                        totals[key] = list(counts)
                    else:
                        for index, value in enumerate(counts):
                            total[index] += value
            return totals, tracked, len(self._partitions)

    def collect_clinical(self) -> Iterator[Metric]:
        """The clinical gauges and the alert counters as of now (what the custom collector
        yields per scrape). A group without a school has no ``school`` label."""
        layout = self._layout
        totals, tracked, partitions = self._totals()
        with self._lock:
            alerts = dict(self._alerts)

        def family(name: str, documentation: str) -> GaugeMetricFamily:
            return GaugeMetricFamily(name, documentation)

        waiting = family(
            "mhst_referrals_waiting",
            "Open referrals whose intervention has not started, by wait band (days waited).",
        )
        past = family(
            "mhst_referrals_waiting_past_standard",
            "Waiting referrals whose intervention due date has passed.",
        )
        at_risk = family(
            "mhst_referrals_at_risk",
            "Waiting referrals with a pending stage whose warning day has been reached.",
        )
        completed = family("mhst_pathways_completed", "Referrals whose intervention has started.")
        within = family(
            "mhst_pathways_seen_within_standard",
            "Completed pathways whose intervention started within its target.",
        )
        closed = family(
            "mhst_referrals_closed_before_intervention",
            "Referrals closed before their intervention started.",
        )
        breached = family(
            "mhst_stage_breaches",
            "Referrals whose stage is breached (waiting, seen or closed).",
        )
        # An ordinary histogram: Prometheus has no gauge histogram in its text format, and a
        # classic histogram's buckets, _count and _sum need not only grow.
        histogram = HistogramMetricFamily(
            "mhst_pathway_wait_seconds",
            "Days waited by completed pathways, times 86400 (buckets at the standard's days).",
        )
        for (team, school), counts in sorted(totals.items()):
            labels = self._labels(team, school)

            def add(metric: GaugeMetricFamily, value: int, **extra: str) -> None:
                metric.add_sample(metric.name, {**labels, **extra}, value)  # noqa: B023

            for offset, band in enumerate(layout.bands):
                add(waiting, counts[layout.band_offset + offset], band=band)
            add(past, counts[layout.WAITING_PAST_STANDARD])
            add(at_risk, counts[layout.AT_RISK])
            add(completed, counts[layout.COMPLETED])
            add(within, counts[layout.SEEN_WITHIN_STANDARD])
            add(closed, counts[layout.CLOSED_BEFORE_INTERVENTION])
            for offset, stage in enumerate(layout.stages):
                add(breached, counts[layout.stage_offset + offset], stage=stage)
            name = histogram.name
            for offset, days in enumerate(layout.bucket_days):
                bucket = {**labels, "le": str(float(days * SECONDS_PER_DAY))}
                histogram.samples.append(
                    Sample(f"{name}_bucket", bucket, counts[layout.bucket_offset + offset])
                )
            histogram.samples.extend(
                (
                    Sample(f"{name}_bucket", {**labels, "le": "+Inf"}, counts[layout.COMPLETED]),
                    Sample(f"{name}_count", labels, counts[layout.COMPLETED]),
                    Sample(f"{name}_sum", labels, counts[layout.sum_index]),
                )
            )
        yield from (waiting, past, at_risk, completed, within, closed, breached, histogram)
        raised = CounterMetricFamily(
            "mhst_alerts",
            "Alerts raised by this worker (breach, at_risk, breach_withdrawn), by stage.",
        )
        for (team, school, stage, kind), count in sorted(alerts.items()):
            raised.add_sample(
                "mhst_alerts_total",
                {**self._labels(team, school), "stage": stage, "kind": kind},
                count,
            )
        yield raised
        yield GaugeMetricFamily(
            "mhst_referrals_tracked",
            "Referrals in this worker's state table (the partitions it owns).",
            value=tracked,
        )
        yield GaugeMetricFamily(
            "mhst_worker_partitions_owned",
            "Partitions of the events topic this worker owns.",
            value=partitions,
        )

    def _labels(self, team: str, school: str) -> dict[str, str]:
        """A group's labels: ``team``, and ``school`` when labelled and known."""
        if self.school_labels and school != NO_SCHOOL:
            return {"team": team, "school": school}
        return {"team": team}


class _ClinicalCollector(Collector):
    """Yields :class:`ClinicalMetrics`' gauges, computed when Prometheus scrapes."""

    def __init__(self, metrics: ClinicalMetrics) -> None:
        self._metrics = metrics

    def collect(self) -> Iterable[Metric]:
        return list(self._metrics.collect_clinical())


class ExpositionRegistry(CollectorRegistry):
    """A registry whose exposition passes ``promtool check metrics``.

    Faust's sensor, registered on the same registry, names a histogram of milliseconds
    ``*_ms`` (an abbreviated, non-base unit): it is exposed as ``*_seconds``, its bounds
    and sum converted.
    """

    def collect(self) -> Iterator[Metric]:
        for metric in super().collect():
            yield _in_seconds(metric) if metric.name.endswith(MILLISECONDS_SUFFIX) else metric


def _in_seconds(metric: Metric) -> Metric:
    """A ``*_ms`` histogram as the same histogram in seconds."""
    base = metric.name.removesuffix(MILLISECONDS_SUFFIX)
    renamed = Metric(
        f"{base}_seconds", f"{metric.documentation}, converted to seconds", metric.type
    )
    for sample in metric.samples:
        suffix = sample.name.removeprefix(metric.name)
        labels = dict(sample.labels)
        value = sample.value
        if suffix == "_bucket" and labels.get("le") not in (None, "+Inf"):
            labels["le"] = str(float(labels["le"]) / 1000)
        if suffix == "_sum":
            value /= 1000
        renamed.samples.append(
            sample._replace(name=f"{base}_seconds{suffix}", labels=labels, value=value)
        )
    return renamed


class WorkerHealthMetrics:
    """A stream worker's own health: agent crashes, readiness, dead letters cut to fit, and
    the alert decisions deferred until their partitions are read to the broker's end."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.agent_crashes = Counter(
            "mhst_worker_agent_crashes",
            "Times an agent of this worker raised an exception and was restarted by Faust.",
            registry=registry,
        )
        self.dead_letters_truncated = Counter(
            "mhst_worker_dead_letters_truncated",
            "Rejected messages too large to copy whole, dead-lettered cut to fit.",
            registry=registry,
        )
        self.ready = Gauge(
            "mhst_worker_ready",
            "1 while the worker is ready (started, its agent consuming), else 0.",
            registry=registry,
        )
        self.deferred = Gauge(
            "mhst_worker_deferred_decisions",
            "Alert decisions due on this worker's partitions and not yet made: deferred until"
            " the partition is read to the broker's end offset.",
            registry=registry,
        )
        self.deferred_age = Gauge(
            "mhst_worker_deferred_decision_age_seconds",
            "Wall time since the oldest alert decision not yet made became due (0 when none).",
            registry=registry,
        )

    def report_deferred(self, count: int, age_seconds: float) -> None:
        """``count`` decisions are deferred, the oldest for ``age_seconds``."""
        self.deferred.set(count)
        self.deferred_age.set(age_seconds)

    def report_readiness(self, ready: Callable[[], bool]) -> None:
        """Make :attr:`ready` follow ``ready()`` (asked at each scrape)."""
        self.ready.set_function(lambda: 1.0 if ready() else 0.0)


Health = Callable[[], tuple[bool, str]]
"""Whether a process is ready, and a short reason (served on ``/healthz``)."""


def start_metrics_server(
    registry: CollectorRegistry,
    port: int,
    address: str = "0.0.0.0",
    health: Health | None = None,
) -> WSGIServer:
    """Serve ``registry`` at ``http://address:port/metrics`` from a daemon thread.

    With ``health``, ``/healthz`` answers 200 and the reason while it says ready, else 503
    and the reason. Returns the server; ``server.server_port`` is the port bound (useful
    with port 0), ``server.shutdown()`` stops it.
    """
    metrics_app = make_wsgi_app(registry)

    def app(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        if health is not None and environ.get("PATH_INFO") == "/healthz":
            ready, reason = health()
            status = "200 OK" if ready else "503 Service Unavailable"
            start_response(status, [("Content-Type", "text/plain; charset=utf-8")])
            return [reason.encode() + b"\n"]
        served: Iterable[bytes] = metrics_app(environ, start_response)
        return served

    server = make_server(address, port, app, ThreadingWSGIServer, handler_class=_QuietHandler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


class _QuietHandler(WSGIRequestHandler):
    """Logs no line per request (Prometheus scrapes every few seconds)."""

    def log_message(self, format: str, *args: Any) -> None:
        """Nothing."""


class SinkMetrics:
    """The store sink's own operational metrics (labels: topic, table, outcome)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        self.lag = Gauge(
            "mhst_store_sink_lag_messages",
            "Messages on the topic not yet committed by the store sink",
            ["topic"],
            registry=registry,
        )
        self.retrying = Gauge(
            "mhst_store_sink_retrying",
            "1 while the sink is retrying a batch the database refused, else 0",
            registry=registry,
        )
        self.retries = Counter(
            "mhst_store_sink_db_retries",
            "Database writes retried after a connection failure",
            registry=registry,
        )
        self.rows = Counter(
            "mhst_store_sink_rows",
            "Inputs written by the sink, by table and outcome (new or duplicate)",
            ["table", "outcome"],
            registry=registry,
        )
        self.invalid_alerts = Counter(
            "mhst_store_sink_invalid_alerts",
            "Alerts-topic messages that are not alert bodies (skipped)",
            registry=registry,
        )
        self.batch_seconds = Histogram(
            "mhst_store_sink_batch_seconds",
            "Time to write one batch to the database, retries included",
            registry=registry,
        )
        self.referrals_refreshed = Counter(
            "mhst_store_sink_referrals_refreshed",
            "Referral projection rows the sink refreshed (once per referral per window)",
            registry=registry,
        )
        self.last_commit = Gauge(
            "mhst_store_sink_last_commit_timestamp_seconds",
            "When the sink last committed Kafka offsets (POSIX seconds)",
            registry=registry,
        )

    def count(self, table: str, new: int, duplicate: int | None = None) -> None:
        """Add rows written to a table: ``new``, and ``duplicate`` inputs already stored
        (``None`` for a table whose duplicates are not counted)."""
        self.rows.labels(table, "new").inc(new)
        if duplicate is not None:
            self.rows.labels(table, "duplicate").inc(duplicate)


DELIVERY_LAG_BUCKETS_SECONDS: Final = (
    0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600, 21600, 86400,
)  # fmt: skip
"""Upper bounds of the notifier's delivery lag: an immediate delivery takes well under a
second, a retried one minutes to hours, a digest up to a day."""


class NotifierMetrics:
    """The notifier's metrics (labels: channel, recipient name, outcome, status; never an
    alert or referral id)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        self.deliveries = Counter(
            "mhst_notify_deliveries",
            "Delivery attempts by channel, recipient and outcome (delivered, retrying, failed)",
            ["channel", "recipient", "outcome"],
            registry=registry,
        )
        self.resent = Counter(
            "mhst_notify_resent",
            "Deliveries sent again with the same message id because a notifier stopped between"
            " sending them and recording the outcome (the receiver may have them twice)",
            ["channel", "recipient"],
            registry=registry,
        )
        self.duplicates = Counter(
            "mhst_notify_duplicates",
            "Routed alerts already in the ledger (re-sent by a worker or read again): not sent",
            registry=registry,
        )
        self.cancelled = Counter(
            "mhst_notify_cancelled",
            "Breach deliveries cancelled because the breach was withdrawn before delivery",
            registry=registry,
        )
        self.invalid_alerts = Counter(
            "mhst_notify_invalid_alerts",
            "Alerts-topic messages that are not alert bodies (skipped)",
            registry=registry,
        )
        self.lag = Histogram(
            "mhst_notify_delivery_lag_seconds",
            "Time from an alert's detected_at (the tracker's clock) to its delivery, by channel",
            ["channel"],
            buckets=DELIVERY_LAG_BUCKETS_SECONDS,
            registry=registry,
        )
        self.digests = Counter(
            "mhst_notify_digests",
            "Digests by recipient and outcome (delivered, empty, retrying, failed)",
            ["recipient", "outcome"],
            registry=registry,
        )
        self.ledger = Gauge(
            "mhst_notify_ledger_deliveries",
            "Rows of the delivery ledger by recipient and status (failed: given up, waiting"
            " for `mhst-tracker notify retry`)",
            ["recipient", "status"],
            registry=registry,
        )
        self.operations = Counter(
            "mhst_notify_operations_alerts",
            "Alertmanager notifications forwarded to the operations recipients, by outcome",
            ["outcome"],
            registry=registry,
        )
        self.last_commit = Gauge(
            "mhst_notify_last_commit_timestamp_seconds",
            "When the notifier last committed Kafka offsets (POSIX seconds)",
            registry=registry,
        )

    def ledger_counts(self, counts: dict[tuple[str, str], int]) -> None:
        """Publish the ledger's rows per (recipient, status) as counted now."""
        self.ledger.clear()
        for (recipient, status), count in counts.items():
            self.ledger.labels(recipient, status).set(count)


PRODUCE_BUCKETS_SECONDS: Final = (
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1,
    2.5,
    5,
    10,
)


class ApiMetrics:
    """The ingestion API's metrics (labels: route, status, source, reason).

    ``source`` is the source system a token names (an operator's name, never a sender's
    value); ``reason`` is bounded by :func:`reason_label`.
    """

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        self.requests = Counter(
            "mhst_api_requests",
            "HTTP requests answered by the ingestion API, by route and status code.",
            ("route", "status"),
            registry=registry,
        )
        self.request_seconds = Histogram(
            "mhst_api_request_duration_seconds",
            "Time from a request's arrival to its answer, by route.",
            ("route",),
            buckets=PRODUCE_BUCKETS_SECONDS,
            registry=registry,
        )
        self.accepted = Counter(
            "mhst_api_events_accepted",
            "Events the API accepted and the broker acknowledged, by source system.",
            ("source",),
            registry=registry,
        )
        self.rejected = Counter(
            "mhst_api_events_rejected",
            "Events the API rejected, by source system and reason.",
            ("source", "reason"),
            registry=registry,
        )
        self.produce_seconds = Histogram(
            "mhst_api_produce_duration_seconds",
            "Time from a request's events being sent to the broker's acknowledgement.",
            buckets=PRODUCE_BUCKETS_SECONDS,
            registry=registry,
        )

    def answered(self, route: str, status: int, seconds: float) -> None:
        """A request to ``route`` was answered with ``status`` after ``seconds``."""
        self.requests.labels(route, str(status)).inc()
        self.request_seconds.labels(route).observe(seconds)

    def events(self, source: str, accepted: int, reasons: Iterable[str]) -> None:
        """A source's request had ``accepted`` events acknowledged and these rejected."""
        if accepted:
            self.accepted.labels(source).inc(accepted)
        for reason in reasons:
            self.rejected.labels(source, reason_label(reason)).inc()
