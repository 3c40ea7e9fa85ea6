"""Raw workbook tables -> a validated `Round`, with every problem collected and raised once.

Stage 2 of the data flow. Cell parsing happens in `cells`, typing and bounds in the pydantic
models of `round`, and the cross-sheet checks (unknown references, duplicates, filters) here.
"""

from __future__ import annotations

import gc
import math
import re
from collections import Counter, defaultdict
from collections.abc import Callable, Collection, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from decimal import Decimal
from enum import Enum
from pathlib import Path
from typing import Any, get_args, get_origin

import numpy as np
from pydantic import BaseModel, PlainSerializer, ValidationError
from pydantic.fields import FieldInfo

from allocator import cells
from allocator.errors import CellRef, InputError, InputIssue, Normalisation
from allocator.filters import (
    BUILTIN_KEYS,
    Filter,
    FilterSyntaxError,
    check_filter,
    parse_filter,
    resolve_key,
)
from allocator.paths import unsafe_name_reason
from allocator.round import (
    OUTCOME_COLUMNS,
    RATE_COLUMNS,
    Basis,
    BudgetRow,
    ContributionRow,
    EquityObjective,
    FundKind,
    FundRow,
    Measure,
    ObjectiveRow,
    PerformanceRow,
    ProgramRow,
    RegionRow,
    Round,
    RoundSettings,
    RuleRow,
    Stage,
    TrancheRow,
)
from allocator.safetext import FORMULA_START
from allocator.workbook import Table, read_tables

Parser = Callable[[object, list[str]], Any]

REQUIRED_SHEETS = ("round", "regions", "funds", "budgets", "programs", "objective")
OPTIONAL_SHEETS = ("contributions", "performance", "tranches", "rules", "variants")
SHEET_TITLES = {s: s.capitalize() for s in REQUIRED_SHEETS + OPTIONAL_SHEETS}
ROUND_ID = re.compile(r"^[A-Za-z0-9._-]+$")
# Allocations are whole multiples of the rounding unit. HiGHS keeps limits to about 1e-7 of
# their size: with units of 0.0001 on a round of millions, rounding could no longer tell whether
# a limit holds (docs/limits.md). A thousandth is the smallest subunit any currency has.
MIN_ROUNDING_UNIT = Decimal("0.001")


_ENUM_VALUES: dict[Parser, frozenset[str]] = {}


def _enum(kind: type) -> Parser:
    allowed = [m.value for m in kind]  # type: ignore[attr-defined]

    def parse(value: object, notes: list[str]) -> str | None:
        text = cells.parse_text(value, notes)
        if text is None:
            return None
        key = text.strip().lower().replace("-", "_").replace(" ", "_")
        if key not in allowed:
            raise cells.CellValueError(f"expected one of {', '.join(allowed)}, got {text!r}")
        if key != text:
            notes.append(f"read {text!r} as {key!r}")
        return key

    _ENUM_VALUES[parse] = frozenset(allowed)  # lets whole columns of exact values skip `parse`
    return parse


def _op(value: object, notes: list[str]) -> str | None:
    text = cells.parse_text(value, notes)
    if text is None:
        return None
    text = text.replace(" ", "").replace("≥", ">=").replace("≤", "<=")
    if text == "==":
        text = "="
    if text not in (">=", "<=", "="):
        raise cells.CellValueError(f"expected >=, <= or =, got {text!r}")
    return text


def _filter(value: object, notes: list[str]) -> Filter:
    text = cells.parse_text(value, notes)
    try:
        return parse_filter(text)
    except FilterSyntaxError as exc:
        raise cells.CellValueError(str(exc)) from exc


def _key(value: object, notes: list[str]) -> str | None:
    text = cells.parse_text(value, notes)
    return text.lower().replace(" ", "_") if text else None


def _tags(value: object, notes: list[str]) -> tuple[str, ...]:
    items = cells.parse_id_list(value, notes)
    return tuple(sorted({t.lower() for t in items}))


def _ids(value: object, notes: list[str]) -> tuple[str, ...]:
    return tuple(sorted(cells.parse_id_list(value, notes)))


@dataclass(frozen=True)
class Column:
    name: str
    parse: Parser
    required: bool = False  # the cell must not be blank
    header_required: bool | None = None  # defaults to `required`


SPECS: dict[str, list[Column]] = {
    "regions": [
        Column("region_id", cells.parse_id, True),
        Column("name", cells.parse_text),
        Column("jurisdiction", cells.parse_id, True),
        Column("population", cells.parse_float, True),
        Column("rural", cells.parse_bool),
    ],
    "funds": [
        Column("fund_id", cells.parse_id, True),
        Column("name", cells.parse_text),
        Column("kind", _enum(FundKind), True),
        Column("owner", cells.parse_id, True),
        Column("cofinancing_cap", cells.parse_float),
        Column("eligible", _filter),
        Column("carry_over", cells.parse_bool),
    ],
    "budgets": [
        Column("fund_id", cells.parse_id, True),
        Column("period", cells.parse_id, True),
        Column("amount", cells.parse_decimal, True),
    ],
    "contributions": [
        Column("fund_id", cells.parse_id, True),
        Column("jurisdiction", cells.parse_id, True),
        Column("amount", cells.parse_decimal, True),
    ],
    "programs": [
        Column("program_id", cells.parse_id, True),
        Column("name", cells.parse_text),
        Column("sector", cells.parse_text),
        Column("stage", _enum(Stage)),
        Column("regions", _ids, True),
        Column("cost_per_trainee", cells.parse_float, True),
        Column("max_trainees", cells.parse_float, True),
        Column("min_trainees", cells.parse_float),
        Column("start_period", cells.parse_id),
        Column("end_period", cells.parse_id),
        Column("targets", _tags),
        Column("pilot_of", cells.parse_id),
        *[Column(c, cells.parse_float) for c in OUTCOME_COLUMNS],
        Column("external_match", cells.parse_float),
    ],
    "performance": [
        Column("program_id", cells.parse_id, True),
        Column("metric", _key, True),
        Column("target", cells.parse_float, True),
        Column("achieved", cells.parse_float, True),
    ],
    "tranches": [
        Column("fund_kind", _enum(FundKind), header_required=False),
        Column("fund_id", cells.parse_id, header_required=False),
        Column("tranche", cells.parse_id, True),
        Column("share", cells.parse_float, True),
        Column("due", cells.parse_int),
        Column("condition", cells.parse_text),
        Column("basis", _enum(Basis)),
        Column("floor", cells.parse_float),
    ],
    "objective": [
        Column("metric", _key, True),
        Column("weight", cells.parse_float, True),
    ],
    "rules": [
        Column("rule_id", cells.parse_id, True),
        Column("description", cells.parse_text),
        Column("measure", _enum(Measure), True),
        Column("select", _filter),
        Column("each", _key),
        Column("relative_to", _filter),
        Column("op", _op, True),
        Column("value", cells.parse_float, True),
        Column("penalty", cells.parse_float),
    ],
}

ROUND_KEYS: dict[str, Parser] = {
    "round_id": cells.parse_id,
    "title": cells.parse_text,
    "currency": cells.parse_text,
    "periods": cells.parse_id_list,
    "rounding_unit": cells.parse_decimal,
    "equity_objective": _enum(EquityObjective),
    "outcome_tolerance": cells.parse_float,
    "time_limit_s": cells.parse_float,
    "mip_gap": cells.parse_float,
    "prior_weight": cells.parse_float,
    "robust_gamma": cells.parse_float,
    "robust_level": cells.parse_float,
}


@dataclass
class Collector:
    """Every problem and every normalisation found while validating one workbook."""

    issues: list[InputIssue] = field(default_factory=list)
    notes: list[Normalisation] = field(default_factory=list)
    # Rows left out for a refused cell, per sheet: their sound cells still name unknown references.
    dropped: dict[str, list[Dropped]] = field(default_factory=lambda: defaultdict(list))
    unread: set[str] = field(default_factory=set)  # sheets not read: a required column is missing

    def error(self, where: CellRef, message: str) -> None:
        self.issues.append(InputIssue(where, message))

    def cell(self, table: Table, row: int, col: Column, raw: object) -> Any:
        """Parse one cell, recording a problem or a normalisation against it."""
        notes: list[str] = []
        try:
            value = col.parse(raw, notes)
        except cells.CellValueError as exc:
            self.error(table.ref(row, col.name), str(exc))
            return _INVALID
        if col.required and (value is None or value == () or value == []):
            self.error(table.ref(row, col.name), "required, but the cell is blank")
            return _INVALID
        for note in notes:  # the cell's reference is built only when something is said of it
            self.notes.append(Normalisation(table.ref(row, col.name), cells.describe(raw),
                                            str(value), note))
        return value


