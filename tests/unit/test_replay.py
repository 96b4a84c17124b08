"""The replay service: line numbering, blank lines, duplicates and evaluation at any moment."""

from datetime import UTC, datetime

from mhst_tracker.domain.clock import ReferralStatus
from mhst_tracker.domain.profile import TRAILBLAZER_4WW
from mhst_tracker.replay import Replayer, replay

RECEIPT = (
    b'{"event_id":"e1","type":"referral_received","referral_id":"R1",'
    b'"occurred_at":"2026-02-20T10:00:00Z","team_id":"T1"}'
)
SEEN = (
    b'{"event_id":"e2","type":"intervention_started","referral_id":"R1",'
    b'"occurred_at":"2026-03-02T10:00:00Z"}'
)


def test_line_numbers_continue_across_feeds_and_blank_lines_are_not_reported() -> None:
    replayer = Replayer()
    replayer.feed([RECEIPT, b"\n", b"nonsense"])
    replayer.feed([b"   ", b"{}", RECEIPT])
    result = replayer.result(datetime(2026, 3, 1, tzinfo=UTC), TRAILBLAZER_4WW)
    assert [item.line for item in result.rejected] == [3, 5]
    assert result.rejected[0].reason.startswith("invalid JSON: ")
    assert result.rejected[1].reason == "missing event_id"
    assert result.duplicates == 1
    assert replayer.lines == 6


def test_one_replay_can_be_evaluated_at_several_moments() -> None:
    replayer = Replayer()
    replayer.feed([RECEIPT, SEEN])
    early = replayer.result(datetime(2026, 3, 1, tzinfo=UTC), TRAILBLAZER_4WW)
    late = replayer.result(datetime(2026, 3, 3, tzinfo=UTC), TRAILBLAZER_4WW)
    assert early.referrals[0].status is ReferralStatus.WAITING_WITHIN_STANDARD
    assert late.referrals[0].status is ReferralStatus.SEEN_WITHIN_STANDARD


def test_text_and_bytes_lines_replay_alike() -> None:
    moment = datetime(2026, 3, 3, tzinfo=UTC)
    from_bytes = replay([RECEIPT, SEEN], moment, TRAILBLAZER_4WW)
    from_text = replay([RECEIPT.decode(), SEEN.decode()], moment, TRAILBLAZER_4WW)
    assert from_bytes.to_dict() == from_text.to_dict()
