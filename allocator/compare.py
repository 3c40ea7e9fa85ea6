"""`allocator compare`: the round and each of its variants solved, side by side in one workbook.

The variants come from the round workbook's `Variants` sheet (see `allocator.variants`). The
base and the variants run in parallel (`allocator.pool.run_tasks`: a local process pool, or a
Dask cluster); variants that change only budgets, outcome values and weights are solved in
chains from the base's model, each started from the one before (`allocator.warm`), with the
answers of cold solves. Each solved one gets its own decision record; the
base's record holds the workbook, a variant's record holds its canonical round only (the
workbook is not the variant's round, and `verify` would rightly refuse it).

The comparison workbook (`reports/<round_id>.compare.xlsx` by default) has, with one column
per variant (the base first):
- Summary: per variant its overrides, status, outcome value and its change from the base,
  what the equity stage gave up (outcome value and trainees, against the variant's own best),
  money allocated, trainees, programs funded, and where its decision record is;
- Jurisdictions, Regions, Funds, Targets, Periods: the money of each, side by side, with bar
  charts by jurisdiction and by fund;
- Programs: each program's money per variant and its change from the base, the programs whose
  funding changes most first.
Money is exact: totals are sums of whole rounding units (Decimal), as in the report.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from allocator.engine import Solution
from allocator.errors import CellRef, InfeasibleRoundError, InputError, InputIssue, SolverStoppedError
from allocator.round import Round
from allocator.variants import BASE_NAME

if TYPE_CHECKING:
    from allocator.stages.model import BuiltModel
    from allocator.warm import Warm

TOTAL_SHEETS = ("Jurisdictions", "Regions", "Funds", "Targets", "Periods")
NO_TARGET = "(no target)"


@dataclass
class VariantRun:
    """One solved (or failed) variant; the base is the run named `base`."""

    name: str
    overrides: str
    round: Round
    solution: Solution | None = None
    status: str = ""  # optimal | time_limit | infeasible | stopped
    message: str = ""
    record: Path | None = None

    @property
    def solved(self) -> bool:
        return self.solution is not None


@dataclass
class CompareResult:
    """What `compare` produced."""

    runs: list[VariantRun]
    report: Path
    tables: dict[str, pd.DataFrame] = field(default_factory=dict)
    where: str = ""


# --- solving ---------------------------------------------------------------------------------------
Outcome = tuple[Solution | None, str, str]  # solution or None, status, message


def solve_variant(rnd: Round, model: BuiltModel | None = None, warm: Warm | None = None) -> Outcome:
    """Solve one round (`model` and `warm`: see `engine.solve_round`): (solution or None,
    status, message)."""
    from allocator.diagnose import solve_diagnosed

    try:
        sol = solve_diagnosed(rnd, model=model, warm=warm)
    except InfeasibleRoundError as exc:
        return None, "infeasible", str(exc)
    except SolverStoppedError as exc:
        return None, "stopped", str(exc)
    broken = [w for w in sol.warnings if w.startswith("rounding breaks a hard")]
    return sol, sol.status.value, "; ".join(broken)


def solve_variant_chain(_shared: Any, chain: list[Round]) -> list[Outcome]:
    """Solve a chain of rounds in order (runs in a worker): the first from scratch, each later
    one on the first's model with budgets and costs set anew (`warm.point_model`), started
    from the bases the one before left. A one-round chain is a plain cold solve."""
    from allocator.warm import Warm, point_model

    if len(chain) == 1:
        return [solve_variant(chain[0])]
    warm, built, out = Warm(source="previous variant"), None, []
    for rnd in chain:
        model = point_model(built, rnd) if built is not None else None
        sol, status, message = solve_variant(rnd, model, warm)
        built = built or (sol.model if sol is not None else None)
        out.append((sol, status, message))
    return out


def variant_chains(runs: list[VariantRun], parts: int) -> list[list[int]]:
    """The runs (by position) as chains solved in order (`solve_variant_chain`): the base and
    every variant that differs from it only in budgets, outcome values and weights
    (`warm.point_free_part`), in sheet order, cut into `parts` pieces (`warm.split_chains`);
    every other variant alone, from scratch. The chains depend on the runs only, never on
    the workers, so every runner gives the same comparison."""
    from allocator.warm import point_free_part, split_chains

    base = point_free_part(runs[0].round)  # made once: a large round's dump takes a while
    near: list[int] = []
    alone: list[int] = []
    for i, run in enumerate(runs):
        (near if i == 0 or point_free_part(run.round) == base else alone).append(i)
    return split_chains([near], parts) + [[i] for i in alone]


def compare(workbook: str | Path, *, report: str | Path | None = None,
            records: str | Path | None = None, workers: int | None = None,
            scheduler: str | None = None, progress: bool = False,
            warm: bool = True) -> CompareResult:
    """Solve the round and every variant, write their records (when `records` is given) and
    the comparison workbook; returns what was done. Raises InputError for a bad workbook or
    variant, and for a workbook without variants (there is nothing to compare). An infeasible
    variant is reported in the workbook, not raised.

    `warm`: the variants that change only budgets, outcome values and weights are solved in
    chains from the base's model, each from the one before (`variant_chains`); otherwise
    every run from scratch. The answers are the same either way (tests/test_variants.py)."""
    from allocator.pool import WARM_CHAINS, pool_size, run_tasks
    from allocator.record import write_record
    from allocator.validate import load_round
    from allocator.variants import load_variants

    workbook = Path(workbook)
    base = load_round(workbook).round
    runs = [VariantRun(BASE_NAME, "", base)]
    variants = load_variants(workbook, base)
    twin = nominal_twin(base, {BASE_NAME} | {v.name for v, _ in variants})  # robust: nominal beside
    if not variants and not twin:
        raise InputError([InputIssue(CellRef("Variants"), no_variants_message(workbook))])
    runs += twin + [VariantRun(v.name, v.overrides_text, rnd) for v, rnd in variants]
    chains = variant_chains(runs, WARM_CHAINS) if warm else [[i] for i in range(len(runs))]
    n = len(chains) if scheduler else pool_size(workers, len(chains))
    done = run_tasks(solve_variant_chain, [[runs[i].round for i in c] for c in chains],
                     workers=n, scheduler=scheduler, progress=progress,
                     label=f"compare {base.settings.round_id}")
    for chain, outcomes in zip(chains, done, strict=True):
        for i, (sol, status, message) in zip(chain, outcomes, strict=True):
            runs[i].solution, runs[i].status, runs[i].message = sol, status, message
    if records is not None:
        for run in runs:
            if run.solution is None:
                continue
            paths = write_record(run.solution, Path(records),
                                 workbook if run.name == BASE_NAME else None,
                                 id_suffix=f"-{slug(run.name)}")
            run.record = paths.folder
    target = Path(report) if report is not None else default_compare_path(base)
    tables = comparison_tables(runs)
    write_comparison(tables, runs, target)
    where = f"dask {scheduler}" if scheduler else f"{n} local process(es)"
    return CompareResult(runs, target, tables, where)


def no_variants_message(workbook: Path) -> str:
    """Why `compare` has nothing to compare: no Variants sheet, or one without rows."""
    from allocator.workbook import read_tables

    tables, _ = read_tables(workbook, {"variants"})
    what = "the Variants sheet has no rows" if "variants" in tables else "no Variants sheet"
    return (f"{what}: nothing to compare; add rows (variant, overrides) as in the template "
            "(allocator template PATH)")


NOMINAL_NAME = "nominal"


def nominal_twin(base: Round, taken: set[str]) -> list[VariantRun]:
    """With robust_gamma > 0, the same round with Gamma 0 (estimates taken as exact), so the
    comparison shows the nominal allocation beside the robust one; otherwise nothing."""
    if base.settings.robust_gamma <= 0:
        return []
    name = NOMINAL_NAME
    while name in taken:
        name += "_"
    nominal = base.model_copy(update={"settings": base.settings.model_copy(
        update={"robust_gamma": 0.0})})
    return [VariantRun(name, "robust_gamma=0", nominal)]


def default_compare_path(rnd: Round) -> Path:
    return Path("reports") / f"{rnd.settings.round_id}.compare.xlsx"


def slug(name: str) -> str:
    """A variant name as a file-name-safe run id suffix."""
    # at most 40 characters, no leading/trailing dot: a run id is a folder name (allocator.paths)
    return re.sub(r"[^A-Za-z0-9._-]+", "-", name)[:40].strip("-.") or "variant"


# --- tables ----------------------------------------------------------------------------------------
def money_amounts(sol: Solution) -> pd.DataFrame:
    """The allocation with exact Decimal amounts (whole rounding units) and its attributes."""
    rnd = sol.round
    unit = rnd.settings.rounding_unit
    alloc = sol.allocation
    region = {r.region_id: r for r in rnd.regions}
    return pd.DataFrame({
        "program_id": alloc["program_id"].to_numpy(),
        "region_id": alloc["region_id"].to_numpy(),
        "jurisdiction": [region[r].jurisdiction for r in alloc["region_id"]],
        "fund_id": alloc["fund_id"].to_numpy(),
        "period": alloc["period"].to_numpy(),
        "amount": [Decimal(int(u)) * unit for u in alloc["units"]],
        "trainees": alloc["trainees"].to_numpy(),
    })


def _sums(keys: Iterable[str], pairs: Iterable[tuple[str, Decimal]]) -> dict[str, Decimal]:
    out = dict.fromkeys(keys, Decimal(0))
    for key, amount in pairs:
        out[key] = out.get(key, Decimal(0)) + amount
    return out


def totals(run: VariantRun, base: Round) -> dict[str, dict[str, Decimal]]:
    """Money per jurisdiction, region, fund, target group, period and program of one run."""
    assert run.solution is not None
    df = money_amounts(run.solution)
    tags = {p.program_id: p.targets for p in run.round.programs}
    rows = list(df.itertuples(index=False))
    return {
        "Jurisdictions": _sums(base.jurisdictions(), ((r.jurisdiction, r.amount) for r in rows)),
        "Regions": _sums((r.region_id for r in base.regions), ((r.region_id, r.amount) for r in rows)),
        "Funds": _sums((f.fund_id for f in base.funds), ((r.fund_id, r.amount) for r in rows)),
        # A program tagged rural and women counts toward both groups: the column is not a total.
        "Targets": _sums(target_groups(base), ((t, r.amount) for r in rows
                                               for t in (tags[r.program_id] or (NO_TARGET,)))),
        "Periods": _sums(base.periods, ((r.period, r.amount) for r in rows)),
        "Programs": _sums((p.program_id for p in base.programs),
                          ((r.program_id, r.amount) for r in rows)),
    }


def target_groups(rnd: Round) -> list[str]:
    """Every target tag of the round's programs, sorted, then the untagged group if any."""
    tags = sorted({t for p in rnd.programs for t in p.targets})
    return tags + ([NO_TARGET] if any(not p.targets for p in rnd.programs) else [])


