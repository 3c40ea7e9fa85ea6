"""Settling a decision record on measured results: amounts against a hand calculation.

The round is built so that its allocation is forced (each fund can pay one program only, and
each program can take exactly what it is given), so every scheduled, payable and withheld
amount below is worked out by hand from the contract's rules, not read from the code.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from allocator import api
from allocator.cli import app
from allocator.errors import InputError
from allocator.record import sha256_file, verify_record
from allocator.template import write_round_workbook
from tests.rounds import SETTLE_RESULTS as RESULTS
from tests.rounds import SETTLE_ROUND as ROUND

runner = CliRunner()

# (program, fund, period, tranche): (scheduled, payable, withheld_to), by hand:
# P1/JIF/2026 = 10,001 split 0.4/0.4/0.2: quotas 4000.4, 4000.4, 2000.2 -> 4000, 4000, 2000
#   and the one unit left goes to the largest remainder, the earliest of the tied .4s: advance.
# P3/JIF/2027 = 5,000 -> 2000, 2000, 1000.  P2/PUB/2026 = 10,000 -> 5000, 5000.
EXPECTED = {
    ("P1", "JIF", "2026", "advance"): (4001, 4001, ""),
    ("P1", "JIF", "2026", "interim"): (4000, 0, "carried into 2027"),  # milestone not met
    ("P1", "JIF", "2026", "final"): (2000, 1750, "carried into the next round"),  # 2000 x 0.875
    ("P3", "JIF", "2027", "advance"): (2000, 2000, ""),
    ("P3", "JIF", "2027", "interim"): (2000, 2000, ""),
    ("P3", "JIF", "2027", "final"): (1000, 0, "carried into the next round"),  # below the floor
    ("P2", "PUB", "2026", "advance"): (5000, 5000, ""),  # due 0: not scaled by drop-outs
    # 5000 x 0.9 x 31/40 = 3487.5 -> rounded down to 3487; PUB does not carry over
    ("P2", "PUB", "2026", "final"): (5000, 3487, "returned"),
}


@pytest.fixture
def decided(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The round run through `allocator run`; returns its decision record folder."""
    monkeypatch.chdir(tmp_path)
    book = write_round_workbook(tmp_path / "s1.xlsx", ROUND)
    result = api.run(book, report=tmp_path / "reports" / "s1.xlsx", records=tmp_path / "models")
    return result.record.folder


def results_book(path: Path, data: dict | None = None) -> Path:
    return write_round_workbook(path, data if data is not None else RESULTS)


def test_allocation_is_the_forced_one(decided: Path):
    text = (decided / "allocation.csv").read_text()
    assert "P1,A1,JIF,2026,10001" in text
    assert "P3,A1,JIF,2027,5000" in text
    assert "P2,B1,PUB,2026,10000" in text


def test_settlement_amounts_match_the_hand_calculation(decided: Path, tmp_path: Path):
    run = api.settle(decided, results_book(tmp_path / "res.xlsx"),
                     report=tmp_path / "reports" / "settle.xlsx")
    table = run.tables["Settlement"]
    body, total = table.iloc[:-1], table.iloc[-1]
    got = {(r.program_id, r.fund_id, r.period, r.tranche): (r.scheduled, r.payable, r.withheld_to)
           for r in body.itertuples()}
    assert got == EXPECTED
    for r in body.itertuples():
        assert r.payable + r.withheld == r.scheduled
    assert total["program_id"] == "Total"
    assert (total["scheduled"], total["payable"], total["withheld"]) == (25001, 18238, 6763)
    reasons = {(r.program_id, r.tranche): r.reason for r in body.itertuples()}
    assert reasons[("P1", "interim")] == "milestone 'curriculum approved' not met"
    assert reasons[("P1", "final")] == \
        "results score 0.875 of target: 87.5% of the results tranche paid"
    assert "below the floor 0.5" in reasons[("P3", "final")]
    assert reasons[("P2", "final")] == (
        "results score 0.9 of target: 90% of the results tranche paid; "
        "31 of 40 trainees completed: later tranches scaled to 78%")
    assert reasons[("P2", "advance")] == "paid in full"
    assert run.report.is_file()


