"""Decision records: one frozen, self-contained folder per run, and re-running it years later.

Stage 6 of the data flow. `models/<round_id>/<run_id>/` holds the canonical round (JSON), a copy
of the original workbook, solver settings and versions, the MPS file of every solved stage, the
allocation as CSV, the objective values per stage, and a manifest of SHA-256 digests.
`verify_record` re-solves the canonical round, compares allocations (exactly on the recording's
versions, else within one rounding unit at the same outcome value) and re-checks every rule with
the solver-free checker.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import platform
import shutil
import time
from dataclasses import dataclass
from decimal import Decimal
from importlib import metadata
from pathlib import Path

import highspy
import pandas as pd

import allocator
from allocator.atomic import atomic_dir
from allocator.engine import Solution
from allocator.manifest import (
    ALLOCATION_COLUMNS,
    ManifestError,
    Verification,
    check_digests,
    check_output_digest,
    check_place,
    first_difference,
    link_problems,
    new_run_id,
    read_manifest,
    sha256_file,
)
from allocator.round import Round, digest_of
from allocator.safetext import csv_text, csv_value
from allocator.signing import SigningKey, key_from_env, load_private, sign_record
from allocator.solve import SOLVER_OPTIONS, StageResult, Status, new_highs, write_mps

RECORD_FORMAT = 1
RECORD_KINDS = ("decision", "settlement")  # what a manifest's `kind` may say


def versions() -> dict[str, str]:
    """Engine, solver and runtime versions, as recorded and compared by `verify`."""
    out = {"allocator": allocator.__version__, "python": platform.python_version(),
           "platform": platform.platform(terse=True)}
    for pkg in ("pyomo", "highspy", "numpy", "scipy", "pandas", "openpyxl", "pydantic"):
        try:
            out[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:  # pragma: no cover
            out[pkg] = "missing"
    out["highs"] = new_highs().version()
    return out


def allocation_csv(solution: Solution) -> str:
    """The allocation as CSV text with exact decimal amounts (whole rounding units)."""
    unit = solution.round.settings.rounding_unit
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(ALLOCATION_COLUMNS)
    for row in solution.allocation.itertuples(index=False):
        amount = Decimal(int(row.units)) * unit
        # ids starting like a formula are refused at input; a round built in code gets the quote
        writer.writerow([csv_text(row.program_id), csv_text(row.region_id), csv_text(row.fund_id),
                         csv_text(row.period), format(amount.normalize(), "f")])
    return buf.getvalue()


@dataclass
class RecordPaths:
    """Where a record was written and the digests that identify it."""

    folder: Path
    run_id: str
    input_digest: str
    output_digest: str


def solver_settings(rnd: Round, method: str = "choose") -> dict[str, object]:
    return {"solver_options": dict(SOLVER_OPTIONS), "method": method,
            "time_limit_s": rnd.settings.time_limit_s, "mip_gap": rnd.settings.mip_gap}


# How the round was solved (allocator.plan.SolvePlan); records written before it hold none.
PLAN_FILE = "plan.json"


def write_record(solution: Solution, records_dir: Path, workbook: Path | None, *,
                 run_id: str | None = None, id_suffix: str = "", after_write=None,
                 sign_key: Path | SigningKey | None = None) -> RecordPaths:
    """Write the record folder atomically; `after_write(folder)` runs inside the transaction.

    `after_write` lets the caller write the report as part of the same all-or-nothing step: if
    it raises, no record is left behind. The manifest chains to the round's latest record
    (`previous`); it is signed with `sign_key`, or else with the key ALLOCATOR_SIGNING_KEY names.
    """
    from allocator.atomic import clean_leftovers
    from allocator.chain import previous_digest, round_records, writing
    from allocator.paths import inside

    rnd = solution.round
    canonical = rnd.canonical_json()
    digest = digest_of(canonical)
    key_path = sign_key if sign_key is not None else key_from_env()
    key = key_path if isinstance(key_path, SigningKey) or key_path is None else load_private(key_path)
    round_dir = inside(Path(records_dir), rnd.settings.round_id)
    clean_leftovers(round_dir)
    with writing(round_dir):
        # Named under the round's lock, after its latest record: the names sort in chain order.
        earlier = round_records(round_dir)
        run_id = run_id or new_run_id(digest, earlier[-1].name if earlier else None) + id_suffix
        target = inside(round_dir, run_id)
        with atomic_dir(target) as tmp:
            (tmp / "round.json").write_text(canonical, encoding="utf-8")
            if workbook is not None:
                shutil.copyfile(workbook, tmp / "workbook.xlsx")
            (tmp / "settings.json").write_text(_json(solver_settings(rnd)), encoding="utf-8")
            (tmp / "versions.json").write_text(_json(versions()), encoding="utf-8")
            if solution.plan is not None:
                (tmp / PLAN_FILE).write_text(_json(solution.plan.as_dict()), encoding="utf-8")
            stages = []
            for i, stage in enumerate(solution.stages, start=1):
                name = f"stage{i}_{stage.name}.mps"
                write_stage_mps(stage, tmp / name)
                stages.append({"stage": stage.name, "file": name, "status": stage.status.value,
                               "objective": stage.objective, "mip_gap": stage.mip_gap,
                               "method": stage.solver_log.get("method"),
                               "options": stage.solver_log.get("options"),
                               "seconds": round(stage.seconds, 3),
                               **{key: stage.solver_log[key] for key in ("start", "finish")
                                  if key in stage.solver_log}})
            alloc_text = allocation_csv(solution)
            (tmp / "allocation.csv").write_text(alloc_text, encoding="utf-8")
            output_digest = hashlib.sha256(alloc_text.encode("utf-8")).hexdigest()
            (tmp / "objectives.json").write_text(_json({
                "status": solution.status.value, "stages": stages,
                "rounded_objective": solution.objective, "rounding": solution.rounded.method,
            }), encoding="utf-8")
            files = {p.name: sha256_file(p) for p in sorted(tmp.iterdir()) if p.is_file()}
            manifest = {"format": RECORD_FORMAT, "kind": "decision", "round_id": rnd.settings.round_id,
                        "run_id": run_id, "created_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                        "input_digest": digest, "output_digest": output_digest, "files": files,
                        "previous": previous_digest(round_dir),
                        "previous_run": earlier[-1].name if earlier else None}
            (tmp / "manifest.json").write_text(_json(manifest), encoding="utf-8")
            if key is not None:
                sign_record(tmp, key)
            if after_write is not None:
                after_write(target, run_id, digest, output_digest)
    return RecordPaths(target, run_id, digest, output_digest)


def write_stage_mps(stage: StageResult, path: Path) -> None:
    """The stage's program as HiGHS was given it, as an MPS file: moved from where it was
    spooled beside the solve (allocator.beside), else written now."""
    from allocator.beside import move_spooled

    if not move_spooled(stage.mps_file, path):
        write_mps(stage.as_solved, path)


def _json(data: object) -> str:
    return json.dumps(data, indent=2, sort_keys=True, ensure_ascii=False, default=str) + "\n"


# --- verification ------------------------------------------------------------------------------
def verify_record(folder: Path, *, threads: int | None = None,
                  trusted_keys: list[Path] | None = None) -> Verification:
    """Check digests and signature, re-solve the canonical round, and compare its meaning.

    Beyond the bytes: every stage's recorded MPS file must be the LP re-built from round.json,
    every stage's recorded status and objective those of the re-run, the recorded settings
    those the engine chooses, output_digest the digest of allocation.csv, and the allocation
    the re-solved one; every rule is re-checked on the recorded allocation without the solver.
    """
    from allocator.checker import check_allocation
    from allocator.engine import solve_round

    out, manifest = _check_files(Path(folder), trusted_keys)
    folder = out.record
    if manifest is not None and manifest.get("kind") == "settlement":
        return _verify_settlement(out)
    if manifest is None or manifest.get("kind", "decision") != "decision":
        return out
    rnd = _load_canonical(folder, manifest, out)
    recorded = _load_allocation(folder, out)
    check_output_digest(folder, "allocation.csv", manifest, out, "the allocation")
    _check_workbook_copy(folder, rnd, out)
    same_versions = not _versions_differ(folder, manifest, out)
    if rnd is None:
        return out
    _check_settings(folder, rnd, out)
    if recorded is not None:
        for v in check_allocation(rnd, recorded):
            out.problems.append(f"rule check: {v.kind} {v.where}: {v.message}")
    try:
        solution = solve_round(rnd, threads=threads)
    except Exception as exc:  # the re-solve itself failing is a finding, not a crash
        out.problems.append(f"re-solving the canonical round failed: {exc}")
        return out
    if solution.status == Status.time_limit:
        # Where a run stops depends on the machine's speed, so a mismatch stays a problem (it
        # cannot be told apart from tampering) but the auditor is told the likely cause.
        out.warnings.append(
            f"the re-run was stopped by its time limit ({rnd.settings.time_limit_s:g} s): a "
            "time-limited allocation depends on the machine's speed; if the allocations differ, "
            "re-run the round with a larger time_limit_s")
    if solution.status == Status.rounding_infeasible:  # VERIFIED means "re-run alike", not "kept"
        out.warnings.extend(f"the decision is marked rounding_infeasible: {w}"
                            for w in solution.warnings if w.startswith("rounding breaks"))
    _check_plan(folder, solution, out, exact=same_versions)
    _check_stages(folder, solution, out, exact=same_versions)
    if recorded is not None:
        before = len(out.problems)
        _compare_allocations(recorded, solution, out, exact=same_versions)
        if not same_versions:
            _check_outcome_value(recorded, solution, out)
        if same_versions and len(out.problems) == before:
            _compare_allocation_text(folder, solution, out)
    return out


def _compare_allocation_text(folder: Path, solution: Solution, out: Verification) -> None:
    """On the recording's versions, allocation.csv is byte for byte the text the engine writes
    (line ends, quoting and number forms too: a reader of the file sees only its bytes)."""
    try:
        data = (folder / "allocation.csv").read_bytes()
    except OSError:
        return
    expected = allocation_csv(solution).encode("utf-8")
    if data == expected:
        return
    n, got, want = first_difference(data, expected)
    out.problems.append(f"allocation.csv line {n}: recorded {got!r}, the re-solved allocation "
                        f"writes {want!r}")


def check_files(folder: Path, *, trusted_keys: list | None = None) -> Verification:
    """A record's files against its manifest, and its signature: no re-solve (any record kind)."""
    return _check_files(Path(folder), trusted_keys)[0]


