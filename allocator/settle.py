"""Settlement: what each tranche of a decision pays, given what the programs achieved.

Stage after the decision record: decision record + results workbook -> settlement lines ->
settlement workbook (finance) and settlement record (audit). Per program, fund, funded period
and tranche (the allocation report's Disbursements split, exactly):

- a `fixed` tranche is payable in full when its milestone is met (no Milestones row = met);
- a `results` tranche is payable x score when score >= floor, else 0 (no Results rows: score 0);
- when fewer trainees completed than were funded in the program-period, every tranche due after
  the funded period (due >= 1) is scaled by completed / funded;
- a Milestones row that says `met = no` withholds its tranche whatever its basis.

All amounts are whole rounding units (Python ints); the factor is exact (a Fraction of the
decimals typed), and a reduced tranche's payable is rounded DOWN to a whole unit, so a program
is never paid more than its results earn; the withheld part is the rest, so payable + withheld
= scheduled on every line and in every total. What is withheld returns to its fund: carried into
the period after the one it was due in where the fund carries over (into the next round when
that is past the round's last period), otherwise returned.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import shutil
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from fractions import Fraction
from pathlib import Path
from typing import Any

import pandas as pd

from allocator import chain, excel
from allocator.atomic import atomic_dir
from allocator.errors import InputError
from allocator.excel import Formats, Table, row_kinds
from allocator.manifest import (
    ALLOCATION_COLUMNS,
    ManifestError,
    Verification,
    check_digests,
    check_output_digest,
    check_place,
    first_difference,
    id_stamp,
    plain_name,
    read_manifest,
    sha256_file,
)
from allocator.report import (
    TOTAL_LABEL,
    _money,
    _tranches_of,
    due_label,
    split_tranches,
    split_units,
)
from allocator.results import Funded, Results, exact, load_results
from allocator.round import Basis, ProgramRow, Round
from allocator.safetext import csv_text

SETTLEMENT_FORMAT = 1
SETTLEMENT_COLUMNS = ["program_id", "fund_id", "period", "tranche", "basis", "due_period",
                      "scheduled", "payable", "withheld", "withheld_to", "reason"]
RESULTS_JSON = "results.json"
RESULTS_XLSX = "results.xlsx"
SETTLEMENT_CSV = "settlement.csv"


class RecordError(Exception):
    """The folder given is not a usable decision record (missing, damaged, or a settlement)."""


# --- the decision being settled ----------------------------------------------------------------
@dataclass
class Decision:
    """A decision record as settlement reads it: the round and the allocation in whole units."""

    folder: Path
    manifest: dict[str, Any]
    round: Round
    # (program, region, fund, period) -> units, in the order of allocation.csv
    units: dict[tuple[str, str, str, str], int]

    @property
    def run_id(self) -> str:
        return str(self.manifest.get("run_id") or self.folder.name)

    def funded_keys(self) -> list[tuple[str, str, str, int]]:
        """(program, fund, period, units) per funded key, in report order (round order)."""
        rnd = self.round
        total: dict[tuple[str, str, str], int] = {}
        for (p, _r, f, t), u in self.units.items():
            total[(p, f, t)] = total.get((p, f, t), 0) + u
        rank_p = {p.program_id: i for i, p in enumerate(rnd.programs)}
        rank_f = {f.fund_id: i for i, f in enumerate(rnd.funds)}
        rank_t = {t: i for i, t in enumerate(rnd.periods)}
        order = sorted(total, key=lambda k: (rank_p[k[0]], rank_f[k[1]], rank_t[k[2]]))
        return [(p, f, t, total[(p, f, t)]) for p, f, t in order if total[(p, f, t)] > 0]

    def funded(self) -> Funded:
        """What the record funded, with each fund's tranche names: what results are checked by."""
        out: dict[tuple[str, str], dict[str, list[str]]] = {}
        for p, f, t, _u in self.funded_keys():
            trs = _tranches_of(self.round, self.round.fund(f))
            out.setdefault((p, t), {})[f] = [tr.tranche for tr in trs]
        return Funded(out)

    def funded_trainees(self, program_id: str, period: str) -> Fraction:
        """Trainees the allocation pays for in the program-period: money / cost, exactly."""
        p = self.round.program(program_id)
        by_key = self.__dict__.get("_units_by_program_period")
        if by_key is None:
            by_key = {}
            for (q, _r, _f, t), u in self.units.items():
                by_key[(q, t)] = by_key.get((q, t), 0) + u
            self.__dict__["_units_by_program_period"] = by_key
        units = by_key.get((program_id, period), 0)
        money = Fraction(Decimal(units) * self.round.settings.rounding_unit)
        return money / _total_cost_share(p) / exact(p.cost_per_trainee)


