"""Derivatives of an RNN's outputs with respect to its parameters: supplement A of the paper.

For the state-space model of eq. (1), ``x_{t+1} = f(x_t, u_t; θ)``, ``ŷ_t = g(x_t, u_t; θ)``,
write the Jacobians at the point ``(x_t, u_t; θ)`` as

    A_t = ∂f/∂x,   B_t = ∂f/∂θ,   C_t = ∂g/∂x,   F_t = ∂g/∂θ.

The chain rule gives the *forward sensitivity* recursion (eq. S1)

    D_{t+1} = A_t D_t + B_t,  D_0 = 0,        J_t = C_t D_t + F_t,

with ``D_t = ∂x_t/∂θ`` (Nx × Nθ) and ``J_t = ∂ŷ_t/∂θ`` (Ny × Nθ), and the gradient of the
cost ``V = (1/N) Σ_t l(ŷ_t, y_t)`` (eq. (2)) is, with the transpose that the printed eq. S2
lacks,

    ∇V = (1/N) Σ_t J_tᵀ l'(ŷ_t, y_t).

Unrolling S1 gives the closed form used in B.4 (eq. S14). As printed, S14 shifts the
indices of A and B by one step with respect to S1; :func:`closed_form_printed` evaluates
it literally and :func:`closed_form` evaluates the corrected sum

    J_t = C_t Σ_{ℓ=0}^{t-1} (A_{t-1} A_{t-2} ⋯ A_{ℓ+1}) B_ℓ + F_t.

Time is 0-based, as in :func:`lib.dynamics.rollout`: inputs ``u_0 .. u_{N-1}``, states
``x_0 .. x_N``, outputs ``ŷ_0 .. ŷ_{N-1}``; ``x_0`` does not depend on θ, so ``D_0 = 0``.
The derivative with respect to the initial state, ``∂ŷ_t/∂x_0 = C_t A_{t-1} ⋯ A_0``
(:func:`initial_state_sensitivity`), is the other half of the derivative with respect to
``[θ, x_0]`` that Theorem 1 bounds.

``f(x, u, theta)`` and ``g(x, u, theta)`` take one state ``(Nx,)``, one input ``(Nu,)`` and
a flat parameter vector ``(Nθ,)``; ``model.f`` and ``model.g`` of :mod:`lib.models` work as
they are. The Jacobians come from ``torch.func.jacrev`` under ``torch.func.vmap`` over a
chunk of time steps, so there is no Python loop over parameters; the recursion itself is a
loop over time. :func:`bptt_jacobian` and :func:`bptt_gradient` compute the same
quantities by reverse-mode autograd through :func:`lib.dynamics.rollout`
(backpropagation through time), for comparison.
"""

from __future__ import annotations

import weakref
from typing import Callable, Iterator, NamedTuple

import torch
from torch import Tensor
from torch.func import grad as func_grad
from torch.func import jacrev, vmap
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

from ._checks import (ArgumentTypeError, check_callable, check_finite, check_finite_result,
                      check_flat, check_positive_int, check_tensor)
from .dynamics import rollout

Map = Callable[[Tensor, Tensor, Tensor], Tensor]
Loss = Callable[[Tensor, Tensor], Tensor]

__all__ = [
    "Jacobians",
    "Sensitivities",
    "jacobians",
    "sensitivities",
    "forward_sensitivity",
    "state_sensitivity",
    "initial_state_sensitivity",
    "closed_form",
    "closed_form_printed",
    "cost",
    "cost_gradient",
    "bptt_jacobian",
    "bptt_gradient",
    "peak_tensor_memory",
]


class Jacobians(NamedTuple):
    """The Jacobians of eq. S1 along one trajectory (t = 0 .. N-1).

    ``x``: states ``x_0 .. x_N`` ``(N+1, Nx)``; ``y_hat``: ``(N, Ny)``;
    ``A``: ``(N, Nx, Nx)``; ``B``: ``(N, Nx, Nθ)``; ``C``: ``(N, Ny, Nx)``; ``F``: ``(N, Ny, Nθ)``.
    """

    x: Tensor
    y_hat: Tensor
    A: Tensor
    B: Tensor
    C: Tensor
    F: Tensor


