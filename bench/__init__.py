"""Benchmarks that write their figures to bench/results/; never timed assertions in tests."""
