"""Loss landscapes: the cost V(θ) of eq. (2) over whole batches of parameter vectors.

The cost of a recurrent model on one sequence is, in the book's 0-based convention
(``lib.dynamics.rollout``),

    V(θ) = (1/N) Σ_{t=0}^{N-1} l(ŷ_t(θ), y_t),   ŷ_t = g(x_t, u_t; θ),
    x_{t+1} = f(x_t, u_t; θ),                                             (eq. (1)-(2))

with ``l`` the squared error averaged over the output components by default. With a
burn-in of ``B`` steps the first ``B`` outputs are left out and the average runs over
t = B .. N-1 (the authors' code for supplement C compares h_101 .. h_200 of a run from
x_0: ``B = 101``, ``N = 201`` here). Supplement C
and Supplementary Figure 1 of the paper draw V on lines and planes through parameter
space, θ(s) = θ_0 + s d and θ(s1, s2) = θ_0 + s1 d1 + s2 d2, to show how rough it becomes
when the model is chaotic.

Everything here runs a *batch* of parameter vectors ``thetas`` of shape ``(..., Nθ)`` in a
single rollout: the models of :mod:`lib.models` broadcast a batch of θ against a batch of
states, so the only Python loop is the one over time. A plane of a million points is one
call (on a GPU), and the loop over grid points that one writes with ``torch.nn.LSTM`` is
gone (``benchmarks/bench_landscape.py`` times the two).

Also here: the largest Lyapunov exponent over the same batches (a thin wrapper around
:func:`lib.dynamics.largest_lyapunov`), and a count of the strict local minima of a
function sampled on a grid.
"""

from __future__ import annotations

import itertools
from typing import Callable, Sequence, Union

import torch
import torch.nn.functional as F
from torch import Tensor

from ._checks import (
    ArgumentTypeError,
    check_finite,
    check_finite_result,
    check_tensor,
    check_flat,
    check_last_dim,
    check_min_ndim,
    check_nonnegative_int,
    check_positive_int,
)
from .dynamics import largest_lyapunov
from .models import StateSpaceModel

__all__ = [
    "mse",
    "batched_cost",
    "line",
    "plane",
    "landscape_1d",
    "landscape_2d",
    "landscape_lyapunov",
    "local_minima",
    "count_local_minima",
]

Loss = Union[str, Callable[[Tensor, Tensor], Tensor]]
Grid = Union[Tensor, Sequence[float]]


def mse(y_hat: Tensor, y: Tensor) -> Tensor:
    """Squared error averaged over the output components: ``(..., Ny) -> (...)``."""
    return (y_hat - y).pow(2).mean(dim=-1)


_LOSSES: dict[str, Callable[[Tensor, Tensor], Tensor]] = {"mse": mse}


def _resolve_loss(loss: Loss) -> Callable[[Tensor, Tensor], Tensor]:
    if callable(loss):
        return loss
    if isinstance(loss, str) and loss in _LOSSES:
        return _LOSSES[loss]
    raise ValueError(f"loss must be one of {sorted(_LOSSES)} or a callable, got {loss!r}")


def _check_thetas(model: StateSpaceModel, thetas: Tensor, name: str = "thetas") -> Tensor:
    if not all(hasattr(model, a) for a in ("f", "g", "n_params", "nx", "nu", "ny")):
        raise ArgumentTypeError(f"model must be a lib.models state-space model, got "
                                f"{type(model).__name__}")
    check_tensor(name, thetas, floating=True, finite=False, what=f"(..., {model.n_params})")
    check_last_dim(name, thetas, model.n_params)
    if thetas.numel() == 0:
        raise ValueError(f"{name} must hold at least one parameter vector, got shape "
                         f"{tuple(thetas.shape)}")
    check_finite(name, thetas)
    return thetas


def _as_like(name: str, value, ref: Tensor) -> Tensor:
    """``value`` as a tensor on ``ref``'s dtype and device (numbers and lists accepted)."""
    if not isinstance(value, Tensor):
        try:
            value = torch.as_tensor(value, dtype=ref.dtype)
        except (TypeError, ValueError, RuntimeError):
            raise ValueError(f"{name} must be a tensor of numbers, got {type(value).__name__}") from None
    check_finite(name, value)
    return value.to(dtype=ref.dtype, device=ref.device)