_INVALID = object()


@dataclass(slots=True)
class Dropped:
    """A row left out for a refused cell: its Excel row and the values of its sound cells."""

    excel_row: int
    values: dict[str, Any]
    extras: dict[str, Any]


@dataclass(slots=True)
class Located:
    """A validated row and the Excel row it came from (slots: one is made per row)."""

    row: BaseModel
    excel_row: int


@dataclass
class LoadedRound:
    """A validated round with what the reader normalised, and where each row came from."""

    round: Round
    notes: list[Normalisation]
    source: Path | None = None
    sheet_names: list[str] = field(default_factory=list)


def load_round(path: str | Path) -> LoadedRound:
    """Read and validate a round workbook; raises InputError listing every problem."""
    path = Path(path)
    wanted = set(REQUIRED_SHEETS) | set(OPTIONAL_SHEETS)
    with gc_paused():
        tables, sheet_names = read_tables(path, wanted)
        rnd, notes = round_from_tables(tables)
    return LoadedRound(rnd, notes, path, sheet_names)


@contextmanager
def gc_paused() -> Iterator[None]:
    """The cyclic garbage collector off while a large round is read.

    Reading makes millions of objects and no reference cycles; each collection the allocations
    trigger walks all objects made so far, which took a quarter of validating 100,000 programs.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def round_from_tables(tables: dict[str, Table], *, fast: bool = True
                      ) -> tuple[Round, list[Normalisation]]:
    """Validate raw tables into a Round; raises InputError with every problem found.

    `fast=False` takes every cell through its parser and every row through pydantic: the
    reference the column-wise shortcuts are tested against (same Round, same messages).
    """
    with gc_paused():
        return _round_and_notes(tables, fast)


def _round_and_notes(tables: dict[str, Table], fast: bool) -> tuple[Round, list[Normalisation]]:
    col = Collector()
    for table in tables.values():  # header cells the reader cleaned (invisible characters)
        col.notes.extend(table.notes)
    for name in REQUIRED_SHEETS:
        if name not in tables:
            col.error(CellRef(SHEET_TITLES[name]), f"the required sheet {SHEET_TITLES[name]!r} "
                      "is missing")
    if col.issues:
        raise InputError(col.issues)
    settings = _settings(tables["round"], col)
    for name in ("regions", "funds", "programs"):  # the sheets whose extra columns are attributes
        _check_extra_headers(tables[name], SPECS[name], col)
    rows: dict[str, list[Located]] = {}
    for name, spec in SPECS.items():
        if name in tables:
            rows[name] = _rows(tables[name], spec, _MODELS[name], col, fast)
        else:
            rows[name] = []
    if settings is None:  # its problems are listed; check the other sheets against what is sound
        settings = _stand_in_settings(tables["round"])
    if settings is None:
        raise InputError(col.issues)
    rnd = _assemble(settings, rows, tables, col, fast)
    if col.issues:
        raise InputError(col.issues)
    assert rnd is not None
    return rnd, col.notes


def _check_extra_headers(table: Table, spec: list[Column], col: Collector) -> None:
    """Refuse an extra column named as a built-in filter key (`region` on Programs, `stage` on
    Funds): a filter or `each` naming it means the built-in key, never this column."""
    own = {c.name for c in spec}
    for header, letter in table.headers.items():
        if header in BUILTIN_KEYS and header not in own:
            dimension, attribute, _ = BUILTIN_KEYS[header]
            col.error(CellRef(table.sheet, table.header_row, letter, header),
                      f"the column name {header!r} is reserved for the built-in filter key "
                      f"{header} (the {dimension}'s {attribute.replace('_', ' ')}): a rule "
                      f"naming {header} would never read this column; rename the column")


# --- the Round sheet -------------------------------------------------------------------------
def _settings(table: Table, col: Collector) -> RoundSettings | None:
    for needed in ("key", "value"):
        if needed not in table.headers:
            col.error(CellRef(table.sheet, table.header_row, None, needed),
                      f"the Round sheet needs the columns key and value; {needed!r} is missing")
    if col.issues:
        return None
    values: dict[str, Any] = {}
    where: dict[str, CellRef] = {}
    for excel_row, raw in table.rows:
        key_raw = raw.get("key")
        if cells.is_blank(key_raw):
            col.error(table.ref(excel_row, "key"), "a value without a key")
            continue
        key = str(key_raw).strip().lower().replace(" ", "_")
        if key not in ROUND_KEYS:
            col.error(table.ref(excel_row, "key"),
                      f"unknown key {key!r} (known: {', '.join(ROUND_KEYS)})")
            continue
        if key in values:
            col.error(table.ref(excel_row, "key"), f"the key {key!r} is given twice")
            continue
        parsed = col.cell(table, excel_row, Column("value", ROUND_KEYS[key]), raw.get("value"))
        where[key] = table.ref(excel_row, "value")
        if parsed is _INVALID:
            values[key] = _INVALID
        elif parsed is not None and parsed != []:
            values[key] = tuple(parsed) if key == "periods" else parsed
    if "round_id" not in values:
        if "round_id" in where:  # the row is there, its value cell blank
            col.error(where["round_id"], "round_id is required, but the cell is blank; type "
                      "the round's id (letters, digits, '.', '_' and '-')")
        else:
            col.error(CellRef(table.sheet, None, None, "round_id"), "the key round_id is required")
        return None
    if any(v is _INVALID for v in values.values()):
        return None
    rid = values["round_id"]
    if not ROUND_ID.match(rid):
        col.error(where["round_id"], f"round_id may hold only letters, digits, '.', '_' and '-', "
                  f"got {rid!r}")
    elif (reason := unsafe_name_reason(rid)) is not None:  # it names the records folder
        col.error(where["round_id"], f"round_id {_short_id(rid)} cannot name a folder: {reason}")
    periods = values.get("periods")
    if periods is not None:
        dupes = [p for p, n in Counter(periods).items() if n > 1]
        if dupes:
            col.error(where["periods"], f"period {dupes[0]!r} is listed twice")
    checks = {
        "rounding_unit": (lambda v: v >= MIN_ROUNDING_UNIT,
                          f"must be at least {MIN_ROUNDING_UNIT} (a thousandth of the currency "
                          "unit, the smallest subunit any currency has; the solver cannot keep "
                          "every limit in smaller units; see docs/limits.md)"),
        "outcome_tolerance": (lambda v: 0 <= v <= 1, "must be between 0 and 1"),
        "time_limit_s": (lambda v: v > 0, "must be greater than 0"),
        "mip_gap": (lambda v: 0 <= v < 1, "must be at least 0 and below 1"),
        "prior_weight": (lambda v: v > 0, "must be greater than 0"),
        "robust_gamma": (lambda v: v >= 0, "must be at least 0 (how many programs may fall short "
                         "of their estimates; 0 = none)"),
        "robust_level": (lambda v: v > 0, "must be greater than 0 (standard errors of shortfall)"),
    }
    for key, (ok, message) in checks.items():
        if key in values and not ok(values[key]):
            value = values[key]
            shown = format(value, "f") if isinstance(value, Decimal) else value
            col.error(where[key], f"{message}, got {shown}")
    if "currency" in values and not re.fullmatch(r"[A-Za-z]{3}", values["currency"]):
        col.error(where["currency"], f"expected a 3-letter currency code such as EUR, "
                  f"got {values['currency']!r}")
    if "currency" in values:
        values["currency"] = values["currency"].upper()
    if col.issues:
        return None
    return RoundSettings(**values)


# --- table rows -------------------------------------------------------------------------------
_MODELS: dict[str, type[BaseModel]] = {}


def _rows(table: Table, spec: list[Column], model: type[BaseModel], col: Collector,
          fast: bool = True) -> list[Located]:
    """The table's valid rows as models; problems go to `col` (cells first, then rows).

    With `fast`, cells that no parser would change are taken as they are and rows whose values
    the column checks of `_model_checks` proved valid are built without pydantic; the other
    cells and rows take the per-cell and per-row path, in the same order, so messages and
    notes are the same either way.
    """
    known = {c.name for c in spec}
    missing = False
    for c in spec:
        needed = c.required if c.header_required is None else c.header_required
        if needed and c.name not in table.headers:
            col.error(CellRef(table.sheet, table.header_row, None, c.name),
                      f"the required column {c.name!r} is missing")
            missing = True
    if missing:
        col.unread.add(table.sheet)
        return []
    extras = [h for h in table.headers if h not in known]
    present = [c for c in spec if c.name in table.headers]
    issues_before = len(col.issues)
    parsed = {c.name: _parse_column(table, c, col, fast) for c in present}
    extra_cols = [Column(h, cells.parse_text) for h in extras]
    parsed_extras = {c.name: _parse_column(table, c, col, fast) for c in extra_cols}
    n = len(table.row_numbers)
    # A refused cell is always recorded as a problem: with none recorded, no row is invalid.
    invalid = (_invalid_rows(n, [*parsed.values(), *parsed_extras.values()])
               if len(col.issues) > issues_before else [False] * n)
    checked = _model_checks(model, parsed, n) if fast else [True] * n
    direct = [i for i in range(n) if not (invalid[i] or checked[i])]
    built = _constructed(model, parsed, parsed_extras, direct)
    if len(direct) == n:  # the common case: every row proved valid by its columns
        return [Located(row, r) for row, r in zip(built, table.row_numbers, strict=True)]
    next_built = iter(built).__next__  # `direct` is in row order
    out: list[Located] = []
    for i, excel_row in enumerate(table.row_numbers):
        row = None if invalid[i] else next_built() if not checked[i] else _validated_row(
            table, model, parsed, parsed_extras, i, col)
        if row is not None:
            out.append(Located(row, excel_row))
        else:
            col.dropped[table.sheet].append(Dropped(excel_row, _sound(parsed, i), _sound(parsed_extras, i)))
    return out


def _sound(parsed: dict[str, list[Any]], i: int) -> dict[str, Any]:
    """Row i's parsed values, its refused and blank cells left out."""
    return {name: values[i] for name, values in parsed.items()
            if values[i] is not _INVALID and values[i] is not None}


