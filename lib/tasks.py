"""Data of the book's training experiments (supplement D, "Additional Experiments").

* :func:`symbol_classification`: the long-memory classification task of Supplementary
  Figures 2-4. Each sequence is a string of one-hot vectors: a random *distractor* at every
  step except one *symbol* placed at a random position inside each window; the class is
  the symbols read as a base-``n_symbols`` number (first window = most significant digit).
  Only the last output is scored, so the network must remember the symbols across the
  distractors: it has to learn one stable attractor per class.
* :func:`sine_generation`: a constant input ``u_t = ω`` and the target ``y_t = sin(Σ_{k<=t} ω)
  = sin(ω (t + 1))``. A network that generates the sine for every ω in a range must turn its
  fixed point into a limit cycle whose frequency is set by the input.

Time is the first dimension everywhere, as in ``torch.nn.LSTM``: inputs ``(T, B, Nu)``.
"""

from __future__ import annotations

import math
from typing import Sequence

import torch
from torch import Tensor

from ._checks import ArgumentTypeError, check_nonnegative_int, check_positive_int, check_real, check_tensor
from .corpus import Corpus, load_wikitext2  # the WikiText-2 task lives in lib/corpus.py

__all__ = ["symbol_classification", "check_windows", "sine_generation", "sine_frequencies",
           "load_wikitext2", "Corpus"]


def _whole(v) -> int:
    if isinstance(v, bool) or not float(v).is_integer():
        raise ValueError(v)
    return int(v)


def check_windows(windows: Sequence[Sequence[int]], seq_len: int) -> tuple[tuple[int, int], ...]:
    """Validate half-open windows ``[a, b)``: inside ``[0, seq_len)``, non-empty, disjoint."""
    check_positive_int("seq_len", seq_len)
    try:
        ws = tuple((_whole(a), _whole(b)) for a, b in windows)
    except (TypeError, ValueError):
        raise ValueError(f"windows must be a sequence of (start, stop) pairs, got {windows!r}") from None
    if not ws:
        raise ValueError("windows must hold at least one (start, stop) pair")
    for a, b in ws:
        if not 0 <= a < b <= seq_len:
            raise ValueError(
                f"windows must satisfy 0 <= start < stop <= seq_len={seq_len}; got ({a}, {b})"
            )
    ordered = sorted(ws)
    for (a0, b0), (a1, b1) in zip(ordered, ordered[1:]):
        if a1 < b0:
            raise ValueError(f"windows must not overlap; ({a0}, {b0}) and ({a1}, {b1}) do")
    return ws


def symbol_classification(
    n_sequences: int,
    seq_len: int,
    *,
    n_symbols: int = 2,
    n_distractors: int = 4,
    windows: Sequence[Sequence[int]] = ((9, 19), (39, 49)),
    seed: int = 0,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str = "cpu",
) -> tuple[Tensor, Tensor]:
    """Sequences of the symbol-classification task and their classes.

    Input channels ``0 .. n_symbols-1`` are the symbols, ``n_symbols ..`` the distractors.
    In window ``w = [a, b)`` one symbol ``s_w`` (uniform over the symbols) sits at a uniform
    position; every other step holds a uniform distractor (a zero vector if
    ``n_distractors == 0``). The class is ``Σ_w s_w n_symbols^(W-1-w)``, one of
    ``n_symbols ** W`` classes for W windows.

    Returns:
        ``u`` of shape ``(seq_len, n_sequences, n_symbols + n_distractors)`` (one-hot) and
        ``y`` of shape ``(n_sequences,)`` (``torch.long`` class indices).
    """
    check_positive_int("n_sequences", n_sequences)
    check_positive_int("seq_len", seq_len)
    if isinstance(n_symbols, bool) or not isinstance(n_symbols, int) or n_symbols < 1:
        raise ValueError(f"n_symbols must be an integer >= 1, got {n_symbols!r}")
    check_nonnegative_int("n_distractors", n_distractors)
    check_nonnegative_int("seed", seed)
    if not (isinstance(dtype, torch.dtype) and dtype.is_floating_point):
        raise ArgumentTypeError(f"dtype must be a floating-point torch.dtype, got {dtype!r}")
    ws = check_windows(windows, seq_len)
    gen = torch.Generator(device="cpu").manual_seed(seed)
    n_in = n_symbols + n_distractors
    if n_distractors > 0:
        channel = n_symbols + torch.randint(n_distractors, (seq_len, n_sequences), generator=gen)
    else:
        channel = torch.full((seq_len, n_sequences), -1, dtype=torch.long)
    symbols = torch.randint(n_symbols, (len(ws), n_sequences), generator=gen)
    cols = torch.arange(n_sequences)
    y = torch.zeros(n_sequences, dtype=torch.long)
    for w, (a, b) in enumerate(ws):
        pos = torch.randint(a, b, (n_sequences,), generator=gen)
        channel[pos, cols] = symbols[w]
        y = y * n_symbols + symbols[w]
    u = torch.zeros(seq_len, n_sequences, n_in, dtype=dtype)
    has = channel >= 0
    u[has, channel[has]] = 1
    return u.to(device), y.to(device)


def sine_frequencies(n: int = 100, low: float = math.pi / 16, high: float = math.pi / 8,
                     *, dtype: torch.dtype = torch.float32) -> Tensor:
    """The reference frequencies ``ω``: ``linspace(π/16, π/8, n)`` (DESIGN.md)."""
    check_positive_int("n", n)
    check_real("low", low)
    check_real("high", high)
    if not (isinstance(dtype, torch.dtype) and dtype.is_floating_point):
        raise ArgumentTypeError(f"dtype must be a floating-point torch.dtype, got {dtype!r}")
    if not (math.isfinite(low) and math.isfinite(high) and 0 < low <= high):
        raise ValueError(f"low and high must satisfy 0 < low <= high, got {low}, {high}")
    return torch.linspace(low, high, n, dtype=dtype)


def sine_generation(omegas: Tensor, seq_len: int, *,
                    device: torch.device | str = "cpu") -> tuple[Tensor, Tensor]:
    """The sine-generation task: constant input ``ω``, target ``sin(Σ ω) = sin(ω (t+1))``.

    Args:
        omegas: frequencies ``(B,)`` in radians per step (finite, > 0).
        seq_len: number of steps T.

    Returns:
        ``u`` of shape ``(T, B, 1)`` (``u_t = ω``) and ``y`` of shape ``(T, B, 1)`` with
        ``y_t = sin(Σ_{k=0}^{t} u_k)``, in the dtype of ``omegas``.
    """
    check_tensor("omegas", omegas, floating=True, what="(B,)")
    if omegas.dim() != 1 or omegas.numel() == 0:
        raise ValueError(f"omegas must be a non-empty 1-D tensor, got shape {tuple(omegas.shape)}")
    if not bool((omegas > 0).all()):
        raise ValueError("omegas must be > 0 (radians per step)")
    check_positive_int("seq_len", seq_len)
    u = omegas.reshape(1, -1, 1).expand(seq_len, -1, 1).contiguous()
    y = torch.sin(torch.cumsum(u.double(), dim=0)).to(omegas.dtype)
    return u.to(device), y.to(device)
