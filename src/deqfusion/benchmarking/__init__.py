"""Timing and memory measurements of fusion modules (used by ``benchmarks/`` and ``deqfusion bench``)."""