def batched_cost(
    model: StateSpaceModel,
    thetas: Tensor,
    x0: Tensor,
    u: Tensor | None,
    y: Tensor,
    *,
    loss: Loss = "mse",
    burn_in: int = 0,
) -> Tensor:
    """The cost V(θ) of eq. (2) for a whole batch of parameter vectors in one rollout.

    Args:
        model: a model of :mod:`lib.models` (anything with ``f``, ``g``, ``nx``, ``nu``,
            ``ny``, ``n_params`` that broadcasts over leading dimensions).
        thetas: parameter vectors ``(*B, Nθ)``; ``B`` is any batch shape (a line, a plane).
            The computation runs in ``thetas``' dtype and on its device; ``x0``, ``u`` and
            ``y`` are converted to them.
        x0: initial state ``(Nx,)``, or ``(*B', Nx)`` broadcasting against ``B``.
        u: inputs ``(N, Nu)`` shared by every θ, or ``(N, *B', Nu)``; ``None`` means zero
            input (``Nu`` may be 0) for ``N = len(y)`` steps.
        y: targets ``(N, Ny)`` or ``(N, *B', Ny)``.
        loss: ``"mse"`` (squared error averaged over the outputs) or a callable
            ``loss(y_hat, y_t) -> (...)`` applied at every step.
        burn_in: number ``B`` of leading steps left out of the average, ``0 <= B < N``.
            The state still runs through them (from ``x0`` at t = 0); only their loss is
            not counted, and ``y[:B]`` is not read.

    Returns:
        ``V`` of shape ``B`` (broadcast with the batch shapes of ``x0``, ``u``, ``y``):
        ``(1/(N - B)) Σ_{t=B}^{N-1} l(ŷ_t, y_t)`` with ``ŷ_t = g(x_t, u_t; θ)`` (the
        convention of :func:`lib.dynamics.rollout`). Differentiable in ``thetas``. Only the
        running sum is kept, never the outputs, so memory stays O(|B|) whatever N is.

    Raises:
        ValueError: bad arguments (naming them), or a loss that came out NaN (a state that
            overflowed, or a loss callable that produced it): a NaN never comes back as a
            cost, where it would compare false with everything (no minimum, no maximum).
    """
    thetas = _check_thetas(model, thetas)
    loss_fn = _resolve_loss(loss)
    x0 = _as_like("x0", x0, thetas)
    check_last_dim("x0", x0, model.nx)
    y = _as_like("y", y, thetas)
    check_min_ndim("y", y, 2)
    check_last_dim("y", y, model.ny)
    n_steps = y.shape[0]
    if n_steps == 0:
        raise ValueError("y must hold at least one time step (got N = 0)")
    if isinstance(burn_in, bool) or not isinstance(burn_in, int) or not 0 <= burn_in < n_steps:
        raise ValueError(f"burn_in must be an integer with 0 <= burn_in < N = {n_steps} "
                         f"(the number of steps of y), got {burn_in!r}")
    if u is None:
        u = thetas.new_zeros(n_steps, model.nu)
    else:
        u = _as_like("u", u, thetas)
        check_min_ndim("u", u, 2)
        check_last_dim("u", u, model.nu)
        if u.shape[0] != n_steps:
            raise ValueError(f"u and y must have the same number of steps, got {u.shape[0]} "
                             f"and {n_steps}")
    batch = thetas.shape[:-1]
    try:
        shape = torch.broadcast_shapes(batch, x0.shape[:-1], u.shape[1:-1], y.shape[1:-1])
    except RuntimeError:
        raise ValueError(
            f"thetas (batch {tuple(batch)}), x0 {tuple(x0.shape)}, u {tuple(u.shape)} and "
            f"y {tuple(y.shape)} have batch shapes that do not broadcast"
        ) from None
    x = x0.expand(*shape, model.nx)
    total = thetas.new_zeros(shape)
    for t in range(n_steps):
        if t >= burn_in:
            step_loss = loss_fn(model.g(x, u[t], thetas), y[t])
            if t == burn_in and step_loss.shape != shape:
                raise ValueError(f"loss must map outputs (..., Ny) to shape {tuple(shape)}, "
                                 f"got {tuple(step_loss.shape)}")
            total = total + step_loss
        if t + 1 < n_steps:  # the last state is never read out
            x = model.f(x, u[t], thetas)
    cost = total / (n_steps - burn_in)
    nan = ~torch.isfinite(cost.detach())
    if bool(nan.any()):
        first = tuple(int(i) for i in nan.nonzero()[0])
        kind = "NaN" if bool(torch.isnan(cost.detach()[nan]).all()) else "NaN or inf"
        raise ValueError(f"loss is {kind} for {int(nan.sum())} of {nan.numel()} parameter "
                         f"vector(s) (the first at batch index {first}); at the batch indices "
                         f"{_indices(nan)}: a state overflowed or the loss callable "
                         f"returned NaN")
    return cost