def test_funds_jurisdictions_and_cash_flow_add_up(decided: Path, tmp_path: Path):
    run = api.settle(decided, results_book(tmp_path / "res.xlsx"),
                     report=tmp_path / "reports" / "settle.xlsx")
    funds = run.tables["Funds"].set_index("fund_id")
    cols = ["scheduled", "paid", "withheld", "returned", "carried"]
    assert list(funds.loc["JIF", cols]) == [15001, 9751, 5250, 0, 5250]
    assert funds.loc["JIF", "carried_into"] == "2027, the next round"
    assert list(funds.loc["PUB", cols]) == [10000, 8487, 1513, 1513, 0]
    assert list(funds.loc["Total", cols]) == [25001, 18238, 6763, 1513, 5250]
    juris = run.tables["Jurisdictions"].set_index("jurisdiction")
    assert list(juris.loc["A"]) == [15001, 9751, 5250]
    assert list(juris.loc["B"]) == [10000, 8487, 1513]
    flow = run.tables["Cash flow"]
    rows = {(r.due_period, r.fund_id): (r.scheduled, r.payable, r.withheld)
            for r in flow.iloc[:-1].itertuples()}
    assert rows == {("2026", "JIF"): (8001, 4001, 4000), ("2026", "PUB"): (5000, 5000, 0),
                    ("2027", "JIF"): (6000, 5750, 250), ("2027", "PUB"): (5000, 3487, 1513),
                    ("2027+1", "JIF"): (1000, 0, 1000)}


def test_scheduled_amounts_are_the_reports_disbursements(decided: Path, tmp_path: Path):
    import pandas as pd

    run = api.settle(decided, results_book(tmp_path / "res.xlsx"),
                     report=tmp_path / "reports" / "settle.xlsx")
    disb = pd.read_excel(tmp_path / "reports" / "s1.xlsx", sheet_name="Disbursements", engine="openpyxl",
                         dtype={"period": str})
    report = {(r.program_id, r.fund_id, r.period, r.tranche): r.amount
              for r in disb.itertuples() if r.program_id != "Total"}
    table = run.tables["Settlement"].iloc[:-1]
    assert {(r.program_id, r.fund_id, r.period, r.tranche): r.scheduled
            for r in table.itertuples()} == report


def test_settlement_workbook_has_its_sheets(decided: Path, tmp_path: Path):
    from openpyxl import load_workbook

    run = api.settle(decided, results_book(tmp_path / "res.xlsx"),
                     report=tmp_path / "reports" / "settle.xlsx")
    wb = load_workbook(run.report)
    assert wb.sheetnames == ["Settlement", "Funds", "Jurisdictions", "Cash flow", "Summary"]
    ws = wb["Settlement"]
    assert ws.freeze_panes == "A2"
    total = [c.value for c in ws[ws.max_row]]
    assert total[0] == "Total" and total[6:9] == [25001, 18238, 6763]
    summary = {r[0].value: r[1].value for r in wb["Summary"].iter_rows(min_row=2)}
    assert summary["decision record run id"] == decided.name
    assert summary["settlement id"] == run.record.settlement_id


