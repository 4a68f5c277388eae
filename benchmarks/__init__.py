"""Performance benchmarks: each compares the project's path with a naive baseline in one process.

Run with ``python -m benchmarks.run`` (``make bench``); see ``benchmarks/README.md``.
"""
