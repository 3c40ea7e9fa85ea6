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
    """allocator module -> the allocator modules it imports when it runs (deferred imports
    inside functions included; imports only for type checking left out)."""
    import ast
    from pathlib import Path

    package = Path(__file__).resolve().parents[1] / "allocator"
    modules = {p.stem: p for p in package.glob("*.py")}
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
                parts = node.module.split(".")[1:]
                targets = parts[:1] or [a.name for a in node.names]
            elif isinstance(node, ast.Import):
                targets = [a.name.split(".")[1] for a in node.names
                           if a.name.startswith("allocator.")]
            else:
                continue
            graph[name].update(t for t in targets if t in modules and t != name)
    return graph


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
