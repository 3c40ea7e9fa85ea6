"""The result workbook (DESIGN.md, output contract version 1), read back as finance would.

Round R1 is small enough to solve by hand (see `r1_hand`); every money figure the report shows
is checked against that hand solution, and every total against the rows it sums.
"""

from __future__ import annotations

import itertools
import os
import stat
import zipfile
from decimal import Decimal
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import openpyxl
import pytest

import allocator.excel as excel_module
from allocator.atomic import atomic_dir, current_umask, is_leftover
from allocator.engine import solve_round
from allocator.errors import CellRef, InputError, Normalisation
from allocator.report import (
    SHEETS,
    _Ledger,
    due_label,
    report_tables,
    split_tranches,
    split_tranches_many,
    split_units,
    write_report,
)
from allocator.round import TrancheRow
from allocator.template import Formula, write_round_workbook
from allocator.validate import load_round

HYPERLINK = '=HYPERLINK("http://x","y")'
DDE = "=cmd|' /C calc'!A0"

HEADERS = {
    "Dashboard": ["figure", "value", "target"],
    "Summary": ["item", "value"],
    "Allocations": ["program_id", "program", "region_id", "jurisdiction", "fund_id", "period",
                    "amount", "trainees"],
    "Programs": ["program_id", "program", "sector", "stage", "regions", "cost_per_trainee",
                 "max_trainees", "amount", "trainees", "amount 2026", "amount 2027", "share",
                 "status", "reason"],
    "Regions": ["region_id", "region", "jurisdiction", "rural", "population", "amount",
                "trainees", "per_capita", "share"],
    "Jurisdictions": ["jurisdiction", "regions", "population", "amount", "share", "joint_amount",
                      "joint_share", "contributed", "contribution_share", "ratio"],
    "Funds": ["fund_id", "fund", "kind", "owner", "carry_over", "period", "budget", "carried_in",
              "allocated", "carried_out", "unspent"],
    "Rules": ["rule_id", "description", "measure", "group", "jurisdiction", "op", "target",
              "achieved", "slack", "binding", "price per 10,000 EUR", "selected_amount",
              "reference_amount", "penalty", "shortfall", "soft", "note"],
    "Prices": ["kind", "id", "group", "jurisdiction", "period", "op", "value", "binding",
               "price per 10,000 EUR", "step", "per_step", "trainees_per_step", "sentence", "note"],
    "Sensitivity": ["kind", "id", "name", "period", "current", "price per 10,000 EUR",
                    "holds from", "holds to", "allowable increase", "allowable decrease", "meaning"],
    "Weight ranges": ["metric", "weight", "lowest", "highest", "of"],
    "Disbursements": ["program_id", "program", "fund_id", "period", "tranche", "share", "amount",
                      "due_period", "condition"],
    "Cash flow": ["due_period", "EMP", "JIF", "PUB", "total"],
    "Audit": ["item", "value"],
    "Notes": ["cell", "header", "found", "used", "why"],
}


# R1: one unit = 1000 EUR. P1 is worth 0.9 per 1000 EUR, P2 0.4: P1 is filled first.
#   2026: PUB can only pay P1 -> 10000; JIF fills P1 to its 30000 cap (20000) and gives the
#         rest (80000) to P2; EMP can only pay P2 -> 5000.
#   2027: only JIF (50000, no carry-over): P1 30000, P2 20000.  P3 is gated (pilot P1 has no
#         Performance rows).  Everything is spent: 165000.  Value 60*0.9 + 52.5*0.8 = 96.
R1_ALLOCATION = {  # (program, region, fund, period) -> amount
    ("P1", "A1", "JIF", "2026"): 20000, ("P1", "A1", "PUB", "2026"): 10000,
    ("P1", "A1", "JIF", "2027"): 30000, ("P2", "B1", "EMP", "2026"): 5000,
    ("P2", "B1", "JIF", "2026"): 80000, ("P2", "B1", "JIF", "2027"): 20000,
}
# Tranches by hand (DESIGN.md 1.1: each floored, the remainder to the earliest tranche).
# JIF (kind joint) 0.333/0.333/0.334, due 0/1/2, so `a` takes the remainder:
#   20 units -> 6.66, 6.66, 6.68 -> 6,6,6 + 2 left to a = 8,6,6
#   80 units -> 26.64, 26.64, 26.72 -> 26,26,26 + 2 = 28,26,26
#   30 units -> 9.99, 9.99, 10.02 -> 9,9,10 + 2 = 11,9,10
# PUB has fund_id rows (they beat its kind's row): 0.5/0.5; EMP has none: one "single".
R1_DISBURSEMENTS = [
    ("P1", "JIF", "2026", "a", 8000, "2026", None),
    ("P1", "JIF", "2026", "b", 6000, "2027", None),
    ("P1", "JIF", "2026", "c", 6000, "2027+1", "final report"),
    ("P1", "JIF", "2027", "a", 11000, "2027", None),
    ("P1", "JIF", "2027", "b", 9000, "2027+1", None),
    ("P1", "JIF", "2027", "c", 10000, "2027+2", "final report"),
    ("P1", "PUB", "2026", "p1", 5000, "2026", None),
    ("P1", "PUB", "2026", "p2", 5000, "2027", DDE),
    ("P2", "EMP", "2026", "single", 5000, "2026", None),
    ("P2", "JIF", "2026", "a", 28000, "2026", None),
    ("P2", "JIF", "2026", "b", 26000, "2027", None),
    ("P2", "JIF", "2026", "c", 26000, "2027+1", "final report"),
    ("P2", "JIF", "2027", "a", 8000, "2027", None),
    ("P2", "JIF", "2027", "b", 6000, "2027+1", None),
    ("P2", "JIF", "2027", "c", 6000, "2027+2", "final report"),
]


