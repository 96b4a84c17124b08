"""``promtool`` from the tests: configuration, rules and ``/metrics`` expositions checked."""

from __future__ import annotations

import subprocess
from pathlib import Path


def promtool(
    *args: str, cwd: Path | None = None, input_: str | None = None
) -> subprocess.CompletedProcess[str]:
    """``promtool ARGS``, its output captured."""
    return subprocess.run(
        ["promtool", *args], input=input_, capture_output=True, text=True, check=False, cwd=cwd
    )


def metrics_problems(exposition: str) -> str:
    """What ``promtool check metrics`` finds wrong with a ``/metrics`` exposition (empty:
    nothing)."""
    checked = promtool("check", "metrics", input_=exposition)
    output = checked.stdout + checked.stderr
    return f"exit {checked.returncode}: {output}" if checked.returncode or output else ""
