"""Argument and result checks shared by every module of ``lib``: THE validation layer.

The contract of every public function of ``lib`` (tested by ``tests/test_contract.py``):
it returns finite values of the documented shape, or raises ``ValueError`` / ``TypeError``
naming the argument and what was expected. Never a silent NaN or inf, never a result that
broadcasting or an integer dtype made wrong, never torch's internal message.

* Arguments: :func:`check_tensor` (one entry point: a tensor, its dtype kind, its number of
  dimensions, its last dimension, finite entries), :func:`check_broadcast`,
  :func:`check_same_dtype`, :func:`check_callable`, the number checks
  (:func:`check_positive_int`, :func:`check_real`, ...).
* Results: :func:`check_finite_result` names the members of a batch that failed (a
  diverging orbit, a non-finite Jacobian) by their indices. Exponents of ``-inf`` (a
  direction that collapsed exactly: a superstable orbit) are legitimate where a function
  says so (``allow_neginf``), and accepted consistently by every function that takes or
  returns Lyapunov exponents.

A wrong *type* raises :class:`ArgumentTypeError`, which is both a ``TypeError`` and a
``ValueError``, so callers that catch either see it.
"""

from __future__ import annotations

import math
from numbers import Real
from typing import Any, Callable, Mapping, Sequence

import torch

__all__ = [
    "ArgumentTypeError",
    "check_tensor",
    "check_finite",
    "check_float",
    "check_last_dim",
    "check_min_ndim",
    "check_flat",
    "check_broadcast",
    "check_same_dtype",
    "check_callable",
    "check_positive_int",
    "check_nonnegative_int",
    "check_int",
    "check_real",
    "check_positive_real",
    "check_finite_real",
    "check_choice",
    "check_finite_result",
    "format_indices",
]


class ArgumentTypeError(TypeError, ValueError):
    """An argument of the wrong type (a list or NumPy array where a tensor is expected, an
    integer dtype where floats are needed). Both a ``TypeError`` and a ``ValueError``."""


def _type_name(value: Any) -> str:
    t = type(value)
    return t.__name__ if t.__module__ == "builtins" else f"{t.__module__.split('.')[0]}.{t.__name__}"


def _not_a_tensor(name: str, value: Any) -> ArgumentTypeError:
    hint = ""
    if type(value).__module__.startswith("numpy") or isinstance(value, (list, tuple)):
        hint = " (convert it with torch.as_tensor)"
    return ArgumentTypeError(f"{name} must be a torch.Tensor, got {_type_name(value)}{hint}")


def check_tensor(name: str, value: Any, *, floating: bool = False, integer: bool = False,
                 ndim: int | None = None, min_ndim: int | None = None, last: int | None = None,
                 finite: bool = True, nonempty: bool = False, allow_neginf: bool = False,
                 what: str = "") -> torch.Tensor:
    """Raise unless ``value`` is a tensor as described; return it.

    ``floating``: a floating-point dtype (an integer tensor would silently give integer
    arithmetic). ``integer``: an integer dtype (token ids, class indices). ``ndim`` /
    ``min_ndim``: the number of dimensions; ``last``: the size of the last one. ``finite``:
    no NaN or inf entries (``-inf`` allowed with ``allow_neginf``). ``what`` describes the
    expected shape in messages, e.g. ``"(N, Nu)"``.
    """
    if not isinstance(value, torch.Tensor):
        raise _not_a_tensor(name, value)
    shape = f" {what}" if what else ""
    if floating and not value.is_floating_point():
        raise ArgumentTypeError(f"{name} must be a floating-point tensor{shape}, got dtype "
                                f"{value.dtype} (convert it with .double() or .float())")
    if integer and (value.is_floating_point() or value.is_complex() or value.dtype == torch.bool):
        raise ArgumentTypeError(f"{name} must be an integer tensor{shape} (torch.long), got "
                                f"dtype {value.dtype}")
    if ndim is not None and value.dim() != ndim:
        raise ValueError(f"{name} must have {ndim} dimension(s){shape}, got shape "
                         f"{tuple(value.shape)}")
    if min_ndim is not None and value.dim() < min_ndim:
        raise ValueError(f"{name} must have at least {min_ndim} dimension(s){shape}, got shape "
                         f"{tuple(value.shape)}")
    if last is not None:
        if value.dim() < 1 or value.shape[-1] != last:
            raise ValueError(f"{name} must have shape {what or f'(..., {last})'}, got "
                             f"{tuple(value.shape)}")
    if nonempty and value.numel() == 0:
        raise ValueError(f"{name} must not be empty, got shape {tuple(value.shape)}")
    if finite and (value.is_floating_point() or value.is_complex()):
        bad = torch.isnan(value) | torch.isposinf(value) if allow_neginf and not value.is_complex() \
            else ~torch.isfinite(value)
        if bool(bad.any()):
            kind = "NaN or +inf" if allow_neginf else "NaN or inf"
            raise ValueError(f"{name} must be finite; it contains {int(bad.sum())} {kind} "
                             f"entr{'y' if int(bad.sum()) == 1 else 'ies'}")
    return value


