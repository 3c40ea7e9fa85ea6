"""Generate the example round `inputs/example_round.xlsx` and the blank `inputs/template.xlsx`.

The example is a fictional but realistic round of a cross-border training fund in the
tri-border area of the Upper Rhine: Baden-Württemberg (DE-BW), Grand Est / Haut-Rhin (FR-GES)
and the two Basel cantons (CH-BS) pool money into a joint skills fund, next to each side's own
public fund, an employers' fund and a performance bonus fund. Fund managers learn the tool on it,
so every sheet of the input contract is used and several rules bind.

Run `python inputs/make_example.py`. The output is deterministic (fixed seed, no dates in cell
values), and `tests/test_example_round.py` checks that the committed workbook matches this script.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

from allocator.template import write_round_workbook, write_template

HERE = Path(__file__).resolve().parent
SEED = 20260101
PERIODS = ("2026", "2027", "2028")

ROUND: dict[str, Any] = {
    "round_id": "upper-rhine-2026",
    "title": "Upper Rhine Skills Fund: allocation round 2026-2028 (example)",
    "currency": "EUR",
    "periods": ", ".join(PERIODS),
    "rounding_unit": 1000,
    "equity_objective": "none",
    "outcome_tolerance": 0,
    "time_limit_s": 60,
    "mip_gap": 0.0001,
}

# region_id, name, jurisdiction, population, rural
REGIONS: list[tuple[str, str, str, int, bool]] = [
    ("DE-LOE", "Landkreis Lörrach", "DE-BW", 230_500, False),
    ("DE-WT", "Landkreis Waldshut", "DE-BW", 172_500, True),
    ("DE-FR", "Freiburg im Breisgau", "DE-BW", 232_000, False),
    ("DE-BH", "Breisgau-Hochschwarzwald", "DE-BW", 266_000, True),
    ("FR-M2A", "Mulhouse Alsace Agglomération", "FR-GES", 273_000, False),
    ("FR-SLA", "Saint-Louis Agglomération", "FR-GES", 81_000, False),
    ("FR-SUN", "Sundgau", "FR-GES", 70_000, True),
    ("FR-COL", "Colmar Agglomération", "FR-GES", 113_000, False),
    ("CH-BS", "Basel-Stadt", "CH-BS", 196_500, False),
    ("CH-BL", "Basel-Landschaft (Unterbaselbiet)", "CH-BS", 228_500, False),
    ("CH-OB", "Oberbaselbiet and Laufental", "CH-BS", 63_500, True),
]

JOINT = "JIF"
# fund_id, name, kind, owner, cofinancing_cap, eligible, carry_over, budget per period
FUNDS: list[tuple[str, str, str, str, float, str, bool, tuple[int, int, int]]] = [
    (JOINT, "Upper Rhine Joint Skills Fund", "joint", "joint", 1.0, "", True,
     (4_000_000, 4_500_000, 5_000_000)),
    ("PUB-BW", "Baden-Württemberg continuing education programme", "public", "DE-BW", 0.6,
     "jurisdiction=DE-BW", False, (1_600_000, 1_600_000, 1_600_000)),
    ("PUB-GES", "Région Grand Est training plan (Haut-Rhin)", "public", "FR-GES", 0.5,
     "jurisdiction=FR-GES", False, (1_200_000, 1_200_000, 1_200_000)),
    ("PUB-BS", "Basel cantons vocational retraining fund", "public", "CH-BS", 1.0,
     "jurisdiction=CH-BS", False, (900_000, 900_000, 900_000)),
    ("EMP", "Upper Rhine employers' training fund", "employer", "joint", 0.5,
     "sector=manufacturing|logistics|construction", False, (800_000, 800_000, 800_000)),
    ("PERF", "Results bonus fund", "performance", "joint", 0.4, "stage!=pilot", True,
     (500_000, 500_000, 600_000)),
]
# who paid into the joint fund (sums to its 13.5 M budget)
CONTRIBUTIONS = [(JOINT, "DE-BW", 5_800_000), (JOINT, "FR-GES", 4_400_000), (JOINT, "CH-BS", 3_300_000)]

# program_id, name, sector, stage, regions, cost_per_trainee, max, min, start, end, targets,
# pilot_of, provider
PROGRAMS: list[tuple[Any, ...]] = [
    ("DIG-01", "Cloud and data skills bootcamp", "digital", "established", "DE-FR", 6500, 95, 0,
     None, None, "youth, women", None, "Freiburg Digital Academy"),
    ("DIG-02", "Digital basics for job seekers", "digital", "established", "FR-M2A, FR-COL", 2200, 265,
     0, None, None, "marginalized, language_support", None, "GRETA Alsace Sud"),
    ("DIG-03", "Tri-border cyber security academy (pilot)", "digital", "pilot",
     "CH-BS, DE-LOE, FR-SLA", 12000, 30, 15, None, "2026", "women", None, "Trinational Cyber Campus"),
    ("DIG-04", "Coding school for women returners (pilot)", "digital", "pilot", "CH-BS, CH-BL", 7800,
     50, 0, None, None, "women", None, "Basel Code Lab"),
    ("DIG-05", "Tri-border cyber security academy", "digital", "scale_up",
     "CH-BS, CH-BL, DE-LOE, FR-SLA, FR-M2A", 10500, 85, 20, "2027", None, "women, youth", "DIG-03",
     "Trinational Cyber Campus"),
    ("DIG-06", "SME digitalisation coaches", "digital", "established", "DE-WT, DE-BH", 5200, 60, 0,
     None, None, "rural", None, "IHK Hochrhein-Bodensee"),
    ("DIG-07", "Rural e-skills in the Sundgau", "digital", "established", "FR-SUN", 2800, 110, 0,
     None, None, "rural, marginalized", None, "Maison de l'emploi Sundgau"),
    ("CARE-01", "Nursing assistant diploma", "care", "established", "DE-FR, DE-BH", 9500, 70, 0,
     None, None, "women", None, "Universitätsklinikum Freiburg"),
    ("CARE-02", "Aide-soignant fast track", "care", "established", "FR-M2A, FR-COL, FR-SUN", 7200, 95,
     0, None, None, "women, marginalized", None, "IFSI Mulhouse"),
    ("CARE-03", "Cross-border care assistants with language coaching (pilot)", "care", "pilot",
     "DE-LOE, FR-SLA", 8400, 35, 0, None, "2026", "language_support, migrants", None,
     "Eurodistrict Basel"),
    ("CARE-04", "Cross-border care assistants with language coaching", "care", "scale_up",
     "DE-LOE, DE-FR, FR-SLA, FR-M2A", 7900, 110, 0, "2027", None,
     "language_support, migrants, women", "CARE-03", "Eurodistrict Basel"),
    ("CARE-05", "Health care assistant (FaGe) for adults", "care", "established", "CH-BS, CH-BL",
     14500, 40, 0, None, None, "women", None, "OdA Gesundheit beider Basel"),
    ("CARE-06", "Telecare for rural seniors (pilot)", "care", "pilot", "DE-WT, CH-OB", 6000, 30, 0,
     None, None, "rural", None, "Caritas Hochrhein"),
    ("CARE-07", "Childcare professionals for migrants", "care", "established", "CH-BS, DE-FR", 8800,
     50, 0, None, None, "migrants, women, language_support", None, "Kita-Verbund Basel"),
    ("GRN-01", "Solar PV installer certificate", "green", "established", "DE-BH, DE-WT, DE-LOE", 5600,
     85, 0, None, None, "rural", None, "Handwerkskammer Freiburg"),
    ("GRN-02", "Heat pump installer (pilot)", "green", "pilot", "FR-COL, FR-M2A", 6800, 35, 0, None,
     "2026", "youth", None, "CFA du BTP Colmar"),
    ("GRN-03", "Heat pump installer", "green", "scale_up", "FR-COL, FR-M2A, FR-SUN, DE-BH", 6200, 110,
     30, "2027", None, "youth, rural", "GRN-02", "CFA du BTP Colmar"),
    ("GRN-04", "Building energy retrofit advisers", "green", "established", "CH-BS, CH-BL", 11000, 50,
     0, None, None, None, None, "Energiefachstelle beider Basel"),
    ("GRN-05", "Agrivoltaics technicians (pilot)", "green", "pilot", "FR-SUN, DE-BH, CH-OB", 7400, 25,
     10, None, None, "rural", None, "Trinational Agri Campus"),
    ("GRN-06", "Rhine port hydrogen technicians", "green", "established", "CH-BS, FR-SLA, DE-LOE",
     13500, 35, 12, "2027", None, None, None, "Rheinhäfen Training Centre"),
    ("GRN-07", "Energy efficiency for craft trades", "green", "established", "DE-FR, DE-LOE", 3900, 95,
     0, None, None, None, None, "Handwerkskammer Freiburg"),
    ("MAN-01", "CNC machining retraining", "manufacturing", "established", "DE-LOE, DE-WT", 8200, 70,
     0, None, None, None, None, "Bildungswerk Südbaden"),
    ("MAN-02", "Pharma production operators", "manufacturing", "established",
     "CH-BS, CH-BL, FR-SLA", 12500, 60, 0, None, None, "migrants", None, "aprentas"),
    ("MAN-03", "Automotive to e-mobility conversion", "manufacturing", "established", "FR-M2A", 9000,
     85, 25, None, None, None, None, "Pôle formation UIMM Alsace"),
    ("MAN-04", "Precision mechanics for adults", "manufacturing", "established", "CH-BL, CH-OB",
     15000, 35, 0, None, None, "rural", None, "Berufsbildung Baselland"),
    ("MAN-05", "Additive manufacturing (pilot)", "manufacturing", "pilot", "DE-FR, CH-BS", 11500, 25,
     0, None, None, None, None, "Fraunhofer Academy Freiburg"),
    ("MAN-06", "Industrial maintenance for career changers", "manufacturing", "established",
     "FR-COL, DE-BH", 7600, 65, 0, None, None, "marginalized", None, "AFPA Colmar"),
    ("MAN-07", "Lean production team leaders", "manufacturing", "established",
     "DE-WT, FR-M2A, CH-BL", 4500, 70, 0, None, "2027", "women", None, "Trinational Lean Network"),
    ("LOG-01", "Forklift and warehouse certificate", "logistics", "established",
     "FR-SLA, FR-M2A, DE-LOE", 2400, 180, 0, None, None, "marginalized, youth", None,
     "Euro-Logistique Saint-Louis"),
    ("LOG-02", "Automated logistics operators (pilot)", "logistics", "pilot", "CH-BS, FR-SLA", 9800,
     30, 0, None, "2026", None, None, "Port of Basel Academy"),
    ("LOG-03", "Automated logistics operators", "logistics", "scale_up",
     "CH-BS, CH-BL, FR-SLA, DE-LOE", 9200, 70, 0, "2027", None, None, "LOG-02",
     "Port of Basel Academy"),
    ("LOG-04", "Professional driver licence C/CE", "logistics", "established",
     "DE-WT, DE-BH, FR-SUN", 6900, 85, 0, None, None, "rural", None, "DEKRA Akademie Südbaden"),
    ("LOG-05", "Rail freight operators", "logistics", "established", "CH-BS, DE-FR", 10800, 35, 10,
     None, None, None, None, "SBB Cargo Training"),
    ("HOS-01", "Bilingual hospitality apprenticeship", "hospitality", "established",
     "FR-COL, DE-FR, DE-BH", 4300, 95, 0, None, None, "youth, language_support", None,
     "Hotelfachschule Oberrhein"),
    ("HOS-02", "Black Forest tourism skills", "hospitality", "established", "DE-BH, DE-WT", 3500, 85,
     0, None, None, "rural, women", None, "Hochschwarzwald Tourismus"),
    ("HOS-03", "Kitchen skills for refugees", "hospitality", "established", "CH-BS, FR-M2A", 3200, 70,
     0, None, None, "migrants, language_support, marginalized", None, "Kitchen Bridge Basel"),
    ("HOS-04", "Wine tourism guides (pilot)", "hospitality", "pilot", "FR-COL, FR-SUN", 4800, 25, 0,
     None, "2026", "rural", None, "Route des Vins Formation"),
    ("HOS-05", "Hotel reception for career starters", "hospitality", "established", "CH-BS, CH-BL",
     5400, 55, 0, None, None, "youth", None, "hotelleriesuisse Nordwest"),
    ("CON-01", "Timber construction carpenters", "construction", "established",
     "DE-BH, DE-WT, CH-OB", 7800, 60, 0, None, None, "rural", None, "Holzbau-Zentrum Hochrhein"),
    ("CON-02", "Construction site basics for NEET youth", "construction", "established",
     "FR-M2A, FR-COL", 5100, 95, 0, None, None, "youth, marginalized", None, "Compagnons du Haut-Rhin"),
    ("CON-03", "BIM digital building modelling", "construction", "established",
     "DE-FR, CH-BS, FR-SLA", 6600, 50, 0, None, None, None, None, "BIM Campus Oberrhein"),
    ("CON-04", "Women in construction trades", "construction", "established", "CH-BL, DE-LOE", 8900,
     35, 0, None, None, "women", None, "Baumeisterverband Nordwestschweiz"),
    ("CON-05", "Sundgau rural building renovation", "construction", "established", "FR-SUN", 5900, 50,
     15, None, None, "rural", None, "Maison de l'emploi Sundgau"),
]

# typical outcomes per sector: employment_rate, retention_rate, learning_gain, wage_gain
SECTOR_OUTCOMES = {
    "digital": (0.72, 0.80, 0.40, 0.14),
    "care": (0.82, 0.70, 0.30, 0.06),
    "green": (0.76, 0.82, 0.35, 0.11),
    "manufacturing": (0.70, 0.85, 0.28, 0.09),
    "logistics": (0.74, 0.72, 0.20, 0.06),
    "hospitality": (0.68, 0.58, 0.18, 0.04),
    "construction": (0.73, 0.78, 0.25, 0.08),
}

# program_id, metric, target, achieved: results of earlier rounds
PERFORMANCE: list[tuple[str, str, float, float]] = [
    # pilots whose targets were met: their scale-ups may be funded
    ("DIG-03", "placement_rate", 0.70, 0.78), ("DIG-03", "completion_rate", 0.85, 0.91),
    ("CARE-03", "placement_rate", 0.75, 0.81), ("CARE-03", "completion_rate", 0.80, 0.79),
    ("GRN-02", "placement_rate", 0.70, 0.74), ("GRN-02", "completion_rate", 0.85, 0.88),
    # pilots that missed: LOG-03 (scale-up of LOG-02) gets no money this round
    ("LOG-02", "placement_rate", 0.70, 0.46), ("LOG-02", "completion_rate", 0.80, 0.63),
    ("HOS-04", "placement_rate", 0.60, 0.52), ("HOS-04", "completion_rate", 0.85, 0.86),
    # established programs: those that met their targets may draw on the results bonus fund
    ("DIG-02", "placement_rate", 0.55, 0.61), ("DIG-02", "completion_rate", 0.80, 0.84),
    ("CARE-02", "placement_rate", 0.80, 0.86), ("CARE-02", "completion_rate", 0.85, 0.83),
    ("GRN-01", "placement_rate", 0.75, 0.79), ("GRN-01", "completion_rate", 0.90, 0.92),
    ("MAN-03", "placement_rate", 0.70, 0.62), ("MAN-03", "completion_rate", 0.85, 0.80),
    ("MAN-06", "placement_rate", 0.65, 0.71), ("MAN-06", "completion_rate", 0.80, 0.82),
    ("LOG-01", "placement_rate", 0.60, 0.66), ("LOG-01", "completion_rate", 0.90, 0.93),
    ("HOS-03", "placement_rate", 0.45, 0.52), ("HOS-03", "completion_rate", 0.75, 0.78),
    ("CON-02", "placement_rate", 0.55, 0.58), ("CON-02", "completion_rate", 0.70, 0.74),
    ("CARE-05", "placement_rate", 0.85, 0.77), ("CARE-05", "completion_rate", 0.90, 0.88),
]

# fund_kind, tranche, share, due (periods after the funded one), condition
TRANCHES: list[tuple[str, str, float, int, str]] = [
    ("joint", "advance", 0.4, 0, "contract signed"),
    ("joint", "interim", 0.4, 0, "mid-term report"),
    ("joint", "final", 0.2, 1, "final outcomes report"),
    ("public", "advance", 0.6, 0, "grant agreement signed"),
    ("public", "final", 0.4, 1, "completion certificate"),
    ("employer", "invoice", 1.0, 0, "training invoice with attendance list"),
    ("performance", "bonus", 1.0, 1, "verified placement results"),
]

OBJECTIVE = [("employment_rate", 1.0), ("retention_rate", 0.5), ("learning_gain", 0.3),
             ("wage_gain", 2.0)]

RULES: list[dict[str, Any]] = [
    {"rule_id": "R1-JUSTE-RETOUR", "measure": "contribution_share", "select": f"fund={JOINT}",
     "op": ">=", "value": 0.9,
     "description": "Juste retour: each jurisdiction receives at least 90% of its contribution "
                    "share of the joint fund"},
    {"rule_id": "R2-INCLUSION", "measure": "share", "select": "target=rural|marginalized",
     "op": ">=", "value": 0.3,
     "description": "At least 30% of all money goes to programs for rural or marginalized learners"},
    {"rule_id": "R3-WOMEN-YOUTH", "measure": "share_within", "select": "target=women|youth",
     "each": "jurisdiction", "op": ">=", "value": 0.4,
     "description": "In each jurisdiction, at least 40% of the money delivered there goes to "
                    "programs for women or young people"},
    {"rule_id": "R4-FLOOR", "measure": "per_capita", "each": "region", "op": ">=", "value": 8,
     "description": "Every region receives at least EUR 8 per inhabitant over the round"},
    {"rule_id": "R5-PILOTS", "measure": "amount", "select": "stage=pilot", "op": "<=",
     "value": 1_500_000,
     "description": "Untested pilots receive at most EUR 1.5 million in total"},
    {"rule_id": "R6-GREEN", "measure": "share", "select": f"fund={JOINT}; sector=green",
     "relative_to": f"fund={JOINT}", "op": ">=", "value": 0.15,
     "description": "At least 15% of the joint fund goes to green skills"},
    {"rule_id": "R7-SECTOR-CAP", "measure": "share", "each": "sector", "op": "<=", "value": 0.2,
     "description": "No single sector receives more than 20% of all money"},
]


def _outcomes(rng: random.Random, sector: str, targets: str | None) -> dict[str, float]:
    """Expected outcomes: the sector's typical values, varied per program."""
    emp, ret, learn, wage = SECTOR_OUTCOMES[sector]
    if targets and "marginalized" in targets:
        emp -= 0.08  # harder-to-place learners: lower placement, larger learning gain
        learn += 0.05
    return {
        "employment_rate": round(min(0.97, max(0.3, emp + rng.uniform(-0.08, 0.08))), 2),
        "retention_rate": round(min(0.97, max(0.3, ret + rng.uniform(-0.08, 0.08))), 2),
        "learning_gain": round(max(0.1, learn + rng.uniform(-0.08, 0.08)), 2),
        "wage_gain": round(max(0.02, wage + rng.uniform(-0.03, 0.03)), 3),
    }


