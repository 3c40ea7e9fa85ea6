"""The `allocator` command: a thin layer over `allocator.api`.

Exit codes: 0 done, 1 invalid input, 2 usage error, 3 infeasible round, 4 solver stopped without
a solution, 5 decision record not verified, 70 internal error (a bug: please report it).
"""

from __future__ import annotations

import math
import sys
from decimal import Decimal
from pathlib import Path
from typing import Annotated

import typer

from allocator.errors import InfeasibleRoundError, InputError, SolverStoppedError

EXIT_INVALID, EXIT_INFEASIBLE, EXIT_STOPPED, EXIT_UNVERIFIED, EXIT_BUG = 1, 3, 4, 5, 70

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Funding allocation and grant optimization: round workbook in, optimal "
                       "allocation, finance report and auditable decision record out.")


def _err(text: str) -> None:
    typer.echo(text, err=True)


def _guard(func):
    """Map the engine's errors to exit codes; never show a traceback to a user."""
    def wrapper(*args, **kwargs):
        try:
            return func(*args, **kwargs)
        except InputError as exc:
            _err(exc.render())
            _err("Nothing was written.")
            raise typer.Exit(EXIT_INVALID) from None
        except InfeasibleRoundError as exc:
            _err(str(exc))
            _err("The round is infeasible; no report or record was written.")
            raise typer.Exit(EXIT_INFEASIBLE) from None
        except SolverStoppedError as exc:
            _err(f"solver stopped: {exc}")
            _err("No report or record was written.")
            raise typer.Exit(EXIT_STOPPED) from None
        except typer.Exit:
            raise
        except KeyboardInterrupt:
            _err("interrupted; nothing was written.")
            raise typer.Exit(130) from None
        except Exception as exc:  # a bug: say so plainly, without a traceback
            _err(f"internal error ({type(exc).__name__}: {exc}); nothing was written. "
                 "This is a bug in allocator: please report it with the workbook.")
            raise typer.Exit(EXIT_BUG) from None

    wrapper.__name__ = func.__name__
    wrapper.__doc__ = func.__doc__
    wrapper.__wrapped__ = func
    return wrapper


def _money(value: float | Decimal, currency: str) -> str:
    return f"{currency} {Decimal(str(value)):,.0f}" if float(value).is_integer() else \
        f"{currency} {float(value):,.2f}"


@app.command()
@_guard
def run(
    workbook: Annotated[Path, typer.Argument(help="The round workbook (.xlsx).")],
    report: Annotated[Path | None, typer.Option(help="Report [default: reports/<round_id>.xlsx]")] = None,
    records: Annotated[Path | None, typer.Option(help="Folder of decision records [default: models]")] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Print nothing on success.")] = False,
) -> None:
    """Validate, solve and report a round; write its decision record."""
    from allocator import api
    from allocator.progress import rich_phases

    try:
        with rich_phases(enabled=not quiet):
            result = api.run(workbook, report=report, records=records)
    except InfeasibleRoundError as exc:
        _write_diagnosis(exc, report)
        raise
    if not quiet:
        typer.echo(summary_text(result))


def _write_diagnosis(exc: InfeasibleRoundError, report: Path | None) -> None:
    """Write `<report stem>.diagnosis.xlsx` beside the report path (never the report itself)."""
    diagnosis = exc.diagnosis
    if diagnosis is None:
        return
    from allocator.diagnose import write_diagnosis

    target = report if report is not None else Path("reports") / f"{diagnosis.round_id}.xlsx"
    path = target.with_name(f"{target.stem}.diagnosis.xlsx")
    write_diagnosis(diagnosis, path)
    _err(f"diagnosis written to {path}")


