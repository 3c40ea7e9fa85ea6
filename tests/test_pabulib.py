"""A real all-or-nothing round: the 2023 Green Budget of Wieliczka (Pabulib), as a 0-1 knapsack.

Every project is a program funded at its full cost or not at all (min = max = 1 trainee at
cost_per_trainee = its cost) and worth its approval votes; one fund holds the 1,000,000 PLN
budget. The best selection (most votes within budget) is computed independently by dynamic
programming over the integer costs, and the engine's MILP must find exactly that many votes.
The data is vendored in tests/data/pabulib (source and licence in its README).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from allocator.engine import solve_round

CSV = Path(__file__).resolve().parent / "data" / "pabulib" / "Poland_Wieliczka_2023_Green_Budget.projects.csv"
BUDGET = 1_000_000


@pytest.fixture(scope="module")
def projects() -> pd.DataFrame:
    """The 64 projects; a missing file is a broken checkout, so it fails (never skips)."""
    if not CSV.is_file():
        pytest.fail(f"Pabulib data not found at {CSV}: the checkout is incomplete")
    df = pd.read_csv(CSV, dtype={"project_id": str})
    assert len(df) == 64 and df["cost"].gt(0).all()
    return df


def knapsack_best_votes(costs: np.ndarray, votes: np.ndarray, budget: int) -> int:
    """Most votes of a project set costing at most `budget`: 0-1 knapsack DP over cost.

    best[c] = most votes within cost c using the projects seen so far; adding a project of
    cost w and value v gives best'[c] = max(best[c], best[c - w] + v), one vectorised pass
    per project (the right-hand side reads the old array, so each project is used once).
    """
    best = np.zeros(budget + 1, dtype=np.int64)
    for w, v in zip(costs.astype(np.int64), votes.astype(np.int64), strict=True):
        if 0 < w <= budget:
            best[w:] = np.maximum(best[w:], best[:-w] + v)
    return int(best[budget])


def test_knapsack_dp_on_a_hand_case():
    # Budget 10: {6, 4} worth 60 + 32 = 92 beats {5, 4} (77) and {6} + nothing else fitting.
    assert knapsack_best_votes(np.array([6, 5, 4]), np.array([60, 45, 32]), 10) == 92
    assert knapsack_best_votes(np.array([11]), np.array([5]), 10) == 0


def test_engine_finds_the_knapsack_optimum(projects, make_round):
    costs = projects["cost"].to_numpy()
    votes = projects["votes"].to_numpy()
    best = knapsack_best_votes(costs, votes, BUDGET)
    # The official Method of Equal Shares selection is feasible, so it bounds the optimum below.
    official = projects[projects["selected"] == 1]
    assert official["cost"].sum() <= BUDGET and best >= official["votes"].sum()

    rnd = make_round({
        "Round": {"round_id": "Wieliczka-2023-Green", "currency": "PLN", "rounding_unit": 1,
                  "mip_gap": 0, "time_limit_s": 60},
        "Regions": [{"region_id": "WIE", "name": "Wieliczka", "jurisdiction": "WIE",
                     "population": 60000}],
        "Funds": [{"fund_id": "GB", "name": "Green Budget", "kind": "public", "owner": "WIE"}],
        "Budgets": [{"fund_id": "GB", "period": "all", "amount": BUDGET}],
        "Programs": [{"program_id": f"p{row.project_id}", "regions": "WIE",
                      "cost_per_trainee": int(row.cost), "max_trainees": 1, "min_trainees": 1,
                      "votes": int(row.votes)} for row in projects.itertuples()],
        "Objective": [{"metric": "votes", "weight": 1}],
    })
    sol = solve_round(rnd)
    assert sol.mip
    assert sol.optimal_objective == pytest.approx(best, abs=1e-6)

    got = sol.allocation.groupby("program_id")["amount"].sum()
    cost_of = {f"p{pid}": int(c) for pid, c in zip(projects["project_id"], projects["cost"],
                                                    strict=True)}
    votes_of = {f"p{pid}": int(v) for pid, v in zip(projects["project_id"], projects["votes"],
                                                    strict=True)}
    # every funded project gets exactly its cost, the set fits the budget, and is worth `best`
    assert {p: int(a) for p, a in got.items()} == {p: cost_of[p] for p in got.index}
    assert got.sum() <= BUDGET
    assert sum(votes_of[p] for p in got.index) == best
    assert sol.objective == pytest.approx(best, abs=1e-6)