class Sensitivities(NamedTuple):
    """Everything the forward recursion produces along one trajectory.

    ``x``: ``(N+1, Nx)``; ``y_hat``: ``(N, Ny)``; ``D = ∂x_t/∂θ``: ``(N+1, Nx, Nθ)`` with
    ``D[0] = 0``; ``J = ∂ŷ_t/∂θ``: ``(N, Ny, Nθ)``; ``Phi = ∂x_t/∂x_0``: ``(N+1, Nx, Nx)``
    with ``Phi[0] = I``; ``K = ∂ŷ_t/∂x_0``: ``(N, Ny, Nx)``; and the Jacobians ``A, B, C, F``
    of eq. S1 as in :class:`Jacobians`, so that an analysis needs only one pass.
    """

    x: Tensor
    y_hat: Tensor
    D: Tensor
    J: Tensor
    Phi: Tensor
    K: Tensor
    A: Tensor
    B: Tensor
    C: Tensor
    F: Tensor


# --------------------------------------------------------------------------- checks
def _check_inputs(theta: Tensor, x0: Tensor, u: Tensor) -> int:
    """Validate ``theta (Nθ,)``, ``x0 (Nx,)``, ``u (N, Nu)``; return N."""
    check_flat("theta", theta)
    check_tensor("x0", x0, finite=False)
    check_tensor("u", u, finite=False)
    if x0.dim() != 1:
        raise ValueError(f"x0 must be one state of shape (Nx,), got shape {tuple(x0.shape)}")
    if u.dim() != 2:
        raise ValueError(f"u must have shape (N, Nu), got shape {tuple(u.shape)}")
    if u.shape[0] == 0:
        raise ValueError("u must hold at least one time step, got N = 0")
    for name, value in (("theta", theta), ("x0", x0), ("u", u)):
        if not value.is_floating_point():
            raise ArgumentTypeError(f"{name} must be a floating-point tensor, got {value.dtype}")
        if value.dtype != theta.dtype:
            raise ArgumentTypeError(f"{name} must have theta's dtype {theta.dtype}, got "
                                    f"{value.dtype}")
        check_finite(name, value)
    return u.shape[0]


def _first_call(name: str, fn: Map, x: Tensor, u_t: Tensor, theta: Tensor) -> Tensor:
    """Call ``fn(x0, u[0], theta)`` once outside any transform, naming the culprit on error."""
    try:
        out = fn(x, u_t, theta)
    except (ValueError, RuntimeError, IndexError) as err:
        raise ValueError(
            f"{name}(x0, u[0], theta) failed for x0 of shape {tuple(x.shape)}, u of shape "
            f"(N, {u_t.shape[0]}) and theta of shape {tuple(theta.shape)}; check that x0, u "
            f"and theta fit {name}: {err}"
        ) from err
    if not isinstance(out, Tensor):
        raise ValueError(f"{name} must return a torch.Tensor, got {type(out).__name__}")
    return out


def _check_maps(f: Map, g: Map, theta: Tensor, x0: Tensor, u: Tensor) -> None:
    check_callable("f", f, "(x, u, theta) -> next state")
    check_callable("g", g, "(x, u, theta) -> output")
    x1 = _first_call("f", f, x0, u[0], theta)
    if x1.shape != x0.shape:
        raise ValueError(
            f"f must return a state of x0's shape {tuple(x0.shape)}, got {tuple(x1.shape)}"
        )
    y0 = _first_call("g", g, x0, u[0], theta)
    if y0.dim() != 1:
        raise ValueError(f"g must return one output of shape (Ny,), got {tuple(y0.shape)}")


# --------------------------------------------------------------------------- Jacobians
def _step_jacobians(f: Map, g: Map) -> Callable:
    """``(x, u, θ) -> ((A, B), (C, F), (f, g))`` for one time step, by ``torch.func.jacrev``."""

    def maps(x: Tensor, u_t: Tensor, theta: Tensor):
        fx, gx = f(x, u_t, theta), g(x, u_t, theta)
        return (fx, gx), (fx, gx)

    # jacrev: Nθ is (much) larger than Nx + Ny, so reverse mode needs fewer passes.
    return jacrev(maps, argnums=(0, 2), has_aux=True)


