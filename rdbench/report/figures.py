"""The report's figures, as data URIs so the page stays one self-contained file.

Matplotlib draws with the Agg backend (no display on CI machines or Ray workers); every figure is
closed after encoding so a large report does not pile up open figures."""

from __future__ import annotations

import base64
import io
import math
from collections.abc import Iterable

import numpy as np

from rdbench.config import RunConfig
from rdbench.records.schema import RunRecord

MAX_PANELS = 48  # beyond this a small-multiples figure gets unreadable (and slow); the caption says so
GALLERY_CMAP = "jet"  # the paper's Fig. 6/7 overlays use jet


def _pyplot():
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt


def figure_uri(fig) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
    _pyplot().close(fig)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def png_uri(b64: str) -> str:
    return "data:image/png;base64," + b64


def run_label(config: RunConfig) -> str:
    """Short name of a run: the settings that tell runs of one category apart."""
    parts = [config.backbone, f"{config.image_size}px"]
    if config.bottleneck != "pre+oce+mff":
        parts.append(config.bottleneck)
    if config.layers != (1, 2, 3):
        parts.append("L" + ",".join(map(str, config.layers)))
    parts.append(f"seed {config.seed}")
    return " ".join(parts)


def category_key(config: RunConfig) -> str:
    return f"{config.protocol}/{config.category}"


def group_key(config: RunConfig) -> str:
    return f"{category_key(config)} {config.backbone}"


def _grid(n: int, ncols: int = 5, w: float = 3.0, h: float = 2.3):
    plt = _pyplot()
    ncols = max(1, min(ncols, n))
    nrows = math.ceil(n / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(w * ncols, h * nrows), squeeze=False)
    flat = list(axes.ravel())
    for ax in flat[n:]:
        ax.set_visible(False)
    return fig, flat[:n]


def _scores(rec: RunRecord) -> tuple[np.ndarray, np.ndarray] | None:
    labels, scores = rec.per_image.get("label"), rec.per_image.get("score")
    if not labels or not scores or len(labels) != len(scores):
        return None
    s = np.asarray(scores, dtype=float)
    ok = np.isfinite(s)
    return np.asarray(labels, dtype=int)[ok], s[ok]


def _minmax(s: np.ndarray) -> np.ndarray:
    span = s.max() - s.min() if s.size else 0.0
    return (s - s.min()) / span if span > 0 else np.zeros_like(s)


def score_histograms(records: Iterable[RunRecord]) -> tuple[str | None, int]:
    """Fig. 5: score histograms, normal vs anomalous, overall and per protocol/category/backbone.
    Scores of different runs live on different scales, so a panel pooling several runs min-max scales
    each run first (the panel title says so). Returns (data URI or None, panels left out)."""
    import pandas as pd
    import seaborn as sns

    groups: dict[str, list[tuple[np.ndarray, np.ndarray]]] = {}
    for rec in records:
        pair = _scores(rec) if rec.ok else None
        if pair is not None and pair[1].size:
            groups.setdefault(group_key(rec.config), []).append(pair)
    if not groups:
        return None, 0
    panels = [("all runs", [p for runs in groups.values() for p in runs])] + sorted(groups.items())
    dropped = max(0, len(panels) - MAX_PANELS)
    panels = panels[:MAX_PANELS]
    fig, axes = _grid(len(panels))
    palette = {"normal": "#2b6cb0", "anomalous": "#c53030"}
    for i, (ax, (name, runs)) in enumerate(zip(axes, panels)):
        scaled = len(runs) > 1
        frame = pd.DataFrame({
            "score": np.concatenate([_minmax(s) if scaled else s for _, s in runs]),
            "label": np.where(np.concatenate([lab for lab, _ in runs]) == 1, "anomalous", "normal")})
        sns.histplot(frame, x="score", hue="label", hue_order=["normal", "anomalous"], palette=palette, bins=20,
                     stat="density", common_norm=False, element="step", ax=ax, legend=i == 0)
        ax.set_title(f"{name}\n({len(runs)} runs, min-max per run)" if scaled else name, fontsize=8)
        ax.set_xlabel("score (scaled)" if scaled else "score", fontsize=7)
        ax.set_ylabel("")
        ax.tick_params(labelsize=6)
    fig.tight_layout()
    return figure_uri(fig), dropped


def loss_curves(records: Iterable[RunRecord]) -> tuple[str | None, int]:
    """Training loss per epoch, one panel per protocol/category, one line per run (failed: dashed)."""
    groups: dict[str, list[RunRecord]] = {}
    for rec in records:
        if rec.loss_curve:
            groups.setdefault(category_key(rec.config), []).append(rec)
    if not groups:
        return None, 0
    items = sorted(groups.items())
    dropped = max(0, len(items) - MAX_PANELS)
    fig, axes = _grid(len(items[:MAX_PANELS]))
    for ax, (name, recs) in zip(axes, items):
        for rec in recs:
            curve = rec.loss_curve
            ax.plot(range(1, len(curve) + 1), curve, marker="." if len(curve) < 30 else None,
                    linestyle="-" if rec.ok else "--", label=run_label(rec.config))
        ax.set_title(name, fontsize=8)
        ax.set_xlabel("epoch", fontsize=7)
        ax.xaxis.get_major_locator().set_params(integer=True)
        ax.tick_params(labelsize=6)
        if len(recs) <= 8:
            ax.legend(fontsize=5)
    fig.tight_layout()
    return figure_uri(fig), dropped


