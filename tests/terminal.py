"""Commands run in a child process whose standard error is a terminal, or a pipe."""

from __future__ import annotations

import os
import pty
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

CLI = Path(sys.executable).with_name("mhst-tracker")


def run_on_terminal(
    args: Sequence[str], env: dict[str, str], terminal: bool, timeout: float = 120
) -> tuple[int, str]:
    """``mhst-tracker ARGS`` with standard error on a terminal (or a pipe): exit code and
    standard error."""
    child_env = {**os.environ, **env, "COLUMNS": "100"}
    argv = [str(CLI), *args]
    if not terminal:
        done = subprocess.run(
            argv, env=child_env, capture_output=True, timeout=timeout, check=False
        )
        return done.returncode, done.stderr.decode()
    leader, follower = pty.openpty()
    with subprocess.Popen(
        argv, env=child_env, stdout=subprocess.DEVNULL, stderr=follower, stdin=subprocess.DEVNULL
    ) as child:
        os.close(follower)
        output = bytearray()
        while True:
            try:
                chunk = os.read(leader, 4096)
            except OSError:  # EIO: the child closed the terminal
                break
            if not chunk:
                break
            output += chunk
        code = child.wait(timeout=timeout)
    os.close(leader)
    return code, output.decode()
