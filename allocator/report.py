"""The result workbook (output contract, version 1): what a finance officer files.

Last stage of the data flow: Solution -> plain tables -> xlsx. The tables are built once
(`report_tables` returns them for the Python API). openpyxl writes the workbook's frame: the
sheets in order, header rows, styles, frozen panes, widths and filters; the data and total
rows are then streamed into the saved file by `allocator.xlsxrows`, block by block, so a round
with 100k allocation rows is written fast and with flat memory (the large ledgers are made
while they are written, from the integer ledger, never held as rows).

Money is never summed as float: every allocated amount is an integer number of rounding units
(budgets are Decimal), totals are integer/Decimal sums of exactly the rows above them, and
currency is made with Decimal (units x rounding_unit) only when a number is written. An amount
is written as an int when it is whole, so Excel's own SUM over a column gives the same total.

Text (ids, names, descriptions, conditions, notes) is always written as an inline string
cell: a program called `=HYPERLINK(...)` stays a name and never becomes a formula.
"""

from __future__ import annotations

import json
import math
import platform
from collections.abc import Iterator, Mapping, Sequence
from decimal import Decimal
from fractions import Fraction
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

import allocator
from allocator import dashboard, excel
from allocator.errors import Normalisation
from allocator.excel import Formats, FormatSpec, Rows, Table, price_shown, row_kinds
from allocator.explain import (
    MIP_NOTE,
    add_shortfalls,
    price_table,
    program_reasons,
    soft_rule_table,
    unspent_note,
)
from allocator.measures import MEASURES, cell_format_of
from allocator.plan import plan_lines
from allocator.round import FundRow, Round, TrancheRow
from allocator.sensitivity import sensitivity
from allocator.solve import Status, row_name

if TYPE_CHECKING:
    from allocator.engine import Solution

REPORT_FORMAT_VERSION = 1
SHEETS = ("Dashboard", "Summary", "Allocations", "Programs", "Regions", "Jurisdictions", "Funds", "Rules",
          "Prices", "Sensitivity", "Weight ranges",
          "Disbursements", "Cash flow", "Audit", "Notes")
# The finance pack a printer gives: the board's page, the status, who gets what, the budgets, the
# rules and the payment schedule. Every other sheet is for the screen (a reference table or an
# analysis) and prints on its own once its print range is cleared: all fifteen sheets, each on
# pages of its own, would be three times the pages a finance officer files.
PRINTED = ("Dashboard", "Summary", "Allocations", "Funds", "Rules", "Disbursements")
PRINT_NOTE = (f"Printing this workbook gives {', '.join(PRINTED[:-1])} and {PRINTED[-1]}. The other "
              "sheets are for the screen; to print one, clear its print range (Excel: Page Layout, "
              "Print Area, Clear Print Area; LibreOffice: Format, Print Ranges, Clear).")
TOTAL_LABEL = excel.TOTAL_LABEL  # first cell of the total row of the aggregate sheets


# --- public API ----------------------------------------------------------------------------


def report_tables(solution: Solution, *, run_id: str = "", input_digest: str = "",
                  output_digest: str = "", notes: Sequence[object] = (), record_dir: str = "",
                  versions: Mapping[str, str] | None = None,
                  solver_options: Mapping[str, object] | None = None) -> dict[str, pd.DataFrame]:
    """The report's tables as DataFrames, keyed by sheet name, in sheet order.

    Every money table (Allocations, Programs, Regions, Jurisdictions, Funds, Disbursements,
    Cash flow) ends with its total row, exactly as in the workbook; its first cell is `Total`.
    """
    tables = _build(solution, run_id=run_id, input_digest=input_digest,
                    output_digest=output_digest, notes=notes, record_dir=record_dir,
                    versions=versions, solver_options=solver_options)
    return {t.name: t.frame() for t in tables}


def write_report(solution: Solution, path: Path, *, run_id: str = "", input_digest: str = "",
                 output_digest: str = "", notes: Sequence[object] = (), record_dir: str = "",
                 versions: Mapping[str, str] | None = None,
                 solver_options: Mapping[str, object] | None = None) -> Path:
    """Write the result workbook to `path` atomically (an old report survives any failure)."""
    path = Path(path)
    tables = _build(solution, run_id=run_id, input_digest=input_digest,
                    output_digest=output_digest, notes=notes, record_dir=record_dir,
                    versions=versions, solver_options=solver_options)
    footer = solution.round.settings.round_id
    return excel.write_tables(
        path, tables, Formats.of_round(solution.round), footer=footer,
        printed=lambda name: name in PRINTED,
        before_save=lambda wb: _dashboard_charts(wb["Dashboard"], solution.round,
                                                 {t.name: t for t in tables}))


def _dashboard_charts(ws: Any, rnd: Round, tables: Mapping[str, Table]) -> None:
    """The Dashboard's native charts over the report's sheets; the sheet prints on one page."""
    dash = tables["Dashboard"]
    share_rows = [i for i, r in enumerate(dash.iter_rows()) if r[2] is not None]
    juris, regions, funds = tables["Jurisdictions"], tables["Regions"], tables["Funds"]
    data = dashboard.ChartData(
        jurisdictions=len(juris), contributions=bool(rnd.contributions),
        inclusion_rows=(share_rows[0] + 2, share_rows[-1] + 2) if share_rows else None,
        regions=len(regions), funds=len(rnd.funds), periods=len(rnd.periods),
        juris_cols={c: i + 1 for i, c in enumerate(juris.columns)},
        region_cols={c: i + 1 for i, c in enumerate(regions.columns)},
        fund_cols={c: i + 1 for i, c in enumerate(funds.columns)},
        currency=rnd.settings.currency)
    made = dashboard.add_charts(ws, data, len(dash))
    ws.print_area = dashboard.print_area(len(dash), len(made))
    ws.page_setup.orientation = "portrait"
    ws.page_setup.fitToHeight = 1


# --- numbers -------------------------------------------------------------------------------


def _money(d: Decimal) -> int | float:
    """A Decimal amount as the number written: int when whole (exact in Excel), else float."""
    return int(d) if d == d.to_integral_value() else float(d)


def _dec(x: float) -> Decimal:
    """A float read from the input as the decimal the user typed (0.1 -> 0.1, not 0.1000..55)."""
    return Decimal(repr(float(x)))


