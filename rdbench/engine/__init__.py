"""The engine of one run: train, feature cache, losses, scoring, evaluate, inference copy, run_one, and the
Protocol interface with its registry. May import config, registry, records, models, data and metrics; never
bench, perf, report, cli or the protocol modules (they register themselves from above)."""