def check_finite(name: str, value: Any) -> torch.Tensor:
    """Raise unless ``value`` is a tensor whose entries are all finite."""
    return check_tensor(name, value)


def check_float(name: str, value: Any, *, finite: bool = True) -> torch.Tensor:
    """Raise unless ``value`` is a floating-point tensor (with finite entries)."""
    return check_tensor(name, value, floating=True, finite=finite)


def check_min_ndim(name: str, value: torch.Tensor, ndim: int) -> torch.Tensor:
    return check_tensor(name, value, min_ndim=ndim, finite=False)


def check_last_dim(name: str, value: torch.Tensor, size: int) -> torch.Tensor:
    """Raise unless ``value`` has shape ``(..., size)``."""
    return check_tensor(name, value, last=size, finite=False)


def check_flat(name: str, value: Any, size: int | None = None) -> torch.Tensor:
    """Raise unless ``value`` is one-dimensional (optionally of a given length)."""
    if not isinstance(value, torch.Tensor):
        raise _not_a_tensor(name, value)
    if value.dim() != 1:
        raise ValueError(f"{name} must be a flat (1-D) tensor, got shape {tuple(value.shape)}")
    if size is not None and value.numel() != size:
        raise ValueError(f"{name} must have {size} entries, got {value.numel()}")
    return value


def check_broadcast(**shapes: Sequence[int]) -> torch.Size:
    """The broadcast of the named batch shapes; raise naming them all when they do not fit.

    Used where broadcasting would otherwise hide a shape error (a batch of 3 states under a
    batch of 4 inputs) or turn it into torch's internal message.
    """
    try:
        return torch.broadcast_shapes(*(tuple(s) for s in shapes.values()))
    except RuntimeError:
        listed = ", ".join(f"{k} {tuple(v)}" for k, v in shapes.items())
        raise ValueError(f"the batch shapes of {', '.join(shapes)} do not broadcast: "
                         f"{listed}") from None


def check_same_dtype(ref_name: str, ref: torch.Tensor, **others: torch.Tensor) -> None:
    """Raise unless every tensor of ``others`` has ``ref``'s dtype."""
    for name, value in others.items():
        if value.dtype != ref.dtype:
            raise ArgumentTypeError(f"{name} must have {ref_name}'s dtype {ref.dtype}, got "
                                    f"{value.dtype}")


def check_callable(name: str, value: Any, what: str = "") -> Any:
    if not callable(value):
        raise ArgumentTypeError(f"{name} must be callable{' ' + what if what else ''}, got "
                                f"{_type_name(value)}")
    return value


