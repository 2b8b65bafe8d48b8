"""Benchmarks that print their figures (run each file as a script; see docs/performance.md)."""
