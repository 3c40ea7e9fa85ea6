"""Raw workbook tables -> a validated `Round`, with every problem collected and raised once.

Stage 2 of the data flow. Cell parsing happens in `cells`, typing and bounds in the pydantic
models of `round`, and the cross-sheet checks (unknown references, duplicates, filters) here.
"""

from __future__ import annotations

import math
import re
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from allocator import cells
from allocator.errors import CellRef, InputError, InputIssue, Normalisation
from allocator.filters import Filter, FilterSyntaxError, check_filter, parse_filter, resolve_key
from allocator.round import (
    OUTCOME_COLUMNS,
    RATE_COLUMNS,
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
from allocator.workbook import Table, read_tables

Parser = Callable[[object, list[str]], Any]

REQUIRED_SHEETS = ("round", "regions", "funds", "budgets", "programs", "objective")
OPTIONAL_SHEETS = ("contributions", "performance", "tranches", "rules", "variants")
SHEET_TITLES = {s: s.capitalize() for s in REQUIRED_SHEETS + OPTIONAL_SHEETS}
ROUND_ID = re.compile(r"^[A-Za-z0-9._-]+$")


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
}


@dataclass
class Collector:
    """Every problem and every normalisation found while validating one workbook."""

    issues: list[InputIssue] = field(default_factory=list)
    notes: list[Normalisation] = field(default_factory=list)

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


@dataclass
class Located:
    """A validated row and the Excel row it came from."""

    row: BaseModel
    excel_row: int
    raw: dict[str, Any]


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
    tables, sheet_names = read_tables(path, wanted)
    rnd, notes = round_from_tables(tables)
    return LoadedRound(rnd, notes, path, sheet_names)


def round_from_tables(tables: dict[str, Table]) -> tuple[Round, list[Normalisation]]:
    """Validate raw tables into a Round; raises InputError with every problem found."""
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
    rows: dict[str, list[Located]] = {}
    for name, spec in SPECS.items():
        if name in tables:
            rows[name] = _rows(tables[name], spec, _MODELS[name], col)
        else:
            rows[name] = []
    if settings is None or col.issues:
        raise InputError(col.issues)
    rnd = _assemble(settings, rows, tables, col)
    if col.issues:
        raise InputError(col.issues)
    assert rnd is not None
    return rnd, col.notes


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
        col.error(CellRef(table.sheet, None, None, "round_id"), "the key round_id is required")
        return None
    if any(v is _INVALID for v in values.values()):
        return None
    rid = values["round_id"]
    if not ROUND_ID.match(rid):
        col.error(where["round_id"], f"round_id may hold only letters, digits, '.', '_' and '-', "
                  f"got {rid!r}")
    periods = values.get("periods")
    if periods is not None:
        dupes = [p for p, n in Counter(periods).items() if n > 1]
        if dupes:
            col.error(where["periods"], f"period {dupes[0]!r} is listed twice")
    checks = {
        "rounding_unit": (lambda v: v > 0, "must be greater than 0"),
        "outcome_tolerance": (lambda v: 0 <= v <= 1, "must be between 0 and 1"),
        "time_limit_s": (lambda v: v > 0, "must be greater than 0"),
        "mip_gap": (lambda v: 0 <= v < 1, "must be at least 0 and below 1"),
    }
    for key, (ok, message) in checks.items():
        if key in values and not ok(values[key]):
            col.error(where[key], f"{message}, got {values[key]}")
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