def _ratio(num: Decimal, den: Decimal) -> float | None:
    return float(num / den) if den else None


def _clean_float(x: Any, ndigits: int | None = None) -> float | None:
    """NaN/inf/None -> blank; solver noise (e.g. -7e-12 on a currency slack) rounded away."""
    if x is None:
        return None
    x = float(x)
    if not math.isfinite(x):
        return None
    if ndigits is not None:
        x = round(x, ndigits) + 0.0  # + 0.0 turns -0.0 into 0.0
    return x


def _decimals(d: Decimal) -> int:
    return max(0, -d.normalize().as_tuple().exponent)  # type: ignore[operator]


def _yes(flag: object) -> str:
    return "yes" if flag else "no"


# --- building the tables -------------------------------------------------------------------


class _Ledger:
    """The allocation as integer columns: money in rounding units, trainees in hundredths.

    Every aggregate is an integer sum of these, so totals are exact; currency is made with
    Decimal (units x rounding_unit) only when a number is written.
    """

    def __init__(self, rnd: Round, alloc: pd.DataFrame):
        self.unit = rnd.settings.rounding_unit
        self.whole_unit = self.unit == self.unit.to_integral_value()
        n = len(alloc)
        self.df = pd.DataFrame({
            "program_id": alloc["program_id"].astype(object).to_numpy() if n else [],
            "region_id": alloc["region_id"].astype(object).to_numpy() if n else [],
            "fund_id": alloc["fund_id"].astype(object).to_numpy() if n else [],
            "period": alloc["period"].astype(str).astype(object).to_numpy() if n else [],
            "units": alloc["units"].to_numpy(dtype=np.int64) if n else np.zeros(0, np.int64),
        })
        cost = {p.program_id: p.round_cost_per_trainee for p in rnd.programs}
        per_row_cost = self.df["program_id"].map(cost).to_numpy(dtype=float)
        amount = self.df["units"].to_numpy(dtype=float) * float(self.unit)
        # Hundredths of a trainee, rounded once per row; shown and totalled from these ints.
        self.df["centi"] = np.rint(amount * 100.0 / per_row_cost).astype(np.int64) if n else \
            np.zeros(0, np.int64)

    def __len__(self) -> int:
        return len(self.df)

    def money(self, units: int | np.integer) -> int | float:
        """Whole rounding units as the currency number written (exact int when whole)."""
        if self.whole_unit:
            return int(units) * int(self.unit)
        return _money(Decimal(int(units)) * self.unit)

    def money_list(self, units: np.ndarray) -> list[int | float]:
        """`money` of every element, without a Decimal per row.

        Python ints are exact at any size, and int / int is the correctly rounded quotient, so
        units x num / den is the same number as float(Decimal(units) x unit).
        """
        if self.whole_unit:
            k = int(self.unit)
            return [u * k for u in units.tolist()]
        num, den = self.unit.as_integer_ratio()
        return [q if not r else (u * num) / den
                for u in units.tolist() for q, r in (divmod(u * num, den),)]

    @staticmethod
    def trainees_list(centi: np.ndarray) -> list[float]:
        return [c / 100 for c in centi.tolist()]

    def decimal(self, units: int | np.integer) -> Decimal:
        return Decimal(int(units)) * self.unit

    @staticmethod
    def trainees(centi: int | np.integer) -> float:
        return int(centi) / 100  # int / int is the correctly rounded float of the quotient

    def total(self, column: str = "units") -> int:
        return int(self.df[column].sum()) if len(self.df) else 0

    def sums(self, keys: list[str], column: str = "units") -> dict[Any, int]:
        """Integer sums of a column by the given key columns (tuple keys when several)."""
        if not len(self.df):
            return {}
        grouped = self.df.groupby(keys, sort=False)[column].sum()
        return {k: int(v) for k, v in grouped.items()}


def _build(solution: Solution, *, run_id: str, input_digest: str, output_digest: str,
           notes: Sequence[object], record_dir: str, versions: Mapping[str, str] | None,
           solver_options: Mapping[str, object] | None) -> list[Table]:
    rnd: Round = solution.round
    ledger = _Ledger(rnd, solution.allocation)
    round_digest = rnd.digest()  # canonical JSON of the whole round: made once, shown twice
    split = _Split(rnd, ledger)
    return [
        _dashboard(solution, ledger),
        _summary(solution, ledger, run_id, input_digest, output_digest, round_digest),
        _allocations(rnd, ledger),
        _programs(solution, ledger),
        _regions(rnd, ledger),
        _jurisdictions(rnd, ledger),
        _funds(rnd, ledger),
        _rules(solution),
        _prices(solution),
        _sensitivity(solution),
        _weight_ranges(solution),
        _disbursements(rnd, ledger, split),
        _cash_flow(rnd, ledger, split),
        _audit(solution, run_id, input_digest, output_digest, round_digest, record_dir, versions,
               solver_options),
        _notes(notes),
    ]


DASHBOARD_COLUMNS = ["figure", "value", "target"]


def _dashboard(solution: Solution, ledger: _Ledger) -> Table:
    """The few figures a board asks for, then each share rule's result against its target
    (the inclusion chart reads those rows)."""
    rnd: Round = solution.round
    budget = sum((b.amount for b in rnd.budgets), Decimal(0))
    allocated = ledger.decimal(ledger.total())
    funded = int(ledger.df["program_id"].nunique()) if len(ledger) else 0
    rows: list[list[Any]] = [
        ["status", status_words(solution), None, None],
        ["budget", _money(budget), None, "money"],
        ["allocated", _money(allocated), None, "money"],
        ["unspent", _money(budget - allocated), None, "money"],
        ["share of the budget allocated", float(allocated / budget) if budget else None, None,
         "percent"],
        ["trainees", ledger.trainees(ledger.total("centi")), None, "trainees"],
        ["programs funded", funded, None, "count"],
        ["programs in the round", len(rnd.programs), None, "count"],
        ["outcome value", _clean_float(solution.objective), None, "value"],
    ]
    for rec in _share_rules(solution):
        rows.append([*rec, "percent"])
    kinds = [r[3] for r in rows]
    table = Table("Dashboard", DASHBOARD_COLUMNS, [r[:3] for r in rows],
                  {"value": row_kinds(kinds), "target": row_kinds(kinds)})
    table.extra_widths = dict(dashboard.MIN_WIDTHS)
    return table