def metric_curves(records: Iterable[RunRecord]) -> tuple[str | None, int]:
    """Eval protocol "paper": test metrics every eval_every epochs, one panel per run; the star marks the
    best epoch, which is chosen on the test set (optimistic)."""
    recs = [r for r in records if r.ok and r.metric_curve]
    if not recs:
        return None, 0
    dropped = max(0, len(recs) - MAX_PANELS)
    recs = recs[:MAX_PANELS]
    fig, axes = _grid(len(recs), ncols=4, w=3.4)
    for ax, rec in zip(axes, recs):
        curve = rec.metric_curve
        names = [k for k in curve[0] if k != "epoch"]
        for name in names:
            pts = [(p["epoch"], 100 * p[name]) for p in curve if isinstance(p.get(name), (int, float))]
            if not pts:
                continue
            line = ax.plot(*zip(*pts), marker=".", label=name)[0]
            best = (rec.best_epoch_metrics or {}).get(name)  # RunRecord.best has no epoch: the star needs it
            if isinstance(best, dict):
                ax.plot(best["epoch"], 100 * best["value"], marker="*", markersize=10, color=line.get_color())
        ax.set_title(f"{group_key(rec.config)}\n{run_label(rec.config)}", fontsize=8)
        ax.set_xlabel("epoch", fontsize=7)
        ax.xaxis.get_major_locator().set_params(integer=True)
        ax.set_ylabel("%", fontsize=7)
        ax.tick_params(labelsize=6)
        ax.legend(fontsize=5)
    fig.tight_layout()
    return figure_uri(fig), dropped


def _decode(b64: str, mode: str) -> np.ndarray:
    from PIL import Image

    return np.asarray(Image.open(io.BytesIO(base64.b64decode(b64))).convert(mode))


def _encode(array: np.ndarray) -> str:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format="PNG")
    return base64.b64encode(buf.getvalue()).decode("ascii")


def overlay(image_b64: str, map_b64: str, alpha: float = 0.5) -> str:
    """The anomaly map colour-mapped and blended over the input (the paper's Fig. 6/7), as base64 PNG."""
    from matplotlib import colormaps

    rgb = _decode(image_b64, "RGB").astype(float) / 255
    heat = _decode(map_b64, "L").astype(float) / 255
    if heat.shape != rgb.shape[:2]:  # records keep both at GALLERY_SIZE; be safe with older ones
        from PIL import Image

        heat = np.asarray(Image.fromarray((heat * 255).astype(np.uint8)).resize(rgb.shape[1::-1])) / 255
    colour = colormaps[GALLERY_CMAP](heat)[..., :3]
    blended = ((1 - alpha) * rgb + alpha * colour).clip(0, 1)
    return _encode((blended * 255).round().astype(np.uint8))


def colorbar_css(stops: int = 9) -> str:
    """CSS gradient of the overlay colormap: the colour bar beside each overlay, without an image."""
    from matplotlib import colormaps

    cmap = colormaps[GALLERY_CMAP]
    colours = [cmap(i / (stops - 1)) for i in range(stops)]
    return "linear-gradient(to top, " + ", ".join(
        f"rgb({round(255 * r)},{round(255 * g)},{round(255 * b)})" for r, g, b, _ in colours) + ")"


def _g(v) -> str:
    return f"{v:.3g}" if isinstance(v, (int, float)) else "?"


def gallery(record: RunRecord) -> list[dict]:
    """A record's gallery entries ready for the template (unreadable PNGs are left out, not fatal)."""
    out = []
    for e in record.gallery:
        try:
            lo, hi = (list(e.get("map_range") or []) + [None, None])[:2]
            out.append({"path": e.get("path", "?"), "label": {1: "anomalous", 0: "normal"}.get(e.get("label"), "?"),
                        "score": _g(e.get("score")), "lo": _g(lo), "hi": _g(hi), "image": png_uri(e["image_png"]),
                        "mask": png_uri(e["mask_png"]) if e.get("mask_png") else None,
                        "overlay": png_uri(overlay(e["image_png"], e["map_png"]))})
        except (KeyError, ValueError, TypeError, OSError):
            continue
    return out


def galleries(records: list[RunRecord]) -> list[dict]:
    """Fig. 6/7 style: per protocol/category, the gallery of the run closest to the paper's setting
    (one run per category keeps a 200-run report at a few MB)."""
    def paper_likeness(r: RunRecord) -> tuple:
        c = r.config
        return (c.backbone != "wide_resnet50_2", c.image_size != 256, c.bottleneck != "pre+oce+mff",
                c.layers != (1, 2, 3), r.random_teacher, c.seed)

    best: dict[str, RunRecord] = {}
    for r in records:
        if r.ok and r.gallery:
            key = category_key(r.config)
            if key not in best or paper_likeness(r) < paper_likeness(best[key]):
                best[key] = r
    out = []
    for key in sorted(best):
        r = best[key]
        entries = gallery(r)
        if entries:
            out.append({"name": key, "run": run_label(r.config), "hash": r.config_hash, "random": r.random_teacher,
                        "entries": entries})
    return out