def r1_sheets() -> dict:
    return {
        "Round": {"round_id": "R1", "title": "+title", "periods": "2026, 2027",
                  "rounding_unit": 1000},
        "Regions": [
            {"region_id": "A1", "name": "@Alpha", "jurisdiction": "A", "population": 1000},
            {"region_id": "B1", "name": "Beta", "jurisdiction": "B", "population": 3000}],
        "Funds": [
            {"fund_id": "JIF", "name": "-joint", "kind": "joint", "owner": "joint"},
            {"fund_id": "PUB", "kind": "public", "owner": "A", "eligible": "program=P1"},
            {"fund_id": "EMP", "kind": "employer", "owner": "B", "eligible": "program=P2"}],
        "Budgets": [  # periods typed as numbers: the labels are still the text "2026"
            {"fund_id": "JIF", "period": 2026, "amount": 100000},
            {"fund_id": "JIF", "period": 2027, "amount": 50000},
            {"fund_id": "PUB", "period": 2026, "amount": 10000},
            {"fund_id": "EMP", "period": 2026, "amount": 5000}],
        "Contributions": [{"fund_id": "JIF", "jurisdiction": "A", "amount": 60},
                          {"fund_id": "JIF", "jurisdiction": "B", "amount": 40}],
        "Programs": [
            {"program_id": "P1", "name": HYPERLINK, "sector": "industry", "regions": "A1",
             "cost_per_trainee": 1000, "max_trainees": 30, "employment_rate": 0.9},
            {"program_id": "P2", "name": "+1+1", "sector": "digital", "regions": "B1",
             "cost_per_trainee": 2000, "max_trainees": 100, "employment_rate": 0.8},
            {"program_id": "P3", "name": "Scale", "stage": "scale_up", "pilot_of": "P1",
             "regions": "A1", "cost_per_trainee": 1000, "max_trainees": 100,
             "employment_rate": 1.0}],
        "Tranches": [
            {"fund_kind": "joint", "tranche": "a", "share": 0.333, "due": 0},
            {"fund_kind": "joint", "tranche": "b", "share": 0.333, "due": 1},
            {"fund_kind": "joint", "tranche": "c", "share": 0.334, "due": 2,
             "condition": "final report"},
            {"fund_kind": "public", "tranche": "kind-public", "share": 1, "due": 0},
            {"fund_id": "PUB", "tranche": "p1", "share": 0.5, "due": 0},
            {"fund_id": "PUB", "tranche": "p2", "share": 0.5, "due": 1, "condition": DDE}],
        "Objective": [{"metric": "employment_rate", "weight": 1}],
        "Rules": [{"rule_id": "R-B", "description": "-B gets 100 per head", "measure": "per_capita",
                   "select": "jurisdiction=B", "op": ">=", "value": 10}],
    }


def _solve(tmp: Path, sheets: dict):
    path = tmp / "round.xlsx"
    write_round_workbook(path, sheets)
    return solve_round(load_round(path).round)