def _indices(mask: Tensor) -> str:
    from ._checks import format_indices
    return format_indices(mask)


def _grid(name: str, s: Grid, ref: Tensor) -> Tensor:
    s = _as_like(name, s, ref)
    if s.dim() != 1:
        raise ValueError(f"{name} must be a 1-D grid of values, got shape {tuple(s.shape)}")
    if s.numel() == 0:
        raise ValueError(f"{name} must hold at least one grid point, got an empty grid")
    return s


def _direction(name: str, d: Tensor, size: int | None = None) -> Tensor:
    check_flat(name, d, size)
    if not d.is_floating_point():
        raise ValueError(f"{name} must be a floating-point tensor, got dtype {d.dtype}")
    check_finite(name, d)
    return d


def line(direction: Tensor, s: Grid, *, origin: Tensor | None = None) -> Tensor:
    """Parameter vectors on a line, ``θ(s) = origin + s * direction``, shape ``(S, Nθ)``.

    With ``origin=None`` (zero) and ``direction = θ_true`` this is the 1-D slice V(s θ_true)
    of the paper's first figure.
    """
    direction = _direction("direction", direction)
    s = _grid("s", s, direction)
    out = s[:, None] * direction
    if origin is not None:
        out = out + _direction("origin", origin, direction.numel()).to(direction)
    return out


def plane(direction1: Tensor, direction2: Tensor, s1: Grid, s2: Grid, *,
          origin: Tensor | None = None) -> Tensor:
    """Parameter vectors on a plane, ``θ(s1, s2) = origin + s1 d1 + s2 d2``.

    Returns shape ``(S1, S2, Nθ)`` (index ``[i, j]`` is ``s1[i], s2[j]``). With
    ``origin=None``, ``d1 = θ_true`` and ``d2 = θ_random`` this is the plane of
    Supplementary Figure 1.
    """
    d1 = _direction("direction1", direction1)
    d2 = _direction("direction2", direction2, d1.numel()).to(d1)
    s1 = _grid("s1", s1, d1)
    s2 = _grid("s2", s2, d1)
    out = s1[:, None, None] * d1 + s2[None, :, None] * d2
    if origin is not None:
        out = out + _direction("origin", origin, d1.numel()).to(d1)
    return out


def landscape_1d(model: StateSpaceModel, direction: Tensor, s: Grid, x0: Tensor,
                 u: Tensor | None, y: Tensor, *, origin: Tensor | None = None,
                 loss: Loss = "mse", burn_in: int = 0) -> Tensor:
    """V(origin + s d) for every ``s`` of the grid, shape ``(S,)``, in one batched call.

    ``loss`` and ``burn_in`` as in :func:`batched_cost`.
    """
    return batched_cost(model, line(direction, s, origin=origin), x0, u, y, loss=loss,
                        burn_in=burn_in)


def landscape_2d(model: StateSpaceModel, direction1: Tensor, direction2: Tensor, s1: Grid,
                 s2: Grid, x0: Tensor, u: Tensor | None, y: Tensor, *,
                 origin: Tensor | None = None, loss: Loss = "mse",
                 burn_in: int = 0) -> Tensor:
    """V(origin + s1 d1 + s2 d2) on the grid ``s1 x s2``, shape ``(S1, S2)``, one call.

    ``loss`` and ``burn_in`` as in :func:`batched_cost`.
    """
    thetas = plane(direction1, direction2, s1, s2, origin=origin)
    return batched_cost(model, thetas, x0, u, y, loss=loss, burn_in=burn_in)