def _invalid_rows(n: int, columns: list[list[Any]]) -> list[bool]:
    """Per row, whether one of its cells was refused (the row is then left out)."""
    out = [False] * n
    for values in columns:
        if _INVALID in values:  # compared by identity first: no parsed value equals the marker
            for i, v in enumerate(values):
                if v is _INVALID:
                    out[i] = True
    return out


def _validated_row(table: Table, model: type[BaseModel], parsed: dict[str, list[Any]],
                   parsed_extras: dict[str, list[Any]], i: int, col: Collector) -> BaseModel | None:
    """Row i through pydantic, its problems recorded against its cells."""
    data = {name: values[i] for name, values in parsed.items() if values[i] is not None}
    attributes = {h: values[i] for h, values in parsed_extras.items() if values[i] is not None}
    try:
        return _build(model, data, attributes)
    except ValidationError as exc:
        for err in exc.errors():
            field_name = str(err["loc"][0]) if err["loc"] else None
            col.error(table.ref(table.row_numbers[i], field_name), _pydantic_message(err))
        return None


# --- rows built without pydantic, where column checks prove pydantic would accept them ----------
@dataclass(frozen=True)
class _FieldKind:
    """What a model field accepts, for the fields a direct build supports."""

    types: tuple[type, ...]  # the parsed value's exact type, None aside
    optional: bool  # None is a value of the field
    enum: type[Enum] | None
    bounds: tuple[tuple[str, Any], ...]  # ("gt", 0), ("le", 1), ...


_BOUND_OPS: dict[str, Callable[[Any, Any], bool]] = {
    "gt": lambda v, b: v > b, "ge": lambda v, b: v >= b,
    "lt": lambda v, b: v < b, "le": lambda v, b: v <= b,
}
_IMMUTABLE_DEFAULTS = (str, int, float, bool, Decimal, Enum, tuple, type(None))


def _field_kind(info: FieldInfo) -> _FieldKind | None:
    """The field's kind, or None for a field a direct build does not support (e.g. filters)."""
    annotation = info.annotation
    args = get_args(annotation)
    optional = type(None) in args
    if optional:
        rest = [a for a in args if a is not type(None)]
        if len(rest) != 1:
            return None
        annotation = rest[0]
    if not all(isinstance(m, PlainSerializer) or any(hasattr(m, op) for op in _BOUND_OPS)
               for m in info.metadata):
        return None  # a constraint the column checks do not know (a pattern, a length)
    bounds = tuple((op, getattr(m, op)) for m in info.metadata for op in _BOUND_OPS
                   if hasattr(m, op))
    if isinstance(annotation, type) and issubclass(annotation, Enum):
        return _FieldKind((str,), optional, annotation, bounds)
    if get_origin(annotation) is tuple and get_args(annotation) == (str, ...):
        return _FieldKind((tuple,), optional, None, bounds)
    if annotation in (str, float, int, bool, Decimal):
        return _FieldKind((annotation,), optional, None, bounds)  # type: ignore[arg-type]
    return None


def _model_checks(model: type[BaseModel], parsed: dict[str, list[Any]], n: int) -> list[bool]:
    """Per row, whether pydantic must see it: a value out of bounds, of an unexpected type,
    missing where the field is required, or a model a direct build does not support."""
    everything = [True] * n
    dict_fields = _DICT_FIELDS.get(model, ())
    columns = set(OUTCOME_COLUMNS) if "outcomes" in dict_fields else set()
    if not set(parsed) <= set(model.model_fields) | columns:
        return everything  # a column pydantic would refuse as an extra field
    out = [False] * n
    for name, info in model.model_fields.items():
        if name in dict_fields:
            continue
        kind = _field_kind(info)
        if kind is None:
            return everything
        values = parsed.get(name)
        if values is None:
            if info.is_required():
                return everything
            continue
        _mark_unaccepted(values, kind, info.is_required() and not kind.optional, out)
    return out


def _mark_unaccepted(values: list[Any], kind: _FieldKind, required: bool, out: list[bool]) -> None:
    """Set out[i] for each value pydantic could refuse or would read otherwise."""
    found = set(map(type, values))
    odd = found - {*kind.types, type(None), object}  # object: the _INVALID marker's type
    allowed = {m.value for m in kind.enum} if kind.enum is not None else None
    strange = allowed is not None and any(type(v) is str and v not in allowed for v in set(
        v for v in values if type(v) is str))
    if odd or strange or (required and type(None) in found):
        for i, v in enumerate(values):
            if (type(v) in odd or (required and v is None)
                    or (allowed is not None and type(v) is str and v not in allowed)):
                out[i] = True
    for op, bound in kind.bounds:
        if found <= {float, type(None)}:  # a float column: compared at once, blanks as NaN
            numbers = np.array(values, dtype=float)
            refused = ~_BOUND_OPS[op](numbers, bound) & ~np.isnan(numbers)
            for i in np.flatnonzero(refused).tolist():
                out[i] = True
            continue
        holds = _BOUND_OPS[op]
        for i, v in enumerate(values):
            if type(v) in kind.types and not holds(v, bound):
                out[i] = True


# Models whose `outcomes`/`attributes` dicts the reader fills from columns (see _build).
_DICT_FIELDS: dict[type[BaseModel], tuple[str, ...]] = {}


def _constructed(model: type[BaseModel], parsed: dict[str, list[Any]],
                 parsed_extras: dict[str, list[Any]], rows: list[int]) -> list[BaseModel]:
    """Models of the given rows, built as pydantic would build them from values already checked.

    Equal to `_build` field for field, fields-set included (tests/test_fast_read.py), at a tenth
    of the cost: what pydantic would do to these values is known (an enum's member for its
    text, the default for a blank), so it is done by column, and each instance is put together
    as BaseModel.model_construct does, without its per-field bookkeeping.
    """
    if not rows:
        return []
    n_all = len(next(iter(parsed.values()))) if parsed else 0
    pick = (lambda values: values) if len(rows) == n_all else (
        lambda values: [values[i] for i in rows])
    names: list[str] = []
    columns: list[list[Any]] = []
    always: list[str] = []  # fields set on every row; pydantic records the fields it was given
    sometimes: list[tuple[str, list[Any]]] = []
    for name, info in model.model_fields.items():
        if name == "outcome_se":  # filled later from `<metric>_se` columns (see _with_spreads)
            column = [{} for _ in rows]
        elif name in _DICT_FIELDS.get(model, ()):
            source = ({k: parsed[k] for k in OUTCOME_COLUMNS if k in parsed} if name == "outcomes"
                      else parsed_extras)
            column = _dicts({k: pick(v) for k, v in source.items()}, len(rows))
            always.append(name)
        elif name in parsed:
            kind = _field_kind(info)
            assert kind is not None  # _model_checks sent the rows of other models to pydantic
            column = pick(parsed[name])
            if None in column:
                sometimes.append((name, column))
                column = _defaulted(column, info)
            else:
                always.append(name)
            if kind.enum is not None:
                members = {m.value: m for m in kind.enum}
                column = list(map(members.get, column))  # None stays None
        else:
            column = _defaulted([None] * len(rows), info)
        names.append(name)
        columns.append(column)
    fields_set = _fields_set(always, sometimes, len(rows))
    new, put = object.__new__, object.__setattr__  # _instance, inlined: a call per row
    out = []
    for values, given in zip(zip(*columns, strict=True), fields_set, strict=True):
        obj = new(model)
        put(obj, "__dict__", dict(zip(names, values, strict=True)))
        put(obj, "__pydantic_fields_set__", given)
        put(obj, "__pydantic_extra__", None)
        put(obj, "__pydantic_private__", None)
        out.append(obj)
    return out


