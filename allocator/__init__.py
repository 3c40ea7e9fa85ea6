"""allocator: funding allocation and grant optimization engine.

Pipeline, one module per stage: workbook -> validate (Round) -> eligibility/formulation
(Pyomo) -> solve (HiGHS) -> rounding -> report / record.
"""

__version__ = "0.3.1"


def _skip_pyomo_scipy_finaliser() -> None:
    """Stop Pyomo from importing scipy.stats, .integrate and .spatial along with scipy.

    Pyomo registers a callback that runs the moment anything imports scipy and loads those three
    subpackages (measured: 1.1-1.3 s of a 2.4 s `import allocator.api`); allocator uses only
    scipy.sparse and scipy.optimize. The callback sits on Pyomo's deferred-import indicator and
    must be cleared before scipy is first imported, so it is done here, when the package loads
    (`pyomo.common.dependencies` alone costs about 0.04 s).
    """
    import sys

    if "scipy" in sys.modules:  # too late: the callback has already run
        return
    try:
        from pyomo.common import dependencies
    except ImportError:  # pragma: no cover - pyomo is a hard dependency
        return
    indicator = getattr(dependencies.scipy, "_indicator_flag", None)
    if indicator is not None and hasattr(indicator, "_callback"):
        indicator._callback = None


_skip_pyomo_scipy_finaliser()
