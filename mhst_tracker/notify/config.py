"""The notifier's routing file (``MHST_NOTIFY_CONFIG``): recipients, channels, retries.

A TOML file, read once at start and checked whole: every problem found is one line naming
the recipient and the field (an unknown team, a bad address, a missing secret), and the
notifier does not start (:class:`NotifyConfigError`, exit code 2). Secrets are never in the
file: it names the environment variables that hold them (``password_env``, ``secret_env``).
``deploy/notify/notify.toml`` is the worked example::

    teams = ["MHST001", "MHST002"]              # the service's teams: routes name these
    dashboard_url = "https://grafana.example.nhs.uk/d/mhst-service-manager"

    [smtp]                                       # needed by email recipients
    host = "smtp.example.nhs.uk"
    port = 587
    security = "starttls"                        # "starttls", "tls" or "none"
    username_env = "MHST_SMTP_USERNAME"          # optional: authentication
    password_env = "MHST_SMTP_PASSWORD"
    sender = "mhst-tracker@example.nhs.uk"

    [delivery]                                   # all optional
    max_attempts = 8
    backoff_seconds = 30                         # first retry; doubles, with jitter
    max_backoff_seconds = 3600
    timeout_seconds = 10

    [[recipients]]
    name = "icb-commissioner"
    teams = ["*"]                                # or a list of the teams above
    kinds = ["breach"]                           # "breach", "at_risk"
    stages = ["intervention"]                    # default: every stage of the profile
    channel = "email"
    address = "commissioning@icb.example.nhs.uk"
    mode = "digest"                              # or "immediate"
    digest_at = "08:00"
    timezone = "Europe/London"                   # the default
    empty_digest = true                          # a "no new breaches" line on an empty day

    [[recipients]]
    name = "la-children"
    teams = ["MHST001"]
    channel = "webhook"
    url = "https://la.example.gov.uk/hooks/mhst"
    secret_env = "MHST_WEBHOOK_SECRET_LA"        # a Standard Webhooks secret (whsec_...)

    [[recipients]]
    name = "operations"
    operations = true                            # Alertmanager's alerts about the tracker
    channel = "email"
    address = "mhst-ops@example.nhs.uk"

Withdrawals are not a kind to subscribe to: a recipient who was sent a breach is sent its
correction, whatever its kinds.
"""

from __future__ import annotations

import base64
import binascii
import re
import tomllib
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from datetime import time
from enum import StrEnum
from pathlib import Path
from typing import Any, Final, TypeVar
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from mhst_tracker.domain.alerts import AlertKind

DEFAULT_TIMEZONE: Final = "Europe/London"
ALL_TEAMS: Final = "*"
SUBSCRIBABLE_KINDS: Final = (AlertKind.BREACH, AlertKind.AT_RISK)
_EMAIL: Final = re.compile(r"[^@\s<>,;\"]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)+")
_NAME: Final = re.compile(r"[a-z0-9][a-z0-9_.-]{0,63}")
_TIME_OF_DAY: Final = re.compile(r"([01]\d|2[0-3]):([0-5]\d)")
_SECRET_PREFIX: Final = "whsec_"
_E = TypeVar("_E", bound=StrEnum)


class NotifyConfigError(ValueError):
    """The routing file cannot be used; ``problems`` holds one line per problem."""

    def __init__(self, source: str, problems: list[str]) -> None:
        super().__init__(f"{source}: {problems[0]}" if len(problems) == 1 else source)
        self.source = source
        self.problems = problems

    def lines(self) -> list[str]:
        """One line per problem, each naming the file."""
        return [f"{self.source}: {problem}" for problem in self.problems]


class Channel(StrEnum):
    """How a recipient is reached."""

    EMAIL = "email"
    WEBHOOK = "webhook"


class Mode(StrEnum):
    """When a recipient is sent its alerts."""

    IMMEDIATE = "immediate"
    DIGEST = "digest"


class Security(StrEnum):
    """How the SMTP connection is protected."""

    STARTTLS = "starttls"
    TLS = "tls"
    NONE = "none"