def _check_files(folder: Path, trusted_keys: list | None) -> tuple[Verification, dict | None]:
    from allocator.signing import check_signature

    out = Verification(folder)
    manifest_path = folder / "manifest.json"
    if not manifest_path.is_file():
        out.problems.extend(link_problems(folder))
        out.problems.append(f"{manifest_path} is missing: not a decision record")
        return out, None
    try:
        manifest = read_manifest(folder)
        files = dict(manifest["files"])
    except ManifestError as exc:  # (a linked manifest is named by the error itself)
        out.problems.extend(p for p in link_problems(folder) if not p.startswith("manifest.json"))
        out.problems.append(str(exc))
        return out, None
    except (ValueError, KeyError, TypeError) as exc:
        out.problems.extend(link_problems(folder))
        out.problems.append(f"manifest.json is not readable ({type(exc).__name__}: {exc})")
        return out, None
    check_digests(folder, files, out)
    check_signature(folder, trusted_keys, out)
    check_place(folder, manifest, out)
    kind = manifest.get("kind")
    if kind is None:
        out.notes.append("older-format record (no kind, previous or signature in its manifest): "
                         "checked as a decision record")
    if kind in (None, "decision"):
        _check_decision_files(folder, manifest, files, out)
    else:
        # a decision record relabelled to escape the re-solve is still a decision record
        # (the solver's own files: a settlement may well hold round.json or an allocation)
        decision_files = sorted(n for n in ("objectives.json",) if (folder / n).exists()) \
            + sorted(p.name for p in folder.glob("stage*.mps"))
        if decision_files:
            out.problems.append(f"manifest.json: kind {kind!r}, but the folder holds a decision "
                                f"record's files ({', '.join(decision_files[:4])})")
        elif kind not in RECORD_KINDS:
            out.problems.append(f"manifest.json: unknown record kind {kind!r}")
        else:
            out.notes.append(f"a {kind} record: only its files and signature were checked (it is "
                             "not a decision record, so nothing is re-solved)")
    return out, manifest