def _rows(table: Table, spec: list[Column], model: type[BaseModel], col: Collector) -> list[Located]:
    known = {c.name for c in spec}
    missing = False
    for c in spec:
        needed = c.required if c.header_required is None else c.header_required
        if needed and c.name not in table.headers:
            col.error(CellRef(table.sheet, table.header_row, None, c.name),
                      f"the required column {c.name!r} is missing")
            missing = True
    if missing:
        return []
    extras = [h for h in table.headers if h not in known]
    present = [c for c in spec if c.name in table.headers]
    parsed = {c.name: _parse_column(table, c, col) for c in present}
    extra_cols = [Column(h, cells.parse_text) for h in extras]
    parsed_extras = {c.name: _parse_column(table, c, col) for c in extra_cols}
    out: list[Located] = []
    for i, (excel_row, _raw) in enumerate(table.rows):
        data: dict[str, Any] = {}
        bad = False
        for c in present:
            value = parsed[c.name][i]
            if value is _INVALID:
                bad = True
            elif value is not None:
                data[c.name] = value
        attributes = {}
        for h in extras:
            value = parsed_extras[h][i]
            if value is _INVALID:
                bad = True
            elif value is not None:
                attributes[h] = value
        if bad:
            continue
        try:
            row = _build(model, data, attributes)
        except ValidationError as exc:
            for err in exc.errors():
                field_name = str(err["loc"][0]) if err["loc"] else None
                col.error(table.ref(excel_row, field_name), _pydantic_message(err))
            continue
        out.append(Located(row, excel_row, data | {"attributes": attributes}))
    return out


def _parse_column(table: Table, c: Column, col: Collector) -> list[Any]:
    """Every cell of one column, typed; a column of plain values skips the per-cell parser."""
    raws = [raw.get(c.name) for _, raw in table.rows]
    fast = _plain_column(c, raws)
    if fast is not None:
        return fast
    return [col.cell(table, row, c, value) for (row, _), value in zip(table.rows, raws, strict=True)]


def _is_plain_text(value: object, separators: bool) -> bool:
    """Text no parser would change or refuse: ASCII, printable, trimmed, single spaces."""
    return (type(value) is str and value != "" and value.isascii() and value.isprintable()
            and value == value.strip() and "  " not in value and "#" not in value
            and not (separators and ("," in value or ";" in value or "|" in value)))


def _plain_column(c: Column, raws: list[object]) -> list[Any] | None:
    """The column's values when every cell is already what its parser would return, else None.

    A cell counts as blank only when empty (None or ''); any other cell that is not plain sends
    the whole column through the per-cell parser, which names problems and normalisations.
    """
    blank = [v is None or v == "" for v in raws]
    if c.required and any(blank):
        return None
    if c.parse is cells.parse_float:
        if all(b or (type(v) in (float, int) and math.isfinite(v)) for v, b in zip(raws, blank, strict=True)):
            return [None if b else float(v) for v, b in zip(raws, blank, strict=True)]
        return None
    if c.parse in (cells.parse_id, cells.parse_text):
        separators = c.parse is cells.parse_id
        if all(b or _is_plain_text(v, separators) for v, b in zip(raws, blank, strict=True)):
            return [None if b else v for v, b in zip(raws, blank, strict=True)]
    if c.parse in (_ids, _tags):
        out: list[Any] = []
        for v, b in zip(raws, blank, strict=True):
            if b:
                out.append(())
                continue
            if type(v) is not str or not v.isascii() or not v.isprintable() or "#" in v \
                    or ";" in v or "|" in v:
                return None
            items = [p.strip() for p in v.split(",")]
            items = [p for p in items if p]
            if c.parse is _tags:
                items = [p.lower() for p in items]
            if len(set(items)) != len(items) or any("  " in p for p in items):
                return None
            out.append(tuple(sorted(items)))
        return out
    return None


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
    if template:
        return template.format(**{k: cells.describe(v) for k, v in ctx.items()}) + f", got {shown}"
    return f"{err['msg']}, got {shown}"


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
    first: dict[Any, int] = {}
    for loc in rows:
        k = key(loc.row)
        if k in first:
            col.error(table.ref(loc.excel_row, header),
                      f"duplicate {what} {_show(k)} (first on row {first[k]})")
        else:
            first[k] = loc.excel_row


def _show(k: Any) -> str:
    return "/".join(map(str, k)) if isinstance(k, tuple) else repr(k)