def _fields_set(always: list[str], sometimes: list[tuple[str, list[Any]]], n: int) -> list[set[str]]:
    """Per row, the fields pydantic would record as given: one shared set per combination, as
    model_construct(_fields_set=...) shares it (a frozen model never changes its set), which
    spares a set per row to make, and to walk for the garbage collector."""
    if not sometimes:
        return [set(always)] * n
    assert len(sometimes) < 63  # a bit each in an int64 (a model has a dozen fields)
    masks = np.zeros(n, dtype=np.int64)  # bit k: the k-th sometimes-given field is given
    for k, (_, column) in enumerate(sometimes):
        masks |= np.array([v is not None for v in column], dtype=np.int64) << k
    given = {m: set(always) | {name for k, (name, _) in enumerate(sometimes) if m >> k & 1}
             for m in set(masks.tolist())}
    return [given[m] for m in masks.tolist()]


def _defaulted(column: list[Any], info: FieldInfo) -> list[Any]:
    """Blanks replaced by the field's default, a fresh copy of it where it could be changed."""
    default = info.get_default(call_default_factory=True)
    if isinstance(default, _IMMUTABLE_DEFAULTS):
        return [default if v is None else v for v in column]
    return [info.get_default(call_default_factory=True) if v is None else v for v in column]


def _dicts(columns: dict[str, list[Any]], n: int) -> list[dict[str, Any]]:
    """Per row, {column: value} for the columns whose cell is not blank."""
    if not columns:
        return [{} for _ in range(n)]
    names = list(columns)
    if not any(None in values for values in columns.values()):
        return [dict(zip(names, values, strict=True))
                for values in zip(*columns.values(), strict=True)]
    return [{k: v for k, v in zip(names, values, strict=True) if v is not None}
            for values in zip(*columns.values(), strict=True)]


# --- cells ---------------------------------------------------------------------------------------
def _parse_column(table: Table, c: Column, col: Collector, fast: bool = True) -> list[Any]:
    """Every cell of one column, typed: plain cells as they are, the others through the parser.

    Notes and problems are recorded in row order either way, as the per-cell path alone would.
    """
    raws = table.columns[c.name]
    plain = _plain_values(c, raws) if fast else None
    if plain is not None and _NOT_PLAIN not in plain:
        return plain
    if plain is None:
        return [col.cell(table, row, c, value)
                for row, value in zip(table.row_numbers, raws, strict=True)]
    return [col.cell(table, row, c, raw) if value is _NOT_PLAIN else value
            for row, raw, value in zip(table.row_numbers, raws, plain, strict=True)]


_NOT_PLAIN = object()


def _plain_values(c: Column, raws: list[object]) -> list[Any] | None:
    """Per cell, the value its parser would return (with no note) or _NOT_PLAIN; None when the
    column's parser has no such shortcut. An empty cell is plain unless the column requires it."""
    blank: Any = _NOT_PLAIN if c.required else None
    if c.parse is cells.parse_float:
        return _plain_floats(raws, blank)
    if c.parse in (cells.parse_id, cells.parse_text):
        separators = c.parse is cells.parse_id
        if _all_plain_text(raws, separators, c.required):
            return [v if v != "" else None for v in raws] if "" in raws else list(raws)
        return [blank if v is None or v == "" else v if _is_plain_text(v, separators)
                else _NOT_PLAIN for v in raws]
    if c.parse in (_ids, _tags):
        return _plain_lists(raws, c.parse is _tags, c.required)
    if c.parse is _key and _all_plain_text(raws, False, c.required):
        return [v.lower().replace(" ", "_") if v != "" else None for v in raws]  # type: ignore[union-attr]
    allowed = _ENUM_VALUES.get(c.parse)
    if allowed is not None:
        return [blank if v is None or v == "" else v if type(v) is str and v in allowed
                else _NOT_PLAIN for v in raws]
    return None


def _plain_floats(raws: list[object], blank: Any) -> list[Any]:
    """Numbers stored as numbers; a column of only those is converted at once by numpy."""
    types = set(map(type, raws))
    if types <= {float, int} and (int not in types or all(
            abs(v) <= _EXACT_INT for v in raws if type(v) is int)):  # type: ignore[arg-type]
        values = np.array(raws, dtype=float)
        size = np.abs(values)  # NaN and infinity fail the test below
        if ((size < _MAX_NUMBER) & ((size >= _MIN_NUMBER) | (size == 0))).all():
            # floats kept as the very objects read: nothing to free
            return list(raws) if int not in types else values.tolist()
    return [blank if v is None or v == "" else float(v)  # type: ignore[arg-type]
            if ((type(v) is float and math.isfinite(v)) or (type(v) is int and abs(v) <= _EXACT_INT))
            and _in_number_range(v)  # type: ignore[arg-type]
            else _NOT_PLAIN for v in raws]


_EXACT_INT = 2**53  # up to here float(n) == float(Decimal(n)), what parse_float returns
# cells.NUMBER_RANGE as floats: a value outside goes through parse_float, which refuses it.
# _MAX_NUMBER also bounds amounts and objective coefficients made of two cells.
_MIN_NUMBER, _MAX_NUMBER = float(cells.MIN_NUMBER), float(cells.MAX_NUMBER)


def _in_number_range(v: float) -> bool:
    return v == 0 or _MIN_NUMBER <= abs(v) < _MAX_NUMBER


def _short_id(text: str) -> str:
    return repr(text) if len(text) <= 40 else repr(text[:37] + "...")


_FORMULA_AFTER_NUL = tuple("\x00" + c for c in FORMULA_START)
_FORMULA_AFTER_COMMA = tuple("," + c for c in FORMULA_START) + tuple(", " + c for c in FORMULA_START)


def _formula_start_in(joined: str, lists: bool = False) -> bool:
    """Whether some cell (or, for lists, some item) of NUL-joined text starts like a formula."""
    if joined.startswith(FORMULA_START) or any(m in joined for m in _FORMULA_AFTER_NUL):
        return True
    return lists and any(m in joined for m in _FORMULA_AFTER_COMMA)


def _all_plain_text(raws: list[object], separators: bool, required: bool) -> bool:
    """Whether every cell is plain text (or empty, where allowed), decided on the joined text.

    A false "no" only sends the column cell by cell; a "yes" holds for each cell because
    ASCII-ness and printability hold for a text exactly when for each of its parts.
    """
    if set(map(type, raws)) != {str} or (required and "" in raws):
        return False
    joined = "\x00".join(raws)  # NUL: never in a plain cell, so a match never spans two cells
    if not (joined.isascii() and "#" not in joined and "  " not in joined
            and "\x00 " not in joined and " \x00" not in joined
            and not joined.startswith(" ") and not joined.endswith(" ")
            and "".join(raws).isprintable()):
        return False
    # ids (separators) that start like a formula are refused, by the per-cell path
    return not (separators and ("," in joined or ";" in joined or "|" in joined
                                or _formula_start_in(joined)))


def _is_plain_text(value: object, separators: bool) -> bool:
    """Text no parser would change or refuse: ASCII, printable, trimmed, single spaces."""
    return (type(value) is str and value != "" and value.isascii() and value.isprintable()
            and value == value.strip() and "  " not in value and "#" not in value
            and not (separators and ("," in value or ";" in value or "|" in value
                                     or value.startswith(FORMULA_START))))