def _share_rules(solution: Solution) -> list[list[Any]]:
    """[name, achieved, target] of each share rule (and each group of an `each` share rule)."""
    df = solution.rules
    out: list[list[Any]] = []
    if not len(df) or "measure" not in df.columns:
        return out
    for rec in df.to_dict("records"):
        kind = MEASURES.get(rec.get("measure"))
        if kind is None or kind.cell_format != "percent" or rec.get("op") != ">=":
            continue  # floors only: a cap (e.g. a sector's share) is not an inclusion target
        where = rec.get("group") or rec.get("jurisdiction") or ""
        name = f"{rec['rule_id']} {where}".strip()
        out.append([name, _clean_float(rec.get("achieved")), _clean_float(rec.get("target"))])
    return out


def status_words(solution: Solution) -> str:
    """The status as a board reads it."""
    if solution.status == Status.optimal:
        return "optimal (best outcome the rules allow)"
    return status_text(solution)


def _fairness_rows(solution: Solution) -> list[list[Any]]:
    """The price of fairness, when the round has an equity objective."""
    fair = getattr(solution, "fairness", None)
    if not fair:
        return []
    unit = fair["unit"]
    return [
        ["equity objective", fair["objective"], None],
        ["outcome value at best (no equity)", _clean_float(fair["outcome_best"]), "value"],
        ["outcome value with equity", _clean_float(fair["outcome_fair"]), "value"],
        ["price of fairness: outcome value given up", _clean_float(fair["outcome_given_up"]), "value"],
        ["price of fairness: trainee placements given up", _clean_float(fair["trainees_given_up"]),
         "value"],
        [f"lowest group before equity ({unit})", _clean_float(fair["min_before"]), "value"],
        [f"lowest group after equity ({unit})", _clean_float(fair["min_after"]), "value"],
    ]


def _robustness_rows(solution: Solution) -> list[list[Any]]:
    """Guaranteed and expected outcome value and the price of robustness, when Gamma > 0; the
    sampled outcome value (mean, 5th percentile) whenever the round has standard errors."""
    from allocator.robust import SAMPLE_SEED, SAMPLES, has_spread, sampled_outcome
    from allocator.robust import trainees_from_allocation as trainees_of

    rnd = solution.round
    sampled: list[list[Any]] = []
    if has_spread(rnd):
        s = sampled_outcome(rnd, trainees_of(rnd, solution.allocation))
        sampled = [
            [f"sampled outcome value: mean ({SAMPLES} samples, seed {SAMPLE_SEED})",
             _clean_float(s.mean), "value"],
            ["sampled outcome value: 5th percentile", _clean_float(s.low), "value"],
        ]
    rob = getattr(solution, "robustness", None)
    if not rob:
        return sampled
    return [
        *sampled,
        ["robust: programs that may fall short (robust_gamma)", _clean_float(rob["gamma"]), "value"],
        ["robust: standard errors of shortfall (robust_level)", _clean_float(rob["level"]), "value"],
        ["robust: guaranteed outcome value, rounded allocation", _clean_float(rob["guaranteed"]),
         "value"],
        ["robust: expected outcome value, rounded allocation", _clean_float(rob["expected"]),
         "value"],
        ["robust: nominal optimum (estimates taken as exact)", _clean_float(rob["nominal_optimum"]),
         "value"],
        ["robust: nominal value of the robust allocation", _clean_float(rob["nominal_of_robust"]),
         "value"],
        ["price of robustness: expected outcome value given up",
         _clean_float(rob["price_of_robustness"]), "value"],
        ["robust: guaranteed outcome value, before rounding",
         _clean_float(rob["guaranteed_before_rounding"]), "value"],
        ["robust: guaranteed outcome value of the nominal allocation, before rounding",
         _clean_float(rob["guaranteed_of_nominal"]), "value"],
    ]


def _summary(solution: Solution, ledger: _Ledger, run_id: str, input_digest: str,
             output_digest: str, round_digest: str) -> Table:
    rnd: Round = solution.round
    s = rnd.settings
    budget = sum((b.amount for b in rnd.budgets), Decimal(0))
    allocated = ledger.decimal(ledger.total())
    funded = int(ledger.df["program_id"].nunique()) if len(ledger) else 0
    rows: list[list[Any]] = [
        ["round_id", s.round_id, None],
        ["title", s.title, None],
        ["currency", s.currency, None],
        ["periods", ", ".join(s.periods), None],
        ["rounding unit", _money(s.rounding_unit), "money"],
        ["status", status_text(solution), None],
    ]
    if getattr(solution, "mip", False):
        rows.append(["prices (Prices sheet)", MIP_NOTE, None])
    # The solver's stages (and the tie-break) are explained once, in the Audit sheet.
    rows += [
        [("guaranteed (robust) " if getattr(solution, "robustness", None) else "")
         + f"outcome value, {_before(solution)} before rounding",
         _clean_float(solution.optimal_objective), "value"],
        ["outcome value, rounded allocation", _clean_float(solution.objective), "value"],
        ["total budget", _money(budget), "money"],
        ["total allocated", _money(allocated), "money"],
        ["total unspent", _money(budget - allocated), "money"],
        *[["unspent budget", note, None] for note in [unspent_note(solution)] if note],
        ["trainees", ledger.trainees(ledger.total("centi")), "trainees"],
        ["programs funded", funded, "count"],
        ["programs in round", len(rnd.programs), "count"],
        ["allocation rows", len(ledger), "count"],
        ["printed sheets", PRINT_NOTE, None],
        *_fairness_rows(solution),
        *_robustness_rows(solution),
        *[["warning", w, None] for w in getattr(solution, "warnings", [])],
        ["limits missed after rounding", len(solution.rounded.row_misses), "count"],
        *[[f"rounding miss: {row}", text, None] for row, text in rounding_misses(solution)],
        ["run id", run_id, None],
        ["input digest", input_digest, None],
        ["output digest", output_digest, None],
        ["round digest (canonical JSON)", round_digest, None],
    ]
    return Table("Summary", ["item", "value"], [r[:2] for r in rows],
                 {"value": row_kinds([r[2] for r in rows])})