def test_rounding_unit_amounts_are_whole_units(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """With a rounding unit of 100, a scaled tranche is rounded down to whole hundreds."""
    monkeypatch.chdir(tmp_path)
    data = json.loads(json.dumps(ROUND))
    data["Round"]["rounding_unit"] = 100
    data["Budgets"] = [{"fund_id": "JIF", "period": 2026, "amount": 10100},
                       {"fund_id": "JIF", "period": 2027, "amount": 5000},
                       {"fund_id": "PUB", "period": 2026, "amount": 10000}]
    book = write_round_workbook(tmp_path / "r.xlsx", data)
    record = api.run(book, report=tmp_path / "r-report.xlsx",
                     records=tmp_path / "models").record.folder
    run = api.settle(record, results_book(tmp_path / "res.xlsx"), report=tmp_path / "s.xlsx")
    rows = {(r.program_id, r.tranche): (r.scheduled, r.payable, r.withheld)
            for r in run.tables["Settlement"].iloc[:-1].itertuples()}
    # P1: 101 units split 40.4/40.4/20.2 -> 41, 40, 20 units; final x 0.875 = 17.5 -> 17 units
    assert rows[("P1", "advance")] == (4100, 4100, 0)
    assert rows[("P1", "final")] == (2000, 1700, 300)
    # P2 final: 50 units x 0.9 x 31/40 = 34.875 -> 34 units
    assert rows[("P2", "final")] == (5000, 3400, 1600)


def test_no_results_rows_means_score_zero_and_no_milestone_row_means_met(decided: Path,
                                                                          tmp_path: Path):
    data = {"Results": [RESULTS["Results"][2]]}  # P2 only
    run = api.settle(decided, results_book(tmp_path / "res.xlsx", data), report=tmp_path / "s.xlsx")
    rows = {(r.program_id, r.tranche): (r.payable, r.reason)
            for r in run.tables["Settlement"].iloc[:-1].itertuples()}
    assert rows[("P1", "interim")] == (4000, "paid in full")
    assert rows[("P1", "final")][0] == 0
    assert "no results reported" in rows[("P1", "final")][1]


# --- hostile results workbooks -------------------------------------------------------------------
def _row(**changes):
    row = dict(RESULTS["Results"][0])
    row.update(changes)
    return row


HOSTILE = [
    ("unknown program", {"Results": [_row(program_id="P9")]}, "Results!A2 program_id",
     "unknown program 'P9'"),
    ("unfunded period", {"Results": [_row(period=2027)]}, "Results!B2 period",
     "did not fund P1 in period '2027'"),
    ("unknown metric", {"Results": [_row(metric="happiness")]}, "Results!C2 metric",
     "not an outcome column"),
    ("text in achieved", {"Results": [_row(achieved="lots")]}, "Results!E2 achieved", "lots"),
    ("target zero", {"Results": [_row(target=0)]}, "Results!D2 target", "greater than 0"),
    ("unknown tranche", {"Results": [_row()], "Milestones": [
        {"program_id": "P1", "period": 2026, "tranche": "bonus", "met": "no"}]},
     "Milestones!C2 tranche", "no tranche 'bonus'"),
]


@pytest.mark.parametrize("name,data,cell,message", HOSTILE, ids=[h[0] for h in HOSTILE])
def test_hostile_results_are_refused_with_the_cell_and_nothing_written(
        decided: Path, tmp_path: Path, name: str, data: dict, cell: str, message: str):
    book = results_book(tmp_path / "bad.xlsx", data)
    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    with pytest.raises(InputError) as exc:
        api.settle(decided, book, report=tmp_path / "reports" / "bad.xlsx")
    assert any(str(i).startswith(cell) and message in str(i) for i in exc.value.issues), \
        exc.value.render()
    result = runner.invoke(app, ["settle", str(decided), str(book)])
    assert result.exit_code == 1, result.output
    assert cell in result.output and "results workbook" in result.output
    assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*")) == before


def test_all_problems_are_listed_at_once(decided: Path, tmp_path: Path):
    data = {"Results": [_row(program_id="P9"), _row(metric="happiness"),
                        _row(achieved="lots")]}
    with pytest.raises(InputError) as exc:
        api.settle(decided, results_book(tmp_path / "bad.xlsx", data), report=tmp_path / "x.xlsx")
    cells = {str(i).split(" ")[0] for i in exc.value.issues}
    assert {"Results!A2", "Results!C3", "Results!E4"} <= cells


# --- the settlement record -----------------------------------------------------------------------
def test_settlement_record_verifies_and_tampering_is_caught(decided: Path, tmp_path: Path):
    run = api.settle(decided, results_book(tmp_path / "res.xlsx"), report=tmp_path / "s.xlsx")
    folder = run.record.folder
    assert folder.parent == decided.parent
    assert folder.name.startswith(run.record.settlement_id[:22]) and "Z-settle-" in folder.name
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["kind"] == "settlement"
    assert manifest["settles"]["run_id"] == decided.name
    assert set(manifest["files"]) == {"results.json", "results.xlsx", "settlement.csv"}
    result = runner.invoke(app, ["verify", str(folder)])
    assert result.exit_code == 0, result.output
    assert "VERIFIED" in result.output

    # Change one amount and rewrite its digest in the manifest: the files agree again, but
    # the re-computed settlement does not.
    csv_path = folder / "settlement.csv"
    csv_path.write_text(csv_path.read_text().replace("P2,PUB,2026,final,results,2027,5000,3487,1513",
                                                     "P2,PUB,2026,final,results,2027,5000,4487,513"))
    manifest["files"]["settlement.csv"] = sha256_file(csv_path)
    (folder / "manifest.json").write_text(json.dumps(manifest))
    check = verify_record(folder)
    assert not check.verified
    assert any("P2/PUB/2026/final payable: recorded 4487, re-computed 3487" in p
               for p in check.problems), check.problems
    result = runner.invoke(app, ["verify", str(folder)])
    assert result.exit_code == 5 and "NOT VERIFIED" in result.output


def test_a_changed_decision_record_breaks_the_settlement(decided: Path, tmp_path: Path):
    run = api.settle(decided, results_book(tmp_path / "res.xlsx"), report=tmp_path / "s.xlsx")
    manifest = decided / "manifest.json"
    manifest.write_text(manifest.read_text().replace('"format": 1', '"format":  1'))
    check = verify_record(run.record.folder)
    assert any("differs from the one settled" in p for p in check.problems)


def test_settling_twice_keeps_both_in_order_with_the_chain(decided: Path, tmp_path: Path):
    from allocator.chain import record_digest, round_records

    first = api.settle(decided, results_book(tmp_path / "a.xlsx"), report=tmp_path / "a-s.xlsx")
    other = json.loads(json.dumps(RESULTS))
    other["Results"][3]["achieved"] = 0.7  # P3 now above its floor
    second = api.settle(decided, results_book(tmp_path / "b.xlsx", other),
                        report=tmp_path / "b-s.xlsx")
    records = round_records(decided.parent)
    assert records == [decided, first.record.folder, second.record.folder]
    m1 = json.loads((first.record.folder / "manifest.json").read_text())
    m2 = json.loads((second.record.folder / "manifest.json").read_text())
    assert m1["previous"] == record_digest(decided)
    assert m2["previous"] == record_digest(first.record.folder)
    assert verify_record(first.record.folder).verified
    assert verify_record(second.record.folder).verified
    # removing the first settlement breaks the chain at the second
    shutil.rmtree(first.record.folder)
    assert any(p.startswith("previous:") for p in verify_record(second.record.folder).problems)


def test_cli_settle_prints_totals(decided: Path, tmp_path: Path):
    result = runner.invoke(app, ["settle", str(decided), str(results_book(tmp_path / "r.xlsx")),
                                 "--report", str(tmp_path / "out.xlsx")])
    assert result.exit_code == 0, result.output
    assert "scheduled EUR 25,001, payable EUR 18,238, withheld EUR 6,763" in result.output
    assert (tmp_path / "out.xlsx").is_file()


def test_settling_a_settlement_record_is_refused(decided: Path, tmp_path: Path):
    run = api.settle(decided, results_book(tmp_path / "r.xlsx"), report=tmp_path / "s.xlsx")
    result = runner.invoke(app, ["settle", str(run.record.folder),
                                 str(results_book(tmp_path / "r.xlsx"))])
    assert result.exit_code == 1 and "is a settlement record" in result.output


def test_formula_like_text_stays_text_in_the_csv():
    from allocator.safetext import csv_text, csv_value

    assert csv_text("=HYPERLINK(1)") == "'=HYPERLINK(1)" and csv_value("'=HYPERLINK(1)") == "=HYPERLINK(1)"
    assert csv_text("-1") == "'-1"
    assert csv_text("P1") == "P1" and csv_value("'quoted") == "'quoted"


def test_tranche_basis_floor_and_prior_weight_are_validated(tmp_path: Path):
    from allocator.validate import load_round

    data = json.loads(json.dumps(ROUND))
    data["Round"]["prior_weight"] = 0
    data["Tranches"][2]["floor"] = 1.5
    with pytest.raises(InputError) as exc:
        load_round(write_round_workbook(tmp_path / "bad.xlsx", data))
    text = exc.value.render()
    assert "Round!B5 value: must be greater than 0" in text
    assert "Tranches!G4 floor: must be at most 1, got 1.5" in text
    data = json.loads(json.dumps(ROUND))
    data["Tranches"][0]["floor"] = 0.3  # a floor on a fixed tranche
    with pytest.raises(InputError) as exc:
        load_round(write_round_workbook(tmp_path / "bad2.xlsx", data))
    assert "Tranches!G2 floor: a floor applies to basis 'results' only" in exc.value.render()
    rnd = load_round(write_round_workbook(tmp_path / "ok.xlsx", ROUND)).round
    assert rnd.settings.prior_weight == 30
    assert [t.basis.value for t in rnd.tranches if t.fund_id == "JIF"] == \
        ["fixed", "fixed", "results"]


def test_more_completers_never_pay_more_and_a_missed_milestone_stops_a_results_tranche(
        decided: Path, tmp_path: Path):
    data = json.loads(json.dumps(RESULTS))
    data["Results"][2]["trainees"] = 45  # more than the 40 funded
    run = api.settle(decided, results_book(tmp_path / "a.xlsx", data), report=tmp_path / "a-s.xlsx")
    rows = {(r.program_id, r.tranche): (r.payable, r.withheld, r.reason)
            for r in run.tables["Settlement"].iloc[:-1].itertuples()}
    assert rows[("P2", "final")] == (4500, 500, "results score 0.9 of target: 90% of the results "
                                                "tranche paid")  # 5000 x 0.9, not scaled
    data["Milestones"].append({"program_id": "P2", "period": 2026, "tranche": "final",
                               "met": "no", "fund_id": "PUB"})
    run = api.settle(decided, results_book(tmp_path / "b.xlsx", data), report=tmp_path / "b-s.xlsx")
    rows = {(r.program_id, r.tranche): (r.payable, r.withheld, r.withheld_to, r.reason)
            for r in run.tables["Settlement"].iloc[:-1].itertuples()}
    assert rows[("P2", "final")] == (0, 5000, "returned", "milestone of tranche 'final' not met; "
                                                          "results score 0.9 of target")


def test_a_settlement_after_the_clock_went_back_is_named_after_its_decision(
        decided: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """With the clock an hour behind the decision record, the settlement still sorts after it."""
    import time

    import allocator.manifest as manifest
    from allocator.chain import round_records, walk_chain

    class Behind:
        def __getattr__(self, name: str):
            return getattr(time, name)

        def time_ns(self) -> int:
            return time.time_ns() - 3600 * 10**9

        def time(self) -> float:
            return self.time_ns() / 1e9

        def gmtime(self, secs: float | None = None):
            return time.gmtime(self.time() if secs is None else secs)

    monkeypatch.setattr(manifest, "time", Behind())
    run = api.settle(decided, results_book(tmp_path / "r.xlsx"), report=tmp_path / "s.xlsx")
    assert round_records(decided.parent) == [decided, run.record.folder]
    assert walk_chain(decided.parent).verified


# --- verify holds a settlement record to what settle wrote, as a decision record ---------------
def _settled(decided: Path, tmp_path: Path) -> Path:
    run = api.settle(decided, results_book(tmp_path / "res.xlsx"), report=tmp_path / "s.xlsx")
    return run.record.folder


def _rehash(folder: Path, *, output: bool = False, **changes: object) -> None:
    """What a forger does after an edit: the manifest's digests made to match again."""
    manifest = json.loads((folder / "manifest.json").read_text())
    manifest["files"] = {n: sha256_file(folder / n) for n in manifest["files"]
                         if (folder / n).is_file()}
    if output:
        manifest["output_digest"] = sha256_file(folder / "settlement.csv")
    manifest.update(changes)
    (folder / "manifest.json").write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")


def _verify(folder: Path, code: int = 5) -> str:
    result = runner.invoke(app, ["verify", str(folder)])
    assert result.exit_code == code, result.output
    assert "Traceback" not in result.output
    return result.output


def test_a_settlement_line_given_twice_is_named(decided: Path, tmp_path: Path):
    folder = _settled(decided, tmp_path)
    path = folder / "settlement.csv"
    lines = path.read_text().splitlines()
    path.write_text("\n".join([lines[0], lines[1], *lines[1:]]) + "\n")
    _rehash(folder, output=True)
    key = "/".join(lines[1].split(",")[:4])
    assert f"settlement {key}: 2 lines in settlement.csv" in _verify(folder)


def test_settlement_amounts_typed_another_way_are_named(decided: Path, tmp_path: Path):
    folder = _settled(decided, tmp_path)
    path = folder / "settlement.csv"
    text = path.read_text()
    path.write_text(text.replace(",5000,5000,0,", ",5E+3,5000.000,-0,", 1))
    _rehash(folder, output=True)
    out = _verify(folder)
    assert "settlement.csv line " in out and "5E+3,5000.000,-0" in out
    assert "the re-computed settlement writes" in out


def test_a_settlement_with_crlf_line_ends_is_named(decided: Path, tmp_path: Path):
    folder = _settled(decided, tmp_path)
    path = folder / "settlement.csv"
    path.write_bytes(path.read_bytes().replace(b"\n", b"\r\n"))
    _rehash(folder, output=True)
    assert "settlement.csv line 1: recorded 'program_id" in _verify(folder)


def test_settlement_output_digest_is_checked(decided: Path, tmp_path: Path):
    folder = _settled(decided, tmp_path)
    _rehash(folder, output_digest="0" * 64)
    assert "settlement.csv: its SHA-256 differs from the manifest's output_digest" in _verify(folder)


def test_settlement_round_id_and_run_id_are_checked(decided: Path, tmp_path: Path):
    folder = _settled(decided, tmp_path)
    round_id = decided.parent.name
    _rehash(folder, round_id="another-round", run_id="19990101T000000000000Z-settle-00000000")
    out = _verify(folder)
    assert f"manifest.json: round_id 'another-round', but the record lies in the round folder " \
           f"'{round_id}'" in out
    assert f"the decision record it settles is of round '{round_id}'" in out
    assert out.count("its manifest says run '19990101T000000000000Z-settle-00000000'") == 1


def test_a_settlement_without_its_results_workbook_is_verified_with_a_warning(
        decided: Path, tmp_path: Path):
    folder = _settled(decided, tmp_path)
    (folder / "results.xlsx").unlink()
    _rehash(folder)
    out = _verify(folder, 0)
    assert "warning: the record holds no copy of the results workbook (results.xlsx)" in out


def test_settles_run_id_must_be_a_record_of_the_same_round(decided: Path, tmp_path: Path):
    """Not `../<other round>/<run>` nor an absolute path: verify would settle another round's
    record, or one outside the records folder."""
    folder = _settled(decided, tmp_path)
    manifest = json.loads((folder / "manifest.json").read_text())
    away = tmp_path / "far" / decided.name
    shutil.copytree(decided, away)
    for run_id in (f"../{decided.parent.name}/{decided.name}", str(away)):
        _rehash(folder, settles={**manifest["settles"], "run_id": run_id})
        out = _verify(folder)
        assert f"settles.run_id {run_id!r} is not the name of a record folder of this round" in out


def test_settling_a_record_whose_settles_is_a_list_is_refused(decided: Path, tmp_path: Path):
    folder = _settled(decided, tmp_path)
    manifest = json.loads((folder / "manifest.json").read_text())
    (folder / "manifest.json").write_text(json.dumps({**manifest, "settles": ["x"]}))
    result = runner.invoke(app, ["settle", str(folder), str(results_book(tmp_path / "r.xlsx")),
                                 "--report", str(tmp_path / "x.xlsx")])
    assert result.exit_code == 1, result.output
    assert "is a settlement record, not a decision record" in result.output
