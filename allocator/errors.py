"""Input problems, collected over a whole workbook and raised once (pandera's lazy mode)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, order=True)
class CellRef:
    """Where a value came from: sheet, Excel row (1-based) and column letter/header."""

    sheet: str
    row: int | None = None
    column: str | None = None  # Excel column letter, e.g. "F"
    header: str | None = None  # header name, e.g. "cost_per_trainee"

    def __str__(self) -> str:
        if self.row is None and self.column is None:
            return self.sheet
        if self.column is None:
            return f"{self.sheet}!row {self.row}"
        if self.row is None:
            return f"{self.sheet}!{self.column}"
        return f"{self.sheet}!{self.column}{self.row}"

    def labelled(self) -> str:
        """The reference followed by its header, as every message starts: `Programs!F7 cost`."""
        return f"{self} {self.header}" if self.header else str(self)


@dataclass(frozen=True)
class InputIssue:
    """One problem in the input workbook, tied to the cell that causes it."""

    where: CellRef
    message: str

    def __str__(self) -> str:
        return f"{self.where.labelled()}: {self.message}"


@dataclass(frozen=True)
class Normalisation:
    """A value the reader changed because its meaning was certain (reported, never silent)."""

    where: CellRef
    found: str
    used: str
    why: str

    def __str__(self) -> str:
        return f"{self.where.labelled()}: read {self.found!r} as {self.used!r} ({self.why})"


@dataclass(frozen=True)
class Notice:
    """Something the user should know about what was read (e.g. a hidden row that was used)."""

    where: CellRef
    message: str

    def __str__(self) -> str:
        return f"{self.where.labelled()}: {self.message}"


class InputError(Exception):
    """The workbook cannot be used; carries every problem found, in sheet/row/column order."""

    def __init__(self, issues: list[InputIssue]):
        self.issues = sorted(
            issues,
            key=lambda i: (i.where.sheet, i.where.row or 0, i.where.column or "", i.message),
        )
        super().__init__(self.render())

    def render(self) -> str:
        n = len(self.issues)
        lines = [f"{n} problem{'s' if n != 1 else ''} in the round workbook:"]
        lines += [f"  {issue}" for issue in self.issues]
        return "\n".join(lines)


class InfeasibleRoundError(Exception):
    """No allocation satisfies every rule, budget and capacity together."""

    def __init__(self, message: str, diagnosis: object | None = None):
        self.diagnosis = diagnosis
        super().__init__(message)


class SolverStoppedError(Exception):
    """The solver stopped (time limit, numerical trouble) without a usable solution."""


class SigningKeyError(Exception):
    """A signing or trusted key cannot be made, read or used (a usage error, exit code 2)."""