def _before(solution: Solution) -> str:
    """What the value before rounding is: the optimum, or where a stopped solve ended."""
    return "optimum" if solution.status == Status.optimal else "value"


def status_text(solution: Solution) -> str:
    """The run's status in words; a time-limited MILP says it is not proven optimal, and its gap."""
    if solution.status == Status.rounding_infeasible:
        return ("rounding_infeasible: rounding to whole units breaks a hard rule (see the "
                "warnings below)")
    if solution.status not in (Status.time_limit, Status.not_proven):
        return str(solution.status.value)
    gap = solution.stages[0].mip_gap if solution.stages else None
    text = "not proven optimal (" + ("time limit" if solution.status == Status.time_limit
                                     else "rounded from the LP relaxation") + ")"
    if gap is not None and math.isfinite(gap):
        text += f", gap {gap * 100:.3g}%"
    return text


def rounding_misses(solution: Solution) -> list[tuple[str, str]]:
    """(row name, sentence) per row rounding could not keep: `rounding misses <row> by <amount>`."""
    cur = solution.round.settings.currency
    out = []
    for i, amount in sorted(solution.rounded.row_misses.items()):
        name = row_name(solution.row_refs[i])
        a = float(amount)
        shown = f"{a:,.0f}" if abs(a - round(a)) < 1e-6 else f"{a:,.2f}"
        out.append((name, f"rounding misses {name} by {cur} {shown}"))
    return out


def _allocations(rnd: Round, ledger: _Ledger) -> Table:
    names = {p.program_id: p.name for p in rnd.programs}
    juris = {r.region_id: r.jurisdiction for r in rnd.regions}
    df = ledger.df

    def blocks(size: int) -> Iterator[list[Sequence[Any]]]:
        # Made while writing: the ledger is the one full copy; a block is made from it and gone.
        for start in range(0, len(df), size):
            part = df.iloc[start:start + size]
            pids, rids = part["program_id"].tolist(), part["region_id"].tolist()
            yield list(zip(pids, [names[p] for p in pids], rids, [juris[r] for r in rids],
                           part["fund_id"].tolist(), part["period"].tolist(),
                           ledger.money_list(part["units"].to_numpy()),
                           ledger.trainees_list(part["centi"].to_numpy()), strict=True))

    cols = ["program_id", "program", "region_id", "jurisdiction", "fund_id", "period", "amount",
            "trainees"]
    total = [TOTAL_LABEL, None, None, None, None, None, ledger.money(ledger.total()),
             ledger.trainees(ledger.total("centi"))]
    return Table("Allocations", cols, Rows(len(df), blocks),
                 {"amount": "money", "trainees": "trainees"}, total)


def _programs(solution: Solution, ledger: _Ledger) -> Table:
    rnd: Round = solution.round
    periods = rnd.periods
    by_pt = ledger.sums(["program_id", "period"])
    by_p = ledger.sums(["program_id"])
    centi_p = ledger.sums(["program_id"], "centi")
    grand = ledger.total()
    # One source of truth for why a program got what it got: allocator.explain.
    reasons = {r.program_id: (r.status, r.reason)
               for r in program_reasons(solution).itertuples(index=False)}
    rows = []
    for prog in rnd.programs:
        pid = prog.program_id
        per = [by_pt.get((pid, t), 0) for t in periods]
        amount = by_p.get(pid, 0)
        rows.append([pid, prog.name, prog.sector, prog.stage.value, ", ".join(prog.regions),
                     float(prog.cost_per_trainee), float(prog.max_trainees), ledger.money(amount),
                     ledger.trainees(centi_p.get(pid, 0)), *(ledger.money(a) for a in per),
                     amount / grand if grand else None, *reasons[pid]])
    cols = ["program_id", "program", "sector", "stage", "regions", "cost_per_trainee",
            "max_trainees", "amount", "trainees", *(f"amount {t}" for t in periods), "share",
            "status", "reason"]
    per_total = [sum(by_pt.get((p.program_id, t), 0) for p in rnd.programs) for t in periods]
    total = [TOTAL_LABEL, None, None, None, None, None, None, ledger.money(grand),
             ledger.trainees(ledger.total("centi")), *(ledger.money(a) for a in per_total),
             1.0 if grand else None, None, None]
    formats: dict[str, FormatSpec] = {"cost_per_trainee": "money", "max_trainees": "general",
                                      "amount": "money", "trainees": "trainees",
                                      "share": "percent"}
    formats.update({f"amount {t}": "money" for t in periods})
    if any(p.external_match for p in rnd.programs):
        _add_external_match(rnd, ledger, by_p, cols, rows, total, formats)
    return Table("Programs", cols, rows, formats, total)


def external_match_units(units: int, share: float) -> int:
    """Money from outside the round, in whole rounding units: in-round x e / (1 - e), rounded
    half up once per program, so in-round + external = total cost adds up exactly."""
    if not share or not units:
        return 0
    e = Decimal(repr(share))
    return int((Decimal(units) * e / (1 - e)).to_integral_value(rounding="ROUND_HALF_UP"))


def _add_external_match(rnd: Round, ledger: _Ledger, by_p: dict, cols: list[str], rows: list,
                        total: list, formats: dict) -> None:
    """Beside each program's in-round `amount`: its external_match share, the money from
    outside the round and the total cost (only in rounds that use external_match)."""
    at = cols.index("amount") + 1
    cols[at:at] = ["external_match", "external match money", "total cost"]
    ext_total = in_total = 0
    for prog, row in zip(rnd.programs, rows, strict=True):
        units = by_p.get(prog.program_id, 0)
        ext = external_match_units(units, prog.external_match)
        ext_total, in_total = ext_total + ext, in_total + units
        row[at:at] = [prog.external_match, ledger.money(ext), ledger.money(units + ext)]
    total[at:at] = [None, ledger.money(ext_total), ledger.money(in_total + ext_total)]
    formats.update({"external_match": "percent", "external match money": "money",
                    "total cost": "money"})


