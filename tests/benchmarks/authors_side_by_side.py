"""rdbench's fast path side by side with the authors' real code (hq-deng/RD4AD, commit 6554076).

    python tests/benchmarks/authors_side_by_side.py --authors-code DIR [--quick] [--figures ...] [--json OUT]

DIR holds their repository (resnet.py, de_resnet.py, test.py, main.py), fetched outside this project and never
committed; it is imported from there, never copied. Their modules predate today's libraries, so this script
shims at run time only: ``np.bool`` (gone from numpy 1.24-1.26), ``DataFrame.append`` (gone in pandas 2) and,
where OpenCV is not installed, an empty ``cv2`` module (test.py imports it for its visualisation only).

Three sides, measured in turn (A B C A B C ...) so that other load on a shared machine falls on all of them;
every figure is the median of the rounds, and the ratios are of medians. Inference runs in this process; the
peak RSS and training in a fresh interpreter per side and round (rdbench's training keeps glibc's freed memory
for reuse, ``rdbench.engine.fast_step.reuse_heap``, for the rest of its process: that must not reach the
authors' loop):

* authors: their resnet/de_resnet modules; per image their ``cal_anomaly_map`` (amap_mode 'a'), scipy
  ``gaussian_filter(sigma=4)`` and ``np.max`` under ``torch.no_grad`` (test.py ``evaluation``); training as their
  main.py ``train``: Adam(lr 0.005, betas (0.5, 0.999)) over decoder + bn parameters, the encoder in eval
  mode but recomputed with autograd, their ``loss_fucntion``, ``zero_grad()``, ``loss.item()`` every step;
  their DataLoader (shuffle, no workers) over images held in memory (their per-item PIL transforms are left
  out: that favours them).
* fast: ``prepare_for_inference(..., consume=True)`` + ``fast_predict``; ``rdbench.engine.train.train``.
* reference: ``rdbench.perf.reference``, rdbench's restatement of the authors' procedure, which
  ``rdbench profile`` divides by; its ratio to the authors' loop says how far that yardstick is off.

Figures: batch-1 latency; throughput (fast at batch 8, authors and reference at batch 1, as their evaluation
runs); the peak RSS of a fresh inference process (each side in its own interpreter, importing what it needs:
the authors' test.py imports sklearn, skimage, pandas and matplotlib; the increment over the imports is
printed too, which compares models and inference alone); training images/s at 256 px and on the
FashionMNIST one-class protocol (resnet18, 32 px, batch 16; Debian's FashionMNIST files when present, else
random images). Training throughput is the median of the epochs after the second, 4 epochs in all: rdbench
fills its teacher-feature cache in the first and checks the cache in the second, once, against a fresh teacher
pass of one batch; over 200 epochs the later ones are what counts. The first two epochs are printed beside it.
Random weights throughout (the cost does not depend on the values). Targets live here as ratios.
"""

from __future__ import annotations

import argparse
import gzip
import json
import statistics
import subprocess
import sys
import time
import types
from pathlib import Path

import numpy as np
import torch

FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz")
AUTHORS_MODELS = {"resnet18": ("resnet18", "de_resnet18"), "wide_resnet50_2": ("wide_resnet50_2", "de_wide_resnet50_2")}
SIDES = ("authors", "fast", "reference")
TRAIN_EPOCHS = 4  # the first fills rdbench's feature cache, the second checks it: the steady state is the rest
# name: (ratio fast / authors target, "lower" or "higher" is better)
TARGETS = {"latency_s": (0.6, "lower"), "throughput_ips": (1.8, "higher"), "peak_rss_mb": (0.8, "lower"),
           "train256_resnet18_ips": (1.5, "higher"), "train32_resnet18_ips": (2.0, "higher")}


