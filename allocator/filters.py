"""Filters such as `sector=digital|green; target!=youth` over the allocation's dimensions.

A filter is a conjunction of conditions; each condition names a key (a dimension — program,
region, fund, period — or an attribute of one) and a set of values. Since every attribute
belongs to exactly one dimension, a filter splits into one independent test per dimension:
`passing(filter, round)` returns, for each dimension, the ids that pass. A combination
(p, r, f, t) passes the filter when each of its ids passes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from pydantic import BaseModel, ConfigDict

if TYPE_CHECKING:
    from allocator.round import Round

DIMENSIONS = ("program", "region", "fund", "period")

# Built-in keys: key -> (dimension, attribute name on the row, kind)
# kind: "id" exact text; "text" case-insensitive; "tags" multi-valued; "bool".
BUILTIN_KEYS: dict[str, tuple[str, str, str]] = {
    "program": ("program", "program_id", "id"),
    "program_id": ("program", "program_id", "id"),
    "sector": ("program", "sector", "text"),
    "stage": ("program", "stage", "text"),
    "target": ("program", "targets", "tags"),
    "targets": ("program", "targets", "tags"),
    "pilot_of": ("program", "pilot_of", "id"),
    "region": ("region", "region_id", "id"),
    "region_id": ("region", "region_id", "id"),
    "jurisdiction": ("region", "jurisdiction", "id"),
    "rural": ("region", "rural", "bool"),
    "fund": ("fund", "fund_id", "id"),
    "fund_id": ("fund", "fund_id", "id"),
    "kind": ("fund", "kind", "text"),
    "owner": ("fund", "owner", "id"),
    "carry_over": ("fund", "carry_over", "bool"),
    "period": ("period", "period", "id"),
}
_QUALIFIED_FIELDS = {
    "program": {"name": "text"},
    "region": {"name": "text"},
    "fund": {"name": "text"},
}


class Condition(BaseModel):
    """`key=a|b` (negate False) or `key!=a|b` (negate True)."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    key: str
    negate: bool = False
    values: tuple[str, ...]