def _regions(rnd: Round, ledger: _Ledger) -> Table:
    by_r = ledger.sums(["region_id"])
    centi_r = ledger.sums(["region_id"], "centi")
    grand = ledger.total()
    rows = []
    pop_total = Decimal(0)
    for reg in rnd.regions:
        a = by_r.get(reg.region_id, 0)
        pop = _dec(reg.population)
        pop_total += pop
        rows.append([reg.region_id, reg.name, reg.jurisdiction, _yes(reg.rural), _money(pop),
                     ledger.money(a), ledger.trainees(centi_r.get(reg.region_id, 0)),
                     _ratio(ledger.decimal(a), pop), a / grand if grand else None])
    total = [TOTAL_LABEL, None, None, None, _money(pop_total), ledger.money(grand),
             ledger.trainees(ledger.total("centi")), _ratio(ledger.decimal(grand), pop_total),
             1.0 if grand else None]
    cols = ["region_id", "region", "jurisdiction", "rural", "population", "amount", "trainees",
            "per_capita", "share"]
    return Table("Regions", cols, rows, {"population": "count", "amount": "money",
                                         "trainees": "trainees", "per_capita": "money2",
                                         "share": "percent"}, total)


def _jurisdictions(rnd: Round, ledger: _Ledger) -> Table:
    """Money delivered per jurisdiction, and 'juste retour' against its contributions.

    joint_amount is the money of the funds that have Contributions rows (the joint funds);
    ratio = joint_share / contribution_share (1 = got back exactly its share).
    """
    region_j = {r.region_id: r.jurisdiction for r in rnd.regions}
    joint_funds = {c.fund_id for c in rnd.contributions}
    contributed: dict[str, Decimal] = {}
    for c in rnd.contributions:
        contributed[c.jurisdiction] = contributed.get(c.jurisdiction, Decimal(0)) + c.amount
    juris = sorted(set(region_j.values()) | set(contributed))
    amount = dict.fromkeys(juris, 0)
    joint = dict.fromkeys(juris, 0)
    for (r, f), u in ledger.sums(["region_id", "fund_id"]).items():
        amount[region_j[r]] += u
        if f in joint_funds:
            joint[region_j[r]] += u
    pop = dict.fromkeys(juris, Decimal(0))
    n_regions = dict.fromkeys(juris, 0)
    for reg in rnd.regions:
        pop[reg.jurisdiction] += _dec(reg.population)
        n_regions[reg.jurisdiction] += 1
    grand = sum(amount.values())
    joint_total = sum(joint.values())
    contrib_total = sum(contributed.values(), Decimal(0))
    rows = []
    for j in juris:
        joint_share = joint[j] / joint_total if joint_total else None
        contrib_share = _ratio(contributed.get(j, Decimal(0)), contrib_total)
        ratio = (joint_share / contrib_share
                 if joint_share is not None and contrib_share else None)
        rows.append([j, n_regions[j], _money(pop[j]), ledger.money(amount[j]),
                     amount[j] / grand if grand else None, ledger.money(joint[j]), joint_share,
                     _money(contributed.get(j, Decimal(0))), contrib_share, ratio])
    total = [TOTAL_LABEL, sum(n_regions.values()), _money(sum(pop.values(), Decimal(0))),
             ledger.money(grand), 1.0 if grand else None, ledger.money(joint_total),
             1.0 if joint_total else None, _money(contrib_total), 1.0 if contrib_total else None,
             None]
    cols = ["jurisdiction", "regions", "population", "amount", "share", "joint_amount",
            "joint_share", "contributed", "contribution_share", "ratio"]
    return Table("Jurisdictions", cols, rows,
                 {"regions": "count", "population": "count", "amount": "money", "share": "percent",
                  "joint_amount": "money", "joint_share": "percent", "contributed": "money",
                  "contribution_share": "percent", "ratio": "ratio"}, total)


def _funds(rnd: Round, ledger: _Ledger) -> Table:
    """Per fund and period: budget + carried_in = allocated + carried_out + unspent.

    `unspent` is what lapses: all of the remainder for a fund without carry-over, only the
    last period's remainder for one with it, so the unspent column sums to budget - allocated.
    """
    spent = ledger.sums(["fund_id", "period"])
    rows = []
    zero = Decimal(0)
    tot = {"budget": zero, "in": zero, "allocated": zero, "out": zero, "unspent": zero}
    last = rnd.periods[-1]
    for fund in rnd.funds:
        carried = zero
        for t in rnd.periods:
            budget = rnd.budget(fund.fund_id, t)
            allocated = ledger.decimal(spent.get((fund.fund_id, t), 0))
            left = budget + carried - allocated
            carried_in = carried
            out = left if fund.carry_over and t != last else zero
            unspent = left - out
            carried = out
            rows.append([fund.fund_id, fund.name, fund.kind.value, fund.owner,
                         _yes(fund.carry_over), t, _money(budget), _money(carried_in),
                         _money(allocated), _money(out), _money(unspent)])
            for k, v in (("budget", budget), ("in", carried_in), ("allocated", allocated),
                         ("out", out), ("unspent", unspent)):
                tot[k] += v
    cols = ["fund_id", "fund", "kind", "owner", "carry_over", "period", "budget", "carried_in",
            "allocated", "carried_out", "unspent"]
    total = [TOTAL_LABEL, None, None, None, None, None, *(_money(tot[k]) for k in tot)]
    return Table("Funds", cols, rows, dict.fromkeys(cols[6:], "money"), total)


_RULE_COLUMNS = ["rule_id", "description", "measure", "group", "jurisdiction", "op", "target",
                 "achieved", "slack", "binding", "shadow_price", "selected_amount",
                 "reference_amount", "penalty", "shortfall", "soft", "note"]