def _chunks(f: Map, g: Map, theta: Tensor, x0: Tensor, u: Tensor,
            chunk_size: int) -> Iterator[Jacobians]:
    """Yield :class:`Jacobians` for consecutive chunks of at most ``chunk_size`` steps.

    Within a chunk the states are computed first (a loop over time, no autograd), then the
    Jacobians of every step at once under ``vmap``; a map that works eagerly but cannot be
    vmapped (it writes in place into a buffer it creates) falls back to one Jacobian per
    step by eager autograd, with the same values. Memory is O(chunk_size · Nx · Nθ),
    independent of N.
    """
    vmapped = vmap(_step_jacobians(f, g), in_dims=(0, 0, None))

    def eager(X: Tensor, uc: Tensor, th: Tensor):
        """Per-step Jacobians by eager autograd: for maps that work eagerly but cannot be
        vmapped (in-place writes into a new buffer, data-dependent Python control flow)."""
        per = []
        for k in range(uc.shape[0]):
            def fg(x, p, u_t=uc[k]):
                return f(x, u_t, p), g(x, u_t, p)
            (fx, gx) = fg(X[k], th)
            (A, B), (C, F) = torch.autograd.functional.jacobian(fg, (X[k], th),
                                                                vectorize=False)
            per.append((A, B, C, F, gx.detach()))
        A, B, C, F, y = (torch.stack(z) for z in zip(*per))
        return ((A, B), (C, F)), (None, y)

    mode = ["vmap"]

    def step(X: Tensor, uc: Tensor, th: Tensor):
        if mode[0] == "vmap":
            try:
                return vmapped(X, uc, th)
            except RuntimeError:  # e.g. "vmap: inplace arithmetic ... is not possible"
                mode[0] = "eager"
        return eager(X, uc, th)

    N = u.shape[0]
    x = x0.detach()
    theta = theta.detach()
    for t0 in range(0, N, chunk_size):
        uc = u[t0 : t0 + chunk_size].detach()
        xs = [x]
        with torch.no_grad():
            for t in range(uc.shape[0]):
                x = f(x, uc[t], theta)
                xs.append(x)
        X = torch.stack(xs)
        ((A, B), (C, F)), (_, y_hat) = step(X[:-1], uc, theta)
        yield Jacobians(X, y_hat, A, B, C, F)
        del X, A, B, C, F, y_hat  # free this chunk before the next is computed


def jacobians(f: Map, g: Map, theta: Tensor, x0: Tensor, u: Tensor) -> Jacobians:
    """The Jacobians ``A_t, B_t, C_t, F_t`` of eq. S1 for ``t = 0 .. N-1`` (and the trajectory).

    Args:
        f, g: the maps of eq. (1), ``(x (Nx,), u (Nu,), θ (Nθ,)) -> (Nx,)`` resp. ``(Ny,)``.
        theta: flat parameters ``(Nθ,)``; x0: initial state ``(Nx,)``; u: inputs ``(N, Nu)``.

    Returns:
        :class:`Jacobians` ``(x, y_hat, A, B, C, F)``; see its docstring for the shapes.
    """
    N = _check_inputs(theta, x0, u)
    _check_maps(f, g, theta, x0, u)
    (out,) = list(_chunks(f, g, theta, x0, u, N))
    return out


