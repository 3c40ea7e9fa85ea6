"""Phase reporting for long runs: the library announces phases, the CLI shows them.

The library calls `phase("solving stage outcome")`; nothing happens unless a reporter is
installed with `reporting(reporter)` (the CLI installs one that draws each phase with its
elapsed time on standard error, so standard output stays the summary).
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Callable, Iterator

Reporter = Callable[[str], None]
_reporter: contextvars.ContextVar[Reporter | None] = contextvars.ContextVar("reporter", default=None)


def phase(name: str) -> None:
    """Announce that a phase starts (the previous one has ended)."""
    reporter = _reporter.get()
    if reporter is not None:
        reporter(name)


@contextlib.contextmanager
def reporting(reporter: Reporter) -> Iterator[None]:
    """Install a reporter for the duration of the block."""
    token = _reporter.set(reporter)
    try:
        yield
    finally:
        _reporter.reset(token)


@contextlib.contextmanager
def rich_phases(enabled: bool = True) -> Iterator[None]:
    """Show each phase with a spinner and its elapsed time on standard error (rich)."""
    if not enabled:
        yield
        return
    from rich.console import Console
    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    progress = Progress(SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn(),
                        console=Console(stderr=True), transient=False)
    current: list[int] = []

    def report(name: str) -> None:
        if current:
            progress.update(current[-1], completed=1, total=1)
            progress.stop_task(current[-1])
        current.append(progress.add_task(name, total=None))

    with progress, reporting(report):
        try:
            yield
        finally:
            if current:
                progress.update(current[-1], completed=1, total=1)
                progress.stop_task(current[-1])
