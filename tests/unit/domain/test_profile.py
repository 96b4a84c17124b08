"""Profiles: the default trailblazer standard and profiles loaded from TOML."""

from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from mhst_tracker.domain.errors import ProfileError
from mhst_tracker.domain.events import EventType
from mhst_tracker.domain.profile import TRAILBLAZER_4WW, Profile, Stage, load_profile

DAY_ONE_PATH = Path(__file__).parents[3] / "deploy" / "profiles" / "trailblazer-4ww-day1.toml"
DAY_ONE_PROFILE = DAY_ONE_PATH.read_text()


def test_the_default_profile_is_the_trailblazer_four_week_standard() -> None:
    assert TRAILBLAZER_4WW.name == "trailblazer-4ww"
    assert TRAILBLAZER_4WW.timezone == ZoneInfo("Europe/London")
    assert TRAILBLAZER_4WW.stages == (
        Stage("assessment", EventType.ASSESSMENT_COMPLETED, 0, None),
        Stage("allocation", EventType.ALLOCATED, 7, 5),
        Stage("intervention", EventType.INTERVENTION_STARTED, 28, 21),
    )


def test_a_profile_loads_from_toml() -> None:
    profile = load_profile(DAY_ONE_PATH)

    assert profile.name == "trailblazer-4ww-day1"
    assert [stage.target_days for stage in profile.stages] == [0, 6, 27]
    assert [stage.at_risk_day for stage in profile.stages] == [None, 4, 20]
    assert profile.stages[-1].completed_by is EventType.INTERVENTION_STARTED


def test_the_time_zone_defaults_to_london(tmp_path: Path) -> None:
    path = tmp_path / "p.toml"
    path.write_text(DAY_ONE_PROFILE.replace('timezone = "Europe/London"\n', ""))
    assert load_profile(path).timezone == ZoneInfo("Europe/London")


def test_a_two_stage_profile_is_allowed(tmp_path: Path) -> None:
    path = tmp_path / "p.toml"
    path.write_text(
        'name = "short"\ntimezone = "Europe/Dublin"\n'
        '[[stages]]\nname = "seen"\ncompleted_by = "allocated"\ntarget_days = 14\n'
        '[[stages]]\nname = "treated"\ncompleted_by = "intervention_started"\ntarget_days = 42\n'
    )
    profile = load_profile(path)
    assert [stage.name for stage in profile.stages] == ["seen", "treated"]
    assert profile.timezone == ZoneInfo("Europe/Dublin")


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (('name = "trailblazer-4ww-day1"', 'name = ""'), "name must be a non-empty string"),
        (('"Europe/London"', '"Mars/Olympus"'), "unknown timezone 'Mars/Olympus'"),
        (("target_days = 6", "target_days = -1"), "stages[1].target_days must not be negative"),
        (("target_days = 6", 'target_days = "6"'), "stages[1].target_days must be an integer"),
        (("target_days = 27", "target_days = 5"), "stages[2].target_days is below"),
        (("at_risk_day = 4", "at_risk_day = 9"), "stages[1].at_risk_day must be between 0"),
        (("at_risk_day = 4", "at_risk_day = 4.5"), "stages[1].at_risk_day must be an integer"),
        (('completed_by = "allocated"', 'completed_by = "referral_received"'), "completed_by"),
        (('completed_by = "allocated"', 'completed_by = "assessment_completed"'), "used twice"),
        (('name = "allocation"', 'name = "assessment"'), "'assessment' is used twice"),
        (('name = "allocation"', "name = 3"), "stages[1].name must be a non-empty string"),
    ],
)
def test_invalid_profiles_are_refused_with_a_clear_message(
    tmp_path: Path, edit: tuple[str, str], message: str
) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(DAY_ONE_PROFILE.replace(*edit))
    with pytest.raises(ProfileError) as caught:
        load_profile(path)
    assert message in str(caught.value)
    assert str(path) in str(caught.value)


def test_a_profile_without_stages_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "empty.toml"
    path.write_text('name = "empty"\n')
    with pytest.raises(ProfileError, match="stages must be a non-empty array"):
        load_profile(path)


def test_broken_toml_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "broken.toml"
    path.write_text("name = \n")
    with pytest.raises(ProfileError, match="invalid TOML"):
        load_profile(path)


def test_a_missing_file_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ProfileError, match="no such profile file"):
        load_profile(tmp_path / "absent.toml")


def test_profiles_built_in_code_are_checked_too() -> None:
    with pytest.raises(ProfileError, match="at least one stage"):
        Profile("none", (), ZoneInfo("Europe/London"))
