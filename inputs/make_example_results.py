"""Generate `inputs/example_results.xlsx`: measured results of the example round's first year.

What the programs of `example_round.xlsx` achieved in 2026, as its fund manager would record
them after the year, for `allocator settle` and `allocator next-round` on the committed decision
record in models/upper-rhine-2026/. Some programs beat their targets (GRN-01, LOG-01, and the
pilots GRN-02 and CARE-06, which met every target and are marked ready to scale up in the next
round), some fall short (HOS-02, HOS-04, DIG-01), CARE-02 missed its mid-term report (so the
joint fund's interim tranche of 2026 is withheld and carried into 2027), and DIG-02 lost
trainees (240 of its 264.5 funded trainees completed, so its tranches due in 2027 are scaled).

The example round's tranches are all `fixed` (its committed decision record must keep matching
it), so results move money here through milestones and drop-outs; a `results` tranche in a
round's Tranches sheet would also pay in proportion to these scores.

Run `python inputs/make_example_results.py`; the output is deterministic.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from allocator.template import write_round_workbook

HERE = Path(__file__).resolve().parent

# program_id, metric, target, achieved, trainees who completed (None: not told = all funded)
RESULTS: list[tuple[str, str, float, float, int | None]] = [
    ("GRN-01", "employment_rate", 0.69, 0.74, None),
    ("GRN-01", "retention_rate", 0.80, 0.83, None),
    ("LOG-01", "employment_rate", 0.63, 0.70, None),
    ("GRN-02", "employment_rate", 0.74, 0.79, None),  # pilot: every target met
    ("GRN-02", "retention_rate", 0.79, 0.81, None),
    ("CARE-06", "employment_rate", 0.77, 0.80, None),  # pilot: every target met
    ("CARE-06", "retention_rate", 0.64, 0.66, None),
    ("HOS-04", "employment_rate", 0.69, 0.58, None),  # pilot: fell short
    ("HOS-02", "employment_rate", 0.63, 0.55, None),
    ("DIG-01", "employment_rate", 0.65, 0.61, None),
    ("DIG-01", "wage_gain", 0.14, 0.15, None),
    ("CARE-02", "employment_rate", 0.67, 0.70, None),
    ("CARE-02", "retention_rate", 0.77, 0.72, None),
    ("DIG-02", "employment_rate", 0.71, 0.74, 240),  # drop-outs: 240 of 264.5 completed
    ("DIG-02", "learning_gain", 0.45, 0.47, 240),
]

# program_id, tranche, met (2026)
MILESTONES: list[tuple[str, str, bool]] = [
    ("CARE-02", "interim", False),  # the mid-term report never came
    ("CARE-02", "advance", True),
    ("DIG-02", "interim", True),
]


def example_results() -> dict[str, Any]:
    return {
        "Results": [{"program_id": p, "period": "2026", "metric": m, "target": t, "achieved": a,
                     "trainees": n} for p, m, t, a, n in RESULTS],
        "Milestones": [{"program_id": p, "period": "2026", "tranche": tr,
                        "met": "yes" if met else "no"} for p, tr, met in MILESTONES],
    }


def main() -> None:
    path = write_round_workbook(HERE / "example_results.xlsx", example_results())
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
