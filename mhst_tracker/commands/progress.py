"""Progress bars on standard error, shown only when it is a terminal (a person watching)."""

import sys
from collections.abc import Callable, Iterable, Iterator
from typing import TypeVar

import click

_T = TypeVar("_T")


def stderr_is_terminal() -> bool:
    """Whether standard error is a terminal (progress bars only go to people)."""
    return sys.stderr.isatty()


def with_progress(
    items: Iterable[_T],
    length: int,
    label: str,
    position: Callable[[_T], int],
    every: int = 1,
) -> Iterator[_T]:
    """Yield ``items`` behind a progress bar on standard error.

    ``position(item)`` is how far through ``length`` the input is once ``item`` is read; it
    is asked every ``every`` items, and the bar is full when the items end.
    """
    with click.progressbar(length=length, label=label, file=sys.stderr) as bar:
        shown = 0
        for count, item in enumerate(items, start=1):
            if count % every == 0:
                reached = position(item)
                if reached > shown:
                    bar.update(reached - shown)
                    shown = reached
            yield item
        bar.update(length - shown)