def _rule_notes(solution: Solution, df: pd.DataFrame) -> tuple[list[str], list[str]]:
    """Per rule row: soft yes/no, and a note: a soft rule's shortfall, or a rounding miss."""
    soft = {(r.rule_id, r.group, r.jurisdiction): r.sentence
            for r in soft_rule_table(solution).itertuples(index=False)}
    missed: dict[str, float] = {}
    for i, amount in solution.rounded.row_misses.items():
        ref = solution.row_refs[i]
        if ref.is_rule:
            missed[str(ref.index[0])] = float(amount)
    cur = solution.round.settings.currency
    flags, notes = [], []
    for rule_id, group, juris, penalty in zip(df["rule_id"], df["group"], df["jurisdiction"],
                                              df["penalty"], strict=True):
        is_soft = penalty is not None and not pd.isna(penalty)
        flags.append(_yes(is_soft))
        label = ",".join(str(v) for v in (rule_id, group, juris) if v)
        if is_soft:
            notes.append("soft rule: " + soft.get((rule_id, group, juris), ""))
        elif label in missed:
            a = missed[label]
            shown = f"{a:,.0f}" if abs(a - round(a)) < 1e-6 else f"{a:,.2f}"
            notes.append(f"rounding misses it by {cur} {shown}")
        else:
            notes.append("")
    return flags, notes


def _rules(solution: Solution) -> Table:
    df = solution.rules.copy()
    if "shortfall" not in df.columns:
        df = add_shortfalls(df)
    df["soft"], df["note"] = _rule_notes(solution, df) if len(df) else ([], [])
    cols = [c for c in _RULE_COLUMNS if c in df.columns] + \
        [c for c in df.columns if c not in _RULE_COLUMNS]
    currency_cols = ("slack", "selected_amount", "reference_amount", "shortfall")
    rows = []
    for rec in df[cols].to_dict("records"):
        row = []
        for c in cols:
            v = rec[c]
            if isinstance(v, bool | np.bool_) or c == "binding":
                row.append(_yes(v) if v is not None else None)
            elif isinstance(v, str):
                row.append(v)
            elif c == "shadow_price":
                row.append(price_shown(_clean_float(v)))
            elif v is None or isinstance(v, int | float) or hasattr(v, "dtype"):
                row.append(_clean_float(v, 6 if c in currency_cols else None))
            else:
                row.append(str(v))
        rows.append(row)
    m = cols.index("measure") if "measure" in cols else None
    price = price_header(solution.round)

    def by_measure(_i: int, row: Sequence[Any]) -> str | None:
        return cell_format_of(row[m] if m is not None else None)

    formats: dict[str, FormatSpec] = {"target": by_measure, "achieved": by_measure,
                                      "slack": "money", price: "price",
                                      "selected_amount": "money", "reference_amount": "money",
                                      "penalty": "number", "shortfall": "money"}
    return Table("Rules", [price if c == "shadow_price" else c for c in cols], rows, formats)


def price_header(rnd: Round) -> str:
    """The price column's header: outcome value per 10,000 currency units."""
    return f"price per {excel.PRICE_STEP:,} {rnd.settings.currency}".strip()


_PRICE_KINDS = {"per_step": "price", "trainees_per_step": "trainees"}


def _prices(solution: Solution) -> Table:
    """Every binding rule group and every fund budget per period: its price, and in words."""
    table = price_table(solution)
    cols = list(table.columns)
    rows = []
    for rec in table.to_dict("records"):
        row = []
        for c in cols:
            v = rec[c]
            if c == "binding":
                row.append(_yes(bool(v)))
            elif c == "shadow_price":
                row.append(price_shown(_clean_float(v)))
            elif c in _PRICE_KINDS and v is not None and not isinstance(v, str):
                # per_step is a price too: noise below the shown precision is 0
                row.append(_clean_float(v, 6))
            elif isinstance(v, str) or v is None:
                row.append(v)
            else:
                row.append(_clean_float(v))
        rows.append(row)
    measure = {r.rule_id: r.measure.value for r in solution.round.rules}

    def value_kind(_i: int, row: Sequence[Any]) -> str | None:
        # A budget's value is money; a rule's value is in the rule's own unit.
        if row[0] == "budget":
            return "money"
        return cell_format_of(measure.get(row[1]))

    price = price_header(solution.round)
    formats: dict[str, FormatSpec] = {"value": value_kind, price: "price", **_PRICE_KINDS}
    return Table("Prices", [price if c == "shadow_price" else c for c in cols], rows, formats)


def _sensitivity(solution: Solution) -> Table:
    """Solver-style sensitivity: each budget's and hard rule's price with the range of its
    limit over which the price holds; each funded program's value range (allocator.sensitivity)."""
    rnd = solution.round
    price = price_header(rnd)
    cols = ["kind", "id", "name", "period", "current", price, "holds from", "holds to",
            "allowable increase", "allowable decrease", "meaning"]
    result = sensitivity(solution)
    if not result.available:
        return Table("Sensitivity", cols, [["note", "", "", "", None, None, None, None, None, None,
                                            result.why_not]])
    rows: list[list[Any]] = []
    for r in result.rows.to_dict("records"):
        rows.append([r["kind"], r["id"], r["group"], r["period"], *(_clean_float(r[c], 2) for c in (
            "limit",)), r["price"], *(_clean_float(r[c], 2) for c in (
                "lowest", "highest", "allowable_increase", "allowable_decrease")), r["meaning"]])
    for r in result.programs.to_dict("records"):
        rows.append(["program", r["program_id"], r["program"], "",
                     *(_clean_float(r[c], 4) for c in ("value_per_trainee",)), None,
                     *(_clean_float(r[c], 4) for c in ("lowest", "highest", "allowable_increase",
                                                       "allowable_decrease")), r["meaning"]])

    def kind(_i: int, row: Sequence[Any]) -> str:
        return "value" if row[0] == "program" else "money"

    formats: dict[str, FormatSpec] = {c: kind for c in ("current", "holds from", "holds to",
                                                         "allowable increase",
                                                         "allowable decrease")}
    formats[price] = "price"
    return Table("Sensitivity", cols, rows, formats)


def _tranches_of(rnd: Round, fund: FundRow) -> list[TrancheRow]:
    """Tranche rows of a fund: by fund_id first, else by fund_kind, else one 'single' tranche."""
    own = [t for t in rnd.tranches if t.fund_id == fund.fund_id]
    if own:
        return own
    kind = [t for t in rnd.tranches if t.fund_id is None and t.fund_kind == fund.kind]
    if kind:
        return kind
    return [TrancheRow(fund_id=fund.fund_id, tranche="single", share=1.0, due=0)]


