"""seqarena evaluation: throughput, quality, op benchmarks and the comparison table (`python -m eval`)."""