def _plain_lists(raws: list[object], lower: bool, required: bool) -> list[Any]:
    """_plain_list of every cell; a cell without a comma is its own one-item list.

    Each distinct text is split once and its tuple shared by the rows that hold it (tuples
    never change): a column of region ids has a few hundred texts over 100,000 rows."""
    empty: Any = _NOT_PLAIN if required else ()
    if _all_plain_text(raws, False, required) and ";" not in (joined := "".join(raws)) \
            and "|" not in joined \
            and not _formula_start_in("\x00".join(raws), lists=True):  # type: ignore[arg-type]
        by_text: dict[Any, Any] = {}
        for v in set(raws):
            text = v.lower() if lower else v  # type: ignore[union-attr]
            by_text[v] = empty if v == "" else (text,) if "," not in text else _split_plain(text)
        return [by_text[v] for v in raws]
    return [empty if v is None or v == "" else _plain_list(v, lower) for v in raws]


def _split_plain(value: str) -> Any:
    """_plain_list of a cell already known to be trimmed, single-spaced, printable ASCII text."""
    items = [p.strip() for p in value.split(",")]
    if "" in items:
        items = [p for p in items if p]
    if not items or len(set(items)) != len(items):
        return _NOT_PLAIN
    return tuple(sorted(items))


def _plain_list(value: object, lower: bool) -> Any:
    """A comma-separated cell as _ids/_tags return it, when nothing in it needs a note."""
    if type(value) is not str or not value.isascii() or not value.isprintable() \
            or "#" in value or ";" in value or "|" in value or "  " in value \
            or value != value.strip():
        return _NOT_PLAIN  # clean_text would fold or trim the whole cell, with a note
    items = [p.strip() for p in value.split(",")]
    items = [p for p in items if p]
    if any(p.startswith(FORMULA_START) for p in items):
        return _NOT_PLAIN  # refused by the per-cell path, with its message
    if lower:
        items = [p.lower() for p in items]
    if not items or len(set(items)) != len(items) or any("  " in p for p in items):
        return _NOT_PLAIN
    return tuple(sorted(items))


def _build(model: type[BaseModel], data: dict[str, Any], attributes: dict[str, str]) -> BaseModel:
    if model is ProgramRow:
        outcomes = {k: data.pop(k) for k in OUTCOME_COLUMNS if k in data}
        return ProgramRow(**data, outcomes=outcomes, attributes=attributes)
    if "attributes" in model.model_fields:
        return model(**data, attributes=attributes)
    return model(**data)


def _pydantic_message(err: dict[str, Any]) -> str:
    ctx = err.get("ctx") or {}
    got = err.get("input")
    shown = cells.describe(got)
    words = {
        "greater_than": "must be greater than {gt}",
        "greater_than_equal": "must be at least {ge}",
        "less_than": "must be less than {lt}",
        "less_than_equal": "must be at most {le}",
    }
    template = words.get(err["type"])
    hint = _FIELD_HINTS.get(str(err["loc"][0]) if err.get("loc") else "", "")
    if template:
        return (template.format(**{k: cells.describe(v) for k, v in ctx.items()})
                + f", got {shown}" + hint)
    return f"{err['msg']}, got {shown}{hint}"


# What a bound means for the user, where the number alone does not say it.
_FIELD_HINTS = {
    "external_match": (" (external_match is the share of the program's cost paid from outside "
                       "the round, a number from 0 up to but not including 1; a program paid "
                       "entirely from outside needs no money from this round: leave it out)"),
}


_DICT_FIELDS.update({RegionRow: ("attributes",), FundRow: ("attributes",),
                     ProgramRow: ("outcomes", "attributes", "outcome_se")})
_MODELS.update(
    regions=RegionRow,
    funds=FundRow,
    budgets=BudgetRow,
    contributions=ContributionRow,
    programs=ProgramRow,
    performance=PerformanceRow,
    tranches=TrancheRow,
    objective=ObjectiveRow,
    rules=RuleRow,
)


# --- cross-sheet checks -----------------------------------------------------------------------
def _unique(rows: list[Located], key: Callable[[Any], Any], table: Table, header: str,
            what: str, col: Collector) -> None:
    keys = [key(loc.row) for loc in rows]
    if len(set(keys)) == len(keys):
        return  # the common case, told by one set instead of a lookup per row
    first: dict[Any, int] = {}
    for loc, k in zip(rows, keys, strict=True):
        if k in first:
            col.error(table.ref(loc.excel_row, header),
                      f"duplicate {what} {_show(k)} (first on row {first[k]})")
        else:
            first[k] = loc.excel_row


def _show(k: Any) -> str:
    return "/".join(map(str, k)) if isinstance(k, tuple) else repr(k)


def _assemble(settings: RoundSettings, rows: dict[str, list[Located]],
              tables: dict[str, Table], col: Collector, fast: bool = True) -> Round | None:
    t = tables
    periods = settings.periods
    _unique(rows["regions"], lambda r: r.region_id, t["regions"], "region_id", "region_id", col)
    _unique(rows["funds"], lambda r: r.fund_id, t["funds"], "fund_id", "fund_id", col)
    _unique(rows["programs"], lambda r: r.program_id, t["programs"], "program_id",
            "program_id", col)
    _unique(rows["budgets"], lambda r: (r.fund_id, r.period), t["budgets"], "period",
            "budget row for fund/period", col)
    if "contributions" in t:
        _unique(rows["contributions"], lambda r: (r.fund_id, r.jurisdiction), t["contributions"],
                "jurisdiction", "contribution row for fund/jurisdiction", col)
    if "performance" in t:
        _unique(rows["performance"], lambda r: (r.program_id, r.metric), t["performance"],
                "metric", "performance row for program/metric", col)
    _unique(rows["objective"], lambda r: r.metric, t["objective"], "metric", "metric", col)
    if "rules" in t:
        _unique(rows["rules"], lambda r: r.rule_id, t["rules"], "rule_id", "rule_id", col)

    funds = {loc.row.fund_id: loc.row for loc in rows["funds"]}
    known = _known(rows, tables, col, periods)  # rows left out for a bad cell still count as known
    regions = known["region"]

    if not rows["regions"] and not _incomplete(col, t, "regions"):
        col.error(CellRef("Regions"), "the Regions sheet has no rows")
    if not rows["funds"] and not _incomplete(col, t, "funds"):
        col.error(CellRef("Funds"), "the Funds sheet has no rows")
    if not rows["programs"] and not _incomplete(col, t, "programs"):
        col.error(CellRef("Programs"), "the Programs sheet has no rows")

    for loc in rows["funds"]:
        _check_reference(known, "owner", loc.row.owner, t["funds"].ref(loc.excel_row, "owner"), col)
    for loc in rows["budgets"]:
        b = loc.row
        _check_reference(known, "fund", b.fund_id, t["budgets"].ref(loc.excel_row, "fund_id"), col)
        _check_reference(known, "period", b.period, t["budgets"].ref(loc.excel_row, "period"), col)
    for loc in rows["contributions"]:
        c = loc.row
        ref = t["contributions"].ref
        _check_reference(known, "fund", c.fund_id, ref(loc.excel_row, "fund_id"), col)
        if c.fund_id in funds and funds[c.fund_id].kind != FundKind.joint:
            col.error(ref(loc.excel_row, "fund_id"),
                      f"fund {c.fund_id!r} is of kind {funds[c.fund_id].kind.value}; "
                      "contributions are recorded for joint funds only")
        _check_reference(known, "jurisdiction", c.jurisdiction, ref(loc.excel_row, "jurisdiction"), col)
    for loc in _programs_to_check(rows["programs"], regions, periods) if fast else rows["programs"]:
        _check_program(loc, t["programs"], known, periods, col)
    for loc in rows["performance"]:
        _check_reference(known, "program", loc.row.program_id,
                         t["performance"].ref(loc.excel_row, "program_id"), col)
    _check_tranches(rows["tranches"], t.get("tranches"), known, col)
    _check_dropped_references(col, t, known)
    objective = _check_objective(rows["objective"], rows["programs"], t, col)
    spreads = _spread_columns(t["programs"], rows["objective"], col)
    if spreads:
        _with_spreads(rows["programs"], t["programs"], spreads, col)
    if col.issues:  # still name the unknown keys and values of filters, over the sound rows
        _check_partial(settings, rows, t, col)
        return None
    extra_metrics = [m for m, where in objective.items() if where == "extra"]
    program_rows = ([_with_metrics(loc, objective) for loc in rows["programs"]] if extra_metrics
                    else [loc.row for loc in rows["programs"]])  # outcomes hold no blanks
    try:
        rnd = Round(
            settings=settings,
            regions=tuple(sorted((loc.row for loc in rows["regions"]), key=lambda r: r.region_id)),
            funds=tuple(sorted(funds.values(), key=lambda f: f.fund_id)),
            budgets=tuple(sorted((loc.row for loc in rows["budgets"]),
                                 key=lambda b: (b.fund_id, periods.index(b.period)))),
            contributions=tuple(sorted((loc.row for loc in rows["contributions"]),
                                       key=lambda c: (c.fund_id, c.jurisdiction))),
            programs=tuple(sorted(program_rows, key=lambda p: p.program_id)),
            performance=tuple(sorted((loc.row for loc in rows["performance"]),
                                     key=lambda r: (r.program_id, r.metric))),
            tranches=tuple(sorted((loc.row for loc in rows["tranches"]),
                                  key=lambda r: (r.fund_id or "", r.fund_kind or "", r.due,
                                                 r.tranche))),
            objective=tuple(sorted((loc.row for loc in rows["objective"]),
                                   key=lambda o: o.metric)),
            rules=tuple(sorted((loc.row for loc in rows["rules"]), key=lambda r: r.rule_id)),
        )
    except ValidationError as exc:  # pragma: no cover - rows were validated one by one
        col.error(CellRef("(round)"), str(exc))
        return None
    _check_filters(rnd, rows, t, col)
    _check_rules(rnd, rows["rules"], t.get("rules"), col)
    _check_values_size(rnd, rows["objective"], rows["programs"], t, col)
    if settings.equity_objective == EquityObjective.maxmin_contribution and not any(
            c.amount > 0 for c in rnd.contributions):
        col.error(_round_value_ref(t["round"], "equity_objective"),
                  "maxmin_contribution needs contributions: the Contributions sheet has no "
                  "row with an amount")
    return rnd


