"""A re-run anywhere returns the same allocation: ties are broken, row order does not matter."""

from __future__ import annotations

import random
import subprocess
import sys

from allocator.engine import solve_round
from allocator.validate import load_round
from tests.rounds import sheets, write


def _twins_round() -> dict:
    twin = {"sector": "digital", "stage": "established", "regions": "A1", "cost_per_trainee": 1000,
            "max_trainees": 100, "employment_rate": 0.5, "retention_rate": 0.5,
            "learning_gain": 0.1, "wage_gain": 0.1}
    return sheets(
        Round={"round_id": "TW", "periods": "2026"},
        Funds=[{"fund_id": "PUB", "kind": "public", "owner": "A"}],
        Budgets=[{"fund_id": "PUB", "period": "2026", "amount": 50000}],
        Contributions=None, Rules=None,
        Programs=[{"program_id": "PA", "name": "Twin A", **twin},
                  {"program_id": "PB", "name": "Twin B", **twin}],
    )


def test_identical_programs_get_identical_amounts(tmp_path):
    # Budget 50,000 buys 50 trainees of either twin; any split is optimal, the tie-break halves it.
    sol = solve_round(load_round(write(tmp_path / "tw.xlsx", _twins_round())).round)
    by_program = sol.allocation.groupby("program_id")["amount"].sum().to_dict()
    assert by_program == {"PA": 25000.0, "PB": 25000.0}


def _shuffled(data: dict, seed: int) -> dict:
    rng = random.Random(seed)
    out = {}
    for name, rows in data.items():
        if isinstance(rows, list):
            rows = [dict(r) for r in rows]
            rng.shuffle(rows)
            for r in rows:
                for key in ("program_id", "region_id", "fund_id"):
                    if isinstance(r.get(key), str):
                        r[key] = f"  {r[key]} "
        out[name] = rows
    return out


def test_shuffled_rows_and_padded_ids_give_same_digest_and_allocation(tmp_path):
    base = load_round(write(tmp_path / "a.xlsx", sheets())).round
    other = load_round(write(tmp_path / "b.xlsx", _shuffled(sheets(), seed=7))).round
    assert base.digest() == other.digest()
    a = solve_round(base).allocation
    b = solve_round(other).allocation
    assert a.to_dict("records") == b.to_dict("records")


_SOLVE = """
import sys
from allocator.engine import solve_round
from allocator.validate import load_round
sol = solve_round(load_round(sys.argv[1]).round, threads=int(sys.argv[2]))
print(sol.allocation[["program_id", "region_id", "fund_id", "period", "units"]].to_csv(index=False))
"""


def test_thread_counts_agree(tmp_path):
    # HiGHS fixes its thread pool once per process, so each count runs in its own process.
    path = write(tmp_path / "a.xlsx", sheets())
    outputs = [
        subprocess.run([sys.executable, "-c", _SOLVE, str(path), threads], check=True,
                       capture_output=True, text=True).stdout
        for threads in ("1", "2")
    ]
    assert outputs[0] == outputs[1]
    assert outputs[0].count("\n") > 2


def test_interior_point_and_simplex_paths_agree(tmp_path, monkeypatch):
    # Large rounds solve their LP stages by interior point (with crossover) and start the
    # tie-break cold; small ones use simplex and warm-start it. The tie-break's optimum is
    # unique, so both paths must give the same allocation.
    import allocator.solve as solve

    rnd = load_round(write(tmp_path / "a.xlsx", sheets())).round
    simplex = solve_round(rnd)
    monkeypatch.setattr(solve, "IPM_COLUMNS", 0)
    interior = solve_round(rnd)
    assert [s.solver_log.get("method") for s in interior.stages][-1] == "ipm"
    assert simplex.allocation.to_dict("records") == interior.allocation.to_dict("records")


def test_interior_point_without_crossover_gives_the_same_allocation(tmp_path, monkeypatch):
    # The largest rounds skip crossover: no vertex, but the tie-break optimum is unique, so
    # after rounding the allocation must be the one simplex finds.
    import allocator.solve as solve

    rnd = load_round(write(tmp_path / "a.xlsx", sheets())).round
    simplex = solve_round(rnd)
    monkeypatch.setattr(solve, "IPM_COLUMNS", 0)
    monkeypatch.setattr(solve, "CROSSOVER_COLUMNS", 0)
    interior = solve_round(rnd)
    assert simplex.allocation.to_dict("records") == interior.allocation.to_dict("records")
