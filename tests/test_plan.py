"""The solve plan: chosen once from the round's size and settings, followed by every stage,
kept in the decision record (plan.json), said on the Audit sheet, and replayed by verify."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

import allocator.stages.model
from allocator.engine import solve_round
from allocator.plan import THRESHOLDS, SolvePlan, choose_plan, plan_lines, stage_options
from allocator.record import sha256_file, verify_record, write_record
from allocator.report import _audit
from allocator.solve import ENGINE_THREADS
from allocator.stages.tiebreak import TIEBREAK_OPTIONS
from allocator.validate import load_round
from tests.rounds import write


def plan_for(columns: int, integer_columns: int = 0, **kw) -> SolvePlan:
    return choose_plan(columns, integer_columns, time_limit_s=kw.pop("time_limit_s", 60.0), **kw)


def test_a_small_round_is_solved_by_the_solvers_default_and_a_tiebreak():
    plan = plan_for(1_000, 20)
    assert plan.milp and not plan.relaxation_first
    assert (plan.outcome_method, plan.lp_method, plan.crossover, plan.presolve) == \
        ("choose", "choose", None, True)
    assert plan.uniqueness == "tiebreak"
    assert plan.options(lp=True) == {"solver": "choose"}


def test_above_the_interior_point_size_lp_stages_use_it_with_crossover():
    t = THRESHOLDS.ipm_columns
    assert plan_for(t).lp_method == "choose"
    above = plan_for(t + 1)
    assert (above.lp_method, above.crossover, above.uniqueness) == ("ipm", True, "tiebreak")
    assert above.options(lp=True) == {"solver": "ipm", "run_crossover": "on"}
    milp = plan_for(t + 1, 5)
    assert (milp.outcome_method, milp.lp_method) == ("choose", "ipm")  # the MILP keeps B&B


def test_above_the_crossover_size_the_interior_centre_makes_the_allocation_unique():
    t = THRESHOLDS.crossover_columns
    assert plan_for(t).uniqueness == "tiebreak"
    above = plan_for(t + 1)
    assert (above.crossover, above.uniqueness) == (False, "interior_centre")
    # equity stages leave the optimal face on purpose: a tie-break LP always follows them
    assert plan_for(t + 1, equity=True).uniqueness == "tiebreak"


def test_above_the_relaxation_size_a_milp_solves_its_relaxation_first():
    t = THRESHOLDS.relaxation_columns
    assert not plan_for(t, 10).relaxation_first
    above = plan_for(t + 1, 10)
    assert above.relaxation_first and not above.milp and above.outcome_method == "ipm"
    assert not plan_for(t + 1, 0).relaxation_first  # nothing to relax


def test_prices_start_from_the_milp_optimum_only_where_it_is_the_prices_lps_optimum():
    t = THRESHOLDS.relaxation_columns
    milp = plan_for(THRESHOLDS.prices_from_optimum_columns, 10)
    assert milp.prices_from == "outcome_optimum" and milp.tiebreak_from == "cold"
    assert milp.options(True, milp.prices_extra()) == {"solver": "simplex", "simplex_strategy": 4}
    # A rounded relaxation's point is not the fixed LP's optimum: that LP is solved as planned.
    relaxed = plan_for(t + 1, 10)
    assert relaxed.prices_from == "cold" and relaxed.prices_extra() is None
    assert plan_for(t + 1, 0).prices_from == "outcome_stage"  # an LP round is its own prices


def test_partial_sums_only_where_the_outcome_is_an_lp_solved_by_interior_point():
    t = THRESHOLDS.ipm_columns
    assert not plan_for(t, 0).partial_sums and plan_for(t + 1, 0).partial_sums  # LP rounds
    relax = THRESHOLDS.relaxation_columns
    assert not plan_for(relax, 10).partial_sums  # branch and bound, and the stages after it
    assert plan_for(relax + 1, 10).partial_sums  # the relaxation is an interior point LP


def test_above_the_stoppable_size_lp_stages_run_without_presolve():
    t = THRESHOLDS.stoppable_columns
    assert plan_for(t).presolve
    above = plan_for(t + 1)
    assert not above.presolve
    assert above.options(lp=True)["presolve"] == "off"


def test_later_stages_get_at_least_the_follow_up_time():
    assert plan_for(10, time_limit_s=5).follow_up_time_limit_s == THRESHOLDS.follow_up_min_seconds
    assert plan_for(10, time_limit_s=5000).follow_up_time_limit_s == 5000


@pytest.mark.parametrize("columns", [10, 60_001, 250_001, 1_000_001])
@pytest.mark.parametrize("integer_columns", [0, 3])
@pytest.mark.parametrize("method", ["choose", "ipm", "simplex"])
def test_the_plans_options_are_what_a_stage_of_that_size_is_solved_with(columns, integer_columns,
                                                                          method):
    plan = plan_for(columns, integer_columns, method=method)
    assert plan.options(True, TIEBREAK_OPTIONS) == stage_options(columns, True, method,
                                                                 TIEBREAK_OPTIONS)
    outcome_lp = integer_columns == 0 or plan.relaxation_first
    assert plan.options(outcome_lp) == stage_options(columns, outcome_lp, method)


def test_plan_round_trips_and_a_wrong_field_is_named():
    plan = plan_for(300_000, 7, equity=True)
    assert SolvePlan.from_dict(json.loads(json.dumps(plan.as_dict()))) == plan
    data = plan.as_dict()
    del data["uniqueness"]
    data["colour"] = "blue"
    with pytest.raises(ValueError, match="missing uniqueness; unknown colour"):
        SolvePlan.from_dict(data)


@pytest.fixture
def solved(tmp_path):
    wb = write(tmp_path / "t1.xlsx")
    return solve_round(load_round(wb).round), wb


def test_a_solved_round_carries_its_plan_and_its_stages_follow_it(solved):
    sol, _ = solved
    program = sol.stages[0].program
    assert sol.plan == choose_plan(program.shape[1], int(program.integer.sum()),
                                   time_limit_s=sol.round.settings.time_limit_s)
    for stage in sol.stages:
        lp = not stage.program.integer.any()
        extra = {"tiebreak": TIEBREAK_OPTIONS, "outcome_lp": sol.plan.prices_extra()}.get(
            stage.name)
        options = dict(stage.solver_log["options"])
        assert options.pop("time_limit") == (sol.plan.time_limit_s if stage.name == "outcome"
                                             else sol.plan.follow_up_time_limit_s)
        options.pop("mip_rel_gap")
        assert options.pop("threads") == ENGINE_THREADS  # the same on every machine
        assert options == sol.plan.options(lp, extra)


def test_the_uniqueness_path_is_the_plans(tmp_path, monkeypatch):
    # The interior centre path, forced by the plan on a small round (solved by simplex, so no
    # solver log says "interior"): no tie-break stage runs, and the user is told why.
    rnd = load_round(write(tmp_path / "t1.xlsx")).round
    chosen = allocator.stages.model.round_plan

    def centre(*args, **kw):
        return dataclasses.replace(chosen(*args, **kw), uniqueness="interior_centre")

    monkeypatch.setattr(allocator.stages.model, "round_plan", centre)
    sol = solve_round(rnd)
    assert "tiebreak" not in [s.name for s in sol.stages]
    assert any("interior-point optimum" in w for w in sol.warnings)


def test_audit_sheet_says_the_plan_in_words(solved):
    sol, _ = solved
    table = _audit(sol, "run", "in", "out", "round", "records", None, None)
    audit = {row[0]: row[1] for block in table.blocks() for row in block}
    assert audit["solve plan: one unique allocation by"].startswith(
        "a tie-break among the best allocations")
    assert "amounts to decide" in audit["solve plan: chosen from"]
    assert audit["solve plan: best outcome by"]


def _record(solved, tmp_path) -> Path:
    sol, wb = solved
    return write_record(sol, tmp_path / "models", wb).folder


def _rewrite_manifest(record: Path, name: str, remove: bool = False) -> None:
    """What a careful forger does: update (or drop) the manifest digest of a file."""
    manifest = json.loads((record / "manifest.json").read_text())
    if remove:
        del manifest["files"][name]
    else:
        manifest["files"][name] = sha256_file(record / name)
    (record / "manifest.json").write_text(json.dumps(manifest))


def test_record_holds_the_plan_and_verifies(solved, tmp_path):
    record = _record(solved, tmp_path)
    manifest = json.loads((record / "manifest.json").read_text())
    assert "plan.json" in manifest["files"]
    assert json.loads((record / "plan.json").read_text()) == solved[0].plan.as_dict()
    result = verify_record(record)
    assert result.verified, result.problems


def test_an_edited_plan_is_named_by_verify(solved, tmp_path):
    record = _record(solved, tmp_path)
    path = record / "plan.json"
    plan = json.loads(path.read_text())
    plan["uniqueness"] = "interior_centre"
    path.write_text(json.dumps(plan))
    _rewrite_manifest(record, "plan.json")
    result = verify_record(record)
    assert not result.verified
    assert result.problems == ["plan.json uniqueness: recorded 'interior_centre', the engine "
                               "chooses 'tiebreak'"]


def test_a_record_without_a_plan_still_verifies(solved, tmp_path):
    record = _record(solved, tmp_path)
    (record / "plan.json").unlink()
    _rewrite_manifest(record, "plan.json", remove=True)
    result = verify_record(record)
    assert result.verified, result.problems
    assert any(n.startswith("no plan.json") for n in result.notes)


def test_the_tie_break_reaches_its_vertex_from_the_interior_point_only_where_ipm_crosses_over():
    t = THRESHOLDS
    assert plan_for(t.ipm_columns, 10).tiebreak_finish == "solver"  # simplex: a vertex anyway
    between = plan_for(t.ipm_columns + 1, 10)
    assert between.lp_method == "ipm" and between.crossover
    assert between.tiebreak_finish == "crossover_from_interior"
    assert any("crossover, then a few simplex steps" in text for _, text in plan_lines(between))
    # no crossover above its limit: the interior-point centre, no tie-break LP
    assert plan_for(t.crossover_columns + 1, 0).tiebreak_finish == "solver"


def test_above_its_size_the_prices_lp_of_a_milp_is_solved_from_scratch():
    t = THRESHOLDS
    assert plan_for(t.prices_from_optimum_columns, 10).prices_from == "outcome_optimum"
    above = plan_for(t.prices_from_optimum_columns + 1, 10)
    assert above.milp and above.prices_from == "cold" and above.prices_extra() is None
    assert above.options(True) == {"solver": "ipm", "run_crossover": "on"}
    said = dict(plan_lines(above))["solve plan: prices of budgets and rules"]
    assert said.startswith("the on/off decisions held fixed, solved from scratch by")
    assert t.prices_from_optimum_columns < t.relaxation_columns