# --------------------------------------------------------------------------- the recursion S1
def sensitivities(f: Map, g: Map, theta: Tensor, x0: Tensor, u: Tensor, *,
                  chunk_size: int = 64) -> Sensitivities:
    """Run the forward recursion S1 and its initial-state twin along one trajectory.

    ``D_{t+1} = A_t D_t + B_t`` (``D_0 = 0``), ``J_t = C_t D_t + F_t`` (eq. S1) and
    ``Φ_{t+1} = A_t Φ_t`` (``Φ_0 = I``), ``K_t = C_t Φ_t``: the derivatives of the states
    and outputs with respect to θ and to x_0. Returns :class:`Sensitivities` (which keeps
    every D_t and every Jacobian: memory O(N · Nx · Nθ), meant for analysis at small sizes).
    """
    N = _check_inputs(theta, x0, u)
    check_positive_int("chunk_size", chunk_size)
    _check_maps(f, g, theta, x0, u)
    nx, ntheta = x0.shape[0], theta.shape[0]
    D = theta.new_zeros(nx, ntheta)
    Phi = torch.eye(nx, dtype=theta.dtype, device=theta.device)
    xs, ys, Ds, Js, Phis, Ks = [x0.detach()], [], [D], [], [Phi], []
    jacs = []
    for jac in _chunks(f, g, theta, x0, u, chunk_size):
        jacs.append(jac)
        for k in range(jac.A.shape[0]):
            Js.append(jac.C[k] @ D + jac.F[k])
            Ks.append(jac.C[k] @ Phi)
            D = jac.A[k] @ D + jac.B[k]
            Phi = jac.A[k] @ Phi
            Ds.append(D)
            Phis.append(Phi)
        xs.append(jac.x[1:])
        ys.append(jac.y_hat)
    return Sensitivities(
        x=torch.cat([xs[0].unsqueeze(0), *xs[1:]]),
        y_hat=torch.cat(ys),
        D=torch.stack(Ds),
        J=torch.stack(Js),
        Phi=torch.stack(Phis),
        K=torch.stack(Ks),
        A=torch.cat([j.A for j in jacs]),
        B=torch.cat([j.B for j in jacs]),
        C=torch.cat([j.C for j in jacs]),
        F=torch.cat([j.F for j in jacs]),
    )


def forward_sensitivity(f: Map, g: Map, theta: Tensor, x0: Tensor, u: Tensor, *,
                        chunk_size: int = 64) -> tuple[Tensor, Tensor]:
    """Outputs and their parameter Jacobians by the forward recursion S1.

    Args:
        f, g: maps of eq. (1) on one state, one input and a flat θ (``model.f``, ``model.g``).
        theta: ``(Nθ,)``; x0: ``(Nx,)``; u: ``(N, Nu)`` with N >= 1.
        chunk_size: time steps whose Jacobians are computed in one vectorised call.

    Returns:
        ``(y_hat, J)``: ``ŷ_0 .. ŷ_{N-1}`` of shape ``(N, Ny)`` and ``J_t = ∂ŷ_t/∂θ`` of shape
        ``(N, Ny, Nθ)``.
    """
    N = _check_inputs(theta, x0, u)
    check_positive_int("chunk_size", chunk_size)
    _check_maps(f, g, theta, x0, u)
    D = theta.new_zeros(x0.shape[0], theta.shape[0])
    ys, Js = [], []
    for jac in _chunks(f, g, theta, x0, u, chunk_size):
        for k in range(jac.A.shape[0]):
            Js.append(jac.C[k] @ D + jac.F[k])
            D = jac.A[k] @ D + jac.B[k]
        ys.append(jac.y_hat)
    y_hat, J = torch.cat(ys), torch.stack(Js)
    check_finite_result("the outputs", y_hat, batch_dims=1, hint="time steps where the "
                        "trajectory left the floats")
    return y_hat, check_finite_result("the sensitivities J", J, batch_dims=1,
                                      hint="time steps where the recursion left the floats")


def state_sensitivity(f: Map, g: Map, theta: Tensor, x0: Tensor, u: Tensor, *,
                      chunk_size: int = 64) -> Tensor:
    """The state sensitivities ``D_t = ∂x_t/∂θ`` of eq. S1, ``t = 0 .. N``: shape ``(N+1, Nx, Nθ)``.

    ``g`` is not needed for D; it is taken (and checked) so that every function of this
    module has the argument order of :func:`forward_sensitivity`.
    """
    N = _check_inputs(theta, x0, u)
    check_positive_int("chunk_size", chunk_size)
    _check_maps(f, g, theta, x0, u)
    D = theta.new_zeros(x0.shape[0], theta.shape[0])
    Ds = [D]
    for jac in _chunks(f, g, theta, x0, u, chunk_size):
        for k in range(jac.A.shape[0]):
            D = jac.A[k] @ D + jac.B[k]
            Ds.append(D)
    return torch.stack(Ds)