# ------------------------------------------------------------------------------------------ the authors' code
def load_authors(folder: str) -> types.SimpleNamespace:
    """Import their modules from ``folder`` with the run-time shims of the module docstring."""
    import pandas as pd

    if not hasattr(np, "bool"):
        np.bool = np.bool_  # a numpy type, not Python's bool: numpy.ma calls .view() on it
    if not hasattr(pd.DataFrame, "append"):
        pd.DataFrame.append = lambda self, row, ignore_index=False: pd.concat(
            [self, pd.DataFrame([row]) if isinstance(row, dict) else row], ignore_index=ignore_index)
    try:
        import cv2  # noqa: F401
    except ImportError:
        sys.modules["cv2"] = types.ModuleType("cv2")
    sys.path.insert(0, str(Path(folder).resolve()))
    import de_resnet
    import main
    import resnet
    import test

    return types.SimpleNamespace(resnet=resnet, de_resnet=de_resnet, cal_anomaly_map=test.cal_anomaly_map,
                                 loss_fucntion=main.loss_fucntion)


def authors_model(a: types.SimpleNamespace, backbone: str):
    enc_name, dec_name = AUTHORS_MODELS[backbone]
    encoder, bn = getattr(a.resnet, enc_name)(pretrained=False)
    decoder = getattr(a.de_resnet, dec_name)(pretrained=False)
    encoder.eval()  # as main.py: once, after building it
    return encoder, bn, decoder


def authors_predict(a, model, img: torch.Tensor) -> float:
    from scipy.ndimage import gaussian_filter

    encoder, bn, decoder = model
    with torch.no_grad():
        inputs = encoder(img)
        outputs = decoder(bn(inputs))
        anomaly_map, _ = a.cal_anomaly_map(inputs, outputs, img.shape[-1], amap_mode="a")
        anomaly_map = gaussian_filter(anomaly_map, sigma=4)
        return float(np.max(anomaly_map))


def authors_train(a, model, images: torch.Tensor, batch_size: int, epochs: int) -> list[float]:
    """main.py's loop on ``images`` -> seconds per epoch."""
    encoder, bn, decoder = model
    optimizer = torch.optim.Adam(list(decoder.parameters()) + list(bn.parameters()), lr=0.005, betas=(0.5, 0.999))
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(images), batch_size=batch_size, shuffle=True)
    times = []
    for _ in range(epochs):
        t0 = time.perf_counter()
        bn.train()
        decoder.train()
        loss_list = []
        for (img,) in loader:
            inputs = encoder(img)
            outputs = decoder(bn(inputs))
            loss = a.loss_fucntion(inputs, outputs)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            loss_list.append(loss.item())
        times.append(time.perf_counter() - t0)
    return times


# ------------------------------------------------------------------------------------------------ rdbench
def fast_model(backbone: str):
    from rdbench.engine.inference import prepare_for_inference
    from rdbench.models.rd import build_rd_model

    return prepare_for_inference(build_rd_model(backbone, "none"), "cpu", consume=True)


def fast_scores(model, img: torch.Tensor) -> torch.Tensor:
    from rdbench.engine.inference import fast_predict

    return fast_predict(model, img).amax(dim=(1, 2)).cpu()


def rdbench_train(images: torch.Tensor, backbone: str, batch_size: int, epochs: int, reference: bool,
                  amp: str = "none") -> list[float]:
    from rdbench.config import RunConfig
    from rdbench.models.rd import build_rd_model
    from rdbench.perf.profile_figures import RandomImages

    data = RandomImages(1, 8)
    data.images = images
    cfg = RunConfig(backbone=backbone, weights="none", epochs=epochs, batch_size=batch_size,
                    image_size=images.shape[-1], seed=0, device="cpu", amp=amp)
    stamps = [time.perf_counter()]

    def on_epoch(epoch: int, loss: float) -> None:
        stamps.append(time.perf_counter())

    if reference:
        from rdbench.perf.reference import build_reference_model, reference_train

        model = build_reference_model(backbone, "none")
        stamps[0] = time.perf_counter()
        reference_train(model, data, cfg, "cpu", on_epoch)
    else:
        from rdbench.engine.train import train

        model = build_rd_model(backbone, "none")
        stamps[0] = time.perf_counter()
        train(model, data, cfg, torch.device("cpu"), progress=False, on_epoch=on_epoch)
    return [float(t) for t in np.diff(stamps)]


# ---------------------------------------------------------------------------------------------- figures
def median(xs: list[float]) -> float:
    return float(statistics.median(xs))


def timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def inference_figures(a, backbone: str, size: int, repeats: int, bf16: bool) -> dict:
    """Batch-1 latency of the three sides and fast batch-8 throughput, interleaved; ``bf16``: also the fast path's
    bfloat16 copy (weights cast once and packed: what ``--amp bf16`` scores with on the CPU)."""
    from rdbench.engine.inference import fast_predict, prepare_for_inference
    from rdbench.models.rd import build_rd_model
    from rdbench.perf.reference import reference_model_from, reference_predict

    torch.manual_seed(0)
    theirs = authors_model(a, backbone)
    torch.manual_seed(0)
    ref = reference_model_from(build_rd_model(backbone, "none")).eval()
    fast = fast_model(backbone)
    g = torch.Generator().manual_seed(1)
    x1, x8 = torch.randn(1, 3, size, size, generator=g), torch.randn(8, 3, size, size, generator=g)
    runs = {"authors": lambda: authors_predict(a, theirs, x1), "fast": lambda: fast_scores(fast, x1),
            "reference": lambda: reference_predict(ref, x1).max()}
    batch_runs = {"fast": lambda: fast_scores(fast, x8)}
    if bf16:  # the bfloat16 copy that --amp bf16 scores with on the CPU (rdbench.engine.inference_options)
        low = prepare_for_inference(build_rd_model(backbone, "none"), "cpu", consume=True, dtype="bfloat16")
        runs["fast_bf16"] = lambda: fast_predict(low, x1).amax(dim=(1, 2)).cpu()
        batch_runs["fast_bf16"] = lambda: fast_predict(low, x8).amax(dim=(1, 2)).cpu()
    lat: dict[str, list[float]] = {k: [] for k in runs}
    batch8: dict[str, list[float]] = {k: [] for k in batch_runs}
    calls = ([(lat, side, fn, 1) for side, fn in runs.items()]
             + [(batch8, side, fn, 8) for side, fn in batch_runs.items()])
    for r in range(repeats + 1):  # the first round warms up (oneDNN primitives, allocator pools)
        # the order turns by one each round: what runs after the heaviest call (bf16 at batch 8) is not always the
        # same side (measured: the authors' latency 10% slower when it always followed it)
        for samples, side, fn, n in calls[r % len(calls):] + calls[:r % len(calls)]:
            t = timed(fn)
            if r:
                samples[side].append(t if n == 1 else n / t)
    out = {"latency_s": {k: median(v) for k, v in lat.items()},
           "throughput_ips": {"authors": 1 / median(lat["authors"]), "reference": 1 / median(lat["reference"]),
                              **{k: median(v) for k, v in batch8.items()}}}
    out["samples"] = {"latency_s": lat, "batch8_ips": batch8}
    return out


def roofline_figures(backbone: str, size: int, throughput: dict) -> dict:
    """Achieved GFLOP/s of the fast batch-8 throughput against a calibration measured now (rdbench.perf.roofline)."""
    from rdbench.models.rd import build_rd_model
    from rdbench.perf.roofline import calibrate, pipeline_flops, roofline

    flops = pipeline_flops(build_rd_model(backbone, "none"), size)
    calibration = calibrate("cpu")
    out = {"float32": roofline(flops, {"inference_batch": throughput["fast"]}, calibration, "float32")}
    if "fast_bf16" in throughput:
        out["bfloat16"] = roofline(flops, {"inference_batch": throughput["fast_bf16"]}, calibration, "bfloat16")
    return out


