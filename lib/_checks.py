"""Argument checks shared by every module of ``lib``.

Each check raises ``ValueError`` naming the argument and what was expected, so that bad
input never turns into a silent NaN further down a computation.
"""

from __future__ import annotations

from numbers import Real
from typing import Sequence

import torch

__all__ = [
    "check_finite",
    "check_last_dim",
    "check_min_ndim",
    "check_positive_int",
    "check_nonnegative_int",
    "check_positive_real",
    "check_finite_real",
    "check_flat",
]


def check_finite(name: str, value: torch.Tensor) -> torch.Tensor:
    """Raise unless ``value`` is a tensor whose entries are all finite."""
    if not isinstance(value, torch.Tensor):
        raise ValueError(f"{name} must be a torch.Tensor, got {type(value).__name__}")
    if value.is_floating_point() or value.is_complex():
        if not bool(torch.isfinite(value).all()):
            raise ValueError(f"{name} must be finite; it contains NaN or inf entries")
    return value


def check_min_ndim(name: str, value: torch.Tensor, ndim: int) -> torch.Tensor:
    if value.dim() < ndim:
        raise ValueError(
            f"{name} must have at least {ndim} dimension(s), got shape {tuple(value.shape)}"
        )
    return value


def check_last_dim(name: str, value: torch.Tensor, size: int) -> torch.Tensor:
    """Raise unless ``value`` has shape ``(..., size)``."""
    check_min_ndim(name, value, 1)
    if value.shape[-1] != size:
        raise ValueError(
            f"{name} must have shape (..., {size}), got {tuple(value.shape)}"
        )
    return value


def check_flat(name: str, value: torch.Tensor, size: int | None = None) -> torch.Tensor:
    """Raise unless ``value`` is one-dimensional (optionally of a given length)."""
    if not isinstance(value, torch.Tensor):
        raise ValueError(f"{name} must be a torch.Tensor, got {type(value).__name__}")
    if value.dim() != 1:
        raise ValueError(f"{name} must be a flat (1-D) tensor, got shape {tuple(value.shape)}")
    if size is not None and value.numel() != size:
        raise ValueError(f"{name} must have {size} entries, got {value.numel()}")
    return value


def check_positive_int(name: str, value: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return value


def check_nonnegative_int(name: str, value: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"{name} must be a non-negative integer, got {value!r}")
    return value


def _as_array(value: Real | Sequence[float] | torch.Tensor) -> torch.Tensor:
    if isinstance(value, torch.Tensor):
        return value
    return torch.as_tensor(value, dtype=torch.float64)


def check_finite_real(name: str, value) -> None:
    """Raise unless ``value`` (a number or tensor of numbers) is finite."""
    arr = _as_array(value)
    if not bool(torch.isfinite(arr).all()):
        raise ValueError(f"{name} must be finite, got {value!r}")


def check_positive_real(name: str, value) -> None:
    """Raise unless ``value`` (a number or tensor of numbers) is finite and > 0."""
    check_finite_real(name, value)
    arr = _as_array(value)
    if not bool((arr > 0).all()):
        raise ValueError(f"{name} must be > 0, got {value!r}")


