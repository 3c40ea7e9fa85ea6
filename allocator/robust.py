"""Uncertain outcome estimates: the robust objective's numbers, and outcomes sampled.

DESIGN 1.1 "Uncertainty". A program's value per trainee v_p = sum_m weight_m * outcome_p,m is
an estimate with spread s_p = sqrt(sum_m (weight_m * se_p,m)^2) (`Round.spread_per_trainee`).
With `robust_gamma` = Gamma > 0 the allocation maximises

    sum_p v_p T_p  -  max { sum_p u_p * z * s_p * T_p : 0 <= u_p <= 1, sum_p u_p <= Gamma }

(T_p: the program's trainees over all periods, z: `robust_level`): the outcome that still holds
when at most Gamma programs, the last one fractionally, deliver z standard errors less per
trainee (Bertsimas and Sim, "The price of robustness", 2004). The model carries the inner
maximum through its LP dual (allocator.formulation.define_robust_protection); this module
evaluates it for a given allocation in closed form: the floor(Gamma) largest deviations
d_p = z s_p T_p plus the fractional part of Gamma times the next one.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from allocator.eligibility import AllocationIndex
from allocator.round import RATE_COLUMNS, Round

# Samples and seed of `sampled_outcome`: the same numbers on every machine (PCG64).
SAMPLES = 2_000
SAMPLE_SEED = 20261204
LOW_QUANTILE = 0.05
DRAW_BLOCK = 4_000_000  # normal numbers drawn at once by `sampled_outcome`


def spreads(rnd: Round) -> np.ndarray:
    """s_p per program, in the round's program order."""
    return np.array([rnd.spread_per_trainee(p) for p in rnd.programs], dtype=float)


def is_robust(rnd: Round) -> bool:
    """Whether the round's objective is the robust one: Gamma > 0 and some spread > 0."""
    return rnd.settings.robust_gamma > 0 and bool((spreads(rnd) > 0).any())


def protection(deviations: np.ndarray, gamma: float) -> float:
    """max sum_p u_p d_p over 0 <= u <= 1, sum u <= Gamma: the largest floor(Gamma) d_p plus
    (Gamma - floor(Gamma)) times the next largest."""
    d = np.sort(np.asarray(deviations, dtype=float))[::-1]
    whole = min(math.floor(gamma), len(d))
    out = float(d[:whole].sum())
    if whole < len(d):
        out += (gamma - whole) * float(d[whole])
    return out


def dual_values(deviations: np.ndarray, gamma: float) -> tuple[float, np.ndarray]:
    """The optimal (lambda, mu) of the protection's dual for fixed deviations: lambda is the
    (floor(Gamma) + 1)-th largest d_p (0 when Gamma covers every program), mu_p = max(d_p -
    lambda, 0); then Gamma * lambda + sum mu = `protection(d, Gamma)`."""
    d = np.asarray(deviations, dtype=float)
    whole = math.floor(gamma)
    lam = float(np.sort(d)[::-1][whole]) if whole < len(d) else 0.0
    return lam, np.maximum(d - lam, 0.0)


def trainees_per_program(rnd: Round, index: AllocationIndex, amounts: np.ndarray) -> np.ndarray:
    """T_p: each program's trainees over all periods, from money per eligible x."""
    cost = np.array([p.round_cost_per_trainee for p in rnd.programs], dtype=float)
    out = np.zeros(len(rnd.programs))
    if len(index):
        np.add.at(out, index.p, np.asarray(amounts, dtype=float) / cost[index.p])
    return out


def trainees_from_allocation(rnd: Round, allocation: pd.DataFrame) -> np.ndarray:
    """T_p from an allocation table (`program_id`, `trainees` columns)."""
    order = {p.program_id: i for i, p in enumerate(rnd.programs)}
    out = np.zeros(len(rnd.programs))
    if len(allocation):
        by = allocation.groupby("program_id")["trainees"].sum()
        for pid, t in by.items():
            out[order[str(pid)]] = float(t)
    return out


def values(rnd: Round) -> np.ndarray:
    """v_p per program."""
    return np.array([rnd.value_per_trainee(p) for p in rnd.programs], dtype=float)


@dataclass(frozen=True)
class RobustValue:
    """An allocation's outcome value as estimated, and the value it still guarantees."""

    expected: float  # sum_p v_p T_p
    protection: float  # the largest shortfall within the budget of uncertainty
    gamma: float
    level: float

    @property
    def guaranteed(self) -> float:
        return self.expected - self.protection