def initial_state_sensitivity(f: Map, g: Map, theta: Tensor, x0: Tensor, u: Tensor, *,
                              chunk_size: int = 64) -> tuple[Tensor, Tensor]:
    """Outputs and their Jacobians with respect to the initial state.

    ``∂ŷ_t/∂x_0 = C_t Φ_t`` with ``Φ_0 = I``, ``Φ_{t+1} = A_t Φ_t`` (so
    ``Φ_t = A_{t-1} ⋯ A_0``): the x_0 block of the derivative with respect to ``[θ, x_0]``
    that Theorem 1 of the paper bounds.

    Returns:
        ``(y_hat, K)`` with shapes ``(N, Ny)`` and ``(N, Ny, Nx)``.
    """
    N = _check_inputs(theta, x0, u)
    check_positive_int("chunk_size", chunk_size)
    _check_maps(f, g, theta, x0, u)
    Phi = torch.eye(x0.shape[0], dtype=theta.dtype, device=theta.device)
    ys, Ks = [], []
    for jac in _chunks(f, g, theta, x0, u, chunk_size):
        for k in range(jac.A.shape[0]):
            Ks.append(jac.C[k] @ Phi)
            Phi = jac.A[k] @ Phi
        ys.append(jac.y_hat)
    return torch.cat(ys), torch.stack(Ks)


# --------------------------------------------------------------------------- closed form S14
def _check_ABCF(A: Tensor, B: Tensor, C: Tensor, F: Tensor) -> None:
    for name, value in (("A", A), ("B", B), ("C", C), ("F", F)):
        check_tensor(name, value, floating=True, ndim=3, what="(N, rows, cols)")
        if value.dtype != A.dtype:
            raise ArgumentTypeError(f"{name} must have A's dtype {A.dtype}, got {value.dtype}")
    N, nx, ntheta, ny = A.shape[0], A.shape[1], B.shape[2], C.shape[1]
    if N == 0:
        raise ValueError("A must hold at least one time step, got N = 0")
    expected = {"A": (N, nx, nx), "B": (N, nx, ntheta), "C": (N, ny, nx), "F": (N, ny, ntheta)}
    for name, value in (("A", A), ("B", B), ("C", C), ("F", F)):
        if tuple(value.shape) != expected[name]:
            raise ValueError(
                f"{name} must have shape {expected[name]} (from A, B and C), got {tuple(value.shape)}"
            )


def _sum_of_products(A: Tensor, B: Tensor, C: Tensor, F: Tensor, shift: int) -> Tensor:
    """``C_t Σ_{ℓ=shift}^{t-1+shift} (A_{t-1+shift} ⋯ A_{ℓ+1}) B_ℓ + F_t`` for every t."""
    _check_ABCF(A, B, C, F)
    N, nx = A.shape[0], A.shape[1]
    eye = torch.eye(nx, dtype=A.dtype, device=A.device)
    out = []
    for t in range(N):
        total = torch.zeros_like(B[0])
        P = eye  # the product A_{t-1+shift} ⋯ A_{ℓ+1}, built from the right
        for ell in range(t - 1 + shift, shift - 1, -1):
            total = total + P @ B[ell]
            P = P @ A[ell]
        out.append(C[t] @ total + F[t])
    return torch.stack(out)


def closed_form(A: Tensor, B: Tensor, C: Tensor, F: Tensor) -> Tensor:
    """The unrolled recursion S1 (eq. S14, corrected), evaluated as a sum of products.

    ``J_t = C_t Σ_{ℓ=0}^{t-1} (A_{t-1} A_{t-2} ⋯ A_{ℓ+1}) B_ℓ + F_t`` for ``t = 0 .. N-1``
    (the empty product is the identity, the empty sum zero). Tensors as in
    :class:`Jacobians`; returns ``J`` of shape ``(N, Ny, Nθ)``.
    """
    return _sum_of_products(A, B, C, F, shift=0)


