"""The deadline index: due keys listed, superseded deadlines skipped, partitions apart."""

from hypothesis import given
from hypothesis import strategies as st

from mhst_tracker.tracking.deadlines import DeadlineIndex


def test_due_by_lists_the_due_keys_and_leaves_them_due() -> None:
    index = DeadlineIndex()
    index.schedule(0, b"b", 20.0)
    index.schedule(0, b"a", 10.0)
    index.schedule(0, b"c", 30.0)
    assert sorted(index.due_by(0, 25.0)) == [b"a", b"b"]
    assert sorted(index.due_by(0, 25.0)) == [b"a", b"b"]
    index.schedule(0, b"a", 40.0)
    index.schedule(0, b"b", None)
    assert index.due_by(0, 25.0) == []
    assert index.deadline(0, b"c") == 30.0
    assert len(index) == 2


def test_a_superseded_deadline_is_skipped() -> None:
    index = DeadlineIndex()
    index.schedule(0, b"a", 10.0)
    index.schedule(0, b"a", 50.0)
    assert index.due_by(0, 20.0) == []
    assert index.due_by(0, 60.0) == [b"a"]


def test_no_deadline_removes_the_key() -> None:
    index = DeadlineIndex()
    index.schedule(0, b"a", 10.0)
    index.schedule(0, b"a", None)
    assert index.due_by(0, 99.0) == []
    assert index.earliest(0) is None
    assert len(index) == 0


def test_partitions_are_independent_and_can_be_replaced_or_dropped() -> None:
    index = DeadlineIndex()
    index.schedule(0, b"a", 10.0)
    index.schedule(1, b"b", 10.0)
    index.replace(2, [(b"c", 5.0), (b"d", 15.0)])
    assert index.partitions() == {0, 1, 2}
    index.drop(1)
    assert index.partitions() == {0, 2}
    assert index.due_by(1, 99.0) == []
    assert index.due_by(2, 10.0) == [b"c"]
    assert index.due_by(0, 10.0) == [b"a"]


def test_earliest_skips_superseded_deadlines() -> None:
    index = DeadlineIndex()
    assert index.earliest(0) is None
    index.schedule(0, b"a", 10.0)
    index.schedule(0, b"b", 20.0)
    index.schedule(0, b"a", 30.0)
    assert index.earliest(0) == 20.0
    index.schedule(0, b"b", None)
    assert index.earliest(0) == 30.0


@given(
    st.lists(
        st.tuples(st.sampled_from([b"a", b"b", b"c", b"d", b"e"]), st.none() | st.integers(0, 9)),
        max_size=40,
    ),
    st.integers(-1, 10),
    st.none() | st.integers(1, 6),
)
def test_due_by_lists_exactly_the_current_deadlines_up_to_the_moment(
    schedule: list[tuple[bytes, int | None]], moment: int, limit: int | None
) -> None:
    index = DeadlineIndex()
    current: dict[bytes, int] = {}
    for key, deadline in schedule:
        index.schedule(0, key, None if deadline is None else float(deadline))
        if deadline is None:
            current.pop(key, None)
        else:
            current[key] = deadline
    expected = {key for key, deadline in current.items() if deadline <= moment}
    listed = index.due_by(0, float(moment), limit)
    assert len(listed) == len(set(listed))
    assert set(listed) <= expected
    assert len(listed) == (len(expected) if limit is None else min(limit, len(expected)))
    assert index.earliest(0) == (min(current.values()) if current else None)
