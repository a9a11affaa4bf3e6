"""Benchmarks run by ``make bench``. No module here is named ``test_*``: pytest collects
nothing from this package; each benchmark is run as ``python -m tests.bench.NAME``."""