def closed_form_printed(A: Tensor, B: Tensor, C: Tensor, F: Tensor) -> Tensor:
    """Eq. S14 exactly as printed in the supplement, read with the indices of eq. S1.

    ``J_t = C_t Σ_{ℓ=1}^{t} (Π_{j=1}^{t-ℓ} A_{t-j+1}) B_ℓ + F_t``, i.e. the products
    ``A_t A_{t-1} ⋯ A_{ℓ+1}`` and ``B_ℓ`` for ``ℓ = 1 .. t``. With ``A_t`` taken at
    ``(x_t, u_t)`` as S1 defines it, this equals ``C_t (D_{t+1} - A_t ⋯ A_1 B_0) + F_t``,
    not ``J_t``: see the book's chapter "The derivative recursion". Returns ``(N, Ny, Nθ)``.
    """
    return _sum_of_products(A, B, C, F, shift=1)


# --------------------------------------------------------------------------- the gradient S2
def _check_targets(y: Tensor, N: int) -> None:
    check_tensor("y", y, finite=False)
    if y.dim() == 0 or y.shape[0] != N:
        raise ValueError(f"y must have one target per time step, shape ({N}, ...), got {tuple(y.shape)}")
    check_finite("y", y)


def _check_loss(loss: Loss, y_hat0: Tensor, y0: Tensor) -> None:
    check_callable("loss", loss, "(y_hat_t, y_t) -> scalar")
    value = loss(y_hat0, y0)
    if not isinstance(value, Tensor) or value.dim() != 0:
        shape = tuple(value.shape) if isinstance(value, Tensor) else type(value).__name__
        raise ValueError(f"loss must return a scalar tensor for one time step, got {shape}")


def cost(f: Map, g: Map, theta: Tensor, x0: Tensor, u: Tensor, y: Tensor, loss: Loss) -> Tensor:
    """The cost of eq. (2), ``V = (1/N) Σ_{t=0}^{N-1} l(ŷ_t, y_t)``, as a scalar tensor.

    ``loss(y_hat_t, y_t)`` takes one output ``(Ny,)`` and one target and returns a scalar.
    """
    N = _check_inputs(theta, x0, u)
    _check_targets(y, N)
    _check_maps(f, g, theta, x0, u)
    _, y_hat = rollout(f, g, theta, x0, u)
    _check_loss(loss, y_hat[0], y[0])
    return check_finite_result("the cost", vmap(loss)(y_hat, y).mean(),
                               hint="the rollout or the loss left the floats")


def cost_gradient(f: Map, g: Map, theta: Tensor, x0: Tensor, u: Tensor, y: Tensor,
                  loss: Loss, *, chunk_size: int = 32) -> Tensor:
    """∇V by forward sensitivities: eq. S2 with the transpose, ``(1/N) Σ_t J_tᵀ l'(ŷ_t, y_t)``.

    Runs the recursion S1 online and never stores the J_t: it accumulates
    ``l'_tᵀ C_t D_t + l'_tᵀ F_t``, so the memory is O(chunk_size · Nx · Nθ) whatever N
    (real-time recurrent learning), against O(N · Nx) for backpropagation through time
    (:func:`bptt_gradient`), and the time O(N · Nx² · Nθ) against O(N · cost of f).

    Args:
        f, g, theta, x0, u: as in :func:`forward_sensitivity`.
        y: targets, ``(N, ...)``, one per time step.
        loss: ``l(ŷ_t, y_t)`` on one time step, returning a scalar; ``l'`` is its gradient
            in the first argument (``torch.func.grad``).

    Returns:
        The gradient ``(Nθ,)``.
    """
    N = _check_inputs(theta, x0, u)
    check_positive_int("chunk_size", chunk_size)
    _check_targets(y, N)
    _check_maps(f, g, theta, x0, u)
    dloss = vmap(func_grad(loss))
    D = theta.new_zeros(x0.shape[0], theta.shape[0])
    total = theta.new_zeros(theta.shape[0])
    t0 = 0
    for jac in _chunks(f, g, theta, x0, u, chunk_size):
        T = jac.A.shape[0]
        if t0 == 0:
            _check_loss(loss, jac.y_hat[0], y[0])
        lp = dloss(jac.y_hat, y[t0 : t0 + T].detach())  # l'(ŷ_t, y_t), (T, Ny)
        for k in range(T):
            total = total + (lp[k] @ jac.C[k]) @ D + lp[k] @ jac.F[k]
            D = jac.A[k] @ D + jac.B[k]
        t0 += T
        del jac, lp  # hold one chunk at a time
    return check_finite_result("the gradient", total / N,
                               hint="the recursion or the loss's gradient left the floats")


