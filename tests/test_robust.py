"""Robust allocation (DESIGN 1.1 "Uncertainty"): checked against an independent robust LP.

The reference below is written from the contract's formula, not from allocator's model: the
variables are trainees per program, the inner maximum over at most Gamma programs falling short
is dualised by hand (max sum v T - Gamma lam - sum mu, lam + mu_p >= z s_p T_p), and scipy's
linprog solves it.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from scipy.optimize import linprog

from allocator.engine import solve_round
from allocator.errors import InputError
from allocator.record import write_record
from allocator.robust import derived_se, protection, sampled_outcome
from allocator.template import write_round_workbook
from allocator.validate import load_round

# (program, cost, max trainees, employment_rate, employment_rate_se, wage_gain, wage_gain_se)
PROGRAMS = [
    ("P1", 1000, 40, 0.90, 0.30, 0.10, 0.00),
    ("P2", 1000, 40, 0.80, 0.05, 0.05, 0.02),
    ("P3", 1000, 40, 0.70, 0.00, 0.00, 0.00),
    ("P4", 1250, 32, 0.85, 0.20, 0.20, 0.10),
    ("P5", 800, 50, 0.60, 0.10, 0.05, 0.05),
]
WEIGHTS = {"employment_rate": 1.0, "wage_gain": 0.5}
BUDGET = 100_000


def sheets(gamma: float | None = None, level: float | None = None, se: bool = True,
           programs=PROGRAMS, budget: float = BUDGET) -> dict:
    rnd = {"round_id": "ROB", "rounding_unit": 1}
    if gamma is not None:
        rnd["robust_gamma"] = gamma
    if level is not None:
        rnd["robust_level"] = level
    rows = []
    for pid, cost, cap, emp, emp_se, wage, wage_se in programs:
        row = {"program_id": pid, "regions": "R1", "cost_per_trainee": cost, "max_trainees": cap,
               "employment_rate": emp, "wage_gain": wage}
        if se:
            row["employment_rate_se"] = emp_se
            row["wage_gain_se"] = wage_se
        rows.append(row)
    return {
        "Round": rnd,
        "Regions": [{"region_id": "R1", "jurisdiction": "J", "population": 1000}],
        "Funds": [{"fund_id": "F", "kind": "public", "owner": "J"}],
        "Budgets": [{"fund_id": "F", "period": "all", "amount": budget}],
        "Programs": rows,
        "Objective": [{"metric": m, "weight": w} for m, w in WEIGHTS.items()],
    }


def reference_robust(programs, gamma: float, level: float, budget: float
                     ) -> tuple[float, np.ndarray]:
    """max sum v_p T_p - Gamma lam - sum mu_p  s.t.  sum c_p T_p <= B, 0 <= T_p <= cap_p,
    lam + mu_p - z s_p T_p >= 0, lam, mu >= 0 (scipy, HiGHS dual simplex)."""
    n = len(programs)
    v = np.array([WEIGHTS["employment_rate"] * p[3] + WEIGHTS["wage_gain"] * p[5]
                  for p in programs])
    s = np.array([math.hypot(WEIGHTS["employment_rate"] * p[4], WEIGHTS["wage_gain"] * p[6])
                  for p in programs])
    cost = np.array([p[1] for p in programs], float)
    cap = np.array([p[2] for p in programs], float)
    # variables: T (n), lam (1), mu (n)
    c = -np.concatenate([v, [-gamma], -np.ones(n)])
    a_budget = np.concatenate([cost, [0.0], np.zeros(n)])
    a_prot = np.hstack([np.diag(level * s), -np.ones((n, 1)), -np.eye(n)])  # zsT - lam - mu <= 0
    res = linprog(c, A_ub=np.vstack([a_budget, a_prot]), b_ub=np.concatenate([[budget], np.zeros(n)]),
                  bounds=[(0, u) for u in cap] + [(0, None)] * (n + 1), method="highs-ds")
    assert res.status == 0
    return -res.fun, res.x[:n]


def trainees(sol) -> np.ndarray:
    by = sol.allocation.groupby("program_id")["trainees"].sum()
    return np.array([float(by.get(p[0], 0.0)) for p in PROGRAMS])


@pytest.mark.parametrize("gamma", [0.5, 1.0, 1.7, 2.5, 5.0])
def test_robust_allocation_matches_an_independent_robust_lp(make_round, gamma):
    rnd = make_round(sheets(gamma=gamma))
    sol = solve_round(rnd)
    best, t_ref = reference_robust(PROGRAMS, gamma, 1.0, BUDGET)
    # The robust optimum before rounding is the reference's, and the rounded allocation (whole
    # euros) guarantees it to within a euro's worth of value.
    assert sol.optimal_objective == pytest.approx(best, rel=1e-7)
    assert sol.robustness["guaranteed"] == pytest.approx(best, abs=1e-2)
    assert trainees(sol) == pytest.approx(t_ref, abs=2e-3)  # a euro is 1/800 trainee at most
    # The guaranteed value is the expected value less the largest shortfall of at most Gamma
    # programs, evaluated here by brute force over which programs fall short.
    t = trainees(sol)
    s = np.array([math.hypot(p[4], 0.5 * p[6]) for p in PROGRAMS])
    v = np.array([p[3] + 0.5 * p[5] for p in PROGRAMS])
    d = np.sort(s * t)[::-1]
    k = min(math.floor(gamma), len(d))
    worst = d[:k].sum() + ((gamma - k) * d[k] if k < len(d) else 0.0)
    assert sol.robustness["expected"] == pytest.approx(float(v @ t), rel=1e-9)
    assert sol.robustness["guaranteed"] == pytest.approx(float(v @ t) - worst, rel=1e-9)


def test_robust_level_scales_the_shortfall(make_round):
    sol = solve_round(make_round(sheets(gamma=1.5, level=2.0)))
    best, _ = reference_robust(PROGRAMS, 1.5, 2.0, BUDGET)
    assert sol.optimal_objective == pytest.approx(best, rel=1e-7)


def test_price_of_robustness_is_the_nominal_value_given_up(make_round):
    sol = solve_round(make_round(sheets(gamma=2.0)))
    nominal_best, _ = reference_robust(PROGRAMS, 0.0, 1.0, BUDGET)
    r = sol.robustness
    assert r["nominal_optimum"] == pytest.approx(nominal_best, rel=1e-9)
    v = np.array([p[3] + 0.5 * p[5] for p in PROGRAMS])
    _, t_robust = reference_robust(PROGRAMS, 2.0, 1.0, BUDGET)
    assert r["price_of_robustness"] == pytest.approx(nominal_best - float(v @ t_robust), rel=1e-6)
    assert r["price_of_robustness"] > 1.0  # this round's robust allocation does give some up
    # and guarantees more in return (both before rounding), exactly the robust optimum
    robust_best, _ = reference_robust(PROGRAMS, 2.0, 1.0, BUDGET)
    assert r["guaranteed_before_rounding"] == pytest.approx(robust_best, rel=1e-9)
    assert r["guaranteed_before_rounding"] > r["guaranteed_of_nominal"] + 1.0


def test_gamma_zero_is_the_nominal_allocation_and_model(make_round, tmp_path: Path):
    plain = solve_round(make_round(sheets(se=False)))
    zero = solve_round(make_round(sheets(gamma=0.0)))
    spread_no_gamma = solve_round(make_round(sheets()))
    gamma_no_spread = solve_round(make_round(sheets(gamma=2.0, se=False)))
    best, _ = reference_robust(PROGRAMS, 0.0, 1.0, BUDGET)
    assert plain.objective == pytest.approx(best, abs=1e-2)
    for sol in (zero, spread_no_gamma, gamma_no_spread):
        assert sol.robustness is None
        assert sol.allocation[["program_id", "fund_id", "period", "units"]].equals(
            plain.allocation[["program_id", "fund_id", "period", "units"]])
        assert [s.name for s in sol.stages] == [s.name for s in plain.stages]
    mps = []
    for i, sol in enumerate((plain, zero, spread_no_gamma, gamma_no_spread)):
        paths = write_record(sol, tmp_path / f"r{i}", None, run_id="RUN")
        mps.append({f.name: f.read_bytes() for f in sorted(Path(paths.folder).glob("*.mps"))})
    assert mps[0] and mps[0] == mps[1] == mps[2] == mps[3]


def test_a_round_without_spreads_keeps_its_digest(tmp_path: Path):
    a = load_round(write_round_workbook(tmp_path / "a.xlsx", sheets(se=False))).round
    b = load_round(write_round_workbook(tmp_path / "b.xlsx", sheets(gamma=0, level=1, se=False))).round
    assert a.digest() == b.digest()
    assert "robust" not in a.canonical_json() and "outcome_se" not in a.canonical_json()


def test_bad_spread_cells_are_named(tmp_path: Path):
    data = sheets(gamma=1)
    data["Programs"][0]["employment_rate_se"] = -0.1
    data["Programs"][1]["employment_rate_se"] = "wide"
    data["Programs"][2]["learning_gain_se"] = 0.1  # no learning_gain column
    with pytest.raises(InputError) as err:
        load_round(write_round_workbook(tmp_path / "bad.xlsx", data))
    text = str(err.value)
    assert "3 problems" in text
    assert "employment_rate_se: a standard error must be at least 0, got -0.1" in text
    assert "expected a number, got 'wide'" in text
    assert "learning_gain_se: a standard error column names its metric" in text
    data = sheets()
    data["Round"]["robust_gamma"] = -1
    with pytest.raises(InputError, match=r"Round!B\d value: must be at least 0"):
        load_round(write_round_workbook(tmp_path / "bad2.xlsx", data))


def test_protection_is_the_worst_case_over_gamma_programs():
    d = np.array([3.0, 10.0, 1.0, 7.0])
    # by enumeration of u in {0, 1}^n with sum u = floor(Gamma), plus a fraction of another
    assert protection(d, 0) == 0
    assert protection(d, 1) == 10
    assert protection(d, 1.5) == pytest.approx(10 + 0.5 * 7)
    assert protection(d, 2.25) == pytest.approx(17 + 0.25 * 3)
    assert protection(d, 9) == 21


def test_sampled_outcome_is_seeded_and_reproducible(make_round):
    rnd = make_round(sheets(gamma=1))
    t = np.array([0.0, 40.0, 20.0, 0.0, 50.0])
    a, b = sampled_outcome(rnd, t), sampled_outcome(rnd, t)
    assert a == b
    expected = float(np.array([p[3] + 0.5 * p[5] for p in PROGRAMS]) @ t)
    assert a.mean == pytest.approx(expected, rel=0.01)  # no rate here comes near 0 or 1
    # the 5th percentile of a normal total: mean - 1.645 sd, sd from the se's
    sd = math.sqrt(sum((ti * p[4]) ** 2 + (0.5 * ti * p[6]) ** 2 for ti, p in zip(t, PROGRAMS, strict=True)))
    assert a.low == pytest.approx(expected - 1.6449 * sd, rel=0.01)
    other = sampled_outcome(rnd, t, seed=1)
    assert other != a
    # P1's employment rate 0.9 +- 0.3 is clipped at 1: E[min(X, 1)] = mu - E[(X - 1)+]
    mu, sigma = 0.9, 0.3
    a_ = (mu - 1) / sigma
    phi, cdf = math.exp(-a_ * a_ / 2) / math.sqrt(2 * math.pi), 0.5 * (1 + math.erf(a_ / math.sqrt(2)))
    clipped = mu - ((mu - 1) * cdf + sigma * phi)
    only_p1 = sampled_outcome(rnd, np.array([40.0, 0, 0, 0, 0]), samples=20_000)
    assert only_p1.mean == pytest.approx(40 * (clipped + 0.5 * 0.10), rel=0.01)
    # no spread: every sample is the estimate
    plain = make_round(sheets(se=False))
    flat = sampled_outcome(plain, t)
    assert flat.mean == pytest.approx(expected) and flat.low == pytest.approx(expected)


def test_derived_se_narrows_with_measured_trainees():
    # rate 0.6, prior weight 30, 70 completed: sqrt(0.24) / sqrt(100)
    assert derived_se(0.6, 70, 30, rate=True) == pytest.approx(math.sqrt(0.24) / 10)
    assert derived_se(0.6, 10, 30, rate=True) > derived_se(0.6, 70, 30, rate=True)
    assert derived_se(2000.0, 0, 25, rate=False) == pytest.approx(2000 / 5)


def test_report_and_cli_state_guaranteed_expected_and_price(make_round, tmp_path: Path):
    from allocator.api import run
    from allocator.cli import summary_text
    from allocator.report import report_tables

    path = write_round_workbook(tmp_path / "rob.xlsx", sheets(gamma=2.0))
    result = run(path, report=tmp_path / "rob_report.xlsx", records=tmp_path / "models")
    summary = report_tables(result.solution)["Summary"].set_index("item")["value"]
    best, _ = reference_robust(PROGRAMS, 2.0, 1.0, BUDGET)
    nominal_best, _ = reference_robust(PROGRAMS, 0.0, 1.0, BUDGET)
    assert float(summary["robust: guaranteed outcome value, rounded allocation"]) == \
        pytest.approx(best, abs=1e-2)
    assert float(summary["robust: nominal optimum (estimates taken as exact)"]) == \
        pytest.approx(nominal_best, rel=1e-9)
    assert float(summary["price of robustness: expected outcome value given up"]) > 1.0
    key = [k for k in summary.index if k.startswith("sampled outcome value: mean")]
    assert len(key) == 1 and float(summary[key[0]]) > float(summary["sampled outcome value: 5th percentile"])
    text = summary_text(result)
    assert "robust (Gamma 2, z 1): guaranteed" in text and "price of robustness" in text


def test_compare_shows_nominal_beside_robust_with_sampled_outcomes(tmp_path: Path):
    from allocator.compare import compare

    path = write_round_workbook(tmp_path / "rob.xlsx", sheets(gamma=2.0))
    first = compare(path, report=tmp_path / "c1.xlsx", workers=1)
    again = compare(path, report=tmp_path / "c2.xlsx", workers=1)
    summary = first.tables["Summary"].set_index("variant")
    assert list(summary.index[:2]) == ["base", "nominal"]
    robust, nominal = summary.loc["base"], summary.loc["nominal"]
    nominal_best, _ = reference_robust(PROGRAMS, 0.0, 1.0, BUDGET)
    robust_best, _ = reference_robust(PROGRAMS, 2.0, 1.0, BUDGET)
    assert nominal["outcome_value"] == pytest.approx(nominal_best, abs=1e-2)
    assert robust["guaranteed_outcome_value"] == pytest.approx(robust_best, abs=1e-2)
    assert robust["guaranteed_outcome_value"] > nominal["guaranteed_outcome_value"]
    assert nominal["outcome_value"] > robust["outcome_value"]
    for row in (robust, nominal):
        assert row["sampled_p5_outcome"] < row["sampled_mean_outcome"]
    # the nominal allocation leans on the uncertain programs: its 5th percentile is lower
    assert robust["sampled_p5_outcome"] > nominal["sampled_p5_outcome"]
    # seeded: a second run gives the same numbers
    cols = ["sampled_mean_outcome", "sampled_p5_outcome", "guaranteed_outcome_value"]
    assert first.tables["Summary"][cols].equals(again.tables["Summary"][cols])


def test_equity_stage_holds_the_robust_objective(make_round):
    data = sheets(gamma=1.5)
    data["Regions"].append({"region_id": "R2", "jurisdiction": "J", "population": 1000})
    for row in data["Programs"][3:]:
        row["regions"] = "R2"
    data["Round"].update(equity_objective="maxmin_per_capita", outcome_tolerance=0.05)
    sol = solve_round(make_round(data))
    best, _ = reference_robust(PROGRAMS, 1.5, 1.0, BUDGET)
    # the robust optimum is what the equity stage may give up 5% of, not the nominal one
    assert sol.fairness["outcome_best"] == pytest.approx(best, rel=1e-7)
    assert sol.robustness["guaranteed"] >= 0.95 * best - 0.05
    assert sol.fairness["outcome_given_up"] <= 0.05 * best + 1e-6


def test_a_variant_can_set_robust_gamma(tmp_path: Path):
    from allocator.variants import load_variants

    data = sheets()
    data["Variants"] = [{"variant": "cautious", "overrides": "robust_gamma = 2; robust_level = 1.5"},
                        {"variant": "bad", "overrides": "robust_gamma = -1"}]
    path = write_round_workbook(tmp_path / "v.xlsx", data)
    base = load_round(path).round
    with pytest.raises(InputError, match="robust_gamma must be at least 0"):
        load_variants(path, base)
    data["Variants"].pop()
    path = write_round_workbook(tmp_path / "v2.xlsx", data)
    [(_, cautious)] = load_variants(path, base)
    sol = solve_round(cautious)
    best, _ = reference_robust(PROGRAMS, 2.0, 1.5, BUDGET)
    assert sol.optimal_objective == pytest.approx(best, rel=1e-7)


@pytest.mark.parametrize("gamma", [0.0, 0.6, 1.0, 2.5])
def test_robust_on_a_round_with_periods_funds_rules_and_all_or_nothing(make_round, gamma):
    """Two periods, two funds with a co-financing cap and carry-over, share, per-capita and
    contribution rules, an all-or-nothing program: against the independent reference MILP with
    the robust terms (tests/reference.py)."""
    from tests.reference import reference_optimum
    from tests.rounds import sheets as base_sheets

    data = base_sheets()
    data["Round"]["robust_gamma"] = gamma
    data["Round"]["robust_level"] = 1.3
    for row, (emp_se, wage_se) in zip(data["Programs"], [(0.25, 0.0), (0.1, 0.05), (0.02, 0.01)],
                                      strict=True):
        row["employment_rate_se"], row["wage_gain_se"] = emp_se, wage_se
    rnd = make_round(data)
    sol = solve_round(rnd)
    best, _ = reference_optimum(rnd, robust=(gamma, 1.3))
    assert sol.optimal_objective == pytest.approx(best, rel=2e-4)  # the MILP's gap is 1e-4
    if gamma > 0:
        assert sol.robustness["guaranteed"] == pytest.approx(best, rel=2e-4, abs=0.05)
        nominal, _ = reference_optimum(rnd)
        assert sol.robustness["nominal_optimum"] == pytest.approx(nominal, rel=2e-4)
    else:
        assert sol.robustness is None


def test_a_spread_of_an_unweighed_metric_is_kept_with_a_note(tmp_path: Path):
    data = sheets(gamma=1)
    for row in data["Programs"]:
        row["retention_rate"] = 0.5
        row["retention_rate_se"] = 0.2
    loaded = load_round(write_round_workbook(tmp_path / "n.xlsx", data))
    assert loaded.round.programs[0].outcome_se["retention_rate"] == 0.2
    assert "retention_rate_se" not in loaded.round.programs[0].attributes
    notes = [str(n) for n in loaded.notes]
    assert any("retention_rate_se" in n and "does not weigh retention_rate" in n for n in notes)
    # weight 0: s_p as without the column
    p = loaded.round.programs[0]
    assert loaded.round.spread_per_trainee(p) == pytest.approx(math.hypot(0.30, 0.5 * 0.0))


def test_api_with_settings_makes_a_round_robust(make_round):
    from pydantic import ValidationError

    from allocator import api

    rnd = make_round(sheets())
    robust = api.with_settings(rnd, robust_gamma=1.7)
    assert robust.settings.robust_gamma == 1.7 and rnd.settings.robust_gamma == 0
    best, _ = reference_robust(PROGRAMS, 1.7, 1.0, BUDGET)
    assert api.solve(robust).optimal_objective == pytest.approx(best, rel=1e-7)
    with pytest.raises(ValidationError):
        api.with_settings(rnd, robust_level=0)


def test_sampled_outcome_does_not_depend_on_the_draw_block(make_round, monkeypatch):
    import allocator.robust as robust

    rnd = make_round(sheets(gamma=1))
    t = np.array([40.0, 40.0, 20.0, 10.0, 5.0])
    whole = robust.sampled_outcome(rnd, t, samples=500)
    monkeypatch.setattr(robust, "DRAW_BLOCK", 7 * len(PROGRAMS))  # blocks of 7 samples
    assert robust.sampled_outcome(rnd, t, samples=500) == whole