@dataclass(frozen=True)
class Recipient:
    """One recipient: who, which alerts, by which channel, when."""

    name: str
    channel: Channel
    address: str
    """An email address, or the webhook's URL."""
    teams: frozenset[str] | None
    """The teams covered; ``None`` for every team (``"*"``)."""
    kinds: frozenset[AlertKind]
    stages: frozenset[str]
    mode: Mode = Mode.IMMEDIATE
    digest_at: time | None = None
    timezone: ZoneInfo = field(default_factory=lambda: ZoneInfo(DEFAULT_TIMEZONE))
    empty_digest: bool = False
    secret: str | None = None
    """The webhook's signing secret (from the environment), never written anywhere."""
    operations: bool = False
    """Whether Alertmanager's alerts about the tracker itself are forwarded to it."""

    def __repr__(self) -> str:
        return f"Recipient(name={self.name!r}, channel={self.channel.value!r})"


@dataclass(frozen=True)
class Smtp:
    """The SMTP server email recipients are sent through."""

    host: str
    port: int
    security: Security
    sender: str
    username: str | None = None
    password: str | None = None

    def __repr__(self) -> str:
        return f"Smtp(host={self.host!r}, port={self.port})"


@dataclass(frozen=True)
class Delivery:
    """How hard the notifier tries."""

    max_attempts: int = 8
    backoff_seconds: float = 30.0
    max_backoff_seconds: float = 3600.0
    timeout_seconds: float = 10.0
    concurrency: int = 64
    """Deliveries sent at once (one round)."""
    claim_timeout_seconds: float = 60.0
    """After how long a delivery left in flight by a notifier that stopped is sent again."""


@dataclass(frozen=True)
class NotifyConfig:
    """The whole routing file, checked."""

    teams: frozenset[str]
    recipients: tuple[Recipient, ...]
    smtp: Smtp | None = None
    delivery: Delivery = Delivery()
    dashboard_url: str | None = None

    def recipient(self, name: str) -> Recipient:
        """The recipient called ``name`` (``KeyError`` if none)."""
        for recipient in self.recipients:
            if recipient.name == name:
                return recipient
        raise KeyError(name)

    @property
    def operations(self) -> tuple[Recipient, ...]:
        """The recipients of Alertmanager's alerts about the tracker."""
        return tuple(recipient for recipient in self.recipients if recipient.operations)


def load_config(path: Path, env: Mapping[str, str], stages: Collection[str]) -> NotifyConfig:
    """Read and check the routing file at ``path``; :class:`NotifyConfigError` lists every
    problem. ``stages`` are the profile's stage names; ``env`` holds the secrets."""
    source = str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as error:
        raise NotifyConfigError(source, [f"cannot be read ({error.strerror})"]) from None
    except UnicodeDecodeError:
        raise NotifyConfigError(source, ["is not UTF-8 text"]) from None
    return parse_config(text, env, stages, source)


