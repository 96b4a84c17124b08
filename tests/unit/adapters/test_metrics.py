"""ClinicalMetrics against the engine: gauges equal the measures, across workers and rebalances."""

import dataclasses
import subprocess
import zlib
from collections.abc import Iterable, Mapping
from datetime import UTC, date, datetime

import faust
import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from mhst_tracker.adapters.metrics import SECONDS_PER_DAY, ClinicalMetrics, reason_label
from mhst_tracker.domain.alerts import Alert, AlertKind
from mhst_tracker.domain.clock import ReferralClock, ReferralState
from mhst_tracker.domain.errors import InvalidEvent
from mhst_tracker.domain.events import parse_event, parse_events
from mhst_tracker.domain.measures import GroupMeasures, summarise
from mhst_tracker.domain.profile import TRAILBLAZER_4WW
from mhst_tracker.replay import replay
from mhst_tracker.simulate import simulate
from streams.sensor import install_sensor
from tests.promtool import metrics_problems

PARTITIONS = 6
AS_OF = datetime(2026, 1, 20, 9, 0, tzinfo=UTC)


def partition_of(referral_id: str) -> int:
    return zlib.crc32(referral_id.encode()) % PARTITIONS


@pytest.fixture(scope="module")
def states() -> tuple[ReferralState, ...]:
    lines = list(simulate(7, date(2025, 11, 3), referrals=400))
    return replay(lines, AS_OF, TRAILBLAZER_4WW).referrals


def by_partition(states: Iterable[ReferralState]) -> dict[int, list[ReferralState]]:
    parts: dict[int, list[ReferralState]] = {p: [] for p in range(PARTITIONS)}
    for state in states:
        parts[partition_of(state.referral_id)].append(state)
    return parts


Samples = list[tuple[str, dict[str, str], float]]


def scrape(*registries: CollectorRegistry) -> Samples:
    samples: Samples = []
    for registry in registries:
        text = generate_latest(registry).decode()
        for family in text_string_to_metric_families(text):
            samples.extend((s.name, dict(s.labels), s.value) for s in family.samples)
    return samples


def total(samples: Samples, name: str, **labels: str) -> float:
    return sum(
        value
        for sample, sample_labels, value in samples
        if sample == name and all(sample_labels.get(k) == v for k, v in labels.items())
    )


def assert_matches(samples: Samples, measures: GroupMeasures, **labels: str) -> None:
    for band, count in measures.waiting_by_band.items():
        assert total(samples, "mhst_referrals_waiting", band=band, **labels) == count
    assert total(samples, "mhst_referrals_waiting", **labels) == measures.waiting
    assert (
        total(samples, "mhst_referrals_waiting_past_standard", **labels)
        == measures.waiting_past_standard
    )
    assert total(samples, "mhst_referrals_at_risk", **labels) == measures.at_risk
    assert total(samples, "mhst_pathways_completed", **labels) == measures.completed
    assert (
        total(samples, "mhst_pathways_seen_within_standard", **labels)
        == measures.seen_within_standard
    )
    assert (
        total(samples, "mhst_referrals_closed_before_intervention", **labels)
        == measures.closed_before_intervention
    )
    for stage, count in measures.breaches.items():
        assert total(samples, "mhst_stage_breaches", stage=stage, **labels) == count


def worker(partitions: Mapping[int, list[ReferralState]], owned: Iterable[int]) -> ClinicalMetrics:
    metrics = ClinicalMetrics(TRAILBLAZER_4WW)
    for partition in owned:
        metrics.replace_partition(partition, partitions[partition])
    return metrics


def test_gauges_equal_the_engine_summary_overall_by_team_and_by_school(
    states: tuple[ReferralState, ...],
) -> None:
    summary = summarise(states, TRAILBLAZER_4WW)
    assert summary.overall.waiting > 0
    assert summary.overall.completed > 0
    assert summary.overall.waiting_past_standard > 0
    metrics = worker(by_partition(states), range(PARTITIONS))
    samples = scrape(metrics.registry)
    assert_matches(samples, summary.overall)
    assert len(summary.by_team) > 1
    for team, measures in summary.by_team.items():
        assert_matches(samples, measures, team=team)
    for school, measures in summary.by_school.items():
        assert_matches(samples, measures, school=school)
    assert total(samples, "mhst_referrals_tracked") == len(states)
    assert total(samples, "mhst_worker_partitions_owned") == PARTITIONS


