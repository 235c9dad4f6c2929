"""Benchmarks of webhook_kit against bare Flask, twilio-python's documented recipe, and that
recipe with a hand-written SQLite dedupe table.

``python -m bench`` (or ``python bench/run.py``) from the repository root measures, on
loopback: throughput and latency under wrk, micro benchmarks of the request path's steps,
and the worker's memory across many status callbacks. ``--quick`` takes under a minute.
``python -m bench.profiling`` shows where webhook_kit's time per request goes.
"""
