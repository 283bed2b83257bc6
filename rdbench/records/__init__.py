"""Run and profile records: the typed schema, the atomic store, provenance. May import config only; never the
engine, models or anything above."""

from rdbench.records.schema import SCHEMA_VERSION, RecordError, RunRecord
from rdbench.records.store import read_record, read_records, record_path, store_record, write_json, write_record

__all__ = ["SCHEMA_VERSION", "RecordError", "RunRecord", "read_record", "read_records", "record_path",
           "store_record", "write_json", "write_record"]
