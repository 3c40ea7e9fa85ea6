"""Every problem of a workbook is listed at once, each with its cell (issue 20, item 5).

Row-level problems (a bad number, a bad choice) used to stop the cross-sheet checks, and a
cross-sheet problem stopped the filter checks: a workbook with four mistakes listed three.
"""

from __future__ import annotations

import pytest

from allocator.errors import InputError
from allocator.validate import load_round
from tests.rounds import sheets, write


def problems(tmp_path, data) -> list[str]:
    with pytest.raises(InputError) as info:
        load_round(write(tmp_path / "bad.xlsx", data))
    return [str(issue) for issue in info.value.issues]


def test_many_mistakes_at_once_are_each_named_with_their_cell(tmp_path):
    data = sheets()
    # Funds columns: A fund_id, B kind, C owner, D cofinancing_cap, E eligible, F carry_over.
    # Programs columns: A program_id, B name, C sector, D stage, E regions, F cost_per_trainee,
    # G max_trainees, H min_trainees, I targets, J pilot_of; rows 2-4 are P1-P3.
    data["Programs"][0]["regions"] = "A1, Z9"          # unknown region
    data["Programs"][1]["cost_per_trainee"] = "abc"     # bad number ...
    data["Programs"][1]["pilot_of"] = "PX"              # ... and an unknown pilot in the same row
    data["Programs"][2]["stage"] = "beta"               # bad choice ...
    data["Programs"][2]["regions"] = "Q7"               # ... and an unknown region in that row
    data["Budgets"][0]["fund_id"] = "NOPE"              # unknown fund
    data["Budgets"][1]["period"] = 2030                 # unknown period
    data["Performance"] = [{"program_id": "P9", "metric": "employment_rate", "target": 1,
                            "achieved": 1}]            # unknown program
    data["Tranches"] = [{"fund_id": "GHOST", "tranche": "t1", "share": 1}]
    data["Rules"][0]["select"] = "colour=red"           # unknown filter key
    data["Rules"][2]["each"] = "county"                 # unknown `each` key
    assert problems(tmp_path, data) == [
        "Budgets!A2 fund_id: unknown fund 'NOPE'",
        "Budgets!B3 period: unknown period '2030' (the Round sheet lists 2026, 2027)",
        "Performance!A2 program_id: unknown program 'P9'",
        "Programs!E2 regions: unknown region 'Z9'",
        "Programs!F3 cost_per_trainee: expected a number, got 'abc'",
        "Programs!J3 pilot_of: unknown pilot program 'PX'",
        "Programs!D4 stage: expected one of pilot, scale_up, established, got 'beta'",
        "Programs!E4 regions: unknown region 'Q7'",
        "Rules!C2 select: unknown key 'colour' (known: carry_over, fund, jurisdiction, kind, "
        "owner, period, pilot_of, program, region, rural, sector, stage, target)",
        "Rules!D4 each: unknown key 'county' (known: carry_over, fund, jurisdiction, kind, "
        "owner, period, pilot_of, program, region, rural, sector, stage, target)",
        "Tranches!A2 fund_id: unknown fund 'GHOST'",
    ]


def test_a_row_left_out_for_a_bad_cell_is_still_known_to_other_sheets(tmp_path):
    """A fund whose row has a bad cell is named once, not again by every budget that uses it;
    a filter naming a program whose row has a bad cell is not called unknown either."""
    data = sheets()
    data["Funds"][0]["kind"] = "jointly"
    data["Programs"][0]["max_trainees"] = "many"
    data["Rules"][0]["select"] = "program=P1"
    assert problems(tmp_path, data) == [
        "Funds!B2 kind: expected one of joint, public, employer, learner_support, performance, "
        "got 'jointly'",
        "Programs!G2 max_trainees: expected a number, got 'many'",
    ]


def test_rows_left_out_still_have_their_filters_and_references_checked(tmp_path):
    data = sheets()
    data["Rules"][1]["value"] = "lots"                  # the rule's row is left out ...
    data["Rules"][1]["select"] = "fund=JIF; colour=red"  # ... its filter still checked
    data["Funds"][1]["cofinancing_cap"] = 2             # fund row refused by its bound ...
    data["Funds"][1]["owner"] = "Z"                     # ... its owner still checked
    data["Funds"][1]["eligible"] = "jurisdiction=C"     # ... and its filter's values
    found = problems(tmp_path, data)
    assert found == [
        "Funds!C3 owner: owner must be 'joint' or a jurisdiction of the Regions sheet (A, B), "
        "got 'Z'",
        "Funds!D3 cofinancing_cap: must be at most 1, got 2",
        "Funds!E3 eligible: jurisdiction=C: no region has that value (known: A, B)",
        "Rules!C3 select: unknown key 'colour' (known: carry_over, fund, jurisdiction, kind, "
        "owner, period, pilot_of, program, region, rural, sector, stage, target)",
        "Rules!F3 value: expected a number, got 'lots'",
    ]


def test_a_round_sheet_problem_does_not_hide_the_other_sheets(tmp_path):
    data = sheets()
    data["Round"]["rounding_unit"] = "ten"
    data["Programs"][0]["regions"] = "Z9"
    assert problems(tmp_path, data) == [
        "Programs!E2 regions: unknown region 'Z9'",
        "Round!B4 value: expected a number, got 'ten'",
    ]


def test_a_missing_column_is_named_once_and_does_not_make_every_reference_unknown(tmp_path):
    """A sheet whose rows cannot be read (a required column is missing) holds ids nobody can
    know: references to it are not called unknown, and it is not called empty; the other
    sheets' own problems are still listed."""
    data = sheets()
    for program in data["Programs"]:
        del program["regions"]
    for fund in data["Funds"]:
        del fund["kind"]
    data["Performance"] = [{"program_id": "P1", "metric": "employment_rate", "target": 1,
                            "achieved": 1}]
    data["Budgets"][0]["period"] = 2099
    data["Rules"][0]["select"] = "colour=red"
    assert problems(tmp_path, data) == [
        "Budgets!B2 period: unknown period '2099' (the Round sheet lists 2026, 2027)",
        "Funds!row 1 kind: the required column 'kind' is missing",
        "Programs!row 1 regions: the required column 'regions' is missing",
        "Rules!C2 select: unknown key 'colour' (known: carry_over, fund, jurisdiction, kind, "
        "owner, period, pilot_of, program, region, rural, sector, stage, target)",
    ]
