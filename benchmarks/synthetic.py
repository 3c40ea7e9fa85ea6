"""Synthetic round workbooks at any size, to the DESIGN.md input contract (version 1).

`write_synthetic_round(path, n_programs, seed)` writes a round whose every part scales with the
number of programs: regions (about n/100, at least 10, at most 300), jurisdictions (3 to 8),
funds (a joint fund with contributions and carry-over, one public fund per jurisdiction with an
eligibility filter and a co-financing cap, an employers' fund, a learner-support fund and a
carry-over performance fund), three periods, ~20% cross-border programs, ~5% all-or-nothing
programs, pilots with Performance rows and scale-ups gated on them, and a rule of every measure
(amount, share, share_within per jurisdiction, per_capita per region, contribution_share, and a
soft rule with a penalty).

Budgets are about a third of what the programs could absorb, so budgets and rules bind; every
floor is sized from capacity the generator knows is reachable, so the round stays feasible at
every size. The same (n_programs, seed) always gives the same workbook content.

Small rounds are written with `allocator.template.write_round_workbook` (openpyxl, styled
headers); large ones with xlsxwriter in constant-memory mode, same sheets and headers, so that
generating a 50,000-program round takes seconds, not minutes.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from allocator.round import OUTCOME_COLUMNS
from allocator.template import HEADERS, write_round_workbook

PERIODS = ("2026", "2027", "2028")
SECTORS = ("digital", "care", "green", "manufacturing", "logistics", "hospitality", "construction")
# typical outcomes per sector: employment_rate, retention_rate, learning_gain, wage_gain
SECTOR_OUTCOMES = np.array([
    (0.72, 0.80, 0.40, 0.14), (0.82, 0.70, 0.30, 0.06), (0.76, 0.82, 0.35, 0.11),
    (0.70, 0.85, 0.28, 0.09), (0.74, 0.72, 0.20, 0.06), (0.68, 0.58, 0.18, 0.04),
    (0.73, 0.78, 0.25, 0.08),
])
OBJECTIVE = (("employment_rate", 1.0), ("retention_rate", 0.5), ("learning_gain", 0.3),
             ("wage_gain", 2.0))
TRANCHES = (("joint", "advance", 0.4, 0, "contract signed"),
            ("joint", "interim", 0.4, 0, "mid-term report"),
            ("joint", "final", 0.2, 1, "final outcomes report"),
            ("public", "advance", 0.6, 0, "grant agreement signed"),
            ("public", "final", 0.4, 1, "completion certificate"),
            ("employer", "invoice", 1.0, 0, "training invoice"),
            ("learner_support", "grant", 1.0, 0, "enrolment confirmed"),
            ("performance", "bonus", 1.0, 1, "verified placement results"))
# Above this many programs the workbook is streamed with xlsxwriter instead of openpyxl.
OPENPYXL_MAX_PROGRAMS = 2_000
BUDGET_SHARE = 0.35  # budget per period as a share of what the active programs could absorb
JOINT = "JIF"

Sheets = dict[str, tuple[list[str], list[list[Any]]]]


def sizes_for(n_programs: int) -> tuple[int, int]:
    """(regions, jurisdictions) for a round of n programs."""
    n_regions = min(300, max(10, round(n_programs / 100)))
    return n_regions, min(8, max(3, n_regions // 25))


def synthetic_sheets(n_programs: int, seed: int = 0, time_limit_s: float = 3600,
                     all_or_nothing: float = 0.05) -> Sheets:
    """The round as {sheet: (headers, rows)}, rows in header order; seeded and deterministic.
    `all_or_nothing` (at most 0.05) is the share of programs with a minimum size: 0 makes the
    round a pure LP."""
    if n_programs < 20:
        raise ValueError("a synthetic round needs at least 20 programs")
    rng = np.random.default_rng(seed)
    n_reg, n_jur = sizes_for(n_programs)
    n = n_programs

    # --- regions: contiguous blocks per jurisdiction, log-normal populations ---------------------
    jur_names = [f"J{j + 1:02d}" for j in range(n_jur)]
    reg_ids = [f"R{i + 1:03d}" for i in range(n_reg)]
    reg_jur = np.arange(n_reg) * n_jur // n_reg
    pop = np.clip(rng.lognormal(math.log(150_000), 0.6, n_reg), 20_000, 2_000_000).round(-2)
    rural = rng.random(n_reg) < 0.4
    regions_of_jur = [np.flatnonzero(reg_jur == j) for j in range(n_jur)]

    # --- programs -------------------------------------------------------------------------------
    home = rng.choice(n_reg, size=n, p=pop / pop.sum())
    home[:n_reg] = np.arange(n_reg)  # every region is home to at least one plain program
    sector = rng.integers(0, len(SECTORS), n)
    cost = rng.integers(20, 150, n) * 100
    max_t = rng.integers(15, 200, n)
    order = rng.permutation(np.arange(n_reg, n))  # the first n_reg programs stay plain
    n_pilot, n_scale = round(0.10 * n), round(0.05 * n)
    pilots, scale_ups = order[:n_pilot], order[n_pilot:n_pilot + n_scale]
    stage = np.full(n, "established", dtype=object)
    stage[pilots] = "pilot"
    stage[scale_ups] = "scale_up"
    pilot_of = np.full(n, None, dtype=object)
    pilot_of[scale_ups] = [f"P{p + 1:06d}" for p in pilots[:n_scale]]
    home[scale_ups] = home[pilots[:n_scale]]
    sector[scale_ups] = sector[pilots[:n_scale]]
    cross = rng.random(n) < 0.2
    cross[:n_reg] = False
    regions: list[list[int]] = [[int(h)] for h in home]
    for i in np.flatnonzero(cross):
        j = int(reg_jur[home[i]])
        for _ in range(int(rng.integers(1, 3))):  # one or two partners across a border
            other = (j + (1 if rng.random() < 0.5 else -1)) % n_jur
            partner = int(rng.choice(regions_of_jur[other]))
            if partner not in regions[i]:
                regions[i].append(partner)
    for s, p in zip(scale_ups, pilots[:n_scale], strict=True):
        regions[s] = list(regions[p])
    min_t = np.zeros(n, dtype=np.int64)
    candidates = order[n_pilot + n_scale:][: round(0.05 * n)]
    minimum = np.ceil(max_t[candidates] * rng.uniform(0.2, 0.5, len(candidates)))
    keep = round(min(all_or_nothing, 0.05) * n)  # the same draws whatever the share
    min_t[candidates[:keep]] = minimum[:keep]
    start = np.full(n, None, dtype=object)
    end = np.full(n, None, dtype=object)
    u = rng.random(n)
    start[(u < 0.1) & (stage == "established")] = PERIODS[1]
    end[(u > 0.9) & (stage == "established")] = PERIODS[1]
    start[scale_ups] = PERIODS[1]
    end[pilots[rng.random(n_pilot) < 0.5]] = PERIODS[1]
    start[:n_reg] = end[:n_reg] = None
    tag_p = {"marginalized": 0.25, "women": 0.3, "youth": 0.3, "migrants": 0.15}
    tags = {t: rng.random(n) < p for t, p in tag_p.items()}
    tags["rural"] = rural[home] & (rng.random(n) < 0.7)
    tags["language_support"] = cross & (rng.random(n) < 0.5) | (rng.random(n) < 0.05)
    outcomes = SECTOR_OUTCOMES[sector] + rng.uniform(-0.08, 0.08, (n, 4)) * [1, 1, 1, 0.4]
    outcomes[tags["marginalized"], 0] -= 0.08  # harder to place, more to learn
    outcomes[tags["marginalized"], 2] += 0.05
    outcomes = np.clip(outcomes, [0.3, 0.3, 0.1, 0.02], [0.97, 0.97, 1.0, 1.0]).round(3)

    # --- performance: pilots (70% met), a quarter of the established programs (60% met) --------
    established = np.flatnonzero(stage == "established")[n_reg:]
    measured = np.concatenate([pilots, established[rng.random(len(established)) < 0.25]])
    met_p = np.where(stage[measured] == "pilot", 0.7, 0.6)
    met = rng.random(len(measured)) < met_p
    performance: list[list[Any]] = []
    met_ids = set()
    for i, ok in zip(measured, met, strict=True):
        pid = f"P{i + 1:06d}"
        for metric, target in (("placement_rate", 0.7), ("completion_rate", 0.85)):
            ratio = rng.uniform(1.0, 1.2) if ok else rng.uniform(0.6, 0.97)
            performance.append([pid, metric, target, round(target * ratio, 4)])
        if ok:
            met_ids.add(int(i))
    gated = np.array([p is not None and int(p[1:]) - 1 not in met_ids for p in pilot_of])

    # --- budgets from what the programs could absorb ----------------------------------------------
    active = np.ones((n, len(PERIODS)), dtype=bool)
    for ti in range(len(PERIODS)):
        active[:, ti] &= ~((start == PERIODS[1]) & (ti < 1)) & ~((end == PERIODS[1]) & (ti > 1))
    active[gated] = False
    absorb = (max_t * cost)[:, None] * active  # per program and period
    per_period = BUDGET_SHARE * absorb.sum(axis=0)
    jur_pop = np.array([pop[regions_of_jur[j]].sum() for j in range(n_jur)])
    jur_share = jur_pop / jur_pop.sum()

    def money(x: float) -> int:
        return int(round(x, -3))

    funds: list[list[Any]] = [[JOINT, "Joint investment fund", "joint", "joint", 1.0, None, "yes"]]
    budgets: list[list[Any]] = []
    for ti, t in enumerate(PERIODS):
        budgets.append([JOINT, t, money(0.40 * per_period[ti] * (0.9, 1.0, 1.1)[ti])])
    for j, name in enumerate(jur_names):
        fid = f"PUB-{name}"
        funds.append([fid, f"Public training fund {name}", "public", name, 0.6,
                      f"jurisdiction={name}", "no"])
        for ti, t in enumerate(PERIODS):
            budgets.append([fid, t, money(0.30 * per_period[ti] * jur_share[j])])
    extra = (("EMP", "Employers' training fund", "employer", 0.5,
              "sector=manufacturing|logistics|construction", "no", 0.12, (1.0, 1.0, 1.0)),
             ("LSF", "Learner support fund", "learner_support", 0.3,
              "target=marginalized|migrants", "no", 0.06, (1.0, 1.0, 1.0)),
             ("PERF", "Results bonus fund", "performance", 0.4, "stage!=pilot", "yes", 0.08,
              (0.6, 1.0, 1.4)))
    for fid, name, kind, cap, eligible, carry, share, shape in extra:
        funds.append([fid, name, kind, "joint", cap, eligible, carry])
        for ti, t in enumerate(PERIODS):
            budgets.append([fid, t, money(share * per_period[ti] * shape[ti])])
    joint_total = sum(b[2] for b in budgets if b[0] == JOINT)
    contributions = [[JOINT, name, money(joint_total * jur_share[j] * rng.uniform(0.9, 1.1))]
                     for j, name in enumerate(jur_names)]
    total_budget = float(sum(b[2] for b in budgets))

    # --- rules: floors sized from capacity known to be reachable -----------------------------------
    reach = np.zeros(n_reg)  # money each region could receive, over the round
    for i, regs in enumerate(regions):
        for r in regs:
            reach[r] += absorb[i].sum() / len(regs)
    per_capita = min(0.5 * total_budget / pop.sum(), 0.3 * float((reach / pop).min()))
    per_capita = max(0.5, math.floor(per_capita * 2) / 2)
    pub_totals = [sum(b[2] for b in budgets if b[0] == f"PUB-{name}") for name in jur_names]
    rural_reach = [reach[regions_of_jur[j][rural[regions_of_jur[j]]]].sum() for j in range(n_jur)]
    rural_floor = money(min(0.25 * min(pub_totals),
                            0.2 * min((x for x in rural_reach if x > 0), default=0.0)))
    rules = [
        ["R01-JUSTE-RETOUR", "each contributor gets 95% of its contribution share of the joint fund",
         "contribution_share", f"fund={JOINT}", None, None, ">=", 0.95, None],
        ["R02-INCLUSION", "at least 45% of all money for rural or marginalized learners", "share",
         "target=rural|marginalized", None, None, ">=", 0.45, None],
        ["R03-WOMEN-YOUTH", "in each jurisdiction, 45% of its money for women or youth",
         "share_within", "target=women|youth", "jurisdiction", None, ">=", 0.45, None],
        ["R04-FLOOR", "every region gets a minimum per inhabitant", "per_capita", None, "region",
         None, ">=", per_capita, None],
        ["R05-PILOTS", "untested pilots get at most 6% of the budget", "amount", "stage=pilot",
         None, None, "<=", money(0.06 * total_budget), None],
        ["R06-GREEN", "at least 18% of the joint fund for green skills", "share",
         f"fund={JOINT}; sector=green", None, f"fund={JOINT}", ">=", 0.18, None],
        ["R07-SECTOR-CAP", "no sector gets more than 20% of all money", "share", None, "sector",
         None, "<=", 0.2, None],
        ["R08-LANGUAGE", "aim for 8% on language support (soft)", "share",
         "target=language_support", None, None, ">=", 0.08, 1e-4],
        ["R09-RURAL-PUBLIC", "each jurisdiction's public fund spends a floor in rural regions",
         "amount", "kind=public; rural=yes", "jurisdiction", None, ">=", rural_floor, None],
    ]

    programs = []
    for i in range(n):
        programs.append([
            f"P{i + 1:06d}", f"Program {i + 1}", SECTORS[sector[i]], stage[i],
            ", ".join(reg_ids[r] for r in regions[i]), int(cost[i]), int(max_t[i]), int(min_t[i]),
            start[i], end[i], ", ".join(t for t in sorted(tags) if tags[t][i]) or None,
            pilot_of[i], *(float(v) for v in outcomes[i]),
        ])
    round_rows = [["round_id", f"synthetic-{n}-s{seed}"],
                  ["title", f"Synthetic benchmark round, {n} programs, seed {seed}"],
                  ["currency", "EUR"], ["periods", ", ".join(PERIODS)], ["rounding_unit", 100],
                  ["equity_objective", "none"], ["outcome_tolerance", 0],
                  ["time_limit_s", time_limit_s], ["mip_gap", 0.0001]]
    # The contract-1.0 columns only (the template's later columns stay blank, so they are left out).
    program_headers = HEADERS["Programs"][:12 + len(OUTCOME_COLUMNS)]
    assert program_headers[12:] == list(OUTCOME_COLUMNS)
    return {
        "Round": (["key", "value"], round_rows),
        "Regions": (HEADERS["Regions"], [[reg_ids[i], f"Region {i + 1}", jur_names[reg_jur[i]],
                                          int(pop[i]), "yes" if rural[i] else "no"]
                                         for i in range(n_reg)]),
        "Funds": (HEADERS["Funds"], funds),
        "Budgets": (HEADERS["Budgets"], budgets),
        "Contributions": (HEADERS["Contributions"], contributions),
        "Programs": (program_headers, programs),
        "Performance": (HEADERS["Performance"], performance),
        "Tranches": (HEADERS["Tranches"][:6], [[k, None, name, s, d, c] for k, name, s, d, c in TRANCHES]),
        "Objective": (HEADERS["Objective"], [list(o) for o in OBJECTIVE]),
        "Rules": (HEADERS["Rules"], rules),
    }


def write_synthetic_round(path: str | Path, n_programs: int, seed: int = 0,
                          time_limit_s: float = 3600, all_or_nothing: float = 0.05) -> Path:
    """Write a synthetic round of `n_programs` programs to `path` (.xlsx); returns the path.
    `time_limit_s` goes to the Round sheet: it bounds the outcome (MILP) stage."""
    path = Path(path)
    sheets = synthetic_sheets(n_programs, seed, time_limit_s, all_or_nothing)
    if n_programs <= OPENPYXL_MAX_PROGRAMS:
        as_dicts: dict[str, Any] = {"Round": {k: v for k, v in sheets["Round"][1]}}
        for name, (headers, rows) in sheets.items():
            if name != "Round":
                as_dicts[name] = [dict(zip(headers, row, strict=True)) for row in rows]
        return write_round_workbook(path, as_dicts)
    return _write_streaming(path, sheets)


def _write_streaming(path: Path, sheets: Sheets) -> Path:
    try:
        import xlsxwriter
    except ImportError as exc:  # an optional extra: only rounds this large need it
        raise SystemExit(f"writing a round of more than {OPENPYXL_MAX_PROGRAMS:,} programs needs "
                         "xlsxwriter: pip install -e '.[bench]'") from exc

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".part")
    wb = xlsxwriter.Workbook(str(tmp), {"constant_memory": True})
    bold = wb.add_format({"bold": True})
    for name, (headers, rows) in sheets.items():
        ws = wb.add_worksheet(name)
        ws.write_row(0, 0, headers, bold)
        ws.freeze_panes(1, 0)
        for r, row in enumerate(rows, start=1):
            _write_row(ws, r, row)
    wb.close()
    tmp.replace(path)
    return path


def _write_row(ws: Any, r: int, row: Sequence[Any]) -> None:
    for c, value in enumerate(row):
        if value is None:
            continue  # a blank cell, as a person leaves it
        if isinstance(value, str):
            ws.write_string(r, c, value)  # never turned into a number: ids and periods are text
        else:
            ws.write_number(r, c, value)


def main() -> None:
    """`python -m benchmarks.synthetic N PATH [SEED]`: write one synthetic round."""
    import sys

    n, path = int(sys.argv[1]), sys.argv[2]
    seed = int(sys.argv[3]) if len(sys.argv) > 3 else 0
    print(write_synthetic_round(path, n, seed))


if __name__ == "__main__":
    main()