def split_units(units: int, shares: Sequence[float]) -> list[int]:
    """Split whole units by shares (largest-remainder method): the parts add up to `units`.

    Shares are read as the decimals typed (0.3 is 3/10) and normalised by their sum; ties in
    the remainders go to the earlier part. (A fund's tranches are split by `split_tranches`.)
    """
    fr = [Fraction(_dec(s)) for s in shares]
    total = sum(fr, Fraction(0))
    quotas = [units * s / total for s in fr]
    parts = [math.floor(q) for q in quotas]
    left = units - sum(parts)
    order = sorted(range(len(fr)), key=lambda i: (-(quotas[i] - parts[i]), i))
    for i in order[:left]:
        parts[i] += 1
    return parts


def remainder_tranche(trs: Sequence[TrancheRow]) -> int:
    """The tranche a split's remainder goes to: the earliest due, the first listed among equals."""
    return min(range(len(trs)), key=lambda i: (trs[i].due, i))


def split_tranches(units: int, trs: Sequence[TrancheRow]) -> list[int]:
    """Whole units split into a fund's tranches (DESIGN.md 1.1): each tranche gets
    floor(units x share) and the remainder goes to the earliest tranche (`remainder_tranche`).

    Shares are read as the decimals typed (0.3 is 3/10) and normalised by their sum, so the
    parts add up to `units` exactly.
    """
    fr = [Fraction(_dec(tr.share)) for tr in trs]
    total = sum(fr, Fraction(0))
    parts = [math.floor(units * s / total) for s in fr]
    parts[remainder_tranche(trs)] += units - sum(parts)
    return parts


def split_tranches_many(units: np.ndarray, trs: Sequence[TrancheRow]) -> np.ndarray:
    """`split_tranches` of many amounts at once: row i is split_tranches(units[i], trs).

    The shares become integer weights over a common denominator, so every floor is exact
    integer arithmetic.
    """
    units = np.asarray(units, dtype=np.int64)
    fr = [Fraction(_dec(tr.share)) for tr in trs]
    den = math.lcm(*(f.denominator for f in fr))
    weights = [int(f * den) for f in fr]
    total = sum(weights)
    top = int(np.abs(units).max()) if len(units) else 0
    if total <= 0 or min(weights) < 0 or top * max(weights) >= 2**62:
        # Beyond int64 (or shares the validator refuses): the exact scalar path, row by row.
        return np.array([split_tranches(u, trs) for u in units.tolist()],
                        dtype=np.int64).reshape(len(units), len(trs))
    parts = units[:, None] * np.array(weights, dtype=np.int64)[None, :] // total
    parts[:, remainder_tranche(trs)] += units - parts.sum(axis=1)
    return parts


def due_label(periods: Sequence[str], funded: str, due: int) -> str:
    """The period `due` steps after `funded`; past the round's end, e.g. `2028+1`."""
    k = list(periods).index(funded) + due
    if k < len(periods):
        return periods[k]
    return f"{periods[-1]}+{k - len(periods) + 1}"


def _disbursement_keys(rnd: Round, ledger: _Ledger) -> pd.DataFrame:
    """Units per (program, fund, period), in report order: program, fund, period as in the round."""
    if not len(ledger):
        return pd.DataFrame({"program_id": [], "fund_id": [], "period": [],
                             "units": np.zeros(0, np.int64)})
    agg = ledger.df.groupby(["program_id", "fund_id", "period"], sort=False,
                            as_index=False)["units"].sum()
    order = [agg["program_id"].map({p.program_id: i for i, p in enumerate(rnd.programs)}),
             agg["fund_id"].map({f.fund_id: i for i, f in enumerate(rnd.funds)}),
             agg["period"].map({t: i for i, t in enumerate(rnd.periods)})]
    rank = np.lexsort([o.to_numpy() for o in reversed(order)])
    return agg.iloc[rank].reset_index(drop=True)


class _Split:
    """Units per (program, fund, period) split into the fund's tranches, once per report."""

    def __init__(self, rnd: Round, ledger: _Ledger):
        self.keys = _disbursement_keys(rnd, ledger)
        self.tranches = {f.fund_id: _tranches_of(rnd, f) for f in rnd.funds}
        self.fund_of = self.keys["fund_id"].to_numpy()
        # Per fund: the positions of its keys and their units per tranche (integer).
        self.by_fund: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        for f, trs in self.tranches.items():
            at = np.flatnonzero(self.fund_of == f)
            self.by_fund[f] = (at, split_tranches_many(self.keys["units"].to_numpy()[at], trs))


def _cash_flow(rnd: Round, ledger: _Ledger, split: _Split) -> Table:
    """Money due per period, by fund: the Disbursements' tranches summed by due period."""
    periods = split.keys["period"].to_numpy()
    due: dict[tuple[str, str], int] = {}
    for f, (at, parts) in split.by_fund.items():
        for k, tr in enumerate(split.tranches[f]):
            col = parts[:, k] if len(at) else np.zeros(0, np.int64)
            for t, u in zip(periods[at].tolist(), col.tolist(), strict=True):
                key = (due_label(rnd.periods, t, tr.due), f)
                due[key] = due.get(key, 0) + int(u)
    order = list(rnd.periods) + sorted({d for d, _ in due} - set(rnd.periods),
                                       key=lambda d: (len(d), d))
    funds = [f.fund_id for f in rnd.funds]
    rows = []
    for d in order:
        units = [due.get((d, f), 0) for f in funds]
        rows.append([d, *(ledger.money(u) for u in units), ledger.money(sum(units))])
    fund_totals = [sum(due.get((d, f), 0) for d in order) for f in funds]
    total = [TOTAL_LABEL, *(ledger.money(u) for u in fund_totals), ledger.money(sum(fund_totals))]
    cols = ["due_period", *funds, "total"]
    return Table("Cash flow", cols, rows, dict.fromkeys(cols[1:], "money"), total)


