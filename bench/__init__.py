"""Benchmarks of paddle_palm's CPU execution paths (``python bench/run.py``; results in docs/BENCHMARKS.md)."""
