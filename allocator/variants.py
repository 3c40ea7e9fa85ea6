"""Variants: named what-if changes to a validated round, read from the optional `Variants` sheet.

The sheet has one row per variant: `variant` (its name) and `overrides`, a semicolon-separated
list of changes, each `<target> = <value>`:

    budget JIF 2027 = +10%          a fund's budget in a period (`*` = every round period)
    rule R-INC value = 0.35         a rule's value (or `penalty`)
    weight employment_rate = 0.5    an Objective weight (a new metric adds an Objective row)
    equity_objective = maxmin_per_capita     any Round setting but round_id and periods
    program P1 max_trainees = 40    max_trainees, min_trainees, cost_per_trainee, external_match
                                    or an outcome metric of a program (`*` = every program)

A numeric value is absolute (`40`, `120000`), relative (`+10%`, `-5%`), a change (`+5000`,
`-5000`) or a factor (`*1.1`): a leading sign always means "change the current value", so a
negative absolute value cannot be written (no override needs one). Overrides apply in order,
each to the result of the one before. Every override is checked against the round: an unknown
fund, period, rule, metric or program, or a value the round does not allow, is an InputError
naming the Variants cell, like any other error in the workbook.

A variant is applied to the validated `Round` (never to the workbook) and the result is
re-validated as a whole with `Round.model_validate`, so it is as canonical as a round read from
a workbook: re-sorted tables, and a fresh object (a `model_copy` would keep the lookup cache of
the round it was copied from).
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from allocator import cells
from allocator.errors import CellRef, InputError, InputIssue
from allocator.round import (
    OUTCOME_COLUMNS,
    RATE_COLUMNS,
    BudgetRow,
    Measure,
    ObjectiveRow,
    ProgramRow,
    Round,
    RoundSettings,
)
from allocator.workbook import Table, read_tables

BASE_NAME = "base"
SETTING_KEYS = ("title", "currency", "rounding_unit", "equity_objective", "outcome_tolerance",
                "time_limit_s", "mip_gap", "robust_gamma", "robust_level")
PROGRAM_FIELDS = ("max_trainees", "min_trainees", "cost_per_trainee", "external_match")
RULE_FIELDS = ("value", "penalty")
_NUMBER = re.compile(r"^\s*(?P<op>[+\-*])?\s*(?P<num>[^%\s][^%]*?)\s*(?P<pct>%)?\s*$")


class OverrideError(ValueError):
    """One override cannot be parsed or does not fit the round."""


@dataclass(frozen=True)
class Change:
    """A numeric right-hand side: `set` (absolute), `add` (+/- amount), `pct` (+/- %) or `mul`."""

    op: str
    amount: Decimal

    def apply(self, current: Decimal) -> Decimal:
        """The new value given the current one."""
        if self.op == "set":
            return self.amount
        if self.op == "add":
            return current + self.amount
        if self.op == "pct":
            return current * (1 + self.amount / 100)
        return current * self.amount

    def __str__(self) -> str:
        text = format(self.amount.normalize(), "f")
        return {"set": text, "add": f"{'+' if self.amount >= 0 else ''}{text}",
                "pct": f"{'+' if self.amount >= 0 else ''}{text}%", "mul": f"*{text}"}[self.op]


@dataclass(frozen=True)
class Override:
    """One parsed override: what it targets (`kind`, `target`) and the raw value text."""

    text: str
    kind: str  # budget | rule | weight | setting | program
    target: tuple[str, ...]
    value: str


@dataclass(frozen=True)
class Variant:
    """One row of the Variants sheet."""

    name: str
    overrides_text: str
    overrides: tuple[Override, ...]
    where: CellRef  # the overrides cell, where errors point


def parse_change(text: str) -> Change:
    """`40` -> set 40, `+10%` -> pct 10, `-5000` -> add -5000, `*1.1` -> mul 1.1."""
    m = _NUMBER.match(text)
    if not m:
        raise OverrideError(f"expected a number such as 40, +10%, -5000 or *1.1, got {text!r}")
    op, pct = m.group("op"), m.group("pct")
    try:
        number = cells.parse_decimal(m.group("num"), [])
    except cells.CellValueError as exc:
        raise OverrideError(f"expected a number such as 40, +10%, -5000 or *1.1, got {text!r}") from exc
    if number is None or number < 0:
        raise OverrideError(f"expected a number such as 40, +10%, -5000 or *1.1, got {text!r}")
    if pct and op not in ("+", "-"):
        raise OverrideError(f"a percentage changes the current value: write +{number}% or "
                            f"-{number}%, got {text!r}")
    if op == "*":
        return Change("mul", number)
    sign = Decimal(-1) if op == "-" else Decimal(1)
    if pct:
        return Change("pct", sign * number)
    return Change("add" if op else "set", sign * number)


def parse_override(text: str) -> Override:
    """Parse `<target> = <value>` (syntax only; `apply_override` checks it against a round)."""
    if "=" not in text:
        raise OverrideError(f"{text!r}: expected '<what> = <value>', e.g. 'budget JIF 2027 = +10%'")
    lhs, value = (part.strip() for part in text.split("=", 1))
    try:
        words = shlex.split(lhs)  # quotes allow ids with spaces: budget "Fund A" 2027
    except ValueError as exc:
        raise OverrideError(f"{text!r}: {exc}") from exc
    if not words:
        raise OverrideError(f"{text!r}: nothing before '='")
    if not value:
        raise OverrideError(f"{text!r}: nothing after '='")
    head = words[0].lower()
    shapes = {"budget": (3, "budget <fund> <period> = <value>"),
              "rule": (3, "rule <rule_id> value = <value>"),
              "weight": (2, "weight <metric> = <value>"),
              "program": (3, "program <program_id> <field> = <value>")}
    if head in shapes:
        n, shape = shapes[head]
        if len(words) != n:
            raise OverrideError(f"{text!r}: expected '{shape}'")
        target = tuple(words[1:])
        if head in ("rule", "program", "weight"):  # field and metric names are headers: lower case
            target = (*target[:-1], target[-1].lower()) if head != "weight" else (target[0].lower(),)
        return Override(text, head, target, value)
    key = head.replace(" ", "_")
    if len(words) == 1:
        return Override(text, "setting", (key,), value)
    raise OverrideError(f"{text!r}: expected 'budget ...', 'rule ...', 'weight ...', "
                        f"'program ...' or a Round setting ({', '.join(SETTING_KEYS)})")


def split_overrides(text: str) -> list[str]:
    """The non-blank parts of a semicolon-separated overrides cell."""
    return [part.strip() for part in text.split(";") if part.strip()]


# --- reading the sheet ---------------------------------------------------------------------------
def _read(path: str | Path) -> tuple[list[Variant], list[InputIssue]]:
    tables, _ = read_tables(Path(path), {"variants"})
    table = tables.get("variants")
    return ([], []) if table is None else variants_from_table(table)


def variants_from_table(table: Table) -> tuple[list[Variant], list[InputIssue]]:
    """Parse the Variants table: the variants, and every problem found (not raised)."""
    issues: list[InputIssue] = []
    for needed in ("variant", "overrides"):
        if needed not in table.headers:
            issues.append(InputIssue(CellRef(table.sheet, table.header_row, None, needed),
                                     f"the Variants sheet needs the columns variant and overrides; "
                                     f"{needed!r} is missing"))
    if issues:
        return [], issues
    out: list[Variant] = []
    seen: dict[str, int] = {}
    for excel_row, raw in table.rows:
        name_ref = table.ref(excel_row, "variant")
        where = table.ref(excel_row, "overrides")
        try:
            name = cells.parse_text(raw.get("variant"), [])
            text = cells.parse_text(raw.get("overrides"), []) or ""
        except cells.CellValueError as exc:
            issues.append(InputIssue(name_ref, str(exc)))
            continue
        if not name:
            issues.append(InputIssue(name_ref, "required, but the cell is blank"))
            continue
        if name.lower() == BASE_NAME:
            issues.append(InputIssue(name_ref, f"{name!r} is the name of the round itself; "
                                     "give the variant another name"))
            continue
        if name.lower() in seen:
            issues.append(InputIssue(name_ref, f"the variant {name!r} is named twice "
                                     f"(also row {seen[name.lower()]})"))
            continue
        seen[name.lower()] = excel_row
        overrides = []
        for part in split_overrides(text):
            try:
                overrides.append(parse_override(part))
            except OverrideError as exc:
                issues.append(InputIssue(where, f"variant {name!r}: {exc}"))
        out.append(Variant(name, text, tuple(overrides), where))
    return out, issues


def load_variants(path: str | Path, rnd: Round) -> list[tuple[Variant, Round]]:
    """Read the Variants sheet and apply every variant to `rnd`; all problems raised together."""
    variants, issues = _read(path)
    out: list[tuple[Variant, Round]] = []
    for variant in variants:
        try:
            out.append((variant, apply_variant(rnd, variant)))
        except InputError as exc:
            issues.extend(exc.issues)
    if issues:
        raise InputError(issues)
    return out


# --- applying ------------------------------------------------------------------------------------
def apply_variant(rnd: Round, variant: Variant) -> Round:
    """The round with the variant's overrides applied in order, re-validated as a whole.

    Raises InputError naming the variant's overrides cell for every override that does not fit.
    """
    issues: list[InputIssue] = []
    current = rnd
    for override in variant.overrides:
        try:
            current = apply_override(current, override)
        except OverrideError as exc:
            issues.append(InputIssue(variant.where, f"variant {variant.name!r}: {exc}"))
    if issues:
        raise InputError(issues)
    return current


def apply_override(rnd: Round, ov: Override) -> Round:
    """One override applied to a round; raises OverrideError when it does not fit the round."""
    handler = {"budget": _budget, "rule": _rule, "weight": _weight, "setting": _setting,
               "program": _program}[ov.kind]
    update = handler(rnd, ov)
    return revalidate(rnd, update, ov)


def revalidate(rnd: Round, update: dict[str, Any], ov: Override | None = None) -> Round:
    """`rnd.model_copy(update=...)`, then validated afresh (bounds, types, a clean lookup cache)."""
    new = rnd.model_copy(update=update)
    try:
        return Round.model_validate(new.model_dump())
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(x) for x in err.get("loc", ()))
        prefix = f"{ov.text!r}: " if ov is not None else ""
        raise OverrideError(f"{prefix}the result is not a valid round ({where}: {err.get('msg')})") \
            from exc


def _change(ov: Override) -> Change:
    try:
        return parse_change(ov.value)
    except OverrideError as exc:
        raise OverrideError(f"{ov.text!r}: {exc}") from None


def _known(what: str, value: str, known: list[str] | tuple[str, ...], ov: Override) -> None:
    if value not in known:
        listed = ", ".join(known[:20]) + (", ..." if len(known) > 20 else "")
        raise OverrideError(f"{ov.text!r}: unknown {what} {value!r} (the round has {listed})")


def _budget(rnd: Round, ov: Override) -> dict[str, Any]:
    fund, period = ov.target
    _known("fund", fund, [f.fund_id for f in rnd.funds], ov)
    if period != "*":
        _known("period", period, list(rnd.periods), ov)
    change = _change(ov)
    periods = rnd.periods if period == "*" else (period,)
    rows = {(b.fund_id, b.period): b for b in rnd.budgets}
    for t in periods:
        old = rows.get((fund, t))
        amount = change.apply(old.amount if old is not None else Decimal(0))
        if amount < 0:
            raise OverrideError(f"{ov.text!r}: the budget of {fund} in {t} would be "
                                f"{format(amount.normalize(), 'f')}, below 0")
        rows[(fund, t)] = (old.model_copy(update={"amount": amount}) if old is not None
                           else BudgetRow(fund_id=fund, period=t, amount=amount))
    order = {t: i for i, t in enumerate(rnd.periods)}
    return {"budgets": tuple(sorted(rows.values(), key=lambda b: (b.fund_id, order[b.period])))}


def _rule(rnd: Round, ov: Override) -> dict[str, Any]:
    rule_id, field = ov.target
    _known("rule", rule_id, [r.rule_id for r in rnd.rules], ov)
    if field not in RULE_FIELDS:
        raise OverrideError(f"{ov.text!r}: a rule override changes {' or '.join(RULE_FIELDS)}, "
                            f"not {field!r}")
    rule = next(r for r in rnd.rules if r.rule_id == rule_id)
    if field == "penalty" and ov.value.lower() in ("none", "hard"):
        new_value: float | None = None  # the rule becomes hard
    else:
        current = getattr(rule, field)
        change = _change(ov)
        if current is None and change.op != "set":
            raise OverrideError(f"{ov.text!r}: rule {rule_id} has no {field} to change; "
                                "give an absolute value")
        new_value = float(change.apply(Decimal(repr(current if current is not None else 0.0))))
    if field == "value" and new_value is not None and new_value < 0 and rule.measure in (
            Measure.share, Measure.share_within, Measure.contribution_share):
        raise OverrideError(f"{ov.text!r}: a share must be at least 0, got {new_value:g}")
    if field == "penalty" and new_value is not None and new_value < 0:
        raise OverrideError(f"{ov.text!r}: a penalty must be at least 0, got {new_value:g}")
    rules = tuple(r.model_copy(update={field: new_value}) if r.rule_id == rule_id else r
                  for r in rnd.rules)
    return {"rules": rules}


def _weight(rnd: Round, ov: Override) -> dict[str, Any]:
    (metric,) = ov.target
    rows = {o.metric: o for o in rnd.objective}
    programs = rnd.programs
    if metric not in rows:
        # A metric not yet weighed: every program must hold a number for it.
        missing = [p.program_id for p in programs if _metric_value(p, metric) is None]
        known = sorted({*OUTCOME_COLUMNS, *(k for p in programs for k in p.outcomes),
                        *(k for p in programs for k in p.attributes)})
        if metric not in known:
            raise OverrideError(f"{ov.text!r}: unknown metric {metric!r} (not a column of the "
                                f"Programs sheet; the round has {', '.join(known)})")
        if missing:
            raise OverrideError(f"{ov.text!r}: metric {metric!r} has no number for program(s) "
                                f"{', '.join(missing[:10])}; it cannot be weighed")
        programs = tuple(p if metric in p.outcomes else p.model_copy(
            update={"outcomes": {**p.outcomes, metric: _metric_value(p, metric)}}) for p in programs)
    current = Decimal(repr(rows[metric].weight)) if metric in rows else Decimal(0)
    weight = float(_change(ov).apply(current))
    rows[metric] = ObjectiveRow(metric=metric, weight=weight)
    return {"objective": tuple(sorted(rows.values(), key=lambda o: o.metric)), "programs": programs}


def _metric_value(p: ProgramRow, metric: str) -> float | None:
    if metric in p.outcomes:
        return p.outcomes[metric]
    raw = p.attributes.get(metric)
    try:
        value = cells.parse_decimal(raw, [])
    except cells.CellValueError:
        return None
    return None if value is None else float(value)


def _setting(rnd: Round, ov: Override) -> dict[str, Any]:
    from allocator.validate import ROUND_KEYS  # the workbook's own parsers for Round values

    (key,) = ov.target
    if key in ("round_id", "periods"):
        raise OverrideError(f"{ov.text!r}: {key} cannot be changed by a variant (the budgets, "
                            "programs and records depend on it)")
    if key not in SETTING_KEYS:
        raise OverrideError(f"{ov.text!r}: unknown Round setting {key!r} (a variant can change "
                            f"{', '.join(SETTING_KEYS)}; or write budget/rule/weight/program ...)")
    settings = rnd.settings
    numeric = key in ("rounding_unit", "outcome_tolerance", "time_limit_s", "mip_gap",
                      "robust_gamma", "robust_level")
    if numeric:
        base = settings.rounding_unit if key == "rounding_unit" else Decimal(repr(getattr(settings, key)))
        value: Any = _change(ov).apply(base)
        value = value if key == "rounding_unit" else float(value)
    else:
        try:
            value = ROUND_KEYS[key](ov.value, [])
        except cells.CellValueError as exc:
            raise OverrideError(f"{ov.text!r}: {exc}") from None
    if value is None:
        raise OverrideError(f"{ov.text!r}: nothing after '='")
    checks = {
        "rounding_unit": (lambda v: v > 0, "must be greater than 0"),
        "outcome_tolerance": (lambda v: 0 <= v <= 1, "must be between 0 and 1"),
        "time_limit_s": (lambda v: v > 0, "must be greater than 0"),
        "mip_gap": (lambda v: 0 <= v < 1, "must be at least 0 and below 1"),
        "robust_gamma": (lambda v: v >= 0, "must be at least 0"),
        "robust_level": (lambda v: v > 0, "must be greater than 0"),
        "currency": (lambda v: bool(re.fullmatch(r"[A-Za-z]{3}", v)), "must be a 3-letter code"),
    }
    if key in checks and not checks[key][0](value):
        raise OverrideError(f"{ov.text!r}: {key} {checks[key][1]}, got {value}")
    if key == "currency":
        value = value.upper()
    try:  # validated, so that an enum setting is stored as its enum
        return {"settings": RoundSettings.model_validate({**settings.model_dump(), key: value})}
    except ValidationError as exc:
        raise OverrideError(f"{ov.text!r}: {exc.errors()[0]['msg']}") from None


def _program(rnd: Round, ov: Override) -> dict[str, Any]:
    program_id, field = ov.target
    if program_id != "*":
        _known("program", program_id, [p.program_id for p in rnd.programs], ov)
    metrics = sorted({*OUTCOME_COLUMNS, *(k for p in rnd.programs for k in p.outcomes)})
    if field not in PROGRAM_FIELDS and field not in metrics:
        raise OverrideError(f"{ov.text!r}: a program override changes "
                            f"{', '.join(PROGRAM_FIELDS)} or an outcome ({', '.join(metrics)}), "
                            f"not {field!r}")
    change = _change(ov)
    programs = []
    for p in rnd.programs:
        if program_id not in ("*", p.program_id):
            programs.append(p)
            continue
        if field in PROGRAM_FIELDS:
            value = float(change.apply(Decimal(repr(getattr(p, field)))))
            new = p.model_copy(update={field: value})
        else:
            current = p.outcomes.get(field)
            if current is None and change.op != "set":
                raise OverrideError(f"{ov.text!r}: program {p.program_id} has no {field} to change; "
                                    "give an absolute value")
            value = float(change.apply(Decimal(repr(current or 0.0))))
            new = p.model_copy(update={"outcomes": {**p.outcomes, field: value}})
        try:
            ProgramRow.model_validate(new.model_dump())
        except ValidationError as exc:
            raise OverrideError(f"{ov.text!r}: program {p.program_id}: {field} "
                                f"{exc.errors()[0]['msg'].lower()}, got {value:g}") from None
        if new.min_trainees > new.max_trainees:
            raise OverrideError(f"{ov.text!r}: program {p.program_id}: min_trainees "
                                f"({new.min_trainees:g}) would exceed max_trainees "
                                f"({new.max_trainees:g})")
        if field in RATE_COLUMNS and not 0 <= value <= 1:
            raise OverrideError(f"{ov.text!r}: program {p.program_id}: a rate must be between 0 "
                                f"and 1, got {value:g}")
        programs.append(new)
    return {"programs": tuple(programs)}