def _lp_value(sol: Solution, amounts: np.ndarray) -> tuple[float, float]:
    """Outcome value and trainees of unrounded amounts per eligible x."""
    rnd = sol.round
    prog = {p.program_id: p for p in rnd.programs}
    rows = [prog[pid] for pid in sol.index.programs]
    value = np.array([rnd.value_per_trainee(p) / p.round_cost_per_trainee for p in rows])
    per_trainee = np.array([1.0 / p.round_cost_per_trainee for p in rows])
    p = sol.index.p
    return float((amounts * value[p]).sum()), float((amounts * per_trainee[p]).sum())


def given_up(sol: Solution) -> tuple[float | None, float | None]:
    """Outcome value and trainees the later stages gave up against the best outcome (stage 1).

    Zero without an equity objective (the tie-break keeps the optimum); with one, the price of
    fairness of this variant. Measured on the solver's amounts, so rounding does not blur it.
    """
    first = sol.stages[0]
    if first.x is None or sol.columns is None:
        return None, None
    best_value, best_trainees = _lp_value(sol, first.x[sol.columns.x])
    final_value, final_trainees = _lp_value(sol, sol.lp_amounts)
    # Below solver tolerance the difference is noise, not a price.
    tol = 1e-7 * max(1.0, abs(best_value))
    value = best_value - final_value
    trainees = best_trainees - final_trainees
    return (0.0 if abs(value) <= tol else value,
            0.0 if abs(value) <= tol and abs(trainees) <= 1e-6 * max(1.0, best_trainees) else trainees)


