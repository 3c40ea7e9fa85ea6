"""Sweep speed-up with 1 and 2 workers: local process pool and a Dask LocalCluster.

    python -m benchmarks.sweep [--programs 200] [--samples 16] [--seed 0] [--no-dask]

Solves the same outcome-uncertainty sweep of a synthetic round (benchmarks.synthetic) with:
in-process (1 worker, no pool), a local process pool of 2 workers, and a Dask LocalCluster of
1 and of 2 single-threaded worker processes. Every run gives the same tables (checked here);
the speed-up is the 1-worker time over the 2-worker time. Not part of the test suite.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import pandas as pd

from allocator.sweep import run_sweep, sweep_tables
from allocator.validate import load_round
from benchmarks.synthetic import write_synthetic_round


def timed(rnd, **kwargs) -> tuple[float, dict[str, pd.DataFrame]]:
    tick = time.perf_counter()
    result = run_sweep(rnd, **kwargs)
    return time.perf_counter() - tick, sweep_tables(result)


def same(a: dict[str, pd.DataFrame], b: dict[str, pd.DataFrame]) -> bool:
    try:
        for sheet in a:
            pd.testing.assert_frame_equal(a[sheet], b[sheet], check_exact=True)
    except AssertionError:
        return False
    return True


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--programs", type=int, default=200)
    ap.add_argument("--samples", type=int, default=16)
    ap.add_argument("--spread", type=float, default=0.1)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--no-dask", action="store_true")
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        path = write_synthetic_round(Path(tmp) / "bench.xlsx", args.programs, args.seed)
        rnd = load_round(path).round
    sweep = {"spread": args.spread, "samples": args.samples, "seed": args.seed}
    print(f"round: {args.programs} programs, {len(rnd.regions)} regions, {len(rnd.funds)} funds; "
          f"sweep: {args.samples} samples of +-{args.spread:g} outcomes")
    rows = []
    base_t, base_tables = timed(rnd, workers=1, **sweep)
    rows.append(("in-process", 1, base_t, True))
    t, tables = timed(rnd, workers=2, **sweep)
    rows.append(("process pool", 2, t, same(base_tables, tables)))
    if not args.no_dask:
        from dask.distributed import LocalCluster

        for n in (1, 2):
            with LocalCluster(n_workers=n, threads_per_worker=1, processes=True,
                              dashboard_address=None, silence_logs=40) as cluster:
                timed(rnd, scheduler=cluster.scheduler_address, spread=args.spread, samples=n,
                      seed=args.seed)  # warm the workers: imports happen once per worker
                t, tables = timed(rnd, scheduler=cluster.scheduler_address, **sweep)
            rows.append(("dask LocalCluster", n, t, same(base_tables, tables)))
    one = {kind.split()[0]: t for kind, n, t, _ in rows if n == 1}
    print(f"{'runner':<18}{'workers':>8}{'seconds':>10}{'solves/s':>10}{'speed-up':>10}  same tables")
    for kind, n, t, ok in rows:
        ref = one.get(kind.split()[0], base_t)
        print(f"{kind:<18}{n:>8}{t:>10.2f}{args.samples / t:>10.2f}{ref / t:>9.2f}x  {'yes' if ok else 'NO'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