def example_sheets() -> dict[str, Any]:
    """The example round as {sheet: rows}, ready for `write_round_workbook`."""
    rng = random.Random(SEED)
    programs = []
    for (pid, name, sector, stage, regions, cost, max_t, min_t, start, end, targets, pilot_of,
         provider) in PROGRAMS:
        programs.append({
            "program_id": pid, "name": name, "sector": sector, "stage": stage, "regions": regions,
            "cost_per_trainee": cost, "max_trainees": max_t, "min_trainees": min_t,
            "start_period": start, "end_period": end, "targets": targets, "pilot_of": pilot_of,
            **_outcomes(rng, sector, targets), "provider": provider,
        })
    return {
        "Round": ROUND,
        "Regions": [{"region_id": r, "name": n, "jurisdiction": j, "population": pop,
                     "rural": "yes" if rural else "no"} for r, n, j, pop, rural in REGIONS],
        "Funds": [{"fund_id": f, "name": n, "kind": k, "owner": o, "cofinancing_cap": cap,
                   "eligible": elig or None, "carry_over": "yes" if co else "no"}
                  for f, n, k, o, cap, elig, co, _ in FUNDS],
        "Budgets": [{"fund_id": f, "period": t, "amount": amount}
                    for f, *_, budgets in FUNDS for t, amount in zip(PERIODS, budgets, strict=True)],
        "Contributions": [{"fund_id": f, "jurisdiction": j, "amount": a} for f, j, a in CONTRIBUTIONS],
        "Programs": programs,
        "Performance": [{"program_id": p, "metric": m, "target": t, "achieved": a}
                        for p, m, t, a in PERFORMANCE],
        "Tranches": [{"fund_kind": k, "tranche": n, "share": s, "due": d, "condition": c}
                     for k, n, s, d, c in TRANCHES],
        "Objective": [{"metric": m, "weight": w} for m, w in OBJECTIVE],
        "Rules": RULES,
        # What-if rows for `allocator compare` (not part of the round itself: its digest is the same)
        "Variants": [{"variant": "more joint money", "overrides": "budget JIF 2027 = +10%"},
                     {"variant": "fair per inhabitant",
                      "overrides": "equity_objective = maxmin_per_capita; outcome_tolerance = 0.02"}],
    }


def build_example(path: str | Path) -> Path:
    """Write the example round workbook to `path`."""
    return write_round_workbook(path, example_sheets())


def main() -> None:
    """Write `example_round.xlsx` and `template.xlsx` next to this script."""
    for written in (build_example(HERE / "example_round.xlsx"), write_template(HERE / "template.xlsx")):
        print(f"wrote {written}")


if __name__ == "__main__":
    main()