def comparison_tables(runs: list[VariantRun]) -> dict[str, pd.DataFrame]:
    """Every sheet of the comparison workbook as a DataFrame (money as Decimal)."""
    from allocator.warm import shown_optimum

    base_run = runs[0]
    base = base_run.round
    names = [r.name for r in runs]
    per_run = {r.name: totals(r, base) if r.solved else None for r in runs}
    budget_total = {r.name: sum((b.amount for b in r.round.budgets), Decimal(0)) for r in runs}

    summary = []
    base_value = base_run.solution.objective if base_run.solved else None
    for r in runs:
        sol = r.solution
        value = sol.objective if sol is not None else None
        lost_value, lost_trainees = given_up(sol) if sol is not None else (None, None)
        allocated = sum(per_run[r.name]["Programs"].values(), Decimal(0)) if sol is not None else None
        change = value - base_value if value is not None and base_value is not None else None
        summary.append({
            "variant": r.name,
            "overrides": r.overrides,
            "status": r.status,
            "outcome_value": value,
            "change_from_base": change,
            "change_from_base_pct": change / base_value if change is not None and base_value else None,
            "optimal_outcome_value": shown_optimum(sol.optimal_objective) if sol is not None
            else None,
            "equity_objective": r.round.settings.equity_objective.value,
            "outcome_given_up_for_equity": lost_value,
            "trainees_given_up_for_equity": lost_trainees,
            "trainees": float(sol.allocation["trainees"].sum()) if sol is not None and len(
                sol.allocation) else (0.0 if sol is not None else None),
            "allocated": allocated,
            "budget": budget_total[r.name],
            "programs_funded": int(sol.allocation["program_id"].nunique()) if sol is not None else None,
            "record": str(r.record) if r.record is not None else "",
            "message": r.message,
        })
    _add_uncertainty(summary, runs)
    tables = {"Summary": pd.DataFrame(summary)}

    labels = {
        "Jurisdictions": (["jurisdiction"], lambda k: [k]),
        "Regions": (["region_id", "region", "jurisdiction"],
                    lambda k: [k, base.region(k).name, base.region(k).jurisdiction]),
        "Funds": (["fund_id", "fund", "kind"],
                  lambda k: [k, base.fund(k).name, base.fund(k).kind.value]),
        "Targets": (["target"], lambda k: [k]),
        "Periods": (["period"], lambda k: [k]),
    }
    for sheet, (heads, label) in labels.items():
        keys = list(per_run[names[0]][sheet]) if per_run[names[0]] is not None else \
            _keys_of(sheet, base)
        rows = []
        for k in keys:
            row = dict(zip(heads, label(k), strict=True))
            for n in names:
                row[n] = per_run[n][sheet].get(k, Decimal(0)) if per_run[n] is not None else None
            rows.append(row)
        tables[sheet] = pd.DataFrame(rows, columns=heads + names)

    prog_rows = []
    for p in base.programs:
        row: dict[str, Any] = {"program_id": p.program_id, "program": p.name}
        for n in names:
            row[n] = per_run[n]["Programs"][p.program_id] if per_run[n] is not None else None
        b = row[names[0]]
        largest: Decimal | None = None
        for n in names[1:]:
            change = row[n] - b if row[n] is not None and b is not None else None
            row[f"change {n}"] = change
            if change is not None and (largest is None or abs(change) > abs(largest)):
                largest = change
        row["largest_change"] = largest
        prog_rows.append(row)
    programs = pd.DataFrame(prog_rows)
    if len(programs):
        order = sorted(range(len(prog_rows)), key=lambda i: (
            -abs(prog_rows[i]["largest_change"] or 0), prog_rows[i]["program_id"]))
        programs = programs.iloc[order].reset_index(drop=True)
    tables["Programs"] = programs
    return tables


