"""Benchmark programs for mrl-keras (not installed; run from the repository root).

`python -m benchmarks.retrieval`, `python -m benchmarks.training_overhead` and
`python -m benchmarks.serving`; see `benchmarks/README.md`.
"""
