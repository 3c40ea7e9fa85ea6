"""The built model: a round's index, its stage-1 matrix and the plan, made once for every stage.

Validated round -> eligible index (`eligibility`) -> Pyomo model (`formulation.create_model`)
-> standard-form matrix (Pyomo's LinearStandardFormCompiler: the hand-over) -> `SolvePlan`.
Going through one matrix rather than a per-component solver interface keeps the hand-over
cheap and gives every later stage, the report and the record the same rows and columns: row
duals, reduced costs, MPS files of each stage, the IIS of an infeasible round.

The Pyomo model is dropped once compiled: the stages, the report, the explanations and the
record read the `BuiltModel`, never the formulation (nor its rule groups expanded again).
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field
from functools import cached_property

import numpy as np
from pyomo.common.gc_manager import PauseGC
from pyomo.repn.plugins.standard_form import LinearStandardFormCompiler

from allocator.eligibility import AllocationIndex, allocation_index, cap_block_lines, cap_blocks
from allocator.errors import InfeasibleRoundError
from allocator.formulation import Formulation, RuleGroup, create_model
from allocator.plan import SolvePlan, choose_plan
from allocator.progress import phase
from allocator.round import EquityObjective, Round
from allocator.solve import INF, Columns, MatrixProgram, RowRef


@dataclass
class BuiltModel:
    """One round's model as every stage reads it: built once, then only read."""

    round: Round
    index: AllocationIndex  # every eligible (program, region, fund, period): the x columns
    program: MatrixProgram  # stage 1: max outcome value s.t. every hard rule, as one matrix
    columns: Columns  # which column is which variable (x, y, s, t, robust)
    row_refs: list[RowRef]  # which constraint each row came from
    rule_groups: list[RuleGroup]  # each rule group with its measure, in the rules table's order
    binaries: list[tuple[str, str]]  # (program, period) of each on/off column y, in order
    robust_programs: list[str]  # program of each protection dual mu, in order
    trivial: list[tuple[RuleGroup, bool]]  # rule rows without a variable, and whether they hold
    plan: SolvePlan  # how every stage is solved, chosen once from the matrix's size
    blocked: list[str] = field(default_factory=list)  # program-periods no fund may pay
    seconds: dict[str, float] = field(default_factory=dict)  # build, handover

    @property
    def mip(self) -> bool:
        """Whether stage 1 has on/off decisions (all-or-nothing programs)."""
        return bool(self.program.integer.any())

    def rows_where(self, keep) -> np.ndarray:
        """Indices of the rows whose reference satisfies `keep`."""
        return np.array([i for i, r in enumerate(self.row_refs) if keep(r)], dtype=np.int64)

    # Read by rounding and again by its report of broken rows: found once per model (a pass
    # over every row reference each, 435,754 of them at 50,000 programs).
    @cached_property
    def rule_rows(self) -> np.ndarray:
        """Rows of every rule (hard or soft)."""
        return self.rows_where(lambda r: r.is_rule)

    @cached_property
    def hard_rule_rows(self) -> np.ndarray:
        """Rows of the rules without a penalty: rounding must keep them like any hard limit."""
        hard = {(g.family, (g.label,)) for g in self.rule_groups if g.rule.penalty is None}
        return self.rows_where(lambda r: (r.component, r.index) in hard)

    @cached_property
    def protection_rows(self) -> np.ndarray:
        """Rows of the robust objective's protection (no rule: rounding does not keep them)."""
        return self.rows_where(lambda r: r.component == "protection_program_min")


def build_model(rnd: Round, method: str = "choose") -> BuiltModel:
    """Index, Pyomo model, matrix and plan of `rnd` (`method`: "choose" by size, or a HiGHS
    solver for every stage); timed as `build` and `handover`."""
    tick = time.perf_counter()
    phase("building the model")
    index = allocation_index(rnd)
    form = create_model(rnd, index)
    built = time.perf_counter() - tick
    blocked = cap_block_lines(cap_blocks(rnd, index))  # never fundable: said, not an error
    tick = time.perf_counter()
    phase("handing the model to the solver (HiGHS)")
    program, cols, refs = compile_model(form)
    return BuiltModel(rnd, index, program, cols, refs, form.rule_groups, form.binaries,
                      form.robust_programs, form.trivial, round_plan(rnd, program, method),
                      blocked, {"build": built, "handover": time.perf_counter() - tick})


