"""Settings from the environment, one place for every component (workers, sink, CLI).

Every variable is named ``MHST_*``; the README lists them. Values are validated here, so a
typo fails at start-up with the variable's name rather than deep inside a worker.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

from mhst_tracker.domain.errors import ProfileError
from mhst_tracker.domain.profile import TRAILBLAZER_4WW, Profile, load_profile
from mhst_tracker.timesource import TimeSource, parse_time_source
from mhst_tracker.topics import TopicNames

NHS_NUMBER_MODES: Final = ("refuse", "pseudonymise")
"""What the API does with an ``nhs_number`` field (``MHST_API_NHS_NUMBER``)."""
MIN_PSEUDONYM_KEY_LENGTH: Final = 32


class ConfigError(ValueError):
    """An environment variable has a value the tracker cannot use."""


@dataclass(frozen=True)
class Settings:
    """The tracker's settings; ``Settings.from_env()`` reads them from ``MHST_*`` variables."""

    kafka_bootstrap: str = "127.0.0.1:9092"
    database_url: str = "sqlite+aiosqlite:///mhst-tracker.db"
    profile_path: Path | None = None
    clock: str = "wall"
    partitions: int = 12
    metrics_port: int = 9464
    metrics_school_labels: bool = True
    worker_data_dir: Path = Path(".cache/worker")
    topic_prefix: str = ""
    max_event_bytes: int = 65536
    standby_replicas: int = 1
    """Workers that keep a standby copy of each table partition (Faust's
    ``table_standby_replicas``): the take-over of a failed worker's partitions."""
    sink_metrics_port: int = 9465
    prometheus_url: str = "http://127.0.0.1:9090"
    notify_config: Path | None = None
    notify_port: int = 8090
    notify_metrics_port: int = 9467
    log_format: str = "json"
    api_host: str = "127.0.0.1"
    api_port: int = 8080
    api_metrics_port: int = 9466
    api_max_body_bytes: int = 1024 * 1024
    api_max_batch: int = 1000
    api_rate_limit: float = 50.0
    api_rate_burst: int = 100
    api_produce_timeout: float = 10.0
    api_nhs_number: str = "refuse"
    api_pseudonym_key: str | None = field(default=None, repr=False)
    """The HMAC key of NHS-number pseudonyms: a secret, never printed."""

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        """Read settings from ``env`` (default ``os.environ``)."""
        env = os.environ if env is None else env
        defaults = cls()
        profile = env.get("MHST_PROFILE")
        notify_config = env.get("MHST_NOTIFY_CONFIG")
        settings = cls(
            kafka_bootstrap=_servers(env, "MHST_KAFKA_BOOTSTRAP", defaults.kafka_bootstrap),
            database_url=env.get("MHST_DATABASE_URL", defaults.database_url),
            profile_path=Path(profile) if profile else None,
            clock=env.get("MHST_CLOCK", defaults.clock),
            partitions=_int(env, "MHST_PARTITIONS", defaults.partitions, minimum=1),
            metrics_port=_int(env, "MHST_METRICS_PORT", defaults.metrics_port, minimum=0),
            metrics_school_labels=_bool(env, "MHST_METRICS_SCHOOL_LABELS", True),
            worker_data_dir=Path(env.get("MHST_WORKER_DATA_DIR", str(defaults.worker_data_dir))),
            topic_prefix=env.get("MHST_TOPIC_PREFIX", ""),
            max_event_bytes=_int(env, "MHST_MAX_EVENT_BYTES", defaults.max_event_bytes, minimum=1),
            standby_replicas=_int(
                env, "MHST_STANDBY_REPLICAS", defaults.standby_replicas, minimum=0
            ),
            prometheus_url=env.get("MHST_PROMETHEUS_URL", defaults.prometheus_url),
            log_format=log_format(env),
            sink_metrics_port=_int(
                env, "MHST_SINK_METRICS_PORT", defaults.sink_metrics_port, minimum=0
            ),
            notify_config=Path(notify_config) if notify_config else None,
            notify_port=_int(env, "MHST_NOTIFY_PORT", defaults.notify_port, minimum=0),
            notify_metrics_port=_int(
                env, "MHST_NOTIFY_METRICS_PORT", defaults.notify_metrics_port, minimum=0
            ),
            api_host=env.get("MHST_API_HOST", defaults.api_host),
            api_port=_int(env, "MHST_API_PORT", defaults.api_port, minimum=0),
            api_metrics_port=_int(
                env, "MHST_API_METRICS_PORT", defaults.api_metrics_port, minimum=0
            ),
            api_max_body_bytes=_int(
                env, "MHST_API_MAX_BODY_BYTES", defaults.api_max_body_bytes, minimum=1024
            ),
            api_max_batch=_int(env, "MHST_API_MAX_BATCH", defaults.api_max_batch, minimum=1),
            api_rate_limit=_float(env, "MHST_API_RATE_LIMIT", defaults.api_rate_limit),
            api_rate_burst=_int(env, "MHST_API_RATE_BURST", defaults.api_rate_burst, minimum=1),
            api_produce_timeout=_float(
                env, "MHST_API_PRODUCE_TIMEOUT", defaults.api_produce_timeout
            ),
            api_nhs_number=_choice(env, "MHST_API_NHS_NUMBER", NHS_NUMBER_MODES),
            api_pseudonym_key=env.get("MHST_API_PSEUDONYM_KEY") or None,
        )
        settings.time_source()  # validate MHST_CLOCK now
        settings.pseudonym_key()  # and the API's key, when its mode needs one
        return settings

    def pseudonym_key(self) -> bytes | None:
        """The key of NHS-number pseudonyms (``MHST_API_PSEUDONYM_KEY``) when
        ``MHST_API_NHS_NUMBER`` is ``pseudonymise``, else ``None``."""
        if self.api_nhs_number != "pseudonymise":
            return None
        key = self.api_pseudonym_key
        if key is None or len(key) < MIN_PSEUDONYM_KEY_LENGTH:
            raise ConfigError(
                "MHST_API_PSEUDONYM_KEY must be set to a secret of at least "
                f"{MIN_PSEUDONYM_KEY_LENGTH} characters when MHST_API_NHS_NUMBER is pseudonymise"
            )
        return key.encode()

    def time_source(self) -> TimeSource:
        """The clock the workers read "now" from (``MHST_CLOCK``)."""
        try:
            return parse_time_source(self.clock)
        except ValueError as err:
            raise ConfigError(str(err)) from err

    def profile(self) -> Profile:
        """The standard the workers apply (``MHST_PROFILE``, default ``trailblazer-4ww``)."""
        if self.profile_path is None:
            return TRAILBLAZER_4WW
        try:
            return load_profile(self.profile_path)
        except ProfileError as err:
            raise ConfigError(f"MHST_PROFILE: {err}") from err

    def with_partitions(self, partitions: int | None) -> Settings:
        """These settings with another partition count (a command's ``--partitions``)."""
        return self if partitions is None else dataclasses.replace(self, partitions=partitions)

    @property
    def topics(self) -> TopicNames:
        """The topics' full names (``MHST_TOPIC_PREFIX`` lets tests isolate their topics)."""
        return TopicNames.with_prefix(self.topic_prefix)