# --------------------------------------------------------------------------- BPTT
def bptt_jacobian(f: Map, g: Map, theta: Tensor, x0: Tensor, u: Tensor) -> tuple[Tensor, Tensor]:
    """``(y_hat, J)`` like :func:`forward_sensitivity`, by reverse-mode autograd through time.

    ``torch.func.jacrev`` of θ -> ``rollout(f, g, θ, x0, u)`` outputs: one vector-Jacobian
    product per output entry (N · Ny of them, vectorised), each a backward pass through
    the whole trajectory.
    """
    _check_inputs(theta, x0, u)
    _check_maps(f, g, theta, x0, u)

    def outputs(th: Tensor) -> tuple[Tensor, Tensor]:
        y_hat = rollout(f, g, th, x0.detach(), u.detach())[1]
        return y_hat, y_hat

    J, y_hat = jacrev(outputs, has_aux=True)(theta.detach())
    return y_hat.detach(), J


def bptt_gradient(f: Map, g: Map, theta: Tensor, x0: Tensor, u: Tensor, y: Tensor,
                  loss: Loss) -> Tensor:
    """∇V by backpropagation through time: autograd on eq. (2) through :func:`lib.dynamics.rollout`.

    One forward pass stores the graph of every step (memory O(N · Nx)); one backward pass
    gives the gradient ``(Nθ,)``.
    """
    N = _check_inputs(theta, x0, u)
    _check_targets(y, N)
    _check_maps(f, g, theta, x0, u)
    th = theta.detach().requires_grad_(True)
    with torch.enable_grad():
        _, y_hat = rollout(f, g, th, x0.detach(), u.detach())
        _check_loss(loss, y_hat[0], y[0])
        V = vmap(loss)(y_hat, y.detach()).mean()
        (gradient,) = torch.autograd.grad(V, th)
    return check_finite_result("the gradient", gradient,
                               hint="the rollout or the loss left the floats")


# --------------------------------------------------------------------------- measuring memory
class _TensorMemory(TorchDispatchMode):
    """Count the bytes of tensor storages created while the mode is active and still alive."""

    def __init__(self) -> None:
        super().__init__()
        self.storages: dict[tuple[int, str], list[int]] = {}  # key -> [nbytes, live tensors]
        self.live = 0
        self.peak = 0

    def _release(self, key: tuple[int, str]) -> None:
        entry = self.storages.get(key)
        if entry is None:
            return
        entry[1] -= 1
        if entry[1] == 0:
            self.live -= entry[0]
            del self.storages[key]

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in tree_flatten(out)[0]:
            if not isinstance(t, Tensor) or t.device.type == "meta":
                continue
            storage = t.untyped_storage()
            nbytes = storage.nbytes()
            if nbytes == 0:
                continue
            key = (storage.data_ptr(), str(t.device))
            entry = self.storages.get(key)
            if entry is None:
                entry = self.storages[key] = [nbytes, 0]
                self.live += nbytes
                self.peak = max(self.peak, self.live)
            entry[1] += 1
            weakref.finalize(t, self._release, key)
        return out


def peak_tensor_memory(fn: Callable[[], object]) -> tuple[object, int]:
    """Run ``fn()``; return its result and the peak bytes of tensors it held at once.

    Every tensor that an operation creates while ``fn`` runs is counted (by its storage,
    so views are free) from its creation until it is freed, on any device; tensors created
    before the call (θ, the inputs) are not. Autograd's saved tensors count, since they
    keep their storages alive; Python objects and the graph's nodes do not. The count is
    exact and the same on every run, unlike the resident memory of the process, which the
    allocator's caches blur. A ``TorchDispatchMode`` does the bookkeeping, so ``fn`` runs
    slower than usual: time it separately.
    """
    if not callable(fn):
        raise ArgumentTypeError(f"fn must be callable, got {type(fn).__name__}")
    mode = _TensorMemory()
    with mode:
        result = fn()
    return result, mode.peak
