"""Issue 20's first hour, model side: a round where no Belgian program can ever be funded is
named by `check` and `run`, its unspent budget is flagged with its cause, and an external match
makes the same programs fundable. Expected numbers are worked out by hand in each test."""

from __future__ import annotations

import copy

import openpyxl
from typer.testing import CliRunner

from allocator.cli import app
from allocator.template import write_round_workbook

runner = CliRunner()

# Three regions in two countries, two funds, six programs. BE-FUND may pay at most 60% of a
# program's cost and is the only fund that reaches Belgium.
FIRST_HOUR = {
    "Round": {"round_id": "FH", "periods": "2026", "rounding_unit": 1},
    "Regions": [
        {"region_id": "BE-BRU", "jurisdiction": "BE", "population": 1_200_000},
        {"region_id": "FR-ALS", "jurisdiction": "FR", "population": 1_900_000},
        {"region_id": "FR-LOR", "jurisdiction": "FR", "population": 2_300_000},
    ],
    "Funds": [
        {"fund_id": "BE-FUND", "kind": "public", "owner": "BE", "cofinancing_cap": 0.6,
         "eligible": "jurisdiction=BE"},
        {"fund_id": "FR-JIF", "kind": "joint", "owner": "joint", "eligible": "jurisdiction=FR"},
    ],
    "Budgets": [
        {"fund_id": "BE-FUND", "period": "2026", "amount": 1_600_000},
        {"fund_id": "FR-JIF", "period": "2026", "amount": 1_500_000},
    ],
    "Programs": [
        {"program_id": "BE-1", "regions": "BE-BRU", "cost_per_trainee": 4000,
         "max_trainees": 200, "employment_rate": 0.8},
        {"program_id": "BE-2", "regions": "BE-BRU", "cost_per_trainee": 5000,
         "max_trainees": 100, "employment_rate": 0.7},
        {"program_id": "FR-1", "regions": "FR-ALS", "cost_per_trainee": 3000,
         "max_trainees": 200, "employment_rate": 0.6},
        {"program_id": "FR-2", "regions": "FR-ALS", "cost_per_trainee": 4000,
         "max_trainees": 100, "employment_rate": 0.7},
        {"program_id": "FR-3", "regions": "FR-LOR", "cost_per_trainee": 2500,
         "max_trainees": 100, "employment_rate": 0.5},
        {"program_id": "FR-4", "regions": "FR-LOR", "cost_per_trainee": 6000,
         "max_trainees": 100, "employment_rate": 0.6},
    ],
    "Objective": [{"metric": "employment_rate", "weight": 1}],
}


def _write(tmp_path, data=None, name="fh.xlsx"):
    return write_round_workbook(tmp_path / name, data or FIRST_HOUR)


def test_check_names_the_never_fundable_programs_and_exits_0(tmp_path):
    result = runner.invoke(app, ["check", str(_write(tmp_path))])
    assert result.exit_code == 0, result.output
    warnings = [line for line in result.stdout.splitlines() if line.startswith("warning:")]
    assert warnings == [
        "warning: program BE-1 can never be funded in 2026: the co-financing caps of its eligible "
        "funds add up to 60% (BE-FUND 60%), less than the 100% of its cost the round must pay "
        "(external_match 0%); it needs an external_match of at least 40%, or caps adding up to "
        "100%",
        "warning: program BE-2 can never be funded in 2026: the co-financing caps of its eligible "
        "funds add up to 60% (BE-FUND 60%), less than the 100% of its cost the round must pay "
        "(external_match 0%); it needs an external_match of at least 40%, or caps adding up to "
        "100%",
    ]


def test_run_names_them_flags_the_unspent_budget_and_gives_true_reasons(tmp_path):
    """FR-JIF's EUR 1,500,000 is all spent (FR capacity is 3.6 million); BE-FUND's
    EUR 1,600,000 can reach nothing: 1.6 / 3.1 = 52% of the budget unspent."""
    report, records = tmp_path / "r.xlsx", tmp_path / "models"
    result = runner.invoke(app, ["run", str(_write(tmp_path)), "--report", str(report),
                                 "--records", str(records)])
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert "allocated EUR 1,500,000 of EUR 3,100,000 budget" in out
    assert "warning: program BE-1 can never be funded in 2026" in out
    assert "warning: program BE-2 can never be funded in 2026" in out
    assert ("warning: EUR 1,600,000 (52%) unspent: fund BE-FUND's budget can reach no fundable "
            "program (every eligible program is blocked by co-financing caps)") in out
    wb = openpyxl.load_workbook(report)
    summary = {r[0]: r[1] for r in wb["Summary"].iter_rows(min_row=2, values_only=True)}
    assert summary["unspent budget"].startswith("EUR 1,600,000 (52%) unspent: fund BE-FUND")
    rows = list(wb["Programs"].iter_rows(values_only=True))
    programs = {r[0]: dict(zip(rows[0], r, strict=True)) for r in rows[1:]}
    for pid in ("BE-1", "BE-2"):
        assert programs[pid]["status"] == "blocked by caps"
        assert "can never be funded" in programs[pid]["reason"]
        assert "BE-FUND 60%" in programs[pid]["reason"]
        assert "ties with the marginal money" not in programs[pid]["reason"]


def test_with_a_40_percent_match_belgium_is_funded(tmp_path):
    """With external_match 0.4 the round pays 60% of the Belgian cost, all of which BE-FUND may
    pay. BE-1 buys 0.8 per EUR 2,400 of round money (0.000333/EUR), BE-2 0.7 per EUR 3,000
    (0.000233/EUR): BE-1 takes its capacity, 200 x 2,400 = 480,000; BE-2 its capacity,
    100 x 3,000 = 300,000; EUR 820,000 of BE-FUND stays unspent (all Belgian capacity used)."""
    data = copy.deepcopy(FIRST_HOUR)
    for p in data["Programs"][:2]:
        p["external_match"] = 0.4
    report = tmp_path / "r.xlsx"
    result = runner.invoke(app, ["run", str(_write(tmp_path, data)), "--report", str(report),
                                 "--records", str(tmp_path / "models")])
    assert result.exit_code == 0, result.output
    assert "never be funded" not in result.stdout
    assert "allocated EUR 2,280,000 of EUR 3,100,000 budget" in result.stdout
    assert ("warning: EUR 820,000 (26%) unspent: the programs fund BE-FUND can pay are at "
            "capacity (max_trainees: BE-1, BE-2)") in result.stdout
    rows = list(openpyxl.load_workbook(report)["Programs"].iter_rows(values_only=True))
    programs = {r[0]: dict(zip(rows[0], r, strict=True)) for r in rows[1:]}
    be1 = programs["BE-1"]
    assert (be1["amount"], be1["external_match"], be1["external match money"],
            be1["total cost"], be1["trainees"]) == (480000, 0.4, 320000, 800000, 200)
    assert programs["BE-2"]["external match money"] == 200000
    assert programs["FR-1"]["external match money"] == 0
    total = programs["Total"]
    assert total["amount"] == 2_280_000 and total["external match money"] == 520_000
    assert total["total cost"] == 2_800_000
