"""Progress bars and messages on stderr (rich), quiet when not attached to a terminal unless asked."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskProgressColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

console = Console(stderr=True, highlight=False)


def say(message: str) -> None:
    console.print(message)


@contextmanager
def bar(description: str, total: float | None, unit: str) -> Iterator[Progress]:
    """A progress bar with count, rate-based ETA and elapsed time; yields the Progress (use ``advance``)."""
    columns = [
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn(unit),
        TaskProgressColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
        TimeElapsedColumn(),
    ]
    with Progress(*columns, console=console, transient=False) as progress:
        progress.add_task(description, total=total)
        yield progress


def advance(progress: Progress, amount: float = 1) -> None:
    progress.advance(progress.task_ids[0], amount)