def _assemble(settings: RoundSettings, rows: dict[str, list[Located]],
              tables: dict[str, Table], col: Collector) -> Round | None:
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

    regions = {loc.row.region_id for loc in rows["regions"]}
    jurisdictions = {loc.row.jurisdiction for loc in rows["regions"]}
    funds = {loc.row.fund_id: loc.row for loc in rows["funds"]}
    programs = {loc.row.program_id: loc.row for loc in rows["programs"]}
    period_set = set(periods)

    if not rows["regions"]:
        col.error(CellRef("Regions"), "the Regions sheet has no rows")
    if not rows["funds"]:
        col.error(CellRef("Funds"), "the Funds sheet has no rows")
    if not rows["programs"]:
        col.error(CellRef("Programs"), "the Programs sheet has no rows")

    for loc in rows["funds"]:
        f = loc.row
        if f.owner != "joint" and f.owner not in jurisdictions:
            col.error(t["funds"].ref(loc.excel_row, "owner"),
                      f"owner must be 'joint' or a jurisdiction of the Regions sheet "
                      f"({', '.join(sorted(jurisdictions))}), got {f.owner!r}")
    for loc in rows["budgets"]:
        b = loc.row
        if b.fund_id not in funds:
            col.error(t["budgets"].ref(loc.excel_row, "fund_id"), f"unknown fund {b.fund_id!r}")
        if b.period not in period_set:
            col.error(t["budgets"].ref(loc.excel_row, "period"),
                      f"unknown period {b.period!r} (the Round sheet lists {', '.join(periods)})")
    for loc in rows["contributions"]:
        c = loc.row
        ref = t["contributions"].ref
        if c.fund_id not in funds:
            col.error(ref(loc.excel_row, "fund_id"), f"unknown fund {c.fund_id!r}")
        elif funds[c.fund_id].kind != FundKind.joint:
            col.error(ref(loc.excel_row, "fund_id"),
                      f"fund {c.fund_id!r} is of kind {funds[c.fund_id].kind.value}; "
                      "contributions are recorded for joint funds only")
        if c.jurisdiction not in jurisdictions:
            col.error(ref(loc.excel_row, "jurisdiction"),
                      f"unknown jurisdiction {c.jurisdiction!r} (the Regions sheet has "
                      f"{', '.join(sorted(jurisdictions))})")
    for loc in rows["programs"]:
        _check_program(loc, t["programs"], regions, programs, periods, col)
    for loc in rows["performance"]:
        if loc.row.program_id not in programs:
            col.error(t["performance"].ref(loc.excel_row, "program_id"),
                      f"unknown program {loc.row.program_id!r}")
    _check_tranches(rows["tranches"], t.get("tranches"), funds, col)
    objective = _check_objective(rows["objective"], rows["programs"], t, col)
    if col.issues:
        return None
    program_rows = [_with_metrics(loc, objective) for loc in rows["programs"]]
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
    if settings.equity_objective == EquityObjective.maxmin_contribution and not any(
            c.amount > 0 for c in rnd.contributions):
        col.error(CellRef("Round", None, None, "equity_objective"),
                  "maxmin_contribution needs contributions: the Contributions sheet has no "
                  "row with an amount")
    return rnd


