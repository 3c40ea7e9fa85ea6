"""Sweeps: many independent solves of one round, locally in a process pool or on a Dask cluster.

`allocator sweep ROUND.xlsx --budget-range JIF:2027:0:200000:5` solves the round at each of 5
budget levels of fund JIF in 2027; `--outcome-spread 0.1 --samples 50 --seed 1` solves it 50
times with every program's outcomes drawn from +-10% of their stated values, and reports each
program's robustness: the share of samples in which it is funded. Both together give a grid
(every level x every sample; the same draws at every level, so levels differ by budget only).

The draws are made once, in the calling process, from a seeded numpy generator; each solve is
a pure function of (round, task) run with one solver thread. So the results do not depend on
where or in which order the solves run: a local process pool and a Dask cluster give identical
tables (tests check this).

The solves run through `allocator.pool.run_tasks` (shared with `compare` and `frontier`): a
local ProcessPoolExecutor by default (forkserver: workers never inherit the parent's solver
threads), a Dask distributed cluster when given a scheduler address, in-process when workers == 1.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from allocator.errors import InfeasibleRoundError, SolverStoppedError
from allocator.pool import WARM_CHAINS, pool_size, run_tasks
from allocator.round import RATE_COLUMNS, Round

if TYPE_CHECKING:
    from allocator.engine import Solution
    from allocator.stages.model import BuiltModel
    from allocator.warm import Warm


# --- sweep tasks -------------------------------------------------------------------------------------
class SweepSpecError(ValueError):
    """A sweep option does not fit the round (unknown fund, period, bad range)."""


@dataclass(frozen=True)
class BudgetRange:
    """`FUND:PERIOD:START:STOP:STEPS`: STEPS budget levels from START to STOP, evenly spaced."""

    fund: str
    period: str
    start: Decimal
    stop: Decimal
    steps: int

    def levels(self) -> list[Decimal]:
        """The budget levels, exact to the cent (START and STOP exactly)."""
        if self.steps == 1:
            return [self.start]
        span = self.stop - self.start
        return [(self.start + span * i / (self.steps - 1)).quantize(Decimal("0.01"))
                if 0 < i < self.steps - 1 else (self.start if i == 0 else self.stop)
                for i in range(self.steps)]


def parse_budget_range(text: str, rnd: Round) -> BudgetRange:
    """Parse and check `FUND:PERIOD:START:STOP:STEPS` against the round."""
    from allocator import cells

    parts = text.rsplit(":", 4)
    if len(parts) != 5:
        raise SweepSpecError(f"--budget-range: expected FUND:PERIOD:START:STOP:STEPS, got {text!r}")
    fund, period, start_s, stop_s, steps_s = (p.strip() for p in parts)
    funds = [f.fund_id for f in rnd.funds]
    if fund not in funds:
        raise SweepSpecError(f"--budget-range: unknown fund {fund!r} (the round has {', '.join(funds)})")
    if period not in rnd.periods:
        raise SweepSpecError(f"--budget-range: unknown period {period!r} (the round has "
                             f"{', '.join(rnd.periods)})")
    try:
        start, stop = cells.parse_decimal(start_s, []), cells.parse_decimal(stop_s, [])
        steps = int(steps_s)
    except (cells.CellValueError, ValueError) as exc:
        raise SweepSpecError(f"--budget-range: START and STOP must be amounts and STEPS a whole "
                             f"number, got {text!r}") from exc
    if start is None or stop is None or start < 0 or stop < 0:
        raise SweepSpecError(f"--budget-range: START and STOP must be amounts >= 0, got {text!r}")
    if steps < 1:
        raise SweepSpecError(f"--budget-range: STEPS must be at least 1, got {steps}")
    return BudgetRange(fund, period, start, stop, steps)


@dataclass(frozen=True)
class SweepTask:
    """One solve: a budget level (or none) and a sample's outcome factors (or none = nominal)."""

    level: int
    budget: Decimal | None
    sample: int
    factors: np.ndarray | None = None  # (programs, metrics) multipliers, metrics as `metrics`
    metrics: tuple[str, ...] = ()


@dataclass(frozen=True)
class SweepPoint:
    """What one solve gave: status, outcome values, and money per program."""

    level: int
    sample: int
    status: str  # optimal | time_limit | infeasible | stopped
    objective: float | None  # outcome value of the rounded allocation
    optimal_objective: float | None  # the LP/MILP optimum before rounding
    allocated: Decimal
    trainees: float
    program_amounts: dict[str, Decimal]
    message: str = ""