class Filter(BaseModel):
    """A conjunction of conditions; no conditions selects everything."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    conditions: tuple[Condition, ...] = ()

    @property
    def is_everything(self) -> bool:
        return not self.conditions

    def __str__(self) -> str:
        return "; ".join(
            f"{c.key}{'!=' if c.negate else '='}{'|'.join(c.values)}" for c in self.conditions
        )


class FilterSyntaxError(ValueError):
    """The filter text is not `key=a|b; key2!=c`."""


def parse_filter(text: str | None) -> Filter:
    """Parse `key=a|b; key2!=c`; blank means everything. Keys are lower-cased."""
    if text is None or not text.strip():
        return Filter()
    conditions = []
    for part in text.split(";"):
        part = part.strip()
        if not part:
            continue
        if "!=" in part:
            key, _, rest = part.partition("!=")
            negate = True
        elif "=" in part:
            key, _, rest = part.partition("=")
            negate = False
        else:
            raise FilterSyntaxError(f"{part!r} has no '=' or '!=' (expected key=a|b; key2!=c)")
        key = key.strip().lower()
        if not key:
            raise FilterSyntaxError(f"{part!r} has no key before the operator")
        values = tuple(sorted({v.strip() for v in rest.split("|") if v.strip()}))
        if not values:
            raise FilterSyntaxError(f"{part!r} has no value after the operator")
        if rest.strip().startswith("="):
            raise FilterSyntaxError(f"{part!r}: use '=' or '!=' (not '==')")
        conditions.append(Condition(key=key, negate=negate, values=values))
    conditions.sort(key=lambda c: (c.key, c.negate, c.values))
    return Filter(conditions=tuple(conditions))


@dataclass(frozen=True)
class KeySpec:
    """Where a filter or `each` key points: a dimension, an attribute, and how to compare."""

    dimension: str
    attribute: str  # field name on the row, or "attributes.<col>" for an extra column
    kind: str  # id | text | tags | bool


def resolve_key(key: str, rnd: Round) -> KeySpec:
    """Find the dimension and attribute a key names; extra columns are looked up by header."""
    key = key.strip().lower()
    if key in BUILTIN_KEYS:
        dim, attr, kind = BUILTIN_KEYS[key]
        return KeySpec(dim, attr, kind)
    if "." in key:
        dim, _, col = key.partition(".")
        if dim in _QUALIFIED_FIELDS and col in _QUALIFIED_FIELDS[dim]:
            return KeySpec(dim, col, _QUALIFIED_FIELDS[dim][col])
        if dim in ("program", "region", "fund") and col in _extra_columns(rnd, dim):
            return KeySpec(dim, f"attributes.{col}", "text")
        raise KeyError(f"unknown key {key!r}")
    owners = [d for d in ("program", "region", "fund") if key in _extra_columns(rnd, d)]
    if key == "name":
        raise KeyError("'name' is ambiguous: write program.name, region.name or fund.name")
    if len(owners) > 1:
        raise KeyError(
            f"{key!r} is a column of {' and '.join(owners)}s; write "
            + " or ".join(f"{d}.{key}" for d in owners)
        )
    if owners:
        return KeySpec(owners[0], f"attributes.{key}", "text")
    known = sorted(set(BUILTIN_KEYS) - {"program_id", "region_id", "fund_id", "targets"})
    extras = sorted({c for d in ("program", "region", "fund") for c in _extra_columns(rnd, d)})
    raise KeyError(f"unknown key {key!r} (known: {', '.join(known + extras)})")


def _extra_columns(rnd: Round, dim: str) -> set[str]:
    rows = {"program": rnd.programs, "region": rnd.regions, "fund": rnd.funds}[dim]
    cache = rnd.__dict__.setdefault("_extra_cols", {})
    if dim not in cache:
        cache[dim] = {k for row in rows for k in row.attributes}
    return cache[dim]


def entities(rnd: Round, dimension: str) -> list[tuple[str, object]]:
    """(id, row) for every member of a dimension; periods have no row."""
    cache = rnd.__dict__.setdefault("_entities", {})
    if dimension not in cache:
        if dimension == "program":
            cache[dimension] = [(p.program_id, p) for p in rnd.programs]
        elif dimension == "region":
            cache[dimension] = [(r.region_id, r) for r in rnd.regions]
        elif dimension == "fund":
            cache[dimension] = [(f.fund_id, f) for f in rnd.funds]
        else:
            cache[dimension] = [(t, None) for t in rnd.periods]
    return cache[dimension]


def member_values(rnd: Round, spec: KeySpec) -> list[tuple[str, frozenset[str]]]:
    """(id, values) of every member of the key's dimension, computed once per round."""
    cache = rnd.__dict__.setdefault("_member_values", {})
    if spec not in cache:
        cache[spec] = [(ident, values_of(spec, ident, row))
                       for ident, row in entities(rnd, spec.dimension)]
    return cache[spec]


def values_of(spec: KeySpec, ident: str, row: object) -> frozenset[str]:
    """The normalised values one entity has for a key (a program has one per target tag)."""
    if spec.attribute in ("period", "program_id", "region_id", "fund_id"):
        return frozenset({ident})
    if spec.attribute.startswith("attributes."):
        raw = row.attributes.get(spec.attribute.split(".", 1)[1])  # type: ignore[attr-defined]
    else:
        raw = getattr(row, spec.attribute)
    if raw is None or raw == "":
        return frozenset()
    if spec.kind == "tags":
        return frozenset(normalise_value(spec, v) for v in raw)
    return frozenset({normalise_value(spec, raw)})


def normalise_value(spec: KeySpec, value: object) -> str:
    """Compare ids exactly, text case-insensitively, booleans as yes/no."""
    if spec.kind == "bool":
        if isinstance(value, bool):
            return "yes" if value else "no"
        text = str(value).strip().lower()
        if text in ("yes", "true", "1", "y"):
            return "yes"
        if text in ("no", "false", "0", "n"):
            return "no"
        raise ValueError(f"expected yes or no, got {value!r}")
    if type(value) is str:  # the common case, without the enum check below
        return value.strip() if spec.kind == "id" else value.strip().casefold()
    text = str(value.value if hasattr(value, "value") else value).strip()
    return text if spec.kind == "id" else text.casefold()


