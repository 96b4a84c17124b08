"""The referral state as the clock computed it before it was optimised: a slow reference.

``reference_state(clock, as_of, profile)`` is the straightforward version of
:meth:`ReferralClock.state` (every local date by ``astimezone``, plain dataclass
constructors), kept only to check that the optimised engine gives equal states. It reads
the clock's private facts, which is why it lives with the tests.
"""

from datetime import UTC, date, datetime

from mhst_tracker.domain import clock as engine
from mhst_tracker.domain.errors import ClockError
from mhst_tracker.domain.events import EventType
from mhst_tracker.domain.profile import Profile


def reference_state(
    clock: engine.ReferralClock, as_of: datetime, profile: Profile
) -> engine.ReferralState:
    """The referral as of ``as_of`` under ``profile``, computed the slow, obvious way."""
    if as_of.utcoffset() is None:
        raise ClockError("as_of must be timezone-aware")
    moment = as_of.astimezone(UTC)
    dna_count = sum(1 for mark in clock._dnas if mark[0] <= moment)
    stages = profile.stages
    receipt = clock._receipt
    if receipt is None or receipt[0] > moment:
        return engine.ReferralState(
            referral_id=clock.referral_id,
            team_id=None,
            school_id=None,
            status=engine.ReferralStatus.NO_RECEIPT,
            received_on=None,
            days_waited=None,
            dna_count=dna_count,
            flags=(),
            stages=dict.fromkeys((stage.name for stage in stages), None),
            as_of=as_of,
        )
    zone = profile.timezone
    received_on = receipt[0].astimezone(zone).date()
    received = received_on.toordinal()
    today = moment.astimezone(zone).date().toordinal()

    # A stage is done by the earliest event, up to the moment, of its own type or of any
    # later stage's type.
    done_dates: list[date | None] = []
    for index in range(len(stages)):
        marks = [
            mark[0]
            for stage in stages[index:]
            if (mark := clock._firsts.get(stage.completed_by)) is not None and mark[0] <= moment
        ]
        done_dates.append(min(marks).astimezone(zone).date() if marks else None)

    flags: tuple[engine.Flag, ...] = ()
    if any(done_on is not None and done_on < received_on for done_on in done_dates):
        flags = (engine.Flag.STAGE_BEFORE_RECEIPT,)
    closed: int | None = None
    closure = clock._firsts.get(EventType.REFERRAL_CLOSED)
    if closure is not None and closure[0] <= moment:
        closed = closure[0].astimezone(zone).date().toordinal()
        if closed < received:
            flags = (*flags, engine.Flag.CLOSED_BEFORE_RECEIPT)
            closed = received

    stage_states: dict[str, engine.StageState | None] = {}
    at_risk: tuple[str, ...] = ()
    stage_status = engine.StageStatus.PENDING
    for stage, done_on in zip(stages, done_dates, strict=True):
        due = received + stage.target_days
        if done_on is not None:
            stage_status = (
                engine.StageStatus.MET
                if done_on.toordinal() <= due
                else engine.StageStatus.BREACHED
            )
        elif closed is not None:
            stage_status = (
                engine.StageStatus.NOT_APPLICABLE if closed <= due else engine.StageStatus.BREACHED
            )
        elif today > due:
            stage_status = engine.StageStatus.BREACHED
        else:
            stage_status = engine.StageStatus.PENDING
            if stage.at_risk_day is not None and today - received >= stage.at_risk_day:
                at_risk = (*at_risk, stage.name)
        stage_states[stage.name] = engine.StageState(date.fromordinal(due), done_on, stage_status)

    final_done_on = done_dates[-1]
    if final_done_on is not None:
        met = stage_status is engine.StageStatus.MET
        status = (
            engine.ReferralStatus.SEEN_WITHIN_STANDARD if met else engine.ReferralStatus.SEEN_LATE
        )
        days_waited = max(0, final_done_on.toordinal() - received)
    elif closed is not None:
        status = engine.ReferralStatus.CLOSED_BEFORE_INTERVENTION
        days_waited = closed - received
    else:
        late = stage_status is engine.StageStatus.BREACHED
        status = (
            engine.ReferralStatus.WAITING_BREACHED
            if late
            else engine.ReferralStatus.WAITING_WITHIN_STANDARD
        )
        days_waited = today - received
    return engine.ReferralState(
        referral_id=clock.referral_id,
        team_id=clock._team_id,
        school_id=clock._school_id,
        status=status,
        received_on=received_on,
        days_waited=days_waited,
        dna_count=dna_count,
        flags=flags,
        stages=stage_states,
        as_of=as_of,
        at_risk_stages=at_risk,
    )
