"""Benchmarks: kernels, models and services. Each writes its measured table into RESULTS.md."""