def parse_config(
    text: str, env: Mapping[str, str], stages: Collection[str], source: str = "notify config"
) -> NotifyConfig:
    """Check the routing file's text; see :func:`load_config`."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        raise NotifyConfigError(source, [f"not valid TOML: {error}"]) from None
    checker = _Checker(env, frozenset(stages))
    config = checker.config(data)
    if checker.problems or config is None:
        raise NotifyConfigError(source, checker.problems or ["no recipients"])
    return config


class _Checker:
    """Reads the parsed TOML, noting every problem instead of stopping at the first."""

    def __init__(self, env: Mapping[str, str], stages: frozenset[str]) -> None:
        self.env = env
        self.stages = stages
        self.problems: list[str] = []

    def problem(self, where: str, text: str) -> None:
        self.problems.append(f"{where}: {text}" if where else text)

    def config(self, data: dict[str, Any]) -> NotifyConfig | None:
        known = {"teams", "dashboard_url", "smtp", "delivery", "recipients"}
        self.unknown_keys("", data, known)
        teams = self.string_list("", data, "teams", required=True)
        for team in teams:
            if team == ALL_TEAMS:
                self.problem("teams", "list the service's teams; '*' is for recipients")
        dashboard_url = self.optional_url("", data, "dashboard_url")
        smtp = self.smtp(data["smtp"]) if isinstance(data.get("smtp"), dict) else None
        if "smtp" in data and not isinstance(data["smtp"], dict):
            self.problem("smtp", "must be a table")
        delivery = self.delivery(data.get("delivery", {}))
        raw_recipients = data.get("recipients")
        if not isinstance(raw_recipients, list) or not raw_recipients:
            self.problem("recipients", "at least one [[recipients]] table is needed")
            return None
        recipients: list[Recipient] = []
        names: set[str] = set()
        for index, raw in enumerate(raw_recipients):
            where = f"recipients[{index}]"
            if not isinstance(raw, dict):
                self.problem(where, "must be a table")
                continue
            name = raw.get("name")
            if isinstance(name, str) and name:
                where = f"recipient {name!r}"
                if name in names:
                    self.problem(where, "name used twice")
                names.add(name)
            recipient = self.recipient(where, raw, frozenset(teams))
            if recipient is not None:
                recipients.append(recipient)
        if "smtp" not in data and any(r.channel is Channel.EMAIL for r in recipients):
            self.problem("smtp", "email recipients need an [smtp] table")
        return NotifyConfig(
            teams=frozenset(teams),
            recipients=tuple(recipients),
            smtp=smtp,
            delivery=delivery,
            dashboard_url=dashboard_url,
        )

    def recipient(self, where: str, raw: dict[str, Any], teams: frozenset[str]) -> Recipient | None:
        known = {
            "name", "teams", "kinds", "stages", "channel", "address", "url", "secret_env",
            "mode", "digest_at", "timezone", "empty_digest", "operations",
        }  # fmt: skip
        self.unknown_keys(where, raw, known)
        before = len(self.problems)
        name = raw.get("name")
        if not isinstance(name, str) or _NAME.fullmatch(name) is None:
            self.problem(where, "name must be 1-64 lower-case letters, digits, '-', '_' or '.'")
        operations = self.boolean(where, raw, "operations", False)
        covered = self.teams(where, raw, teams, required=not operations)
        kinds = self.kinds(where, raw)
        stages = self.stage_names(where, raw)
        channel = self.choice(where, raw, "channel", Channel, None)
        address, secret = self.endpoint(where, raw, channel)
        mode = self.choice(where, raw, "mode", Mode, Mode.IMMEDIATE)
        zone = self.timezone(where, raw)
        digest_at = self.digest_at(where, raw, mode)
        empty_digest = self.boolean(where, raw, "empty_digest", False)
        if len(self.problems) > before or channel is None or mode is None or zone is None:
            return None
        assert isinstance(name, str)
        return Recipient(
            name=name,
            channel=channel,
            address=address,
            teams=covered,
            kinds=kinds,
            stages=stages,
            mode=mode,
            digest_at=digest_at,
            timezone=zone,
            empty_digest=empty_digest,
            secret=secret,
            operations=operations,
        )

    def teams(
        self, where: str, raw: dict[str, Any], teams: frozenset[str], required: bool
    ) -> frozenset[str] | None:
        if "teams" not in raw and not required:
            return frozenset()
        listed = self.string_list(where, raw, "teams", required=True)
        if ALL_TEAMS in listed:
            if len(listed) > 1:
                self.problem(where, "teams: '*' stands alone")
            return None
        for team in listed:
            if team not in teams:
                known = ", ".join(sorted(teams)) or "none"
                self.problem(where, f"unknown team {team!r} (the service's teams: {known})")
        return frozenset(listed)

    def kinds(self, where: str, raw: dict[str, Any]) -> frozenset[AlertKind]:
        if "kinds" not in raw:
            return frozenset({AlertKind.BREACH})
        kinds: set[AlertKind] = set()
        for value in self.string_list(where, raw, "kinds", required=True):
            if value not in {kind.value for kind in SUBSCRIBABLE_KINDS}:
                allowed = ", ".join(kind.value for kind in SUBSCRIBABLE_KINDS)
                self.problem(where, f"unknown kind {value!r} (kinds: {allowed})")
            else:
                kinds.add(AlertKind(value))
        return frozenset(kinds)

    def stage_names(self, where: str, raw: dict[str, Any]) -> frozenset[str]:
        if "stages" not in raw:
            return self.stages
        listed = self.string_list(where, raw, "stages", required=True)
        for stage in listed:
            if stage not in self.stages:
                known = ", ".join(sorted(self.stages))
                self.problem(where, f"unknown stage {stage!r} (the profile's stages: {known})")
        return frozenset(listed)

    def endpoint(
        self, where: str, raw: dict[str, Any], channel: Channel | None
    ) -> tuple[str, str | None]:
        if channel is Channel.EMAIL:
            if "url" in raw or "secret_env" in raw:
                self.problem(where, "url and secret_env are for webhooks; email takes address")
            address = raw.get("address")
            if not isinstance(address, str) or _EMAIL.fullmatch(address) is None:
                self.problem(where, "address is not an email address")
                return "", None
            return address, None
        if channel is Channel.WEBHOOK:
            if "address" in raw:
                self.problem(where, "address is for email; a webhook takes url")
            url = self.optional_url(where, raw, "url")
            if url is None:
                self.problem(where, "url is missing")
            return url or "", self.secret(where, raw)
        return "", None

    def secret(self, where: str, raw: dict[str, Any]) -> str | None:
        variable = raw.get("secret_env")
        if not isinstance(variable, str) or not variable:
            self.problem(where, "secret_env must name the variable that holds the secret")
            return None
        value = self.env.get(variable)
        if not value:
            self.problem(where, f"secret variable {variable} is not set")
            return None
        if not valid_secret(value):
            self.problem(
                where, f"secret variable {variable} is not a webhook secret (whsec_ + base64)"
            )
            return None
        return value

    def timezone(self, where: str, raw: dict[str, Any]) -> ZoneInfo | None:
        name = raw.get("timezone", DEFAULT_TIMEZONE)
        if not isinstance(name, str):
            self.problem(where, "timezone must be a string")
            return None
        try:
            return ZoneInfo(name)
        except (ZoneInfoNotFoundError, ValueError):
            self.problem(where, f"unknown timezone {name!r}")
            return None

    def digest_at(self, where: str, raw: dict[str, Any], mode: Mode | None) -> time | None:
        value = raw.get("digest_at")
        if mode is not Mode.DIGEST:
            if value is not None:
                self.problem(where, "digest_at is for mode = 'digest'")
            return None
        if value is None:
            self.problem(where, "a digest needs digest_at (HH:MM, local time)")
            return None
        match = _TIME_OF_DAY.fullmatch(value) if isinstance(value, str) else None
        if match is None:
            self.problem(where, "digest_at must be HH:MM (local time)")
            return None
        return time(int(match[1]), int(match[2]))

    def smtp(self, raw: dict[str, Any]) -> Smtp | None:
        where = "smtp"
        known = {"host", "port", "security", "username_env", "password_env", "sender"}
        self.unknown_keys(where, raw, known)
        before = len(self.problems)
        host = raw.get("host")
        if not isinstance(host, str) or not host:
            self.problem(where, "host is missing")
        security = self.choice(where, raw, "security", Security, Security.STARTTLS)
        default_port = {Security.TLS: 465, Security.STARTTLS: 587, Security.NONE: 25}.get(
            security or Security.NONE, 25
        )
        port = self.integer(where, raw, "port", default_port, 1, 65535)
        sender = raw.get("sender")
        if not isinstance(sender, str) or _EMAIL.fullmatch(sender) is None:
            self.problem(where, "sender is not an email address")
        username = self.env_value(where, raw, "username_env")
        password = self.env_value(where, raw, "password_env")
        if (username is None) != (password is None):
            self.problem(where, "username_env and password_env go together")
        if len(self.problems) > before or security is None:
            return None
        assert isinstance(host, str)
        assert isinstance(sender, str)
        return Smtp(host, port, security, sender, username, password)

    def delivery(self, raw: Any) -> Delivery:
        where = "delivery"
        if not isinstance(raw, dict):
            self.problem(where, "must be a table")
            return Delivery()
        defaults = Delivery()
        known = {
            "max_attempts", "backoff_seconds", "max_backoff_seconds", "timeout_seconds",
            "concurrency", "claim_timeout_seconds",
        }  # fmt: skip
        self.unknown_keys(where, raw, known)
        timeout = self.number(where, raw, "timeout_seconds", defaults.timeout_seconds)
        return Delivery(
            max_attempts=self.integer(where, raw, "max_attempts", defaults.max_attempts, 1, 100),
            backoff_seconds=self.number(where, raw, "backoff_seconds", defaults.backoff_seconds),
            max_backoff_seconds=self.number(
                where, raw, "max_backoff_seconds", defaults.max_backoff_seconds
            ),
            timeout_seconds=timeout,
            concurrency=self.integer(where, raw, "concurrency", defaults.concurrency, 1, 1000),
            claim_timeout_seconds=self.number(
                where, raw, "claim_timeout_seconds", max(defaults.claim_timeout_seconds, timeout)
            ),
        )

    # --- field readers -------------------------------------------------------------------

    def unknown_keys(self, where: str, raw: dict[str, Any], known: set[str]) -> None:
        for key in sorted(set(raw) - known):
            self.problem(where, f"unknown setting {key!r}")

    def string_list(
        self, where: str, raw: dict[str, Any], key: str, *, required: bool
    ) -> list[str]:
        value = raw.get(key)
        if value is None and not required:
            return []
        if (
            not isinstance(value, list)
            or not value
            or not all(isinstance(item, str) and item for item in value)
        ):
            self.problem(where, f"{key} must be a non-empty list of strings")
            return []
        return value

    def choice(
        self, where: str, raw: dict[str, Any], key: str, kind: type[_E], default: _E | None
    ) -> _E | None:
        value = raw.get(key)
        if value is None and default is not None:
            return default
        try:
            return kind(str(value))
        except ValueError:
            allowed = ", ".join(member.value for member in kind)
            self.problem(where, f"{key} must be one of {allowed}")
            return None

    def boolean(self, where: str, raw: dict[str, Any], key: str, default: bool) -> bool:
        value = raw.get(key, default)
        if not isinstance(value, bool):
            self.problem(where, f"{key} must be true or false")
            return default
        return value

    def integer(
        self, where: str, raw: dict[str, Any], key: str, default: int, low: int, high: int
    ) -> int:
        value = raw.get(key, default)
        if type(value) is not int or not low <= value <= high:
            self.problem(where, f"{key} must be a whole number from {low} to {high}")
            return default
        return value

    def number(self, where: str, raw: dict[str, Any], key: str, default: float) -> float:
        value = raw.get(key, default)
        if type(value) not in (int, float) or not 0 < value <= 86_400:
            self.problem(where, f"{key} must be a number of seconds above 0, at most 86400")
            return default
        return float(value)

    def optional_url(self, where: str, raw: dict[str, Any], key: str) -> str | None:
        value = raw.get(key)
        if value is None:
            return None
        parts = urlsplit(value) if isinstance(value, str) else None
        if parts is None or parts.scheme not in ("http", "https") or not parts.hostname:
            self.problem(where, f"{key} must be an http:// or https:// URL")
            return None
        return str(value)

    def env_value(self, where: str, raw: dict[str, Any], key: str) -> str | None:
        variable = raw.get(key)
        if variable is None:
            return None
        if not isinstance(variable, str) or not variable:
            self.problem(where, f"{key} must name an environment variable")
            return None
        value = self.env.get(variable)
        if not value:
            self.problem(where, f"{key}: variable {variable} is not set")
            return None
        return value


def valid_secret(value: str) -> bool:
    """Whether ``value`` is a Standard Webhooks secret: ``whsec_`` and base64 of 24 to 64
    bytes."""
    if not value.startswith(_SECRET_PREFIX):
        return False
    try:
        key = base64.b64decode(value.removeprefix(_SECRET_PREFIX), validate=True)
    except (binascii.Error, ValueError):
        return False
    return 24 <= len(key) <= 64