def summary_text(result) -> str:
    """The short summary `allocator run` prints."""
    from allocator.solve import Status

    sol = result.solution
    rnd = sol.round
    cur = rnd.settings.currency
    alloc = sol.allocation
    total = alloc["amount"].sum() if len(alloc) else 0.0
    budget = sum(b.amount for b in rnd.budgets)
    funded = alloc["program_id"].nunique() if len(alloc) else 0
    status = sol.status.value
    if sol.status in (Status.time_limit, Status.not_proven):
        gap = sol.stages[0].mip_gap
        status += " — not proven optimal"
        if gap is not None:
            status += f" (gap {gap:.2%})" if math.isfinite(gap) else " (no bound on the optimum)"
    before = "optimum" if sol.status == Status.optimal else "value"  # a stopped run has no optimum
    lines = [
        f"round {rnd.settings.round_id}: {status}",
        f"outcome value {sol.objective:,.4f} ({before} before rounding "
        f"{sol.optimal_objective:,.4f}{', guaranteed' if sol.robustness else ''})",
        f"allocated {_money(total, cur)} of {_money(budget, cur)} budget; "
        f"{funded} of {len(rnd.programs)} programs funded",
        "by fund:",
    ]
    if sol.fairness:
        fair = sol.fairness
        lines.insert(2, f"equity {fair['objective']}: price of fairness "
                        f"{fair['outcome_given_up']:,.4f} outcome value, "
                        f"{fair['trainees_given_up']:,.2f} trainee placements; lowest group "
                        f"{fair['min_before']:,.4g} -> {fair['min_after']:,.4g} {fair['unit']}")
    if sol.robustness:
        rob = sol.robustness
        price = rob["price_of_robustness"]
        lines.insert(2, f"robust (Gamma {rob['gamma']:g}, z {rob['level']:g}): guaranteed "
                        f"{rob['guaranteed']:,.4f}, expected {rob['expected']:,.4f}; price of "
                        f"robustness {'unknown' if price is None else f'{price:,.4f}'} "
                        "outcome value")
    by_fund = alloc.groupby("fund_id")["amount"].sum() if len(alloc) else {}
    for f in rnd.funds:
        lines.append(f"  {f.fund_id:<16} {_money(by_fund.get(f.fund_id, 0.0), cur):>22}")
    lines.append("by jurisdiction:")
    jur_of = {r.region_id: r.jurisdiction for r in rnd.regions}
    by_jur = alloc.assign(j=alloc["region_id"].map(jur_of)).groupby("j")["amount"].sum() \
        if len(alloc) else {}
    for j in rnd.jurisdictions():
        lines.append(f"  {j:<16} {_money(by_jur.get(j, 0.0), cur):>22}")
    misses = len(sol.rounded.row_misses)
    if misses:
        lines.append(f"warning: rounding misses {misses} row(s) by up to one unit each; "
                     "see the Rules sheet")
    lines.extend(f"warning: {w}" for w in sol.warnings)
    t = result.timings
    order = [("read", "read"), ("build", "build"), ("handover", "hand-over"), ("solve", "solve"),
             ("rounding", "rounding"), ("record", "record"), ("report", "report")]
    lines.append("time: " + ", ".join(f"{label} {t[k]:.2f} s" for k, label in order if k in t))
    lines.append(f"report: {result.report}")
    lines.append(f"record: {result.record.folder}")
    return "\n".join(lines)


@app.command()
@_guard
def check(workbook: Annotated[Path, typer.Argument(help="The round workbook (.xlsx).")]) -> None:
    """Validate a round workbook without solving it."""
    from allocator.validate import load_round

    loaded = load_round(workbook)
    rnd = loaded.round
    typer.echo(f"{workbook}: valid round {rnd.settings.round_id} — {len(rnd.regions)} regions, "
               f"{len(rnd.funds)} funds, {len(rnd.programs)} programs, {len(rnd.rules)} rules, "
               f"{len(rnd.periods)} periods")
    for note in loaded.notes:
        typer.echo(f"normalised: {note}")
    from allocator.diagnose import cheap_checks

    problems = cheap_checks(rnd)
    if problems:
        raise InfeasibleRoundError("infeasible before any solve:\n" + "\n".join(
            f"  {p}" for p in problems))


@app.command()
@_guard
def template(path: Annotated[Path, typer.Argument(help="Where to write the blank workbook.")]) -> None:
    """Write the blank round workbook (every sheet and header, instructions, drop-downs)."""
    from allocator.template import write_template

    write_template(path)
    typer.echo(f"wrote {path}")


