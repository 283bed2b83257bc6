"""Which float arithmetic this process's kernels do: a hash of the exact bits of a few float32 operations the RD
model is built from. Two machines with the same torch and instruction set can still round differently: oneDNN
and MKL pick their blocking (and so the order of a sum) by the CPU's cache sizes and model, and training turns a
last-bit difference into a change like a new seed (docs/parity.md). Seed 111 of the FashionMNIST baseline gave
class 1 an AUROC of 97.7 on one AVX512 machine and 94.5 on another, both "AVX512" to torch. A baseline holds a
rerun to its seeds' values only where the hash is the same. Equal hashes are evidence, not proof, that training
rounds alike: a shape the probe lacks could still be blocked otherwise, and the check would then say so as a
regression of a rerun (results/baselines/README.md says how to re-save)."""

from __future__ import annotations

import functools
import hashlib

import torch
import torch.nn.functional as F
import torchvision


def arithmetic_fingerprint(device: torch.device | str = "cpu") -> str:
    """12 hex digits; the same for every process on one machine, torch build and thread count."""
    device = torch.device(device)
    return _probe(str(device), torch.get_num_threads() if device.type == "cpu" else 0)


@functools.cache
def _probe(device: str, threads: int) -> str:
    g = torch.Generator().manual_seed(0)

    def rand(*shape: int) -> torch.Tensor:
        return torch.randn(*shape, generator=g).to(device)

    # the model's own work: 3x3 convolutions in both memory layouts and their weight gradient, a one-pixel
    # convolution as a matrix product (the 32 px step), a strided transposed convolution (the decoder's
    # upsampling), batch norm in training mode, a long reduction (the losses), and a resnet18 forward and backward
    # pass at 32 px, which runs every convolution shape family of the teacher (oneDNN blocks per shape, so a
    # probe of few shapes could agree where training differs); about 0.5 s, once per process
    with torch.no_grad():
        x, w = rand(2, 64, 32, 32), rand(128, 64, 3, 3)
        outs = [rand(96, 2304) @ rand(2304, 512), F.conv2d(x, w, padding=1),
                F.conv2d(x.contiguous(memory_format=torch.channels_last), w, padding=1),
                F.conv_transpose2d(rand(2, 128, 16, 16), rand(128, 64, 2, 2), stride=2),
                F.batch_norm(x, None, None, training=True), rand(1 << 20).sum()]
    w.requires_grad_(True)
    F.conv2d(x, w, padding=1).square().mean().backward()
    outs.append(w.grad)
    # its initialisation must not move the runs' random streams: built on the CPU from the CPU generator only
    # (torch.manual_seed would also seed, or queue a seed for, every CUDA device), which fork_rng restores
    with torch.random.fork_rng(devices=[]):
        torch.default_generator.manual_seed(0)
        net = torchvision.models.resnet18(num_classes=8).to(device)
    y = net(rand(2, 3, 32, 32))
    y.square().mean().backward()
    outs += [y, net.conv1.weight.grad, net.layer4[1].conv2.weight.grad]
    h = hashlib.sha256()
    for t in outs:
        h.update(t.detach().float().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:12]