def _round_value_ref(table: Table, key: str) -> CellRef:
    """The value cell of `key` on the Round sheet (validated: the key is on exactly one row)."""
    for excel_row, raw in table.rows:
        if str(raw.get("key") or "").strip().lower().replace(" ", "_") == key:
            return table.ref(excel_row, "value")
    return CellRef(table.sheet, None, None, key)  # pragma: no cover - a default is never wrong


def _known(rows: dict[str, list[Located]], tables: dict[str, Table], col: Collector,
           periods: tuple[str, ...]) -> dict[str, Collection[str]]:
    """The ids other sheets may refer to, by kind: those of sound rows and of rows left out for
    a bad cell (their problem is listed; a reference to them is no second one)."""
    def ids(sheet: str, name: str) -> Collection[str]:
        if sheet in tables and tables[sheet].sheet in col.unread:
            return _ANYTHING  # its rows were not read: any reference to it may be right
        sound = {getattr(loc.row, name) for loc in rows[sheet]}
        dropped = col.dropped.get(tables[sheet].sheet, []) if sheet in tables else []
        return sound | {d.values[name] for d in dropped if name in d.values}

    return {"region": ids("regions", "region_id"), "jurisdiction": ids("regions", "jurisdiction"),
            "fund": ids("funds", "fund_id"), "program": ids("programs", "program_id"),
            "period": dict.fromkeys(periods)}  # in round order, for the message


class _Anything(frozenset):
    """The ids of a sheet whose rows could not be read: every id may be one of them."""

    def __contains__(self, item: object) -> bool:
        return True


_ANYTHING = _Anything()


def _incomplete(col: Collector, t: dict[str, Table], sheet: str) -> bool:
    """Whether rows of the sheet were left out (a bad cell) or not read (a missing column)."""
    return sheet in t and (bool(col.dropped.get(t[sheet].sheet)) or t[sheet].sheet in col.unread)


def _check_reference(known: dict[str, Collection[str]], kind: str, value: str, where: CellRef,
                     col: Collector) -> None:
    """Record `value` as unknown where it names no member of its kind (see `_REFERENCES`)."""
    if kind == "owner":
        if value != "joint" and value not in known["jurisdiction"]:
            col.error(where, f"owner must be 'joint' or a jurisdiction of the Regions sheet "
                      f"({', '.join(sorted(known['jurisdiction']))}), got {value!r}")
        return
    if value in known[_KIND_OF.get(kind, kind)]:
        return
    if kind == "period":
        col.error(where, f"unknown period {value!r} (the Round sheet lists "
                  f"{', '.join(known['period'])})")
    elif kind == "jurisdiction":
        col.error(where, f"unknown jurisdiction {value!r} (the Regions sheet has "
                  f"{', '.join(sorted(known['jurisdiction']))})")
    else:
        col.error(where, f"unknown {'pilot program' if kind == 'pilot' else kind} {value!r}")


_KIND_OF = {"pilot": "program"}
# (sheet, column, kind): the cells that name a member of another sheet.
_REFERENCES = (
    ("funds", "owner", "owner"),
    ("budgets", "fund_id", "fund"), ("budgets", "period", "period"),
    ("contributions", "fund_id", "fund"), ("contributions", "jurisdiction", "jurisdiction"),
    ("programs", "regions", "region"), ("programs", "start_period", "period"),
    ("programs", "end_period", "period"), ("programs", "pilot_of", "pilot"),
    ("performance", "program_id", "program"),
    ("tranches", "fund_id", "fund"),
)


def _check_dropped_references(col: Collector, t: dict[str, Table],
                              known: dict[str, Collection[str]]) -> None:
    """Unknown references in the sound cells of rows left out for a bad cell."""
    for sheet, name, kind in _REFERENCES:
        if sheet not in t:
            continue
        for d in list(col.dropped.get(t[sheet].sheet, [])):
            value = d.values.get(name)
            for v in value if isinstance(value, tuple) else () if value is None else (value,):
                _check_reference(known, kind, v, t[sheet].ref(d.excel_row, name), col)


def _check_partial(settings: RoundSettings, rows: dict[str, list[Located]], t: dict[str, Table],
                   col: Collector) -> None:
    """Filter and `each` problems of a workbook with other problems, checked over its sound rows.

    Values of a dimension with rows left out are not checked (a filter may name such a row);
    unknown keys are, with the extra columns of the left-out rows known too.
    """
    rnd = Round.model_construct(settings=settings, **{
        name: tuple(loc.row for loc in rows[name])
        for name in ("regions", "funds", "budgets", "contributions", "programs", "performance",
                     "tranches", "objective", "rules")})
    incomplete: set[str] = set()
    extra_cols = rnd.__dict__.setdefault("_extra_cols", {})
    for dim, sheet in (("program", "programs"), ("region", "regions"), ("fund", "funds")):
        if _incomplete(col, t, sheet):
            incomplete.add(dim)
            extras = set(t[sheet].headers) - {c.name for c in SPECS[sheet]}  # any may hold values
            extra_cols[dim] = extras if t[sheet].sheet in col.unread else (
                {k for loc in rows[sheet] for k in loc.row.attributes}
                | {k for d in col.dropped.get(t[sheet].sheet, []) for k in d.extras})
    if _incomplete(col, t, "contributions"):
        incomplete.add("contributions")
    _check_filters(rnd, rows, t, col, frozenset(incomplete))
    _check_rules(rnd, rows["rules"], t.get("rules"), col, frozenset(incomplete))
    for sheet, headers in (("funds", ("eligible",)), ("rules", ("select", "relative_to", "each"))):
        for d in col.dropped.get(t[sheet].sheet, []) if sheet in t else []:
            for header in headers:
                value = d.values.get(header)
                if isinstance(value, Filter):
                    for problem in _filter_problems(value, rnd, frozenset(incomplete)):
                        col.error(t[sheet].ref(d.excel_row, header), problem)
                elif value is not None:
                    try:
                        resolve_key(value, rnd)
                    except KeyError as exc:
                        col.error(t[sheet].ref(d.excel_row, header), str(exc.args[0]))


def _filter_problems(flt: Filter, rnd: Round, incomplete: frozenset[str]) -> list[str]:
    """`check_filter`, leaving out the values of conditions on an incomplete dimension."""
    if not incomplete:
        return check_filter(flt, rnd)
    problems = []
    for cond in flt.conditions:
        try:
            if resolve_key(cond.key, rnd).dimension in incomplete:
                continue
        except KeyError:
            pass  # check_filter names the unknown key
        problems += check_filter(Filter(conditions=(cond,)), rnd)
    return problems


