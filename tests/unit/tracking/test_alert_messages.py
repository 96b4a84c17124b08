"""Alert message bodies stamped at sending, and the partitioner hash, without Kafka."""

from datetime import UTC, datetime

import orjson
from aiokafka.partitioner import DefaultPartitioner
from hypothesis import given
from hypothesis import strategies as st

from mhst_tracker.tracking.alert_messages import alert_message, key_hash, stamped, unstamped
from tests.unit.notify.builders import alert as built_alert


@given(st.text(min_size=1, max_size=30), st.none() | st.text(max_size=10))
def test_a_stamped_body_is_the_alert_with_the_moment_of_sending(
    referral_id: str, school_id: str | None
) -> None:
    alert = built_alert(referral_id, team="T1", school=school_id)
    sent = datetime(2026, 9, 9, 0, 0, 0, 250000, tzinfo=UTC)
    body = orjson.loads(stamped(unstamped(alert), sent.isoformat().encode()))
    assert body == {**alert.to_dict(), "detected_at": sent.isoformat()}
    hashed, key, value = alert_message(alert)
    assert key == referral_id.encode()
    assert orjson.loads(value) == alert.to_dict()
    assert hashed == key_hash(key)


@given(st.binary(min_size=1, max_size=40), st.integers(1, 64))
def test_key_hash_places_keys_as_the_default_partitioner_does(key: bytes, count: int) -> None:
    partitions = list(range(count))
    assert partitions[key_hash(key) % count] == DefaultPartitioner()(key, partitions, partitions)
