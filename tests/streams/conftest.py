"""Fixtures for the stream tests: an isolated deployment (topic prefix, group, data dirs)."""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from mhst_tracker.config import Settings
from tests.streams.harness import Deployment

_numbers = itertools.count()


@pytest.fixture
def deployment(kafka_bootstrap: str, tmp_path: Path) -> Iterator[Deployment]:
    """Settings with a unique topic prefix on the session's broker; workers stopped after."""
    prefix = f"t{os.getpid()}-{next(_numbers)}."
    settings = Settings(kafka_bootstrap=kafka_bootstrap, topic_prefix=prefix, partitions=6)
    deployment = Deployment(settings=settings, base_dir=tmp_path)
    try:
        yield deployment
    finally:
        deployment.stop_all()