@app.command()
@_guard
def verify(record: Annotated[Path, typer.Argument(help="A decision record folder.")]) -> None:
    """Re-run a decision record: VERIFIED, or every difference and violated rule."""
    from allocator.atomic import is_leftover
    from allocator.record import verify_record

    if is_leftover(record):
        _err(f"{record} is the leftover of an interrupted run, not a decision record")
        raise typer.Exit(EXIT_INVALID)
    result = verify_record(record)
    for w in result.warnings:
        typer.echo(f"warning: {w}")
    if result.verified:
        typer.echo(f"VERIFIED {record}")
        return
    typer.echo(f"NOT VERIFIED {record}")
    for p in result.problems:
        typer.echo(f"  {p}")
    raise typer.Exit(EXIT_UNVERIFIED)


@app.command()
@_guard
def diff(
    record_a: Annotated[Path, typer.Argument(help="The earlier decision record folder.")],
    record_b: Annotated[Path, typer.Argument(help="The later decision record folder.")],
) -> None:
    """What changed between two decisions: inputs, then money by program, region and fund."""
    from allocator.atomic import is_leftover
    from allocator.record import diff_records

    for folder in (record_a, record_b):
        complete = (folder / "round.json").is_file() and (folder / "allocation.csv").is_file()
        if is_leftover(folder) or not complete:
            _err(f"{folder} is not a decision record (no round.json / allocation.csv)")
            raise typer.Exit(EXIT_INVALID)
    for line in diff_records(record_a, record_b):
        typer.echo(line)



# Options shared by the commands that run independent solves in parallel.
Workers = Annotated[int | None, typer.Option(
    help="Local worker processes [default: the usable cores]; 1 solves in this process.")]
Scheduler = Annotated[str | None, typer.Option(
    help="Dask scheduler address (e.g. tcp://host:8786): solve on that cluster.")]
QuietParallel = Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar, no summary.")]


@app.command()
@_guard
def compare(
    workbook: Annotated[Path, typer.Argument(help="The round workbook (.xlsx) with a Variants sheet.")],
    report: Annotated[Path | None, typer.Option(
        help="Comparison workbook [default: reports/<round_id>.compare.xlsx]")] = None,
    records: Annotated[Path | None, typer.Option(help="Folder of decision records [default: models]")] = None,
    no_records: Annotated[bool, typer.Option("--no-records", help="Write no decision records.")] = False,
    workers: Workers = None,
    scheduler: Scheduler = None,
    quiet: QuietParallel = False,
) -> None:
    """Solve the round and every variant of its Variants sheet; write them side by side."""
    from allocator.compare import compare as run_compare

    if workers is not None and workers < 1:
        _err("--workers must be at least 1")
        raise typer.Exit(2)
    result = run_compare(workbook, report=report, records=None if no_records else (records or Path("models")),
                         workers=workers, scheduler=scheduler, progress=not quiet)
    if quiet:
        return
    summary = result.tables["Summary"]
    for row in summary.itertuples(index=False):
        if row.status in ("optimal", "time_limit"):
            change = f"{row.change_from_base:+,.4f}" if _number(row.change_from_base) else "n/a"
            typer.echo(f"  {row.variant:<24} {row.status:<10} outcome value {row.outcome_value:,.4f} "
                       f"({change} from base)")
        else:
            typer.echo(f"  {row.variant:<24} {row.status:<10} {row.message.splitlines()[0]}")
    failed = [r.name for r in result.runs if not r.solved]
    if failed:
        _err(f"warning: {len(failed)} variant(s) have no solution: {', '.join(failed)}; "
             "see the Summary sheet")
    typer.echo(f"ran on: {result.where}")
    typer.echo(f"comparison: {result.report}")


