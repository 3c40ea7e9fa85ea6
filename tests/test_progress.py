"""Long runs show where they are: each phase, and the solver's own progress inside a solve."""

from __future__ import annotations

from allocator.engine import solve_round
from allocator.progress import reporting
from allocator.validate import load_round
from tests.rounds import sheets, write


def test_solver_progress_reaches_the_phase_it_belongs_to(tmp_path):
    rnd = load_round(write(tmp_path / "a.xlsx", sheets())).round  # P2 is all-or-nothing: a MILP
    events: list[tuple[str, str]] = []
    with reporting(lambda name: events.append(("phase", name)),
                   lambda text: events.append(("detail", text))):
        solve_round(rnd)
    phases = [text for kind, text in events if kind == "phase"]
    assert phases[0] == "building the model"
    assert any(p.startswith("finding the best outcome (") for p in phases)
    after: dict[str, list[str]] = {}
    current = ""
    for kind, text in events:
        if kind == "phase":
            current = text
        else:
            after.setdefault(current, []).append(text)
    outcome = next(p for p in phases if p.startswith("finding the best outcome"))
    assert any(t.endswith(" options tried") for t in after[outcome])
    lp_details = [t for p, texts in after.items() if p.startswith("pricing") for t in texts]
    assert any(t.endswith(" steps") for t in lp_details)
    # Words, not solver terms, and no internal numbers (a gap) outside the outcome's search.
    shown = " ".join(text for _, text in events)
    for term in ("MILP", " LP", "simplex", "iteration", "nodes", "variables", "constraints",
                 "tiebreak", "tie-break (", "relaxation"):
        assert term not in shown, term
    inner = [t for p, texts in after.items() if p != outcome for t in texts]
    assert not any("%" in t or "best possible" in t for t in inner)


def test_an_lps_steps_are_read_from_highs_log_lines_and_nothing_else():
    from allocator.solve import logged_steps

    # lines as HiGHS 1.16 writes them (simplex, IPX), and lines around them
    assert logged_steps("      12073     2.0242161562e+06 Pr: 0(0); Du: 0(4.3e-13) 4.5s") == 12073
    assert logged_steps("  24*   1.08453656e+10   1.08453655e+10   1.74e-14   2.06e-15") == 24
    assert logged_steps("   3    1.27391364e+10  -3.60245428e+10   1.26e-02   4.38e-03") == 3
    for other in ("87343 rows, 103520 cols, 1248930 nonzeros 0s",
                  " Iter       primal obj         dual obj       pinf       dinf       gap",
                  "    Number of dual pushes required:                     373",
                  "  Iteration        Objective     Infeasibilities num(sum)",
                  "Model status        : Optimal"):
        assert logged_steps(other) is None, other
