"""Many runs: paper tables (grids, cells), reproduce, executors (local, Ray), baselines. May import the engine,
records, models, data and metrics; never perf, report, cli or the protocol modules."""
