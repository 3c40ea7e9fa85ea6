"""The example results in `inputs/`: they match their generator and run allocate -> settle -> next round."""

from __future__ import annotations

import importlib.util
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from allocator import api
from allocator.cli import app
from allocator.results import load_results
from allocator.settle import load_decision

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "inputs" / "example_results.xlsx"
RECORD = next((ROOT / "models" / "upper-rhine-2026").glob("*/manifest.json")).parent
runner = CliRunner()


def test_committed_results_match_the_generator(tmp_path: Path):
    spec = importlib.util.spec_from_file_location("make_example_results",
                                                  ROOT / "inputs" / "make_example_results.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    fresh = tmp_path / "fresh.xlsx"
    from allocator.template import write_round_workbook

    write_round_workbook(fresh, module.example_results())
    decision = load_decision(RECORD)
    assert load_results(fresh, decision.round, decision.funded()).digest() == \
        load_results(RESULTS, decision.round, decision.funded()).digest()


@pytest.mark.slow
def test_example_settles_verifies_and_carries_into_the_next_round(tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch):
    monkeypatch.chdir(tmp_path)
    record = tmp_path / "models" / RECORD.parent.name / RECORD.name
    shutil.copytree(RECORD, record)
    run = api.settle(record, RESULTS)
    table = run.tables["Settlement"].iloc[:-1].set_index(["program_id", "fund_id", "period",
                                                          "tranche"])
    # CARE-02 missed its mid-term report: the joint fund's interim tranche of 2026 (0.4 of its
    # 300,000) is withheld and, the fund carrying over, carried into 2027.
    care = table.loc[("CARE-02", "JIF", "2026", "interim")]
    assert (care.scheduled, care.payable, care.withheld_to) == (120000, 0, "carried into 2027")
    assert care.reason == "milestone 'mid-term report' not met"
    # DIG-02 got 582,000 in 2026 at 2,200 per trainee (264.5 trainees); 240 completed, so the
    # tranches due in 2027 are scaled by 240 x 2,200 / 582,000 = 0.9072: PUB-GES's final
    # 116 units -> 105.2 -> 105 units (returned: no carry-over), JIF's 58 -> 52.6 -> 52.
    dig = table.loc[("DIG-02", "PUB-GES", "2026", "final")]
    assert (dig.scheduled, dig.payable, dig.withheld_to) == (116000, 105000, "returned")
    jif = table.loc[("DIG-02", "JIF", "2026", "final")]
    assert (jif.scheduled, jif.payable, jif.withheld_to) == (58000, 52000, "carried into 2028")
    assert table.loc[("DIG-02", "JIF", "2026", "advance")].payable == \
        table.loc[("DIG-02", "JIF", "2026", "advance")].scheduled  # due 0: not scaled
    assert "240 of 264.5 trainees completed" in dig.reason
    total = run.tables["Settlement"].iloc[-1]
    assert total.payable + total.withheld == total.scheduled
    verified = runner.invoke(app, ["verify", str(run.record.folder)])
    assert verified.exit_code == 0, verified.output

    out = tmp_path / "next.xlsx"
    nxt = api.next_round(record, [RESULTS], out=out)
    ready = nxt.changes[nxt.changes["column"] == "ready_to_scale_up"].set_index("key")
    assert ready.loc["GRN-02", "new_value"] == "yes" and ready.loc["CARE-06", "new_value"] == "yes"
    assert ready.loc["HOS-04", "new_value"] == "no"
    result = runner.invoke(app, ["run", str(out), "--quiet"])
    assert result.exit_code == 0, result.output
