"""The sink: the events, alerts and dead-letter topics into the store, at least once, idempotently.

It reads batches with one Kafka consumer (group ``mhst-store-sink``), writes each batch in
one database transaction (``INSERT ... ON CONFLICT DO NOTHING`` on ``event_id``,
``alert_id`` and the rejection key), refreshes the referral projection once per window of
batches (in ``refresh_parts`` more transactions, on disjoint ranges of referrals), and
commits the window's Kafka offsets only after those commits. A crash in between re-reads
the window, which then adds nothing and refreshes its referrals again.

* :mod:`.policy`: the decisions (what to gather, when to write, refresh and commit), pure;
* :mod:`.loop`: :class:`Sink`, which carries them out on the consumer and the store;
* :mod:`.decode`: messages into events, alerts and rejections (no message stops the sink);
* :mod:`.batches`: the batches on their way and the offsets each commits;
* :mod:`.recent`: the ids of the events lately sent to be written;
* :mod:`.consumer`: how far behind the stream, the lag metric, offset commits.

The process-wide policy for the garbage collector is the entry point's
(:func:`mhst_tracker.commands.sink.collector_paused`).
"""

from mhst_tracker.adapters.store.sink.loop import Sink
from mhst_tracker.adapters.store.sink.policy import GROUP_ID, SinkOptions

__all__ = ["GROUP_ID", "Sink", "SinkOptions"]
