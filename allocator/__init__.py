"""allocator: funding allocation and grant optimization engine.

Pipeline, one module per stage: workbook -> validate (Round) -> eligibility/formulation
(Pyomo) -> solve (HiGHS) -> rounding -> report / record.
"""

__version__ = "0.1.0"
