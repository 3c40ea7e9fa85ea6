"""Variants: overrides parsed and checked against the round, applied like an edited workbook, and
`compare` matching separate runs of each variant cell by cell."""

from __future__ import annotations

import copy
import zipfile
from decimal import Decimal
from pathlib import Path
from typing import Any

import openpyxl
import pandas as pd
import pytest

from allocator.compare import compare
from allocator.engine import solve_round
from allocator.errors import InputError
from allocator.record import verify_record
from allocator.round import EquityObjective
from allocator.validate import load_round
from allocator.variants import Change, OverrideError, load_variants, parse_change
from tests import rounds

VARIANTS = [
    {"variant": "more JIF", "overrides": "budget JIF 2027 = +10%; budget PUB 2027 = 20000; "
                                          "rule R-RUR value = 0.35; weight employment_rate = 0.5"},
    {"variant": "cheap", "overrides": "program * cost_per_trainee = -10%; program P3 max_trainees = 40"},
    {"variant": "coarse", "overrides": "rounding_unit = 100; outcome_tolerance = 0.05"},
    {"variant": "starved", "overrides": "budget PUB * = 0; budget JIF * = 1000"},
]


def edited(**edits: Any) -> dict[str, Any]:
    """BASE with its sheets edited by hand: the independent way to build each variant."""
    data = copy.deepcopy(rounds.BASE)
    for sheet, fn in edits.items():
        fn(data[sheet])
    return data


def _set(rows: list[dict], key: str, ident: str, field: str, value: Any) -> None:
    for row in rows:
        if row[key] == ident:
            row[field] = value
            return
    raise KeyError(ident)


def by_hand() -> dict[str, dict[str, Any]]:
    """Each variant of VARIANTS written directly into the workbook's sheets."""
    def more_budgets(rows):
        _set(rows, "period", 2027, "amount", 55000)  # JIF 2027 is the only 2027 row
        rows.append({"fund_id": "PUB", "period": 2027, "amount": 20000})

    def cheap(rows):
        for row in rows:
            row["cost_per_trainee"] = row["cost_per_trainee"] * 9 // 10
        _set(rows, "program_id", "P3", "max_trainees", 40)

    def starved(rows):
        rows[:] = [{"fund_id": f, "period": t, "amount": a} for f, t, a in
                   [("JIF", 2026, 1000), ("JIF", 2027, 1000), ("PUB", 2026, 0), ("PUB", 2027, 0)]]

    return {
        "base": edited(),
        "more JIF": edited(Budgets=more_budgets,
                           Rules=lambda r: _set(r, "rule_id", "R-RUR", "value", 0.35),
                           Objective=lambda r: _set(r, "metric", "employment_rate", "weight", 0.5)),
        "cheap": edited(Programs=cheap),
        "coarse": edited(Round=lambda r: r.update(rounding_unit=100, outcome_tolerance=0.05)),
        "starved": edited(Budgets=starved),
    }


@pytest.fixture
def variants_workbook(tmp_path: Path) -> Path:
    return rounds.write(tmp_path / "round.xlsx", rounds.sheets(Variants=VARIANTS))


# --- parsing and checking ---------------------------------------------------------------------------
@pytest.mark.parametrize(("text", "current", "expected"), [
    ("40", "7", "40"), ("+10%", "50000", "55000"), ("-10%", "3000", "2700"), ("+500", "100", "600"),
    ("-500", "1000", "500"), ("*1.5", "10", "15"), ("0.35", "0.2", "0.35"),
])
def test_change_values(text: str, current: str, expected: str) -> None:
    assert parse_change(text).apply(Decimal(current)) == Decimal(expected)


@pytest.mark.parametrize("text", ["10%", "abc", "", "+", "*", "-x%"])
def test_change_rejects(text: str) -> None:
    with pytest.raises(OverrideError):
        parse_change(text)


def test_change_round_trips_as_text() -> None:
    assert str(Change("pct", Decimal(10))) == "+10%"


def test_variants_equal_hand_edited_workbooks(variants_workbook: Path, tmp_path: Path) -> None:
    """Applying a variant gives the very round a hand-edited workbook gives (same digest)."""
    base = load_round(variants_workbook).round
    hand = by_hand()
    applied = load_variants(variants_workbook, base)
    assert [v.name for v, _ in applied] == [v["variant"] for v in VARIANTS]
    for variant, rnd in applied:
        expected = load_round(rounds.write(tmp_path / f"{variant.name}.xlsx", hand[variant.name])).round
        assert rnd.canonical_json() == expected.canonical_json(), variant.name
        # a fresh object: its lookups answer for the variant, not for the base it came from
        for b in expected.budgets:
            assert rnd.budget(b.fund_id, b.period) == b.amount