def _stand_in_settings(table: Table) -> RoundSettings | None:
    """Settings to check the other sheets with when the Round sheet has problems (listed): its
    periods if that cell is sound, else None (the other sheets are then checked on the next run)."""
    if "key" not in table.headers or "value" not in table.headers:
        return None
    periods: Any = None
    for _, raw in table.rows:
        if str(raw.get("key") or "").strip().lower() == "periods":
            try:
                periods = cells.parse_id_list(raw.get("value"), [])
            except cells.CellValueError:
                return None
    periods = tuple(periods) if periods else ("all",)
    if len(set(periods)) != len(periods):
        return None
    return RoundSettings.model_construct(round_id="", periods=periods)


def _programs_to_check(programs: list[Located], regions: set[str],
                       periods: tuple[str, ...]) -> list[Located]:
    """The programs _check_program could find a problem in, in order; the others have known
    regions, known periods (not both, which could be out of order), a known pilot other than
    themselves or none, min <= max and rates in 0..1, so checking them says nothing."""
    assert len(RATE_COLUMNS) == 2  # unrolled below: a loop per program doubled the cost
    known = {t: set(t) <= regions for t in {loc.row.regions for loc in programs}}  # type: ignore[attr-defined]
    ids = {loc.row.program_id for loc in programs}  # type: ignore[attr-defined]
    period_set = set(periods) | {None}
    rate_a, rate_b = RATE_COLUMNS
    out = []
    for loc in programs:
        p: ProgramRow = loc.row  # type: ignore[assignment]
        start, end, pilot = p.start_period, p.end_period, p.pilot_of
        if (not known[p.regions] or start not in period_set or end not in period_set
                or (start is not None and end is not None)
                or (pilot is not None and (pilot not in ids or pilot == p.program_id))
                or p.min_trainees > p.max_trainees
                or p.max_trainees * p.cost_per_trainee >= _MAX_NUMBER
                or not 0 <= p.outcomes.get(rate_a, 0) <= 1
                or not 0 <= p.outcomes.get(rate_b, 0) <= 1):
            out.append(loc)
    return out


def _check_program(loc: Located, table: Table, known: dict[str, Collection[str]],
                   periods: tuple[str, ...], col: Collector) -> None:
    p: ProgramRow = loc.row  # type: ignore[assignment]
    ref = table.ref
    for r in p.regions:
        _check_reference(known, "region", r, ref(loc.excel_row, "regions"), col)
    for name in ("start_period", "end_period"):
        value = getattr(p, name)
        if value is not None:
            _check_reference(known, "period", value, ref(loc.excel_row, name), col)
    if (p.start_period in periods and p.end_period in periods
            and periods.index(p.start_period) > periods.index(p.end_period)):
        col.error(ref(loc.excel_row, "end_period"),
                  f"ends ({p.end_period}) before it starts ({p.start_period})")
    if p.min_trainees > p.max_trainees:
        col.error(ref(loc.excel_row, "min_trainees"),
                  f"must be at most max_trainees ({p.max_trainees:g}), got {p.min_trainees:g}")
    if p.max_trainees * p.cost_per_trainee >= _MAX_NUMBER:  # the program-period's most money
        col.error(ref(loc.excel_row, "max_trainees"),
                  f"{p.max_trainees:g} trainees at {p.cost_per_trainee:g} each cost "
                  f"{p.max_trainees * p.cost_per_trainee:.3g} currency units in a period; "
                  f"amounts must stay below {cells.MAX_SHOWN} (see docs/limits.md)")
    if p.pilot_of is not None:
        if p.pilot_of not in known["program"]:
            _check_reference(known, "pilot", p.pilot_of, ref(loc.excel_row, "pilot_of"), col)
        elif p.pilot_of == p.program_id:
            col.error(ref(loc.excel_row, "pilot_of"), "a program cannot be its own pilot")
    for name in RATE_COLUMNS:
        v = p.outcomes.get(name)
        if v is not None and not 0 <= v <= 1:
            col.error(ref(loc.excel_row, name),
                      f"a rate must be between 0 and 1 (type 65% or 0.65), got {v:g}")


def _check_tranches(rows: list[Located], table: Table | None, known: dict[str, Collection[str]],
                    col: Collector) -> None:
    if table is None:
        return
    totals: dict[tuple[str, str], float] = defaultdict(float)
    first_row: dict[tuple[str, str], int] = {}
    for loc in rows:
        tr: TrancheRow = loc.row  # type: ignore[assignment]
        if (tr.fund_id is None) == (tr.fund_kind is None):
            col.error(table.ref(loc.excel_row, "fund_id"),
                      "give either fund_kind or fund_id (exactly one of them)")
            continue
        if tr.fund_id is not None and tr.fund_id not in known["fund"]:
            _check_reference(known, "fund", tr.fund_id, table.ref(loc.excel_row, "fund_id"), col)
            continue
        if tr.basis == Basis.fixed and tr.floor > 0:
            col.error(table.ref(loc.excel_row, "floor"),
                      f"a floor applies to basis 'results' only; this tranche is 'fixed' "
                      f"(clear the cell or set basis to results), got {tr.floor:g}")
        key = ("fund_id", tr.fund_id) if tr.fund_id else ("fund_kind", tr.fund_kind.value)
        totals[key] += tr.share
        first_row.setdefault(key, loc.excel_row)
    for key, total in totals.items():
        if abs(total - 1) > 1e-9:
            col.error(table.ref(first_row[key], "share"),
                      f"the tranche shares of {key[0]} {key[1]!r} add up to {total:.15g}, not 1")


def _check_objective(objective: list[Located], programs: list[Located],
                     t: dict[str, Table], col: Collector) -> dict[str, str]:
    """Check metrics; returns metric -> where the values live ('outcome' or 'extra')."""
    table = t["objective"]
    ptable = t["programs"]
    if not objective and table.sheet not in col.unread:
        col.error(CellRef("Objective"), "the Objective sheet has no rows: name at least one "
                  "metric and its weight")
    out: dict[str, str] = {}
    weighed = {loc.row.metric for loc in objective if loc.row.weight != 0  # type: ignore[attr-defined]
               and loc.row.metric in OUTCOME_COLUMNS}  # type: ignore[attr-defined]
    # The programs missing a weighed outcome, in one pass: each metric's loop below then walks
    # these few instead of every program. (`outcomes` never holds None: blanks are left out.)
    lacking = [ploc for ploc in programs
               if not weighed <= ploc.row.outcomes.keys()]  # type: ignore[attr-defined]
    for loc in objective:
        metric = loc.row.metric  # type: ignore[attr-defined]
        if metric not in ptable.headers:
            col.error(table.ref(loc.excel_row, "metric"),
                      f"{metric!r} is not a column of the Programs sheet")
            continue
        if metric in SPECS_PROGRAM_NON_METRIC:
            col.error(table.ref(loc.excel_row, "metric"),
                      f"{metric!r} is not an outcome; use an outcome column or a numeric column")
            continue
        if metric in PROGRAM_SIZE_COLUMNS:
            col.error(table.ref(loc.excel_row, "metric"),
                      f"{metric!r} is the program's cost or size, which the engine already "
                      f"weighs against its outcomes, not an outcome to maximise; use an outcome "
                      f"column ({', '.join(OUTCOME_COLUMNS)}) or a numeric column of your own")
            continue
        out[metric] = "outcome" if metric in OUTCOME_COLUMNS else "extra"
        if loc.row.weight == 0:  # type: ignore[attr-defined]
            continue
        if out[metric] == "outcome":
            blank = [ploc for ploc in lacking
                     if ploc.row.outcomes.get(metric) is None]  # type: ignore[attr-defined]
            for ploc in blank:
                col.error(ptable.ref(ploc.excel_row, metric), f"blank, but the Objective "
                          f"weighs {metric}; type the expected value (0 if none)")
            continue
        for ploc in programs:
            p: ProgramRow = ploc.row  # type: ignore[assignment]
            where = ptable.ref(ploc.excel_row, metric)
            raw = p.attributes.get(metric)
            try:
                value = cells.parse_decimal(raw, [])
            except cells.CellValueError as exc:
                col.error(where, f"{metric} is an Objective metric: {exc}")
                continue
            if value is None:
                col.error(where, f"blank, but the Objective weighs {metric}; "
                          "type the expected value (0 if none)")
    return out


