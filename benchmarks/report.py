"""Time the report writer alone, on solutions solved once and kept.

    python -m benchmarks.report [--sizes 1000,3000,10000] [--repeat 3] [--workdir DIR] [--profile]

A 10,000-program round takes minutes to solve and seconds to report, so the solution of each
size is pickled in the work directory (default `/tmp/allocator-report-bench`) the first time
and reused after: re-running after a change to `allocator.report` times only the report.
A pickle is keyed by size and seed only; delete it after changing the engine or the
synthetic round. Each size runs `write_report` `--repeat` times in a fresh process and
prints the best wall and CPU seconds and how far the peak memory rose above the loaded
solution. `--profile` prints the report's top functions (cProfile) on stderr.
"""

from __future__ import annotations

import argparse
import copyreg
import cProfile
import json
import pickle
import pstats
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

DEFAULT_SIZES = (1000, 3000, 10000)
DEFAULT_WORKDIR = Path("/tmp/allocator-report-bench")


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def solved(n: int, seed: int, workdir: Path) -> tuple[Any, list[object]]:
    """The solution of the synthetic round of n programs and its reader notes (pickled once)."""
    pickled = workdir / f"solution-{n}-s{seed}.pkl"
    if pickled.exists():
        with open(pickled, "rb") as fh:
            return pickle.load(fh)
    import highspy

    from allocator.engine import solve_round
    from allocator.validate import load_round
    from benchmarks.synthetic import write_synthetic_round

    workbook = write_synthetic_round(workdir / f"synthetic-{n}-s{seed}.xlsx", n, seed)
    log(f"[{n}] solving once (kept in {pickled})")
    loaded = load_round(workbook)
    solution = solve_round(loaded.round)
    # The report never uses a live solver: a Highs object is kept as None.
    copyreg.pickle(highspy.Highs, lambda _h: (type(None), ()))
    with open(pickled, "wb") as fh:
        pickle.dump((solution, list(loaded.notes)), fh)
    return solution, list(loaded.notes)


def time_size(n: int, seed: int, workdir: Path, repeat: int, profile: bool) -> dict[str, Any]:
    """Best wall and CPU seconds of write_report, and the peak memory it added."""
    from allocator.report import write_report

    solution, notes = solved(n, seed, workdir)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    walls, cpus = [], []
    for _ in range(repeat):
        wall, cpu = time.perf_counter(), time.process_time()
        write_report(solution, workdir / f"report-{n}.xlsx", notes=notes)
        walls.append(time.perf_counter() - wall)
        cpus.append(time.process_time() - cpu)
    added = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before
    if profile:
        prof = cProfile.Profile()
        prof.runcall(write_report, solution, workdir / f"report-{n}.xlsx", notes=notes)
        pstats.Stats(prof, stream=sys.stderr).sort_stats("cumulative").print_stats(25)
    return {"n": n, "rows": len(solution.allocation), "wall": min(walls), "cpu": min(cpus),
            "peak_added_mb": added / 1024}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.report", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default=",".join(map(str, DEFAULT_SIZES)))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--workdir", type=Path, default=DEFAULT_WORKDIR)
    parser.add_argument("--profile", action="store_true")
    parser.add_argument("--child", type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    args.workdir.mkdir(parents=True, exist_ok=True)
    if args.child is not None:
        print(json.dumps(time_size(args.child, args.seed, args.workdir, args.repeat,
                                   args.profile)))
        return 0
    print("| programs | allocation rows | report write (s) | CPU (s) | peak memory added (MB) |")
    print("| ---: | ---: | ---: | ---: | ---: |")
    for n in (int(s) for s in args.sizes.split(",") if s.strip()):
        # One size per process: its memory is its own, and only one heavy process runs.
        child = [sys.executable, "-m", "benchmarks.report", "--child", str(n), "--seed",
                 str(args.seed), "--repeat", str(args.repeat), "--workdir", str(args.workdir)]
        out = subprocess.run(child + (["--profile"] if args.profile else []), check=True,
                             stdout=subprocess.PIPE, text=True).stdout
        r = json.loads(out.strip().splitlines()[-1])
        print(f"| {r['n']:,} | {r['rows']:,} | {r['wall']:.2f} | {r['cpu']:.2f} | "
              f"{r['peak_added_mb']:.0f} |", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
