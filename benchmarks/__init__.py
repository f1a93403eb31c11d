"""The project's benchmarks, run from the repository root as modules: ``python -m benchmarks.bench_train``.

Each prints its figures as ratios measured in one run and rewrites its own section of
``BENCHMARKS.md`` (:mod:`benchmarks.report`).
"""
