"""The sink's decisions, without Kafka or a database: each rule, and a simulated sink driven
by the policy alone that keeps its bounds and writes and refreshes everything it reads."""

from __future__ import annotations

from dataclasses import dataclass, field

from hypothesis import given
from hypothesis import strategies as st

from mhst_tracker.adapters.store.sink.policy import (
    FETCH_MAX_WAIT_MS,
    POLL_RECORDS,
    Next,
    Poll,
    SinkOptions,
    SinkPolicy,
    Turn,
)

OPTIONS = SinkOptions(batch_size=100, refresh_batches=3, refresh_seconds=1.0, catch_up_factor=4)
POLICY = SinkPolicy(OPTIONS)


def test_a_full_batch_is_set_aside_while_there_is_room_ahead() -> None:
    assert POLICY.set_aside(Turn(gathered=100, writing=2))
    assert not POLICY.set_aside(Turn(gathered=100, writing=2, ready=1))  # batches_ahead 1
    assert not POLICY.set_aside(Turn(gathered=99, writing=2))


def test_nothing_is_polled_into_a_full_batch() -> None:
    assert POLICY.poll(Turn(gathered=100)) is None
    assert POLICY.poll(Turn(gathered=60, writing=1)) == Poll(0, 40, False)


def test_with_work_under_way_the_poll_does_not_wait() -> None:
    for turn in (
        Turn(writing=1),
        Turn(refreshing=True),
        Turn(gathered=5),
        Turn(ready=1, gathered=0),
    ):
        poll = POLICY.poll(turn)
        assert poll is not None
        assert poll.timeout_ms == 0
        assert not poll.idle_if_empty  # an empty poll then says nothing of the stream


