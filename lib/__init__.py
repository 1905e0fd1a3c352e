"""Shared library of the book "Attractors and smoothness in RNN training".

One module per idea (see DESIGN.md): ``models`` (RNNs as state-space maps f, g),
``dynamics`` (simulation, Lyapunov spectra, orbit diagrams), ``plotting`` (the book's
figures), and the modules of the later chapters.
"""

from __future__ import annotations

import random

import numpy as np
import torch

__all__ = ["seed_everything"]


def seed_everything(seed: int = 0) -> torch.Generator:
    """Seed Python, NumPy and torch; return a ``torch.Generator`` seeded with ``seed``.

    Chapters call this in their first cell so that every run shows the same numbers.
    """
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)
