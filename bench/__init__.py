"""The benchmark suite: throughput, latency and footprint of the real stack, against baselines.

Run it with ``make bench`` or ``python -m bench --help``. It is not part of ``make test``: it
measures, it does not assert. See docs/benchmarks.md for the scenarios and the latest numbers.
"""