def test_histogram_buckets_count_completed_pathways_by_days_waited(
    states: tuple[ReferralState, ...],
) -> None:
    summary = summarise(states, TRAILBLAZER_4WW)
    samples = scrape(worker(by_partition(states), range(PARTITIONS)).registry)
    four_weeks = str(float(28 * SECONDS_PER_DAY))
    assert (
        total(samples, "mhst_pathway_wait_seconds_bucket", le=four_weeks)
        == summary.overall.seen_within_standard
    )
    assert total(samples, "mhst_pathway_wait_seconds_bucket", le="+Inf") == (
        summary.overall.completed
    )
    completed_days = [s.days_waited for s in states if s.status.value.startswith("seen_")]
    week = str(float(7 * SECONDS_PER_DAY))
    assert total(samples, "mhst_pathway_wait_seconds_bucket", le=week) == sum(
        1 for days in completed_days if days is not None and days <= 7
    )
    assert total(samples, "mhst_pathway_wait_seconds_sum") == SECONDS_PER_DAY * sum(
        days for days in completed_days if days is not None
    )
    assert total(samples, "mhst_pathway_wait_seconds_count") == summary.overall.completed


def test_two_workers_sum_to_the_whole_before_and_after_a_rebalance(
    states: tuple[ReferralState, ...],
) -> None:
    summary = summarise(states, TRAILBLAZER_4WW)
    parts = by_partition(states)
    first = worker(parts, [0, 1, 2])
    second = worker(parts, [3, 4, 5])
    assert_matches(scrape(first.registry, second.registry), summary.overall)

    first.partitions_revoked([2])
    second.replace_partition(2, parts[2])
    assert first.owned_partitions == {0, 1}
    assert second.owned_partitions == {2, 3, 4, 5}
    assert_matches(scrape(first.registry, second.registry), summary.overall)
    for team, measures in summary.by_team.items():
        assert_matches(scrape(first.registry, second.registry), measures, team=team)
    mine = summarise([*parts[0], *parts[1]], TRAILBLAZER_4WW)
    assert_matches(scrape(first.registry), mine.overall)


def test_a_restatement_installs_every_partition_built_but_those_skipped(
    states: tuple[ReferralState, ...],
) -> None:
    parts = by_partition(states)
    metrics = ClinicalMetrics(TRAILBLAZER_4WW)
    restatement = metrics.restatement([0, 1, 2])
    for partition in (0, 1, 2):
        for state in parts[partition]:
            restatement.add(partition, state)
    metrics.install(restatement, skip=[2])
    assert metrics.owned_partitions == {0, 1}
    mine = summarise([*parts[0], *parts[1]], TRAILBLAZER_4WW)
    assert_matches(scrape(metrics.registry), mine.overall)


def test_losing_a_partition_removes_the_series_only_it_contributed() -> None:
    received = {
        "event_id": "e1",
        "type": "referral_received",
        "referral_id": "R-ONLY",
        "occurred_at": "2026-01-05T10:00:00Z",
        "team_id": "T-SMALL",
        "school_id": "100001",
    }
    clock = ReferralClock("R-ONLY")
    clock.apply(parse_event(received))
    metrics = ClinicalMetrics(TRAILBLAZER_4WW)
    metrics.replace_partition(4, [clock.state(AS_OF, TRAILBLAZER_4WW)])
    assert total(scrape(metrics.registry), "mhst_referrals_waiting", team="T-SMALL") == 1

    metrics.partitions_revoked([4])
    samples = scrape(metrics.registry)
    assert not [s for s in samples if s[1].get("team") == "T-SMALL"]
    assert total(samples, "mhst_referrals_tracked") == 0
    assert total(samples, "mhst_worker_partitions_owned") == 0


