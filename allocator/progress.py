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
_detail: contextvars.ContextVar[Reporter | None] = contextvars.ContextVar("detail", default=None)


def phase(name: str) -> None:
    """Announce that a phase starts (the previous one has ended)."""
    reporter = _reporter.get()
    if reporter is not None:
        reporter(name)


def detail_reporter() -> Reporter | None:
    """Where to send how far the current phase has got (the solver's progress), if anywhere."""
    return _detail.get()


@contextlib.contextmanager
def reporting(reporter: Reporter, detail: Reporter | None = None) -> Iterator[None]:
    """Install a reporter (and one for progress within a phase) for the duration of the block."""
    token = _reporter.set(reporter)
    detail_token = _detail.set(detail)
    try:
        yield
    finally:
        _detail.reset(detail_token)
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
    names: list[str] = []

    def finish() -> None:
        # The finished line keeps the phase's name and time, not the solver's last word.
        progress.update(current[-1], description=names[-1], completed=1, total=1)
        progress.stop_task(current[-1])

    def report(name: str) -> None:
        if current:
            finish()
        current.append(progress.add_task(name, total=None))
        names.append(name)

    def detail(text: str) -> None:
        if current:
            progress.update(current[-1], description=f"{names[-1]} [dim]- {text}[/dim]")

    with progress, reporting(report, detail):
        try:
            yield
        finally:
            if current:
                finish()
