"""What each rule measure means: one description the formulation, engine, diagnosis, explanations
and report all read.

A rule group's measure is the money it selects (S) read in the rule's own unit:

    measure = S / (scale * R)    with a reference total R (share-type measures)
    measure = S / scale          without one

where R is the money of the reference set (`relative_to`, that set within the group, or all the
selected money split by contributor) and `scale` is 1, the inhabitants of the selected regions
(`per_capita`) or the contributor's share c_j of the contributions (`contribution_share`). The
row the formulation writes for `measure (op) value` is therefore linear in the amounts:

    S - value * scale * R (op) 0    with a reference total
    S (op) value * scale            without one

`allocator.checker` reads the contract a second time, independently, and shares none of this:
a mistake here cannot pass both. A new measure goes here (and into the checker, on its own).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

MONEY_STEP = 10_000.0  # money is priced per this many currency units
# A rule's rows are the family `<measure>_rule_<bound>`, the bound word by its operator.
RULE_BOUNDS = {">=": "min", "<=": "max", "=": "equal"}


def rule_family(measure: str, op: str) -> str:
    """The row family of a rule of `measure` with operator `op` (">=", "<=", "=")."""
    return f"{measure}_rule_{RULE_BOUNDS[op]}"


def is_rule_family(component: str) -> bool:
    """Whether a model row family holds rules (rather than budgets, capacities, ...)."""
    return component.rpartition("_rule_")[2] in RULE_BOUNDS.values() and "_rule_" in component


class Reference(StrEnum):
    """Which money a share-type measure divides by."""

    none = "none"  # no reference total: the selected money itself
    relative_to = "relative_to"  # the money passing `relative_to`
    relative_to_in_group = "relative_to_in_group"  # that money within the `each` group
    selected = "selected"  # all the selected money (split per contributor)


class Scale(StrEnum):
    """What the measure divides by besides the reference total."""

    one = "one"
    population = "population"  # inhabitants of the selected regions (and the group)
    contribution = "contribution"  # the contributor's share c_j: one row per contributor


@dataclass(frozen=True)
class Measure:
    """One rule measure: its rows, its achieved value, its unit and how it is shown."""

    name: str
    unit: str  # the rule's own unit, in words
    reference: Reference
    scale: Scale
    cell_format: str  # the report's number format of a target / achieved cell
    step: float  # the step a price is quoted per, in the rule's own unit
    step_text: str  # that step in words; `{cur}` is the currency

    @property
    def has_reference(self) -> bool:
        """True when the row compares the selected money with a reference total (rhs 0)."""
        return self.reference != Reference.none

    def row(self, value: float, scale: float) -> tuple[float, float]:
        """(coefficient on the reference total, right-hand side) of `measure (op) value`."""
        if self.has_reference:
            return value * scale, 0.0
        return 0.0, value * scale

    def achieved(self, selected: float, reference: float, scale: float) -> float | None:
        """The measure of an allocation: selected money in the rule's unit (None: undefined).

        Divided in this order, (S / R) / scale, so the Rules sheet keeps its figures.
        """
        if not scale:
            return None
        if self.has_reference:
            return (selected / reference) / scale if reference > 0 else None
        return selected / scale

    def in_rule_unit(self, money: float, reference: float, scale: float) -> float:
        """A slack or shortfall in currency read in the rule's own unit (0 when undefined)."""
        if not scale:
            return 0.0
        if self.has_reference:
            return money / (reference * scale) if reference > 0 else 0.0
        return money / scale

    def rhs_per_step(self, reference: float, scale: float) -> float:
        """Currency the row's right-hand side moves when the rule's value moves one `step`.

        A price per currency unit of the row times this is the price per step of the rule.
        """
        if self.has_reference:
            return self.step * scale * reference  # S - v c R >= 0: dv moves the rhs by dv c R
        return self.step * scale

    def step_words(self, currency: str) -> str:
        return self.step_text.format(cur=currency)

    def text(self, value: float) -> str:
        """A target or achieved value as a sentence shows it."""
        if self.cell_format == "percent":
            return f"{value * 100:.4g}%"
        if self.cell_format == "money":
            return f"{value:,.0f}" if float(value).is_integer() else f"{value:,.2f}"
        return f"{value:.4g}"


MEASURES: dict[str, Measure] = {m.name: m for m in (
    Measure("amount", "currency", Reference.none, Scale.one, "money",
            MONEY_STEP, f"{{cur}} {MONEY_STEP:,.0f}"),
    Measure("share", "share of the reference money", Reference.relative_to, Scale.one,
            "percent", 0.01, "1 percentage point"),
    Measure("share_within", "share of the reference money within the group",
            Reference.relative_to_in_group, Scale.one, "percent", 0.01, "1 percentage point"),
    Measure("per_capita", "currency per inhabitant", Reference.none, Scale.population,
            "money2", 1.0, "{cur} 1 per inhabitant"),
    Measure("contribution_share", "multiple of the contributor's contribution share",
            Reference.selected, Scale.contribution, "ratio", 0.01, "0.01 of the value"),
)}


def cell_format_of(measure: str | None) -> str:
    """The report's number format of a rule's target and achieved cells (`ratio` if unknown)."""
    m = MEASURES.get(measure) if isinstance(measure, str) else None
    return m.cell_format if m is not None else "ratio"
