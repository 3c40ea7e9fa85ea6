"""Decision records: one frozen, self-contained folder per run, and re-running it years later.

Stage 6 of the data flow. `models/<round_id>/<run_id>/` holds the canonical round (JSON), a copy
of the original workbook, solver settings and versions, the MPS file of every solved stage, the
allocation as CSV, the objective values per stage, and a manifest of SHA-256 digests.
`verify_record` re-solves the canonical round, compares allocations within one rounding unit and
re-checks every rule with the solver-free checker.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import platform
import shutil
import time
from dataclasses import dataclass, field
from decimal import Decimal
from importlib import metadata
from pathlib import Path

import pandas as pd

import allocator
from allocator.atomic import atomic_dir
from allocator.engine import Solution
from allocator.round import Round
from allocator.solve import SOLVER_OPTIONS, Status, new_highs

RECORD_FORMAT = 1
ALLOCATION_COLUMNS = ["program_id", "region_id", "fund_id", "period", "amount"]


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


def new_run_id(input_digest: str) -> str:
    """A sortable, unique-enough run id: UTC time to the microsecond plus the input digest."""
    stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime())
    micro = f"{time.time_ns() // 1000 % 1_000_000:06d}"
    return f"{stamp}{micro}Z-{input_digest[:8]}"


def allocation_csv(solution: Solution) -> str:
    """The allocation as CSV text with exact decimal amounts (whole rounding units)."""
    unit = solution.round.settings.rounding_unit
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(ALLOCATION_COLUMNS)
    for row in solution.allocation.itertuples(index=False):
        amount = Decimal(int(row.units)) * unit
        writer.writerow([row.program_id, row.region_id, row.fund_id, row.period,
                         format(amount.normalize(), "f")])
    return buf.getvalue()


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


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


def write_record(solution: Solution, records_dir: Path, workbook: Path | None, *,
                 run_id: str | None = None, after_write=None) -> RecordPaths:
    """Write the record folder atomically; `after_write(folder)` runs inside the transaction.

    `after_write` lets the caller write the report as part of the same all-or-nothing step: if
    it raises, no record is left behind.
    """
    rnd = solution.round
    digest = rnd.digest()
    run_id = run_id or new_run_id(digest)
    target = Path(records_dir) / rnd.settings.round_id / run_id
    with atomic_dir(target) as tmp:
        (tmp / "round.json").write_text(rnd.canonical_json(), encoding="utf-8")
        if workbook is not None:
            shutil.copyfile(workbook, tmp / "workbook.xlsx")
        (tmp / "settings.json").write_text(_json(solver_settings(rnd)), encoding="utf-8")
        (tmp / "versions.json").write_text(_json(versions()), encoding="utf-8")
        stages = []
        for i, stage in enumerate(solution.stages, start=1):
            name = f"stage{i}_{stage.name}.mps"
            h = new_highs()
            stage.program.to_highs(h)
            h.writeModel(str(tmp / name))
            stages.append({"stage": stage.name, "file": name, "status": stage.status.value,
                           "objective": stage.objective, "mip_gap": stage.mip_gap,
                           "method": stage.solver_log.get("method"),
                           "options": stage.solver_log.get("options"),
                           "seconds": round(stage.seconds, 3)})
        alloc_text = allocation_csv(solution)
        (tmp / "allocation.csv").write_text(alloc_text, encoding="utf-8")
        output_digest = hashlib.sha256(alloc_text.encode("utf-8")).hexdigest()
        (tmp / "objectives.json").write_text(_json({
            "status": solution.status.value, "stages": stages,
            "rounded_objective": solution.objective, "rounding": solution.rounded.method,
        }), encoding="utf-8")
        files = {p.name: sha256_file(p) for p in sorted(tmp.iterdir()) if p.is_file()}
        manifest = {"format": RECORD_FORMAT, "round_id": rnd.settings.round_id, "run_id": run_id,
                    "created_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                    "input_digest": digest, "output_digest": output_digest, "files": files}
        (tmp / "manifest.json").write_text(_json(manifest), encoding="utf-8")
        if after_write is not None:
            after_write(target, run_id, digest, output_digest)
    return RecordPaths(target, run_id, digest, output_digest)


def _json(data: object) -> str:
    return json.dumps(data, indent=2, sort_keys=True, ensure_ascii=False, default=str) + "\n"


# --- verification ------------------------------------------------------------------------------
@dataclass
class Verification:
    """The outcome of `verify_record`: VERIFIED when `problems` is empty."""

    record: Path
    problems: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def verified(self) -> bool:
        return not self.problems


def verify_record(folder: Path, *, threads: int | None = None) -> Verification:
    """Check digests, re-solve the canonical round, compare, and re-check every rule."""
    from allocator.checker import check_allocation
    from allocator.engine import solve_round

    folder = Path(folder)
    if _kind(folder) == "settlement":
        from allocator.settle import verify_settlement

        return verify_settlement(folder)
    out = Verification(folder)
    manifest_path = folder / "manifest.json"
    if not manifest_path.is_file():
        out.problems.append(f"{manifest_path} is missing: not a decision record")
        return out
    try:
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
        files = dict(manifest["files"])
    except (ValueError, KeyError, TypeError) as exc:
        out.problems.append(f"manifest.json is not readable ({exc})")
        return out
    _check_digests(folder, files, out)
    rnd = _load_canonical(folder, manifest, out)
    recorded = _load_allocation(folder, out)
    _check_workbook_copy(folder, rnd, out)
    _check_versions(folder, out)
    if rnd is None or recorded is None:
        return out
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
    _compare_allocations(recorded, solution, out)
    return out


def _kind(folder: Path) -> str | None:
    """The manifest's `kind` (None when unreadable: the caller reports that)."""
    try:
        return json.loads((folder / "manifest.json").read_text(encoding="utf-8")).get("kind")
    except Exception:
        return None