def _check_values_size(rnd: Round, objective: list[Located], programs: list[Located],
                       t: dict[str, Table], col: Collector) -> None:
    """A trainee's value, and its value per currency unit (the objective's coefficients), below
    cells.MAX_NUMBER: HiGHS refuses larger coefficients or cannot solve with them."""
    largest = {o.metric: max((abs(p.outcomes.get(o.metric, 0.0)) for p in rnd.programs),
                             default=0.0) for o in rnd.objective}
    too_big = False
    for loc in objective:
        o: ObjectiveRow = loc.row  # type: ignore[assignment]
        if abs(o.weight) * largest.get(o.metric, 0.0) >= _MAX_NUMBER:
            col.error(t["objective"].ref(loc.excel_row, "weight"),
                      f"{o.weight:g} times {o.metric} of up to {largest[o.metric]:g} is "
                      f"{abs(o.weight) * largest[o.metric]:.3g} per trainee; a trainee's value "
                      f"must stay below {cells.MAX_SHOWN} (see docs/limits.md)")
            too_big = True
    cheapest = min((p.round_cost_per_trainee for p in rnd.programs), default=1.0)
    bound = sum(abs(o.weight) * largest.get(o.metric, 0.0) for o in rnd.objective)
    if too_big or bound / cheapest < _MAX_NUMBER:  # the common case: no program can come near
        return
    rows = {loc.row.program_id: loc.excel_row for loc in programs}  # type: ignore[attr-defined]
    for p in rnd.programs:
        value = abs(rnd.value_per_trainee(p))
        if value / p.round_cost_per_trainee >= _MAX_NUMBER:
            col.error(t["programs"].ref(rows[p.program_id], "cost_per_trainee"),
                      f"a trainee worth {value:.3g} (the Objective's weights times the "
                      f"program's outcomes) at a cost of {p.round_cost_per_trainee:g} is worth "
                      f"{value / p.round_cost_per_trainee:.3g} per currency unit; this must stay "
                      f"below {cells.MAX_SHOWN} (see docs/limits.md): is the cost in currency "
                      "units?")


# Numeric columns of Programs with a meaning of their own (cost, capacity, outside money): not
# metrics; the model already uses them, and as a metric their value per trainee would be read
# from the program's attributes, where they are not.
PROGRAM_SIZE_COLUMNS = frozenset({"cost_per_trainee", "max_trainees", "min_trainees",
                                  "external_match"})
SPECS_PROGRAM_NON_METRIC = {
    "program_id", "name", "sector", "stage", "regions", "start_period", "end_period",
    "targets", "pilot_of",
}


def _with_metrics(loc: Located, objective: dict[str, str]) -> ProgramRow:
    """Put extra numeric metric columns used by the Objective into `outcomes`."""
    p: ProgramRow = loc.row  # type: ignore[assignment]
    outcomes = {k: v for k, v in p.outcomes.items() if v is not None}
    for metric, where in objective.items():
        if where == "extra" and metric in p.attributes:
            outcomes[metric] = float(cells.parse_decimal(p.attributes[metric], []) or 0)
    return p.model_copy(update={"outcomes": outcomes})


SE_SUFFIX = "_se"


def _spread_columns(ptable: Table, objective: list[Located], col: Collector) -> list[str]:
    """The Programs headers `<metric>_se` (DESIGN 1.1 "Uncertainty"): standard errors of a
    metric's expected value per trainee. One whose metric is no Programs column is refused
    (a typo would otherwise silently leave the estimate exact); one for a metric the Objective
    does not weigh is kept, with a note that it changes nothing in the objective."""
    weighed = {loc.row.metric for loc in objective  # type: ignore[attr-defined]
               if loc.row.weight != 0}  # type: ignore[attr-defined]
    out = []
    for header in ptable.headers:
        if not header.endswith(SE_SUFFIX) or header == SE_SUFFIX:
            continue
        metric = header[: -len(SE_SUFFIX)]
        where = CellRef(ptable.sheet, ptable.header_row, ptable.headers.get(header), header)
        if (metric not in ptable.headers or metric in SPECS_PROGRAM_NON_METRIC
                or metric in PROGRAM_SIZE_COLUMNS):
            col.error(where, f"a standard error column names its metric: expected a Programs "
                      f"column {metric!r} beside {header!r}, got none")
            continue
        if metric not in weighed:
            col.notes.append(Normalisation(where, header, "kept", f"the Objective does not "
                                           f"weigh {metric}, so its standard errors do not "
                                           "change the robust objective"))
        out.append(header)
    return out


def _with_spreads(programs: list[Located], ptable: Table, headers: list[str],
                  col: Collector) -> None:
    """Move each `<metric>_se` cell from the program's attributes into `outcome_se`, in place
    (a blank cell: the estimate is taken as exact); values must be numbers >= 0."""
    for loc in programs:
        p: ProgramRow = loc.row  # type: ignore[assignment]
        se: dict[str, float] = {}
        for header in headers:
            raw = p.attributes.get(header)
            if raw is None:
                continue
            where = ptable.ref(loc.excel_row, header)
            try:
                value = cells.parse_float(raw, [])
            except cells.CellValueError as exc:
                col.error(where, f"a standard error: {exc}")
                continue
            if value is None:
                continue
            if value < 0:
                col.error(where, f"a standard error must be at least 0, got {value:g}")
                continue
            se[header[: -len(SE_SUFFIX)]] = value
        attributes = {k: v for k, v in p.attributes.items() if k not in headers}
        loc.row = p.model_copy(update={"outcome_se": se, "attributes": attributes})


def _check_filters(rnd: Round, rows: dict[str, list[Located]], t: dict[str, Table],
                   col: Collector, incomplete: frozenset[str] = frozenset()) -> None:
    for loc in rows["funds"]:
        for problem in _filter_problems(loc.row.eligible, rnd, incomplete):  # type: ignore[attr-defined]
            col.error(t["funds"].ref(loc.excel_row, "eligible"), problem)
    for loc in rows["rules"]:
        for header in ("select", "relative_to"):
            for problem in _filter_problems(getattr(loc.row, header), rnd, incomplete):
                col.error(t["rules"].ref(loc.excel_row, header), problem)


def _check_rules(rnd: Round, rows: list[Located], table: Table | None, col: Collector,
                 incomplete: frozenset[str] = frozenset()) -> None:
    if table is None:
        return
    for loc in rows:
        rule: RuleRow = loc.row  # type: ignore[assignment]
        ref = table.ref
        if rule.each:
            try:
                resolve_key(rule.each, rnd)
            except KeyError as exc:
                col.error(ref(loc.excel_row, "each"), str(exc.args[0]))
        if rule.relative_to.conditions and rule.measure not in (Measure.share,
                                                                Measure.share_within):
            col.error(ref(loc.excel_row, "relative_to"),
                      f"relative_to is used by share and share_within only, not by "
                      f"{rule.measure.value}; clear the cell")
        if rule.measure in (Measure.share, Measure.share_within, Measure.contribution_share) \
                and rule.value < 0:
            col.error(ref(loc.excel_row, "value"), f"a share must be at least 0, got {rule.value:g}")
        if rule.measure in (Measure.share, Measure.share_within) and rule.value > 1:
            # (contribution_share compares with value times a share: a value above 1 is allowed)
            col.error(ref(loc.excel_row, "value"), f"a share must be at most 1 (type 20% or 0.2 "
                      f"for a fifth), got {rule.value:g}")
        if rule.measure == Measure.per_capita and not incomplete:
            _check_per_capita_size(rnd, rule, ref(loc.excel_row, "value"), col)
        if rule.measure == Measure.contribution_share and not incomplete:
            _check_contribution_rule(rnd, rule, ref(loc.excel_row, "select"), col)


def _check_per_capita_size(rnd: Round, rule: RuleRow, where: CellRef, col: Collector) -> None:
    """A per-capita value times the round's inhabitants is an amount of money: below the
    limit of every amount (cells.MAX_NUMBER), or the solver cannot hold the rule."""
    people = sum(r.population for r in rnd.regions)
    if abs(rule.value) * people >= cells.MAX_NUMBER:
        col.error(where, f"{rule.value:g} per inhabitant over the round's {people:,.0f} "
                  f"inhabitants is {abs(rule.value) * people:.3g} currency units; amounts must "
                  f"stay below {cells.MAX_SHOWN} (see docs/limits.md)")


def _check_contribution_rule(rnd: Round, rule: RuleRow, where: CellRef, col: Collector) -> None:
    from allocator.filters import passing

    try:
        funds = passing(rule.select, rnd)["fund"]
    except KeyError:
        return
    if not any(c.fund_id in funds and c.amount > 0 for c in rnd.contributions):
        col.error(where, "contribution_share needs contributions: none of the funds this rule "
                  "selects has rows with an amount on the Contributions sheet")