def round_plan(rnd: Round, program: MatrixProgram, method: str = "choose") -> SolvePlan:
    """The solve plan of a round whose matrix is `program` (the one call of choose_plan)."""
    return choose_plan(program.shape[1], int(program.integer.sum()),
                       time_limit_s=rnd.settings.time_limit_s,
                       equity=rnd.settings.equity_objective != EquityObjective.none,
                       method=method)


def raise_for_trivial_rows(trivial: list[tuple[RuleGroup, bool]]) -> None:
    """InfeasibleRoundError for a hard rule that no eligible allocation can reach."""
    broken = [g for g, holds in trivial if not holds]
    if broken:
        lines = [f"rule {g.rule.rule_id}" + (f" (group {g.group})" if g.group else "")
                 + f": no eligible allocation matches its selection, so it cannot reach "
                 f"{g.rule.op.value} {g.rule.value:g}" for g in broken]
        raise InfeasibleRoundError("infeasible: " + "; ".join(lines))


def compile_model(form: Formulation) -> tuple[MatrixProgram, Columns, list[RowRef]]:
    """Compile the Pyomo model into a standard-form matrix (one row per constraint side)."""
    # As for the build: a row reference per row, none of them garbage, and the collector's
    # passes over them were a third of the hand-over (5,000 programs: 1.2 of 3.3 s).
    with PauseGC():
        return _compile(form)


def _compile(form: Formulation) -> tuple[MatrixProgram, Columns, list[RowRef]]:
    m = form.model
    repn = LinearStandardFormCompiler().write(m, mixed_form=True, set_sense=None)
    n_cols = len(repn.columns)
    col_of = {id(v): j for j, v in enumerate(repn.columns)}
    x_cols = np.array([col_of.get(id(m.x[k]), -1) for k in range(len(form.index))], dtype=np.int64)
    y_cols = np.array([col_of.get(id(m.y[j]), -1) for j in range(len(m.y))], dtype=np.int64)
    s_cols = np.array([col_of.get(id(m.s[j]), -1) for j in range(len(m.s))], dtype=np.int64)
    t_cols = np.array([col_of.get(id(m.t[j]), -1) for j in range(len(m.t))], dtype=np.int64)
    robust_vars = ([m.robust_lambda[0], *(m.robust_mu[j] for j in range(len(m.robust_mu)))]
                   if form.robust_programs else [])
    r_cols = np.array([col_of.get(id(v), -1) for v in robust_vars], dtype=np.int64)
    A = repn.A.tocsr()
    rhs = np.asarray(repn.rhs, dtype=float)
    kinds = np.array([r.bound_type for r in repn.rows], dtype=np.int8)
    row_lower = np.where(kinds <= 0, rhs, -INF)
    row_upper = np.where(kinds >= 0, rhs, INF)
    refs = []
    for r in repn.rows:
        con = r.constraint
        comp = con.parent_component().local_name
        idx = con.index()
        idx = idx if isinstance(idx, tuple) else (idx,)
        refs.append(RowRef(comp, idx, _mps_name(f"{comp}[{','.join(map(str, idx))}]")))
    c = np.asarray(repn.c.toarray()).ravel() if repn.c.shape[0] else np.zeros(n_cols)
    # Every column is an x, y or s of ours: bounds and names follow from which one it is,
    # which is much cheaper than asking Pyomo for each variable's name.
    col_lower = np.zeros(n_cols)
    col_upper = np.full(n_cols, INF)
    integer = np.zeros(n_cols, dtype=bool)
    col_upper[y_cols[y_cols >= 0]] = 1.0
    integer[y_cols[y_cols >= 0]] = True
    col_names = [""] * n_cols
    for prefix, cols_ in (("x", x_cols), ("y", y_cols), ("s", s_cols), ("t", t_cols)):
        for k, j in enumerate(cols_.tolist()):
            if j >= 0:
                col_names[j] = f"{prefix}{k}"
    for k, j in enumerate(r_cols.tolist()):
        if j >= 0:
            col_names[j] = "lambda" if k == 0 else f"mu{k - 1}"
    program = MatrixProgram(c=c, A=A, row_lower=row_lower, row_upper=row_upper,
                            col_lower=col_lower, col_upper=col_upper, integer=integer,
                            row_names=[r.name for r in refs], col_names=col_names, maximize=True)
    return program, Columns(x_cols, y_cols, s_cols, t_cols, r_cols), refs


_NOT_IN_NAMES = re.compile(r"[\s\x00-\x1f\x7f]")


def _mps_name(name: str) -> str:
    """MPS names cannot hold spaces or control characters; keep everything else readable."""
    return _NOT_IN_NAMES.sub("_", name)
