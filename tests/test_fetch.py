"""``rdbench fetch`` without internet: a loopback HTTP server (127.0.0.1 only, Range requests, a mode that drops
the connection mid-file) serves small archives built here; ``--url`` / ``--sha256`` point the sources at it."""

from __future__ import annotations

import gzip
import hashlib
import inspect
import io
import re
import shutil
import socket
import struct
import tarfile
import threading
import zipfile
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest
import torch
from torchvision import datasets as tvd
from typer.testing import CliRunner

from rdbench.cli.app import app
from rdbench.data.fetch import (
    DATASETS,
    WEIGHTS,
    FetchError,
    Remote,
    all_sources,
    extract,
    fetch_file,
    target_path,
)

runner = CliRunner()


# ----------------------------------------------------------------------------------------------- the server


class _Handler(BaseHTTPRequestHandler):
    def log_message(self, *args) -> None:  # keep pytest's output clean
        pass

    def do_GET(self) -> None:
        srv = self.server
        srv.log.append((self.path, self.headers.get("Range")))
        body = srv.files.get(self.path)
        if body is None:
            self.send_error(404)
            return
        start, rng = 0, self.headers.get("Range")
        if rng and srv.ranges:
            start = int(re.fullmatch(r"bytes=(\d+)-", rng).group(1))
            if start >= len(body):
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(body)}")
                self.end_headers()
                return
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
        else:
            self.send_response(200)
        self.send_header("Content-Length", str(len(body) - start))
        self.end_headers()
        drops = srv.drops.get(self.path, [])
        if drops:  # announce the whole rest, send up to the next drop offset (maybe nothing), hang up
            self.wfile.write(body[start:max(drops.pop(0), start)])
            self.wfile.flush()
            self.close_connection = True
            return
        self.wfile.write(body[start:])


class Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self):
        super().__init__(("127.0.0.1", 0), _Handler)
        self.files: dict[str, bytes] = {}
        self.drops: dict[str, list[int]] = {}  # path -> byte offsets at which successive responses hang up
        self.log: list[tuple[str, str | None]] = []
        self.ranges = True  # False: a server that ignores Range (answers 200 with the whole file)

    def serve(self, path: str, body: bytes) -> str:
        self.files[path] = body
        return f"http://127.0.0.1:{self.server_address[1]}{path}"


@pytest.fixture
def server():
    srv = Server()
    thread = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield srv
    srv.shutdown()
    srv.server_close()


@pytest.fixture
def torch_home(tmp_path, monkeypatch) -> Path:
    home = tmp_path / "torch_home"
    monkeypatch.setenv("TORCH_HOME", str(home))
    assert Path(torch.hub.get_dir()) == home / "hub"
    return home


@pytest.fixture
def tiny_mvtec(tiny_mvtec, tmp_path) -> Path:
    """conftest's tree, moved out of tmp_path/mvtec: the tests fetch into tmp_path, whose mvtec/ is the target."""
    src = tmp_path / "src" / "mvtec"
    src.parent.mkdir()
    return Path(shutil.move(tiny_mvtec, src))


def _fetch(*args):
    return runner.invoke(app, ["fetch", *[str(a) for a in args], "--no-progress"])


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# ----------------------------------------------------------------------------------------------- archives


def tar_of(folder: Path, mode: str = "w:xz", extra=()) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode=mode) as tar:
        for p in sorted(folder.rglob("*")):
            tar.add(p, arcname=str(p.relative_to(folder)), recursive=False)
        for info, data in extra:
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    return buf.getvalue()


def zip_of(folder: Path, top: str = "") -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for p in sorted(folder.rglob("*")):
            if p.is_file():
                zf.write(p, f"{top}{p.relative_to(folder)}")
    return buf.getvalue()


def member(name: str, data: bytes | None = b"x", kind=tarfile.REGTYPE, linkname: str = "") -> tuple:
    info = tarfile.TarInfo(name)
    info.type, info.linkname = kind, linkname
    info.size = len(data) if data is not None and kind == tarfile.REGTYPE else 0
    return info, data if kind == tarfile.REGTYPE else None


def leftovers(root: Path) -> list[str]:
    """Temporary folders or partial files a fetch must not leave behind."""
    return [str(p) for p in root.rglob("*") if p.name.endswith((".tmp", ".part"))]


# ----------------------------------------------------------------------------------------------- the table