@pytest.mark.parametrize(("overrides", "message"), [
    ("budget XYZ 2027 = +10%", "unknown fund 'XYZ'"),
    ("budget JIF 2031 = 5", "unknown period '2031'"),
    ("rule R-NONE value = 0.3", "unknown rule 'R-NONE'"),
    ("weight happiness = 1", "unknown metric 'happiness'"),
    ("program P9 max_trainees = 3", "unknown program 'P9'"),
    ("program P1 colour = 3", "not 'colour'"),
    ("budget JIF 2026 = -200000", "below 0"),
    ("program P2 min_trainees = 31", "would exceed max_trainees"),
    ("program P1 employment_rate = 1.5", "a rate must be between 0 and 1"),
    ("program P1 cost_per_trainee = 0", "greater than 0"),
    ("rounding_unit = 0", "rounding_unit must be greater than 0"),
    ("outcome_tolerance = 2", "outcome_tolerance must be between 0 and 1"),
    ("equity_objective = fairest", "fairest"),
    ("periods = 2026", "periods cannot be changed"),
    ("round_id = X", "round_id cannot be changed"),
    ("colour = blue", "unknown Round setting 'colour'"),
    ("budget JIF = 5", "expected 'budget <fund> <period> = <value>'"),
    ("nothing here", "expected '<what> = <value>'"),
    ("rule R-RUR value = 10%", "write +10% or -10%"),
    ("rule R-RUR value = -0.5", "a share must be at least 0"),
])
def test_bad_override_names_its_cell(tmp_path: Path, overrides: str, message: str) -> None:
    rows = [{"variant": "fine", "overrides": "budget JIF 2026 = 1"},
            {"variant": "broken", "overrides": f"budget JIF 2026 = +1%; {overrides}"}]
    path = rounds.write(tmp_path / "bad.xlsx", rounds.sheets(Variants=rows))
    with pytest.raises(InputError) as info:
        load_variants(path, load_round(path).round)
    issues = info.value.issues
    assert len(issues) == 1, info.value.render()
    assert str(issues[0].where) == "Variants!B3"
    assert message in issues[0].message
    assert "broken" in issues[0].message


def test_sheet_problems(tmp_path: Path) -> None:
    rows = [{"variant": "a", "overrides": "budget JIF 2026 = 1"}, {"variant": "A", "overrides": ""},
            {"variant": "Base", "overrides": ""}, {"variant": None, "overrides": "mip_gap = 0.01"}]
    path = rounds.write(tmp_path / "names.xlsx", rounds.sheets(Variants=rows))
    with pytest.raises(InputError) as info:
        load_variants(path, load_round(path).round)
    where = {str(i.where): i.message for i in info.value.issues}
    assert set(where) == {"Variants!A3", "Variants!A4", "Variants!A5"}
    assert "named twice" in where["Variants!A3"]
    assert "the round itself" in where["Variants!A4"]
    assert "blank" in where["Variants!A5"]


def test_no_variants_sheet(tmp_path: Path) -> None:
    path = rounds.write(tmp_path / "plain.xlsx")
    assert load_variants(path, load_round(path).round) == []


def test_overrides_apply_in_order(tmp_path: Path) -> None:
    path = rounds.write(tmp_path / "r.xlsx")
    base = load_round(path).round
    rows = [{"variant": "v", "overrides": "budget JIF 2026 = 1000; budget JIF 2026 = +10%; "
                                          "budget JIF 2026 = *2; weight learning_gain = 3; "
                                          "equity_objective = maxmin_contribution; currency = usd"}]
    path = rounds.write(tmp_path / "v.xlsx", rounds.sheets(Variants=rows))
    ((_, rnd),) = load_variants(path, base)
    assert rnd.budget("JIF", "2026") == Decimal(2200)
    assert {o.metric: o.weight for o in rnd.objective} == {"employment_rate": 1, "learning_gain": 3,
                                                             "wage_gain": 2}
    assert rnd.settings.equity_objective is EquityObjective.maxmin_contribution
    assert rnd.settings.currency == "USD"
    assert base.budget("JIF", "2026") == Decimal(100000)  # the base round is untouched


# --- compare: the workbook against separate runs ----------------------------------------------------
def _sheet(path: Path, name: str) -> pd.DataFrame:
    """A comparison sheet's data rows; its total row (if any) must be the sum of the rows."""
    ws = openpyxl.load_workbook(path, read_only=True)[name]
    rows = list(ws.iter_rows(values_only=True))
    # the Summary's headers are in words ("outcome value"): the table's names have "_"
    heads = [str(c).replace(" ", "_") for c in rows[0]] if name == "Summary" else rows[0]
    df = pd.DataFrame(rows[1:], columns=heads)
    if len(df) and df.iloc[-1, 0] == "Total":
        data, total = df.iloc[:-1], df.iloc[-1]
        for c in df.columns[1:]:
            if total[c] is not None and not pd.isna(total[c]):
                assert total[c] == pytest.approx(pd.to_numeric(data[c]).sum(), abs=1e-6), (name, c)
        return data
    return df