def robust_value(rnd: Round, trainees: np.ndarray, gamma: float | None = None,
                 level: float | None = None) -> RobustValue:
    """The expected and guaranteed outcome value of trainees T_p per program (Gamma and z: the
    round's unless given)."""
    gamma = rnd.settings.robust_gamma if gamma is None else gamma
    level = rnd.settings.robust_level if level is None else level
    deviations = level * spreads(rnd) * trainees
    return RobustValue(float(values(rnd) @ trainees), protection(deviations, gamma), gamma, level)


# --- outcomes sampled ------------------------------------------------------------------------
@dataclass(frozen=True)
class SampledOutcome:
    """The distribution of an allocation's outcome value over sampled outcome estimates."""

    mean: float
    low: float  # the LOW_QUANTILE quantile (5th percentile)
    samples: int
    seed: int


def sampled_outcome(rnd: Round, trainees: np.ndarray, *, samples: int = SAMPLES,
                    seed: int = SAMPLE_SEED) -> SampledOutcome:
    """Sample each weighed outcome of each program as Normal(estimate, se), independently,
    rates clipped to [0, 1] (a rate outside it is no rate); the allocation's value in each
    sample is sum_p T_p sum_m weight_m * outcome_p,m. Seeded: the same numbers every run."""
    rng = np.random.Generator(np.random.PCG64(seed))
    total = np.zeros(samples)
    # Samples are drawn a block at a time (memory stays near DRAW_BLOCK numbers); the blocks
    # follow one another in the generator's stream, so the numbers do not depend on the size.
    block = max(1, DRAW_BLOCK // max(1, len(rnd.programs)))
    for o in rnd.objective:  # sorted by metric: the draw order is fixed by the round
        if o.weight == 0:
            continue
        mean = np.array([p.outcomes.get(o.metric, 0.0) for p in rnd.programs])
        se = np.array([p.outcome_se.get(o.metric, 0.0) for p in rnd.programs])
        for start in range(0, samples, block):
            stop = min(samples, start + block)
            draw = mean + se * rng.standard_normal((stop - start, len(mean)))
            if o.metric in RATE_COLUMNS:
                draw = np.clip(draw, 0.0, 1.0)
            total[start:stop] += o.weight * (draw @ trainees)
    return SampledOutcome(float(total.mean()), float(np.quantile(total, LOW_QUANTILE)), samples,
                          seed)


def uncertainty_columns(rnd: Round, allocation: pd.DataFrame, gamma: float,
                        level: float) -> dict[str, float | None]:
    """An allocation's outcome value under uncertainty, for a comparison: the sampled mean and
    5th percentile, and the value guaranteed against Gamma programs falling short (None when
    Gamma is 0)."""
    t = trainees_from_allocation(rnd, allocation)
    sampled = sampled_outcome(rnd, t)
    return {"sampled_mean_outcome": sampled.mean, "sampled_p5_outcome": sampled.low,
            "guaranteed_outcome_value": robust_value(rnd, t, gamma, level).guaranteed
            if gamma > 0 else None}


def has_spread(rnd: Round) -> bool:
    """Whether any program's value per trainee has a standard error."""
    return bool((spreads(rnd) > 0).any())


# --- a standard error where the round has none ------------------------------------------------
def derived_se(estimate: float, completed: float, prior_weight: float, *, rate: bool,
               dispersion: float | None = None) -> float:
    """A standard error for a credibility-weighted estimate that has none in the workbook.

    The next round's estimate is (k * expected + n * measured) / (k + n) (DESIGN "From one
    round to the next"; k = `prior_weight`, n = completed trainees): the prior counts as k
    trainees' worth of evidence, so the estimate rests on k + n trainees and its standard error
    is sigma / sqrt(k + n), sigma being one trainee's spread: sqrt(p (1 - p)) for a rate p
    (a Bernoulli outcome), otherwise `dispersion` (default |estimate|, a coefficient of
    variation of 1). Fewer measured trainees give a wider spread.
    """
    if completed < 0 or prior_weight < 0 or completed + prior_weight <= 0:
        raise ValueError("completed trainees and prior_weight must be >= 0, not both 0")
    if rate:
        p = min(max(estimate, 0.0), 1.0)
        sigma = math.sqrt(p * (1.0 - p))
    else:
        sigma = abs(estimate) if dispersion is None else float(dispersion)
    return sigma / math.sqrt(prior_weight + completed)


__all__ = ["RobustValue", "SampledOutcome", "derived_se", "dual_values", "is_robust",
           "protection", "robust_value", "sampled_outcome", "spreads", "trainees_per_program"]
