"""Benchmark harness for Stox Gateway (not part of the package; see bench/README.md)."""
