"""``rdbench fetch``: the paper's datasets and teacher weights from their publishers, each file checked against
its published digest, unpacked safely into the layout ``rdbench run`` / ``reproduce`` read, and checked there."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from rdbench.cli.common import Progress, choice, fail
from rdbench.data.fetch import (
    DATASETS,
    NAMES,
    WEIGHTS,
    FetchError,
    Source,
    area_folder,
    downloads_folder,
    fetch_source,
    format_bytes,
    target_path,
    with_overrides,
)
from rdbench.data.mvtec import DatasetError
from rdbench.registry import unknown_choice

Opt = typer.Option
FETCH_NAMES = (*NAMES, "all")
NOVELTY = tuple(n for n, s in DATASETS.items() if s.area == "novelty")
MVTEC_TABLES = "1,2,3,5,6,7"  # every table but Table 4 (novelty) trains on MVTec AD


def _backbones() -> list[str]:
    from rdbench.models.backbones import BACKBONES

    return [*BACKBONES.names(), "all"]


def select(names: list[str], backbone: str) -> list[Source]:
    for name in names:
        if name not in FETCH_NAMES:
            fail(unknown_choice("fetch source", name, FETCH_NAMES))
    chosen = list(NAMES) if "all" in names else list(dict.fromkeys(names))
    sources = []
    for name in chosen:
        if name != "weights":
            sources.append(DATASETS[name])
            continue
        for b in (_backbones()[:-1] if backbone == "all" else [backbone]):
            if b not in WEIGHTS:
                fail(f"no weights entry for backbone {b} in rdbench/data/fetch/sources.py WEIGHTS")
            sources.append(WEIGHTS[b])
    return sources


def _label(source: Source) -> str:
    return f"weights --backbone {source.name.split(':', 1)[1]}" if source.area == "hub" else source.name


def describe(source: Source, root: Path) -> list[str]:
    """The --list entry: where it lands, its licence, and each file's URL, size and digest with its origin."""
    lines = [f"{_label(source)}: {source.title} -> {target_path(source, root)}",
             f"  licence   {source.licence}" + ("; fetching it needs --accept-licence" if source.needs_acceptance
                                                 else "")]  # fmt: skip
    for r in source.files:
        size = ("about " if r.approximate else "") + format_bytes(r.size) if r.size else "size from the server"
        lines += [f"  file      {r.filename} ({r.archive}, {size})", f"  url       {r.url}",
                  f"  {r.algorithm:<9} {r.digest}  (published in {r.origin})"]  # fmt: skip
    if source.area != "hub":
        lines.append(f"  download  {downloads_folder(source, root)}/ (a file placed there by hand is checked and used)")
    return lines


def reproduce_hint(root: Path) -> list[str]:
    """The `rdbench reproduce` line that uses what is now under ``root`` (and what it still lacks)."""
    mvtec = target_path(DATASETS["mvtec"], root)
    have_mvtec = mvtec.is_dir()
    novelty = [n for n in NOVELTY if target_path(DATASETS[n], root).exists()]
    if not have_mvtec and not novelty:
        return []
    if have_mvtec and not novelty:
        table = MVTEC_TABLES
    elif not have_mvtec and len(novelty) == len(NOVELTY):
        table = "4"
    else:
        table = "all"
    line = f"rdbench reproduce --table {table}"
    line += f" --data-root {mvtec}" if have_mvtec else ""
    line += f" --novelty-root {area_folder('novelty', root)}" if novelty else ""
    out = ["next:", f"  {line}"]
    if table == "all" and not (have_mvtec and len(novelty) == len(NOVELTY)):
        out.append("  (--table all runs what the data present allows and lists what it skips)")
    missing = [b for b, s in WEIGHTS.items() if not target_path(s, root).is_file()]
    if missing:
        out.append(f"  teacher weights not yet in {area_folder('hub', root)}: {', '.join(missing)} "
                   "(rdbench fetch weights)")  # fmt: skip
    return out


def fetch(
    names: Annotated[list[str], typer.Argument(help="what to fetch: " + " | ".join(FETCH_NAMES),
                                               metavar="NAME...", show_default=False)] = None,
    root: Annotated[Path, Opt(help="where the datasets go: <root>/mvtec (reproduce's --data-root), <root>/novelty "
                                   "(--novelty-root), downloads in <root>/downloads; the weights always go to the "
                                   "torch hub cache ($TORCH_HOME/hub/checkpoints)")] = Path("data"),
    backbone: Annotated[str, choice("backbone", _backbones, "weights: the teacher whose ImageNet weights to fetch, "
                                    "or all")] = "all",
    list_sources: Annotated[bool, Opt("--list", help="print each source (URL, size, digest, licence, where it "
                                                     "lands) and fetch nothing")] = False,
    url: Annotated[str, Opt(help="fetch the one named source from this URL instead (a mirror; a source of several "
                                 "files: the folder URL their names are appended to)", show_default=False)] = None,
    sha256: Annotated[list[str], Opt(help="check the file against this sha256 instead of the table's digest (once "
                                          "per file of the source, in --list's order)", show_default=False)] = None,
    accept_licence: Annotated[bool, Opt("--accept-licence", help="accept MVTec AD's licence, CC BY-NC-SA 4.0 "
                                                                 "(non-commercial use only)")] = False,
    progress: Progress = True,
) -> None:
    """Download the paper's datasets and teacher weights, check each file's published digest, unpack, check."""
    names = names or []
    if not names and not list_sources:
        fail(f"name what to fetch: {', '.join(FETCH_NAMES)} (or --list)")
    sources = select(names or ["all"], backbone)
    root = Path(root).expanduser().absolute()
    if list_sources:
        for source in sources:
            typer.echo("\n".join(describe(source, root)))
        return
    if url or sha256:
        if len(sources) != 1:
            fail(f"--url / --sha256 point one source; {len(sources)} are named ({', '.join(map(_label, sources))})")
        try:
            sources = [with_overrides(sources[0], url, sha256 or ())]
        except FetchError as exc:
            fail(str(exc))
    for source in sources:
        if source.needs_acceptance:
            typer.echo(f"{source.title} is licensed {source.licence}.")
            if not accept_licence:
                fail(f"fetching {source.title} needs --accept-licence: its licence allows non-commercial use only")
    failed = []
    for source in sources:
        try:
            fetch_source(source, root, progress=progress, say=typer.echo)
        except (FetchError, DatasetError, OSError) as exc:
            typer.secho(f"error: {_label(source)}: {exc}", fg=typer.colors.RED, err=True)
            failed.append(_label(source))
    hint = reproduce_hint(root)
    if hint:
        typer.echo("\n".join(hint))
    if failed:
        fail(f"not fetched: {', '.join(failed)} (messages above)", code=1)