def test_with_nothing_under_way_the_poll_waits_its_time() -> None:
    assert POLICY.poll(Turn()) == Poll(500, POLL_RECORDS // 10, True)
    large = SinkPolicy(SinkOptions())
    assert large.poll(Turn()) == Poll(500, POLL_RECORDS, True)


def test_with_a_window_open_the_poll_waits_a_fetch_at_most_and_not_if_caught_up() -> None:
    assert POLICY.poll(Turn(window=1, window_age=0.1, behind=7)) == Poll(
        FETCH_MAX_WAIT_MS, 100, True
    )
    # Nearly old enough: only until the window's age would close it.
    assert POLICY.poll(Turn(window=1, window_age=0.99, behind=7)) == Poll(10, 100, True)
    # Read to the high watermarks: no wait, and an empty poll means the stream paused.
    assert POLICY.poll(Turn(window=1, window_age=0.1, behind=0)) == Poll(0, 100, True)
    # Not yet fetched everywhere: unknown, so not caught up.
    assert POLICY.poll(Turn(window=1, window_age=0.1, behind=None)) == Poll(
        FETCH_MAX_WAIT_MS, 100, True
    )


def test_a_window_is_refreshed_by_count_age_or_idleness() -> None:
    assert not POLICY.refresh(Turn(), idle=True)  # no batch written
    assert not POLICY.refresh(Turn(window=2, window_age=0.5, behind=0), idle=False)
    assert POLICY.refresh(Turn(window=3, window_age=0.5, behind=0), idle=False)
    assert POLICY.refresh(Turn(window=1, window_age=1.0, behind=0), idle=False)
    assert POLICY.refresh(Turn(window=1, window_age=0.0), idle=True)


def test_one_refresh_at_a_time() -> None:
    assert not POLICY.refresh(Turn(window=3, refreshing=True), idle=True)


def test_while_catching_up_a_window_grows_up_to_the_factor() -> None:
    far = 4 * 3 * 100  # the messages a window of factor times the limits holds
    assert not POLICY.refresh(Turn(window=3, window_age=0.5, behind=far), idle=False)
    assert not POLICY.refresh(Turn(window=11, window_age=3.9, behind=far), idle=False)
    assert POLICY.refresh(Turn(window=12, window_age=0.5, behind=far), idle=False)
    assert POLICY.refresh(Turn(window=3, window_age=4.0, behind=far), idle=False)
    # Nearly caught up, or not known: the usual limits.
    assert POLICY.refresh(Turn(window=3, window_age=0.5, behind=far - 1), idle=False)
    assert POLICY.refresh(Turn(window=3, window_age=0.5, behind=None), idle=False)
    # Idle beats everything.
    assert POLICY.refresh(Turn(window=3, window_age=0.5, behind=far), idle=True)


def test_without_a_catch_up_factor_windows_keep_their_limits() -> None:
    policy = SinkPolicy(SinkOptions(refresh_batches=3, catch_up_factor=1))
    assert policy.refresh(Turn(window=3, behind=10**9), idle=False)


def test_which_batch_is_written_next() -> None:
    assert POLICY.write(Turn(ready=1, gathered=100, writing=1)) is Next.SET_ASIDE
    assert POLICY.write(Turn(ready=1, gathered=100, writing=2)) is None  # writes_in_flight 2
    assert POLICY.write(Turn(gathered=1)) is Next.GATHERED  # nothing else written: at once
    assert POLICY.write(Turn(gathered=99, writing=1)) is None  # beside a write: only full
    assert POLICY.write(Turn(gathered=100, writing=1)) is Next.GATHERED
    assert POLICY.write(Turn(gathered=0)) is None


def test_the_sink_waits_only_for_work_under_way_and_only_when_nothing_came() -> None:
    assert POLICY.wait(Turn(writing=1), polled=False)
    assert POLICY.wait(Turn(refreshing=True), polled=False)
    assert not POLICY.wait(Turn(writing=1), polled=True)
    assert not POLICY.wait(Turn(), polled=False)


class World:
    """What the broker, the database and the clock do at each turn, as Hypothesis draws it."""

    def __init__(self, data: st.DataObject) -> None:
        self.data = data

    def arrive(self, most: int) -> int:
        """How many messages a poll brings."""
        return self.data.draw(st.integers(0, most))

    def ends(self) -> bool:
        """Whether a write (or a refresh) under way ends now."""
        return self.data.draw(st.booleans())

    def elapsed(self) -> float:
        """Seconds the turn took."""
        return self.data.draw(st.sampled_from([0.0, 0.1, 0.5]))


class Settled(World):
    """Once the test has drawn enough: every poll brings all it may, all work under way
    ends, no time passes."""

    def __init__(self) -> None:
        pass

    def arrive(self, most: int) -> int:
        return most

    def ends(self) -> bool:
        return True

    def elapsed(self) -> float:
        return 0.0


@dataclass
class Simulated:
    """A sink's bookkeeping with the broker, the database and the clock replaced by
    Hypothesis's choices: messages arrive in lots, writes and refreshes end when drawn."""

    policy: SinkPolicy
    unread: int
    gathered: int = 0
    ready: list[int] = field(default_factory=list)
    writing: list[int] = field(default_factory=list)
    window: list[int] = field(default_factory=list)
    window_age: float = 0.0
    refreshing: list[int] | None = None
    committed: int = 0
    most_writing: int = 0
    most_ready: int = 0

    def turn(self) -> Turn:
        return Turn(
            gathered=self.gathered,
            ready=len(self.ready),
            writing=len(self.writing),
            refreshing=self.refreshing is not None,
            window=len(self.window),
            window_age=self.window_age if self.window else 0.0,
            behind=self.unread if self.window else None,
        )

    def step(self, world: World) -> None:
        policy = self.policy
        if policy.set_aside(self.turn()):
            self.ready.append(self.gathered)
            self.gathered = 0
        poll = policy.poll(self.turn())
        taken, idle = 0, False
        if poll is not None:
            assert poll.max_records <= policy.options.batch_size - self.gathered
            taken = min(self.unread, world.arrive(poll.max_records))
            self.unread -= taken
            self.gathered += taken
            idle = poll.idle_if_empty and not taken
        # Writes end in order (the sink collects them so); a refresh ends with its commit.
        while self.writing and world.ends():
            if not self.window:
                self.window_age = 0.0
            self.window.append(self.writing.pop(0))
        if self.refreshing is not None and world.ends():
            self.committed += sum(self.refreshing)
            self.refreshing = None
        self.window_age += world.elapsed()
        if policy.refresh(self.turn(), idle):
            assert self.refreshing is None
            self.refreshing, self.window = self.window, []
        turn = self.turn()
        start = policy.write(turn)
        if start is Next.SET_ASIDE:
            self.writing.append(self.ready.pop(0))
        elif start is Next.GATHERED:
            self.writing.append(self.gathered)
            self.gathered = 0
        self.most_writing = max(self.most_writing, len(self.writing))
        self.most_ready = max(self.most_ready, len(self.ready))


@given(
    st.data(),
    st.integers(min_value=0, max_value=400),
    st.integers(min_value=10, max_value=150),
    st.integers(min_value=1, max_value=3),
    st.integers(min_value=0, max_value=2),
)
def test_a_sink_driven_by_the_policy_keeps_its_bounds_and_commits_everything(
    data: st.DataObject, messages: int, batch_size: int, in_flight: int, ahead: int
) -> None:
    options = SinkOptions(
        batch_size=batch_size,
        writes_in_flight=in_flight,
        batches_ahead=ahead,
        refresh_batches=3,
        catch_up_factor=2,
    )
    sink = Simulated(SinkPolicy(options), unread=messages)
    world = World(data)
    for _ in range(4 * (messages // batch_size + 5)):
        sink.step(world)
        assert sink.most_writing <= in_flight
        assert sink.most_ready <= ahead
        assert sink.gathered <= batch_size
        # At least once: only what was written and refreshed is committed.
        in_memory = sink.gathered + sum(sink.ready) + sum(sink.writing) + sum(sink.window)
        refreshing = sum(sink.refreshing or [])
        assert sink.committed + refreshing + in_memory + sink.unread == messages
        if sink.committed == messages:
            break
    # Everything is committed once the messages are there and the work under way ends.
    for _ in range(10 * (messages // batch_size + 10)):
        if sink.committed == messages:
            break
        sink.step(Settled())
    assert sink.committed == messages