def _check_digests(folder: Path, files: dict[str, str], out: Verification) -> None:
    present = {p.name for p in folder.iterdir() if p.is_file() and p.name != "manifest.json"}
    for name, expected in sorted(files.items()):
        path = folder / name
        if not path.is_file():
            out.problems.append(f"{name}: listed in the manifest but missing")
        elif sha256_file(path) != expected:
            out.problems.append(f"{name}: its SHA-256 differs from the manifest (the file was changed)")
    for name in sorted(present - set(files)):
        out.problems.append(f"{name}: not listed in the manifest (added after the run)")


def _load_canonical(folder: Path, manifest: dict, out: Verification) -> Round | None:
    try:
        rnd = Round.model_validate_json((folder / "round.json").read_text(encoding="utf-8"))
    except Exception as exc:
        out.problems.append(f"round.json is not a valid canonical round ({type(exc).__name__})")
        return None
    if rnd.digest() != manifest.get("input_digest"):
        out.problems.append("round.json: its canonical digest differs from the manifest's input_digest "
                            "(the round was changed)")
    return rnd


def _load_allocation(folder: Path, out: Verification) -> pd.DataFrame | None:
    path = folder / "allocation.csv"
    try:
        df = pd.read_csv(path, dtype=str, keep_default_na=False, na_filter=False)
    except Exception as exc:
        out.problems.append(f"allocation.csv is not readable ({type(exc).__name__}: {exc})")
        return None
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


def _check_versions(folder: Path, out: Verification) -> None:
    try:
        recorded = json.loads((folder / "versions.json").read_text(encoding="utf-8"))
    except Exception:
        return
    now = versions()
    for key in ("allocator", "pyomo", "highspy", "highs", "python"):
        if recorded.get(key) != now.get(key):
            out.warnings.append(f"{key} was {recorded.get(key)} when recorded, is {now.get(key)} now")


def _compare_allocations(recorded: pd.DataFrame, solution: Solution, out: Verification) -> None:
    unit = float(solution.round.settings.rounding_unit)
    keys = ["program_id", "region_id", "fund_id", "period"]
    old = recorded.groupby(keys)["amount"].sum()
    new = solution.allocation.groupby(keys)["amount"].sum()
    both = pd.concat([old.rename("recorded"), new.rename("resolved")], axis=1).fillna(0.0)
    diff = both[(both["recorded"] - both["resolved"]).abs() > unit + 1e-9]
    for key, row in diff.iterrows():
        out.problems.append(f"allocation {'/'.join(key)}: recorded {row['recorded']:,.2f}, "
                            f"re-solved {row['resolved']:,.2f}")



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
