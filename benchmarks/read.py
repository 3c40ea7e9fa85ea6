"""How long reading a round workbook takes, against pandas reading the same sheets with calamine.

    python -m benchmarks.read --sizes 10000,100000

For each size, a synthetic round (benchmarks/synthetic.py) is written once, then every
measurement runs in a fresh Python process, one after the other (never two at a time), so each
peak memory (ru_maxrss, imports included) is that measurement's own and no cache is shared:

- pandas Programs: `pd.read_excel(path, sheet_name="Programs", engine="calamine")`
- pandas all: the same with `sheet_name=None` (every sheet, as load_round reads every sheet)
- load_round, split into its phases: container (zip directory checks and the strict scan of
  every XML part), cells (calamine values into tables), validation (tables -> Round)
- load_round: `allocator.validate.load_round` in one call; the ratio is this / pandas all.
  It is a little more than the sum of the phases: when load_round turns the garbage
  collector back on, the first collection walks every object the read made.

Each measurement is repeated (--repeat, interleaved) and the fastest run shown: the machine is
shared, and a busy spell only ever adds time. Results are kept until the clock stops, as a
caller would keep them.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

WORKDIR = Path("/tmp/allocator-read-bench")


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


def measure(kind: str, path: Path) -> dict[str, float]:
    """One measurement, in this process: seconds (per phase where there are phases) and peak MB."""
    if kind in ("pandas_programs", "pandas_all"):
        import pandas as pd

        start = time.perf_counter()
        frames = pd.read_excel(path, sheet_name="Programs" if kind == "pandas_programs" else None,
                               engine="calamine")
        seconds = time.perf_counter() - start  # before the result is freed, as a caller keeps it
        del frames
        return {"seconds": seconds, "peak_mb": _peak_mb()}
    from allocator import validate, workbook

    wanted = set(validate.REQUIRED_SHEETS) | set(validate.OPTIONAL_SHEETS)
    if kind == "load_round":
        start = time.perf_counter()
        loaded = validate.load_round(path)
        seconds = time.perf_counter() - start
        del loaded
        return {"seconds": seconds, "peak_mb": _peak_mb()}
    if not hasattr(workbook, "checked_sheets"):
        return _phases_before_the_split(path, wanted)
    paused = getattr(validate, "gc_paused", contextlib.nullcontext)  # as load_round reads
    with paused():
        t0 = time.perf_counter()
        sheets = workbook.checked_sheets(path, wanted)
        t1 = time.perf_counter()
        tables = workbook.tables_from_sheets(path, sheets, wanted)
        t2 = time.perf_counter()
        rnd = validate.round_from_tables(tables)
        t3 = time.perf_counter()
        del rnd, tables
    return {"container": t1 - t0, "cells": t2 - t1, "validation": t3 - t2, "seconds": t3 - t0,
            "peak_mb": _peak_mb()}


def _phases_before_the_split(path: Path, wanted: set[str]) -> dict[str, float]:
    """Phases of a commit before read_tables was split in two (to compare with it): the
    container checks are timed on their own, then taken out of read_tables' time."""
    from allocator import validate, workbook

    t0 = time.perf_counter()
    workbook.scan_parts(path, workbook.sniff_container(path), wanted)
    t1 = time.perf_counter()
    tables, _ = workbook.read_tables(path, wanted)
    t2 = time.perf_counter()
    rnd = validate.round_from_tables(tables)
    t3 = time.perf_counter()
    del rnd, tables
    container = t1 - t0
    return {"container": container, "cells": t2 - t1 - container, "validation": t3 - t2,
            "seconds": t3 - t1, "peak_mb": _peak_mb()}


def in_fresh_process(kind: str, path: Path) -> dict[str, float]:
    out = subprocess.run([sys.executable, "-m", "benchmarks.read", "--one", kind, str(path)],
                         check=True, capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def workbook_for(n: int, workdir: Path) -> Path:
    """The synthetic round of n programs, written once and reused."""
    from benchmarks.synthetic import write_synthetic_round

    path = workdir / f"round-{n}.xlsx"
    if not path.exists():
        workdir.mkdir(parents=True, exist_ok=True)
        write_synthetic_round(path, n)
    return path


def programs_rows(path: Path) -> int:
    from python_calamine import CalamineWorkbook

    rows = CalamineWorkbook.from_path(str(path)).get_sheet_by_name("Programs").to_python()
    return sum(1 for row in rows[1:] if any(v not in ("", None) for v in row))


def size_table(n: int, rows: int, r: dict[str, dict[str, float]], repeat: int) -> str:
    base = r["pandas_all"]["seconds"]
    phases = r["phases"]
    lines = [
        f"### {n:,} programs ({rows:,} rows on Programs); fastest of {repeat} runs",
        "",
        "| measurement | seconds | peak MB |",
        "| --- | ---: | ---: |",
        f"| pandas calamine, Programs sheet | {r['pandas_programs']['seconds']:.2f} | "
        f"{r['pandas_programs']['peak_mb']:.0f} |",
        f"| pandas calamine, all sheets | {base:.2f} | {r['pandas_all']['peak_mb']:.0f} |",
        f"| load_round: container checks and scan | {phases['container']:.2f} | |",
        f"| load_round: cell values into tables | {phases['cells']:.2f} | |",
        f"| load_round: validation | {phases['validation']:.2f} | |",
        f"| load_round: sum of phases | {phases['seconds']:.2f} | {phases['peak_mb']:.0f} |",
        f"| load_round, one call | {r['load_round']['seconds']:.2f} | "
        f"{r['load_round']['peak_mb']:.0f} |",
        f"| **ratio load_round / pandas all sheets** | **{r['load_round']['seconds'] / base:.2f}** | |",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="10000,100000", help="program counts, comma-separated")
    parser.add_argument("--workdir", type=Path, default=WORKDIR, help="where workbooks are kept")
    parser.add_argument("--repeat", type=int, default=3,
                        help="fresh-process runs of each measurement; the fastest is shown")
    parser.add_argument("--one", nargs=2, metavar=("KIND", "PATH"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.one:
        print(json.dumps(measure(args.one[0], Path(args.one[1]))))
        return 0
    for n in (int(s) for s in args.sizes.split(",")):
        path = workbook_for(n, args.workdir)
        runs: dict[str, list[dict[str, float]]] = {kind: [] for kind in KINDS}
        for _ in range(args.repeat):  # interleaved, so a busy spell of the machine hits all kinds
            for kind in KINDS:
                runs[kind].append(in_fresh_process(kind, path))
        results = {kind: min(r, key=lambda m: m["seconds"]) for kind, r in runs.items()}
        print(size_table(n, programs_rows(path), results, args.repeat) + "\n", flush=True)
    return 0


KINDS = ("pandas_programs", "pandas_all", "phases", "load_round")


if __name__ == "__main__":
    sys.exit(main())