def memory_worker(a_folder: str, side: str, backbone: str, size: int) -> dict:
    """In a fresh interpreter: peak RSS of building the model, one warm-up and one measured batch-1 inference."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
    from rdbench.perf.rss import RssSampler

    sampler = RssSampler().start()
    if side == "authors":
        a = load_authors(a_folder)
        import scipy.ndimage  # noqa: F401
    elif side == "fast":
        import rdbench.engine.inference  # noqa: F401  (what a scoring process imports)
        import rdbench.models.rd  # noqa: F401
    else:
        import rdbench.perf.reference  # noqa: F401
    imports = sampler.rss_mb()
    torch.manual_seed(0)
    x = torch.randn(1, 3, size, size)
    if side == "authors":
        model = authors_model(a, backbone)

        def run():
            return authors_predict(a, model, x)
    elif side == "fast":
        model = fast_model(backbone)

        def run():
            return fast_scores(model, x)
    else:
        from rdbench.perf.reference import build_reference_model, reference_predict

        model = build_reference_model(backbone, "none")

        def run():
            return reference_predict(model, x).max()
    run()
    sampler.reset()
    run()
    return {"imports_mb": imports, "inference_peak_mb": sampler.peak_mb(), "process_peak_mb": sampler.overall_peak_mb()}


def memory_figures(a_folder: str, backbone: str, size: int, repeats: int) -> dict:
    samples: dict[str, list[dict]] = {k: [] for k in SIDES}
    for _ in range(repeats):
        for side in SIDES:  # one fresh process each, in turn
            cmd = [sys.executable, __file__, "--authors-code", a_folder, "--memory-worker", side,
                   "--backbone", backbone, "--size", str(size)]
            out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
            samples[side].append(json.loads(out.strip().splitlines()[-1]))
    fig = {key: {s: median([d[key] for d in samples[s]]) for s in SIDES}
           for key in ("process_peak_mb", "inference_peak_mb", "imports_mb")}
    return {"peak_rss_mb": fig["process_peak_mb"],
            "peak_over_imports_mb": {s: fig["process_peak_mb"][s] - fig["imports_mb"][s] for s in SIDES},
            "imports_mb": fig["imports_mb"], "inference_peak_mb": fig["inference_peak_mb"], "samples": samples}


def fashion_mnist(n: int) -> tuple[torch.Tensor, str]:
    """The first ``n`` T-shirt images (class 0) at 32 px, grey repeated to 3 channels (as the authors'
    detection() does), or random images when Debian's FashionMNIST files are not there."""
    labels = FASHION_MNIST.with_name("train-labels-idx1-ubyte.gz")
    if not (FASHION_MNIST.is_file() and labels.is_file()):
        return torch.randn(n, 3, 32, 32, generator=torch.Generator().manual_seed(0)), "random 32 px images"
    with gzip.open(FASHION_MNIST) as f:
        images = np.frombuffer(f.read(), np.uint8, offset=16).reshape(-1, 28, 28)
    with gzip.open(labels) as f:
        y = np.frombuffer(f.read(), np.uint8, offset=8)
    x = torch.from_numpy(images[y == 0][:n].astype(np.float32) / 255)[:, None]
    x = torch.nn.functional.interpolate(x, size=32, mode="bilinear", align_corners=False)
    return x.repeat(1, 3, 1, 1).contiguous(), f"FashionMNIST class 0 ({FASHION_MNIST.parent})"


def training_images(spec: str) -> torch.Tensor:
    """``fashion32:N`` (fashion_mnist) or ``random256:N`` (seeded random images)."""
    kind, n = spec.split(":")
    if kind == "fashion32":
        return fashion_mnist(int(n))[0]
    return torch.randn(int(n), 3, 256, 256, generator=torch.Generator().manual_seed(0))