def check_int(name: str, value: Any, *, lo: int | None = None, hi: int | None = None) -> int:
    """Raise unless ``value`` is an integer (not a bool) in ``[lo, hi]``."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise ArgumentTypeError(f"{name} must be an integer, got {value!r}")
    if (lo is not None and value < lo) or (hi is not None and value > hi):
        rng = f">= {lo}" if hi is None else f"<= {hi}" if lo is None else f"in [{lo}, {hi}]"
        raise ValueError(f"{name} must be an integer {rng}, got {value!r}")
    return value


def check_positive_int(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return value


def check_nonnegative_int(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"{name} must be a non-negative integer, got {value!r}")
    return value


def check_real(name: str, value: Any, *, lo: float | None = None, hi: float | None = None,
               lo_open: bool = False, hi_open: bool = False) -> float:
    """Raise unless ``value`` is one finite real number (not a bool) in the given range."""
    if isinstance(value, bool) or not isinstance(value, Real):
        if isinstance(value, torch.Tensor) and value.numel() == 1 and value.is_floating_point():
            value = float(value)
        else:
            raise ArgumentTypeError(f"{name} must be a real number, got {value!r}")
    v = float(value)
    if not math.isfinite(v):
        raise ValueError(f"{name} must be finite, got {value!r}")
    if lo is not None and (v < lo or (lo_open and v == lo)):
        raise ValueError(f"{name} must be {'>' if lo_open else '>='} {lo}, got {value!r}")
    if hi is not None and (v > hi or (hi_open and v == hi)):
        raise ValueError(f"{name} must be {'<' if hi_open else '<='} {hi}, got {value!r}")
    return v


def _as_array(name: str, value: Any) -> torch.Tensor:
    if isinstance(value, torch.Tensor):
        return value
    if isinstance(value, bool) or isinstance(value, str):
        raise ArgumentTypeError(f"{name} must be a number or a tensor of numbers, got {value!r}")
    try:
        return torch.as_tensor(value, dtype=torch.float64)
    except (TypeError, ValueError, RuntimeError):
        raise ArgumentTypeError(f"{name} must be a number or a tensor of numbers, got "
                                f"{_type_name(value)}") from None


def check_finite_real(name: str, value: Any) -> None:
    """Raise unless ``value`` (a number or tensor of numbers) is finite."""
    arr = _as_array(name, value)
    if arr.dtype == torch.bool or arr.is_complex():
        raise ArgumentTypeError(f"{name} must hold real numbers, got dtype {arr.dtype}")
    if arr.numel() == 0:
        raise ValueError(f"{name} must hold at least one number, got an empty tensor")
    if not bool(torch.isfinite(arr).all()):
        raise ValueError(f"{name} must be finite, got {value!r}")


def check_positive_real(name: str, value: Any) -> None:
    """Raise unless ``value`` (a number or tensor of numbers) is finite and > 0."""
    check_finite_real(name, value)
    if not bool((_as_array(name, value) > 0).all()):
        raise ValueError(f"{name} must be > 0, got {value!r}")


def check_choice(name: str, value: Any, choices: Sequence[Any] | Mapping[Any, Any]) -> Any:
    try:
        ok = value in choices
    except TypeError:
        ok = False
    if not ok:
        raise ValueError(f"{name} must be one of {tuple(choices)}, got {value!r}")
    return value


def format_indices(mask: torch.Tensor, limit: int = 10) -> str:
    """``"[0, 3] (2 of 8)"``: the indices where ``mask`` is true (tuples beyond 1-D)."""
    idx = mask.nonzero()
    items = [int(i[0]) if idx.shape[1] == 1 else tuple(int(j) for j in i) for i in idx[:limit]]
    more = ", ..." if idx.shape[0] > limit else ""
    return f"{str(items)[:-1]}{more}] ({idx.shape[0]} of {mask.numel()})"


def check_finite_result(what: str, value: torch.Tensor, *, batch_dims: int = 0,
                        lead: int = 0, allow_neginf: bool = False, hint: str = "") -> torch.Tensor:
    """Raise unless the result ``value`` is finite; name the batch members that are not.

    The batch members are the dimensions ``lead .. lead + batch_dims - 1`` of ``value`` (the
    dimensions before ``lead`` are time or blocks, those after are per member). With
    ``batch_dims=0`` the message gives the number of bad entries only.
    """
    if not (value.is_floating_point() or value.is_complex()):
        return value
    bad = torch.isnan(value) | torch.isposinf(value) if allow_neginf else ~torch.isfinite(value)
    if not bool(bad.any()):
        return value
    if batch_dims:
        b = bad.movedim(tuple(range(lead, lead + batch_dims)), tuple(range(batch_dims)))
        b = b.reshape(*b.shape[:batch_dims], -1).any(-1)
        where = f" at batch indices {format_indices(b)}"
    else:
        where = f" ({int(bad.sum())} of {bad.numel()} entries)"
    raise ValueError(f"{what} is not finite{where}{': ' + hint if hint else ''}")
