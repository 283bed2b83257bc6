"""Downloading the paper's datasets and teacher weights (``rdbench fetch``): ``sources`` (the table of URLs,
sizes, published digests, archive types and where each lands), ``download`` (streamed, resumed with HTTP Range,
digest-checked), ``extract`` (archives unpacked with no member escaping, renamed into place when whole) and
``install`` (one source end to end, then its layout check). Standard library and tqdm only."""

from rdbench.data.fetch.download import FetchError, check_digest, fetch_file, file_digest, format_bytes
from rdbench.data.fetch.extract import extract_into, extract_tar, extract_zip
from rdbench.data.fetch.install import check_installed, downloads_folder, fetch_source, with_overrides
from rdbench.data.fetch.sources import (
    DATASETS,
    MVTEC_LICENCE,
    NAMES,
    WEIGHTS,
    Remote,
    Source,
    all_sources,
    area_folder,
    hub_checkpoints,
    target_path,
)

__all__ = [
    "DATASETS",
    "MVTEC_LICENCE",
    "NAMES",
    "WEIGHTS",
    "FetchError",
    "Remote",
    "Source",
    "all_sources",
    "area_folder",
    "check_digest",
    "check_installed",
    "downloads_folder",
    "extract_into",
    "extract_tar",
    "extract_zip",
    "fetch_file",
    "fetch_source",
    "file_digest",
    "format_bytes",
    "hub_checkpoints",
    "target_path",
    "with_overrides",
]