def _add_uncertainty(summary: list[dict], runs: list[VariantRun]) -> None:
    """Where the round has standard errors: each allocation's sampled mean and 5th percentile
    of the outcome value and, with the base's robust_gamma > 0, the value it guarantees."""
    from allocator.robust import has_spread, uncertainty_columns

    if not any(has_spread(r.round) for r in runs):
        return
    s = runs[0].round.settings
    for row, r in zip(summary, runs, strict=True):
        if r.solution is not None:
            row.update(uncertainty_columns(r.round, r.solution.allocation, s.robust_gamma,
                                           s.robust_level))


def _keys_of(sheet: str, base: Round) -> list[str]:
    return {"Jurisdictions": list(base.jurisdictions()),
            "Regions": [r.region_id for r in base.regions],
            "Funds": [f.fund_id for f in base.funds],
            "Targets": target_groups(base),
            "Periods": list(base.periods)}[sheet]


# --- the workbook ----------------------------------------------------------------------------------
def _bar_chart(ws, title: str, label_col: int, first_series_col: int, n_series: int, n_rows: int,
               currency: str, anchor: str) -> None:
    from openpyxl.chart import BarChart, Reference

    chart = BarChart()
    chart.type = "col"
    chart.grouping = "clustered"
    chart.title = title
    chart.y_axis.title = currency
    chart.y_axis.numFmt = "#,##0"
    chart.add_data(Reference(ws, min_col=first_series_col, max_col=first_series_col + n_series - 1,
                             min_row=1, max_row=n_rows + 1), titles_from_data=True)
    chart.set_categories(Reference(ws, min_col=label_col, min_row=2, max_row=n_rows + 1))
    chart.width = max(16, 2 + n_rows * (1 + n_series) * 0.5)
    chart.height = 9
    ws.add_chart(chart, anchor)