def _independent_totals(rnd, sol) -> dict[str, dict[str, float]]:
    """Money per jurisdiction, region, fund, target, period and program from the allocation."""
    a = sol.allocation
    jur = {r.region_id: r.jurisdiction for r in rnd.regions}
    out: dict[str, dict[str, float]] = {k: {} for k in ("Jurisdictions", "Regions", "Funds",
                                                        "Targets", "Periods", "Programs")}
    tags = {p.program_id: p.targets or ("(no target)",) for p in rnd.programs}
    for row in a.itertuples(index=False):
        for sheet, key in (("Jurisdictions", jur[row.region_id]), ("Regions", row.region_id),
                           ("Funds", row.fund_id), ("Periods", row.period), ("Programs", row.program_id)):
            out[sheet][key] = out[sheet].get(key, 0.0) + row.amount
        for t in tags[row.program_id]:
            out["Targets"][t] = out["Targets"].get(t, 0.0) + row.amount
    return out


@pytest.mark.slow  # a process pool of solves
def test_compare_matches_separate_runs(variants_workbook: Path, tmp_path: Path) -> None:
    report = tmp_path / "out" / "cmp.xlsx"
    records = tmp_path / "models"
    result = compare(variants_workbook, report=report, records=records, workers=2)
    assert report.is_file()
    hand = by_hand()
    names = ["base"] + [v["variant"] for v in VARIANTS]
    summary = _sheet(report, "Summary").set_index("variant")
    assert list(summary.index) == names
    solved: dict[str, Any] = {}
    for name in names:
        rnd = load_round(rounds.write(tmp_path / f"sep_{name}.xlsx", hand[name])).round
        try:
            solved[name] = (rnd, solve_round(rnd))
        except Exception as exc:  # the separate run fails: the comparison must say the same
            solved[name] = (rnd, exc)
    assert isinstance(solved["starved"][1], Exception)  # per-capita floors need 20,000
    assert summary.loc["starved", "status"] == "infeasible"
    assert "R-PC" in summary.loc["starved", "message"]
    base_value = solved["base"][1].objective
    for name in names:
        rnd, sol = solved[name]
        if isinstance(sol, Exception):
            for sheet in ("Jurisdictions", "Funds", "Programs"):
                assert _sheet(report, sheet)[name].isna().all()
            continue
        assert summary.loc[name, "status"] == "optimal"
        assert summary.loc[name, "outcome_value"] == pytest.approx(sol.objective, abs=1e-9)
        assert summary.loc[name, "change_from_base"] == pytest.approx(sol.objective - base_value, abs=1e-9)
        assert summary.loc[name, "allocated"] == pytest.approx(sol.allocation["amount"].sum(), abs=1e-9)
        assert summary.loc[name, "programs_funded"] == sol.allocation["program_id"].nunique()
        expected = _independent_totals(rnd, sol)
        keys = {"Jurisdictions": "jurisdiction", "Regions": "region_id", "Funds": "fund_id",
                "Targets": "target", "Periods": "period", "Programs": "program_id"}
        for sheet, key in keys.items():
            table = _sheet(report, sheet).set_index(key)
            for ident, value in table[name].items():
                assert value == pytest.approx(expected[sheet].get(str(ident), 0.0), abs=1e-9), \
                    (name, sheet, ident)
    # the changes: variant minus base, biggest first
    programs = _sheet(report, "Programs")
    base_amounts = _independent_totals(*solved["base"])["Programs"]
    cheap_amounts = _independent_totals(*solved["cheap"])["Programs"]
    for row in programs.to_dict("records"):
        pid = row["program_id"]
        assert row["change cheap"] == pytest.approx(cheap_amounts.get(pid, 0.0) - base_amounts.get(pid, 0.0))
    largest = programs["largest_change"].abs().tolist()
    assert largest == sorted(largest, reverse=True)
    # native bar charts by jurisdiction and by fund
    with zipfile.ZipFile(report) as z:
        charts = [n for n in z.namelist() if n.startswith("xl/charts/chart")]
        assert len(charts) == 2
        assert all(b"<barChart>" in z.read(n) for n in charts)
    # a record per solved run: the base's holds the workbook, a variant's verifies on its own
    by_name = {r.name: r for r in result.runs}
    assert by_name["starved"].record is None
    assert (by_name["base"].record / "workbook.xlsx").is_file()
    assert not (by_name["cheap"].record / "workbook.xlsx").exists()
    assert summary.loc["cheap", "record"] == str(by_name["cheap"].record)
    assert verify_record(by_name["cheap"].record).verified