def _disbursements(rnd: Round, ledger: _Ledger, split: _Split | None = None) -> Table:
    split = split or _Split(rnd, ledger)
    keys = split.keys
    names = {p.program_id: p.name for p in rnd.programs}
    tranches = split.tranches
    fund_of = split.fund_of
    # Every key's tranche amounts (written numbers), split at once for all keys of a fund.
    amounts: list[list[int | float]] = [[] for _ in range(len(keys))]
    for f, trs in tranches.items():
        at, split_units_of_f = split.by_fund[f]
        flat, k = ledger.money_list(split_units_of_f.ravel()), len(trs)
        for n, i in enumerate(at.tolist()):
            amounts[i] = flat[n * k:(n + 1) * k]
    due = {(t, tr.due): due_label(rnd.periods, t, tr.due)
           for trs in tranches.values() for tr in trs for t in rnd.periods}
    count = sum(len(tranches[f]) for f in fund_of.tolist())

    def blocks(size: int) -> Iterator[list[Sequence[Any]]]:
        block: list[Sequence[Any]] = []
        for p, f, t, money in zip(keys["program_id"].tolist(), fund_of.tolist(),
                                  keys["period"].tolist(), amounts, strict=True):
            block += [(p, names[p], f, t, tr.tranche, float(tr.share), a, due[(t, tr.due)],
                       tr.condition) for tr, a in zip(tranches[f], money, strict=True)]
            if len(block) >= size:
                yield block
                block = []
        if block:
            yield block

    cols = ["program_id", "program", "fund_id", "period", "tranche", "share", "amount",
            "due_period", "condition"]
    # The tranches of a key add up to its units (split_tranches), so this is the total.
    total = [TOTAL_LABEL, None, None, None, None, None, ledger.money(ledger.total()), None, None]
    return Table("Disbursements", cols, Rows(count, blocks), {"share": "percent", "amount": "money"},
                 total)


def _version(dist: str) -> str:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "not installed"


def _audit(solution: Solution, run_id: str, input_digest: str, output_digest: str,
           round_digest: str, record_dir: str, versions: Mapping[str, str] | None,
           solver_options: Mapping[str, object] | None) -> Table:
    rnd: Round = solution.round
    found = {"allocator": allocator.__version__, "python": platform.python_version(),
             "pyomo": _version("pyomo"), "highspy": _version("highspy"),
             "openpyxl": _version("openpyxl")}
    found.update(versions or {})
    rows: list[list[Any]] = [["report format version", REPORT_FORMAT_VERSION, "count"]]
    rows += [[f"version: {k}", str(v), None] for k, v in found.items()]
    options = dict(solver_options) if solver_options is not None else {
        "time_limit_s": rnd.settings.time_limit_s, "mip_gap": rnd.settings.mip_gap}
    for k, v in options.items():
        rows.append([f"solver option: {k}", *_audit_value(v)])
    rows.append(["mixed-integer model", _yes(getattr(solution, "mip", False)), None])
    plan = getattr(solution, "plan", None)
    rows += [[item, words, None] for item, words in (plan_lines(plan) if plan else [])]
    rows += _stage_rows(solution)
    rows.append(["rounding method", str(getattr(solution.rounded, "method", "")), None])
    for stage in solution.stages:
        rows.append([f"stage {stage.name}: seconds", _clean_float(stage.seconds), "seconds"])
        bound = stage.solver_log.get("lp_bound") if isinstance(stage.solver_log, dict) else None
        if getattr(stage, "mip_gap", None) is not None:
            label = "gap to the proven bound" if bound is not None else "mip gap"
            rows.append([f"stage {stage.name}: {label}", _clean_float(stage.mip_gap), "general"])
        if bound is not None:  # an LP stopped by its time limit: the optimum is at most this
            rows.append([f"stage {stage.name}: bound on the optimum", _clean_float(bound),
                         "general"])
    for k, v in (solution.timings or {}).items():
        rows.append([f"time: {k} (s)", _clean_float(v), "seconds"])
    rows += [
        ["input digest", input_digest, None],
        ["output digest", output_digest, None],
        ["round digest (canonical JSON)", round_digest, None],
        ["run id", run_id, None],
        ["record folder", record_dir, None],
    ]
    return Table("Audit", ["item", "value"], [r[:2] for r in rows],
                 {"value": row_kinds([r[2] for r in rows])})


# What each solver stage does, in words (Audit sheet): the one place the tie-break is explained.
STAGE_WORDS = {
    "outcome": "finds the largest outcome value the budgets and rules allow",
    "outcome_lp": "the same with every program's on/off decision fixed: the prices come from it",
    "tiebreak": ("tie-break: among allocations with that outcome value, picks the one that gives "
                 "equal programs equal money, so a re-run on any machine returns the same "
                 "allocation; its own objective number has no meaning for a reader"),
}


def _stage_rows(solution: Solution) -> list[list[Any]]:
    """Per solver stage: what it does, its status and its objective (Audit sheet only)."""
    rows: list[list[Any]] = []
    for stage in solution.stages:
        words = STAGE_WORDS.get(stage.name) or (
            "equity: keeps the outcome value near its best and raises the worst-off group"
            if stage.name.startswith("equity") else "")
        if words:
            rows.append([f"stage {stage.name}: what it does", words, None])
        rows.append([f"stage {stage.name}: status", str(stage.status.value), None])
        rows.append([f"stage {stage.name}: objective", _clean_float(stage.objective), "value"])
    return rows


def _audit_value(v: object) -> tuple[Any, str | None]:
    if isinstance(v, bool):
        return _yes(v), None
    if isinstance(v, int | float):
        return _clean_float(v) if isinstance(v, float) else v, "general"
    if isinstance(v, str):
        return v, None
    return json.dumps(v, sort_keys=True, default=str), None


def _weight_ranges(solution: Solution) -> Table:
    """Per Objective weight, the range (others held) over which the allocation stays optimal
    (allocator.weights; blank ends are unbounded). Its own sheet, to be merged into a
    sensitivity sheet."""
    from allocator.weights import weight_ranges

    df = weight_ranges(solution)
    rows = [[r.metric, r.weight, _clean_float(r.lowest), _clean_float(r.highest), r.of]
            for r in df.itertuples(index=False)]
    return Table("Weight ranges", ["metric", "weight", "lowest", "highest", "of"], rows,
                 {"weight": "value", "lowest": "value", "highest": "value"})


def _notes(notes: Sequence[object]) -> Table:
    rows = []
    for n in notes:
        if isinstance(n, Normalisation):
            rows.append([str(n.where), n.where.header or "", n.found, n.used, n.why])
        else:
            rows.append(["", "", str(n), "", ""])
    return Table("Notes", ["cell", "header", "found", "used", "why"], rows)
