"""Benchmark programs: each prints its figures and writes its section of docs/BENCHMARKS.md."""
