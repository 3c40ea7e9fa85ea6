"""Forged decision records, made by code from a genuine record the way a careful forger would.

Each `Forgery` changes a copy of a genuine record and then, like a forger who knows the format,
rewrites every digest the change breaks (the file's entry in manifest.json, and output_digest /
input_digest where the allocation or the round changed), so a bytes-only check says nothing. It
says what `allocator verify` must print: a phrase naming the difference.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from allocator.round import Round


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def rehash(folder: Path, *, output: bool = False, input_: bool = False) -> None:
    """What a forger does after an edit: every listed file's digest made to match again."""
    path = folder / "manifest.json"
    manifest = json.loads(path.read_text())
    manifest["files"] = {name: sha(folder / name) for name in manifest["files"] if (folder / name).is_file()}
    if output:
        manifest["output_digest"] = sha(folder / "allocation.csv")
    if input_:
        rnd = Round.model_validate_json((folder / "round.json").read_text())
        manifest["input_digest"] = rnd.digest()
    path.write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")


def edit_json(name: str, fn: Callable[[dict], None]) -> Callable[[Path], None]:
    def edit(folder: Path) -> None:
        data = json.loads((folder / name).read_text())
        fn(data)
        (folder / name).write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")

    return edit


def edit_text(name: str, fn: Callable[[str], str]) -> Callable[[Path], None]:
    def edit(folder: Path) -> None:
        path = next(folder.glob(name))
        text = path.read_text()
        new = fn(text)
        assert new != text, f"the forgery did not change {path.name}"
        path.write_text(new)

    return edit


def first_coefficient(text: str, factor: float = 2.0) -> str:
    """Multiply the first constraint coefficient of the COLUMNS section (not the objective)."""
    lines = text.splitlines()
    start = lines.index("COLUMNS")
    for i in range(start + 1, len(lines)):
        parts = lines[i].split()
        if len(parts) == 3 and parts[1] != "Obj" and "MARKER" not in lines[i]:
            lines[i] = f"    {parts[0]}  {parts[1]}  {float(parts[2]) * factor!r}"
            return "\n".join(lines) + "\n"
    raise AssertionError("no coefficient found")


def objective_coefficient(text: str) -> str:
    return re.sub(
        r"^(    x0\s+Obj\s+)(\S+)$",
        lambda m: m.group(1) + repr(float(m.group(2)) * 1.5),
        text,
        count=1,
        flags=re.M,
    )


def rhs(text: str) -> str:
    return re.sub(
        r"^(    RHS_V\s+spend_fund_period_max\[PUB,2026\]\s+)(\S+)$",
        lambda m: m.group(1) + "31000",
        text,
        count=1,
        flags=re.M,
    )


def column_bound(text: str) -> str:
    """Give column x0 an upper bound it does not have."""
    return text.replace("BOUNDS\n", "BOUNDS\n UP BOUND     x0        5\n", 1)


def rename_column(text: str) -> str:
    return re.sub(r"^    x0(\s)", r"    xforged\1", text, flags=re.M)


def extra_row(text: str) -> str:
    text = text.replace("COLUMNS\n", " L  forged_cap\nCOLUMNS\n", 1)
    return re.sub(r"^(    x0\s+Obj\s+\S+)$", r"\1\n    x0        forged_cap  1", text, count=1, flags=re.M)


def drop_integrality(text: str) -> str:
    """The on/off columns made continuous in [0, 1]: markers dropped, binary bounds as UP 1."""
    lines = [ln for ln in text.splitlines() if "MARKER" not in ln]
    lines = [re.sub(r"^ BV (BOUND\s+\S+)\s*$", r" UP \1  1", ln) for ln in lines]
    return "\n".join(lines) + "\n"


def minimise(text: str) -> str:
    return text.replace("OBJSENSE\n  MAX\n", "OBJSENSE\n  MIN\n", 1)


def swap_stages(folder: Path) -> None:
    a, b = folder / "stage2_outcome_lp.mps", folder / "stage3_tiebreak.mps"
    ta, tb = a.read_bytes(), b.read_bytes()
    a.write_bytes(tb)
    b.write_bytes(ta)