def _total_cost_share(p: ProgramRow) -> Fraction:
    """The share of a program's cost paid from the round (1 - external_match, contract 1.1)."""
    match = getattr(p, "external_match", 0.0) or 0.0
    return 1 - exact(match)


def load_decision(folder: str | Path) -> Decision:
    """Read a decision record, checking its files against its manifest first."""
    folder = Path(folder)
    manifest_path = folder / chain.MANIFEST
    if not manifest_path.is_file():
        raise RecordError(f"{folder} is not a decision record (it has no {chain.MANIFEST})")
    try:
        manifest = read_manifest(folder)
        files = dict(manifest["files"])
    except ManifestError as exc:
        raise RecordError(f"{folder} is not a usable decision record: {exc}") from None
    except (ValueError, KeyError, TypeError) as exc:
        raise RecordError(f"{manifest_path} is not readable ({exc})") from None
    if manifest.get("kind") == "settlement":
        settles = manifest.get("settles")
        run_id = settles.get("run_id", "?") if isinstance(settles, dict) else "?"
        raise RecordError(f"{folder} is a settlement record, not a decision record; give the "
                          f"decision record it settles ({run_id})")
    for name in ("round.json", "allocation.csv"):
        path = folder / name
        if name not in files or not path.is_file():
            raise RecordError(f"{folder} is not a decision record ({name} is missing)")
        if sha256_file(path) != files[name]:
            raise RecordError(f"{folder}/{name} differs from its manifest digest: the decision "
                              "record was changed; run `allocator verify` on it")
    rnd = Round.model_validate_json((folder / "round.json").read_text(encoding="utf-8"))
    df = pd.read_csv(folder / "allocation.csv", dtype=str, keep_default_na=False, na_filter=False)
    if list(df.columns) != ALLOCATION_COLUMNS:
        raise RecordError(f"{folder}/allocation.csv: expected columns {ALLOCATION_COLUMNS}")
    unit = rnd.settings.rounding_unit
    units: dict[tuple[str, str, str, str], int] = {}
    for p, r, f, t, amount in df.itertuples(index=False):
        q = Decimal(amount) / unit
        if q != q.to_integral_value():
            raise RecordError(f"{folder}/allocation.csv: {amount} is not a whole number of "
                              f"rounding units ({unit})")
        units[(p, r, f, t)] = units.get((p, r, f, t), 0) + int(q)
    return Decision(folder, manifest, rnd, units)


# --- the settlement ------------------------------------------------------------------------------
@dataclass(frozen=True)
class Line:
    """One tranche of one program, fund and funded period, settled (amounts in rounding units)."""

    program_id: str
    fund_id: str
    period: str
    tranche: str
    basis: str
    due_period: str
    scheduled: int
    payable: int
    withheld_to: str  # "" when nothing is withheld, else "carried into <period>" or "returned"
    reason: str

    @property
    def withheld(self) -> int:
        return self.scheduled - self.payable


@dataclass
class Settlement:
    """Every settled tranche of a decision, and what it was settled against."""

    decision: Decision
    results: Results
    lines: list[Line]

    @property
    def round(self) -> Round:
        return self.decision.round

    def money(self, units: int) -> Decimal:
        return Decimal(units) * self.round.settings.rounding_unit


# How a tranche split's leftover units are placed, as the settlement manifest records it
# (`tranche_remainder`): to the earliest tranche (DESIGN.md 1.1, engine 0.3.1 on), or by the
# largest remainder (settlement records written before, which have no such key).
TRANCHE_REMAINDER = "earliest_tranche"
OLDER_TRANCHE_REMAINDER = "largest_remainder"