# What every decision record holds. versions.json decides whether amounts must agree exactly,
# so a record without it would choose its own leniency; records written before `kind` are
# taken as they are (the committed example has them all).
DECISION_FILES = ("round.json", "allocation.csv", "objectives.json", "settings.json",
                  "versions.json")


def _check_decision_files(folder: Path, manifest: dict, files: dict, out: Verification) -> None:
    """A decision record's own files are listed, and round.json's round_id is the manifest's.

    Also read without a re-solve (`verify --chain`): a foreign round's record whose manifest
    was given this round's id still holds the other round.
    """
    if manifest.get("kind") == "decision":
        for name in DECISION_FILES:
            if name not in files:
                out.problems.append(f"{name} is missing: every decision record holds it (removed "
                                    "from the record and its manifest?)")
    try:
        settings = json.loads((folder / "round.json").read_text(encoding="utf-8"))["settings"]
        round_id = settings["round_id"]
    except (OSError, ValueError, KeyError, TypeError, UnicodeDecodeError):
        return  # the full verify names an unreadable round.json
    if manifest.get("round_id") != round_id:
        out.problems.append(f"manifest.json: round_id {manifest.get('round_id')!r} differs from "
                            f"round.json's {round_id!r}")


def _check_settings(folder: Path, rnd: Round, out: Verification) -> None:
    """settings.json must hold what the engine chooses for this round."""
    try:
        recorded = json.loads((folder / "settings.json").read_text(encoding="utf-8"))
    except (OSError, ValueError, UnicodeDecodeError):
        out.problems.append("settings.json is missing or not readable")
        return
    expected = json.loads(_json(solver_settings(rnd)))
    if not isinstance(recorded, dict):
        out.problems.append("settings.json: not an object of solver settings")
        return
    for key in sorted(set(recorded) | set(expected)):
        if recorded.get(key) != expected.get(key):
            out.problems.append(f"settings.json {key}: recorded {recorded.get(key)!r}, the engine "
                                f"uses {expected.get(key)!r}")