def known_values(rnd: Round, spec: KeySpec) -> frozenset[str]:
    """Every value that some entity of the key's dimension has."""
    if spec.kind == "bool":
        return frozenset({"yes", "no"})
    cache = rnd.__dict__.setdefault("_known_values", {})
    if spec not in cache:
        cache[spec] = _known_values(rnd, spec)
    return cache[spec]


def _known_values(rnd: Round, spec: KeySpec) -> frozenset[str]:
    """known_values computed as values_of would give them, each distinct raw value once:
    a program attribute has a handful of values over 100,000 programs."""
    if spec.attribute in ("period", "program_id", "region_id", "fund_id"):
        return frozenset(ident for ident, _ in entities(rnd, spec.dimension))
    rows = [row for _, row in entities(rnd, spec.dimension)]
    if spec.attribute.startswith("attributes."):
        name = spec.attribute.split(".", 1)[1]
        raws = {row.attributes.get(name) for row in rows}  # type: ignore[attr-defined]
    else:
        raws = {getattr(row, spec.attribute) for row in rows}
    raws = {r for r in raws if r is not None and r != ""}
    if spec.kind == "tags":
        raws = set().union(*raws)
    return frozenset(normalise_value(spec, v) for v in raws)


def check_filter(flt: Filter, rnd: Round) -> list[str]:
    """Problems with a filter's keys and values, as messages (empty when it is sound)."""
    problems = []
    for cond in flt.conditions:
        try:
            spec = resolve_key(cond.key, rnd)
        except KeyError as exc:
            problems.append(str(exc.args[0]))
            continue
        known = known_values(rnd, spec)
        for value in cond.values:
            try:
                norm = normalise_value(spec, value)
            except ValueError as exc:
                problems.append(f"{cond.key}: {exc}")
                continue
            if norm not in known:
                sample = ", ".join(sorted(known)[:12]) + (", ..." if len(known) > 12 else "")
                problems.append(f"{cond.key}={value}: no {spec.dimension} has that value "
                                f"(known: {sample or 'none'})")
    return problems


def passing(flt: Filter, rnd: Round) -> dict[str, frozenset[str]]:
    """For each dimension, the ids of its members that pass every condition on it."""
    out: dict[str, frozenset[str]] = {}
    for dim in DIMENSIONS:
        out[dim] = frozenset(ident for ident, _ in entities(rnd, dim))
    for cond in flt.conditions:
        spec = resolve_key(cond.key, rnd)
        wanted = {normalise_value(spec, v) for v in cond.values}
        keep = set()
        for ident, values in member_values(rnd, spec):
            if bool(values & wanted) != cond.negate:
                keep.add(ident)
        out[spec.dimension] = out[spec.dimension] & frozenset(keep)
    return out


def conditioned_dimensions(flt: Filter, rnd: Round) -> set[str]:
    """The dimensions that at least one condition of the filter restricts."""
    return {resolve_key(c.key, rnd).dimension for c in flt.conditions}


def groups(each: str | None, select: Filter, rnd: Round) -> list[tuple[str | None, dict]]:
    """The groups of an `each` rule: (value, per-dimension ids in the group).

    Group values are those held by members of the `each` dimension that pass the rule's own
    selection on that dimension, so `select jurisdiction=A; each region` ranges over A's
    regions only. Without `each` there is one group holding everything.
    """
    everything = {dim: frozenset(i for i, _ in entities(rnd, dim)) for dim in DIMENSIONS}
    if not each:
        return [(None, everything)]
    spec = resolve_key(each, rnd)
    allowed = passing(select, rnd)[spec.dimension]
    members: dict[str, set[str]] = {}
    for ident, row in entities(rnd, spec.dimension):
        for value in values_of(spec, ident, row):
            members.setdefault(value, set()).add(ident)
    values = {v for ident, row in entities(rnd, spec.dimension) if ident in allowed
              for v in values_of(spec, ident, row)}
    out = []
    for value in sorted(values):
        dims = dict(everything)
        dims[spec.dimension] = frozenset(members[value])  # every member: share_within needs them all
        out.append((value, dims))
    return out


def intersect(*maps: dict[str, frozenset[str]]) -> dict[str, frozenset[str]]:
    """Per-dimension intersection of several `passing`/group maps."""
    out = dict(maps[0])
    for m in maps[1:]:
        for dim in DIMENSIONS:
            out[dim] = out[dim] & m[dim]
    return out
