"""Writing round workbooks: the blank template, and rounds built from Python data.

The template is the input contract (DESIGN.md, version 1.1) as a workbook: every sheet and
header, an Instructions sheet that says what to type in every column, a Variants sheet with
example rows, and drop-down lists for the enumerated columns.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from openpyxl import Workbook
from openpyxl.styles import Font, PatternFill
from openpyxl.utils import get_column_letter
from openpyxl.worksheet.datavalidation import DataValidation

from allocator.atomic import atomic_path
from allocator.filters import BUILTIN_KEYS
from allocator.round import OUTCOME_COLUMNS, EquityObjective, FundKind, Measure, Stage
from allocator.validate import ROUND_KEYS as VALIDATED_ROUND_KEYS
from allocator.validate import SPECS
from allocator.variants import PROGRAM_FIELDS, RULE_FIELDS, SETTING_KEYS

HEADERS: dict[str, list[str]] = {
    "Round": ["key", "value"],
    "Regions": ["region_id", "name", "jurisdiction", "population", "rural"],
    "Funds": ["fund_id", "name", "kind", "owner", "cofinancing_cap", "eligible", "carry_over"],
    "Budgets": ["fund_id", "period", "amount"],
    "Contributions": ["fund_id", "jurisdiction", "amount"],
    "Programs": ["program_id", "name", "sector", "stage", "regions", "cost_per_trainee",
                 "max_trainees", "min_trainees", "start_period", "end_period", "targets",
                 "pilot_of", *OUTCOME_COLUMNS, "external_match",
                 *(f"{m}_se" for m in OUTCOME_COLUMNS)],
    "Performance": ["program_id", "metric", "target", "achieved"],
    "Tranches": ["fund_kind", "fund_id", "tranche", "share", "due", "condition", "basis", "floor"],
    "Objective": ["metric", "weight"],
    "Rules": ["rule_id", "description", "measure", "select", "each", "relative_to", "op",
              "value", "penalty"],
    "Variants": ["variant", "overrides"],
}
ROUND_KEYS = ["round_id", "title", "currency", "periods", "rounding_unit", "equity_objective",
              "outcome_tolerance", "time_limit_s", "mip_gap", "prior_weight", "robust_gamma",
              "robust_level"]
CHOICES: dict[tuple[str, str], list[str]] = {
    ("Funds", "kind"): [k.value for k in FundKind],
    ("Funds", "carry_over"): ["yes", "no"],
    ("Regions", "rural"): ["yes", "no"],
    ("Programs", "stage"): [s.value for s in Stage],
    ("Tranches", "fund_kind"): [k.value for k in FundKind],
    ("Tranches", "basis"): ["fixed", "results"],
    ("Rules", "measure"): [m.value for m in Measure],
    ("Rules", "op"): [">=", "<=", "="],
}
# Example rows of the Variants sheet: each runs on any valid round as it stands.
VARIANT_EXAMPLES = [
    ("fair per inhabitant", "equity_objective = maxmin_per_capita; outcome_tolerance = 0.05"),
    ("costs up 10%", "program * cost_per_trainee = *1.1"),
    ("bigger programs", "program * max_trainees = +20%"),
]
SE = "<metric>_se"  # the uncertainty columns, documented once for every outcome metric

INTRO = [
    "How to fill in a round workbook (input contract, version 1.1)",
    "",
    "One sheet per table, one header row, one row per item. Header names are case-insensitive; "
    "extra columns are kept as attributes that rule filters can use. Blank rows are skipped.",
    "Ids and period labels are text (a period typed as the number 2026 is the label 2026). Lists "
    "inside a cell are comma-separated. Booleans: yes/no, true/false, 1/0. Type numbers as "
    "numbers; rates as 0.65 or 65%.",
    "Required sheets: Round, Regions, Funds, Budgets, Programs, Objective. Optional: "
    "Contributions, Performance, Tranches, Rules, Variants.",
    "`allocator check WORKBOOK` lists every problem at once, as Sheet!Cell column: what was "
    "expected, got what.",
    "",
]


def _filter_keys() -> str:
    """The keys a filter may use, by dimension (from the filter module's own table)."""
    by_dim: dict[str, list[str]] = {}
    for key, (dim, _, _) in BUILTIN_KEYS.items():
        if key not in ("program_id", "region_id", "fund_id", "targets"):  # synonyms
            by_dim.setdefault(dim, []).append(key)
    return "; ".join(f"{dim}: {', '.join(keys)}" for dim, keys in by_dim.items())


def _documentation() -> dict[str, list[tuple[str, str]]]:
    """What to type in every column of every sheet (and every key of the Round sheet)."""
    kinds, stages = " | ".join(k.value for k in FundKind), " | ".join(s.value for s in Stage)
    equity = " | ".join(e.value for e in EquityObjective)
    programs = [
        ("program_id", "unique id of the program"),
        ("name", "free text"),
        ("sector", "free text, e.g. digital; rule filters can use it (sector=digital)"),
        ("stage", f"{stages} (default established)"),
        ("regions", "where it is delivered: comma-separated region ids (a cross-border program "
                    "lists several)"),
        ("cost_per_trainee", "total cost of one trainee, > 0"),
        ("max_trainees", "most trainees per period, >= 0"),
        ("min_trainees", "per period, default 0; > 0 means funded with at least that many "
                         "trainees or not at all"),
        ("start_period", "first period it runs (blank = the round's first)"),
        ("end_period", "last period it runs (blank = the round's last)"),
        ("targets", "tags such as rural, marginalized, women, youth, migrants, language_support"),
        ("pilot_of", "for a scale-up: the program id of the pilot it expands; it can only be "
                     "funded if that pilot met its targets (Performance sheet)"),
        ("employment_rate", "expected share of trainees employed after the program, 0..1"),
        ("retention_rate", "expected share still employed a year later, 0..1"),
        ("learning_gain", "expected learning gain per trainee"),
        ("wage_gain", "expected wage gain per trainee"),
        ("external_match", "share of the program's cost paid from outside the round (the "
                           "beneficiary, an employer, a national match in no fund of the round), "
                           "0..1, default 0. The round's money is then (1 - external_match) of "
                           "the cost, and a fund's cofinancing_cap applies to the total cost. A "
                           "program whose eligible funds' caps add up to less than "
                           "1 - external_match can never be funded; check says so"),
        (SE, "standard error of that expected outcome per trainee, e.g. employment_rate_se; "
             "blank = known exactly. Used by the robust allocation (Round robust_gamma)"),
    ]
    return {
        "Round": [
            ("key / value", "two columns: one setting per row, the key in column A, its value "
                            "in column B"),
            ("round_id", "required; letters, digits, '.', '_', '-'; names the report and the "
                         "record folder"),
            ("title", "free text"),
            ("currency", "3-letter code (default EUR)"),
            ("periods", "comma-separated labels in order, e.g. 2026, 2027, 2028 (default: one "
                        "period 'all')"),
            ("rounding_unit", "allocations are whole multiples of it (default 1)"),
            ("equity_objective", f"{equity} (default none): after the best outcome, raise the "
                                 "lowest money per inhabitant of a region, or the lowest joint "
                                 "money per unit of contribution share of a jurisdiction"),
            ("outcome_tolerance", "share of the best outcome value the equity stage may give up, "
                                  "0..1 (default 0)"),
            ("time_limit_s", "seconds the solver may spend on the best outcome (default 60)"),
            ("mip_gap", "relative optimality gap at which an all-or-nothing round stops "
                        "(default 0.0001)"),
            ("prior_weight", "k in new = (k * expected + n * measured) / (k + n), when a program's "
                             "expected outcomes are updated from n measured trainees for the "
                             "next round (default 30)"),
            ("robust_gamma", "robust allocation: how many programs (Γ >= 0, a fraction allowed "
                             "for the last) may each deliver robust_level standard errors less "
                             "per trainee at once; 0 = the nominal allocation (default 0)"),
            ("robust_level", "robust allocation: the shortfall z > 0, in standard errors "
                             "(<metric>_se columns of Programs) (default 1)"),
        ],
        "Regions": [
            ("region_id", "unique id of the region"),
            ("name", "free text"),
            ("jurisdiction", "the jurisdiction (country, state, canton) it belongs to"),
            ("population", "inhabitants, > 0 (per-capita rules and equity use it)"),
            ("rural", "yes/no (default no)"),
        ],
        "Funds": [
            ("fund_id", "unique id of the fund"),
            ("name", "free text"),
            ("kind", f"{kinds}. A performance fund pays only programs that met their targets"),
            ("owner", "a jurisdiction of the Regions sheet, or joint"),
            ("cofinancing_cap", "the most this fund may pay of a program's cost in a period, "
                                "0..1 (default 1)"),
            ("eligible", "a filter (see Filters below) of what the fund may pay for; blank = "
                         "everything"),
            ("carry_over", "yes/no (default no): unspent budget of a period moves to the next"),
        ],
        "Budgets": [
            ("fund_id", "a fund of the Funds sheet"),
            ("period", "a period of the Round sheet"),
            ("amount", "money available, >= 0; a fund with no row for a period has 0 in it"),
        ],
        "Contributions": [
            ("fund_id", "a joint fund"),
            ("jurisdiction", "a jurisdiction of the Regions sheet"),
            ("amount", "what it paid into the fund, >= 0 (contribution_share rules and "
                       "maxmin_contribution compare shares of it)"),
        ],
        "Programs": programs,
        "Performance": [
            ("program_id", "a program of the Programs sheet"),
            ("metric", "what was measured, e.g. employment_rate"),
            ("target", "what was promised, > 0"),
            ("achieved", "what was measured, >= 0. Score = mean of min(achieved / target, 1.5) "
                         "over the program's rows; it met its targets when the score is >= 1 "
                         "(no rows = not met)"),
        ],
        "Tranches": [
            ("fund_kind", f"{kinds}: the tranches of every fund of that kind (give fund_kind or "
                          "fund_id, not both)"),
            ("fund_id", "the tranches of one fund (used instead of its kind's; a fund with "
                        "neither is paid in one tranche in the funded period)"),
            ("tranche", "name of the tranche, e.g. signature"),
            ("share", "its share of the money, 0..1; the shares of a fund add up to 1"),
            ("due", "period offset from the funded period: 0, 1, ... (default 0)"),
            ("condition", "the milestone that releases it (text)"),
            ("basis", "fixed (default): paid in full when due once its milestone is met; "
                      "results: paid in proportion to the program's results score in the "
                      "funded period"),
            ("floor", "for a results tranche: a results score below it pays nothing, 0..1 "
                      "(default 0)"),
        ],
        "Objective": [
            ("metric", "an outcome column of Programs (employment_rate, retention_rate, "
                       "learning_gain, wage_gain) or another numeric column of Programs"),
            ("weight", "its weight: a trainee of a program is worth the sum of weight x outcome"),
        ],
        "Rules": [
            ("rule_id", "unique id of the rule"),
            ("description", "free text, shown in the report"),
            ("measure", "amount: the selected money; share: the selected money as a share of "
                        "the relative_to money (blank = all money); share_within: the same, "
                        "the relative_to money restricted to the group of each; per_capita: "
                        "the selected money per inhabitant of the selected regions in the "
                        "group; contribution_share: for each contributing jurisdiction, its "
                        "share of the selected money compared with value x its share of the "
                        "contributions (juste retour)"),
            ("select", "a filter (see Filters below) of the money the rule counts; blank = all"),
            ("each", "blank, or a key (see Filters below): the rule holds for each of its "
                     "values, e.g. region or jurisdiction"),
            ("relative_to", "share and share_within only: a filter of the money to compare "
                            "with; blank = all money"),
            ("op", ">=, <= or ="),
            ("value", "the bound: money for amount, a share 0..1 for share, share_within and "
                      "contribution_share, money per inhabitant for per_capita"),
            ("penalty", "blank = a hard rule. A number makes it soft: it may be missed at that "
                        "cost in outcome value per unit of shortfall, and the report shows by "
                        "how much"),
        ],
        "Variants": [
            ("variant", "name of the what-if (not 'base'); `allocator compare WORKBOOK` solves "
                        "the round and every variant and writes them side by side"),
            ("overrides", "changes separated by ';', each <what> = <value>, applied in order "
                          "(see Variants below)"),
        ],
    }


def _variant_syntax() -> list[str]:
    """The override syntax `allocator.variants` accepts, with examples."""
    return [
        "budget <fund_id> <period> = <value>    a fund's budget in a period (* = every period), "
        "e.g. budget JIF 2027 = +10%",
        f"rule <rule_id> {' | '.join(RULE_FIELDS)} = <value>    a rule's value or penalty, e.g. "
        "rule R2 value = 0.35 or rule R2 penalty = 500 (penalty = none, or hard, makes the rule "
        "hard)",
        "weight <metric> = <value>    an Objective weight (a metric not yet weighed adds a row), "
        "e.g. weight wage_gain = 3",
        f"<setting> = <value>    a Round setting: {', '.join(SETTING_KEYS)}, e.g. "
        "equity_objective = maxmin_per_capita",
        f"program <program_id> <field> = <value>    {', '.join(PROGRAM_FIELDS)} or an outcome "
        "metric of a program (* = every program), e.g. program P1 max_trainees = 40",
        "Values: 40 sets the value, +10% / -5% change it by a percentage, +5000 / -5000 add or "
        "subtract, *1.1 multiplies (a leading sign always changes the current value).",
        'Ids with spaces go in quotes: budget "Fund A" 2027 = 100000.',
    ]


def instruction_rows() -> list[list[str]]:
    """The Instructions sheet: intro, then sheet | column | required | what to type."""
    rows: list[list[str]] = [[line] for line in INTRO]
    rows.append(["sheet", "column", "required", "what to type"])
    for sheet, columns in _documentation().items():
        spec = {c.name: c.required for c in SPECS.get(sheet.lower(), [])}
        for column, text in columns:
            required = "yes" if spec.get(column) or sheet == "Variants" or (
                sheet, column) == ("Round", "round_id") else ""
            rows.append([sheet, column, required, text])
    rows += [[""], ["Filters (Funds eligible, Rules select and relative_to)"],
             ["key=a|b; key2!=c: every condition must hold; a|b means a or b; != means none of "
              "them. target=a|b holds for a program tagged with any of them, target!=a for one "
              "tagged with none. Blank = everything."],
             [f"Keys: {_filter_keys()}; program.name, region.name, fund.name; and any extra "
              "column of Programs, Regions or Funds."],
             [""], ["Variants (overrides column)"]]
    rows += [[line] for line in _variant_syntax()]
    return rows


def write_template(path: str | Path) -> Path:
    """Write the blank input workbook with instructions and drop-down lists."""
    wb = Workbook()
    ws = wb.active
    ws.title = "Instructions"
    for row in instruction_rows():
        _append(ws, row)
    ws["A1"].font = Font(bold=True, size=14)
    table_head = len(INTRO) + 1
    for cell in ws[table_head]:
        cell.font = Font(bold=True)
    for letter, width in zip("ABCD", (14, 20, 9, 120), strict=True):
        ws.column_dimensions[letter].width = width
    for sheet, headers in HEADERS.items():
        ws = wb.create_sheet(sheet)
        _header(ws, headers)
        if sheet == "Round":
            keys = [k for k in ROUND_KEYS if k in VALIDATED_ROUND_KEYS]  # others: "unknown key"
            for key in keys:
                ws.append([key, None])
            dv = DataValidation(type="list", formula1='"' + ",".join(
                e.value for e in EquityObjective) + '"', allow_blank=True)
            ws.add_data_validation(dv)
            dv.add(f"B{keys.index('equity_objective') + 2}")
        if sheet == "Variants":
            for name, overrides in VARIANT_EXAMPLES:
                _append(ws, [name, overrides])
        for (s, column), options in CHOICES.items():
            if s == sheet:
                letter = get_column_letter(headers.index(column) + 1)
                dv = DataValidation(type="list", formula1='"' + ",".join(options) + '"',
                                    allow_blank=True)
                ws.add_data_validation(dv)
                dv.add(f"{letter}2:{letter}5000")
    return _save(wb, Path(path))


def _header(ws, headers: Sequence[str]) -> None:
    _append(ws, headers)
    for cell in ws[1]:
        cell.font = Font(bold=True)
        cell.fill = PatternFill("solid", fgColor="DDEBF7")
    for i, h in enumerate(headers, start=1):
        ws.column_dimensions[get_column_letter(i)].width = max(12, len(h) + 4)
    ws.freeze_panes = "A2"


def write_round_workbook(path: str | Path, sheets: Mapping[str, Any]) -> Path:
    """Write a round workbook from {sheet: rows}; rows are dicts, or (key, value) for Round.

    Values are written as given (numbers as numbers, every string as text, even one starting
    with `=`; wrap a value in `Formula` to write a formula); for tests and generators.
    """
    wb = Workbook()
    wb.remove(wb.active)
    for sheet, rows in sheets.items():
        ws = wb.create_sheet(sheet)
        if sheet == "Round" and isinstance(rows, Mapping):
            _append(ws, ["key", "value"])
            for key, value in rows.items():
                _append(ws, [key, _cell(value)])
            continue
        rows = list(rows.to_dict("records") if hasattr(rows, "to_dict") else rows)
        headers = list(HEADERS.get(sheet, []))
        for row in rows:
            for key in row:
                if key not in headers:
                    headers.append(key)
        if rows:
            used = {k for row in rows for k in row}
            headers = [h for h in headers if h in used]
        _header(ws, headers)
        for row in rows:
            _append(ws, [_cell(row.get(h)) for h in headers])
    return _save(wb, Path(path))


class Formula(str):
    """A cell value to write as an Excel formula (with no saved result), e.g. Formula("=A1")."""

    __slots__ = ()


def _append(ws, values: Sequence[Any]) -> None:
    """Append a row; every string stays text, only a `Formula` becomes a formula.

    openpyxl turns a string starting with `=` into a formula and `#N/A` into an error value;
    a round may hold names like `=HYPERLINK(...)`, which must arrive as the text typed.
    """
    ws.append([str(v) if isinstance(v, Formula) else v for v in values])
    for cell, value in zip(ws[ws.max_row], values, strict=False):
        if isinstance(value, Formula):
            cell.data_type = "f"
        elif isinstance(cell.value, str):
            cell.data_type = "s"


def _cell(value: Any) -> Any:
    if isinstance(value, list | tuple):
        return ", ".join(map(str, value))
    return value


def _save(wb: Workbook, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        wb.save(tmp)
    return path
