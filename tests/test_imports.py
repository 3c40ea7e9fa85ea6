"""A small run loads only what it uses: Pyomo's scipy callback must not pull in scipy.stats."""

from __future__ import annotations

import subprocess
import sys


def test_engine_import_leaves_unused_scipy_subpackages_unloaded():
    code = ("import sys, allocator.api, allocator.engine; "
            "print(sorted(m for m in ('scipy.stats', 'scipy.integrate', 'scipy.spatial') "
            "if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def _runtime_imports() -> dict[str, set[str]]:
    """allocator module (dotted below the package: `engine`, `stages.model`) -> the allocator
    modules it imports when it runs (deferred imports inside functions included; imports only
    for type checking left out)."""
    import ast
    from pathlib import Path

    package = Path(__file__).resolve().parents[1] / "allocator"
    modules = {".".join(p.relative_to(package).with_suffix("").parts): p
               for p in package.rglob("*.py") if p.name != "__init__.py"}
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        typing_only = {id(n) for node in ast.walk(tree) if isinstance(node, ast.If)
                       and "TYPE_CHECKING" in ast.unparse(node.test) for n in ast.walk(node)}
        graph[name] = set()
        for node in ast.walk(tree):
            if id(node) in typing_only:
                continue
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("allocator"):
                below = node.module.partition(".")[2]
                targets = [below] if below in modules else \
                    [".".join(filter(None, (below, a.name))) for a in node.names]
            elif isinstance(node, ast.Import):
                targets = [a.name.partition(".")[2] for a in node.names
                           if a.name.startswith("allocator.")]
            else:
                continue
            graph[name].update(t for t in targets if t in modules and t != name)
    return graph


def test_the_import_graph_sees_the_stages_package():
    """The cycle check below reads every module, the stages package's too (else it passes by
    not looking)."""
    graph = _runtime_imports()
    assert {"stages.model", "stages.prices", "stages.tiebreak"} <= set(graph)
    assert "stages.model" in graph["engine"] and "solve" in graph["stages.prices"]


def test_no_module_of_the_package_imports_itself_back():
    """The data flow has a direction: a module never imports one that imports it (even from
    inside a function), so each stage can be read, tested and replaced on its own."""
    graph = _runtime_imports()

    def reachable(start: str) -> set[str]:
        seen, stack = set(), [start]
        while stack:
            for nxt in graph[stack.pop()] - seen:
                seen.add(nxt)
                stack.append(nxt)
        return seen

    cycles = sorted({tuple(sorted((a, b))) for a in graph for b in graph[a] if a in reachable(b)})
    assert cycles == [], f"modules that import each other (directly or round about): {cycles}"


def test_the_solve_does_not_load_the_diagnosis_or_the_report(tmp_path):
    """Solving a round, feasible or not, loads neither the infeasibility diagnosis nor the
    report writer: those are called by the API and the command line, after the solve."""
    from pathlib import Path

    from tests import rounds

    rule = {"rule_id": "R-A", "measure": "amount", "select": "region=A1", "op": ">=",
            "value": 10**6}
    infeasible = rounds.write(tmp_path / "infeasible.xlsx", rounds.sheets(Rules=[rule]))
    example = Path(__file__).resolve().parents[1] / "inputs" / "example_round.xlsx"
    code = ("import sys\n"
            "from allocator.engine import solve_round\n"
            "from allocator.errors import InfeasibleRoundError\n"
            "from allocator.validate import load_round\n"
            f"solve_round(load_round({str(example)!r}).round)\n"
            "try:\n"
            f"    solve_round(load_round({str(infeasible)!r}).round)\n"
            "except InfeasibleRoundError:\n"
            "    pass\n"
            "print(sorted(m for m in ('allocator.diagnose', 'allocator.report') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_writing_a_report_loads_neither_pyomo_nor_the_formulation():
    """The report, explanations and record read the built model the Solution carries: a
    process that only writes a report never builds a Pyomo model."""
    code = ("import sys, allocator.report, allocator.explain, allocator.sensitivity\n"
            "print(sorted(m for m in ('pyomo.environ', 'allocator.formulation', "
            "'allocator.stages.model') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


# Loaded by no feasible `allocator run`: the other commands' modules, the diagnosis of an
# infeasible round, and the scipy subpackages the engine never calls.
NOT_FOR_A_RUN = ("allocator.diagnose", "allocator.frontier", "allocator.sweep", "allocator.compare",
                 "allocator.settle", "allocator.nextround", "allocator.summary",
                 "allocator.template", "allocator.lpcheck", "scipy.stats", "scipy.integrate",
                 "scipy.spatial", "scipy.optimize")


def test_a_feasible_run_loads_only_what_it_uses(tmp_path):
    """`allocator run` on the example round, start to end in one process, never loads a module
    it does not use (each costs start-up time on every small round)."""
    from pathlib import Path

    example = Path(__file__).resolve().parents[1] / "inputs" / "example_round.xlsx"
    code = ("import sys\n"
            "from allocator.cli import main\n"
            f"sys.argv = ['allocator', 'run', {str(example)!r}, '--quiet', '--records', "
            f"{str(tmp_path / 'models')!r}, '--report', {str(tmp_path / 'r.xlsx')!r}]\n"
            "try:\n"
            "    main()\n"
            "except SystemExit as done:\n"
            "    assert not done.code, done.code\n"
            f"print(sorted(m for m in {NOT_FOR_A_RUN!r} if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert (tmp_path / "r.xlsx").exists()
    assert out.stdout.strip() == "[]"