def _move_unit(folder: Path, source: int, target: int) -> None:
    """Move one rounding unit from allocation.csv's line `source` to line `target`."""
    path = folder / "allocation.csv"
    lines = path.read_text().splitlines()
    for i, delta in ((source, -1), (target, +1)):
        cells = lines[i].split(",")
        cells[-1] = str(int(cells[-1]) + delta)
        lines[i] = ",".join(cells)
    path.write_text("\n".join(lines) + "\n")


def allocation_amount(folder: Path) -> None:
    """Move one rounding unit from the first allocation row to the second."""
    _move_unit(folder, 1, 2)


def allocation_big(folder: Path) -> None:
    path = folder / "allocation.csv"
    lines = path.read_text().splitlines()
    cells = lines[1].split(",")
    cells[-1] = str(int(cells[-1]) + 5000)
    lines[1] = ",".join(cells)
    path.write_text("\n".join(lines) + "\n")


def allocation_zero_row(folder: Path) -> None:
    with (folder / "allocation.csv").open("a") as fh:
        fh.write("P3,B1,JIF,2027,0\n")


def allocation_rows_swapped(folder: Path) -> None:
    path = folder / "allocation.csv"
    lines = path.read_text().splitlines()
    lines[1], lines[2] = lines[2], lines[1]
    path.write_text("\n".join(lines) + "\n")


def stage_file_linked(folder: Path) -> None:
    """A stage file replaced by a link to a file outside the record (same bytes)."""
    import os

    outside = folder.parent / "elsewhere.mps"
    outside.write_bytes((folder / "stage1_outcome.mps").read_bytes())
    (folder / "stage1_outcome.mps").unlink()
    os.symlink(outside, folder / "stage1_outcome.mps")


def allocation_formula_row(folder: Path) -> None:
    with (folder / "allocation.csv").open("a") as fh:
        fh.write('=HYPERLINK("http://x"),A1,JIF,2026,1\n')


def round_budget(folder: Path) -> None:
    data = json.loads((folder / "round.json").read_text())
    data["budgets"][2]["amount"] = str(int(float(data["budgets"][2]["amount"])) + 10000)  # PUB 2026
    (folder / "round.json").write_text(json.dumps(data))


def remove_workbook(folder: Path) -> None:
    (folder / "workbook.xlsx").unlink()
    manifest = json.loads((folder / "manifest.json").read_text())
    del manifest["files"]["workbook.xlsx"]
    (folder / "manifest.json").write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")


def remove_versions(folder: Path) -> None:
    """versions.json gone (rehash drops it from the manifest): exact or lenient, who says?"""
    (folder / "versions.json").unlink()


def unit_to_other_program(folder: Path) -> None:
    """One unit from P1/A1/JIF to P2/B1/JIF (same fund and period): less outcome value."""
    _move_unit(folder, 1, 4)


def unlisted_folder(folder: Path) -> None:
    (folder / "amended").mkdir()
    (folder / "amended" / "allocation.csv").write_text("program_id,region_id,fund_id,period,amount\n")


def unlisted_dangling_link(folder: Path) -> None:
    import os

    os.symlink(folder.parent / "nowhere" / "approval.pdf", folder / "approval.pdf")


def unlisted_fifo(folder: Path) -> None:
    import os

    os.mkfifo(folder / "notes")


def linked(name: str) -> Callable[[Path], None]:
    """`name` replaced by a link to a copy outside the record (the same bytes)."""
    def edit(folder: Path) -> None:
        import os

        outside = folder.parent / f"outside-{name}"
        outside.write_bytes((folder / name).read_bytes() if (folder / name).exists() else b"{}")
        (folder / name).unlink(missing_ok=True)
        os.symlink(outside, folder / name)

    return edit


def duplicate_manifest_key(folder: Path) -> None:
    """A second `files` key listing two files only: which one counts depends on the reader."""
    path = folder / "manifest.json"
    manifest = json.loads(path.read_text())
    short = {k: manifest["files"][k] for k in ("round.json", "allocation.csv")}
    text = path.read_text().replace('"files": {', '"files": ' + json.dumps(short) + ',\n  "files": {', 1)
    path.write_text(text)