@pytest.mark.slow  # a process pool of solves
def test_compare_in_process_equals_pool(variants_workbook: Path, tmp_path: Path) -> None:
    one = compare(variants_workbook, report=tmp_path / "a.xlsx", workers=1)
    two = compare(variants_workbook, report=tmp_path / "b.xlsx", workers=2)
    for sheet in one.tables:
        a, b = one.tables[sheet], two.tables[sheet]
        if sheet == "Summary":
            a, b = a.drop(columns=["record"]), b.drop(columns=["record"])
        pd.testing.assert_frame_equal(a, b)


def test_equity_variant_solves_or_says_why(tmp_path: Path) -> None:
    """Until the equity stage lands the engine may refuse it; either way it is not silent."""
    rows = [{"variant": "fair", "overrides": "equity_objective = maxmin_per_capita; "
                                             "outcome_tolerance = 0.1"}]
    path = rounds.write(tmp_path / "eq.xlsx", rounds.sheets(Variants=rows))
    result = compare(path, report=tmp_path / "eq.compare.xlsx", workers=1)
    fair = result.runs[1]
    assert fair.round.settings.equity_objective is EquityObjective.maxmin_per_capita
    if fair.solved:
        summary = result.tables["Summary"].set_index("variant")
        given_up = summary.loc["fair", "outcome_given_up_for_equity"]
        best = summary.loc["fair", "optimal_outcome_value"]
        assert 0 <= given_up <= 0.1 * best + 1e-6  # within outcome_tolerance of its best
    else:
        assert "equity" in fair.message.lower()


# Variants the warm chain takes (budgets, weights, outcome values), one it must not (a rule),
# and one whose budgets take a fund out (its model is rebuilt inside the chain; infeasible).
WARM_VARIANTS = [
    {"variant": "more JIF", "overrides": "budget JIF 2027 = +10%"},
    {"variant": "wages", "overrides": "weight wage_gain = 0.5; weight learning_gain = 1"},
    {"variant": "P2 better", "overrides": "program P2 employment_rate = 0.95; budget JIF 2026 = -20%"},
    {"variant": "rural", "overrides": "rule R-RUR value = 0.35"},
    {"variant": "starved", "overrides": "budget PUB * = 0; budget JIF * = 1000"},
    {"variant": "less JIF", "overrides": "budget JIF * = -30%"},
]


@pytest.mark.parametrize("aon", [0, 5])  # an LP round, and a MILP (every program all-or-nothing)
def test_warm_compare_equals_cold(tmp_path: Path, aon: int) -> None:
    """Variants solved in a warm chain from the base's model give the cold comparison, cell by
    cell, and their records verify; the cold one is checked against hand-edited workbooks in
    test_compare_matches_separate_runs."""
    from allocator.compare import VariantRun, variant_chains
    from allocator.warm import point_free_part

    programs = [{**p, "min_trainees": aon} for p in rounds.BASE["Programs"]]
    path = rounds.write(tmp_path / "round.xlsx", rounds.sheets(Programs=programs,
                                                                Variants=WARM_VARIANTS))
    base = load_round(path).round
    variants = load_variants(path, base)
    assert [point_free_part(rnd) == point_free_part(base) for _, rnd in variants] == \
        [True, True, True, False, True, True]
    runs = [VariantRun("base", "", base)] + [VariantRun(v.name, "", rnd) for v, rnd in variants]
    assert variant_chains(runs, 2) == [[0, 1, 2], [3, 5, 6], [4]]
    warm = compare(path, report=tmp_path / "warm.xlsx", records=tmp_path / "models", workers=1)
    cold = compare(path, report=tmp_path / "cold.xlsx", workers=1, warm=False)
    for sheet in cold.tables:
        a, b = warm.tables[sheet], cold.tables[sheet]
        if sheet == "Summary":
            a, b = a.drop(columns=["record"]), b.drop(columns=["record"])
        pd.testing.assert_frame_equal(a, b)
    by_name = {r.name: r for r in warm.runs}
    assert by_name["starved"].status == "infeasible"
    for name in ("more JIF", "wages", "less JIF"):  # started from the variant before
        starts = {s.solver_log.get("start") for s in by_name[name].solution.stages}
        assert "previous variant" in starts, (name, starts)
        check = verify_record(by_name[name].record)
        assert check.verified, check.problems
    for name in ("base", "P2 better", "rural"):  # the first of a chain, or alone: from scratch
        assert not any(s.solver_log.get("start") == "previous variant"
                       for s in by_name[name].solution.stages), name
