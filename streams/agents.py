"""The agent ``track-referrals``: every message of the events and tick topics, one at a time.

It hands each message to the tracker (:meth:`ReferralTracker.handle
<mhst_tracker.tracking.tracker.ReferralTracker.handle>`), inside stream iteration, the only
place a Faust table may be written. Events are read one by one (``stream.events()``):
``stream.take`` batching does not lift Faust's own ceiling (docs/streams.md). If the agent
raises, the crash is counted (``mhst_worker_agent_crashes_total``) and the exception goes on
to Faust, which logs it and restarts the agent; the worker is not ready until the restarted
agent handles a message.
"""

from __future__ import annotations

from typing import Any, Final

import faust

from mhst_tracker.tracking.tracker import ReferralTracker

AGENT_NAME: Final = "track-referrals"


def track_referrals(app: faust.App, source: faust.TopicT, tracker: ReferralTracker) -> None:
    """Register the agent on ``app``, reading ``source``."""

    @app.agent(source, name=AGENT_NAME)
    async def track(stream: faust.StreamT[Any]) -> None:
        try:
            async for event in stream.events():
                await tracker.handle(event.message)
        except Exception:
            tracker.agent_crashed()
            raise  # Faust logs it and restarts the agent