def test_observing_every_change_equals_loading_the_final_states() -> None:
    lines = list(simulate(3, date(2025, 12, 1), referrals=120))
    clocks: dict[str, ReferralClock] = {}
    incremental = ClinicalMetrics(TRAILBLAZER_4WW)
    for event in parse_events(lines):
        if isinstance(event, InvalidEvent):
            continue
        clock = clocks.get(event.referral_id)
        if clock is None:
            clock = clocks[event.referral_id] = ReferralClock(event.referral_id)
        clock.apply(event)
        incremental.observe_state(
            partition_of(event.referral_id), clock.state(AS_OF, TRAILBLAZER_4WW)
        )
    final = [clock.state(AS_OF, TRAILBLAZER_4WW) for clock in clocks.values()]
    loaded = worker(by_partition(final), range(PARTITIONS))
    clinical = ("mhst_referrals", "mhst_pathway", "mhst_stage", "mhst_worker")

    def gauges(metrics: ClinicalMetrics) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
        return {
            (name, tuple(sorted(labels.items()))): value
            for name, labels, value in scrape(metrics.registry)
            if name.startswith(clinical) and value
        }

    assert gauges(incremental) == gauges(loaded)
    assert_matches(scrape(incremental.registry), summarise(final, TRAILBLAZER_4WW).overall)


def test_school_labels_can_be_switched_off(states: tuple[ReferralState, ...]) -> None:
    metrics = ClinicalMetrics(TRAILBLAZER_4WW, school_labels=False)
    for partition, part in by_partition(states).items():
        metrics.replace_partition(partition, part)
    metrics.observe_alert(alert())
    samples = scrape(metrics.registry)
    assert all("school" not in labels for _, labels, _ in samples)
    summary = summarise(states, TRAILBLAZER_4WW)
    for team, measures in summary.by_team.items():
        assert_matches(samples, measures, team=team)
    series_per_team = {
        name for name, labels, _ in samples if labels.get("team") == next(iter(summary.by_team))
    }
    assert series_per_team


def alert(kind: AlertKind = AlertKind.BREACH) -> Alert:
    return Alert(
        alert_id="a1",
        referral_id="R-SECRET-1",
        team_id="T1",
        school_id="100002",
        stage="allocation",
        kind=kind,
        due_on=date(2026, 1, 12),
        days_waited=8,
        detected_at=AS_OF,
    )


def test_counters_by_stage_kind_type_and_reason() -> None:
    metrics = ClinicalMetrics(TRAILBLAZER_4WW)
    metrics.observe_alert(alert())
    metrics.observe_alert(alert(AlertKind.BREACH_WITHDRAWN))
    metrics.observe_event("allocated")
    metrics.observe_event("allocated", duplicate=True)
    metrics.observe_rejected("unknown type 'zzz'", None)
    metrics.observe_rejected("occurred_at has no UTC offset", "allocated")
    metrics.observe_processing_lag(0.2)
    metrics.observe_timer_lateness(-1.0)
    samples = scrape(metrics.registry)
    assert (
        total(
            samples,
            "mhst_alerts_total",
            team="T1",
            school="100002",
            stage="allocation",
            kind="breach",
        )
        == 1
    )
    assert total(samples, "mhst_alerts_total") == 2
    assert total(samples, "mhst_events_processed_total", type="allocated") == 1
    assert total(samples, "mhst_events_duplicate_total", type="allocated") == 1
    assert total(samples, "mhst_events_rejected_total", reason="unknown type") == 1
    assert (
        total(
            samples,
            "mhst_events_rejected_total",
            reason="occurred_at has no UTC offset",
            type="allocated",
        )
        == 1
    )
    assert total(samples, "mhst_event_processing_lag_seconds_count") == 1
    assert total(samples, "mhst_timer_lateness_seconds_bucket", le="0.005") == 1


