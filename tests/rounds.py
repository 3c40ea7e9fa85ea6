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
