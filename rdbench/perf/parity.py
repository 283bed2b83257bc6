"""Fingerprint of the model for a seed and input, in the format measured on the authors' code.

docs/parity.md ("Proof that the model is the authors'") describes how the official fingerprints in tests/data
were made; this module repeats exactly those steps on rdbench's model so the two can be compared.
"""

from __future__ import annotations

import numpy as np
import torch
from scipy.ndimage import gaussian_filter

from rdbench.engine.losses import flat_cosine_loss
from rdbench.engine.scoring import anomaly_maps
from rdbench.models.rd import build_rd_model

UNUSED_OCBE = ("conv4.", "bn4.")  # built and counted by the authors, never used in forward

# Tolerances stated with the official fingerprints (their README): init sums ~1e-4 absolute,
# eval numbers ~1e-5 relative, the three training losses ~1e-4 relative, on a CPU.
TOLERANCES = {"init_abs": 1e-4, "eval_rel": 1e-5, "train_rel": 1e-4}
# Training steps after the first are chaotic in the float rounding of the backward pass: Adam's first
# step moves every weight by about lr * sign(grad), so gradients that are zero up to rounding take
# either sign depending on the CPU kernels. On one machine, switching oneDNN off moves step 3 of
# resnet18 by 3e-4 relative; the official numbers differ from ours by at most 2.5e-3 (resnet50, step 3)
# while step 1 agrees to 1e-7. Steps 2+ are therefore held to this looser bound (docs/parity.md).
CHAOTIC_STEP_REL = 5e-3
# In float64 nothing is chaotic: the authors' code and rdbench agree on every field, steps 2-3 included, to
# float64 rounding of differently ordered sums (docs/parity.md); FLOAT64_ABS covers fields that are ~0.
FLOAT64_REL, FLOAT64_ABS = 1e-9, 1e-12
DTYPES = {"float32": torch.float32, "float64": torch.float64}


def _stats(t: torch.Tensor) -> list[float]:
    d = t.detach().double()
    return [float(d.sum()), float((d * d).sum())]


def _param_table(module: torch.nn.Module) -> list[list]:
    return [[name, list(t.shape), *_stats(t)] for name, t in module.state_dict().items()
            if not name.endswith("num_batches_tracked")]


def _aggregate(table: list[list], prefix: str, skip: tuple[str, ...], module: torch.nn.Module) -> dict:
    used = [row for row in table if not row[0].startswith(skip)]
    params = [p for n, p in module.named_parameters() if not n.startswith(skip)]
    return {f"{prefix}_used_sum": sum(r[2] for r in used), f"{prefix}_used_sumsq": sum(r[3] for r in used),
            f"{prefix}_used_param_count": sum(p.numel() for p in params)}


def fingerprint(backbone: str, seed: int = 111, input_shape: tuple[int, ...] = (2, 3, 256, 256),
                input_seed: int = 0, train_steps: int = 3, dtype: str = "float32") -> dict:
    """Build with a random teacher (as the official fingerprints do), then measure init, eval and a
    few training steps on one random input. Runs on the CPU, where the official numbers were made.
    ``dtype="float64"``: built in float32 from the seed (the same initial weights), then model and input cast
    to float64 for the eval block and the training steps, as the official float64 fingerprints were made."""
    if dtype not in DTYPES:
        raise ValueError(f"unknown dtype {dtype!r}; valid dtypes: {', '.join(DTYPES)}")
    torch.manual_seed(seed)
    model = build_rd_model(backbone, weights="none")
    ocbe, decoder = model.bottleneck, model.decoder
    ocbe_table, dec_table = _param_table(ocbe), _param_table(decoder)
    record: dict = {"backbone": backbone, "seed": seed, "input_shape": list(input_shape),
                    "input_seed": input_seed, "dtype": dtype, "ocbe_params": ocbe_table, "decoder_params": dec_table,
                    "ocbe_param_count": sum(p.numel() for p in ocbe.parameters()),
                    "decoder_param_count": sum(p.numel() for p in decoder.parameters())}
    torch.manual_seed(input_seed)
    x = torch.randn(*input_shape)  # drawn in float32, like the weights, then cast: the same values
    model.to(DTYPES[dtype])
    x = x.to(DTYPES[dtype])

    model.eval()
    with torch.no_grad():
        t = model.teacher(x)
        emb = ocbe(t)
        s = decoder(emb)
        record["eval_teacher_feature_stats"] = [_stats(f) for f in t]
        record["eval_embedding_stats"] = _stats(emb)
        record["eval_student_feature_stats"] = [_stats(f) for f in s]
        record["eval_loss"] = float(flat_cosine_loss(t, s))
        raw = anomaly_maps(t, s, input_shape[-2:])[0].double().numpy()
        smooth = gaussian_filter(raw, sigma=4)
        record["eval_map0_raw"] = [float(raw.max()), float(raw.mean())]
        record["eval_map0_smoothed"] = [float(smooth.max()), float(smooth.mean())]

    ocbe.train()
    decoder.train()
    opt = torch.optim.Adam(model.trainable_parameters(), lr=0.005, betas=(0.5, 0.999))
    losses = []
    for _ in range(train_steps):
        with torch.no_grad():
            t = model.teacher(x)
        loss = flat_cosine_loss(t, model.student(t))
        losses.append(float(loss.detach()))
        opt.zero_grad()
        loss.backward()
        opt.step()
    record["train_losses_3_steps"] = losses
    record.update(_aggregate(ocbe_table, "ocbe", UNUSED_OCBE, ocbe))
    record.update(_aggregate(dec_table, "decoder", (), decoder))
    return record


