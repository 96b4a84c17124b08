"""Profiles: the waiting-time standard as data (stages, targets, warning days, time zone).

A profile lists its stages in pathway order. Each stage is completed by the first event of
one type; a later stage's event also completes every earlier stage. The **last stage is the
one that stops the clock** ("seen"): the referral statuses ``seen_within_standard`` and
``seen_late`` and the headline measure are about it.

Profiles load from TOML; ``deploy/profiles/trailblazer-4ww-day1.toml`` is a whole one. A
stage reads::

    [[stages]]
    name = "allocation"
    completed_by = "allocated"
    target_days = 6
    at_risk_day = 4

Rules checked (each failure is a :class:`ProfileError` naming the field): at least one
stage; stage names unique and non-empty; each stage completed by a different one of
``assessment_completed``, ``allocated``, ``intervention_started``; targets non-negative and
non-decreasing along the pathway (a later stage cannot be due before an earlier one it
completes); ``0 <= at_risk_day <= target_days`` when given; a known IANA time zone.
"""

import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from mhst_tracker.domain.errors import ProfileError
from mhst_tracker.domain.events import STAGE_EVENT_TYPES, EventType


@dataclass(frozen=True, slots=True)
class Stage:
    """One step of the pathway and its target, in days waited since the receipt date."""

    name: str
    completed_by: EventType
    target_days: int
    at_risk_day: int | None = None


@dataclass(frozen=True, slots=True)
class Profile:
    """A named standard: stages in pathway order and the time zone local dates are taken in."""

    name: str
    stages: tuple[Stage, ...]
    timezone: ZoneInfo

    def __post_init__(self) -> None:
        _check_stages(self.stages)


_STAGE_EVENT_TYPES_BY_NAME: Final = {
    event_type.value: event_type for event_type in STAGE_EVENT_TYPES
}


def load_profile(path: str | Path) -> Profile:
    """Read and validate a profile from a TOML file; errors name the file and the field."""
    path = Path(path)
    try:
        with path.open("rb") as file:
            data = tomllib.load(file)
    except FileNotFoundError:
        raise ProfileError(f"{path}: no such profile file") from None
    except tomllib.TOMLDecodeError as error:
        raise ProfileError(f"{path}: invalid TOML: {error}") from None
    try:
        return profile_from_dict(data)
    except ProfileError as error:
        raise ProfileError(f"{path}: {error}") from None


def profile_from_dict(data: Mapping[str, Any]) -> Profile:
    """Build a profile from a mapping shaped like the TOML file."""
    name = data.get("name")
    if not isinstance(name, str) or not name:
        raise ProfileError("name must be a non-empty string")
    zone_name = data.get("timezone", "Europe/London")
    if not isinstance(zone_name, str):
        raise ProfileError("timezone must be a string")
    try:
        timezone = ZoneInfo(zone_name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ProfileError(f"unknown timezone {zone_name!r}") from None
    raw_stages = data.get("stages")
    if not isinstance(raw_stages, list) or not raw_stages:
        raise ProfileError("stages must be a non-empty array of tables")
    stages = tuple(_stage_from_dict(index, raw) for index, raw in enumerate(raw_stages))
    return Profile(name=name, stages=stages, timezone=timezone)


def _stage_from_dict(index: int, raw: object) -> Stage:
    where = f"stages[{index}]"
    if not isinstance(raw, dict):
        raise ProfileError(f"{where} must be a table")
    name = raw.get("name")
    if not isinstance(name, str) or not name:
        raise ProfileError(f"{where}.name must be a non-empty string")
    completed_by = raw.get("completed_by")
    event_type = (
        _STAGE_EVENT_TYPES_BY_NAME.get(completed_by) if isinstance(completed_by, str) else None
    )
    if event_type is None:
        allowed = ", ".join(sorted(_STAGE_EVENT_TYPES_BY_NAME))
        raise ProfileError(f"{where}.completed_by must be one of {allowed}")
    target_days = raw.get("target_days")
    if type(target_days) is not int:
        raise ProfileError(f"{where}.target_days must be an integer")
    at_risk_day = raw.get("at_risk_day")
    if at_risk_day is not None and type(at_risk_day) is not int:
        raise ProfileError(f"{where}.at_risk_day must be an integer")
    return Stage(name, event_type, target_days, at_risk_day)


def _check_stages(stages: tuple[Stage, ...]) -> None:
    if not stages:
        raise ProfileError("a profile needs at least one stage")
    names: set[str] = set()
    event_types: set[EventType] = set()
    previous_target = 0
    for index, stage in enumerate(stages):
        where = f"stages[{index}]"
        if stage.name in names:
            raise ProfileError(f"{where}.name {stage.name!r} is used twice")
        if stage.completed_by not in STAGE_EVENT_TYPES:
            raise ProfileError(
                f"{where}.completed_by {stage.completed_by!r} cannot complete a stage"
            )
        if stage.completed_by in event_types:
            raise ProfileError(f"{where}.completed_by {stage.completed_by!r} is used twice")
        if stage.target_days < 0:
            raise ProfileError(f"{where}.target_days must not be negative")
        if stage.target_days < previous_target:
            raise ProfileError(f"{where}.target_days is below the previous stage's target")
        if stage.at_risk_day is not None and not 0 <= stage.at_risk_day <= stage.target_days:
            raise ProfileError(f"{where}.at_risk_day must be between 0 and target_days")
        names.add(stage.name)
        event_types.add(stage.completed_by)
        previous_target = stage.target_days


TRAILBLAZER_4WW: Final = Profile(
    name="trailblazer-4ww",
    stages=(
        Stage("assessment", EventType.ASSESSMENT_COMPLETED, target_days=0),
        Stage("allocation", EventType.ALLOCATED, target_days=7, at_risk_day=5),
        Stage("intervention", EventType.INTERVENTION_STARTED, target_days=28, at_risk_day=21),
    ),
    timezone=ZoneInfo("Europe/London"),
)
"""The trailblazer four-week standard: assessment on receipt, allocation within seven days,
intervention within four weeks (28 days waited, the national measure), in Europe/London."""
