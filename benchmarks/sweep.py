"""Sweep and compare speed: cold against warm (allocator.warm), serial against a pool of 2.

    python -m benchmarks.sweep [--programs 100 1000] [--levels 20] [--samples 16] [--repeat 2]
                               [--seed 0]

Per round size and kind (a budget sweep of JIF 2027 from half to 1.5 times its budget,
`--levels` levels; an outcome-spread sweep of +-10%, `--samples` draws; `compare` of the
round and the 12 variants of `VARIANTS`, 10 of them warm-able, without records): one
`solve_round` of the base round, one `allocator run` end to end (read, solve, report, record),
and the sweep or comparison cold and warm, serial and on 2 worker processes; each the minimum
of `--repeat` runs. Every run must give the cold serial tables (checked: "same"). Prints a
markdown table. Not part of the test suite.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

import openpyxl
import pandas as pd

from allocator.compare import compare
from allocator.engine import solve_round
from allocator.round import Round
from allocator.sweep import BudgetRange, run_sweep, sweep_tables
from allocator.validate import load_round
from benchmarks.synthetic import write_synthetic_round


def fastest(repeat: int, fn: Callable[[], Any]) -> tuple[float, Any]:
    """The least wall time of `repeat` calls (the machine is shared), and the last result."""
    best, out = float("inf"), None
    for _ in range(repeat):
        tick = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - tick)
    return best, out


def differing(a: dict[str, pd.DataFrame], b: dict[str, pd.DataFrame]) -> list[str]:
    """The sheet/columns where two sweeps' tables are not exactly equal."""
    out = []
    for sheet in a:
        for col in a[sheet].columns:
            x, y = a[sheet][col], b[sheet][col]
            if not ((x == y) | (x.isna() & y.isna())).all():
                out.append(f"{sheet}.{col}")
    return out


def _no_record(tables: dict[str, pd.DataFrame]) -> dict[str, pd.DataFrame]:
    """The tables without the comparison's record column (no records are written here)."""
    return {k: v.drop(columns=["record"], errors="ignore") for k, v in tables.items()}


def one_run(path: Path) -> None:
    """`allocator run` end to end, in this process."""
    from typer.testing import CliRunner

    from allocator.cli import app

    with tempfile.TemporaryDirectory() as out:
        res = CliRunner().invoke(app, ["run", str(path), "--report", f"{out}/r.xlsx",
                                       "--records", out, "--quiet"])
        if res.exit_code != 0:
            raise RuntimeError(res.output)


# Variants of the synthetic round: budgets, weights and outcome values (solved warm), and two
# rule values (each solved from scratch).
VARIANTS = [
    ("JIF -20%", "budget JIF 2027 = -20%"), ("JIF -10%", "budget JIF 2027 = -10%"),
    ("JIF +10%", "budget JIF 2027 = +10%"), ("JIF +20%", "budget JIF 2027 = +20%"),
    ("EMP +15%", "budget EMP * = +15%"), ("LSF 2026 -15%", "budget LSF 2026 = -15%"),
    ("wages 1.5", "weight wage_gain = 1.5"), ("jobs 1.5", "weight employment_rate = 1.5"),
    ("no learning", "weight learning_gain = 0"), ("wages +10%", "program * wage_gain = *1.1"),
    ("inclusion 0.4", "rule R02-INCLUSION value = 0.4"),
    ("sector cap 0.25", "rule R07-SECTOR-CAP value = 0.25"),
]


def with_variants(path: Path) -> Path:
    """A copy of the round workbook with the `VARIANTS` sheet."""
    book = openpyxl.load_workbook(path)
    sheet = book.create_sheet("Variants")
    sheet.append(["variant", "overrides"])
    for row in VARIANTS:
        sheet.append(list(row))
    out = path.with_name(path.stem + "-variants.xlsx")
    book.save(out)
    return out


def sweep_kinds(rnd: Round, levels: int, samples: int, seed: int) -> dict[str, dict[str, Any]]:
    jif = rnd.budget("JIF", "2027")
    return {
        f"budget, {levels} levels": {"budget_range": BudgetRange(
            "JIF", "2027", jif * Decimal("0.5"), jif * Decimal("1.5"), levels)},
        f"outcome spread, {samples} samples": {"spread": 0.1, "samples": samples, "seed": seed},
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--programs", type=int, nargs="+", default=[100, 1000])
    ap.add_argument("--levels", type=int, default=20)
    ap.add_argument("--samples", type=int, default=16)
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    print("| programs | sweep | one solve_round s | one run s | cold serial s | warm serial s "
          "| cold pool 2 s | warm pool 2 s | best / solve_round | best / run | same |")
    print("|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---|")
    with tempfile.TemporaryDirectory() as tmp:
        for n in args.programs:
            path = write_synthetic_round(Path(tmp) / f"bench{n}.xlsx", n, args.seed, 3600, 0.05)
            rnd = load_round(path).round
            solve_s, _ = fastest(args.repeat, lambda rnd=rnd: solve_round(rnd))
            run_s, _ = fastest(args.repeat, lambda path=path: one_run(path))
            kinds: dict[str, Callable[[bool, int], dict[str, pd.DataFrame]]] = {
                kind: (lambda warm, workers, kw=kw, rnd=rnd: sweep_tables(
                    run_sweep(rnd, workers=workers, warm=warm, **kw)))
                for kind, kw in sweep_kinds(rnd, args.levels, args.samples, args.seed).items()}
            variants = with_variants(path)
            kinds[f"compare, {len(VARIANTS)} variants"] = \
                lambda warm, workers, variants=variants: compare(
                    variants, report=variants.with_suffix(".compare.xlsx"), workers=workers,
                    warm=warm).tables
            for kind, solve in kinds.items():
                times, tables = {}, {}
                for name, warm, workers in (("cold serial", False, 1), ("warm serial", True, 1),
                                            ("cold pool", False, 2), ("warm pool", True, 2)):
                    times[name], tables[name] = fastest(
                        args.repeat, lambda solve=solve, warm=warm, workers=workers: solve(warm, workers))
                diff = sorted({d for t in tables.values()
                               for d in differing(_no_record(tables["cold serial"]), _no_record(t))})
                best = min(times["warm serial"], times["warm pool"])
                print(f"| {n:,} | {kind} | {solve_s:.2f} | {run_s:.2f} | "
                      f"{times['cold serial']:.2f} | {times['warm serial']:.2f} | "
                      f"{times['cold pool']:.2f} | {times['warm pool']:.2f} | "
                      f"{best / solve_s:.1f}x | {best / run_s:.1f}x | "
                      f"{'yes' if not diff else 'differs: ' + ', '.join(diff)} |",
                      flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
