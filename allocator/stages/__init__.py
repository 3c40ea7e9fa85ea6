"""The solve, stage by stage: one module per stage, each a function from the built model and
the previous stage's result to its own result. `allocator.engine.solve_round` calls them in
this order:

    model.py     build_model     index, Pyomo model, matrix, rule groups and plan, made once
    outcome.py   solve_outcome   the best outcome value (a MILP, or its relaxation at scale)
    prices.py    solve_prices    the LP with the on/off decisions fixed, for its duals
    equity.py    solve_equity    lexicographic max-min fairness, when the round asks for it
    tiebreak.py  make_unique     one optimum among many: the tie-break LP or the centre
    rounding.py  round_to_units  whole rounding units, every hard row kept where possible
    nominal.py   solve_nominal   the nominal optimum of a robust round (price of robustness)

Every stage is a `solve.MatrixProgram` built from the previous one with named fields
(`dataclasses.replace`), solved by `solve.solve_program` with the options the round's
`plan.SolvePlan` gives it.
"""
