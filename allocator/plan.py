"""How a round is solved, chosen once from its size and settings: the `SolvePlan`.

The engine compiles the round's matrix, calls `choose_plan` once, and every later decision
(relaxation first, each stage's HiGHS method, crossover and presolve, how the allocation is
made unique) reads the plan. The decision record keeps it (`plan.json`), the report's Audit
sheet says it in words, and `verify` re-derives it from the canonical round.

The size regimes are the one table `THRESHOLDS` below; nothing else decides by size.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

Uniqueness = Literal["tiebreak", "interior_centre"]
# Where the prices LP (the outcome LP with the on/off decisions fixed) starts: from the MILP's
# optimum, which is also its own; from scratch, after a relaxation's decisions were rounded
# (that point is not the fixed LP's) or above THRESHOLDS.prices_from_optimum_columns; or
# nowhere, when an LP outcome stage is its own prices.
PricesFrom = Literal["outcome_optimum", "cold", "outcome_stage"]
# How an LP stage solved by interior point with crossover reaches its vertex: HiGHS's own
# crossover ("solver"), or interior point without crossover on HiGHS's fuller presolve, then
# IPX's crossover on the whole LP from that primal-dual point and primal simplex from its
# basis ("crossover_from_interior"; allocator.solve._vertex_from_interior). The tie-break LP,
# whose optimum is one vertex, is solved the second way: 10,000 programs 13.3 s -> 5.0 s.
Finish = Literal["solver", "crossover_from_interior"]
# Primal simplex, for an LP started from a point or basis that is already primal feasible and
# optimal or nearly so. The MILP's optimum is an optimum of the prices LP, so only its prices
# are missing: primal simplex started from that point finds an optimal basis in a few
# iterations, where dual simplex gains little from a primal point (measured, 2 cores: 1,000
# programs 1.5 s -> 0.03 s, 5,000 programs 62.1 s -> 1.2 s, 10,000 programs 55.0 s -> 3.9 s;
# docs/benchmark.md). The tie-break's finish runs it from the crossover's basis.
PRIMAL_SIMPLEX_OPTIONS: dict[str, object] = {"solver": "simplex", "simplex_strategy": 4}


@dataclass(frozen=True)
class Thresholds:
    """Column counts (and a time) above which a round is solved another way."""

    # LP stages above this many columns use the interior point method (with crossover, so the
    # answer is still a vertex with a basis to warm-start from): dual simplex took 368 s on the
    # fixed LP of a 10,000-program round.
    ipm_columns: int = 60_000
    # Above this many columns crossover costs more than the interior point solve itself (50,000
    # programs: still in crossover after 15 minutes); the optimum of each stage after the first
    # is unique, so the interior point solution without a basis is the same allocation to 1e-8.
    crossover_columns: int = 250_000
    # Above this many columns a MILP's outcome stage is its LP relaxation, solved by interior
    # point, with the on/off decisions rounded: at 50,000 programs (519,307 columns) HiGHS's
    # branch and bound had not finished its root LP (dual simplex) after 10 minutes, while
    # interior point solved the relaxation in 499 s with 18 of 7,024 on/off decisions fractional.
    relaxation_columns: int = 250_000
    # Up to this many columns the prices LP of a MILP starts from the MILP's optimum (primal
    # simplex); above, it is solved from scratch by the LP stages' method (interior point with
    # crossover). Primal simplex from the optimum against from scratch, synthetic rounds:
    # 10,000 programs (103,520 columns) 3.9-5.2 s against 55 s; 15,000 (155,926) 86.9 s
    # (40,880 steps) against 108.1 s; 20,000 (207,000) 255.7 s against 176.2 s. The limit is
    # just above the largest size where the start was measured to win.
    prices_from_optimum_columns: int = 160_000
    # Without crossover, an interior point stage stopped by its time limit still holds IPX's
    # last iterate, an allocation with a bound on the optimum once IPX is a few iterations in --
    # but only without presolve: HiGHS does not map a non-optimal interior point back through
    # presolve (its values come back invalid). LP stages above this many columns run without
    # it: at 200,000 programs (2 million columns) IPX needs hours, so the time limit is what
    # ends it. Below, presolve pays: at 50,000 programs (512,283 columns) the bare solve took
    # 548 s with it and 686 s without (85 against 99 iterations, but dearer ones).
    stoppable_columns: int = 1_000_000
    # `time_limit_s` bounds the search for the best outcome (where a gap can be reported). The
    # LP stages after it (prices, equity, tie-break) have no useful answer short of their
    # optimum, so they get at least this long each.
    follow_up_min_seconds: float = 600.0


THRESHOLDS = Thresholds()


def stage_options(columns: int, lp: bool, method: str,
                  extra: Mapping[str, object] | None = None) -> dict[str, object]:
    """HiGHS options saying how one stage of `columns` columns is solved (`solver`, and
    `run_crossover` and `presolve` where the size calls for them), `extra` applied on top.

    The one size rule: `choose_plan` takes a round's plan from it, and a stage solved without
    a plan (rounding, weight ranges) gets its options from it directly.
    """
    t = THRESHOLDS
    solver = "ipm" if lp and method == "choose" and columns > t.ipm_columns else method
    out: dict[str, object] = {"solver": solver}
    if solver == "ipm":
        out["run_crossover"] = "on" if columns <= t.crossover_columns else "off"
    out.update(extra or {})
    if lp and out.get("solver") == "ipm" and out.get("run_crossover") == "off" \
            and columns > t.stoppable_columns:
        out.setdefault("presolve", "off")
    return out


@dataclass(frozen=True)
class SolvePlan:
    """How one round is solved: chosen once, before the first stage, from its size and settings."""

    columns: int  # amounts to decide (matrix columns), the size the plan is chosen from
    integer_columns: int  # on/off decisions (all-or-nothing programs per period)
    method: str  # as asked of the engine: "choose" (by size) or a HiGHS solver
    relaxation_first: bool  # the outcome stage solves the LP relaxation, on/off decisions rounded
    outcome_method: str  # HiGHS `solver` of the outcome stage ("choose": HiGHS's own choice)
    lp_method: str  # HiGHS `solver` of the LP stages: prices, equity, tie-break, nominal
    crossover: bool | None  # interior point stages end at a vertex; None: no interior point stage
    presolve: bool  # the LP stages run HiGHS's presolve (off: a stopped stage keeps its iterate)
    equity: bool  # equity stages run between the prices and the tie-break
    uniqueness: Uniqueness  # tie-break LP, or the interior point centre with twins averaged
    prices_from: PricesFrom  # where the prices LP starts
    partial_sums: bool  # LP stages are solved with shared partial sums (allocator.partials)
    # The tie-break LP starts from scratch. Measured at 10,000 programs: from the prices LP's
    # basis it took 35 s against 8 s cold; primal simplex from the prices LP's point (feasible
    # for it: on the optimal face) ended with status "Unknown" after 5.6 s, cold IPM 8.9 s.
    tiebreak_from: Literal["cold"]
    # How the tie-break LP reaches its vertex (see Finish); "solver" also when it is solved
    # by simplex, which ends at one anyway.
    tiebreak_finish: Finish
    time_limit_s: float  # the outcome stage's limit
    follow_up_time_limit_s: float  # each later LP stage's limit

    @property
    def milp(self) -> bool:
        """Whether the outcome stage is a MILP (branch and bound)."""
        return self.integer_columns > 0 and not self.relaxation_first

    def prices_extra(self) -> dict[str, object] | None:
        """What the prices LP (stage 2 of a MILP round) adds to the LP stages' options."""
        return PRIMAL_SIMPLEX_OPTIONS if self.prices_from == "outcome_optimum" else None

    def options(self, lp: bool, extra: Mapping[str, object] | None = None) -> dict[str, object]:
        """The HiGHS options (`solver`, `run_crossover`, `presolve`) of a stage: an LP stage,
        or the MILP outcome stage; `extra` (such as the tie-break's) applied on top."""
        solver = self.lp_method if lp else self.outcome_method
        out: dict[str, object] = {"solver": solver}
        if solver == "ipm":
            out["run_crossover"] = "on" if self.crossover else "off"
        if lp and not self.presolve:
            out["presolve"] = "off"
        out.update(extra or {})
        if out["solver"] != "ipm":  # `extra` chose another method: crossover means nothing there
            out.pop("run_crossover", None)
        return out

    def as_dict(self) -> dict[str, Any]:
        """The plan as a JSON object (the record's plan.json)."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SolvePlan:
        """The plan a record holds; ValueError names a missing or unknown field."""
        names = {f.name for f in dataclasses.fields(cls)}
        missing, unknown = sorted(names - set(data)), sorted(set(data) - names)
        if missing or unknown:
            raise ValueError("not a solve plan: " + "; ".join(
                part for part in (f"missing {', '.join(missing)}" if missing else "",
                                  f"unknown {', '.join(unknown)}" if unknown else "") if part))
        return cls(**{name: data[name] for name in names})


def choose_plan(columns: int, integer_columns: int, *, time_limit_s: float, equity: bool = False,
                method: str = "choose") -> SolvePlan:
    """The plan for a round whose compiled matrix has `columns` columns, `integer_columns` of
    them on/off decisions; `equity` when the round has an equity objective."""
    t = THRESHOLDS
    relax = integer_columns > 0 and columns > t.relaxation_columns
    lp = stage_options(columns, True, method)
    outcome = stage_options(columns, integer_columns == 0 or relax, method)
    interior = [o for o in (lp, outcome) if o["solver"] == "ipm"]
    crossover = interior[0]["run_crossover"] == "on" if interior else None
    # Interior point without crossover ends at the analytic centre of the optimal face: already
    # one well-defined optimum. A tie-break LP on top stalled (50,000 programs: 400 s without
    # an optimum), so none runs; equity stages leave the face on purpose and always need one.
    centre = not equity and lp["solver"] == "ipm" and lp.get("run_crossover") == "off"
    return SolvePlan(
        columns=int(columns), integer_columns=int(integer_columns), method=method,
        relaxation_first=relax, outcome_method=str(outcome["solver"]),
        lp_method=str(lp["solver"]), crossover=crossover, presolve=lp.get("presolve") != "off",
        equity=equity, uniqueness="interior_centre" if centre else "tiebreak",
        prices_from="outcome_stage" if integer_columns == 0 else
        "cold" if relax or columns > t.prices_from_optimum_columns else "outcome_optimum",
        tiebreak_from="cold",
        tiebreak_finish="crossover_from_interior" if lp["solver"] == "ipm"
        and lp.get("run_crossover") == "on" else "solver",
        # Shared partial sums as columns (allocator.partials) where the outcome stage is an LP
        # solved by interior point: at 10,000 programs 28% fewer nonzeros, and that LP 47 s ->
        # 37 s without crossover, 51 s -> 43 s with it. Not for branch and bound: at 10,000
        # programs the MILP went 40-61 s -> 28 s, but at 5,000 14 s -> over 90 s (its root
        # solution failed the feasibility check in the original space by 1e-6, and HiGHS's
        # repair LPs took the time); nor after it, where the prices LP (3.7 s against 3.9 s)
        # and the tie-break (9.0 s against 8.0 s) gained nothing for 0.6 s of transform each.
        partial_sums=outcome["solver"] == "ipm",
        time_limit_s=float(time_limit_s),
        follow_up_time_limit_s=max(float(time_limit_s), t.follow_up_min_seconds))


# How the plan reads in the report's Audit sheet: words for a person, not solver options.
METHOD_WORDS = {"simplex": "the simplex method", "ipm": "the interior point method",
                "choose": "the solver's default method", "pdlp": "first-order PDLP"}


def plan_lines(plan: SolvePlan) -> list[tuple[str, str]]:
    """The plan in plain words, one (item, sentence) per decision."""
    how = METHOD_WORDS.get(plan.lp_method, plan.lp_method)
    if plan.lp_method == "ipm":
        how += ", ending at an exact corner (crossover)" if plan.crossover else \
            ", without crossover (no exact corner)"
    if not plan.presolve:
        how += ", without simplifying the model first (so a stop keeps its last point)"
    if plan.relaxation_first:
        outcome = ("the best outcome with all-or-nothing programs allowed in part, then those "
                   f"decisions rounded (too many to search them exactly), by {how}")
    elif plan.milp:
        outcome = "an exact search over the all-or-nothing programs (branch and bound)"
    else:
        outcome = "a linear program, by " + (how if plan.outcome_method == plan.lp_method
                                             else METHOD_WORDS.get(plan.outcome_method,
                                                                   plan.outcome_method))
    if plan.uniqueness == "interior_centre":
        unique = ("the centre of all best allocations (interior point), equal programs given "
                  "their average; no tie-break is solved at this size")
    elif plan.equity:
        unique = ("a tie-break among the allocations the equity stages allow: least weighted "
                  "money, equal programs equal money")
    else:
        unique = ("a tie-break among the best allocations: least weighted money, equal "
                  "programs equal money")
    if plan.uniqueness == "tiebreak" and plan.tiebreak_finish == "crossover_from_interior":
        unique += ("; its exact corner is found from the interior point method's answer "
                   "(crossover, then a few simplex steps)")
    prices = {
        "outcome_optimum": "the simplex method started from the best outcome's allocation, which "
                           "is already optimal there (only its prices are computed)",
        "cold": ("the rounded on/off decisions" if plan.relaxation_first else
                 "the on/off decisions") + " held fixed, solved from scratch by " + how,
        "outcome_stage": "read from the best outcome's own solution",
    }[plan.prices_from]
    return [
        ("solve plan: chosen from", f"{plan.columns:,} amounts to decide, "
                                    f"{plan.integer_columns:,} of them on/off decisions"),
        ("solve plan: best outcome by", outcome),
        ("solve plan: prices of budgets and rules", prices),
        ("solve plan: later stages by", how + (", each from scratch" if plan.uniqueness ==
                                               "tiebreak" else "")),
        ("solve plan: one unique allocation by", unique),
        ("solve plan: time limits", f"{plan.time_limit_s:g} s for the best outcome, "
                                    f"{plan.follow_up_time_limit_s:g} s for each later stage"),
    ]
