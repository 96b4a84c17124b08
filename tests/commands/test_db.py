"""``mhst-tracker db``: the reader's grants, and purging the dead-letter table."""

from __future__ import annotations

import asyncio
from pathlib import Path

from mhst_tracker.adapters.store.database import reader_grants
from tests.adapters.store.conftest import event, jsonl
from tests.adapters.store.test_importer import _counts, migrate, run_cli


def test_purge_rejected_deletes_the_rows_older_than_asked(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'store.db'}"
    migrate(url)
    path = tmp_path / "events.jsonl"
    receipt = event("e1", "referral_received", "R1", "2026-09-01T09:00:00Z", team_id="T1")
    path.write_bytes(jsonl([receipt, "{not json", "[]"]))
    assert run_cli(["import", str(path)], url)[0] == 0
    assert asyncio.run(_counts(url)) == (1, 2)
    code, _, stderr = run_cli(["db", "purge-rejected", "--older-than", "30d"], url)
    assert code == 0, stderr
    assert stderr.startswith("0 rejections made before ")
    assert asyncio.run(_counts(url)) == (1, 2)
    code, _, stderr = run_cli(["db", "purge-rejected", "--older-than", "0d"], url)
    assert code == 0, stderr
    assert stderr.startswith("2 rejections made before ")
    assert asyncio.run(_counts(url)) == (1, 0)  # the events stay


def test_purge_rejected_takes_days_only(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'store.db'}"
    for age in ("30", "1w", "-3d", "d"):
        code, _, stderr = run_cli(["db", "purge-rejected", "--older-than", age], url)
        assert code == 2
        assert "a number of days, such as 30d" in stderr


def test_grants_of_a_reader() -> None:
    url = "postgresql+asyncpg://owner@localhost/mhst"
    code, stdout, _ = run_cli(["db", "grants", "mhst_reader", "--reader", "--url", url], url)
    assert code == 0
    assert stdout.splitlines() == [f"{line};" for line in reader_grants("mhst_reader", "mhst")]
