"""In-process benchmarks: they import the server (docs/performance.md says how to run each)."""