def landscape_lyapunov(model: StateSpaceModel, thetas: Tensor, x0: Tensor, n_steps: int, *,
                     n_transient: int = 0, u: Tensor | None = None) -> Tensor:
    """Largest Lyapunov exponent of ``x -> f(x, u; θ)`` for every θ of a batch, one run.

    ``thetas`` is ``(*B, Nθ)``; ``x0`` is one initial state ``(Nx,)`` or K of them
    ``(K, Nx)``, the same for every θ; ``u`` is a constant input ``(Nu,)`` (zero if None).
    Reshapes θ to ``(P, 1, Nθ)`` and the states to ``(P, K, Nx)`` and calls
    :func:`lib.dynamics.largest_lyapunov`. Returns ``(*B,)`` for
    one initial state, ``(*B, K)`` for K (their spread is an error estimate), in nats/step.
    """
    thetas = _check_thetas(model, thetas)
    check_positive_int("n_steps", n_steps)
    check_nonnegative_int("n_transient", n_transient)
    x0 = _as_like("x0", x0, thetas)
    check_last_dim("x0", x0, model.nx)
    if n_steps <= 0:
        check_positive_int("n_steps", n_steps)
    if x0.dim() > 2 or x0.numel() == 0:
        raise ValueError(f"x0 must have shape (Nx,) or (K, Nx) with K >= 1, got {tuple(x0.shape)}")
    u = thetas.new_zeros(model.nu) if u is None else _as_like("u", u, thetas)
    check_flat("u", u, model.nu)
    batch = thetas.shape[:-1]
    flat = thetas.reshape(-1, 1, model.n_params)
    states = x0.reshape(1, -1, model.nx).expand(flat.shape[0], -1, -1).contiguous()
    lam = largest_lyapunov(model.autonomous(flat, u), states, n_steps, n_transient=n_transient)
    return lam.reshape(batch) if x0.dim() == 1 else lam.reshape(*batch, x0.shape[0])


def local_minima(values: Tensor, *, include_boundary: bool = False,
                 connectivity: str = "full") -> Tensor:
    """Boolean mask of the strict local minima of ``values`` sampled on a d-dimensional grid.

    A grid point is a strict local minimum when its value is smaller than the value at
    every neighbour: all ``3^d - 1`` adjacent points (``connectivity="full"``: 8 in 2-D)
    or only the ``2d`` along the axes (``"axes"``: 4 in 2-D). Ties are not minima, so a
    flat valley counts none. Points on the edge of the grid have fewer neighbours; they
    are left out unless ``include_boundary`` (then they are compared with the neighbours
    they have).
    """
    if not isinstance(values, Tensor):
        raise ValueError(f"values must be a torch.Tensor, got {type(values).__name__}")
    if values.dim() == 0 or values.numel() == 0:
        raise ValueError(f"values must be a non-empty grid (at least 1-D), got shape "
                         f"{tuple(values.shape)}")
    if not (values.is_floating_point() or values.dtype in (torch.int32, torch.int64)):
        raise ValueError(f"values must hold real numbers, got dtype {values.dtype}")
    check_finite("values", values)
    if connectivity not in ("full", "axes"):
        raise ValueError(f"connectivity must be 'full' or 'axes', got {connectivity!r}")
    v = values.to(torch.float64) if not values.is_floating_point() else values
    d = v.dim()
    padded = F.pad(v, (1, 1) * d, value=float("inf"))
    mask = torch.ones_like(v, dtype=torch.bool)
    for offset in itertools.product((-1, 0, 1), repeat=d):
        nonzero = sum(o != 0 for o in offset)
        if nonzero == 0 or (connectivity == "axes" and nonzero > 1):
            continue
        index = tuple(slice(1 + o, 1 + o + n) for o, n in zip(offset, v.shape))
        mask &= v < padded[index]
    if not include_boundary:
        interior = torch.zeros_like(mask)
        interior[tuple(slice(1, n - 1) for n in v.shape)] = True
        mask &= interior
    return mask


def count_local_minima(values: Tensor, *, include_boundary: bool = False,
                       connectivity: str = "full") -> int:
    """Number of strict local minima of a function sampled on a grid (see :func:`local_minima`)."""
    return int(local_minima(values, include_boundary=include_boundary,
                            connectivity=connectivity).sum())
