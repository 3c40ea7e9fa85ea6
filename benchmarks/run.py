"""The scale benchmark: synthetic rounds at several sizes, every engine phase timed.

    python -m benchmarks.run [--sizes 100,1000,10000,50000] [--compare] [--methods LIST]
                             [--example REPEATS]

Each size runs in a fresh subprocess, so its peak memory (ru_maxrss of that process) belongs to
that size alone. Phases: read+validate (`allocator.validate.load_round`), then
`allocator.engine.solve_round` split by its own `.timings` (build, hand-over, solve, rounding;
HiGHS is the sum of the stages' `.seconds`, "solve other" the rest of `timings["solve"]`),
extraction (what `solve_round` spends outside its timings: allocation and rule tables), report
write (`allocator.report.write_report`) inside the record write (`allocator.record.write_record`,
MPS of every stage included), as `allocator run` writes both, and end to end (read +
solve_round + report + record; the generation of the workbook is shown but not counted).

`--compare` solves the MPS files the decision record holds with bare highspy, each in a fresh
process with the engine's options (`allocator.solve.SOLVER_OPTIONS`, the round's time limit and
MIP gap, the recorded method), and prints engine end-to-end / sum of bare `run()` times.
`--methods simplex,ipm,ipm-nox,pdlp` additionally times those HiGHS `solver` settings on the
same files (ipm-nox = interior point without crossover), to choose the engine's method.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from importlib import metadata
from pathlib import Path
from typing import Any

DEFAULT_SIZES = (100, 1000, 10000, 50000)
# HiGHS option sets the benchmark can compare on the recorded MPS files.
METHODS: dict[str, dict[str, object]] = {
    "default": {},
    "choose": {"solver": "choose"},
    "simplex": {"solver": "simplex"},
    "ipm": {"solver": "ipm", "run_crossover": "on"},
    "ipm-nox": {"solver": "ipm", "run_crossover": "off"},
    "pdlp": {"solver": "pdlp"},
}
PHASES = (("generate", "generate workbook (not in e2e)"), ("imports", "imports"),
          ("read", "read+validate"),
          ("build", "build (index + Pyomo model)"), ("handover", "hand-over (compile to matrix)"),
          ("highs", "HiGHS (sum of stages)"), ("solve_other", "solve other (pass model, tie-break setup)"),
          ("rounding", "rounding"), ("extraction", "extraction (tables)"),
          ("report", "report write"), ("summary", "board summary (PDF, not in e2e)"),
          ("record", "record write (incl. MPS)"),
          ("e2e", "end to end"))


def log(message: str) -> None:
    """Progress on stderr, so stdout stays a clean, pasteable table."""
    print(message, file=sys.stderr, flush=True)


# --- one size, in its own process ------------------------------------------------------------
def run_size(n: int, seed: int, workdir: Path, method: str | None, profile: Path | None,
             no_solve: bool = False, time_limit_s: float = 3600,
             all_or_nothing: float = 0.05, beside: bool = True) -> dict:
    """Generate, read, solve, write report and record for one size; times and peak memory."""
    from benchmarks.synthetic import write_synthetic_round

    out: dict[str, Any] = {"n": n, "seed": seed, "times": {}}
    times = out["times"]
    # What `allocator run` imports before it reads anything; this process is fresh (one per
    # size), so this is the import cost a user pays, and it counts in end to end.
    tick = time.perf_counter()
    import allocator.api
    import allocator.cli  # noqa: F401

    times["imports"] = time.perf_counter() - tick
    workdir.mkdir(parents=True, exist_ok=True)
    path = workdir / f"synthetic-{n}-s{seed}.xlsx"
    tick = time.perf_counter()
    write_synthetic_round(path, n, seed, time_limit_s, all_or_nothing)
    times["generate"] = time.perf_counter() - tick
    log(f"[{n}] generated {path.name} in {times['generate']:.2f} s")

    profiler = None
    if profile is not None:
        import cProfile

        profiler = cProfile.Profile()
        profiler.enable()

    from allocator.beside import beside_a_run
    from allocator.validate import load_round

    start = time.perf_counter()
    tick = start
    loaded = load_round(path)
    times["read"] = time.perf_counter() - tick
    log(f"[{n}] read+validate {times['read']:.2f} s")

    if no_solve:
        return _model_phases_only(out, loaded.round, start)
    kwargs = {"method": method} if method else {}
    # As `allocator run` solves: the record's files made beside HiGHS; `--alone`: not
    # (every stage on this thread, the MPS files written after the solve), to measure the gain.
    with beside_a_run(workdir / "models", loaded.round) if beside else contextlib.nullcontext():
        return _solve_and_write(out, loaded, path, workdir, n, start, (profiler, profile), kwargs)


def _solve_and_write(out: dict, loaded: Any, path: Path, workdir: Path, n: int, start: float,
                     profiling: tuple[Any, Path | None], kwargs: dict) -> dict:
    """`run_size` from the solve on: solve_round, report inside the record, the stage table."""
    from allocator.engine import solve_round
    from allocator.record import write_record

    times = out["times"]
    profiler, profile = profiling
    tick = time.perf_counter()
    solution = solve_round(loaded.round, **kwargs)
    wall_solve = time.perf_counter() - tick
    timings = dict(solution.timings)
    times["build"] = timings.get("build")
    times["handover"] = timings.get("handover")
    times["highs"] = sum(s.seconds for s in solution.stages)
    times["solve_other"] = timings.get("solve", times["highs"]) - times["highs"]
    times["rounding"] = timings.get("rounding")
    times["extraction"] = wall_solve - sum(timings.values())
    out["engine_timings"] = timings
    log(f"[{n}] solve_round {wall_solve:.2f} s (HiGHS {times['highs']:.2f} s)")

    times["summary"] = _board_summary_seconds(solution, workdir / f"summary-{n}.pdf")
    log(f"[{n}] board summary {_fmt(times['summary'])} s")
    from allocator.record import solver_settings, versions
    from allocator.report import write_report

    def report_inside(folder: Path, run_id: str, input_digest: str, output_digest: str) -> None:
        """The report, written inside the record's transaction as `allocator run` writes it."""
        tick = time.perf_counter()
        try:
            write_report(solution, workdir / f"report-{n}.xlsx", run_id=run_id,
                         input_digest=input_digest, output_digest=output_digest,
                         notes=loaded.notes, record_dir=str(folder), versions=versions(),
                         solver_options=solver_settings(loaded.round))
            times["report"] = time.perf_counter() - tick
        except Exception as exc:  # report failures are shown, not fatal to the benchmark
            out["report_error"] = f"{type(exc).__name__}: {exc}"
            times["report"] = None
        log(f"[{n}] report write {_fmt(times['report'])} s")

    tick = time.perf_counter()
    record = write_record(solution, workdir / "models", path, after_write=report_inside)
    times["record"] = time.perf_counter() - tick - (times["report"] or 0.0)
    # As `allocator run` does it: imports, read, solve, report, record; the board summary is
    # the optional `--summary` (shown, not counted).
    times["e2e"] = times["imports"] + time.perf_counter() - start - (times["summary"] or 0.0)
    log(f"[{n}] record {times['record']:.2f} s; end to end {times['e2e']:.2f} s")

    if profiler is not None:
        import pstats

        profiler.disable()
        profiler.dump_stats(str(profile))
        stats = pstats.Stats(profiler, stream=sys.stderr).sort_stats("tottime")
        stats.print_stats(30)

    program = solution.stages[0].program
    rows, cols = program.shape
    recorded_stages = json.loads((record.folder / "objectives.json").read_text())["stages"]
    by_name = {st["stage"]: st["file"] for st in recorded_stages}
    out.update({
        "variables": int(cols), "constraints": int(rows),
        # what HiGHS was given for stage 1 (with partial sums where the plan uses them), and the
        # matrix without them
        "nonzeros": int(solution.stages[0].as_solved.A.nnz), "nonzeros_wide": int(program.A.nnz),
        "partial_sums": int(solution.stages[0].solver_log.get("partial_sums", 0)),
        # the model's on/off decisions (stage 1 of a large MILP is their relaxation)
        "integers": len(solution.columns.y), "status": str(solution.status.value),
        "allocation_rows": len(solution.allocation), "rule_rows": len(solution.rules),
        "rounding": solution.rounded.method, "record": str(record.folder),
        "report_error": out.get("report_error"),
        "stages": [{"name": s.name, "status": s.status.value, "seconds": s.seconds,
                    "objective": s.objective,
                    "rows": int(s.program.shape[0]), "cols": int(s.program.shape[1]),
                    **{k: v for k, v in s.solver_log.items() if isinstance(v, int | float | str)}}
                   for s in solution.stages],
        "mps": [str(p) for p in sorted(record.folder.glob("stage*.mps"))],
        "settings": json.loads((record.folder / "settings.json").read_text()),
        "stage_options": {st["file"]: st.get("options") or {} for st in recorded_stages},
        # which earlier stage's file a stage started from (the prices LP: the outcome's)
        "stage_starts": {st["file"]: by_name[st["start"]] for st in recorded_stages
                         if st.get("start") in by_name},
        # how a stage solved by interior point reached its vertex, when not by HiGHS's own
        # crossover (the tie-break: `allocator.solve._vertex_from_interior`)
        "stage_finish": {st["file"]: st["finish"] for st in recorded_stages if "finish" in st},
        "time_limit_s": float(loaded.round.settings.time_limit_s),
        "mip_gap": float(loaded.round.settings.mip_gap),
        # ru_maxrss is in KiB on Linux
        "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    })
    return out


def _board_summary_seconds(solution: Any, path: Path) -> float | None:
    """Seconds to write the board summary PDF (`run --summary`); None without matplotlib."""
    try:
        import matplotlib  # noqa: F401  (the summary extra)

        from allocator.summary import run_board, write_summary
    except ImportError:
        return None
    tick = time.perf_counter()
    write_summary(run_board(solution), path)
    return time.perf_counter() - tick


def _model_phases_only(out: dict, rnd: Any, start: float) -> dict:
    """Read, build and hand-over only (what `solve_round` does before HiGHS), for sizes whose
    solve is too long to wait for: shows how the non-solver phases grow."""
    from allocator.eligibility import allocation_index
    from allocator.formulation import create_model
    from allocator.stages.model import compile_model

    n, times = out["n"], out["times"]
    tick = time.perf_counter()
    form = create_model(rnd, allocation_index(rnd))
    times["build"] = time.perf_counter() - tick
    tick = time.perf_counter()
    program, _, _ = compile_model(form)
    times["handover"] = time.perf_counter() - tick
    times["e2e"] = times["imports"] + time.perf_counter() - start
    log(f"[{n}] build {times['build']:.2f} s, hand-over {times['handover']:.2f} s (no solve)")
    rows, cols = program.shape
    out.update({"variables": int(cols), "constraints": int(rows), "nonzeros": int(program.A.nnz),
                "integers": int(program.integer.sum()), "status": "not solved (--no-solve)",
                "stages": [], "mps": [],
                "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024})
    return out


# --- one bare HiGHS solve, in its own process -------------------------------------------------
def bare_solve(mps: Path, options: dict[str, object], start_from: Path | None = None,
               finish: str | None = None) -> dict:
    """readModel + run with the given options; the run() time is what the ratio compares.

    `start_from`: a stage the engine started from an earlier stage's optimum (the prices LP
    from the MILP's); that file is solved first, untimed, and its point handed over the same
    way (`setSolution`, values only), so the bare solve does the engine's work and no more.
    `finish` "crossover_from_interior": after the interior point run, the engine's way to the
    vertex (crossover from its solution, then primal simplex), timed with it."""
    import highspy

    h = highspy.Highs()
    h.setOptionValue("output_flag", False)
    for key, value in options.items():
        h.setOptionValue(key, value)
    tick = time.perf_counter()
    h.readModel(str(mps))
    read = time.perf_counter() - tick
    if start_from is not None:
        h.setSolution(_with_partial_sums(h, _optimum_of(start_from, options)))
    tick = time.perf_counter()
    h.run()
    if finish == "crossover_from_interior" \
            and h.getModelStatus() == highspy.HighsModelStatus.kOptimal:
        from allocator.plan import PRIMAL_SIMPLEX_OPTIONS

        h.crossover(h.getSolution())
        for key, value in PRIMAL_SIMPLEX_OPTIONS.items():
            h.setOptionValue(key, value)
        h.run()
    seconds = time.perf_counter() - tick
    info = h.getInfo()
    return {"file": mps.name, "read": read, "seconds": seconds,
            "status": h.modelStatusToString(h.getModelStatus()),
            "objective": float(info.objective_function_value),
            "simplex_iterations": int(info.simplex_iteration_count),
            "ipm_iterations": int(info.ipm_iteration_count),
            "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def _optimum_of(mps: Path, options: dict[str, object]) -> Any:
    """The optimum of an earlier stage's file, as a HiGHS solution holding values only."""
    import highspy

    h = highspy.Highs()
    h.setOptionValue("output_flag", False)
    for key in ("threads", "random_seed", "presolve", "primal_feasibility_tolerance",
                "dual_feasibility_tolerance", "mip_rel_gap", "time_limit"):
        if key in options:
            h.setOptionValue(key, options[key])
    h.readModel(str(mps))
    h.run()
    out = highspy.HighsSolution()
    out.col_value = list(h.getSolution().col_value)
    out.value_valid = True
    return out


def _with_partial_sums(h: Any, start: Any) -> Any:
    """The earlier stage's point extended to this file's partial-sum columns, if it has any
    (`allocator.partials`: each defined by its own row, partial_sum - sum of amounts = 0)."""
    import numpy as np
    import scipy.sparse as sp

    x = np.asarray(start.col_value, dtype=float)
    lp = h.getLp()
    n = lp.num_col_
    if len(x) >= n:
        return start
    a = lp.a_matrix_
    A = sp.csc_matrix((np.asarray(a.value_), np.asarray(a.index_), np.asarray(a.start_)),
                      shape=(lp.num_row_, n)).tocsr()
    full = np.concatenate([x, np.zeros(n - len(x))])
    for i, name in enumerate(lp.row_names_):
        if name.startswith("partial_sum_define["):
            row = A[i]
            extra = row.indices[row.indices >= len(x)]
            full[extra[0]] = -float((row[:, : len(x)] @ x)[0])
    start.col_value = full.tolist()
    return start


def engine_options(result: dict, mps: str) -> dict[str, object]:
    """The options the engine solved this stage with: SOLVER_OPTIONS and the stage's own
    (method, crossover, time limit, MIP gap), both as the decision record keeps them."""
    settings = result.get("settings", {})
    options = dict(settings.get("solver_options", {}))
    if not options:
        from allocator.solve import SOLVER_OPTIONS

        options = dict(SOLVER_OPTIONS)
    stage = result.get("stage_options", {}).get(Path(mps).name)
    if stage:
        options.update(stage)
    else:  # a record from before per-stage options
        options["time_limit"] = float(result["time_limit_s"])
        options["mip_rel_gap"] = float(result["mip_gap"])
        options["solver"] = str(settings.get("method", "choose"))
    return options


def _subprocess_json(args: list[str], timeout: float | None = None) -> dict:
    """Run `python -m benchmarks.run ARGS`; its last stdout line is the JSON result."""
    cmd = [sys.executable, "-m", "benchmarks.run", *args]
    try:
        done = subprocess.run(cmd, stdout=subprocess.PIPE, text=True, timeout=timeout,
                              cwd=Path(__file__).resolve().parent.parent)
    except subprocess.TimeoutExpired:
        return {"error": f"no answer within {timeout:.0f} s"}
    if done.returncode != 0:
        return {"error": f"exit code {done.returncode}"}
    return json.loads(done.stdout.strip().splitlines()[-1])


def compare(result: dict, methods: list[str], method_time_limit: float) -> dict[str, list[dict]]:
    """Bare highspy solves of the record's MPS files: the engine's options, then each method
    (those capped at `method_time_limit` seconds per file, so a slow method cannot stall a run)."""
    runs: dict[str, list[dict]] = {}
    for label in ["engine", *methods]:
        runs[label] = []
        for mps in result["mps"]:
            options = engine_options(result, mps)
            if label == "default":  # HiGHS as it comes, only the time limit kept
                options = {"time_limit": min(float(options["time_limit"]), method_time_limit)}
            elif label != "engine":
                options.pop("run_crossover", None)
                options.update(METHODS[label])
                options["time_limit"] = min(float(options["time_limit"]), method_time_limit)
            start = result.get("stage_starts", {}).get(Path(mps).name)
            start_args = ["--start-from", str(Path(mps).parent / start)] \
                if start and label == "engine" else []
            finish = result.get("stage_finish", {}).get(Path(mps).name)
            if finish and label == "engine":
                start_args += ["--finish", finish]
            res = _subprocess_json(["--bare", mps, "--options", json.dumps(options), *start_args],
                                   timeout=2 * float(options["time_limit"]) + 300)
            res.setdefault("file", Path(mps).name)
            runs[label].append(res)
            log(f"[{result['n']}] bare {label:8s} {res['file']}: "
                f"{res.get('seconds', float('nan')):.2f} s {res.get('status', res.get('error'))}")
    return runs


# --- the example round against the Python floor ---------------------------------------------------
EXAMPLE = Path(__file__).resolve().parent.parent / "inputs" / "example_round.xlsx"
# One fresh Python process that imports highspy and solves an MPS file: the least any Python
# tool can take for the round's one necessary solve.
FLOOR_SCRIPT = ("import sys, highspy; h = highspy.Highs(); h.setOptionValue('output_flag', False); "
                "h.readModel(sys.argv[1]); h.run(); "
                "assert h.getModelStatus() == highspy.HighsModelStatus.kOptimal")


def _wall(cmd: list[str], cwd: Path) -> float:
    """Wall seconds of one command in a fresh process; it must succeed."""
    tick = time.perf_counter()
    subprocess.run(cmd, cwd=cwd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - tick


def example_floor(workdir: Path, repeats: int) -> dict[str, Any]:
    """`allocator run` on the example round (fresh process, report and record written) against
    the floor on the stage-1 MPS file of the same run's record; best of `repeats`, alternated."""
    allocator_cli = [sys.executable, "-m", "allocator.cli"]
    runs, floors = [], []
    for i in range(repeats):
        folder = workdir / f"example-{i}"
        folder.mkdir(parents=True, exist_ok=True)
        runs.append(_wall([*allocator_cli, "run", str(EXAMPLE), "--quiet", "--records",
                           str(folder / "models"), "--report", str(folder / "report.xlsx")],
                          folder))
        mps = next((folder / "models").glob("*/*/stage1_outcome.mps"))
        floors.append(_wall([sys.executable, "-c", FLOOR_SCRIPT, str(mps)], folder))
    return {"run": min(runs), "floor": min(floors), "repeats": repeats,
            "ratio": min(runs) / min(floors)}


def example_table(res: dict[str, Any]) -> str:
    return "\n".join([
        f"### The example round against the Python floor (best of {res['repeats']}, fresh "
        "processes)", "",
        "| command | seconds |", "| --- | ---: |",
        f"| `allocator run inputs/example_round.xlsx` (report and record written) | "
        f"{res['run']:.2f} |",
        f"| `python -c 'import highspy; readModel(stage1_outcome.mps); run()'` | "
        f"{res['floor']:.2f} |",
        f"| ratio | **{res['ratio']:.1f}x** |"])


# --- output ------------------------------------------------------------------------------------
def machine() -> dict[str, str]:
    """Where the numbers were measured."""
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    ram = "unknown"
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                ram = f"{int(line.split()[1]) / 1024 / 1024:.1f} GiB"
    except OSError:
        pass
    out = {"nproc": str(len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity")
                        else os.cpu_count()),
           "cpu": cpu, "ram": ram, "python": platform.python_version(),
           "os": platform.platform(terse=True)}
    for pkg in ("highspy", "pyomo", "numpy", "scipy", "pandas", "openpyxl", "python-calamine",
                "xlsxwriter", "pydantic"):
        try:
            out[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            out[pkg] = "missing"
    return out


def _fmt(value: float | None, digits: int = 2) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def size_table(result: dict, bare: dict[str, list[dict]] | None) -> str:
    """One size: its phases, its stages and (with --compare) the bare solves, as markdown."""
    n = result["n"]
    lines = [f"### {n:,} programs: {result['variables']:,} variables, "
             f"{result['constraints']:,} constraints, {result['nonzeros']:,} nonzeros, "
             f"{result['integers']:,} binaries; status {result['status']}, "
             f"peak {result['peak_mb']:.0f} MB", "",
             "| phase | seconds | share of e2e |", "| --- | ---: | ---: |"]
    e2e = result["times"]["e2e"]
    for key, label in PHASES:
        value = result["times"].get(key)
        share = "" if value is None or key in ("generate", "summary", "e2e") \
            else f"{100 * value / e2e:.1f}%"
        lines.append(f"| {label} | {_fmt(value)} | {share} |")
    if result.get("report_error"):
        lines.append(f"\nreport write failed: {result['report_error']}")
    if result["stages"]:
        lines += ["", "| stage | rows | cols | status | HiGHS s | simplex it | ipm it |",
                  "| --- | ---: | ---: | --- | ---: | ---: | ---: |"]
    for s in result["stages"]:
        lines.append(f"| {s['name']} | {s['rows']:,} | {s['cols']:,} | {s['status']} | "
                     f"{s['seconds']:.2f} | {s.get('simplex_iterations', '')} | "
                     f"{s.get('ipm_iterations', '')} |")
    if bare:
        files = [r["file"] for r in bare["engine"]]
        lines += ["", "bare highspy `run()` seconds per MPS file (fresh process each):", "",
                  "| options | " + " | ".join(files) + " | total |",
                  "| --- |" + " ---: |" * (len(files) + 1)]
        for label, runs in bare.items():
            cells = [f"{r['seconds']:.2f} ({_short(r['status'])})" if "seconds" in r else "error"
                     for r in runs]
            total = sum(r.get("seconds", 0.0) for r in runs)
            lines.append(f"| {label} | " + " | ".join(cells) + f" | {total:.2f} |")
        bare_total = sum(r.get("seconds", 0.0) for r in bare["engine"])
        lines.append(f"\nratio engine end-to-end / bare HiGHS (engine options) = "
                     f"{e2e:.2f} / {bare_total:.2f} = **{e2e / bare_total:.2f}x**"
                     if bare_total > 0 else "")
        first = stage_one_seconds(bare["engine"])
        if first:
            lines.append(f"ratio engine end-to-end / bare HiGHS on the stage-1 MPS alone = "
                         f"{e2e:.2f} / {first:.2f} = **{e2e / first:.2f}x**")
    return "\n".join(lines)


def stage_one_seconds(runs: list[dict]) -> float | None:
    """Bare HiGHS on the stage-1 (outcome) MPS file alone: the one solve a round needs."""
    got = [x.get("seconds") for x in runs if str(x.get("file", "")).startswith("stage1_")]
    return got[0] if got and got[0] else None


def _short(status: str) -> str:
    return {"Optimal": "opt", "Time limit reached": "TIME"}.get(status, status)


def summary_table(results: list[dict], bares: dict[int, dict]) -> str:
    """All sizes in one markdown table, a row per size."""
    head = ["programs", "variables", "constraints", "nonzeros per program",
            "without partial sums"] + \
        [k for k, _ in PHASES] + ["peak MB"]
    if bares:
        head += ["bare HiGHS", "ratio", "bare stage 1", "ratio to stage 1"]
    lines = ["| " + " | ".join(head) + " |", "|" + " ---: |" * len(head)]
    for r in results:
        if "error" in r:
            lines.append(f"| {r.get('n')} | failed: {r['error']} |")
            continue
        cells = [f"{r['n']:,}", f"{r['variables']:,}", f"{r['constraints']:,}",
                 f"{r['nonzeros'] / r['n']:.1f}",
                 f"{r.get('nonzeros_wide', r['nonzeros']) / r['n']:.1f}"]
        cells += [_fmt(r["times"].get(k)) for k, _ in PHASES]
        cells.append(f"{r['peak_mb']:.0f}")
        if bares:
            bare = bares.get(r["n"])
            if bare:
                total = sum(x.get("seconds", 0.0) for x in bare["engine"])
                cells += [f"{total:.2f}", f"{r['times']['e2e'] / total:.2f}x" if total else "n/a"]
                first = stage_one_seconds(bare["engine"])
                cells += [_fmt(first), f"{r['times']['e2e'] / first:.2f}x" if first else "n/a"]
            else:
                cells += ["", "", "", ""]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def machine_lines(info: dict[str, str]) -> str:
    versions = ", ".join(f"{k} {v}" for k, v in info.items()
                         if k not in ("nproc", "cpu", "ram", "os", "python"))
    return (f"Machine: {info['nproc']} cores ({info['cpu']}), {info['ram']} RAM, {info['os']}, "
            f"Python {info['python']}; {versions}")


# --- command line ------------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> int:
    """Parse arguments; the parent runs each size in a child process and prints the tables."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.run", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default=",".join(map(str, DEFAULT_SIZES)),
                        help="comma-separated numbers of programs")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--compare", action="store_true",
                        help="also solve the record's MPS files with bare highspy")
    parser.add_argument("--methods", default="",
                        help=f"with --compare, also time these HiGHS methods: {','.join(METHODS)}")
    parser.add_argument("--method-time-limit", type=float, default=300.0,
                        help="time limit per file for the --methods solves (default 300 s)")
    parser.add_argument("--method", default=None,
                        help="solver method passed to solve_round (default: the engine's own)")
    parser.add_argument("--workdir", type=Path, default=None,
                        help="where workbooks, reports and records go (default: a temp dir)")
    parser.add_argument("--keep", action="store_true", help="keep the work directory")
    parser.add_argument("--profile", action="store_true",
                        help="cProfile each size (slower; top functions on stderr)")
    parser.add_argument("--no-solve", action="store_true",
                        help="stop after the hand-over to HiGHS (read, build, hand-over only)")
    parser.add_argument("--alone", action="store_true",
                        help="solve without the work beside HiGHS (allocator.beside): every stage "
                             "on one thread, the record's MPS files written after the solve")
    parser.add_argument("--json", type=Path, default=None, help="also write all results as JSON")
    parser.add_argument("--time-limit", type=float, default=3600.0,
                        help="time_limit_s of the synthetic rounds: bounds the outcome (MILP) stage")
    parser.add_argument("--all-or-nothing", type=float, default=0.05,
                        help="share of programs with a minimum size (0 to 0.05; 0: a pure LP)")
    parser.add_argument("--example", type=int, default=0, metavar="REPEATS",
                        help="also time `allocator run` on the example round against a bare "
                             "Python+highspy process on its stage-1 MPS (best of REPEATS)")
    parser.add_argument("--child", type=int, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--bare", type=Path, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--options", default="{}", help=argparse.SUPPRESS)
    parser.add_argument("--start-from", type=Path, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--finish", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.bare is not None:
        print(json.dumps(bare_solve(args.bare, json.loads(args.options), args.start_from,
                                    args.finish)))
        return 0
    if args.child is not None:
        assert args.workdir is not None
        profile = args.workdir / f"profile-{args.child}.pstats" if args.profile else None
        print(json.dumps(run_size(args.child, args.seed, args.workdir, args.method, profile,
                                  args.no_solve, args.time_limit, args.all_or_nothing,
                                  not args.alone)))
        return 0

    sizes = [int(s) for s in args.sizes.split(",") if s.strip()]
    methods = [m for m in args.methods.split(",") if m]
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        parser.error(f"unknown method(s) {unknown}; known: {', '.join(METHODS)}")
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="allocator-bench-"))
    info = machine()
    results, bares = [], {}
    example = None
    try:
        if args.example:
            example = example_floor(workdir / "example", args.example)
            print(example_table(example), end="\n\n", flush=True)
        for n in sizes:
            child = ["--child", str(n), "--seed", str(args.seed), "--workdir", str(workdir / str(n)),
                     "--time-limit", str(args.time_limit),
                     "--all-or-nothing", str(args.all_or_nothing)]
            if args.method:
                child += ["--method", args.method]
            if args.profile:
                child.append("--profile")
            if args.no_solve:
                child.append("--no-solve")
            if args.alone:
                child.append("--alone")
            result = _subprocess_json(child)
            result.setdefault("n", n)
            results.append(result)
            if "error" in result:
                print(f"size {n}: the child process failed ({result['error']})")
                continue
            bare = compare(result, methods, args.method_time_limit) \
                if args.compare and result["mps"] else None
            if bare:
                bares[n] = bare
            print(size_table(result, bare), end="\n\n", flush=True)
    finally:
        if args.keep or args.workdir:
            log(f"work directory kept: {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    print("## Summary (seconds)\n")
    print(summary_table(results, bares))
    print("\n" + machine_lines(info))
    if args.json:
        args.json.write_text(json.dumps({"machine": info, "results": results, "bare": bares,
                                         "example": example}, indent=2, default=str))
    return 0 if all("error" not in r for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
