"""Exceptions raised by the clock engine, one class per area."""


class DomainError(Exception):
    """Base class of every error the clock engine raises."""


class InvalidEvent(DomainError):
    """An input does not satisfy the version-1 event contract.

    ``reason`` is a short human sentence (``occurred_at has no UTC offset``) that replay lists
    and the stream workers put on the dead-letter topic. It never quotes the referral id.
    """

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class ProfileError(DomainError):
    """A profile (the standard as data) is malformed or inconsistent."""


class ClockError(DomainError, ValueError):
    """A clock was misused: another referral's event, a naive moment, a malformed snapshot."""


class AlertError(DomainError, ValueError):
    """Alert decisions were asked with inconsistent inputs (a state not computed as of now)."""