@pytest.fixture(scope="module")
def r1(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("r1")
    solution = _solve(tmp, r1_sheets())
    notes = [Normalisation(CellRef("Programs", 3, "C", "stage"), "#N/A", "established", "=odd")]
    path = write_report(solution, tmp / "reports" / "R1.xlsx", run_id="run-1",
                        input_digest="abc", output_digest="def", notes=notes,
                        record_dir="models/R1/run-1", versions={"highspy": "9.9"})
    return solution, path, openpyxl.load_workbook(path, data_only=False)


def _table(ws) -> list[dict]:
    rows = list(ws.iter_rows(values_only=True))
    return [dict(zip(rows[0], r, strict=True)) for r in rows[1:]]


def _data_and_total(ws) -> tuple[list[dict], dict]:
    rows = _table(ws)
    assert rows[-1][next(iter(rows[-1]))] == "Total"
    return rows[:-1], rows[-1]


def _kv(ws) -> dict:
    return {r["item"]: r["value"] for r in _table(ws)}


# --- layout ---------------------------------------------------------------------------------


def test_sheets_in_order_each_one_header_row_frozen_filtered(r1):
    solution, _, wb = r1
    assert wb.sheetnames == list(SHEETS) == list(HEADERS)
    for name, header in HEADERS.items():
        ws = wb[name]
        if name == "Rules":  # the engine's rule table as is: known columns first, then any new
            header = header + [c for c in solution.rules.columns
                               if c not in header and c != "shadow_price"]
        assert [c.value for c in ws[1]] == header, name
        assert all(c.font.bold for c in ws[1]), name
        assert ws.freeze_panes == "A2", name
        assert ws.auto_filter.ref.startswith("A1:"), name
        assert ws.column_dimensions["A"].width >= 8, name


def test_filter_covers_data_rows_but_not_the_total_row(r1):
    _, _, wb = r1
    programs = wb["Programs"]
    assert programs.auto_filter.ref == "A1:N4"  # header + P1..P3; row 5 is the total
    assert programs["A5"].value == "Total" and programs["A5"].font.bold
    assert wb["Allocations"].auto_filter.ref == f"A1:H{1 + len(R1_ALLOCATION)}"


# --- the hand-solved allocation --------------------------------------------------------------


def test_allocations_are_the_hand_solution_in_whole_units(r1):
    _, _, wb = r1
    ws = wb["Allocations"]
    rows, total = _data_and_total(ws)
    assert total["amount"] == sum(R1_ALLOCATION.values())
    got = {(r["program_id"], r["region_id"], r["fund_id"], r["period"]): r["amount"] for r in rows}
    assert got == R1_ALLOCATION
    for r in rows:
        assert type(r["amount"]) is int and r["amount"] % 1000 == 0
        assert r["jurisdiction"] == {"A1": "A", "B1": "B"}[r["region_id"]]
    trainees = {(r["program_id"], r["fund_id"], r["period"]): r["trainees"] for r in rows}
    assert trainees[("P2", "EMP", "2026")] == 2.5  # 5000 / 2000
    for row in ws.iter_rows(min_row=2, max_row=ws.max_row - 1):
        period, amount = row[5], row[6]
        assert period.data_type == "s" and isinstance(period.value, str)  # "2026", not 2026
        assert amount.data_type == "n" and amount.number_format == '#,##0 "EUR"'


def test_every_money_total_agrees_and_is_the_exact_sum_of_its_rows(r1):
    _, _, wb = r1
    total = 165000
    for sheet in ("Allocations", "Disbursements"):  # each ledger ends with its total row
        rows, tot = _data_and_total(wb[sheet])
        assert sum(r["amount"] for r in rows) == tot["amount"] == total, sheet
    summary = _kv(wb["Summary"])
    assert summary["total allocated"] == total
    assert summary["total budget"] == 165000 and summary["total unspent"] == 0
    assert summary["programs funded"] == 2 and summary["trainees"] == 112.5
    assert summary["outcome value, rounded allocation"] == pytest.approx(96)
    money_columns = {
        "Programs": ["amount", "amount 2026", "amount 2027"],
        "Regions": ["amount", "population"],
        "Jurisdictions": ["amount", "joint_amount", "contributed", "population"],
        "Funds": ["budget", "carried_in", "allocated", "carried_out", "unspent"],
    }
    for sheet, columns in money_columns.items():
        rows, tot = _data_and_total(wb[sheet])
        for c in columns:
            assert tot[c] == sum(r[c] for r in rows), (sheet, c)
            assert all(type(r[c]) is int for r in [*rows, tot]), (sheet, c)
        if "amount" in columns:
            assert tot["amount"] == total, sheet
    _, funds_total = _data_and_total(wb["Funds"])
    assert funds_total["allocated"] == total and funds_total["budget"] == 165000


def test_programs_regions_jurisdictions_against_hand_figures(r1):
    _, _, wb = r1
    programs, _ = _data_and_total(wb["Programs"])
    by_id = {r["program_id"]: r for r in programs}
    assert (by_id["P1"]["amount 2026"], by_id["P1"]["amount 2027"]) == (30000, 30000)
    assert by_id["P1"]["status"] == "fully funded"  # at its 30-trainee cap in both periods
    assert by_id["P1"]["reason"].startswith("capped by capacity: 30 trainees per period")
    assert by_id["P2"]["status"] == "funded partly"  # every budget it can use is spent
    assert "budget ran out at the margin" in by_id["P2"]["reason"]
    assert by_id["P3"]["status"] == "gated" and by_id["P3"]["amount"] == 0
    assert "pilot P1" in by_id["P3"]["reason"]
    assert by_id["P1"]["share"] == pytest.approx(60000 / 165000)
    assert wb["Programs"]["L2"].number_format == "0.0%"

    regions, _ = _data_and_total(wb["Regions"])
    b1 = next(r for r in regions if r["region_id"] == "B1")
    assert b1["per_capita"] == pytest.approx(105000 / 3000)

    juris, _ = _data_and_total(wb["Jurisdictions"])
    a = next(r for r in juris if r["jurisdiction"] == "A")
    # JIF money delivered in A: 20000 + 30000 of 150000; A paid 60% of JIF.
    assert a["joint_amount"] == 50000
    assert a["contribution_share"] == pytest.approx(0.6)
    assert a["ratio"] == pytest.approx((50000 / 150000) / 0.6)


def test_rules_sheet_lists_each_rule_with_its_values(r1):
    solution, _, wb = r1
    rows = _table(wb["Rules"])
    assert [r["rule_id"] for r in rows] == list(solution.rules["rule_id"])
    rule = rows[0]
    assert rule["achieved"] == pytest.approx(105000 / 3000) and rule["target"] == 10
    assert rule["binding"] == "no"
    assert rule["description"] == "-B gets 100 per head"
    assert wb["Rules"]["B2"].data_type == "s"


def test_disbursements_are_the_hand_split_and_add_up_per_allocation(r1):
    _, _, wb = r1
    rows, _ = _data_and_total(wb["Disbursements"])
    got = [(r["program_id"], r["fund_id"], r["period"], r["tranche"], r["amount"],
            r["due_period"], r["condition"]) for r in rows]
    assert got == R1_DISBURSEMENTS
    per_key: dict[tuple, int] = {}
    for r in rows:
        key = (r["program_id"], r["fund_id"], r["period"])
        per_key[key] = per_key.get(key, 0) + r["amount"]
    expected: dict[tuple, int] = {}
    for (p, _r, f, t), amount in R1_ALLOCATION.items():
        expected[(p, f, t)] = expected.get((p, f, t), 0) + amount
    assert per_key == expected


def test_cash_flow_is_the_hand_disbursements_by_due_period_and_fund(r1):
    _, _, wb = r1
    rows, total = _data_and_total(wb["Cash flow"])
    due: dict[tuple[str, str], int] = {}
    for _p, fund, _t, _tr, amount, due_period, _c in R1_DISBURSEMENTS:
        due[(due_period, fund)] = due.get((due_period, fund), 0) + amount
    periods = ["2026", "2027", "2027+1", "2027+2"]  # the round's periods, then past its end
    assert [r["due_period"] for r in rows] == periods
    for r in rows:
        for fund in ("JIF", "PUB", "EMP"):
            assert r[fund] == due.get((r["due_period"], fund), 0), (r["due_period"], fund)
        assert r["total"] == sum(r[f] for f in ("JIF", "PUB", "EMP"))
    assert total["total"] == 165000 == sum(due.values())
    assert total["JIF"] == sum(v for (_d, f), v in due.items() if f == "JIF")


# --- safety ---------------------------------------------------------------------------------


def test_input_text_that_looks_like_a_formula_stays_literal_text(r1):
    _, path, wb = r1
    literal = {HYPERLINK, "+1+1", DDE, "@Alpha", "-joint", "+title", "#N/A", "=odd",
               "-B gets 100 per head"}
    seen = set()
    for ws in wb:
        for row in ws.iter_rows():
            for cell in row:
                if cell.value in literal:
                    assert cell.data_type == "s", (ws.title, cell.coordinate)
                    seen.add(cell.value)
    assert seen == literal
    names = {r["program_id"]: r["program"] for r in _data_and_total(wb["Allocations"])[0]}
    assert names == {"P1": HYPERLINK, "P2": "+1+1"}
    with zipfile.ZipFile(path) as z:  # no formula element anywhere in the workbook
        for name in z.namelist():
            if name.startswith("xl/worksheets/"):
                assert b"<f>" not in z.read(name) and b"<f " not in z.read(name), name


def test_round_workbooks_store_every_string_as_text(tmp_path):
    # write_round_workbook is how tests and generators build rounds: a name like
    # =HYPERLINK(...) or a '#N/A' note must be stored as the text given, never as a
    # formula or an error value, and read back unchanged.
    sheets = r1_sheets()
    sheets["Programs"][2]["sector"] = "#N/A"
    odd = openpyxl.load_workbook(write_round_workbook(tmp_path / "odd.xlsx", sheets))
    assert odd["Programs"]["C4"].value == "#N/A" and odd["Programs"]["C4"].data_type == "s"
    path = write_round_workbook(tmp_path / "round.xlsx", r1_sheets())
    wb = openpyxl.load_workbook(path)
    cells = {c.value: c for ws in wb for row in ws.iter_rows() for c in row}
    for text in (HYPERLINK, DDE, "+1+1", "@Alpha", "-joint", "+title", "program_id"):
        assert cells[text].data_type == "s", text
    with zipfile.ZipFile(path) as z:
        for name in z.namelist():
            if name.startswith("xl/worksheets/"):
                assert b"<f>" not in z.read(name) and b"<f " not in z.read(name), name
    rnd = load_round(path).round
    assert rnd.settings.title == "+title"
    # A formula is written only when asked for, with no saved result (the reader refuses it).
    sheets = r1_sheets()
    sheets["Budgets"][0]["amount"] = Formula("=SUM(1,2)")
    formula = write_round_workbook(tmp_path / "formula.xlsx", sheets)
    cell = openpyxl.load_workbook(formula)["Budgets"]["C2"]
    assert cell.data_type == "f" and cell.value == "=SUM(1,2)"
    with pytest.raises(InputError, match="Budgets!C2"):
        load_round(formula)
    assert [p.name for p in rnd.programs][:2] == [HYPERLINK, "+1+1"]


def test_notes_list_every_normalisation(r1):
    _, _, wb = r1
    assert _table(wb["Notes"]) == [{"cell": "Programs!C3", "header": "stage", "found": "#N/A",
                                    "used": "established", "why": "=odd"}]


def test_audit_records_versions_options_digests(r1):
    import allocator

    _, _, wb = r1
    audit = _kv(wb["Audit"])
    assert audit["version: allocator"] == allocator.__version__
    assert audit["version: highspy"] == "9.9"  # given by the caller, wins over the lookup
    assert audit["version: pyomo"] and audit["version: python"]
    assert audit["solver option: time_limit_s"] == 60
    assert audit["input digest"] == "abc" and audit["output digest"] == "def"
    assert audit["run id"] == "run-1" and audit["record folder"] == "models/R1/run-1"
    summary = _kv(wb["Summary"])
    assert summary["run id"] == "run-1" and summary["input digest"] == "abc"
    assert summary["round_id"] == "R1" and summary["currency"] == "EUR"


def test_report_tables_are_the_workbook_tables(r1):
    solution, _, wb = r1
    tables = report_tables(solution, run_id="run-1", input_digest="abc", output_digest="def")
    assert list(tables) == list(SHEETS)
    for name in ("Allocations", "Programs", "Funds", "Disbursements"):
        frame = tables[name]
        assert list(frame.columns) == HEADERS[name]
        sheet = _table(wb[name])
        assert len(frame) == len(sheet)
        assert frame["amount" if "amount" in frame else "allocated"].tolist() == \
            [r["amount" if "amount" in r else "allocated"] for r in sheet]


# --- decimals and carry-over ----------------------------------------------------------------


def test_cent_unit_carry_over_and_currency_format(tmp_path):
    # Q1 can take 75 per period (10 trainees x 7.5). F (carry-over) has 100.55 in 2026 and
    # G 1.01 in 2026 only: all 101.56 can be spent over the two periods, so it is.
    sheets = {
        "Round": {"round_id": "R2", "currency": "USD", "periods": "2026, 2027",
                  "rounding_unit": 0.01},
        "Regions": [{"region_id": "X1", "jurisdiction": "X", "population": 10}],
        "Funds": [{"fund_id": "F", "kind": "public", "owner": "X", "carry_over": "yes"},
                  {"fund_id": "G", "kind": "public", "owner": "X"}],
        "Budgets": [{"fund_id": "F", "period": "2026", "amount": 100.55},
                    {"fund_id": "G", "period": "2026", "amount": 1.01}],
        "Programs": [{"program_id": "Q1", "regions": "X1", "cost_per_trainee": 7.5,
                      "max_trainees": 10, "employment_rate": 0.5}],
        "Objective": [{"metric": "employment_rate", "weight": 1}],
    }
    solution = _solve(tmp_path, sheets)
    path = write_report(solution, tmp_path / "R2.xlsx")
    wb = openpyxl.load_workbook(path)
    cents = Decimal("0.01")
    alloc, alloc_total = _data_and_total(wb["Allocations"])
    assert Decimal(repr(alloc_total["amount"])) == Decimal("101.56")
    amounts = [Decimal(repr(r["amount"])) for r in alloc]
    assert all(a % cents == 0 for a in amounts)
    assert sum(amounts) == Decimal("101.56")
    assert wb["Allocations"]["G2"].number_format == '#,##0.00 "USD"'
    assert Decimal(repr(_kv(wb["Summary"])["total allocated"])) == Decimal("101.56")

    funds, total = _data_and_total(wb["Funds"])
    d = {(r["fund_id"], r["period"]): {k: Decimal(repr(v)) for k, v in r.items()
                                       if isinstance(v, int | float)} for r in funds}
    for row in d.values():  # what came in = what went out, per fund and period
        assert row["budget"] + row["carried_in"] == \
            row["allocated"] + row["carried_out"] + row["unspent"]
    assert d[("F", "2026")]["carried_out"] > 0  # 2026 can only use 75 of 101.56
    assert d[("F", "2027")]["carried_in"] == d[("F", "2026")]["carried_out"]
    assert d[("F", "2027")]["carried_out"] == 0  # nothing carries past the last period
    assert d[("G", "2026")]["carried_out"] == 0  # G does not carry over
    assert Decimal(repr(total["unspent"])) == Decimal(0)
    assert Decimal(repr(total["allocated"])) == Decimal("101.56")


def test_a_round_with_no_money_still_gives_a_complete_report(tmp_path):
    sheets = r1_sheets()
    sheets["Budgets"] = [{"fund_id": "JIF", "period": "2026", "amount": 0}]
    del sheets["Rules"]
    solution = _solve(tmp_path, sheets)
    wb = openpyxl.load_workbook(write_report(solution, tmp_path / "R0.xlsx"))
    assert wb.sheetnames == list(SHEETS)
    # header and a total row of zero: nothing allocated, nothing to disburse
    for sheet in ("Allocations", "Disbursements"):
        rows, total = _data_and_total(wb[sheet])
        assert rows == [] and total["amount"] == 0, sheet
    assert _kv(wb["Summary"])["total allocated"] == 0
    programs, total = _data_and_total(wb["Programs"])
    assert total["amount"] == 0
    status = {r["program_id"]: (r["status"], r["reason"]) for r in programs}
    assert status["P1"][0] == status["P2"][0] == "not eligible"
    assert "JIF: no budget in the program's periods" in status["P1"][1]
    assert status["P3"] == ("gated", "gated: its pilot P1 did not meet its targets "
                                     "(has no Performance rows)")
    assert wb["Prices"].max_row == 1  # nothing is spent, so no budget has a price row
    assert _table(wb["Rules"]) == []


# --- atomic writing -------------------------------------------------------------------------


def test_a_failed_write_keeps_the_old_report_and_leaves_no_temp_file(r1, tmp_path, monkeypatch):
    solution, _, _ = r1
    target = tmp_path / "R1.xlsx"
    write_report(solution, target)
    before = target.read_bytes()

    def broken_save(self, filename):
        Path(filename).write_bytes(b"half a workbook")
        raise OSError("disk full")

    monkeypatch.setattr(openpyxl.Workbook, "save", broken_save)
    with pytest.raises(OSError, match="disk full"):
        write_report(solution, target, run_id="second")
    assert target.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["R1.xlsx"]


def test_a_failure_while_streaming_rows_keeps_the_old_report(r1, tmp_path, monkeypatch):
    # The rows are streamed into the file openpyxl saved; failing half-way through them must
    # leave the previous report as it was, and no temporary file.
    solution, _, _ = r1
    target = tmp_path / "R1.xlsx"
    write_report(solution, target)
    before = target.read_bytes()
    real = excel_module.rows_xml

    def half_then_fail(*args, **kwargs):
        yield from itertools.islice(real(*args, **kwargs), 1)
        raise OSError("disk full")

    monkeypatch.setattr(excel_module, "rows_xml", half_then_fail)
    with pytest.raises(OSError, match="disk full"):
        write_report(solution, target, run_id="second")
    assert target.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["R1.xlsx"]


@pytest.fixture
def umask():
    """Run a test under a given umask; the process's own is restored afterwards."""
    old = os.umask(0o022)
    os.umask(old)
    yield os.umask
    os.umask(old)


@pytest.mark.parametrize(("mask", "file_mode", "dir_mode"), [
    (0o022, 0o644, 0o755),
    (0o027, 0o640, 0o750),
    (0o077, 0o600, 0o700),
])
def test_written_files_and_folders_get_the_umask_permissions(r1, tmp_path, umask, mask,
                                                             file_mode, dir_mode):
    solution, _, _ = r1
    umask(mask)
    report = write_report(solution, tmp_path / "out" / "R1.xlsx")
    assert stat.S_IMODE(report.stat().st_mode) == file_mode  # not mkstemp's 0600
    with atomic_dir(tmp_path / "records" / "run-1") as folder:
        (folder / "round.json").write_text("{}")
    assert stat.S_IMODE((tmp_path / "records" / "run-1").stat().st_mode) == dir_mode
    assert sorted(p.name for p in (tmp_path / "records").iterdir()) == ["run-1"]


def test_umask_is_read_without_proc_too(monkeypatch, umask):
    umask(0o027)
    assert current_umask() == 0o027

    def no_proc(*_a, **_k):
        raise OSError("no /proc here")

    monkeypatch.setattr("allocator.atomic.open", no_proc, raising=False)
    assert current_umask() == 0o027
    assert os.umask(0o027) == 0o027  # reading it did not change it


def test_leftovers_of_a_killed_run_are_hidden_and_never_taken_for_results(r1, tmp_path):
    solution, _, _ = r1
    # What a SIGKILL mid-write leaves: atomic_path's and api.run's staged reports, and
    # atomic_dir's unfinished record folder (with files in it, but never renamed).
    stale_file = tmp_path / ".R1.xlsx.k3j4l5.tmp"
    stale_file.write_bytes(b"half a workbook")
    staged = tmp_path / ".R1.xlsx.20260101T000000Z-abc.tmp"
    staged.write_bytes(b"half a workbook")
    stale_dir = tmp_path / "models" / "R1" / ".run-1.x8y9z0.tmp"
    stale_dir.mkdir(parents=True)
    (stale_dir / "round.json").write_text("{}")
    for p in (stale_file, staged, stale_dir):
        assert is_leftover(p) and p.name.startswith(".")
    report = write_report(solution, tmp_path / "R1.xlsx")
    assert not is_leftover(report) and not is_leftover(tmp_path / "models" / "R1" / "run-1")
    assert not is_leftover(tmp_path / ".tmp") and not is_leftover(tmp_path / "R1.tmp")
    # The next run neither uses nor renames the leftovers; they stay as they were.
    assert openpyxl.load_workbook(report).sheetnames == list(SHEETS)
    assert stale_file.read_bytes() == b"half a workbook" and stale_dir.is_dir()
    visible = sorted(p.name for p in tmp_path.iterdir() if not is_leftover(p))
    assert visible == ["R1.xlsx", "models"]


# --- the pieces -----------------------------------------------------------------------------


def _tranches(shares: list[float], dues: list[int] | None = None) -> list[TrancheRow]:
    dues = dues if dues is not None else list(range(len(shares)))
    return [TrancheRow(fund_kind="joint", tranche=f"t{i}", share=s, due=d)
            for i, (s, d) in enumerate(zip(shares, dues, strict=True))]


@pytest.mark.parametrize(("units", "shares", "dues", "parts"), [
    (20, [0.333, 0.333, 0.334], None, [8, 6, 6]),  # floors 6,6,6; 2 left to the earliest
    (30, [0.333, 0.333, 0.334], None, [11, 9, 10]),  # floors 9,9,10 (10.02)
    (69, [0.4, 0.4, 0.2], None, [29, 27, 13]),  # 27.6, 27.6, 13.8 -> 27,27,13 + 2
    (1, [0.5, 0.5], None, [1, 0]),
    (10, [0.1, 0.2, 0.7], None, [1, 2, 7]),  # exact decimals stay exact (no float 0.1 drift)
    (0, [0.3, 0.7], None, [0, 0]),
    (7, [0.5, 0.5], [1, 0], [3, 4]),  # the earliest due, not the first listed
    (7, [0.25, 0.25, 0.5], [1, 0, 0], [1, 3, 3]),  # equal dues: the first listed of them
])
def test_split_tranches_remainder_to_the_earliest_tranche(units, shares, dues, parts):
    assert split_tranches(units, _tranches(shares, dues)) == parts


def test_split_tranches_always_adds_up():
    for units in range(0, 200, 7):
        for shares in ([1 / 3, 1 / 3, 1 / 3], [0.15, 0.35, 0.5], [0.999, 0.001]):
            parts = split_tranches(units, _tranches(shares))
            assert sum(parts) == units and min(parts) >= 0


@pytest.mark.parametrize(("units", "shares", "parts"), [
    (20, [0.333, 0.333, 0.334], [7, 6, 7]),
    (1, [0.5, 0.5], [1, 0]),  # a tie goes to the earlier part
    (10, [0.1, 0.2, 0.7], [1, 2, 7]),
])
def test_split_units_by_largest_remainder(units, shares, parts):
    assert split_units(units, shares) == parts


def test_due_label_past_the_last_period():
    periods = ["2026", "2027", "2028"]
    assert due_label(periods, "2026", 0) == "2026"
    assert due_label(periods, "2027", 1) == "2028"
    assert due_label(periods, "2028", 1) == "2028+1"
    assert due_label(periods, "2027", 3) == "2028+2"


# --- the streamed ledgers ---------------------------------------------------------------------


@pytest.mark.parametrize("shares", [
    [0.333, 0.333, 0.334], [0.5, 0.5], [1.0], [0.1, 0.2, 0.7], [1 / 3, 1 / 3, 1 / 3],
    [0.15, 0.35, 0.5], [0.999, 0.001], [0.25, 0.25, 0.25, 0.25], [0.6, 0.4],
])
def test_split_tranches_many_is_split_tranches_row_by_row(shares):
    units = np.array([0, 1, 2, 3, 7, 19, 20, 30, 80, 99, 1000, 12345, 10**9, 10**12], np.int64)
    trs = _tranches(shares, list(reversed(range(len(shares)))))  # the last listed is earliest
    got = split_tranches_many(units, trs)
    assert got.shape == (len(units), len(shares))
    assert got.tolist() == [split_tranches(int(u), trs) for u in units]


def test_money_list_is_money_for_any_rounding_unit():
    units = np.array([0, 1, 3, 7, 10, 33, 100, 101, 12345, 99999, 10**9], np.int64)
    for unit in ("0.01", "0.05", "0.25", "2.5", "1000", "1", "0.1", "0.001"):
        ledger = SimpleNamespace(unit=Decimal(unit), whole_unit=Decimal(unit) % 1 == 0)
        got = _Ledger.money_list(ledger, units)  # type: ignore[arg-type]
        want = [_Ledger.money(ledger, u) for u in units.tolist()]  # type: ignore[arg-type]
        assert got == want and [type(g) for g in got] == [type(w) for w in want], unit


def _cent_round(n_programs: int) -> dict:
    return {
        "Round": {"round_id": "C1", "currency": "USD", "periods": "2026, 2027",
                  "rounding_unit": 0.01},
        "Regions": [{"region_id": "X1", "jurisdiction": "X", "population": 10},
                    {"region_id": "Y1", "jurisdiction": "Y", "population": 7}],
        "Funds": [{"fund_id": "F", "kind": "joint", "owner": "joint", "carry_over": "yes"},
                  {"fund_id": "G", "kind": "public", "owner": "X"}],
        "Budgets": [{"fund_id": "F", "period": "2026", "amount": 1234.57},
                    {"fund_id": "F", "period": "2027", "amount": 99.99},
                    {"fund_id": "G", "period": "2026", "amount": 10.01},
                    {"fund_id": "G", "period": "2027", "amount": 0.03}],
        "Tranches": [{"fund_kind": "joint", "tranche": "a", "share": 1 / 3, "due": 0},
                     {"fund_kind": "joint", "tranche": "b", "share": 1 / 3, "due": 1},
                     {"fund_kind": "joint", "tranche": "c", "share": 1 / 3, "due": 2}],
        "Programs": [{"program_id": f"Q{i}", "regions": "X1" if i % 2 else "Y1",
                      "cost_per_trainee": 3.33 + i, "max_trainees": 7 + i,
                      "employment_rate": 0.5 + i / 100} for i in range(n_programs)],
        "Objective": [{"metric": "employment_rate", "weight": 1}],
    }


def test_cent_totals_add_up_to_the_cent_in_every_sheet(tmp_path, monkeypatch):
    # Blocks of 4 rows: the streamed ledgers cross block boundaries several times.
    monkeypatch.setattr("allocator.excel.BLOCK_ROWS", 4)
    solution = _solve(tmp_path, _cent_round(12))
    wb = openpyxl.load_workbook(write_report(solution, tmp_path / "C1.xlsx"))
    cents = Decimal("0.01")

    def dec(v) -> Decimal:
        return Decimal(repr(v)) if v is not None else Decimal(0)

    allocated = dec(_kv(wb["Summary"])["total allocated"])
    assert allocated > 0
    for sheet in ("Allocations", "Disbursements"):
        rows, total = _data_and_total(wb[sheet])
        assert dec(total["amount"]) == allocated, sheet
        assert len(rows) > 4, sheet
        assert all(dec(r["amount"]) % cents == 0 for r in rows), sheet
        assert sum(dec(r["amount"]) for r in rows) == allocated, sheet
    for sheet in ("Programs", "Regions", "Jurisdictions"):
        rows, total = _data_and_total(wb[sheet])
        assert sum(dec(r["amount"]) for r in rows) == dec(total["amount"]) == allocated, sheet
    rows, total = _data_and_total(wb["Funds"])
    assert sum(dec(r["allocated"]) for r in rows) == dec(total["allocated"]) == allocated
    assert wb["Disbursements"]["G2"].number_format == '#,##0.00 "USD"'
    n = len(_data_and_total(wb["Allocations"])[0])
    assert wb["Allocations"].auto_filter.ref == f"A1:H{n + 1}"


def test_block_size_does_not_change_the_workbook(r1, tmp_path, monkeypatch):
    solution, _, wb = r1
    monkeypatch.setattr("allocator.excel.BLOCK_ROWS", 1)
    small = openpyxl.load_workbook(write_report(solution, tmp_path / "R1.xlsx", run_id="run-1",
                                                input_digest="abc", output_digest="def",
                                                record_dir="models/R1/run-1",
                                                versions={"highspy": "9.9"}))
    for name in SHEETS:
        if name == "Notes":  # the fixture's report has notes, this one none
            continue
        got = [[(c.value, c.number_format, c.font.bold) for c in r] for r in small[name].iter_rows()]
        want = [[(c.value, c.number_format, c.font.bold) for c in r] for r in wb[name].iter_rows()]
        assert got == want, name


def test_no_report_cell_holds_more_than_excel_can(tmp_path):
    """A program name at Excel's own limit (32,767 characters) is quoted inside longer texts
    (the Sensitivity sheet's sentences); every cell is cut to the limit and marked."""
    from allocator import api
    from allocator.safetext import CELL_TEXT_MAX, CUT_MARK
    from tests.rounds import sheets, write

    data = sheets()
    data["Programs"][0]["name"] = "N" * CELL_TEXT_MAX
    run = api.run(write(tmp_path / "long.xlsx", data), report=tmp_path / "r.xlsx",
                  records=tmp_path / "m")
    wb = openpyxl.load_workbook(run.report, read_only=True)
    texts = [v for ws in wb.worksheets for row in ws.iter_rows(values_only=True) for v in row
             if isinstance(v, str)]
    assert max(len(t) for t in texts) <= CELL_TEXT_MAX
    assert "N" * CELL_TEXT_MAX in texts  # the name itself, whole
    assert any(t.endswith(CUT_MARK) and "N" * 1000 in t for t in texts)  # a sentence around it
