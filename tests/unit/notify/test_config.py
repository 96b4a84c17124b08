"""The routing file: the worked example loads; every problem is one line naming where."""

from __future__ import annotations

from datetime import time
from pathlib import Path

import pytest

from mhst_tracker.domain.alerts import AlertKind
from mhst_tracker.notify.config import (
    Channel,
    Mode,
    NotifyConfigError,
    Security,
    load_config,
    parse_config,
    valid_secret,
)

EXAMPLE = Path(__file__).resolve().parents[3] / "deploy" / "notify" / "notify.toml"
STAGES = ("assessment", "allocation", "intervention")
SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
ENV = {
    "MHST_SMTP_USERNAME": "user",
    "MHST_SMTP_PASSWORD": "password",
    "MHST_WEBHOOK_SECRET_LA": SECRET,
}
MINIMAL = """
teams = ["T1", "T2"]
[smtp]
host = "localhost"
sender = "tracker@example.org"
[[recipients]]
name = "manager"
teams = ["T1"]
channel = "email"
address = "manager@example.org"
"""


def problems(text: str, env: dict[str, str] | None = None) -> list[str]:
    with pytest.raises(NotifyConfigError) as raised:
        parse_config(text, ENV if env is None else env, STAGES, "routing.toml")
    return raised.value.problems


def test_the_worked_example_loads() -> None:
    config = load_config(EXAMPLE, ENV, STAGES)
    names = [recipient.name for recipient in config.recipients]
    assert names == [
        "icb-commissioning",
        "mhst001-service-manager",
        "mhst002-service-manager",
        "la-childrens-services",
        "operations",
    ]
    icb = config.recipient("icb-commissioning")
    assert icb.teams is None
    assert icb.kinds == {AlertKind.BREACH}
    assert icb.stages == {"intervention"}
    assert icb.mode is Mode.DIGEST
    assert icb.digest_at == time(8, 0)
    assert str(icb.timezone) == "Europe/London"
    la = config.recipient("la-childrens-services")
    assert la.channel is Channel.WEBHOOK
    assert la.secret == SECRET
    assert la.teams == frozenset({"MHST001", "MHST003"})
    assert [recipient.name for recipient in config.operations] == ["operations"]
    assert config.operations[0].teams == frozenset()
    assert config.smtp is not None
    assert config.smtp.security is Security.STARTTLS
    assert (config.smtp.username, config.smtp.password) == ("user", "password")


def test_defaults_every_stage_breaches_only_immediate_london() -> None:
    config = parse_config(MINIMAL, {}, STAGES)
    (manager,) = config.recipients
    assert manager.stages == set(STAGES)
    assert manager.kinds == {AlertKind.BREACH}
    assert manager.mode is Mode.IMMEDIATE
    assert str(manager.timezone) == "Europe/London"
    assert config.smtp is not None
    assert config.smtp.port == 587


def test_secrets_are_not_in_the_representation() -> None:
    config = load_config(EXAMPLE, ENV, STAGES)
    assert SECRET not in repr(config)
    assert "password" not in repr(config.smtp)


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (('teams = ["T1"]', 'teams = ["T9"]'), "recipient 'manager': unknown team 'T9'"),
        (
            ('address = "manager@example.org"', 'address = "not an address"'),
            "recipient 'manager': address is not an email address",
        ),
        (('channel = "email"', 'channel = "pager"'), "channel must be one of email, webhook"),
        (('teams = ["T1"]', 'teams = ["T1"]\nkinds = ["everything"]'), "unknown kind"),
        (('teams = ["T1"]', 'teams = ["T1"]\nstages = ["triage"]'), "unknown stage 'triage'"),
        (('teams = ["T1"]', 'teams = ["T1"]\nmode = "digest"'), "a digest needs digest_at"),
        (
            ('teams = ["T1"]', 'teams = ["T1"]\nmode = "digest"\ndigest_at = "25:00"'),
            "digest_at must be HH:MM",
        ),
        (('teams = ["T1"]', 'teams = ["T1"]\ntimezone = "Mars/Olympus"'), "unknown timezone"),
        (('teams = ["T1"]', 'teams = ["T1"]\ncolour = "red"'), "unknown setting 'colour'"),
        (('host = "localhost"', 'host = ""'), "smtp: host is missing"),
        (('name = "manager"', 'name = "Manager Team"'), "name must be 1-64 lower-case"),
    ],
)
def test_each_problem_is_named(change: tuple[str, str], expected: str) -> None:
    found = problems(MINIMAL.replace(*change))
    assert any(expected in problem for problem in found), found


def test_a_missing_secret_is_named_by_its_variable_not_its_value() -> None:
    text = MINIMAL + (
        '[[recipients]]\nname = "hook"\nteams = ["*"]\nchannel = "webhook"\n'
        'url = "https://hooks.example.org/x"\nsecret_env = "MHST_HOOK_SECRET"\n'
    )
    assert problems(text, {}) == ["recipient 'hook': secret variable MHST_HOOK_SECRET is not set"]
    bad = problems(text, {"MHST_HOOK_SECRET": "hunter2"})
    assert bad == [
        "recipient 'hook': secret variable MHST_HOOK_SECRET is not a webhook secret"
        " (whsec_ + base64)"
    ]
    assert "hunter2" not in bad[0]
    config = parse_config(text, {"MHST_HOOK_SECRET": SECRET}, STAGES)
    assert config.recipient("hook").secret == SECRET


def test_every_problem_at_once_one_line_each() -> None:
    text = (
        MINIMAL.replace('teams = ["T1"]', 'teams = ["T9"]').replace(
            'address = "manager@example.org"', 'address = "nobody"'
        )
        + '[[recipients]]\nname = "manager"\nteams = ["T2"]\n'
        + 'channel = "email"\naddress = "a@b.org"\n'
    )
    with pytest.raises(NotifyConfigError) as raised:
        parse_config(text, {}, STAGES, "routing.toml")
    lines = raised.value.lines()
    assert lines == [
        "routing.toml: recipient 'manager': unknown team 'T9' (the service's teams: T1, T2)",
        "routing.toml: recipient 'manager': address is not an email address",
        "routing.toml: recipient 'manager': name used twice",
    ]
    assert all("\n" not in line for line in lines)


def test_email_needs_smtp_and_toml_errors_carry_the_line() -> None:
    no_smtp = MINIMAL.replace('[smtp]\nhost = "localhost"\nsender = "tracker@example.org"\n', "")
    assert problems(no_smtp) == ["smtp: email recipients need an [smtp] table"]
    (broken,) = problems('teams = ["T1"]\nname = = 1\n')
    assert broken.startswith("not valid TOML:")
    assert "line" in broken


def test_an_unreadable_file_is_one_line(tmp_path: Path) -> None:
    with pytest.raises(NotifyConfigError) as raised:
        load_config(tmp_path / "missing.toml", {}, STAGES)
    assert raised.value.lines() == [
        f"{tmp_path / 'missing.toml'}: cannot be read (No such file or directory)"
    ]


def test_webhook_secrets() -> None:
    assert valid_secret(SECRET)
    assert not valid_secret("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
    assert not valid_secret("whsec_not base64!")
    assert not valid_secret("whsec_c2hvcnQ=")
