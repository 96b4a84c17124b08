"""Options that several commands share, written once: ``--loglevel`` and ``--profile``."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, Final

import click

from mhst_tracker.domain.errors import ProfileError
from mhst_tracker.domain.profile import Profile, load_profile

LOG_LEVELS: Final = ("debug", "info", "warning", "error")

loglevel_option: Final = click.option(
    "--loglevel",
    type=click.Choice(LOG_LEVELS),
    default="info",
    show_default=True,
    help="Log level.",
)


def profile_option(help_: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """``--profile FILE`` (passed as ``profile_path``), read with :func:`chosen_profile`."""
    return click.option(
        "--profile",
        "profile_path",
        type=click.Path(dir_okay=False, path_type=Path),
        default=None,
        help=help_,
    )


def chosen_profile(profile_path: Path | None, default: Callable[[], Profile]) -> Profile:
    """The profile of ``--profile``, else ``default()``; a bad one is a usage error."""
    try:
        return default() if profile_path is None else load_profile(profile_path)
    except ProfileError as error:
        raise click.BadParameter(str(error), param_hint="--profile") from None