@app.command()
@_guard
def sweep(
    workbook: Annotated[Path, typer.Argument(help="The round workbook (.xlsx).")],
    budget_range: Annotated[str | None, typer.Option(
        help="FUND:PERIOD:START:STOP:STEPS, e.g. JIF:2027:0:200000:5 (STEPS budget levels).")] = None,
    outcome_spread: Annotated[float | None, typer.Option(
        help="Draw each program's outcomes from +-this share of their values, e.g. 0.1.")] = None,
    samples: Annotated[int, typer.Option(help="Samples of the outcome draws (per budget level).")] = 20,
    seed: Annotated[int, typer.Option(help="Seed of the outcome draws.")] = 0,
    report: Annotated[Path | None, typer.Option(
        help="Sweep workbook [default: reports/<round_id>.sweep.xlsx]")] = None,
    workers: Workers = None,
    scheduler: Scheduler = None,
    quiet: QuietParallel = False,
) -> None:
    """What-if at scale: solve over budget levels and/or sampled outcomes; report robustness."""
    from allocator.sweep import (
        SweepSpecError,
        default_sweep_path,
        parse_budget_range,
        run_sweep,
        write_sweep,
    )
    from allocator.validate import load_round

    if budget_range is None and outcome_spread is None:
        _err("give --budget-range FUND:PERIOD:START:STOP:STEPS and/or --outcome-spread SHARE")
        raise typer.Exit(2)
    if workers is not None and workers < 1:
        _err("--workers must be at least 1")
        raise typer.Exit(2)
    rnd = load_round(workbook).round
    try:
        br = parse_budget_range(budget_range, rnd) if budget_range is not None else None
        result = run_sweep(rnd, budget_range=br, spread=outcome_spread, samples=samples, seed=seed,
                           workers=workers, scheduler=scheduler, progress=not quiet)
    except SweepSpecError as exc:
        _err(str(exc))
        raise typer.Exit(2) from None
    path = write_sweep(result, report if report is not None else default_sweep_path(rnd))
    if quiet:
        return
    from allocator.sweep import sweep_tables

    for row in sweep_tables(result)["Levels"].itertuples(index=False):
        budget = f"budget {row.budget:,.0f}: " if _number(row.budget) else ""
        value = f"{row.outcome_value:,.4f}" if _number(row.outcome_value) else "-"
        typer.echo(f"  {budget}outcome value {value} ({row.solved} of {row.solves} solved)")
    typer.echo(f"{len(result.points)} solves in {result.seconds:.1f} s on {result.where}")
    typer.echo(f"sweep: {path}")

@app.command()
@_guard
def frontier(
    workbook: Annotated[Path, typer.Argument(help="The round workbook (.xlsx).")],
    between: Annotated[tuple[str, str], typer.Option(
        help="Two metrics A B: outcome columns of Programs, 'outcome' (the round's objective) or "
             "'equity'. B is maximised at each level of A.")],
    points: Annotated[int, typer.Option(help="Points on the frontier (levels of A).")] = 11,
    report: Annotated[Path | None, typer.Option(
        help="Frontier workbook [default: reports/<round_id>.frontier.<A>-<B>.xlsx]")] = None,
    workers: Workers = None,
    scheduler: Scheduler = None,
    quiet: QuietParallel = False,
) -> None:
    """Trade-off between two goals: the best B for each level of A (epsilon-constraint)."""
    from allocator.frontier import (
        FrontierSpecError,
        default_frontier_path,
        frontier_tables,
        trace_frontier,
        write_frontier,
    )
    from allocator.validate import load_round

    if workers is not None and workers < 1:
        _err("--workers must be at least 1")
        raise typer.Exit(2)
    rnd = load_round(workbook).round
    a, b = between
    try:
        result = trace_frontier(rnd, a, b, points=points, workers=workers, scheduler=scheduler,
                                progress=not quiet)
    except FrontierSpecError as exc:
        _err(str(exc))
        raise typer.Exit(2) from None
    path = write_frontier(result, report if report is not None else default_frontier_path(rnd, a, b))
    if quiet:
        return
    for row in frontier_tables(result)["Frontier"].itertuples(index=False):
        typer.echo(f"  point {row[0]:>3}: {a} {row[1]:,.4f}  {b} {row[2]:,.4f}  "
                   f"objective {row[3]:,.4f}")
    typer.echo(f"{len(result.points)} points in {result.seconds:.1f} s on {result.where}")
    typer.echo(f"frontier: {path}")


def _number(value: object) -> bool:
    """A real number (not None, not NaN) in a summary table."""
    import math

    return isinstance(value, int | float | Decimal) and not (isinstance(value, float) and math.isnan(value))


def main() -> None:  # pragma: no cover - console entry point
    app()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