def compare(ours: dict, official: dict) -> list[str]:
    """Every field of ``official`` that ``ours`` misses beyond the stated tolerance, as messages. A float64
    record (``dtype``) is held to FLOAT64_REL on every field it has, the three training steps included."""
    bad: list[str] = []
    if official.get("dtype", "float32") != ours.get("dtype", "float32"):
        return [f"dtype: {ours.get('dtype', 'float32')} != official {official.get('dtype', 'float32')}"]

    def close(name, a, b, rel=None, abs_=None):
        a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
        if a.shape != b.shape:
            bad.append(f"{name}: shape {a.shape} != official {b.shape}")
            return
        tol = (abs_ or 0.0) + (rel or 0.0) * np.abs(b)
        if not np.all(np.abs(a - b) <= tol):
            bad.append(f"{name}: {a.tolist()} != official {b.tolist()}")

    if official.get("dtype") == "float64":
        for key in ("eval_teacher_feature_stats", "eval_embedding_stats", "eval_student_feature_stats",
                    "eval_loss", "eval_map0_raw", "eval_map0_smoothed", "train_losses_3_steps"):
            close(key, ours[key], official[key], rel=FLOAT64_REL, abs_=FLOAT64_ABS)
        return bad
    for key in ("ocbe_param_count", "decoder_param_count", "ocbe_used_param_count", "decoder_used_param_count"):
        if ours[key] != official[key]:
            bad.append(f"{key}: {ours[key]} != official {official[key]}")
    for table in ("ocbe_params", "decoder_params"):
        mine = {r[0]: r for r in ours[table]}
        for name, shape, s, ss in official[table]:
            if name not in mine:
                bad.append(f"{table}: official tensor {name} missing")
                continue
            if list(mine[name][1]) != list(shape):
                bad.append(f"{table}.{name}: shape {mine[name][1]} != official {shape}")
            # sums of up to millions of terms: absolute 1e-4 plus float64-printing headroom
            close(f"{table}.{name}", mine[name][2:], [s, ss], rel=1e-6, abs_=TOLERANCES["init_abs"])
        if len(mine) != len(official[table]):
            bad.append(f"{table}: {len(mine)} tensors != official {len(official[table])}")
    for key in ("ocbe_used_sum", "ocbe_used_sumsq", "decoder_used_sum", "decoder_used_sumsq"):
        close(key, ours[key], official[key], rel=1e-6, abs_=TOLERANCES["init_abs"])
    for key in ("eval_teacher_feature_stats", "eval_embedding_stats", "eval_student_feature_stats",
                "eval_loss", "eval_map0_raw", "eval_map0_smoothed"):
        close(key, ours[key], official[key], rel=TOLERANCES["eval_rel"])
    got, want = ours["train_losses_3_steps"], official["train_losses_3_steps"]
    close("train_losses_3_steps[0]", got[:1], want[:1], rel=TOLERANCES["train_rel"])
    close("train_losses_3_steps[1:]", got[1:], want[1:], rel=CHAOTIC_STEP_REL)
    return bad