@pytest.mark.parametrize(
    ("reason", "label"),
    [
        ("unknown type 'referral_recieved'", "unknown type"),
        ("invalid JSON: unexpected character: line 1 column 2 (char 1)", "invalid JSON"),
        ("unsupported schema_version 7", "unsupported schema_version N"),
        ("event_id longer than 128 characters", "event_id longer than N characters"),
        ("missing team_id", "missing team_id"),
        ("'x'", "unknown"),
    ],
)
def test_reason_labels_are_bounded_and_carry_no_input(reason: str, label: str) -> None:
    assert reason_label(reason) == label


def test_exposition_is_promtool_clean_and_holds_no_referral_id(
    states: tuple[ReferralState, ...],
) -> None:
    metrics = worker(by_partition(states), range(PARTITIONS))
    metrics.observe_alert(alert())
    metrics.observe_rejected("referral_id longer than 64 characters", "allocated")
    text = generate_latest(metrics.registry).decode()
    checked = subprocess.run(
        ["promtool", "check", "metrics"], input=text, capture_output=True, text=True, check=False
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "R-SECRET-1" not in text
    for state in states:
        assert state.referral_id not in text


def test_a_new_state_replaces_what_the_referral_contributed_on_an_earlier_day() -> None:
    clock = ReferralClock("R-1")
    clock.apply(
        parse_event(
            {
                "event_id": "e1",
                "type": "referral_received",
                "referral_id": "R-1",
                "occurred_at": "2026-01-05T10:00:00Z",
                "team_id": "T1",
            }
        )
    )
    metrics = ClinicalMetrics(TRAILBLAZER_4WW)
    metrics.observe_state(0, clock.state(datetime(2026, 1, 7, tzinfo=UTC), TRAILBLAZER_4WW))
    assert total(scrape(metrics.registry), "mhst_referrals_waiting", band="0-6") == 1
    clock.apply(
        parse_event(
            {
                "event_id": "e2",
                "type": "allocated",
                "referral_id": "R-1",
                "occurred_at": "2026-01-15T10:00:00Z",
            }
        )
    )
    metrics.observe_state(0, clock.state(datetime(2026, 1, 20, tzinfo=UTC), TRAILBLAZER_4WW))
    samples = scrape(metrics.registry)
    assert total(samples, "mhst_referrals_waiting", band="0-6") == 0
    assert total(samples, "mhst_referrals_waiting", band="14-27") == 1
    assert total(samples, "mhst_referrals_waiting") == 1
    assert total(samples, "mhst_stage_breaches", stage="allocation") == 1
    assert total(samples, "mhst_referrals_tracked") == 1


def test_exposition_is_a_real_histogram_without_empty_labels_and_passes_promtool(
    states: tuple[ReferralState, ...],
) -> None:
    """What Prometheus reads: ``mhst_pathway_wait_seconds`` a histogram (buckets, _count,
    _sum), a referral without a school in series with no ``school`` label, Faust's
    milliseconds histogram in seconds, and ``promtool check metrics`` clean."""
    metrics = worker(by_partition(states), range(PARTITIONS))
    metrics.observe_alert(alert())
    metrics.observe_alert(dataclasses.replace(alert(), school_id=None))
    install_sensor(faust.App("metrics-test", broker="kafka://127.0.0.1:9"), metrics.registry)
    text = generate_latest(metrics.registry).decode()
    families = {family.name: family for family in text_string_to_metric_families(text)}
    assert families["mhst_pathway_wait_seconds"].type == "histogram"
    assert "_gcount" not in text
    assert "_gsum" not in text
    assert '=""' not in text
    assert any(state.school_id is None and state.team_id for state in states)
    unlabelled = [
        sample
        for sample in families["mhst_referrals_waiting"].samples
        if "school" not in sample.labels
    ]
    assert unlabelled
    assert total(scrape(metrics.registry), "mhst_alerts_total") == 2
    assert "mhst_faust_events_runtime_seconds_bucket" in text
    assert "_ms" not in text
    assert metrics_problems(text) == ""
