"""The Sleep Benchmark: `sleeptrain eval` (people, tests, scoring, ablations) and `sleeptrain report` (HTML)."""
