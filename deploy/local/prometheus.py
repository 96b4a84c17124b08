"""A real Prometheus server on loopback, scraping targets a test or the demo gives it."""

from __future__ import annotations

import json
import shutil
import signal
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from deploy.local.errors import ServiceError
from deploy.local.process import (
    REPO_ROOT,
    LocalServer,
    ManagedProcess,
    free_port,
    make_run_dir,
    require_free_port,
)

RULES_DIR = REPO_ROOT / "deploy" / "prometheus" / "rules"
_FAILURE_HINTS = {"address already in use": "its port is already in use by another process"}


def prometheus_binary() -> str:
    """Path of the prometheus executable."""
    path = shutil.which("prometheus")
    if path is None:
        raise ServiceError(
            "Prometheus is not installed: run `make deps` (apt-get install prometheus)"
        )
    return path


def render_config(
    targets: Sequence[str],
    scrape_interval: str = "1s",
    rule_files: Iterable[Path] = (),
    sink_targets: Sequence[str] = (),
    notifier_targets: Sequence[str] = (),
    api_targets: Sequence[str] = (),
) -> str:
    """A prometheus.yml scraping ``targets`` (host:port) as job ``mhst-worker``,
    ``sink_targets`` as job ``mhst-sink``, ``notifier_targets`` as job ``mhst-notifier`` and
    ``api_targets`` as job ``mhst-api``, the jobs of ``deploy/prometheus/prometheus.yml``."""
    jobs = {
        "mhst-worker": targets,
        "mhst-sink": sink_targets,
        "mhst-notifier": notifier_targets,
        "mhst-api": api_targets,
    }
    config: dict[str, Any] = {
        "global": {"scrape_interval": scrape_interval, "evaluation_interval": scrape_interval},
        "rule_files": [str(path) for path in rule_files],
        "scrape_configs": [
            {"job_name": job, "static_configs": [{"targets": list(addresses)}]}
            for job, addresses in jobs.items()
        ],
    }
    return json.dumps(config, indent=2)  # JSON is valid YAML


class PrometheusServer(LocalServer):
    """One Prometheus on 127.0.0.1; ``set_targets`` rewrites the scrape list and reloads."""

    name = "Prometheus"
    ready_when = "/-/ready"
    ready_timeout = 30.0
    failure_hints = _FAILURE_HINTS

    def __init__(self, port: int | None = None, scrape_interval: str = "1s") -> None:
        self.port = port or free_port()
        self.scrape_interval = scrape_interval
        self.url = f"http://127.0.0.1:{self.port}"
        self.run_dir: Path | None = None
        self.process: ManagedProcess | None = None
        self._rule_files: list[Path] = []

    @classmethod
    def attach(cls, url: str, config_path: Path) -> PrometheusServer:
        """A handle on a Prometheus started elsewhere (``python -m deploy.local up``)."""
        server = cls(port=int(url.rsplit(":", 1)[1]))
        server.run_dir = config_path.parent
        return server

    @property
    def config_path(self) -> Path:
        """The generated configuration file."""
        if self.run_dir is None:
            raise ServiceError("Prometheus was not started")
        return self.run_dir / "prometheus.yml"

    def start(self, targets: Sequence[str] = (), rule_files: Iterable[Path] = ()) -> None:
        """Write the config and start the server (returns before it is ready)."""
        require_free_port("Prometheus", self.port)
        self.run_dir = make_run_dir("prometheus")
        self._rule_files = list(rule_files)
        self.config_path.write_text(render_config(targets, self.scrape_interval, self._rule_files))
        self.process = ManagedProcess(
            "Prometheus",
            [
                prometheus_binary(),
                f"--config.file={self.config_path}",
                f"--storage.tsdb.path={self.run_dir / 'data'}",
                f"--web.listen-address=127.0.0.1:{self.port}",
                "--web.enable-lifecycle",
                "--log.level=warn",
            ],
            self.run_dir / "prometheus.log",
            stop_signal=signal.SIGTERM,
        )
        self.process.start()

    def answers(self) -> bool:
        """Whether ``/-/ready`` answers 200."""
        try:
            with urllib.request.urlopen(f"{self.url}/-/ready", timeout=2) as resp:
                return bool(resp.status == 200)
        except (urllib.error.URLError, OSError):
            return False

    def set_targets(
        self,
        targets: Sequence[str],
        sink_targets: Sequence[str] = (),
        notifier_targets: Sequence[str] = (),
        api_targets: Sequence[str] = (),
    ) -> None:
        """Scrape exactly these host:port targets (workers, store sinks, notifiers, APIs) from
        now on."""
        self.config_path.write_text(
            render_config(
                targets,
                self.scrape_interval,
                self._rule_files,
                sink_targets,
                notifier_targets,
                api_targets,
            )
        )
        request = urllib.request.Request(f"{self.url}/-/reload", method="POST")
        with urllib.request.urlopen(request, timeout=10) as resp:
            if resp.status != 200:
                raise ServiceError(f"Prometheus refused the new configuration: {resp.status}")

    def stop(self) -> None:
        """Stop the server and delete its data."""
        if self.process is not None:
            self.process.stop()
        if self.run_dir is not None:
            shutil.rmtree(self.run_dir, ignore_errors=True)
