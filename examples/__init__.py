"""Runnable examples; importable so tests and benchmarks share their models."""