def _int(env: Mapping[str, str], name: str, default: int, minimum: int) -> int:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError as err:
        raise ConfigError(f"{name} must be an integer, not {raw!r}") from err
    if value < minimum:
        raise ConfigError(f"{name} must be at least {minimum}, not {value}")
    return value


def _float(env: Mapping[str, str], name: str, default: float) -> float:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = float(raw)
    except ValueError as err:
        raise ConfigError(f"{name} must be a number, not {raw!r}") from err
    if not value > 0 or value == float("inf"):
        raise ConfigError(f"{name} must be a positive number, not {raw!r}")
    return value


def _choice(env: Mapping[str, str], name: str, choices: tuple[str, ...]) -> str:
    raw = env.get(name) or choices[0]
    if raw not in choices:
        raise ConfigError(f"{name} must be one of {', '.join(choices)}, not {raw!r}")
    return raw


def _bool(env: Mapping[str, str], name: str, default: bool) -> bool:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    if raw.lower() in ("1", "true", "yes", "on"):
        return True
    if raw.lower() in ("0", "false", "no", "off"):
        return False
    raise ConfigError(f"{name} must be true or false, not {raw!r}")


def log_format(env: Mapping[str, str] | None = None) -> str:
    """``MHST_LOG_FORMAT``: ``json`` (the default: a line a record) or ``text`` (for a
    person at a terminal). Read on its own too, by the command line before any command."""
    env = os.environ if env is None else env
    value = env.get("MHST_LOG_FORMAT") or "json"
    if value not in ("json", "text"):
        raise ConfigError(f"MHST_LOG_FORMAT must be json or text, not {value!r}")
    return value


def _servers(env: Mapping[str, str], name: str, default: str) -> str:
    """A comma-separated list of ``host:port`` (a port from 1 to 65535)."""
    raw = env.get(name) or default
    for server in raw.split(","):
        host, _, port = server.strip().rpartition(":")
        if not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ConfigError(f"{name} must be a comma-separated list of host:port, not {raw!r}")
    return raw