def settle(decision: Decision, results: Results, *,
           remainder: str = TRANCHE_REMAINDER) -> Settlement:
    """Settle every funded program, fund, period and tranche of the decision; `remainder`
    says how a tranche split places its leftover units (an older record's way to verify it)."""
    rnd = decision.round
    lines: list[Line] = []
    for p, f, t, units in decision.funded_keys():
        trs = _tranches_of(rnd, rnd.fund(f))
        parts = split_tranches(units, trs) if remainder == TRANCHE_REMAINDER else \
            split_units(units, [tr.share for tr in trs])  # = the Disbursements sheet
        completed = results.completed(p, t)
        funded = decision.funded_trainees(p, t)
        for tr, scheduled in zip(trs, parts, strict=True):
            factor, reasons = _factor(tr, results, p, f, t, completed, funded)
            payable = scheduled if factor == 1 else math.floor(scheduled * factor)
            withheld_to = _withheld_to(rnd, f, t, tr.due) if payable < scheduled else ""
            lines.append(Line(p, f, t, tr.tranche, tr.basis.value,
                              due_label(rnd.periods, t, tr.due), scheduled, payable, withheld_to,
                              "; ".join(reasons) or "paid in full"))
    return Settlement(decision, results, lines)


def _factor(tr, results: Results, p: str, f: str, t: str, completed: Fraction | None,
            funded: Fraction) -> tuple[Fraction, list[str]]:
    """The share of a tranche that is payable, exactly, and the reasons in words."""
    factor = Fraction(1)
    reasons: list[str] = []
    milestone = results.milestone(p, t, tr.tranche, f)
    if milestone is not None and not milestone.met:
        what = f"'{tr.condition}'" if tr.condition else f"of tranche '{tr.tranche}'"
        reasons.append(f"milestone {what} not met")
        factor = Fraction(0)
    if tr.basis == Basis.results:
        score = results.score(p, t)
        floor = exact(tr.floor)
        if score is None:
            reasons.append("no results reported: score 0, nothing of the results tranche paid")
            factor = Fraction(0)
        elif score < floor:
            reasons.append(f"results score {_num(score)} of target is below the floor "
                           f"{_num(floor)}: nothing of the results tranche paid")
            factor = Fraction(0)
        elif factor:
            reasons.append(f"results score {_num(score)} of target: {_pct(score)} of the "
                           "results tranche paid")
            factor *= score
        else:
            reasons.append(f"results score {_num(score)} of target")
    if tr.due >= 1 and completed is not None and completed < funded and factor:
        ratio = completed / funded
        reasons.append(f"{_num(completed)} of {_num(funded)} trainees completed: later tranches "
                       f"scaled to {_pct(ratio, whole=True)}")
        factor *= ratio
    return factor, reasons


def _num(x: Fraction) -> str:
    """A number for a sentence: up to 4 significant digits, no trailing zeros."""
    return f"{float(x):.4g}" if x != int(x) else str(int(x))


def _pct(x: Fraction, whole: bool = False) -> str:
    """A share as a percentage: whole (half up, 77.5% -> 78%) or to 4 significant digits."""
    if whole or (x * 100).denominator == 1:
        return f"{math.floor(x * 100 + Fraction(1, 2))}%"
    return f"{float(x) * 100:.4g}%"


def _withheld_to(rnd: Round, fund_id: str, period: str, due: int) -> str:
    """Where withheld money of a tranche goes: a carry-over fund keeps it for the period after
    the one the tranche was due in (the next round's first period when that is past the round's
    end); any other fund returns it."""
    if not rnd.fund(fund_id).carry_over:
        return "returned"
    periods = rnd.periods
    k = periods.index(period) + due + 1
    if k < len(periods):
        return f"carried into {periods[k]}"
    return NEXT_ROUND


NEXT_ROUND = "carried into the next round"


# --- tables ---------------------------------------------------------------------------------------
def settlement_tables(s: Settlement, *, settlement_id: str = "") -> list[Table]:
    """The settlement workbook's sheets: Settlement, Funds, Jurisdictions, Cash flow, Summary."""
    return [_settlement_sheet(s), _funds_sheet(s), _jurisdictions_sheet(s), _cash_flow_sheet(s),
            _summary_sheet(s, settlement_id)]


