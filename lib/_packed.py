"""Affine maps whose weight is packed once, for loops that apply it at every step.

An orbit of the language model's feedback map applies the decoder (V x H) to a few rows,
one per orbit, at every step: 15 rows and 1,600 steps per record at the book's mid
scale. On the CPU such a thin product spends about half its time reading the weight in a
layout the kernel does not want. oneDNN, the CPU library behind PyTorch's ``mkldnn``
operators (the kernels that ``torch.compile`` uses for frozen linear layers on the CPU),
packs the weight once into the kernel's own layout. ``benchmarks/bench_packed_linear.py``
measures the gain (about 2x for the decoder on this book's CPU machine).

The packed product is the same affine map with another summation order, so it differs
from ``torch.nn.functional.linear`` by float rounding (about 1e-6 relative in float32).
Where oneDNN cannot serve (not the CPU, not float32, a torch without these operators) or
a check on random rows at packing time disagrees with ``linear`` beyond rounding, the map
is ``torch.nn.functional.linear`` itself.
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import Tensor

from ._checks import ArgumentTypeError, check_tensor

__all__ = ["packed_linear"]


def _onednn_ops():
    """The namespace of oneDNN's packed-linear operators in this torch, or None."""
    if not torch.backends.mkldnn.is_available():
        return None
    for name in ("mkldnn", "onednn"):  # the namespace's name differs across versions
        ops = getattr(torch.ops, name, None)
        if hasattr(ops, "_reorder_linear_weight") and hasattr(ops, "_linear_pointwise"):
            return ops
    return None


def packed_linear(weight: Tensor, bias: Tensor | None = None, *,
                  pack: bool = True) -> Callable[[Tensor], Tensor]:
    """``x (..., n_in) -> x @ weight.T + bias``, shape ``(..., n_out)``, weight packed once.

    ``weight`` is ``(n_out, n_in)`` and ``bias`` ``(n_out,)`` or None, both floating
    point; they are detached and copied now (build a new map after they change). The
    weight is packed by oneDNN at the first call, for that call's number of rows, when
    ``pack`` is true and oneDNN serves this weight (CPU, float32); otherwise, and when a
    check of the packed product against ``torch.nn.functional.linear`` on random rows
    differs by more than ``1e-4`` relative, the map is ``linear``. The map's attribute
    ``packed`` says which (None before the first call). Not differentiable: for loops
    under ``torch.no_grad``.

    Raises ``ValueError`` / ``TypeError`` for a weight that is not a 2-D floating tensor,
    a bias of the wrong shape, or inputs whose last dimension is not ``n_in``.
    """
    check_tensor("weight", weight, floating=True, ndim=2, what="(n_out, n_in)")
    n_out, n_in = weight.shape
    if bias is not None:
        check_tensor("bias", bias, floating=True, ndim=1, last=n_out, what=f"({n_out},)")
        if bias.dtype != weight.dtype:
            raise ArgumentTypeError(f"bias must have the weight's dtype {weight.dtype}, got "
                                    f"{bias.dtype}")
    if not isinstance(pack, bool):
        raise ArgumentTypeError(f"pack must be True or False, got {pack!r}")
    w = weight.detach().clone()
    b = None if bias is None else bias.detach().clone()
    state: dict[str, Tensor | None] = {}

    def linear(x: Tensor) -> Tensor:
        return torch.nn.functional.linear(x, w, b)

    def first_call(x: Tensor) -> Tensor:
        ops = _onednn_ops() if pack and w.device.type == "cpu" and w.dtype == torch.float32 \
            else None
        if ops is not None:
            rows = max(1, x.numel() // n_in)
            probe = torch.randn(rows, n_in, generator=torch.Generator().manual_seed(0),
                                dtype=w.dtype)
            want = linear(probe)
            try:
                packed = ops._reorder_linear_weight(w, rows)
                got = ops._linear_pointwise(probe, packed, b, "none", [], "")
            except RuntimeError:  # an operator this build or CPU cannot run: linear
                got = None
            if got is not None and got.shape == want.shape and torch.allclose(
                    got, want, rtol=1e-4, atol=1e-4 * float(want.abs().amax())):
                state["packed"], state["ops"] = packed, ops
        apply.packed = "packed" in state
        return apply(x)

    def apply(x: Tensor) -> Tensor:
        check_tensor("x", x, floating=True, last=n_in, finite=False, what=f"(..., {n_in})")
        if apply.packed is None:
            return first_call(x)
        if not apply.packed or x.dtype != w.dtype or x.device != w.device:
            return linear(x.to(w.dtype))
        return state["ops"]._linear_pointwise(x.contiguous(), state["packed"], b, "none", [], "")

    apply.packed = None
    return apply