def _check_plan(folder: Path, solution: Solution, out: Verification, *, exact: bool) -> None:
    """plan.json must be the plan the engine chooses for the canonical round, field by field.

    On the recording's versions a difference is a problem; on others a warning (a newer engine
    may solve the same round another way; its stages and allocation are checked regardless).
    A record without plan.json (written before plans were recorded) is solved as planned now.
    """
    path = folder / PLAN_FILE
    if solution.plan is None:
        return
    expected = json.loads(_json(solution.plan.as_dict()))
    if not path.is_file():
        out.notes.append(f"no {PLAN_FILE} (recorded before solve plans were): the re-run "
                         "followed the plan the engine chooses now")
        return
    try:
        recorded = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError, UnicodeDecodeError):
        out.problems.append(f"{PLAN_FILE} is not readable")
        return
    if not isinstance(recorded, dict):
        out.problems.append(f"{PLAN_FILE}: not an object (a solve plan)")
        return
    found = out.problems if exact else out.warnings
    for key in sorted(set(recorded) | set(expected)):
        if recorded.get(key) != expected.get(key):
            found.append(f"{PLAN_FILE} {key}: recorded {recorded.get(key)!r}, the engine "
                         f"chooses {expected.get(key)!r}")


def _close(a: object, b: object) -> bool:
    from allocator.lpcheck import close

    if a is None or b is None:
        return a is b
    try:
        return close(float(a), float(b))
    except (TypeError, ValueError):
        return False


