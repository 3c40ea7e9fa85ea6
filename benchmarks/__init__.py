"""Scale benchmark for allocator: synthetic rounds at several sizes, timed phase by phase.

Run `python -m benchmarks.run --sizes 100,1000,10000` (see benchmarks/README.md).
"""
