"""Benchmarks, one module per op family / topic; each exposes ``run(quick=False) -> list[dict]``
and runs alone as ``python -m eval.bench.<name>``. ``python -m eval ops`` runs them all."""