def test_list_shows_every_source_with_a_digest(tmp_path):
    res = _fetch("--list", "--root", tmp_path)
    assert res.exit_code == 0, res.output
    lengths = {"sha256": 64, "md5": 32}
    for source in all_sources():
        assert str(target_path(source, tmp_path)) in res.output, source.name
        assert source.licence in res.output
        for r in source.files:
            assert r.url in res.output and r.digest in res.output and r.origin
            assert re.fullmatch(r"[0-9a-f]+", r.digest) and len(r.digest) == lengths.get(r.algorithm, len(r.digest))
            assert r.algorithm != "sha256-prefix" or len(r.digest) >= 8
            assert re.search(rf"{re.escape(r.algorithm)}\s+{r.digest}", res.output), r.url
    assert "CC BY-NC-SA 4.0" in res.output and "--accept-licence" in res.output


def test_the_table_matches_torchvision_and_the_backbones(torch_home):
    """The digests are the ones torchvision checks itself; the weights are the files --weights imagenet reads."""
    from rdbench.models.backbones import BACKBONES, expected_sha256_prefix, imagenet_cache_path

    for name, cls in (("mnist", tvd.MNIST), ("fashionmnist", tvd.FashionMNIST)):
        files = DATASETS[name].files
        assert [(r.filename, r.digest) for r in files] == [tuple(x) for x in cls.resources]
        assert all(r.url == cls.mirrors[0] + r.filename for r in files)
    (cifar,) = DATASETS["cifar10"].files
    assert (cifar.url, cifar.digest) == (tvd.CIFAR10.url, tvd.CIFAR10.tgz_md5)
    (caltech,) = DATASETS["caltech256"].files
    code = inspect.getsource(tvd.Caltech256.download)
    assert caltech.digest in code and caltech.url in code
    assert set(WEIGHTS) == set(BACKBONES.names())
    for name, spec in BACKBONES.items():
        (r,) = WEIGHTS[name].files
        assert r.url == spec.imagenet_weights().url and r.digest == expected_sha256_prefix(r.url)
        assert target_path(WEIGHTS[name], Path("unused")) == imagenet_cache_path(spec)


# ----------------------------------------------------------------------------------------------- MVTec AD


def test_mvtec_tar_xz_fetched_checked_and_the_reproduce_line_printed(server, tiny_mvtec, tmp_path):
    data = tar_of(tiny_mvtec)
    url = server.serve("/mvtec_small.tar.xz", data)
    root = tmp_path / "data"
    res = _fetch("mvtec", "--root", root, "--url", url, "--sha256", sha256(data), "--accept-licence")
    assert res.exit_code == 0, res.output
    assert "CC BY-NC-SA 4.0" in res.output and "2 categories checked" in res.output
    assert (root / "mvtec" / "carpet" / "ground_truth" / "hole" / "000_mask.png").is_file()
    assert f"rdbench reproduce --table 1,2,3,5,6,7 --data-root {root / 'mvtec'}" in res.output
    assert not leftovers(root) and not list((root / "downloads" / "mvtec").iterdir())  # the archive is gone
    again = _fetch("mvtec", "--root", root, "--url", url, "--sha256", sha256(data), "--accept-licence")
    assert again.exit_code == 0 and "already there" in again.output and len(server.log) == 1  # not fetched twice


def test_mvtec_needs_the_licence_accepted(server, tiny_mvtec, tmp_path):
    url = server.serve("/m.tar.xz", tar_of(tiny_mvtec))
    res = _fetch("mvtec", "--root", tmp_path, "--url", url)
    assert res.exit_code == 2 and "CC BY-NC-SA 4.0" in res.output and "--accept-licence" in res.output
    assert server.log == [] and not (tmp_path / "mvtec").exists()
    res = _fetch("all", "--root", tmp_path)  # all includes MVTec AD: refused before anything is downloaded
    assert res.exit_code == 2 and "--accept-licence" in res.output and not (tmp_path / "downloads").exists()


def test_a_zip_with_one_top_folder(server, tiny_mvtec, tmp_path):
    data = zip_of(tiny_mvtec, top="mvtec_anomaly_detection/")
    url = server.serve("/some/other-name.zip", data)
    res = _fetch("mvtec", "--root", tmp_path, "--url", url, "--sha256", sha256(data), "--accept-licence")
    assert res.exit_code == 0, res.output
    assert (tmp_path / "mvtec" / "bottle" / "train" / "good" / "000.png").is_file()


