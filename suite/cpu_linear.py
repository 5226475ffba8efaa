"""fp32 linear layers on CPU through oneDNN, forward and backward.

PyTorch's ``F.linear`` on CPU calls MKL's sgemm. MKL picks its code path by CPU vendor, and on AMD CPUs it takes
a slower one: on a 2-core AMD EPYC (Zen 5, AVX-512) oneDNN, which ships inside every x86 PyTorch build,
multiplies the same fp32 matrices 1.3-3x faster (the 4194x256 LM head, weights from DRAM: 1 row 124 vs 337 us,
13 rows 219 vs 657 us; a training step's 2560 rows, forward + backward: 145 vs 229 ms). With the weight packed once
into oneDNN's blocked layout the cost of a few-row product barely grows with the rows, which is what makes
verifying several drafted tokens cost about what one token costs. ``benchmarks/linear_kernels.py`` prints both
kernels per shape, for decoding and for training, on any CPU.

Inference (no autograd) uses a packed copy of each weight, cached per weight tensor and rebuilt when the weight
changes (its version counter or storage), so a model that trains and then decodes in one process never multiplies
by stale weights. Training uses the weights as they are (they change every step) through :class:`_Linear`, whose
backward computes both gradients with oneDNN too. Results equal ``F.linear`` to float32 rounding (a different
summation order), not bit for bit. Under ``torch.compile`` (decoding's static-shape step) an inference product goes
through the custom op ``repro::onednn_linear``, which the compiler keeps as one opaque call on the same packed
weights (it cannot trace the packed layout itself; mini AR step compiled 1.52 vs eager 1.80 ms/token). Elsewhere
(GPU, other dtypes, autocast, builds without oneDNN) :func:`linear` is ``F.linear``.
"""
from __future__ import annotations

import os
import weakref

import torch
import torch.nn.functional as F


def available() -> bool:
    """Whether this PyTorch build has oneDNN's linear kernel (every x86-64 wheel does)."""
    return torch.backends.mkldnn.is_available() and hasattr(torch.ops.mkldnn, "_linear_pointwise")


ENABLED = available()
"""Module switch: False sends every call to ``F.linear`` (benchmarks compare the two in one process)."""

_PACKED: dict[int, tuple[weakref.ref, tuple[int, int], torch.Tensor, int]] = {}
"""id(weight) -> (weak reference to it, its version, packed copy, its bytes); an entry goes when its weight is freed."""


def _memory_bytes() -> int:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, OSError, ValueError):
        return 16 << 30


PACK_BUDGET = _memory_bytes() // 4
"""Packed copies double the weights' memory (a 7B model in fp32: 28 GB more). Past this many packed bytes, a quarter
of RAM, further weights are multiplied by oneDNN as they are: no copy, about halfway between packed and MKL (LM head,
1 row from DRAM: 124 packed, 203 unpacked, 337 us MKL)."""


def _onednn(x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """x [..., in] @ w [out, in]^T; ``w`` plain or packed."""
    return torch.ops.mkldnn._linear_pointwise.default(x, w, None, "none", [], "")


def _version(w: torch.Tensor) -> tuple[int, int]:
    try:
        return w._version, w.data_ptr()
    except RuntimeError:  # an inference-mode tensor has no version counter: it cannot change in place either
        return 0, w.data_ptr()


def packed(w: torch.Tensor) -> torch.Tensor:
    """``w`` [out, in] in oneDNN's blocked layout, packed once per version of ``w``; ``w`` itself once the packed
    copies would exceed ``PACK_BUDGET``."""
    key = _version(w)
    i = id(w)
    hit = _PACKED.get(i)
    if hit is not None and hit[0]() is w and hit[1] == key:
        return hit[2]
    _PACKED.pop(i, None)
    size = w.numel() * w.element_size()
    if sum(h[3] for h in _PACKED.values()) + size > PACK_BUDGET:
        return w
    with torch.no_grad():
        pk = torch.ops.mkldnn._reorder_linear_weight(w.detach())
    _PACKED[i] = (weakref.ref(w, lambda _, i=i: _PACKED.pop(i, None)), key, pk, size)
    return pk


class _Linear(torch.autograd.Function):
    """y = x w^T with oneDNN in both directions: dx = dy w, dw = dy^T x (the transposes are views)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(x, w)
        return _onednn(x, w)

    @staticmethod
    def backward(ctx, dy: torch.Tensor):
        x, w = ctx.saved_tensors
        dx = dw = None
        dy2 = dy.reshape(-1, dy.shape[-1])
        if ctx.needs_input_grad[0]:
            dx = _onednn(dy2, w.t()).view(x.shape)
        if ctx.needs_input_grad[1]:
            dw = _onednn(dy2.t(), x.reshape(-1, x.shape[-1]).t())
        return dx, dw


@torch.library.custom_op("repro::onednn_linear", mutates_args=())
def _compiled_linear(x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    return _onednn(x, packed(w))


@_compiled_linear.register_fake
def _(x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    return x.new_empty(*x.shape[:-1], w.shape[0])


def usable(x: torch.Tensor, w: torch.Tensor) -> bool:
    """An fp32 CPU product that oneDNN can take (not under autocast, which wants F.linear's bf16 cast)."""
    return (ENABLED and x.device.type == "cpu" and x.dtype == torch.float32 and w.dtype == torch.float32
            and x.dim() >= 2 and not torch.is_autocast_enabled("cpu"))


def linear(x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """``F.linear(x, w)`` without bias, through oneDNN where ``usable``."""
    if not usable(x, w):
        return F.linear(x, w)
    training = torch.is_grad_enabled() and (x.requires_grad or w.requires_grad)
    if torch.compiler.is_compiling():
        return F.linear(x, w) if training else _compiled_linear(x, w)
    return _Linear.apply(x, w) if training else _onednn(x, packed(w))
