"""The slot-filling constructors give the same values as the dataclasses' own __init__."""

from datetime import UTC, date, datetime

import pytest

from mhst_tracker.domain._frozen import frozen_constructor
from mhst_tracker.domain.clock import (
    Flag,
    ReferralState,
    ReferralStatus,
    StageState,
    StageStatus,
)
from mhst_tracker.domain.profile import Profile


def test_states_built_by_slots_equal_ones_built_by_init() -> None:
    stage = StageState(date(2026, 1, 8), None, StageStatus.PENDING)
    assert frozen_constructor(StageState)(date(2026, 1, 8), None, StageStatus.PENDING) == stage
    values = (
        "R1",
        "T1",
        None,
        ReferralStatus.WAITING_WITHIN_STANDARD,
        date(2026, 1, 1),
        3,
        0,
        (Flag.STAGE_BEFORE_RECEIPT,),
        {"allocation": stage},
        datetime(2026, 1, 4, tzinfo=UTC),
        ("allocation",),
    )
    assert frozen_constructor(ReferralState)(*values) == ReferralState(*values)


def test_a_class_with_post_init_is_refused() -> None:
    with pytest.raises(TypeError, match="__post_init__"):
        frozen_constructor(Profile)