def _close_gap(a: object, b: object) -> bool:
    """Gaps agree: both absent, or within 1e-9 (absolute: an optimal stage's gap is about 0)."""
    if a is None or b is None:
        return a is b
    try:
        fa, fb = float(a), float(b)
    except (TypeError, ValueError):
        return False
    return fa == fb or abs(fa - fb) <= 1e-9


def _check_stages(folder: Path, solution: Solution, out: Verification, *, exact: bool) -> None:
    """objectives.json and the stage MPS files against the re-run, stage by stage.

    How a stage was solved (method, options) changes between engine versions without changing
    its optimum (checked): a difference there is a warning. So may its program, on a record
    from another engine version (`exact` False): a later stage is built from an earlier one's
    answer (the tie-break's face from the prices LP's duals), and another version may return
    another, equally optimal, one. Then the recorded file itself is solved, and the difference
    stays a warning only if it reaches the recorded optimum.
    """
    from allocator.lpcheck import compare_stage

    try:
        objectives = json.loads((folder / "objectives.json").read_text(encoding="utf-8"))
        stages = list(objectives["stages"])
    except (OSError, ValueError, KeyError, TypeError, UnicodeDecodeError):
        out.problems.append("objectives.json is missing or not readable")
        return
    if objectives.get("status") != solution.status.value:
        out.problems.append(f"objectives.json status: recorded {objectives.get('status')!r}, "
                            f"re-run {solution.status.value!r}")
    if not _close(objectives.get("rounded_objective"), solution.objective):
        out.problems.append(f"objectives.json rounded_objective: recorded "
                            f"{objectives.get('rounded_objective')!r}, re-run {solution.objective!r}")
    if objectives.get("rounding") != solution.rounded.method:
        out.problems.append(f"objectives.json rounding: recorded {objectives.get('rounding')!r}, "
                            f"re-run {solution.rounded.method!r}")
    if len(stages) != len(solution.stages):
        out.problems.append(f"objectives.json: {len(stages)} stages recorded, the re-run has "
                            f"{len(solution.stages)} ({', '.join(s.name for s in solution.stages)})")
    expected_files = set()
    for i, stage in enumerate(solution.stages, start=1):
        name = f"stage{i}_{stage.name}.mps"
        expected_files.add(name)
        differences = compare_stage(folder / name, stage.as_solved)
        if i > len(stages):
            out.problems.extend(differences)
            continue
        rec = stages[i - 1] if isinstance(stages[i - 1], dict) else {}
        if differences and not exact and _reaches(folder / name, rec, stage):
            out.warnings.append(
                f"{name}: this engine version builds the stage differently "
                f"({len(differences)} difference(s), the first: {differences[0]}); the recorded "
                "file, solved again, reaches the recorded optimum")
        else:
            out.problems.extend(differences)
        where = f"objectives.json stage {i} ({stage.name})"
        for key, new in (("stage", stage.name), ("file", name), ("status", stage.status.value)):
            if rec.get(key) != new:
                out.problems.append(f"{where} {key}: recorded {rec.get(key)!r}, re-run {new!r}")
        how = out.warnings
        if rec.get("method") != stage.solver_log.get("method"):
            how.append(f"{where} method: recorded {rec.get('method')!r}, this engine uses "
                       f"{stage.solver_log.get('method')!r}")
        if not _close(rec.get("objective"), stage.objective):
            out.problems.append(f"{where} objective: recorded {rec.get('objective')!r}, "
                                f"re-run {stage.objective!r}")
        if "mip_gap" in rec and not _close_gap(rec.get("mip_gap"), stage.mip_gap):
            out.problems.append(f"{where} mip_gap: recorded {rec.get('mip_gap')!r}, "
                                f"re-run {stage.mip_gap!r}")
        if "options" in rec:  # older records did not keep each stage's options
            new_options = json.loads(_json(stage.solver_log.get("options")))
            if rec["options"] != new_options:
                how.append(f"{where} options: recorded {rec['options']!r}, the engine "
                                    f"uses {new_options!r}")
    for extra in sorted(p.name for p in folder.glob("*.mps") if p.name not in expected_files):
        out.problems.append(f"{extra}: a stage file the re-run does not have")