def sweep_tasks(rnd: Round, budget_range: BudgetRange | None, spread: float | None,
                samples: int, seed: int) -> list[SweepTask]:
    """Every (level, sample) solve; the outcome draws are made here, once, from `seed`."""
    levels: list[Decimal | None] = budget_range.levels() if budget_range else [None]
    metrics = tuple(sorted({o.metric for o in rnd.objective if o.weight != 0}))
    if spread:
        rng = np.random.default_rng(seed)
        draws = rng.uniform(1 - spread, 1 + spread, size=(samples, len(rnd.programs), len(metrics)))
        sample_factors: list[np.ndarray | None] = list(draws)
    else:
        sample_factors = [None]
    return [SweepTask(li, level, si, factors, metrics if factors is not None else ())
            for li, level in enumerate(levels) for si, factors in enumerate(sample_factors)]


def task_round(base: Round, task: SweepTask, budget_range: BudgetRange | None) -> Round:
    """The round of one task: the budget level set, each program's outcomes scaled by its draws."""
    from allocator.round import BudgetRow
    from allocator.variants import revalidate

    update: dict[str, Any] = {}
    if budget_range is not None and task.budget is not None:
        rows = {(b.fund_id, b.period): b for b in base.budgets}
        rows[(budget_range.fund, budget_range.period)] = BudgetRow(
            fund_id=budget_range.fund, period=budget_range.period, amount=task.budget)
        order = {t: i for i, t in enumerate(base.periods)}
        update["budgets"] = tuple(sorted(rows.values(), key=lambda b: (b.fund_id, order[b.period])))
    if task.factors is not None:
        programs = []
        for p, row in zip(base.programs, task.factors, strict=True):
            outcomes = dict(p.outcomes)
            for m, factor in zip(task.metrics, row, strict=True):
                value = outcomes.get(m, 0.0) * float(factor)
                # A rate stays a rate: a draw cannot promise more than every trainee employed.
                outcomes[m] = min(max(value, 0.0), 1.0) if m in RATE_COLUMNS else value
            programs.append(p.model_copy(update={"outcomes": outcomes}))
        update["programs"] = tuple(programs)
    return revalidate(base, update) if update else base


def sweep_chains(tasks: list[SweepTask], parts: int) -> list[list[SweepTask]]:
    """The tasks as chains, each solved in order from the one before (`allocator.warm`): per
    sample its budget levels in order (a level changes only budget rows' bounds), or, with a
    single level, the samples in order (a sample changes only outcome values); each chain cut
    into contiguous pieces until there are `parts` (`warm.split_chains`)."""
    from allocator.warm import split_chains

    levels = {t.level for t in tasks}
    key = (lambda t: t.sample) if len(levels) > 1 else (lambda t: t.level)
    groups: dict[int, list[SweepTask]] = {}
    for task in tasks:
        groups.setdefault(key(task), []).append(task)
    return split_chains(list(groups.values()), parts)


def solve_sweep_chain(shared: tuple[Round, BudgetRange | None],
                      chain: list[SweepTask]) -> list[SweepPoint]:
    """Solve a chain of tasks in order: the model built once,
    changed in place for each later task, each solve started from the one before."""
    from allocator.warm import Warm, point_model

    base, budget_range = shared
    warm, built, points = Warm(), None, []
    for task in chain:
        rnd = task_round(base, task, budget_range)
        model = point_model(built, rnd) if built is not None else None
        point, sol = solve_point(rnd, task, model, warm)
        built = built or (sol.model if sol is not None else None)
        points.append(point)
    return points


def solve_sweep_task(shared: tuple[Round, BudgetRange | None], task: SweepTask) -> SweepPoint:
    """Solve one task from scratch."""
    base, budget_range = shared
    return solve_point(task_round(base, task, budget_range), task)[0]


def solve_point(rnd: Round, task: SweepTask, model: BuiltModel | None = None,
                warm: Warm | None = None) -> tuple[SweepPoint, Solution | None]:
    """The point of one task's round (`model` and `warm`: see `engine.solve_round`), and its
    solution when it has one."""
    from allocator.diagnose import solve_diagnosed

    try:
        sol = solve_diagnosed(rnd, model=model, warm=warm)
    except InfeasibleRoundError as exc:
        return SweepPoint(task.level, task.sample, "infeasible", None, None, Decimal(0), 0.0, {},
                          str(exc).splitlines()[0]), None
    except SolverStoppedError as exc:
        return SweepPoint(task.level, task.sample, "stopped", None, None, Decimal(0), 0.0, {},
                          str(exc).splitlines()[0]), None
    unit = rnd.settings.rounding_unit
    alloc = sol.allocation
    amounts: dict[str, Decimal] = {}
    for pid, units in zip(alloc["program_id"], alloc["units"], strict=True):
        amounts[pid] = amounts.get(pid, Decimal(0)) + Decimal(int(units)) * unit
    return SweepPoint(task.level, task.sample, sol.status.value, sol.objective,
                      sol.optimal_objective, sum(amounts.values(), Decimal(0)),
                      float(alloc["trainees"].sum()) if len(alloc) else 0.0, amounts), sol


