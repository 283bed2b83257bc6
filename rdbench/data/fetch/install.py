"""One source fetched end to end: ``--url`` / ``--sha256`` applied, its files downloaded (or found), unpacked into
place, and the layout check the protocols run before training run on the result."""

from __future__ import annotations

import re
import shutil
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path

from rdbench.data.fetch.download import FetchError, fetch_file
from rdbench.data.fetch.extract import extract_into, gunzip, install, staging
from rdbench.data.fetch.sources import Source, archive_of, area_folder, target_path
from rdbench.data.mvtec import MVTEC_CATEGORIES, DatasetError, check_category

_SHA256 = re.compile(r"^[0-9a-fA-F]{64}$")


def downloads_folder(source: Source, root: Path) -> Path:
    """Where archives are downloaded (and where one placed by hand is picked up): <root>/downloads/<name> (MNIST
    and FashionMNIST share file names); the weights go straight to the hub cache, as torch.hub does."""
    return area_folder("hub", root) if source.area == "hub" else Path(root) / "downloads" / source.name


def with_overrides(source: Source, url: str | None = None, sha256: Sequence[str] = ()) -> Source:
    """``source`` served from ``url`` (one file: its URL; several: a folder URL their names are appended to, as
    torchvision's mirrors) and/or checked against ``sha256`` (one digest per file, in the table's order)."""
    files = source.files
    if url:
        many = len(files) > 1
        base = url if url.endswith("/") else url + "/"
        files = tuple(replace(f, url=base + f.filename if many else url, size=0, unpacked=0,
                              archive=archive_of(url, f.archive) if not many else f.archive,
                              name=f.filename if f.archive in ("file", "gz") else "")
                      for f in files)  # fmt: skip
    if sha256:
        if len(sha256) != len(files):
            names = ", ".join(f.filename for f in files)
            raise FetchError(f"{source.name} has {len(files)} file(s) ({names}): give --sha256 once per file, in "
                             f"that order (got {len(sha256)})")  # fmt: skip
        bad = [h for h in sha256 if not _SHA256.match(h)]
        if bad:
            raise FetchError(f"--sha256 takes 64 hex characters, got {bad[0]!r}")
        files = tuple(replace(f, digest=h.lower(), algorithm="sha256", origin="--sha256")
                      for f, h in zip(files, sha256))  # fmt: skip
    return source.with_files(files)


def check_installed(source: Source, root: Path) -> str:
    """The layout check of the fetched data (what ``rdbench run`` / ``reproduce`` check before training); raises
    DatasetError naming the problem; returns a one-line summary."""
    target = target_path(source, root)
    if source.area == "hub":
        if not target.is_file():
            raise DatasetError(f"weights file missing: {target}")
        return f"{target}"
    if source.area == "mvtec":
        if not target.is_dir():
            raise DatasetError(f"MVTec AD folder missing: {target}")
        found = sorted(p.name for p in target.iterdir() if (p / "train").is_dir())
        if not found:
            raise DatasetError(f"no category folder <category>/train/ in {target}: not the MVTec AD layout")
        for category in found:
            check_category(target, category)
        missing = [c for c in MVTEC_CATEGORIES if c not in found]
        note = f"; missing official categories: {', '.join(missing)}" if missing else ""
        return f"{len(found)} categories checked in {target}{note}"
    from rdbench.data.novelty import SplitSource, get_source

    novelty = get_source(source.name)
    folder = area_folder(source.area, root)
    novelty.check(folder)
    if isinstance(novelty, SplitSource):  # parses both label files; CIFAR-10: torchvision's md5 of every batch
        for train in (False, True):
            novelty.read_split(folder, train)
    return f"{novelty.title} checked in {folder}"


def fetch_source(source: Source, root: Path, progress: bool = True, say: Callable[[str], None] = print) -> Path:
    """Fetch ``source`` into ``root`` (the weights: into the hub cache) and check it; returns its target.
    A target already there is checked, not fetched again; one that fails its check is left alone (FetchError)."""
    root = Path(root).expanduser()
    target = target_path(source, root)
    if source.area != "hub" and target.exists():
        try:
            summary = check_installed(source, root)
        except DatasetError as exc:
            raise FetchError(f"{target} exists but does not pass the layout check:\n{exc}\nrdbench fetch never "
                             f"overwrites a folder: move it away and fetch {source.name} again.") from None
        say(f"{source.title}: already there, {summary}")
        return target
    downloads = downloads_folder(source, root)
    files = [fetch_file(remote, downloads, progress) for remote in source.files]
    if source.area == "hub":
        pass  # downloaded under its own name in the hub cache: nothing to unpack
    elif all(r.archive == "gz" for r in source.files):
        _install_gzipped(files, target, source.yields)
    else:
        (archive,), (remote,) = files, source.files
        extract_into(archive, remote.archive, target, source.yields)
        archive.unlink()  # the extracted copy is what is kept; the archive would double the space
    try:
        summary = check_installed(source, root)
    except DatasetError as exc:
        raise FetchError(f"{source.title} was fetched into {target} but fails the layout check:\n{exc}") from None
    say(f"{source.title}: {summary}")
    return target


def _install_gzipped(files: list[Path], target: Path, sub: str) -> None:
    """torchvision's layout for MNIST / FashionMNIST: <target>/raw/ with each .gz and its decompressed file."""
    tmp = staging(target)
    try:
        raw = tmp / sub
        raw.mkdir(parents=True, exist_ok=True)
        for gz in files:
            gunzip(gz, raw / gz.stem)
        for gz in files:
            gz.replace(raw / gz.name)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    install(tmp, tmp, target)