def _reaches(path: Path, recorded: dict, rerun: StageResult) -> bool:
    """Whether the recorded MPS file, solved by HiGHS with its recorded options (but no longer
    than the re-run's own limit for the stage), has the recorded objective as its optimum."""
    objective = recorded.get("objective")
    if not isinstance(objective, int | float) or isinstance(objective, bool):
        return False
    options = recorded.get("options")
    limit = (rerun.solver_log.get("options") or {}).get("time_limit", 600.0)
    h = new_highs()
    for key, value in {**SOLVER_OPTIONS, **(options if isinstance(options, dict) else {}),
                       "time_limit": limit}.items():
        h.setOptionValue(key, value)  # an option this HiGHS does not know is left at its default
    if h.readModel(str(path)) == highspy.HighsStatus.kError:
        return False
    h.run()
    if h.getModelStatus() != highspy.HighsModelStatus.kOptimal:
        return False
    return _close(h.getInfo().objective_function_value, objective)


def _verify_settlement(out: Verification) -> Verification:
    """A settlement record: its files and signature (checked), then its amounts re-computed."""
    from allocator.settle import verify_settlement

    settled = verify_settlement(out.record)
    # both check the files and the record's place: each finding said once
    out.problems.extend(p for p in settled.problems if p not in out.problems)
    out.warnings.extend(w for w in settled.warnings if w not in out.warnings)
    out.notes[:] = [n for n in out.notes if not n.startswith("a settlement record")]
    return out


def _load_canonical(folder: Path, manifest: dict, out: Verification) -> Round | None:
    try:
        rnd = Round.model_validate_json((folder / "round.json").read_text(encoding="utf-8"))
    except Exception as exc:
        out.problems.append(f"round.json is not a valid canonical round ({type(exc).__name__})")
        return None
    if rnd.digest() != manifest.get("input_digest"):
        out.problems.append("round.json: its canonical digest differs from the manifest's input_digest "
                            "(the round was changed)")
    elif (folder / "round.json").read_bytes() != rnd.canonical_json().encode("utf-8"):
        out.problems.append("round.json: not the canonical JSON of the round it holds (the file was "
                            "edited by hand)")
    return rnd


def _load_allocation(folder: Path, out: Verification) -> pd.DataFrame | None:
    path = folder / "allocation.csv"
    try:
        df = pd.read_csv(path, dtype=str, keep_default_na=False, na_filter=False)
    except Exception as exc:
        out.problems.append(f"allocation.csv is not readable ({type(exc).__name__}: {exc})")
        return None
    for column in ALLOCATION_COLUMNS[:-1]:
        if column in df.columns:
            df[column] = [csv_value(v) for v in df[column]]
    if list(df.columns) != ALLOCATION_COLUMNS:
        out.problems.append(f"allocation.csv: expected columns {ALLOCATION_COLUMNS}, got {list(df.columns)}")
        return None
    try:
        df["amount"] = [float(Decimal(a)) for a in df["amount"]]
    except Exception:
        out.problems.append("allocation.csv: an amount is not a number")
        return None
    return df