def test_a_dropped_connection_continues_with_range(server, tiny_mvtec, tmp_path):
    data = tar_of(tiny_mvtec, mode="w:gz")
    n = len(data)
    url = server.serve("/drop.tar.gz", data)
    server.drops["/drop.tar.gz"] = [n // 3, 2 * n // 3]
    res = _fetch("mvtec", "--root", tmp_path, "--url", url, "--sha256", sha256(data), "--accept-licence")
    assert res.exit_code == 0, res.output
    assert server.log == [("/drop.tar.gz", None), ("/drop.tar.gz", f"bytes={n // 3}-"),
                          ("/drop.tar.gz", f"bytes={2 * n // 3}-")]  # fmt: skip
    assert (tmp_path / "mvtec" / "carpet" / "train" / "good").is_dir() and not leftovers(tmp_path)


@pytest.mark.parametrize("ranges", [True, False], ids=["range", "server-ignores-range"])
def test_a_partial_file_of_an_earlier_run_is_continued(server, tiny_mvtec, tmp_path, ranges):
    data = tar_of(tiny_mvtec)
    url = server.serve("/m.tar.xz", data)
    server.ranges = ranges
    downloads = tmp_path / "downloads" / "mvtec"
    downloads.mkdir(parents=True)
    (downloads / "m.tar.xz.part").write_bytes(data[:1000])
    res = _fetch("mvtec", "--root", tmp_path, "--url", url, "--sha256", sha256(data), "--accept-licence")
    assert res.exit_code == 0, res.output
    assert server.log == [("/m.tar.xz", "bytes=1000-")]  # asked for the rest; a 200 answer is taken whole
    assert (tmp_path / "mvtec" / "bottle").is_dir() and not leftovers(tmp_path)


def test_a_connection_that_keeps_dropping_keeps_the_partial_file(server, tiny_mvtec, tmp_path):
    data = tar_of(tiny_mvtec)
    url = server.serve("/m.tar.xz", data)
    server.drops["/m.tar.xz"] = [100, 100, 100, 100, 100]  # after 100 bytes, no progress at all
    res = _fetch("mvtec", "--root", tmp_path, "--url", url, "--sha256", sha256(data), "--accept-licence")
    assert res.exit_code == 1 and "keeps dropping" in res.output and "Traceback" not in res.output
    assert (tmp_path / "downloads" / "mvtec" / "m.tar.xz.part").stat().st_size == 100
    assert not (tmp_path / "mvtec").exists()


def test_a_wrong_digest_deletes_the_partial_file_and_names_both(server, tiny_mvtec, tmp_path):
    data = tar_of(tiny_mvtec)
    url = server.serve("/m.tar.xz", data)
    wrong = "0" * 64
    res = _fetch("mvtec", "--root", tmp_path, "--url", url, "--sha256", wrong, "--accept-licence")
    assert res.exit_code == 1, res.output
    assert f"expected {wrong}, got {sha256(data)}" in res.output and "Traceback" not in res.output
    assert not list((tmp_path / "downloads" / "mvtec").iterdir()) and not (tmp_path / "mvtec").exists()


HOSTILE = {
    "dotdot": member("../evil.txt"),
    "absolute-symlink": member("carpet/passwd", kind=tarfile.SYMTYPE, linkname="/etc/passwd"),
    "absolute-path": member("/tmp/rdbench-evil.txt"),
    "symlink-out": member("carpet/up", kind=tarfile.SYMTYPE, linkname="../../outside"),
    "hardlink-out": member("carpet/hard", kind=tarfile.LNKTYPE, linkname="../outside"),
    "device": member("carpet/dev", kind=tarfile.CHRTYPE),
}


@pytest.mark.parametrize("data_filter", [True, False], ids=["data-filter", "by-hand"])
@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_hostile_tar_members_are_refused_and_the_target_untouched(server, tiny_mvtec, tmp_path, monkeypatch,
                                                                   case, data_filter):  # fmt: skip
    monkeypatch.setattr(extract, "_HAS_DATA_FILTER", data_filter and extract._HAS_DATA_FILTER)
    info, payload = HOSTILE[case]
    data = tar_of(tiny_mvtec, extra=[(info, payload)])
    url = server.serve(f"/{case}.tar.xz", data)
    root = tmp_path / "data"
    res = _fetch("mvtec", "--root", root, "--url", url, "--sha256", sha256(data), "--accept-licence")
    assert res.exit_code == 1, res.output
    assert f"refused member {info.name!r}" in res.output and "nothing was installed" in res.output
    assert not (root / "mvtec").exists() and not leftovers(root)
    assert not list((root / "downloads" / "mvtec").iterdir())  # the hostile archive is not kept either
    assert not (tmp_path / "evil.txt").exists() and not Path("/tmp/rdbench-evil.txt").exists()


@pytest.mark.parametrize("name", ["../evil.txt", "/abs/evil.txt", "a/../../evil.txt"])
def test_hostile_zip_names_are_refused(server, tiny_mvtec, tmp_path, name):
    buf = io.BytesIO(zip_of(tiny_mvtec))
    with zipfile.ZipFile(buf, "a") as zf:
        zf.writestr(name, b"x")
    data = buf.getvalue()
    url = server.serve("/m.zip", data)
    res = _fetch("mvtec", "--root", tmp_path / "d", "--url", url, "--sha256", sha256(data), "--accept-licence")
    assert res.exit_code == 1 and f"refused member {name!r}" in res.output, res.output
    assert not (tmp_path / "d" / "mvtec").exists() and not (tmp_path / "evil.txt").exists()


def test_an_existing_folder_is_never_overwritten(server, tiny_mvtec, tmp_path):
    (tmp_path / "mvtec" / "mine").mkdir(parents=True)
    url = server.serve("/m.tar.xz", tar_of(tiny_mvtec))
    res = _fetch("mvtec", "--root", tmp_path, "--url", url, "--accept-licence")
    assert res.exit_code == 1 and "never overwrites a folder" in res.output, res.output
    assert server.log == [] and [p.name for p in (tmp_path / "mvtec").iterdir()] == ["mine"]


# ----------------------------------------------------------------------------------------------- offline


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_connection_refused_says_what_to_place_where_then_uses_the_placed_file(tiny_mvtec, tmp_path):
    data = tar_of(tiny_mvtec)
    url = f"http://127.0.0.1:{_closed_port()}/mvtec_small.tar.xz"
    args = ("mvtec", "--root", tmp_path, "--url", url, "--sha256", sha256(data), "--accept-licence")
    res = _fetch(*args)
    folder = tmp_path / "downloads" / "mvtec"
    assert res.exit_code == 1 and "Traceback" not in res.output
    assert f"cannot download {url}" in res.output and str(folder / "mvtec_small.tar.xz") in res.output
    (folder / "mvtec_small.tar.xz").write_bytes(data)  # placed by hand, as the message says
    res = _fetch(*args)
    assert res.exit_code == 0, res.output
    assert (tmp_path / "mvtec" / "carpet").is_dir()


def test_disk_space_is_checked_before_downloading(tmp_path, monkeypatch):
    from rdbench.data.fetch import download

    usage = shutil.disk_usage(tmp_path)._replace(free=10)
    monkeypatch.setattr(download.shutil, "disk_usage", lambda p: usage)
    res = _fetch("cifar10", "--root", tmp_path)  # the table's URL: no request is made, the space check comes first
    assert res.exit_code == 1 and "not enough disk space" in res.output and "cannot download" not in res.output


def test_url_needs_one_source_and_sha256_one_per_file(tmp_path):
    res = _fetch("mvtec", "cifar10", "--root", tmp_path, "--url", "http://127.0.0.1:1/x")
    assert res.exit_code == 2 and "point one source" in res.output
    res = _fetch("mnist", "--root", tmp_path, "--sha256", "a" * 64)
    assert res.exit_code == 2 and "give --sha256 once per file" in res.output
    res = _fetch("nosuch", "--root", tmp_path)
    assert res.exit_code == 2 and "unknown fetch source 'nosuch'" in res.output


# ----------------------------------------------------------------------------------------------- novelty sets


def _idx(kind: int, array: np.ndarray) -> bytes:
    return struct.pack(f">HBB{array.ndim}I", 0, 8, array.ndim, *array.shape) + array.astype(np.uint8).tobytes()


def test_mnist_lands_in_torchvision_layout_and_is_read(server, tmp_path):
    rng = np.random.default_rng(0)
    files = {}
    for split, n in (("train", 30), ("t10k", 20)):
        files[f"{split}-images-idx3-ubyte.gz"] = gzip.compress(_idx(3, rng.integers(0, 255, (n, 28, 28))))
        files[f"{split}-labels-idx1-ubyte.gz"] = gzip.compress(_idx(1, np.arange(n) % 10))
    for name, body in files.items():
        server.serve(f"/mirror/{name}", body)
    digests = [a for r in DATASETS["mnist"].files for a in ("--sha256", sha256(files[r.filename]))]
    base = f"http://127.0.0.1:{server.server_address[1]}/mirror/"
    res = _fetch("mnist", "--root", tmp_path, "--url", base, *digests)
    assert res.exit_code == 0, res.output
    raw = tmp_path / "novelty" / "MNIST" / "raw"
    assert sorted(p.name for p in raw.iterdir()) == sorted([*files, *(Path(f).stem for f in files)])
    assert "MNIST checked" in res.output
    assert f"rdbench reproduce --table all --novelty-root {tmp_path / 'novelty'}" in res.output
    train = tvd.MNIST(str(tmp_path / "novelty"), train=True, download=False)  # torchvision reads it as its own
    assert len(train) == 30


def test_caltech256_takes_its_folder_out_of_the_archive(server, tmp_path):
    src = tmp_path / "src"
    for folder in ("001.ak47", "002.american-flag", "257.clutter"):
        (src / "256_ObjectCategories" / folder).mkdir(parents=True)
        (src / "256_ObjectCategories" / folder / "0001.jpg").write_bytes(b"jpeg")
    (src / "README.txt").write_text("beside the folder: not installed")
    data = tar_of(src, mode="w")
    url = server.serve("/256_ObjectCategories.tar", data)
    res = _fetch("caltech256", "--root", tmp_path / "d", "--url", url, "--sha256", sha256(data))
    assert res.exit_code == 0, res.output
    novelty = tmp_path / "d" / "novelty"
    assert sorted(p.name for p in novelty.iterdir()) == ["256_ObjectCategories"] and "Caltech-256 checked" in res.output
    assert f"--table all --novelty-root {novelty}" in res.output


# ----------------------------------------------------------------------------------------------- weights


def test_weights_land_in_the_hub_cache_where_weights_imagenet_finds_them(server, torch_home, tmp_path):
    from rdbench.models.backbones import BACKBONES, imagenet_available, imagenet_cache_path

    fake = b"not really resnet18" * 100
    url = server.serve("/fake.pth", fake)
    res = _fetch("weights", "--backbone", "resnet18", "--root", tmp_path, "--url", url, "--sha256", sha256(fake))
    assert res.exit_code == 0, res.output
    path = imagenet_cache_path(BACKBONES.get("resnet18"))
    assert path == torch_home / "hub" / "checkpoints" / "resnet18-f37072fd.pth" and path.read_bytes() == fake
    assert imagenet_available("resnet18") and not leftovers(torch_home)


def test_weights_failing_the_hash_prefix_are_not_placed(server, torch_home, tmp_path):
    fake = b"x" * 5000
    url = server.serve("/fake.pth", fake)
    res = _fetch("weights", "--backbone", "resnet18", "--root", tmp_path, "--url", url)  # the table's prefix
    assert res.exit_code == 1 and f"expected f37072fd, got {sha256(fake)}" in res.output, res.output
    assert not list((torch_home / "hub" / "checkpoints").iterdir())


def test_the_hash_prefix_check_is_torch_hubs(server, tmp_path):
    fake = b"weights" * 1000
    prefix = sha256(fake)[:10]
    name = f"tiny-{prefix}.pth"
    assert torch.hub.HASH_REGEX.search(name).group(1) == prefix  # torch.hub reads the prefix from the name so
    url = server.serve(f"/{name}", fake)
    remote = Remote(url, len(fake), prefix, "sha256-prefix", "file", "test")
    assert fetch_file(remote, tmp_path, progress=False).read_bytes() == fake
    bad = Remote(server.serve("/other-0123abcd.pth", fake), len(fake), "0123abcd", "sha256-prefix", "file", "test")
    with pytest.raises(FetchError, match=f"expected 0123abcd, got {sha256(fake)}"):
        fetch_file(bad, tmp_path, progress=False)
    assert not (tmp_path / "other-0123abcd.pth").exists() and not leftovers(tmp_path)