def train_worker(a_folder: str, side: str, backbone: str, data: str, batch_size: int, epochs: int) -> dict:
    """In a fresh interpreter, so that one side's allocator settings (rdbench's training keeps glibc's heap,
    ``rdbench.engine.fast_step.reuse_heap``) never reach the other's: seconds per epoch."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
    images = training_images(data)
    torch.manual_seed(0)
    if side == "authors":
        a = load_authors(a_folder)
        return {"epoch_s": authors_train(a, authors_model(a, backbone), images, batch_size, epochs)}
    return {"epoch_s": rdbench_train(images, backbone, batch_size, epochs, reference=side == "reference",
                                     amp="bf16" if side == "fast_bf16" else "none")}


def training_figures(a_folder: str, backbone: str, data: str, batch_size: int, epochs: int, repeats: int,
                     sides: tuple[str, ...] = SIDES) -> dict:
    n = int(data.split(":")[1])
    later: dict[str, list[float]] = {k: [] for k in sides}
    first: dict[str, list[float]] = {k: [] for k in sides}
    second: dict[str, list[float]] = {k: [] for k in sides}
    for _ in range(repeats):
        for side in sides:  # one fresh process each, in turn
            cmd = [sys.executable, __file__, "--authors-code", a_folder, "--train-worker", side, "--backbone",
                   backbone, "--train-data", data, "--train-batch", str(batch_size), "--train-epochs", str(epochs)]
            out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
            times = json.loads(out.strip().splitlines()[-1])["epoch_s"]
            first[side].append(n / times[0])
            second[side].append(n / times[1])
            later[side].append(n / median(times[2:]))
    return {"ips": {k: median(v) for k, v in later.items()},
            "first_epoch_ips": {k: median(v) for k, v in first.items()},
            "second_epoch_ips": {k: median(v) for k, v in second.items()}, "samples": later, "images": n,
            "batch_size": batch_size, "epochs": epochs}


# ---------------------------------------------------------------------------------------------- output
def print_row(name: str, values: dict, unit: str, better: str | None = None, target: float | None = None) -> None:
    a = values.get("authors")
    cells = "  ".join(f"{s} {values[s]:9.4g}" for s in (*SIDES, "fast_bf16") if s in values)
    ratio = ""
    if a:
        fast, ref = values.get("fast"), values.get("reference")
        ratio = f"  fast/authors {fast / a:5.2f}x" if fast is not None else ""
        if target is not None:
            met = fast / a <= target if better == "lower" else fast / a >= target
            ratio += f" (target {'<=' if better == 'lower' else '>='} {target}: {'MET' if met else 'MISSED'})"
        ratio += f"  reference/authors {ref / a:5.2f}x" if ref is not None else ""
    print(f"{name:<34} {unit:<9} {cells}{ratio}", flush=True)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--authors-code", required=True, help="folder of hq-deng/RD4AD (resnet.py, de_resnet.py, ...)")
    p.add_argument("--quick", action="store_true", help="fewer rounds and smaller training sets (a smoke run)")
    p.add_argument("--figures", default="inference,memory,train256,train32",
                   help="comma-separated subset of inference, memory, train256, train32")
    p.add_argument("--backbone", default="wide_resnet50_2", help="inference and memory backbone")
    p.add_argument("--size", type=int, default=256)
    p.add_argument("--rounds", type=int, default=None, help="alternations per figure (default 3, quick 1)")
    p.add_argument("--json", type=Path, default=None, help="write every figure and sample here")
    p.add_argument("--bf16", action="store_true", help="also rdbench under --amp bf16: its bfloat16 inference copy "
                   "and training with the student autocast (256 and 32 px), as ratios to float32")
    p.add_argument("--memory-worker", choices=SIDES, default=None, help=argparse.SUPPRESS)
    p.add_argument("--train-worker", choices=(*SIDES, "fast_bf16"), default=None, help=argparse.SUPPRESS)
    p.add_argument("--train-data", default=None, help=argparse.SUPPRESS)
    p.add_argument("--train-batch", type=int, default=16, help=argparse.SUPPRESS)
    p.add_argument("--train-epochs", type=int, default=TRAIN_EPOCHS, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.memory_worker:
        print(json.dumps(memory_worker(args.authors_code, args.memory_worker, args.backbone, args.size)))
        return
    if args.train_worker:
        print(json.dumps(train_worker(args.authors_code, args.train_worker, args.backbone, args.train_data,
                                      args.train_batch, args.train_epochs)))
        return
    folder = Path(args.authors_code)
    missing = [f for f in ("resnet.py", "de_resnet.py", "test.py", "main.py") if not (folder / f).is_file()]
    if missing:
        p.error(f"--authors-code {folder}: {', '.join(missing)} not found; fetch hq-deng/RD4AD into a folder "
                "outside this project and pass that folder")
    if args.bf16:
        from rdbench.records.provenance import bf16_native

        if not bf16_native("cpu"):
            p.error(f"--bf16: this CPU ({torch.backends.cpu.get_cpu_capability()}) only emulates bfloat16, about "
                    "120x slower than float32, so its bf16 figures would measure the emulation; leave --bf16 out")
    rounds = args.rounds or (1 if args.quick else 3)
    figures = set(args.figures.split(","))
    a = load_authors(args.authors_code)
    results: dict = {"threads": torch.get_num_threads(), "torch": torch.__version__, "rounds": rounds}
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {rounds} alternations, medians "
          f"(authors = their code from {args.authors_code})", flush=True)
    if "inference" in figures:
        r = results["inference"] = inference_figures(a, args.backbone, args.size, max(rounds, 3) + 2, args.bf16)
        print_row(f"latency {args.backbone} batch 1", r["latency_s"], "s/image", *TARGETS["latency_s"][::-1])
        print_row("throughput (fast: batch 8)", r["throughput_ips"], "images/s", *TARGETS["throughput_ips"][::-1])
        for dtype, roof in roofline_figures(args.backbone, args.size, r["throughput_ips"]).items():
            f = roof["figures"]["inference_batch"]
            results.setdefault("roofline", {})[dtype] = roof
            print(f"  fast batch 8 {dtype}: {f['achieved_gflops']:.0f} GFLOP/s ({f['gflop_per_image']:.1f} GFLOP/image)"
                  f" = {f['fraction_of_peak']:.0%} of the best {dtype} calibration ({roof['peak_gflops']:.0f} GFLOP/s)")
        if args.bf16:
            a_ips, ips = r["throughput_ips"]["authors"], r["throughput_ips"]["fast_bf16"]
            print(f"  fast bf16: latency {r['latency_s']['fast_bf16']:.4g} s/image "
                  f"({r['latency_s']['fast_bf16'] / r['latency_s']['authors']:.2f}x authors), throughput batch 8 "
                  f"{ips:.4g} images/s ({ips / a_ips:.2f}x authors, "
                  f"{ips / r['throughput_ips']['fast']:.2f}x fast float32)")
    if "memory" in figures:
        r = results["memory"] = memory_figures(args.authors_code, args.backbone, args.size, rounds)
        print_row("peak RSS, fresh inference process", r["peak_rss_mb"], "MB", *TARGETS["peak_rss_mb"][::-1])
        print_row("  of which above the imports", r["peak_over_imports_mb"], "MB", "lower")
        print_row("  imports alone", r["imports_mb"], "MB")
        print_row("  during the measured inference", r["inference_peak_mb"], "MB", "lower")
    if "train256" in figures:
        for backbone, batch, n in (("resnet18", 16, 32 if args.quick else 48), ("wide_resnet50_2", 4, 8)):
            if args.quick and backbone != "resnet18":
                continue
            sides = (*SIDES, "fast_bf16") if args.bf16 else SIDES
            r = results[f"train256_{backbone}"] = training_figures(args.authors_code, backbone, f"random256:{n}",
                                                                   batch, TRAIN_EPOCHS, rounds, sides)
            key = f"train256_{backbone}_ips"
            print_row(f"train {backbone} 256px b{batch}", r["ips"], "images/s",
                      *(TARGETS[key][::-1] if key in TARGETS else ("higher",)))
            print_row("  first epoch", r["first_epoch_ips"], "images/s", "higher")
            print_row("  second epoch", r["second_epoch_ips"], "images/s", "higher")
            if args.bf16:
                print(f"  fast bf16 / fast float32: {r['ips']['fast_bf16'] / r['ips']['fast']:.2f}x")
    if "train32" in figures:
        n = 320 if args.quick else 1000
        sides = (*SIDES, "fast_bf16") if args.bf16 else SIDES
        r = results["train32_resnet18"] = training_figures(args.authors_code, "resnet18", f"fashion32:{n}", 16,
                                                           TRAIN_EPOCHS, rounds, sides)
        r["data"] = fashion_mnist(1)[1]
        print_row(f"train resnet18 32px b16 ({n} img)", r["ips"], "images/s", *TARGETS["train32_resnet18_ips"][::-1])
        print_row("  first epoch", r["first_epoch_ips"], "images/s", "higher")
        print_row("  second epoch", r["second_epoch_ips"], "images/s", "higher")
        if args.bf16:
            print(f"  fast bf16 / fast float32: {r['ips']['fast_bf16'] / r['ips']['fast']:.2f}x")
        print(f"  data: {r['data']}")
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
