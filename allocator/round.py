"""The validated round: typed, cross-checked, canonical, and independent of Excel.

Sheet `Programs` -> `ProgramRow` -> set `programs` -> index `p`; the same for every table.
`Round.canonical_json()` is the decision record's source of truth: it does not depend on
row order, cell formats or stray spaces, so a re-saved workbook has the same digest.
"""

from __future__ import annotations

import hashlib
import json
import math
from decimal import Decimal
from enum import StrEnum
from typing import Annotated, ClassVar, get_args

from pydantic import BaseModel, ConfigDict, Field, PlainSerializer

from allocator.filters import Filter

Money = Annotated[
    Decimal, PlainSerializer(lambda d: format(d.normalize(), "f"), return_type=str, when_used="json")
]

OUTCOME_COLUMNS = ("employment_rate", "retention_rate", "learning_gain", "wage_gain")
RATE_COLUMNS = ("employment_rate", "retention_rate")


class Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    # Fields a later contract version added. The canonical JSON leaves them out while they hold
    # their default, so a round that does not use them keeps the digest its record was written
    # with (see `Round.canonical_json`).
    omit_at_default: ClassVar[frozenset[str]] = frozenset()

    @classmethod
    def added_defaults(cls) -> dict[str, object]:
        """The JSON form of each `omit_at_default` field's default."""
        return {name: cls.model_fields[name].get_default(call_default_factory=True)
                for name in cls.omit_at_default}


class EquityObjective(StrEnum):
    none = "none"
    maxmin_per_capita = "maxmin_per_capita"
    maxmin_contribution = "maxmin_contribution"


class FundKind(StrEnum):
    joint = "joint"
    public = "public"
    employer = "employer"
    learner_support = "learner_support"
    performance = "performance"


class Stage(StrEnum):
    pilot = "pilot"
    scale_up = "scale_up"
    established = "established"


class Measure(StrEnum):
    amount = "amount"
    share = "share"
    share_within = "share_within"
    per_capita = "per_capita"
    contribution_share = "contribution_share"


class Op(StrEnum):
    ge = ">="
    le = "<="
    eq = "="


class RoundSettings(Frozen):
    round_id: str
    title: str = ""
    currency: str = "EUR"
    periods: tuple[str, ...] = ("all",)
    rounding_unit: Money = Decimal(1)
    equity_objective: EquityObjective = EquityObjective.none
    outcome_tolerance: float = 0.0
    time_limit_s: float = 60.0
    mip_gap: float = 1e-4
    # Contract 1.1: how many trainees' worth of evidence the expected outcomes count for when
    # the next round blends them with measured results (credibility weighting).
    prior_weight: float = Field(default=30.0, gt=0)

    # Version 1.1, "Uncertainty": how many programs (Γ, a fraction allowed) may fall short of
    # their estimates, and by how many standard errors (z), in the robust objective.
    robust_gamma: float = Field(default=0.0, ge=0)
    robust_level: float = Field(default=1.0, gt=0)

    omit_at_default: ClassVar[frozenset[str]] = frozenset({"prior_weight", "robust_gamma",
                                                        "robust_level"})


class RegionRow(Frozen):
    region_id: str
    name: str = ""
    jurisdiction: str
    population: float = Field(gt=0)
    rural: bool = False
    attributes: dict[str, str] = {}


class FundRow(Frozen):
    fund_id: str
    name: str = ""
    kind: FundKind
    owner: str
    cofinancing_cap: float = Field(default=1.0, ge=0, le=1)
    eligible: Filter = Filter()
    carry_over: bool = False
    attributes: dict[str, str] = {}


class BudgetRow(Frozen):
    fund_id: str
    period: str
    amount: Money = Field(ge=0)


class ContributionRow(Frozen):
    fund_id: str
    jurisdiction: str
    amount: Money = Field(ge=0)


