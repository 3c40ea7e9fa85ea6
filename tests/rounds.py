"""Small round workbooks for tests, built as Python data (each test states what it needs)."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

from allocator.template import write_round_workbook

BASE: dict[str, Any] = {
    "Round": {"round_id": "T1", "periods": "2026, 2027", "rounding_unit": 1},
    "Regions": [
        {"region_id": "A1", "name": "Alpha", "jurisdiction": "A", "population": 1000, "rural": "yes"},
        {"region_id": "B1", "name": "Beta", "jurisdiction": "B", "population": 3000, "rural": "no"},
    ],
    "Funds": [
        {"fund_id": "JIF", "kind": "joint", "owner": "joint", "cofinancing_cap": 0.8, "carry_over": "yes"},
        {"fund_id": "PUB", "kind": "public", "owner": "A", "eligible": "jurisdiction=A"},
    ],
    "Budgets": [
        {"fund_id": "JIF", "period": 2026, "amount": 100000},
        {"fund_id": "JIF", "period": 2027, "amount": 50000},
        {"fund_id": "PUB", "period": 2026, "amount": 30000},
    ],
    "Contributions": [
        {"fund_id": "JIF", "jurisdiction": "A", "amount": 60},
        {"fund_id": "JIF", "jurisdiction": "B", "amount": 40},
    ],
    "Programs": [
        {"program_id": "P1", "name": "Welding", "sector": "industry", "stage": "established",
         "regions": "A1", "cost_per_trainee": 3000, "max_trainees": 20, "targets": "rural",
         "employment_rate": 0.7, "retention_rate": 0.6, "learning_gain": 0.3, "wage_gain": 0.1},
        {"program_id": "P2", "name": "Coding", "sector": "digital", "stage": "established",
         "regions": "A1, B1", "cost_per_trainee": 5000, "max_trainees": 30, "min_trainees": 5,
         "employment_rate": 0.8, "retention_rate": 0.7, "learning_gain": 0.5, "wage_gain": 0.2},
        {"program_id": "P3", "name": "Care", "sector": "health", "stage": "established",
         "regions": "B1", "cost_per_trainee": 2000, "max_trainees": 25,
         "employment_rate": 0.5, "retention_rate": 0.5, "learning_gain": 0.2, "wage_gain": 0.05},
    ],
    "Objective": [{"metric": "employment_rate", "weight": 1}, {"metric": "wage_gain", "weight": 2}],
    "Rules": [
        {"rule_id": "R-RUR", "measure": "share", "select": "target=rural", "op": ">=", "value": 0.2},
        {"rule_id": "R-JR", "measure": "contribution_share", "select": "fund=JIF", "op": ">=",
         "value": 0.9},
        {"rule_id": "R-PC", "measure": "per_capita", "each": "region", "op": ">=", "value": 5},
    ],
}


def sheets(**changes: Any) -> dict[str, Any]:
    """A deep copy of BASE with whole sheets replaced (`Programs=[...]`, `Round={...}`)."""
    out = copy.deepcopy(BASE)
    for key, value in changes.items():
        if value is None:
            out.pop(key, None)
        else:
            out[key] = value
    return out


def write(path: Path, data: dict[str, Any] | None = None) -> Path:
    """Write a round workbook (BASE by default) and return its path."""
    return write_round_workbook(path, data if data is not None else sheets())


# A round whose allocation is forced, for settlement tests (tests/test_settle.py explains it):
# P1/JIF/2026 = 10,001, P3/JIF/2027 = 5,000, P2/PUB/2026 = 10,000 (40 trainees).
SETTLE_ROUND: dict[str, Any] = {
    "Round": {"round_id": "S1", "periods": "2026, 2027", "rounding_unit": 1},
    "Regions": [
        {"region_id": "A1", "name": "Alpha", "jurisdiction": "A", "population": 1000},
        {"region_id": "B1", "name": "Beta", "jurisdiction": "B", "population": 3000},
    ],
    "Funds": [
        {"fund_id": "JIF", "kind": "joint", "owner": "joint", "eligible": "program=P1|P3",
         "carry_over": "yes"},
        {"fund_id": "PUB", "kind": "public", "owner": "B", "eligible": "program=P2",
         "carry_over": "no"},
    ],
    "Budgets": [
        {"fund_id": "JIF", "period": 2026, "amount": 10001},
        {"fund_id": "JIF", "period": 2027, "amount": 5000},
        {"fund_id": "PUB", "period": 2026, "amount": 10000},
    ],
    "Programs": [
        # P1 only in 2026 and P3 only in 2027, which can take no more than its 5,000: JIF's
        # 2026 money cannot move on, so P1 gets all 10,001 of it.
        {"program_id": "P1", "name": "Welding", "stage": "pilot", "regions": "A1",
         "cost_per_trainee": 100, "max_trainees": 200, "end_period": 2026,
         "employment_rate": 0.7, "wage_gain": 0.1},
        {"program_id": "P2", "name": "Coding", "regions": "B1", "cost_per_trainee": 250,
         "max_trainees": 100, "employment_rate": 0.6, "wage_gain": 0.2},
        {"program_id": "P3", "name": "Care", "regions": "A1", "cost_per_trainee": 100,
         "max_trainees": 50, "start_period": 2027, "employment_rate": 0.5, "wage_gain": 0.05},
    ],
    "Tranches": [
        {"fund_id": "JIF", "tranche": "advance", "share": 0.4, "due": 0,
         "condition": "contract signed"},
        {"fund_id": "JIF", "tranche": "interim", "share": 0.4, "due": 0,
         "condition": "curriculum approved"},
        {"fund_id": "JIF", "tranche": "final", "share": 0.2, "due": 1, "basis": "results",
         "floor": 0.5},
        {"fund_id": "PUB", "tranche": "advance", "share": 0.5, "due": 0},
        {"fund_id": "PUB", "tranche": "final", "share": 0.5, "due": 1, "basis": "results",
         "floor": 0.8},
    ],
    "Objective": [{"metric": "employment_rate", "weight": 1}],
}

SETTLE_RESULTS: dict[str, Any] = {
    "Results": [
        # P1 2026: min(0.6/0.8, 1) = 0.75 and min(0.12/0.1, 1) = 1 -> score 0.875
        {"program_id": "P1", "period": 2026, "metric": "employment_rate", "target": 0.8,
         "achieved": 0.6},
        {"program_id": "P1", "period": 2026, "metric": "wage_gain", "target": 0.1,
         "achieved": 0.12},
        # P2 2026: score 0.9 (>= floor 0.8); 31 of the 40 funded trainees completed
        {"program_id": "P2", "period": 2026, "metric": "employment_rate", "target": 0.5,
         "achieved": 0.45, "trainees": 31},
        # P3 2027: score 0.375, below the floor 0.5
        {"program_id": "P3", "period": 2027, "metric": "employment_rate", "target": 0.8,
         "achieved": 0.3},
    ],
    "Milestones": [
        {"program_id": "P1", "period": 2026, "tranche": "interim", "met": "no"},
        {"program_id": "P1", "period": 2026, "tranche": "advance", "met": "yes"},
    ],
}
