"""Benchmarks of kdnb, run from a source checkout: the speed bench (``kdnb bench``), the fused multi-seed
prototype, the conventional reference loop, method costs and the bf16 parity check."""