class ProgramRow(Frozen):
    program_id: str
    name: str = ""
    sector: str = ""
    stage: Stage = Stage.established
    regions: tuple[str, ...]
    cost_per_trainee: float = Field(gt=0)
    max_trainees: float = Field(ge=0)
    min_trainees: float = Field(default=0.0, ge=0)
    start_period: str | None = None
    end_period: str | None = None
    targets: tuple[str, ...] = ()
    pilot_of: str | None = None
    outcomes: dict[str, float] = {}
    attributes: dict[str, str] = {}
    # Version 1.1: standard error of each expected outcome per trainee (`<metric>_se` columns).
    outcome_se: dict[str, float] = {}

    # Contract 1.1: the share e of the program's cost paid from outside the round. Its total
    # cost in a period is the in-round money / (1 - e); e = 1 would need no round money at all.
    external_match: float = Field(default=0.0, ge=0, lt=1)

    omit_at_default: ClassVar[frozenset[str]] = frozenset({"outcome_se", "external_match"})

    @property
    def round_cost_per_trainee(self) -> float:
        """In-round money per trainee: cost_per_trainee x (1 - external_match)."""
        return self.cost_per_trainee * (1.0 - self.external_match)


class PerformanceRow(Frozen):
    program_id: str
    metric: str
    target: float = Field(gt=0)
    achieved: float = Field(ge=0)


class Basis(StrEnum):
    fixed = "fixed"  # paid in full once its milestone is met
    results = "results"  # paid in proportion to the program's results score


class TrancheRow(Frozen):
    fund_kind: FundKind | None = None
    fund_id: str | None = None
    tranche: str
    share: float = Field(gt=0, le=1)
    due: int = Field(default=0, ge=0)
    condition: str = ""
    basis: Basis = Basis.fixed  # contract 1.1
    floor: float = Field(default=0.0, ge=0, le=1)  # contract 1.1: a lower score pays nothing

    omit_at_default: ClassVar[frozenset[str]] = frozenset({"basis", "floor"})


class ObjectiveRow(Frozen):
    metric: str
    weight: float


class RuleRow(Frozen):
    rule_id: str
    description: str = ""
    measure: Measure
    select: Filter = Filter()
    each: str | None = None
    relative_to: Filter = Filter()
    op: Op
    value: float
    penalty: float | None = Field(default=None, ge=0)