def _check_program(loc: Located, table: Table, regions: set[str], programs: dict[str, Any],
                   periods: tuple[str, ...], col: Collector) -> None:
    p: ProgramRow = loc.row  # type: ignore[assignment]
    ref = table.ref
    for r in p.regions:
        if r not in regions:
            col.error(ref(loc.excel_row, "regions"), f"unknown region {r!r}")
    for name in ("start_period", "end_period"):
        value = getattr(p, name)
        if value is not None and value not in periods:
            col.error(ref(loc.excel_row, name),
                      f"unknown period {value!r} (the Round sheet lists {', '.join(periods)})")
    if (p.start_period in periods and p.end_period in periods
            and periods.index(p.start_period) > periods.index(p.end_period)):
        col.error(ref(loc.excel_row, "end_period"),
                  f"ends ({p.end_period}) before it starts ({p.start_period})")
    if p.min_trainees > p.max_trainees:
        col.error(ref(loc.excel_row, "min_trainees"),
                  f"must be at most max_trainees ({p.max_trainees:g}), got {p.min_trainees:g}")
    if p.pilot_of is not None:
        if p.pilot_of not in programs:
            col.error(ref(loc.excel_row, "pilot_of"), f"unknown pilot program {p.pilot_of!r}")
        elif p.pilot_of == p.program_id:
            col.error(ref(loc.excel_row, "pilot_of"), "a program cannot be its own pilot")
    for name in RATE_COLUMNS:
        v = p.outcomes.get(name)
        if v is not None and not 0 <= v <= 1:
            col.error(ref(loc.excel_row, name),
                      f"a rate must be between 0 and 1 (type 65% or 0.65), got {v:g}")


def _check_tranches(rows: list[Located], table: Table | None, funds: dict[str, FundRow],
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
        if tr.fund_id is not None and tr.fund_id not in funds:
            col.error(table.ref(loc.excel_row, "fund_id"), f"unknown fund {tr.fund_id!r}")
            continue
        key = ("fund_id", tr.fund_id) if tr.fund_id else ("fund_kind", tr.fund_kind.value)
        totals[key] += tr.share
        first_row.setdefault(key, loc.excel_row)
    for key, total in totals.items():
        if abs(total - 1) > 1e-9:
            col.error(table.ref(first_row[key], "share"),
                      f"the tranche shares of {key[0]} {key[1]!r} add up to {total:g}, not 1")


def _check_objective(objective: list[Located], programs: list[Located],
                     t: dict[str, Table], col: Collector) -> dict[str, str]:
    """Check metrics; returns metric -> where the values live ('outcome' or 'extra')."""
    table = t["objective"]
    ptable = t["programs"]
    if not objective:
        col.error(CellRef("Objective"), "the Objective sheet has no rows: name at least one "
                  "metric and its weight")
    out: dict[str, str] = {}
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
        out[metric] = "outcome" if metric in OUTCOME_COLUMNS else "extra"
        if loc.row.weight == 0:  # type: ignore[attr-defined]
            continue
        for ploc in programs:
            p: ProgramRow = ploc.row  # type: ignore[assignment]
            where = ptable.ref(ploc.excel_row, metric)
            if out[metric] == "outcome":
                if p.outcomes.get(metric) is None:
                    col.error(where, f"blank, but the Objective weighs {metric}; "
                              "type the expected value (0 if none)")
                continue
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


def _check_filters(rnd: Round, rows: dict[str, list[Located]], t: dict[str, Table],
                   col: Collector) -> None:
    for loc in rows["funds"]:
        for problem in check_filter(loc.row.eligible, rnd):  # type: ignore[attr-defined]
            col.error(t["funds"].ref(loc.excel_row, "eligible"), problem)
    for loc in rows["rules"]:
        for header in ("select", "relative_to"):
            for problem in check_filter(getattr(loc.row, header), rnd):
                col.error(t["rules"].ref(loc.excel_row, header), problem)


def _check_rules(rnd: Round, rows: list[Located], table: Table | None, col: Collector) -> None:
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
        if rule.measure == Measure.contribution_share:
            _check_contribution_rule(rnd, rule, ref(loc.excel_row, "select"), col)


def _check_contribution_rule(rnd: Round, rule: RuleRow, where: CellRef, col: Collector) -> None:
    from allocator.filters import passing

    try:
        funds = passing(rule.select, rnd)["fund"]
    except KeyError:
        return
    if not any(c.fund_id in funds and c.amount > 0 for c in rnd.contributions):
        col.error(where, "contribution_share needs contributions: none of the funds this rule "
                  "selects has rows with an amount on the Contributions sheet")