# --- running and reporting ------------------------------------------------------------------------
@dataclass
class SweepResult:
    """Every solve of a sweep, with what was asked."""

    round: Round
    budget_range: BudgetRange | None
    spread: float | None
    samples: int
    seed: int
    tasks: list[SweepTask]
    points: list[SweepPoint]
    seconds: float = 0.0
    where: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


def run_sweep(rnd: Round, *, budget_range: BudgetRange | None = None, spread: float | None = None,
              samples: int = 20, seed: int = 0, workers: int | None = None,
              scheduler: str | None = None, progress: bool = False,
              warm: bool = True) -> SweepResult:
    """Solve every task of the sweep (see `run_tasks` for where) and collect the points.

    `warm`: in chains (`sweep_chains`; `pool.WARM_CHAINS` of them), each point from the one
    before (`allocator.warm`), on up to `pool.pool_size` workers; otherwise every task from
    scratch. The points are the same either way: tests/test_warm.py compares every warm point
    with a cold `solve_round`, and benchmarks/sweep.py every warm table with the cold one.
    """
    if spread is not None and not 0 <= spread < 1:
        raise SweepSpecError(f"--outcome-spread must be at least 0 and below 1, got {spread}")
    if spread and samples < 1:
        raise SweepSpecError(f"--samples must be at least 1, got {samples}")
    tasks = sweep_tasks(rnd, budget_range, spread, samples, seed)
    tick = time.perf_counter()
    if warm:
        chains = sweep_chains(tasks, WARM_CHAINS)
        n = len(chains) if scheduler else pool_size(workers, len(chains))
        done = run_tasks(solve_sweep_chain, chains, shared=(rnd, budget_range), workers=n,
                         scheduler=scheduler, progress=progress,
                         label=f"sweep {rnd.settings.round_id} ({len(chains)} chain(s))")
        by_task = {(t.level, t.sample): p for c, ps in zip(chains, done, strict=True)
                   for t, p in zip(c, ps, strict=True)}
        points = [by_task[(t.level, t.sample)] for t in tasks]
    else:
        n = pool_size(workers, len(tasks))
        points = run_tasks(solve_sweep_task, tasks, shared=(rnd, budget_range), workers=n,
                           scheduler=scheduler, progress=progress,
                           label=f"sweep {rnd.settings.round_id}")
    where = f"dask {scheduler}" if scheduler else f"{n} local process(es)"
    return SweepResult(rnd, budget_range, spread or None, samples if spread else 1, seed, tasks,
                       points, time.perf_counter() - tick, where)


def _money(value: Decimal) -> int | float:
    return int(value) if value == value.to_integral_value() else float(value)


def _level_label(result: SweepResult, level: int) -> str:
    if result.budget_range is None:
        return "round budget"
    budget = result.budget_range.levels()[level]
    return f"{result.budget_range.fund} {result.budget_range.period} = {format(budget.normalize(), ',f')}"


