"""The example round in `inputs/`: it matches its generator, solves, and behaves as documented.

Fund managers learn the tool on `inputs/example_round.xlsx` (`allocator run` must work on it out
of the box), so these tests guard the committed workbook itself, not only the script. The
behaviour checks recompute what `inputs/README.md` promises straight from the allocation table,
without the engine's rule table.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pandas as pd
import pytest
from openpyxl import load_workbook

from allocator.checker import check_allocation
from allocator.engine import Solution, solve_round
from allocator.round import Round
from allocator.template import write_template
from allocator.validate import load_round

INPUTS = Path(__file__).resolve().parents[1] / "inputs"
EXAMPLE = INPUTS / "example_round.xlsx"
TEMPLATE = INPUTS / "template.xlsx"


def _generator() -> ModuleType:
    """Import inputs/make_example.py by path: inputs/ holds data, it is not a package."""
    spec = importlib.util.spec_from_file_location("make_example", INPUTS / "make_example.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def committed() -> Round:
    loaded = load_round(EXAMPLE)
    assert loaded.notes == [], "the example should need no normalisation of its cells"
    return loaded.round


@pytest.fixture(scope="module")
def solution(committed: Round) -> Iterator[Solution]:
    yield solve_round(committed)


@pytest.fixture(scope="module")
def alloc(solution: Solution, committed: Round) -> pd.DataFrame:
    a = solution.allocation.copy()
    a["jurisdiction"] = a["region_id"].map({r.region_id: r.jurisdiction for r in committed.regions})
    return a


def test_committed_workbook_matches_the_generator(tmp_path: Path, committed: Round) -> None:
    """Editing make_example.py without re-running it (or editing the xlsx by hand) fails here."""
    gen = _generator()
    fresh = load_round(gen.build_example(tmp_path / "example.xlsx")).round
    assert fresh.digest() == committed.digest()
    again = load_round(gen.build_example(tmp_path / "again.xlsx")).round
    assert again.digest() == fresh.digest(), "the generator must be deterministic"


def test_committed_template_matches_write_template(tmp_path: Path) -> None:
    fresh = load_workbook(write_template(tmp_path / "template.xlsx"))
    old = load_workbook(TEMPLATE)
    assert old.sheetnames == fresh.sheetnames
    for name in fresh.sheetnames:
        rows_old = [tuple(c.value for c in row) for row in old[name].iter_rows()]
        rows_new = [tuple(c.value for c in row) for row in fresh[name].iter_rows()]
        assert rows_old == rows_new, f"{name}: regenerate it with python inputs/make_example.py"


def test_example_is_the_round_the_readme_describes(committed: Round) -> None:
    """The features the example is meant to teach are all present."""
    assert committed.periods == ("2026", "2027", "2028")
    assert len(committed.jurisdictions()) == 3
    assert len(committed.regions) >= 10 and any(r.rural for r in committed.regions)
    kinds = {f.kind.value for f in committed.funds}
    assert {"joint", "public", "employer", "performance"} <= kinds
    assert {c.jurisdiction for c in committed.contributions} == set(committed.jurisdictions())
    assert len(committed.programs) >= 40
    scale_ups = [p for p in committed.programs if p.pilot_of]
    met = {p.program_id for p in scale_ups if committed.met_targets(p.pilot_of)}
    assert met and len(met) < len(scale_ups), "want scale-ups of both good and failed pilots"
    assert any(p.min_trainees > 0 for p in committed.programs)
    assert any(len({committed.region(r).jurisdiction for r in p.regions}) >= 2
               for p in committed.programs)
    assert {o.metric for o in committed.objective} == {
        "employment_rate", "retention_rate", "learning_gain", "wage_gain"}
    assert {r.measure.value for r in committed.rules} == {
        "amount", "share", "share_within", "per_capita", "contribution_share"}


def test_example_solves_and_spreads_money(solution: Solution, committed: Round,
                                          alloc: pd.DataFrame) -> None:
    assert solution.status.value == "optimal"
    assert alloc["program_id"].nunique() >= 20
    by_jur = alloc.groupby("jurisdiction")["amount"].sum()
    for j in committed.jurisdictions():
        assert by_jur.get(j, 0) > 0, f"no money reaches {j}"
    assert set(alloc["region_id"]) == {r.region_id for r in committed.regions}
    assert solution.timings["solve"] < 10


def test_example_keeps_its_funds_own_limits(committed: Round, alloc: pd.DataFrame) -> None:
    """Independent recomputation of what the README promises about the funds."""
    spent = alloc.groupby(["fund_id", "period"])["amount"].sum()
    for f in committed.funds:
        cum_spent = cum_budget = 0.0
        for t in committed.periods:
            s, b = float(spent.get((f.fund_id, t), 0.0)), float(committed.budget(f.fund_id, t))
            cum_spent, cum_budget = cum_spent + s, cum_budget + b
            if f.carry_over:
                assert cum_spent <= cum_budget + 1e-6, (f.fund_id, t)
            else:
                assert s <= b + 1e-6, (f.fund_id, t)
        own = alloc[alloc["fund_id"] == f.fund_id]
        if f.owner != "joint":  # a jurisdiction's public fund pays only at home
            assert set(own["jurisdiction"]) <= {f.owner}, f.fund_id
    # the scale-up of a pilot that missed its targets gets nothing
    failed = [p.program_id for p in committed.programs
              if p.pilot_of and not committed.met_targets(p.pilot_of)]
    assert failed and not alloc["program_id"].isin(failed).any()
    # the results bonus fund pays only programs that met their targets
    perf = {f.fund_id for f in committed.funds if f.kind.value == "performance"}
    paid = set(alloc.loc[alloc["fund_id"].isin(perf), "program_id"])
    assert paid and all(committed.met_targets(p) for p in paid)


def test_juste_retour_holds(committed: Round, alloc: pd.DataFrame) -> None:
    """Each contributor gets >= 90% of its contribution share of the joint fund (within rounding)."""
    rule = next(r for r in committed.rules if r.measure.value == "contribution_share")
    joint = {c.fund_id for c in committed.contributions}
    paid = {j: sum(float(c.amount) for c in committed.contributions if c.jurisdiction == j)
            for j in committed.jurisdictions()}
    jif = alloc[alloc["fund_id"].isin(joint)]
    total = jif["amount"].sum()
    unit = float(committed.settings.rounding_unit)
    for j, amount in paid.items():
        required = rule.value * amount / sum(paid.values()) * total
        assert jif.loc[jif["jurisdiction"] == j, "amount"].sum() >= required - 2 * unit, j


def test_several_rules_bind_but_not_all(solution: Solution, committed: Round) -> None:
    """The example shows binding rules (with prices) next to rules with room to spare."""
    binding = set(solution.rules.loc[solution.rules["binding"], "rule_id"])
    assert len(binding) >= 2
    assert binding < {r.rule_id for r in committed.rules}
    priced = set(solution.rules.loc[solution.rules["shadow_price"].abs() > 0, "rule_id"])
    assert len(priced) >= 2, "binding rules should cost outcome value in this example"


def test_example_passes_the_independent_checker(solution: Solution, committed: Round) -> None:
    assert check_allocation(committed, solution.allocation) == []
