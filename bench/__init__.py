"""Benchmarks of an Open Messenger node: ``make bench`` (see README)."""