def sweep_tables(result: SweepResult) -> dict[str, pd.DataFrame]:
    """Levels (outcome value per budget level), Robustness and Amounts (per program and level),
    Samples (one row per solve). These depend only on the inputs, never on where they ran."""
    from allocator.warm import shown_optimum

    rnd = result.round
    levels = result.budget_range.levels() if result.budget_range else [None]
    by_level: dict[int, list[SweepPoint]] = {i: [] for i in range(len(levels))}
    for point in result.points:
        by_level[point.level].append(point)
    level_rows = []
    for i, budget in enumerate(levels):
        pts = by_level[i]
        ok = [p for p in pts if p.objective is not None]
        values = [p.objective for p in ok]
        level_rows.append({
            "level": i + 1,
            "fund_id": result.budget_range.fund if result.budget_range else "",
            "period": result.budget_range.period if result.budget_range else "",
            "budget": _money(budget) if budget is not None else None,
            "solves": len(pts),
            "solved": len(ok),
            "infeasible": sum(p.status == "infeasible" for p in pts),
            "outcome_value": float(np.mean(values)) if values else None,
            "outcome_value_min": min(values) if values else None,
            "outcome_value_max": max(values) if values else None,
            "allocated_mean": float(np.mean([float(p.allocated) for p in ok])) if ok else None,
            "programs_funded_mean": float(np.mean([len(p.program_amounts) for p in ok])) if ok else None,
        })
    robust_rows, amount_rows = [], []
    for p in rnd.programs:
        robust = {"program_id": p.program_id, "program": p.name}
        amounts = {"program_id": p.program_id, "program": p.name}
        for i in range(len(levels)):
            ok = [pt for pt in by_level[i] if pt.objective is not None]
            label = _level_label(result, i)
            funded = sum(1 for pt in ok if pt.program_amounts.get(p.program_id, 0) > 0)
            robust[label] = funded / len(ok) if ok else None
            amounts[label] = (float(np.mean([float(pt.program_amounts.get(p.program_id, 0))
                                             for pt in ok])) if ok else None)
        robust_rows.append(robust)
        amount_rows.append(amounts)
    sample_rows = []
    for task, pt in zip(result.tasks, result.points, strict=True):
        sample_rows.append({
            "level": task.level + 1,
            "budget": _money(task.budget) if task.budget is not None else None,
            "sample": task.sample + 1,
            "status": pt.status,
            "outcome_value": pt.objective,
            "optimal_outcome_value": shown_optimum(pt.optimal_objective),
            "allocated": _money(pt.allocated),
            "trainees": pt.trainees,
            "programs_funded": len(pt.program_amounts),
            "message": pt.message,
        })
    return {"Levels": pd.DataFrame(level_rows), "Robustness": pd.DataFrame(robust_rows),
            "Amounts": pd.DataFrame(amount_rows), "Samples": pd.DataFrame(sample_rows)}


def write_sweep(result: SweepResult, path: str | Path) -> Path:
    """The sweep workbook: Summary, Levels (with a chart), Robustness, Amounts, Samples."""
    from openpyxl import Workbook
    from openpyxl.chart import BarChart, Reference

    from allocator.atomic import atomic_path
    from allocator.excel import money_format, write_frame

    tables = sweep_tables(result)
    rnd = result.round
    br = result.budget_range
    summary = pd.DataFrame([
        ("round", rnd.settings.round_id), ("title", rnd.settings.title),
        ("budget range", f"{br.fund}:{br.period}:{br.start}:{br.stop}:{br.steps}" if br else ""),
        ("outcome spread", result.spread if result.spread else ""),
        ("samples per level", result.samples), ("seed", result.seed if result.spread else ""),
        ("solves", len(result.points)),
        ("solves infeasible", sum(p.status == "infeasible" for p in result.points)),
        ("ran on", result.where), ("seconds", round(result.seconds, 2)),
        ("robustness", "share of solved samples in which the program gets any money"),
        ("outcome draws", "each program's weighted outcomes times U(1-spread, 1+spread), rates "
                          "capped at 1; the same draws at every budget level"),
    ], columns=["key", "value"])
    money = money_format(rnd)
    wb = Workbook()
    wb.remove(wb.active)
    write_frame(wb, "Summary", summary)
    ws = write_frame(wb, "Levels", tables["Levels"], money_columns={"budget", "allocated_mean"},
                     number_format=money)
    if len(tables["Levels"]) > 1:
        chart = BarChart()
        chart.title = "Outcome value per budget level"
        chart.y_axis.title = "outcome value"
        chart.x_axis.title = "budget"
        col = list(tables["Levels"].columns).index("outcome_value") + 1
        chart.add_data(Reference(ws, min_col=col, min_row=1, max_row=len(tables["Levels"]) + 1),
                       titles_from_data=True)
        chart.set_categories(Reference(ws, min_col=4, min_row=2, max_row=len(tables["Levels"]) + 1))
        ws.add_chart(chart, f"A{len(tables['Levels']) + 4}")
    write_frame(wb, "Robustness", tables["Robustness"], percent_from=2)
    write_frame(wb, "Amounts", tables["Amounts"], money_from=2, number_format=money)
    write_frame(wb, "Samples", tables["Samples"], money_columns={"budget", "allocated"},
                number_format=money)
    path = Path(path)
    with atomic_path(path) as tmp:
        wb.save(tmp)
    return path


def default_sweep_path(rnd: Round) -> Path:
    return Path("reports") / f"{rnd.settings.round_id}.sweep.xlsx"