def crlf(name: str) -> Callable[[Path], None]:
    def edit(folder: Path) -> None:
        path = folder / name
        path.write_bytes(path.read_bytes().replace(b"\n", b"\r\n"))

    return edit


@dataclass
class Forgery:
    name: str
    edit: Callable[[Path], None]
    says: str  # a phrase `verify` must print (case-insensitive)
    output: bool = False  # also rewrite output_digest
    input_: bool = False  # also rewrite input_digest
    rehash: bool = True


def _stage(i: int, key: str, value: object) -> Callable[[dict], None]:
    def fn(d: dict) -> None:
        d["stages"][i][key] = value

    return fn


def forgeries() -> list[Forgery]:
    s1 = "stage1_outcome.mps"
    out = [
        Forgery(
            "mps_coefficient_doubled",
            edit_text(s1, first_coefficient),
            "stage1_outcome.mps: row spend_fund_cumulative_max[JIF,2026] column x0: coefficient "
            "recorded 2, re-built 1",
        ),
        Forgery(
            # Claiming another engine version turns a stage file's differences into warnings
            # only where the recorded file still reaches the recorded optimum; this one does not.
            "other_version_claimed_and_mps_coefficient_doubled",
            lambda f: (edit_json("versions.json", lambda d: d.update(allocator="0.0.1"))(f),
                       edit_text(s1, first_coefficient)(f)),
            "stage1_outcome.mps: row spend_fund_cumulative_max[JIF,2026] column x0: coefficient "
            "recorded 2, re-built 1",
        ),
        Forgery(
            "status_optimal_to_time_limit",
            edit_json("objectives.json", _stage(0, "status", "time_limit")),
            "objectives.json stage 1 (outcome) status: recorded 'time_limit', re-run 'optimal'",
        ),
        Forgery(
            "overall_status_changed",
            edit_json("objectives.json", lambda d: d.update(status="time_limit")),
            "objectives.json status: recorded 'time_limit'",
        ),
        Forgery(
            "stage_objective_changed",
            edit_json("objectives.json", _stage(0, "objective", 1.0)),
            "objectives.json stage 1 (outcome) objective: recorded 1.0",
        ),
        Forgery(
            "rounded_objective_changed",
            edit_json("objectives.json", lambda d: d.update(rounded_objective=99.0)),
            "rounded_objective: recorded 99.0",
        ),
        Forgery(
            "stage_name_changed",
            edit_json("objectives.json", _stage(2, "stage", "fair")),
            "stage 3 (tiebreak) stage: recorded 'fair'",
        ),
        Forgery(
            "allocation_unit_moved",
            allocation_amount,
            "allocation P1/A1/JIF/2026: recorded 43,999.00, re-solved 44,000.00",
            output=True,
        ),
        Forgery(
            "allocation_amount_raised",
            allocation_big,
            "allocation P1/A1/JIF/2026: recorded 49,000.00",
            output=True,
        ),
        Forgery(
            "allocation_formula_row",
            allocation_formula_row,
            'allocation =HYPERLINK("http://x")/A1/JIF/2026: recorded 1.00',
            output=True,
        ),
        Forgery("allocation_zero_row_added", allocation_zero_row,
                "allocation.csv line 6: recorded 'P3,B1,JIF,2027,0', the re-solved allocation writes "
                "'(end of file)'", output=True),
        Forgery("allocation_rows_swapped", allocation_rows_swapped, "allocation.csv line 2: recorded",
                output=True),
        Forgery(
            "allocation_changed_output_digest_kept",
            allocation_big,
            "allocation.csv: its SHA-256 differs from the manifest's output_digest",
        ),
        Forgery(
            "round_budget_changed",
            round_budget,
            "workbook.xlsx: the round it holds differs from round.json",
            input_=True,
        ),
        Forgery(
            "round_budget_changed_workbook_removed",
            lambda f: (round_budget(f), remove_workbook(f)),
            "row spend_fund_period_max[PUB,2026]: upper bound recorded 30000, re-built 40000",
            input_=True,
        ),
        Forgery(
            "round_changed_digest_kept",
            round_budget,
            "round.json: its canonical digest differs from the manifest's input_digest",
        ),
        Forgery(
            "mps_column_renamed",
            edit_text(s1, rename_column),
            "stage1_outcome.mps: column xforged: in the recorded file, not in the re-built program",
        ),
        Forgery(
            "mps_objective_coefficient",
            edit_text(s1, objective_coefficient),
            "stage1_outcome.mps: column x0: objective coefficient recorded",
        ),
        Forgery(
            "mps_rhs_changed",
            edit_text(s1, rhs),
            "row spend_fund_period_max[PUB,2026]: upper bound recorded 31000, re-built 30000",
        ),
        Forgery(
            "mps_column_bound",
            edit_text(s1, column_bound),
            "stage1_outcome.mps: column x0: upper bound recorded 5, re-built +inf",
        ),
        Forgery(
            "mps_extra_row",
            edit_text(s1, extra_row),
            "stage1_outcome.mps: row forged_cap: in the recorded file, not in the re-built program",
        ),
        Forgery(
            "mps_integrality_dropped",
            edit_text(s1, drop_integrality),
            "recorded continuous, re-built integer",
        ),
        Forgery(
            "mps_sense_flipped",
            edit_text(s1, minimise),
            "objective sense recorded minimise, re-built maximise",
        ),
        Forgery(
            "mps_section_renamed",
            edit_text(s1, lambda t: t.replace("ROWS", "ROWZ", 1)),
            "stage1_outcome.mps: dimensions recorded 0 rows x 13 columns, re-built 21 rows",
        ),
        Forgery(
            "mps_unreadable",
            edit_text(s1, lambda t: "not an MPS file\n"),
            "stage1_outcome.mps: HiGHS cannot read it",
        ),
        Forgery("stage_files_swapped", swap_stages, "stage2_outcome_lp.mps: dimensions recorded"),
        Forgery(
            "stage_file_removed",
            lambda f: (f / "stage3_tiebreak.mps").unlink(),
            "stage3_tiebreak.mps: missing",
        ),
        Forgery(
            "extra_stage_file",
            lambda f: (f / "stage4_extra.mps").write_text((f / "stage3_tiebreak.mps").read_text()),
            "stage4_extra.mps: not listed in the manifest",
        ),
        Forgery(
            "settings_time_limit",
            edit_json("settings.json", lambda d: d.update(time_limit_s=1.0)),
            "settings.json time_limit_s: recorded 1.0, the engine uses 60.0",
        ),
        Forgery(
            "settings_seed",
            edit_json("settings.json", lambda d: d["solver_options"].update(random_seed=7)),
            "settings.json solver_options",
        ),
        Forgery("relabelled_as_settlement", edit_json("manifest.json", lambda d: d.update(kind="settlement")),
                "manifest.json: kind 'settlement', but the folder holds a decision record's files",
                rehash=False),
        Forgery("unknown_kind", lambda f: (edit_json("manifest.json", lambda d: d.update(kind="memo"))(f),
                                           [p.unlink() for p in f.iterdir() if p.name != "manifest.json"]),
                "manifest.json: unknown record kind 'memo'", rehash=True),
        Forgery("stage_file_is_a_link", stage_file_linked,
                "stage1_outcome.mps: a symbolic link, not a file of the record", rehash=False),
        Forgery("mip_gap_changed", edit_json("objectives.json", _stage(0, "mip_gap", 0.05)),
                "objectives.json stage 1 (outcome) mip_gap: recorded 0.05, re-run 0.0"),
        Forgery("round_json_not_canonical", edit_text("round.json", lambda t: t + " "),
                "round.json: not the canonical JSON of the round it holds"),
        Forgery(
            "manifest_round_id",
            edit_json("manifest.json", lambda d: d.update(round_id="T2")),
            "manifest.json: round_id 'T2' differs from round.json's 'T1'",
            rehash=False,
        ),
        Forgery(
            "manifest_lists_outside_file",
            edit_json("manifest.json", lambda d: d["files"].update({"../outside.txt": "0" * 64})),
            "manifest.json lists '../outside.txt', which is not a file name inside the record",
            rehash=False,
        ),
        Forgery(
            "manifest_output_digest",
            edit_json("manifest.json", lambda d: d.update(output_digest="0" * 64)),
            "allocation.csv: its SHA-256 differs from the manifest's output_digest",
            rehash=False,
        ),
        Forgery(
            "manifest_not_json",
            edit_text("manifest.json", lambda t: t[:-5]),
            "manifest.json is not readable",
            rehash=False,
        ),
        Forgery(
            "file_changed_digest_kept",
            edit_text(s1, first_coefficient),
            "stage1_outcome.mps: its SHA-256 differs from the manifest",
            rehash=False,
        ),
        Forgery(
            "signature_json_garbage",
            lambda f: (f / "signature.json").write_text("{}"),
            "signature.json is not a readable signature",
            rehash=False,
        ),
        Forgery("versions_json_removed_and_unit_moved",
                lambda f: (remove_versions(f), allocation_amount(f)),
                "versions.json is missing: every decision record holds it", output=True),
        Forgery("versions_json_removed", remove_versions, "versions.json is missing"),
        Forgery(
            # another version may break a tie the other way, not make the allocation worth less
            "other_version_claimed_and_unit_moved_between_programs",
            lambda f: (edit_json("versions.json", lambda d: d.update(allocator="0.0.1"))(f),
                       unit_to_other_program(f)),
            "allocation.csv: the recorded amounts are worth 34.799940 in outcome value, the "
            "re-solved allocation 34.800000: money was moved between programs of different value",
            output=True,
        ),
        Forgery("unlisted_sub_folder", unlisted_folder,
                "amended: not listed in the manifest (added after the run) (a folder)", rehash=False),
        Forgery("unlisted_dangling_link", unlisted_dangling_link,
                "approval.pdf: not listed in the manifest (added after the run) (a symbolic link "
                "to nothing)", rehash=False),
        Forgery("unlisted_fifo", unlisted_fifo,
                "notes: not listed in the manifest (added after the run) (not a regular file",
                rehash=False),
        Forgery("manifest_is_a_link", linked("manifest.json"),
                "manifest.json is a symbolic link, not a file of the record", rehash=False),
        Forgery("signature_is_a_link", linked("signature.json"),
                "signature.json: a symbolic link, not a file of the record", rehash=False),
        Forgery("manifest_duplicate_key", duplicate_manifest_key,
                "manifest.json gives the key 'files' twice", rehash=False),
        Forgery("manifest_duplicate_kind", edit_text("manifest.json", lambda t: t.replace(
                    '"kind": "decision"', '"kind": "settlement",\n  "kind": "decision"', 1)),
                "manifest.json gives the key 'kind' twice", rehash=False),
        Forgery("allocation_crlf", crlf("allocation.csv"),
                "allocation.csv line 1: recorded 'program_id,region_id,fund_id,period,amount\\r\\n', "
                "the re-solved allocation writes 'program_id,region_id,fund_id,period,amount\\n'",
                output=True),
        Forgery("manifest_round_id_and_round_json", lambda f: (
                    edit_json("round.json", lambda d: d["settings"].update(round_id="T2"))(f),
                    edit_json("manifest.json", lambda d: d.update(round_id="T2"))(f)),
                "manifest.json: round_id 'T2', but the record lies in the round folder 'T1'",
                input_=True),
    ]
    names = [f.name for f in out]
    assert len(names) == len(set(names))
    return out


def forge(genuine: Path, target: Path, forgery: Forgery) -> Path:
    """A copy of the genuine record at `target` with the forgery applied and digests rewritten."""
    import shutil

    shutil.copytree(genuine, target)
    forgery.edit(target)
    if forgery.rehash:
        rehash(target, output=forgery.output, input_=forgery.input_)
    return target