def _check_workbook_copy(folder: Path, rnd: Round | None, out: Verification) -> None:
    from allocator.errors import InputError
    from allocator.validate import load_round

    path = folder / "workbook.xlsx"
    if not path.is_file() and rnd is not None:
        out.warnings.append("the record holds no copy of the original workbook (workbook.xlsx): "
                            "round.json alone is the evidence of the input")
    if not path.is_file() or rnd is None:
        return
    try:
        original = load_round(path).round
    except InputError as exc:
        out.problems.append(f"workbook.xlsx no longer validates: {exc.issues[0]}")
        return
    except Exception as exc:
        out.problems.append(f"workbook.xlsx is not readable ({type(exc).__name__})")
        return
    if original.digest() != rnd.digest():
        out.problems.append("workbook.xlsx: the round it holds differs from round.json")


# The versions that decide which allocation a solve returns. Another openpyxl (the workbook
# copy) or pydantic (reading round.json, checked against its digest) cannot move an amount, nor
# can the kernel build in "platform".
SOLVE_VERSIONS = ("allocator", "highs", "highspy", "pyomo", "numpy", "scipy", "pandas", "python")


def _versions_differ(folder: Path, manifest: dict, out: Verification) -> bool:
    """Whether the record was written by other solve versions, which may break a tie the other
    way (warned about): then amounts are compared within one rounding unit, else exactly.

    Older-format records (before `kind`) keep the contract's one-unit tolerance whatever their
    versions.json says. A record with `kind` must hold a readable versions.json (its absence is
    a problem, `_check_decision_files`): otherwise deleting the file would choose leniency.
    """
    older = manifest.get("kind") is None
    path = folder / "versions.json"
    try:
        recorded = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        if older:
            out.warnings.append("versions.json is missing: the versions the record was written "
                                "with are unknown")
        return older
    except (OSError, ValueError, UnicodeDecodeError):
        recorded = None
    if not isinstance(recorded, dict):
        out.problems.append("versions.json is not readable (an object of versions)")
        return older
    now = versions()
    for key in ("allocator", "pyomo", "highspy", "highs", "python"):
        if recorded.get(key) != now.get(key):
            out.warnings.append(f"{key} was {recorded.get(key)} when recorded, is {now.get(key)} now")
    return older or any(recorded.get(k) != now.get(k) for k in SOLVE_VERSIONS)


def _check_outcome_value(recorded: pd.DataFrame, solution: Solution, out: Verification) -> None:
    """Amounts may differ by a unit only as another tie: the same outcome value as the re-run.

    Another solver version can break a tie between equally good allocations the other way;
    it cannot make the allocation worth less (objectives.json's rounded_objective is compared
    with the re-run's too). A unit moved between programs of different value is a change.
    """
    rnd = solution.round
    per_money = {p.program_id: rnd.value_per_trainee(p) / p.round_cost_per_trainee
                 for p in rnd.programs if p.round_cost_per_trainee > 0}
    value = float(sum(per_money.get(p, 0.0) * a
                      for p, a in zip(recorded["program_id"], recorded["amount"], strict=True)))
    if not _close(value, solution.objective):
        out.problems.append(f"allocation.csv: the recorded amounts are worth {value:,.6f} in "
                            f"outcome value, the re-solved allocation {solution.objective:,.6f}: "
                            "money was moved between programs of different value (not a tie "
                            "another solver version could break the other way)")


def _compare_allocations(recorded: pd.DataFrame, solution: Solution, out: Verification, *,
                         exact: bool = False) -> None:
    """Recorded vs re-solved amounts: exact on the recording's versions, else within one unit.

    The solve is deterministic (fixed seed and options), so with the same engine, solver and
    runtime any difference is a change to the record; another solver version may round a tie
    the other way, which moves at most one rounding unit.
    """
    unit = float(solution.round.settings.rounding_unit)
    keys = ["program_id", "region_id", "fund_id", "period"]
    old = recorded.groupby(keys)["amount"].sum()
    new = solution.allocation.groupby(keys)["amount"].sum()
    both = pd.concat([old.rename("recorded"), new.rename("resolved")], axis=1).fillna(0.0)
    gap = (both["recorded"] - both["resolved"]).abs()
    tolerance = 1e-6 * unit if exact else unit + 1e-9
    for key, row in both[gap > tolerance].iterrows():
        out.problems.append(f"allocation {'/'.join(map(str, key))}: recorded {row['recorded']:,.2f}, "
                            f"re-solved {row['resolved']:,.2f}")
    for key, row in both[(gap > 1e-6 * unit) & (gap <= tolerance)].iterrows():
        out.warnings.append(f"allocation {'/'.join(map(str, key))}: recorded {row['recorded']:,.2f}, "
                            f"re-solved {row['resolved']:,.2f} (within one rounding unit, accepted "
                            "because the versions differ)")



