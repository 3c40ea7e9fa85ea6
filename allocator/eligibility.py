"""Which (program, region, fund, period) combinations may receive money, and why others may not.

Stage 3a of the data flow: validated round -> the decision variables' index. A combination is
eligible when the program is active in the period, the region is one of the program's, the
fund's `eligible` filter passes, the fund has budget available in the period (its own or
carried over), a performance fund only pays programs that met their targets, and a scale-up
is only funded when its pilot met its targets.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal

import numpy as np

from allocator.filters import passing
from allocator.round import FundKind, Round


@dataclass
class AllocationIndex:
    """The eligible combinations, as parallel arrays of codes into the id lists."""

    programs: list[str]
    regions: list[str]
    funds: list[str]
    periods: list[str]
    p: np.ndarray  # int32 code into `programs`, one per variable
    r: np.ndarray
    f: np.ndarray
    t: np.ndarray
    exclusions: dict[str, list[str]] = field(default_factory=dict)  # program -> reasons

    def __len__(self) -> int:
        return len(self.p)

    def key(self, k: int) -> tuple[str, str, str, str]:
        return (self.programs[self.p[k]], self.regions[self.r[k]], self.funds[self.f[k]],
                self.periods[self.t[k]])

    def mask(self, dims: dict[str, frozenset[str]]) -> np.ndarray:
        """Boolean mask of the variables whose ids all lie in the given per-dimension sets."""
        out = np.ones(len(self.p), dtype=bool)
        for name, codes, ids in (("program", self.p, self.programs),
                                 ("region", self.r, self.regions),
                                 ("fund", self.f, self.funds),
                                 ("period", self.t, self.periods)):
            allowed = dims[name]
            if len(allowed) == len(ids):
                continue
            lookup = np.fromiter((i in allowed for i in ids), dtype=bool, count=len(ids))
            out &= lookup[codes]
        return out


def budget_available(rnd: Round) -> dict[tuple[str, str], bool]:
    """(fund, period) -> whether the fund can pay anything in that period."""
    out = {}
    for f in rnd.funds:
        running = Decimal(0)
        for t in rnd.periods:
            own = rnd.budget(f.fund_id, t)
            running = running + own if f.carry_over else own
            out[(f.fund_id, t)] = running > 0
    return out


def gate_reasons(rnd: Round) -> tuple[dict[str, str], set[str]]:
    """Programs barred from all money (pilot not met) and those barred from performance funds."""
    barred: dict[str, str] = {}
    no_performance: set[str] = set()
    for p in rnd.programs:
        if not rnd.met_targets(p.program_id):
            no_performance.add(p.program_id)
        if p.pilot_of is not None and not rnd.met_targets(p.pilot_of):
            score = rnd.performance_score(p.pilot_of)
            how = "has no Performance rows" if score is None else f"scored {score:.2f} < 1"
            barred[p.program_id] = f"gated: its pilot {p.pilot_of} did not meet its targets ({how})"
    return barred, no_performance


def allocation_index(rnd: Round) -> AllocationIndex:
    """Enumerate every eligible (program, region, fund, period) in a canonical order."""
    programs = [p.program_id for p in rnd.programs]
    regions = [r.region_id for r in rnd.regions]
    funds = [f.fund_id for f in rnd.funds]
    periods = list(rnd.periods)
    pc = {x: i for i, x in enumerate(programs)}
    rc = {x: i for i, x in enumerate(regions)}
    tc = {x: i for i, x in enumerate(periods)}
    available = budget_available(rnd)
    barred, no_performance = gate_reasons(rnd)
    fund_pass = {f.fund_id: passing(f.eligible, rnd) for f in rnd.funds}
    out_p: list[int] = []
    out_r: list[int] = []
    out_f: list[int] = []
    out_t: list[int] = []
    exclusions: dict[str, list[str]] = {}
    for p in rnd.programs:
        if p.program_id in barred:
            exclusions[p.program_id] = [barred[p.program_id]]
            continue
        active = rnd.active_periods(p)
        count_before = len(out_p)
        for fi, f in enumerate(rnd.funds):
            dims = fund_pass[f.fund_id]
            if f.kind == FundKind.performance and p.program_id in no_performance:
                continue
            if p.program_id not in dims["program"] or f.fund_id not in dims["fund"]:
                continue
            for t in active:
                if not available[(f.fund_id, t)] or t not in dims["period"]:
                    continue
                for r in p.regions:
                    if r not in dims["region"]:
                        continue
                    out_p.append(pc[p.program_id])
                    out_r.append(rc[r])
                    out_f.append(fi)
                    out_t.append(tc[t])
        if len(out_p) == count_before:
            exclusions[p.program_id] = [_why_not_eligible(rnd, p, fund_pass, available,
                                                          no_performance)]
    order = np.lexsort((np.array(out_f), np.array(out_r), np.array(out_t), np.array(out_p)))
    as_array = lambda xs: np.asarray(xs, dtype=np.int32)[order]  # noqa: E731
    return AllocationIndex(programs, regions, funds, periods, as_array(out_p), as_array(out_r),
                           as_array(out_f), as_array(out_t), exclusions)


def _why_not_eligible(rnd, p, fund_pass, available, no_performance) -> str:
    reasons = []
    active = rnd.active_periods(p)
    for f in rnd.funds:
        dims = fund_pass[f.fund_id]
        if f.kind == FundKind.performance and p.program_id in no_performance:
            reasons.append(f"{f.fund_id}: performance fund, targets not met")
        elif p.program_id not in dims["program"] or f.fund_id not in dims["fund"]:
            reasons.append(f"{f.fund_id}: its eligible filter excludes the program")
        elif not any(available[(f.fund_id, t)] and t in dims["period"] for t in active):
            reasons.append(f"{f.fund_id}: no budget in the program's periods")
        elif not any(r in dims["region"] for r in p.regions):
            reasons.append(f"{f.fund_id}: its eligible filter excludes the program's regions")
    return "not eligible for any fund (" + "; ".join(reasons) + ")"


@dataclass(frozen=True)
class CapBlock:
    """A program-period no money can reach: its eligible funds' co-financing caps add up to less
    than the share of its cost the round must pay, 1 - external_match."""

    program: str
    period: str
    caps: tuple[tuple[str, float], ...]  # (fund, cofinancing_cap) of each eligible fund
    external_match: float

    @property
    def caps_total(self) -> float:
        return sum(cap for _, cap in self.caps)

    @property
    def needed(self) -> float:
        """The share of the cost the round must pay: 1 - external_match."""
        return 1.0 - self.external_match

    def text(self) -> str:
        """One sentence: the program, the period, the funds with their caps, what is needed."""
        funds = ", ".join(f"{f} {cap:.0%}" for f, cap in self.caps)
        fix = (f"an external_match of at least {1.0 - self.caps_total:.0%}, or caps adding up to "
               f"{self.needed:.0%}") if self.caps_total > 0 else \
            f"caps adding up to {self.needed:.0%}"
        return (f"program {self.program} can never be funded in {self.period}: the co-financing "
                f"caps of its eligible funds add up to {self.caps_total:.0%} ({funds}), less than "
                f"the {self.needed:.0%} of its cost the round must pay (external_match "
                f"{self.external_match:.0%}); it needs {fix}")


def cap_blocks(rnd: Round, index: AllocationIndex) -> list[CapBlock]:
    """Every program-period with eligible money whose funds' caps add up to < 1 - e.

    Such a program-period gets nothing in every allocation: fund f may pay at most cap_f of
    the total cost and the round must pay 1 - e of it, so sum cap_f >= 1 - e is needed.
    """
    if all(f.cofinancing_cap >= 1 for f in rnd.funds) or not len(index):
        return []  # a fund that may pay everything can always fund a program-period alone
    n_t, n_f = len(index.periods), len(index.funds)
    # One code per (program, period, fund) with eligible money, sorted: regions collapse.
    combos = np.unique((index.p.astype(np.int64) * n_t + index.t) * n_f + index.f)
    pts, first = np.unique(combos // n_f, return_index=True)
    funds = combos % n_f
    caps = np.array([f.cofinancing_cap for f in rnd.funds], dtype=float)
    # Summed fund by fund in id order within each program-period, as a person adds them up.
    total = np.add.reduceat(caps[funds], first)
    match = np.array([p.external_match for p in rnd.programs], dtype=float)
    blocked = np.flatnonzero(total < 1.0 - match[pts // n_t] - 1e-9)
    ends = np.append(first[1:], len(combos))
    out = []
    for i in blocked.tolist():
        p, t = divmod(int(pts[i]), n_t)
        prog = rnd.programs[p]
        block_caps = tuple((rnd.funds[f].fund_id, rnd.funds[f].cofinancing_cap)
                           for f in funds[first[i]:ends[i]].tolist())
        out.append(CapBlock(prog.program_id, index.periods[t], block_caps, prog.external_match))
    return out


def cap_block_lines(blocks: list[CapBlock]) -> list[str]:
    """The blocks as sentences, one per program with its periods merged when they read alike."""
    by_text: dict[str, list[str]] = {}
    for b in blocks:
        key = b.text().replace(f" in {b.period}:", " in {periods}:", 1)
        by_text.setdefault(key, []).append(b.period)
    return [key.replace("{periods}", ", ".join(periods)) for key, periods in by_text.items()]