def _m(s: Settlement, units: int) -> int | float:
    return _money(s.money(units))


def _sum(lines: Sequence[Line], attr: str) -> int:
    return sum(getattr(line, attr) for line in lines)


def _settlement_sheet(s: Settlement) -> Table:
    rows = [[ln.program_id, ln.fund_id, ln.period, ln.tranche, ln.basis, ln.due_period,
             _m(s, ln.scheduled), _m(s, ln.payable), _m(s, ln.withheld), ln.withheld_to,
             ln.reason] for ln in s.lines]
    total = [TOTAL_LABEL, None, None, None, None, None, _m(s, _sum(s.lines, "scheduled")),
             _m(s, _sum(s.lines, "payable")), _m(s, _sum(s.lines, "withheld")), None, None]
    return Table("Settlement", SETTLEMENT_COLUMNS, rows,
                 dict.fromkeys(("scheduled", "payable", "withheld"), "money"), total)


def fund_totals(s: Settlement) -> list[dict[str, Any]]:
    """Per fund, in whole units: scheduled, paid, withheld, returned, carried (and into where)."""
    out = []
    for fund in s.round.funds:
        lines = [ln for ln in s.lines if ln.fund_id == fund.fund_id]
        carried = [ln for ln in lines if ln.withheld and ln.withheld_to != "returned"]
        into = sorted({ln.withheld_to.removeprefix("carried into ") for ln in carried},
                      key=_period_rank(s.round.periods))
        out.append({"fund_id": fund.fund_id, "carry_over": fund.carry_over,
                    "scheduled": _sum(lines, "scheduled"), "paid": _sum(lines, "payable"),
                    "withheld": _sum(lines, "withheld"),
                    "returned": sum(ln.withheld for ln in lines if ln.withheld_to == "returned"),
                    "carried": _sum(carried, "withheld"), "carried_into": ", ".join(into)})
    return out


def _period_rank(periods: Sequence[str]):
    return lambda label: (periods.index(label) if label in periods else len(periods), label)


def _funds_sheet(s: Settlement) -> Table:
    keys = ["scheduled", "paid", "withheld", "returned", "carried"]
    rows, total = [], dict.fromkeys(keys, 0)
    for ft in fund_totals(s):
        fund = s.round.fund(ft["fund_id"])
        rows.append([fund.fund_id, fund.name, fund.kind.value, "yes" if fund.carry_over else "no",
                     *(_m(s, ft[k]) for k in keys), ft["carried_into"]])
        for k in keys:
            total[k] += ft[k]
    cols = ["fund_id", "fund", "kind", "carry_over", *keys, "carried_into"]
    return Table("Funds", cols, rows, dict.fromkeys(keys, "money"),
                 [TOTAL_LABEL, None, None, None, *(_m(s, total[k]) for k in keys), None])


def jurisdiction_totals(s: Settlement) -> dict[str, dict[str, int]]:
    """Per jurisdiction where the money is delivered: scheduled, paid, withheld (whole units).

    A line's paid and withheld parts are each split over the jurisdictions in proportion to the
    allocation's units by region (largest remainder, as the tranche split), so every column
    adds up to the Settlement sheet's total exactly.
    """
    rnd = s.round
    juris_of = {r.region_id: r.jurisdiction for r in rnd.regions}
    weights: dict[tuple[str, str, str], dict[str, int]] = {}
    for (p, r, f, t), u in s.decision.units.items():
        w = weights.setdefault((p, f, t), {})
        w[juris_of[r]] = w.get(juris_of[r], 0) + u
    out = {j: {"scheduled": 0, "paid": 0, "withheld": 0} for j in rnd.jurisdictions()}
    for ln in s.lines:
        w = {j: u for j, u in sorted(weights[(ln.program_id, ln.fund_id, ln.period)].items()) if u}
        for key, amount in (("paid", ln.payable), ("withheld", ln.withheld)):
            for j, part in zip(w, split_units(amount, list(w.values())), strict=True):
                out[j][key] += part
                out[j]["scheduled"] += part
    return out


