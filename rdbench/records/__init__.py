"""Run and profile records: the typed schema, the atomic store, provenance. May import config only; never the
engine, models or anything above."""