SUMMARY_KINDS = {"outcome_value": "value", "change_from_base": "value",
                 "change_from_base_pct": "percent", "optimal_outcome_value": "value",
                 "outcome_given_up_for_equity": "value", "trainees_given_up_for_equity": "trainees",
                 "trainees": "trainees", "allocated": "money", "budget": "money",
                 "programs_funded": "count"}


def write_comparison(tables: dict[str, pd.DataFrame], runs: list[VariantRun], path: str | Path) -> Path:
    """Write the comparison workbook atomically (the previous file survives a failure)."""
    from openpyxl import Workbook

    from allocator import excel
    from allocator.atomic import atomic_path

    base = runs[0].round
    formats = excel.Formats.of_round(base)
    footer = f"{base.settings.round_id}: comparison"
    names = [r.name for r in runs]
    wb = Workbook()
    wb.remove(wb.active)
    excel.write_frame(wb, "Summary", tables["Summary"], kinds=SUMMARY_KINDS, formats=formats,
                footer=footer, words=True)
    for sheet in TOTAL_SHEETS:
        df = tables[sheet]
        first = len(df.columns) - len(names)
        # A program counts toward each of its target groups: the Targets column is no total.
        ws = excel.write_frame(wb, sheet, df, money_from=first, formats=formats,
                         total=sheet != "Targets", footer=footer)
        if sheet in ("Jurisdictions", "Funds") and len(df):
            title = f"Money by {'jurisdiction' if sheet == 'Jurisdictions' else 'fund'}, per variant"
            _bar_chart(ws, title, 1, first + 1, len(names), len(df), base.settings.currency,
                       f"A{len(df) + 4}")
            # The chart sits under the table; the sheet prints on one page, so no page
            # break can cut it.
            ws.page_setup.fitToHeight = 1
    excel.write_frame(wb, "Programs", tables["Programs"], money_from=2, formats=formats, total=True,
                footer=footer)
    path = Path(path)
    with atomic_path(path) as tmp:
        wb.save(tmp)
    return path