class Round(Frozen):
    """A whole validated round, every table sorted by its key."""

    format_version: int = 1
    settings: RoundSettings
    regions: tuple[RegionRow, ...]
    funds: tuple[FundRow, ...]
    budgets: tuple[BudgetRow, ...]
    contributions: tuple[ContributionRow, ...] = ()
    programs: tuple[ProgramRow, ...]
    performance: tuple[PerformanceRow, ...] = ()
    tranches: tuple[TrancheRow, ...] = ()
    objective: tuple[ObjectiveRow, ...]
    rules: tuple[RuleRow, ...] = ()

    def model_copy(self, *, update=None, deep: bool = False) -> Round:  # type: ignore[override]
        """A copy without the lookup caches, which would describe the original's tables."""
        copy = super().model_copy(update=update, deep=deep)
        for cache in [k for k in copy.__dict__ if k.startswith("_")]:
            copy.__dict__.pop(cache, None)
        return copy

    # --- canonical form -------------------------------------------------------------------
    def canonical_json(self) -> str:
        """Sorted, whitespace-free JSON: the same round always gives the same bytes (made once
        per round: the record, its digest and the report all need it, and the round is frozen;
        `model_copy` drops it with the other caches)."""
        cached = self.__dict__.get("_canonical_json")
        if cached is None:
            data = self.model_dump(mode="json")
            _drop_added_defaults(type(self), data)
            cached = json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
            self.__dict__["_canonical_json"] = cached
        return cached

    def digest(self) -> str:
        """SHA-256 of the canonical JSON."""
        return digest_of(self.canonical_json())

    # --- lookups --------------------------------------------------------------------------
    @property
    def periods(self) -> tuple[str, ...]:
        return self.settings.periods

    def region(self, region_id: str) -> RegionRow:
        return self._index("regions", "region_id")[region_id]

    def fund(self, fund_id: str) -> FundRow:
        return self._index("funds", "fund_id")[fund_id]

    def program(self, program_id: str) -> ProgramRow:
        return self._index("programs", "program_id")[program_id]

    def _index(self, table: str, key: str) -> dict:
        cache = self.__dict__.setdefault("_lookup_cache", {})
        if table not in cache:
            cache[table] = {getattr(row, key): row for row in getattr(self, table)}
        return cache[table]

    def budget(self, fund_id: str, period: str) -> Decimal:
        """Budget of a fund in a period; 0 where the Budgets sheet has no row."""
        cache = self.__dict__.setdefault("_lookup_cache", {})
        if "budgets" not in cache:
            cache["budgets"] = {(b.fund_id, b.period): b.amount for b in self.budgets}
        return cache["budgets"].get((fund_id, period), Decimal(0))

    def jurisdictions(self) -> tuple[str, ...]:
        return tuple(sorted({r.jurisdiction for r in self.regions}))

    def performance_score(self, program_id: str) -> float | None:
        """Mean of min(achieved/target, 1.5) over the program's Performance rows, or None."""
        cache = self.__dict__.setdefault("_lookup_cache", {})
        if "scores" not in cache:
            ratios: dict[str, list[float]] = {}
            for r in self.performance:
                ratios.setdefault(r.program_id, []).append(min(r.achieved / r.target, 1.5))
            cache["scores"] = {p: sum(v) / len(v) for p, v in ratios.items()}
        return cache["scores"].get(program_id)

    def met_targets(self, program_id: str) -> bool:
        """A program with no Performance rows has not met its targets."""
        score = self.performance_score(program_id)
        return score is not None and score >= 1.0

    def value_per_trainee(self, program: ProgramRow) -> float:
        """v_p: the weighted sum of the program's outcome metrics."""
        return sum(o.weight * program.outcomes.get(o.metric, 0.0) for o in self.objective)

    def spread_per_trainee(self, program: ProgramRow) -> float:
        """s_p = sqrt(sum_m (weight_m * se_p,m)^2): the spread of v_p, estimates independent."""
        return math.sqrt(sum((o.weight * program.outcome_se.get(o.metric, 0.0)) ** 2
                             for o in self.objective))

    def active_periods(self, program: ProgramRow) -> tuple[str, ...]:
        """The round periods from the program's start to its end period, inclusive."""
        periods = self.periods
        start = periods.index(program.start_period) if program.start_period else 0
        end = periods.index(program.end_period) if program.end_period else len(periods) - 1
        return periods[start : end + 1]


def _drop_added_defaults(model: type[Frozen], data: dict) -> None:
    """Remove, in place, every later-version field that holds its default (recursively by table)."""
    added = model.added_defaults()
    for name, default in added.items():
        if name in data and data[name] == _json_default(default):
            del data[name]
    for name, field in model.model_fields.items():
        row = next((a for a in (field.annotation, *get_args(field.annotation))
                    if isinstance(a, type) and issubclass(a, Frozen)), None)
        if row is None or name not in data or not _has_added(row):
            continue
        for item in data[name] if isinstance(data[name], list) else [data[name]]:
            _drop_added_defaults(row, item)


def _has_added(model: type[Frozen]) -> bool:
    return bool(model.omit_at_default) or any(
        isinstance(a, type) and issubclass(a, Frozen) and _has_added(a)
        for f in model.model_fields.values() for a in (f.annotation, *get_args(f.annotation)))


def _json_default(value: object) -> object:
    """A default as `model_dump(mode="json")` writes it (enums by value, Decimals as text)."""
    if isinstance(value, Decimal):
        return format(value.normalize(), "f")
    if isinstance(value, StrEnum):
        return value.value
    if isinstance(value, tuple):
        return list(value)
    return value


def digest_of(canonical: str) -> str:
    """A round's digest from its canonical JSON (`Round.canonical_json`), for callers that
    need both: making the JSON of a large round takes longer than hashing it."""
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()