# --- comparing two decisions -------------------------------------------------------------------
def diff_records(a: Path, b: Path) -> list[str]:
    """What changed between two decision records: inputs first, then money moved."""
    ra = json.loads((Path(a) / "round.json").read_text(encoding="utf-8"))
    rb = json.loads((Path(b) / "round.json").read_text(encoding="utf-8"))
    lines: list[str] = []
    if ra["settings"]["round_id"] != rb["settings"]["round_id"]:
        lines.append(f"note: different rounds ({ra['settings']['round_id']} vs {rb['settings']['round_id']})")
    for key in sorted(set(ra["settings"]) | set(rb["settings"])):
        va, vb = ra["settings"].get(key), rb["settings"].get(key)
        if va != vb:
            lines.append(f"settings {key}: {va} -> {vb}")
    keys = {"regions": ("region_id",), "funds": ("fund_id",), "budgets": ("fund_id", "period"),
            "contributions": ("fund_id", "jurisdiction"), "programs": ("program_id",),
            "performance": ("program_id", "metric"), "objective": ("metric",), "rules": ("rule_id",),
            "tranches": ("fund_id", "fund_kind", "tranche")}
    for table, key in keys.items():
        lines += _diff_table(table, key, ra.get(table, []), rb.get(table, []))
    lines += _diff_money(Path(a), Path(b))
    return lines


def _diff_table(table: str, key: tuple[str, ...], rows_a: list[dict], rows_b: list[dict]) -> list[str]:
    def ident(row: dict) -> str:
        return "/".join(str(row.get(k)) for k in key if row.get(k) is not None)

    da = {ident(r): r for r in rows_a}
    db = {ident(r): r for r in rows_b}
    out = []
    for k in sorted(set(da) - set(db)):
        out.append(f"{table} {k}: removed")
    for k in sorted(set(db) - set(da)):
        out.append(f"{table} {k}: added")
    for k in sorted(set(da) & set(db)):
        for field_name in sorted(set(da[k]) | set(db[k])):
            va, vb = da[k].get(field_name), db[k].get(field_name)
            if va != vb:
                out.append(f"{table} {k} {field_name}: {_short(va)} -> {_short(vb)}")
    return out


def _short(value: object) -> str:
    text = json.dumps(value, sort_keys=True, ensure_ascii=False) if not isinstance(value, str) else value
    return text if len(text) <= 80 else text[:77] + "..."


def _diff_money(a: Path, b: Path) -> list[str]:
    fa = pd.read_csv(a / "allocation.csv", dtype=str, keep_default_na=False)
    fb = pd.read_csv(b / "allocation.csv", dtype=str, keep_default_na=False)
    for df in (fa, fb):
        df["amount"] = [Decimal(x) for x in df["amount"]]
    out = []
    for dim in ("program_id", "region_id", "fund_id"):
        sa = fa.groupby(dim)["amount"].sum()
        sb = fb.groupby(dim)["amount"].sum()
        for k in sorted(set(sa.index) | set(sb.index)):
            va, vb = sa.get(k, Decimal(0)), sb.get(k, Decimal(0))
            if va != vb:
                out.append(f"allocation by {dim.removesuffix('_id')} {k}: {va:,} -> {vb:,} "
                           f"({vb - va:+,})")
    if not out:
        out.append("allocation: identical")
    return out
