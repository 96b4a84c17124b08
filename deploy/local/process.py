"""Child processes that cannot outlive the run that started them.

Every service runs as a direct child with ``PR_SET_PDEATHSIG``, so the kernel kills it if
the Python process that started it dies for any reason (Ctrl-C, SIGTERM, SIGKILL, a crash).
A clean stop sends the service's own graceful signal first and escalates to SIGKILL.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import ClassVar

from deploy.local.errors import ServiceError

_PR_SET_PDEATHSIG = 1
REPO_ROOT = Path(__file__).resolve().parents[2]
CACHE_DIR = Path(os.environ.get("MHST_CACHE_DIR", REPO_ROOT / ".cache"))


def _die_with_parent() -> None:
    """Ask the kernel to SIGKILL this (child) process when its parent dies."""
    libc = ctypes.CDLL("libc.so.6", use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def port_in_use(port: int) -> bool:
    """Whether something already accepts connections on 127.0.0.1:port."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def require_free_port(service: str, port: int) -> None:
    """Fail at once, naming the cause, when another process holds a port a service needs."""
    if port_in_use(port):
        raise ServiceError(
            f"{service} cannot start: port 127.0.0.1:{port} is already in use by another process"
        )


def service_user() -> str | None:
    """The unprivileged user that runs servers refusing root, or None when not root."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "nobody"):
        with contextlib.suppress(KeyError):
            pwd.getpwnam(name)
            return name
    raise ServiceError("running as root, but neither a 'postgres' nor a 'nobody' user exists")


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _sweep_stale_run_dirs(base: Path) -> None:
    """Delete scratch directories left by runs that were killed before they could clean up."""
    for owner_file in base.glob("mhst-*/.owner-pid"):
        with contextlib.suppress(OSError, ValueError):
            if not _pid_alive(int(owner_file.read_text())):
                shutil.rmtree(owner_file.parent, ignore_errors=True)


def make_run_dir(name: str, owner: str | None = None) -> Path:
    """A fresh scratch directory for one service of this run, owned by ``owner`` if given."""
    base = Path(os.environ.get("MHST_RUN_DIR", tempfile.gettempdir()))
    base.mkdir(parents=True, exist_ok=True)
    _sweep_stale_run_dirs(base)
    path = Path(tempfile.mkdtemp(prefix=f"mhst-{name}-", dir=base))
    (path / ".owner-pid").write_text(str(os.getpid()))
    if owner is not None:
        shutil.chown(path, owner, owner)
    return path


class ManagedProcess:
    """One long-running server process, its log file and a stop that always finishes."""

    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        log_path: Path,
        *,
        stop_signal: signal.Signals = signal.SIGTERM,
        user: str | None = None,
        env: dict[str, str] | None = None,
        cwd: Path | None = None,
    ) -> None:
        self.name = name
        self.argv = list(argv)
        self.log_path = log_path
        self.stop_signal = stop_signal
        self.user = user
        self.env = env
        self.cwd = cwd
        self._popen: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int | None:
        """The process id while running."""
        return self._popen.pid if self._popen else None

    def start(self) -> None:
        """Start the process with its output appended to the log file."""
        with self.log_path.open("ab") as log:
            self._popen = subprocess.Popen(
                self.argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=self.env,
                cwd=self.cwd,
                user=self.user,
                group=pwd.getpwnam(self.user).pw_gid if self.user else None,
                # Own session: a Ctrl-C at the terminal reaches the run, which stops the
                # services in order, instead of killing them under running tests.
                start_new_session=True,
                preexec_fn=_die_with_parent,
            )

    def exit_code(self) -> int | None:
        """The exit code once the process has ended, else None."""
        return None if self._popen is None else self._popen.poll()

    def log_tail(self, lines: int = 30) -> str:
        """The last lines of the log, for error messages."""
        try:
            text = self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def stop(self, timeout: float = 20.0) -> None:
        """Stop gracefully; SIGKILL after ``timeout`` seconds. Safe to call twice."""
        proc = self._popen
        if proc is None or proc.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(self.stop_signal)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)

    def kill(self) -> None:
        """SIGKILL the process, as a crash would."""
        if self._popen is not None and self._popen.poll() is None:
            self._popen.kill()
            self._popen.wait(10)


def wait_until(
    what: str,
    check: Callable[[], bool],
    process: ManagedProcess,
    timeout: float,
    failure_hints: dict[str, str] | None = None,
) -> None:
    """Poll ``check`` until it is true; fail fast, with the cause, if the process dies."""
    deadline = time.monotonic() + timeout
    while True:
        code = process.exit_code()
        if code is not None:
            raise ServiceError(_death_message(process, code, failure_hints or {}))
        if check():
            return
        if time.monotonic() > deadline:
            process.stop()
            raise ServiceError(
                f"{process.name} was not ready ({what}) after {timeout:.0f} s; "
                f"log {process.log_path}:\n{process.log_tail()}"
            )
        time.sleep(0.2)


def _death_message(process: ManagedProcess, code: int, hints: dict[str, str]) -> str:
    tail = process.log_tail()
    cause = next((hint for needle, hint in hints.items() if needle in tail), None)
    head = f"{process.name} exited with code {code} before it was ready"
    if cause:
        head += f": {cause}"
    return f"{head}; log {process.log_path}:\n{tail}"


class LocalServer:
    """What the local stack's servers share: their process and waiting until it answers."""

    name: ClassVar[str]
    ready_when: ClassVar[str]
    """What answering means, for the message of a server that never does."""
    ready_timeout: ClassVar[float]
    failure_hints: ClassVar[dict[str, str]] = {}
    """Log phrases and what they mean, for the message of a server that died."""

    process: ManagedProcess | None = None

    def start(self) -> None:
        """Start the server."""
        raise NotImplementedError

    def stop(self) -> None:
        """Stop the server and delete what it wrote."""
        raise NotImplementedError

    def wait_ready(self, timeout: float | None = None) -> None:
        """Block until the server answers; fail with the cause if it dies or never does."""
        if self.process is None:
            raise ServiceError(f"{self.name} was not started")
        wait_until(
            self.ready_when,
            self.answers,
            self.process,
            self.ready_timeout if timeout is None else timeout,
            self.failure_hints,
        )

    def answers(self) -> bool:
        """Whether the server answers now."""
        raise NotImplementedError