def _jurisdictions_sheet(s: Settlement) -> Table:
    keys = ["scheduled", "paid", "withheld"]
    rows, total = [], dict.fromkeys(keys, 0)
    for j, v in jurisdiction_totals(s).items():
        rows.append([j, *(_m(s, v[k]) for k in keys)])
        for k in keys:
            total[k] += v[k]
    return Table("Jurisdictions", ["jurisdiction", *keys], rows, dict.fromkeys(keys, "money"),
                 [TOTAL_LABEL, *(_m(s, total[k]) for k in keys)])


def _cash_flow_sheet(s: Settlement) -> Table:
    """Per due period and fund: what is scheduled to be paid then, what is paid, what is not."""
    rank = _period_rank(s.round.periods)
    funds = {f.fund_id: i for i, f in enumerate(s.round.funds)}
    groups: dict[tuple[str, str], list[Line]] = {}
    for ln in s.lines:
        groups.setdefault((ln.due_period, ln.fund_id), []).append(ln)
    rows = [[d, f, _m(s, _sum(g, "scheduled")), _m(s, _sum(g, "payable")),
             _m(s, _sum(g, "withheld"))]
            for (d, f), g in sorted(groups.items(), key=lambda kv: (rank(kv[0][0]),
                                                                   funds[kv[0][1]]))]
    keys = ["scheduled", "payable", "withheld"]
    return Table("Cash flow", ["due_period", "fund_id", *keys], rows, dict.fromkeys(keys, "money"),
                 [TOTAL_LABEL, None, *(_m(s, _sum(s.lines, k)) for k in keys)])


def _summary_sheet(s: Settlement, settlement_id: str) -> Table:
    rnd = s.round
    scored = {(r.program_id, r.period) for r in s.results.results}
    rows: list[list[Any]] = [
        ["round", rnd.settings.round_id, None],
        ["title", rnd.settings.title, None],
        ["currency", rnd.settings.currency, None],
        ["decision record run id", s.decision.run_id, None],
        ["decision record folder", str(s.decision.folder), None],
        ["settlement id", settlement_id, None],
        ["results digest", s.results.digest(), None],
        ["program-periods with results", len(scored), "count"],
        ["tranches settled", len(s.lines), "count"],
        ["scheduled", _m(s, _sum(s.lines, "scheduled")), "money"],
        ["payable", _m(s, _sum(s.lines, "payable")), "money"],
        ["withheld", _m(s, _sum(s.lines, "withheld")), "money"],
        ["withheld and returned", _m(s, sum(ln.withheld for ln in s.lines
                                            if ln.withheld_to == "returned")), "money"],
        ["withheld and carried over", _m(s, sum(ln.withheld for ln in s.lines
                                                if ln.withheld_to.startswith("carried"))),
         "money"],
        ["rounding", "a reduced tranche's payable is rounded down to a whole rounding unit "
         f"({rnd.settings.rounding_unit}); the rest is withheld", None],
    ]
    return Table("Summary", ["item", "value"], [r[:2] for r in rows],
                 {"value": row_kinds([r[2] for r in rows])})


def frames(tables: Sequence[Table]) -> dict[str, pd.DataFrame]:
    return {t.name: t.frame() for t in tables}


def write_settlement_workbook(s: Settlement, path: Path, *, settlement_id: str = "") -> Path:
    """The settlement workbook, formatted as the allocation report, written atomically."""
    path = Path(path)
    tables = settlement_tables(s, settlement_id=settlement_id)
    return excel.write_tables(path, tables, Formats.of_round(s.round))


