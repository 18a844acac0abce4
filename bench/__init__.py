"""Benchmarks: run against PostgreSQL, outside the test suite (tests never time anything)."""
