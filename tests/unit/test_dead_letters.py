"""Dead letters keep the original bytes and carry the reason and origin in headers."""

from datetime import UTC, datetime

from mhst_tracker.dead_letters import DeadLetter


def test_a_dead_letter_reads_back_from_its_headers() -> None:
    letter = DeadLetter(
        reason="occurred_at has no UTC offset",
        topic="mhst.referral-events",
        partition=3,
        offset=42,
        rejected_at=datetime(2026, 9, 1, 8, tzinfo=UTC),
        key=b"\xff",
        value=b"\x00not json",
    )
    assert DeadLetter.from_message(letter.key, letter.value, letter.headers()) == letter