# --- the settlement record --------------------------------------------------------------------------
def settlement_csv(s: Settlement) -> str:
    """The settlement as CSV text, exact decimal amounts (whole rounding units)."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(SETTLEMENT_COLUMNS)
    for ln in s.lines:
        writer.writerow([csv_text(v) for v in (ln.program_id, ln.fund_id, ln.period, ln.tranche,
                                                ln.basis, ln.due_period)]
                        + [_dec_text(s.money(u)) for u in (ln.scheduled, ln.payable, ln.withheld)]
                        + [csv_text(ln.withheld_to), csv_text(ln.reason)])
    return buf.getvalue()


def _dec_text(d: Decimal) -> str:
    return format(d.normalize(), "f")


def new_settlement_id(results_digest: str, after: str | None = None) -> str:
    """`<UTC timestamp>Z-settle-<8 hex of the results digest>`: sorts with the decision ids,
    after `after` (the round's latest record)."""
    return f"{id_stamp(after)}Z-settle-{results_digest[:8]}"


def write_settlement_manifest(folder: Path, manifest: dict[str, Any], key: Any = None) -> None:
    """Write a settlement record's manifest.json, signed with `key` when one is given."""
    from allocator.signing import sign_record

    (folder / chain.MANIFEST).write_text(_json(manifest), encoding="utf-8")
    if key is not None:
        sign_record(folder, key)


def _json(data: object) -> str:
    return json.dumps(data, indent=2, sort_keys=True, ensure_ascii=False, default=str) + "\n"


@dataclass
class SettlementRecord:
    folder: Path
    settlement_id: str
    input_digest: str
    output_digest: str


def write_settlement_record(s: Settlement, results_workbook: Path | None, *,
                            settlement_id: str | None = None,
                            after_write=None, sign_key: Any = None) -> SettlementRecord:
    """Write `<records>/<round_id>/<settlement_id>/` beside the decision record, atomically.

    `after_write(folder, settlement_id)` runs inside the transaction (the report is written
    there): if it raises, no record is left behind. Like a decision record, it is chained under
    the round's lock and signed with `sign_key` (a SigningKey) when one is given.
    """
    import hashlib

    from allocator.atomic import clean_leftovers

    decision = s.decision
    digest = s.results.digest()
    round_dir = decision.folder.parent
    clean_leftovers(round_dir)
    with chain.writing(round_dir):
        # Named under the round's lock, after its latest record: the names sort in chain order.
        earlier = chain.round_records(round_dir)
        settlement_id = settlement_id or new_settlement_id(digest, earlier[-1].name if earlier else None)
        target = round_dir / settlement_id
        with atomic_dir(target) as tmp:
            (tmp / RESULTS_JSON).write_text(s.results.canonical_json(), encoding="utf-8")
            if results_workbook is not None:
                shutil.copyfile(results_workbook, tmp / RESULTS_XLSX)
            text = settlement_csv(s)
            (tmp / SETTLEMENT_CSV).write_text(text, encoding="utf-8")
            output_digest = hashlib.sha256(text.encode("utf-8")).hexdigest()
            files = {p.name: sha256_file(p) for p in sorted(tmp.iterdir()) if p.is_file()}
            manifest = {
                "format": SETTLEMENT_FORMAT, "kind": "settlement",
                "round_id": s.round.settings.round_id, "run_id": settlement_id,
                "tranche_remainder": TRANCHE_REMAINDER,
                "settles": {"run_id": decision.run_id,
                            "record_digest": chain.record_digest(decision.folder)},
                "previous": chain.previous_digest(round_dir),
                "previous_run": earlier[-1].name if earlier else None,
                "created_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                "input_digest": digest, "output_digest": output_digest, "files": files,
            }
            write_settlement_manifest(tmp, manifest, sign_key)
            if after_write is not None:
                after_write(target, settlement_id)
    return SettlementRecord(target, settlement_id, digest, output_digest)


# --- verification ---------------------------------------------------------------------------------
def verify_settlement(folder: Path) -> Verification:
    """Digests, the settled decision record and its digest, the chain, and every amount re-computed."""
    out = Verification(Path(folder))
    folder = Path(os.path.abspath(folder))  # `verify .` inside the record: its round's folder
    try:
        manifest = read_manifest(folder)
        files = dict(manifest["files"])
        settles = dict(manifest["settles"])
    except (ValueError, KeyError, TypeError) as exc:
        out.problems.append(f"manifest.json is not a readable settlement manifest ({exc})")
        return out
    check_digests(folder, files, out)
    check_place(folder, manifest, out)
    check_output_digest(folder, SETTLEMENT_CSV, manifest, out, "the settlement")
    _check_chain(folder, manifest, out)
    if not plain_name(settles.get("run_id")):
        # the settled record is the round's own: a path would make verify settle another
        # round's record, or one outside the records folder
        out.problems.append(f"settles.run_id {settles.get('run_id')!r} is not the name of a "
                            "record folder of this round")
        return out
    decision_folder = folder.parent / settles["run_id"]
    if not (decision_folder / chain.MANIFEST).is_file():
        out.problems.append(f"the decision record it settles ({settles.get('run_id')}) is missing "
                            f"from {folder.parent}")
        return out
    if chain.record_digest(decision_folder) != settles.get("record_digest"):
        out.problems.append(f"the decision record {settles.get('run_id')} differs from the one "
                            "settled: its manifest digest is not settles.record_digest")
    try:
        decision = load_decision(decision_folder)
    except RecordError as exc:
        out.problems.append(f"the decision record it settles cannot be read: {exc}")
        return out
    try:
        results = Results.model_validate_json((folder / RESULTS_JSON).read_text(encoding="utf-8"))
    except Exception as exc:
        out.problems.append(f"{RESULTS_JSON} is not a valid canonical results file "
                            f"({type(exc).__name__})")
        return out
    if results.digest() != manifest.get("input_digest"):
        out.problems.append(f"{RESULTS_JSON}: its canonical digest differs from the manifest's "
                            "input_digest (the results were changed)")
    if decision.round.settings.round_id != manifest.get("round_id"):
        out.problems.append(f"manifest.json: round_id {manifest.get('round_id')!r}, but the "
                            f"decision record it settles is of round "
                            f"{decision.round.settings.round_id!r}")
    _check_results_copy(folder, decision, results, out)
    remainder = manifest.get("tranche_remainder", OLDER_TRANCHE_REMAINDER)
    if remainder not in (TRANCHE_REMAINDER, OLDER_TRANCHE_REMAINDER):
        out.problems.append(f"manifest.json: tranche_remainder {remainder!r} is not one allocator "
                            "writes")
        return out
    _compare_lines(folder, settle(decision, results, remainder=remainder), out)
    return out


def _check_chain(folder: Path, manifest: dict[str, Any], out: Verification) -> None:
    records = chain.round_records(folder.parent)
    names = [r.name for r in records]
    before = records[:names.index(folder.name)] if folder.name in names else []
    expected = chain.record_digest(before[-1]) if before else None
    if manifest.get("previous") != expected:
        out.problems.append(
            f"previous: the manifest chains to {manifest.get('previous')}, but the record before "
            f"it ({before[-1].name if before else 'none'}) has digest {expected} (a record of "
            "the round was removed, inserted or rewritten)")


def _check_results_copy(folder: Path, decision: Decision, results: Results,
                        out: Verification) -> None:
    path = folder / RESULTS_XLSX
    if not path.is_file():
        # as a decision record without workbook.xlsx: allowed (written from code), but said
        out.warnings.append(f"the record holds no copy of the results workbook ({RESULTS_XLSX}): "
                            f"{RESULTS_JSON} alone is the evidence of the results")
        return
    try:
        copy = load_results(path, decision.round, decision.funded())
    except InputError as exc:
        out.problems.append(f"{RESULTS_XLSX} no longer validates: {exc.issues[0]}")
        return
    except Exception as exc:
        out.problems.append(f"{RESULTS_XLSX} is not readable ({type(exc).__name__})")
        return
    if copy.digest() != results.digest():
        out.problems.append(f"{RESULTS_XLSX}: the results it holds differ from {RESULTS_JSON}")


def _compare_lines(folder: Path, s: Settlement, out: Verification) -> None:
    """settlement.csv against the re-computed settlement: each tranche's amounts and texts
    named, then the file byte for byte (a line given twice, an amount typed another way or
    another line end is a change: whoever sums the file pays what it says)."""
    try:
        data = (folder / SETTLEMENT_CSV).read_bytes()
        df = pd.read_csv(io.BytesIO(data), dtype=str, keep_default_na=False, na_filter=False)
    except Exception as exc:
        out.problems.append(f"{SETTLEMENT_CSV} is not readable ({type(exc).__name__}: {exc})")
        return
    if list(df.columns) != SETTLEMENT_COLUMNS:
        out.problems.append(f"{SETTLEMENT_CSV}: expected columns {SETTLEMENT_COLUMNS}, got "
                            f"{list(df.columns)}")
        return
    text = settlement_csv(s)
    expected = pd.read_csv(io.StringIO(text), dtype=str, keep_default_na=False, na_filter=False)
    key = ["program_id", "fund_id", "period", "tranche"]
    before = len(out.problems)
    counts = Counter(tuple(r[k] for k in key) for r in df.to_dict("records"))
    for k in sorted(k for k, n in counts.items() if n > 1):
        out.problems.append(f"settlement {'/'.join(k)}: {counts[k]} lines in {SETTLEMENT_CSV}, "
                            "the decision has one such tranche")
    old = {tuple(r[k] for k in key): r for r in df.to_dict("records")}
    new = {tuple(r[k] for k in key): r for r in expected.to_dict("records")}
    for k in [k for k in old if k not in new]:
        out.problems.append(f"settlement {'/'.join(k)}: recorded, but the decision has no such "
                            "tranche")
    for k in [k for k in new if k not in old]:
        out.problems.append(f"settlement {'/'.join(k)}: missing from {SETTLEMENT_CSV}")
    for k in [k for k in new if k in old]:
        for column in SETTLEMENT_COLUMNS[4:]:
            a, b = old[k][column], new[k][column]
            if column in ("scheduled", "payable", "withheld"):
                same = _as_decimal(a) == _as_decimal(b)
            else:
                same = a == b
            if not same:
                out.problems.append(f"settlement {'/'.join(k)} {column}: recorded {a}, "
                                    f"re-computed {b}")
    if len(out.problems) == before and data != text.encode("utf-8"):
        n, got, want = first_difference(data, text.encode("utf-8"))
        out.problems.append(f"{SETTLEMENT_CSV} line {n}: recorded {got!r}, the re-computed "
                            f"settlement writes {want!r}")


def _as_decimal(text: str) -> Decimal | None:
    try:
        return Decimal(text)
    except Exception:
        return None


# --- one call: settle, record, report -------------------------------------------------------------
@dataclass
class SettleRun:
    """What `settle_record` produced."""

    settlement: Settlement
    record: SettlementRecord
    report: Path
    tables: dict[str, pd.DataFrame] = field(default_factory=dict)


def default_settlement_report(rnd: Round, settlement_id: str) -> Path:
    return Path("reports") / f"{rnd.settings.round_id}.settlement-{settlement_id}.xlsx"


def settle_record(record: str | Path, results: str | Path, *, report: str | Path | None = None,
                  records: str | Path | None = None, sign_key: str | Path | None = None) -> SettleRun:
    """Validate the results against the record, settle, and write the record and the report
    as one all-or-nothing step (invalid results: ResultsInputError, nothing written). The
    record is signed with `sign_key`, or else with the key ALLOCATOR_SIGNING_KEY names."""
    from allocator.atomic import commit
    from allocator.signing import key_from_env, load_private

    key_path = Path(sign_key) if sign_key is not None else key_from_env()
    key = load_private(key_path) if key_path is not None else None  # a bad key fails first
    decision = load_decision(record)
    if records is not None and Path(records).resolve() != decision.folder.parent.parent.resolve():
        raise RecordError(f"a settlement is written beside its decision record, in "
                          f"{decision.folder.parent.parent}; --records {records} is another folder")
    loaded = load_results(results, decision.round, decision.funded())
    s = settle(decision, loaded)
    staged: list[Path] = []
    paths: dict[str, Path] = {}

    def write_report_inside(folder: Path, settlement_id: str) -> None:
        target = Path(report) if report is not None else \
            default_settlement_report(decision.round, settlement_id)
        tmp = target.parent / f".{target.name}.{settlement_id}.tmp"
        target.parent.mkdir(parents=True, exist_ok=True)
        staged.append(tmp)
        paths["report"] = target
        write_settlement_workbook(s, tmp, settlement_id=settlement_id)

    try:
        rec = write_settlement_record(s, Path(results), after_write=write_report_inside,
                                      sign_key=key)
        commit(staged[0], paths["report"])  # record first: a report never points at no record
    finally:
        for tmp in staged:
            tmp.unlink(missing_ok=True)
    return SettleRun(s, rec, paths["report"],
                     frames(settlement_tables(s, settlement_id=rec.settlement_id)))
