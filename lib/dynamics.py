"""RNNs as dynamical systems: simulation, Lyapunov spectra, orbit (bifurcation) diagrams.

Conventions (used by every chapter):

* A *step* is a callable mapping states ``(..., Nx)`` to next states ``(..., Nx)``; any
  leading dimensions are batch dimensions, and a step may broadcast a batch of parameters
  against them (``model.autonomous(theta)`` with ``theta`` of shape ``(P, 1, Nθ)`` and states
  of shape ``(P, K, Nx)`` runs K initial states under each of P parameter vectors).
* Time is indexed from 0: with inputs ``u_0 .. u_{N-1}`` a rollout produces the states
  ``x_0 .. x_N`` by ``x_{t+1} = f(x_t, u_t; θ)`` and the outputs ``ŷ_t = g(x_t, u_t; θ)`` for
  ``t = 0 .. N-1`` (eq. (1)).
* Lyapunov exponents are in nats per step.
"""

from __future__ import annotations

import math

from typing import Callable, NamedTuple

import torch
from torch import Tensor
import torch.autograd.forward_ad as fwAD

from ._checks import (
    ArgumentTypeError,
    check_callable,
    check_finite_result,
    check_nonnegative_int,
    check_positive_int,
    check_positive_real,
    check_tensor,
)

Step = Callable[[Tensor], Tensor]

__all__ = [
    "jacobian",
    "simulate",
    "rollout",
    "lyapunov_spectrum",
    "largest_lyapunov",
    "fixed_points",
    "FixedPoints",
    "lyapunov_blocks",
    "orbit_diagram",
    "detect_period",
    "classify_attractor",
]


def _check_state(name: str, x0) -> Tensor:
    """States ``(..., Nx)``: a finite floating-point tensor with at least one dimension."""
    return check_tensor(name, x0, floating=True, min_ndim=1, what="(..., Nx)")


def _first_step(step: Step, x: Tensor, name: str) -> Tensor:
    """``step(x)`` for the first time, so that a step that cannot take these states fails
    naming the argument they came from, not with torch's internal message."""
    try:
        return step(x)
    except (RuntimeError, IndexError) as err:
        raise ValueError(f"step failed on {name} of shape {tuple(x.shape)} (states (..., Nx) "
                         f"-> (..., Nx) expected): {err}") from err


def _check_step_output(x: Tensor, x_next: Tensor) -> None:
    if not isinstance(x_next, Tensor):
        raise ArgumentTypeError(f"step must return a torch.Tensor of states, got "
                                f"{type(x_next).__name__}")
    if x_next.shape != x.shape:
        raise ValueError(
            f"step must map states of shape {tuple(x.shape)} to the same shape, "
            f"got {tuple(x_next.shape)}"
        )


def simulate(step: Step, x0: Tensor, n_steps: int, *, n_transient: int = 0) -> Tensor:
    """Iterate ``step`` from ``x0``; return the states after the transient.

    Runs ``n_transient`` steps without storing them, then returns the next ``n_steps``
    states, shape ``(n_steps, *x0.shape)``; element ``k`` is ``x_{n_transient + k + 1}``.

    Raises ``ValueError`` when an orbit leaves the floats (a NaN or inf state), naming the
    batch indices of ``x0`` (its leading dimensions) whose orbits did.
    """
    check_callable("step", step, "(states (..., Nx) -> (..., Nx))")
    _check_state("x0", x0)
    check_positive_int("n_steps", n_steps)
    check_nonnegative_int("n_transient", n_transient)
    x = x0
    with torch.no_grad():
        for t in range(n_transient):
            x = _first_step(step, x, "x0") if t == 0 else step(x)
        out = x0.new_empty((n_steps, *x0.shape))
        for k in range(n_steps):
            x_next = _first_step(step, x, "x0") if k == 0 and not n_transient else step(x)
            if k == 0:
                _check_step_output(x, x_next)
            x = x_next
            out[k] = x
    return check_finite_result("the orbit", out, batch_dims=x0.dim() - 1, lead=1,
                               hint="the orbits from these initial states left the floats "
                                    "(NaN or inf states): the map diverges there")


def rollout(f, g, theta: Tensor, x0: Tensor, u: Tensor) -> tuple[Tensor, Tensor]:
    """Run eq. (1) over the inputs ``u`` (shape ``(N, ..., Nu)``) from ``x0`` (``(..., Nx)``).

    Returns ``(x, y_hat)``: the states ``x_0 .. x_N`` with shape ``(N + 1, ..., Nx)`` and the
    outputs ``ŷ_0 .. ŷ_{N-1}`` with shape ``(N, ..., Ny)``. Differentiable (no ``no_grad``),
    so autograd through it is backpropagation through time.
    """
    check_callable("f", f)
    check_callable("g", g)
    _check_state("x0", x0)
    check_tensor("theta", theta, floating=True, min_ndim=1, what="(..., Nθ)")
    check_tensor("u", u, floating=True, min_ndim=2, what="(N, ..., Nu)")
    if u.shape[0] == 0:
        raise ValueError("u must hold at least one time step (got N = 0)")
    xs = [x0]
    ys = []
    x = x0
    for t in range(u.shape[0]):
        if t == 0:
            try:
                ys.append(g(x, u[t], theta))
                x_next = f(x, u[t], theta)
            except ValueError as err:  # name rollout's arguments, not the maps'
                raise ValueError(f"f or g does not accept x0 {tuple(x0.shape)}, u[0] "
                                 f"{tuple(u[0].shape)} and theta {tuple(theta.shape)}: "
                                 f"{err}") from err
        else:
            ys.append(g(x, u[t], theta))
            x_next = f(x, u[t], theta)
        if t == 0 and x_next.shape[-1] != x0.shape[-1]:
            raise ValueError(
                f"f must return states (..., {x0.shape[-1]}) like x0, got {tuple(x_next.shape)}"
            )
        x = x_next
        xs.append(x)
    return torch.stack(xs), torch.stack(ys)


def jacobian(step: Step, x: Tensor) -> tuple[Tensor, Tensor]:
    """``(step(x), ∂step/∂x)`` for a batch of states ``x`` of shape ``(..., Nx)``.

    Exact (reverse-mode AD). The state is copied Nx times along a new *leading* dimension
    and row i of the Jacobian is read off copy i in a single backward pass, so ``step`` is
    called once per batch and keeps its own broadcasting (batched parameters of shape
    ``(P, 1, Nθ)``, say). ``benchmarks/bench_jacobians.py`` compares this with
    ``torch.func.jacrev``/``jacfwd`` under ``vmap``: on the small maps of this book (a few
    state variables, the per-call overhead dominates) it is 2.5-9x faster; for wide states
    and large batches (Nx = 32, 256 states) torch.func is about 1.4x faster. Returns the next states ``(..., Nx)`` and the Jacobians
    ``(..., Nx, Nx)`` (output index first).
    """
    check_callable("step", step, "(states (..., Nx) -> (..., Nx))")
    _check_state("x", x)
    return _jacobian(step, x, "x")


def _jacobian(step: Step, x: Tensor, name: str | None = None) -> tuple[Tensor, Tensor]:
    """:func:`jacobian` without the argument checks, for iterates inside lib (which may
    have left the floats: the callers report that themselves). With ``name``, a step that
    cannot take these states fails naming the argument they came from."""
    nx = x.shape[-1]
    xr = x.detach().unsqueeze(0).expand(nx, *x.shape).clone().requires_grad_(True)
    with torch.enable_grad():
        y = step(xr) if name is None else _first_step(step, xr, name)
        _check_step_output(xr, y)
        seed = torch.eye(nx, dtype=y.dtype, device=y.device)
        seed = seed.reshape(nx, *([1] * (x.dim() - 1)), nx).expand_as(y)
        (rows,) = torch.autograd.grad(y, xr, grad_outputs=seed, allow_unused=True)
    if rows is None:  # step does not depend on x
        rows = torch.zeros_like(xr)
    return y[0].detach(), rows.movedim(0, -2)


def _tangent_map(step: Step, x: Tensor, Q: Tensor, name: str | None = None) -> tuple[Tensor, Tensor]:
    """``(step(x), J(x) @ Q)`` for ``Q`` of shape ``(..., Nx, k)``.

    For few tangent directions (k much smaller than Nx) forward-mode dual numbers push the
    k columns along a new leading dimension; otherwise the full Jacobian is cheaper.
    """
    nx, k = Q.shape[-2], Q.shape[-1]
    if 8 * k > nx:
        x_next, J = _jacobian(step, x, name)
        return x_next, J @ Q
    primal = x.unsqueeze(0).expand(k, *x.shape).clone()
    tangent = Q.movedim(-1, 0).contiguous()
    with fwAD.dual_level():
        dual = fwAD.make_dual(primal, tangent)
        out = step(dual) if name is None else _first_step(step, dual, name)
        x_next, JQ = fwAD.unpack_dual(out)
    if JQ is None:  # step does not depend on x at all
        JQ = torch.zeros_like(x_next)
    return x_next[0], JQ.movedim(0, -1)


def lyapunov_blocks(
    step: Step,
    x0: Tensor,
    n_steps: int,
    *,
    n_transient: int = 0,
    n_blocks: int = 1,
    n_exponents: int | None = None,
    on_state: Callable[[Tensor], None] | None = None,
) -> Tensor:
    """Lyapunov exponents over ``n_blocks`` consecutive blocks of the orbit.

    Returns shape ``(n_blocks, ..., k)`` (unsorted, in the order of the QR columns, which is
    descending for a well-converged run). ``n_steps`` must be divisible by ``n_blocks``.
    The spread over blocks (or over initial states) is an error estimate.

    ``on_state`` (optional) is called with every state the orbit visits after ``x0``,
    ``x_1, ..., x_{n_transient + n_steps}`` (detached, shape of ``x0``), so that one pass
    yields both the orbit and its exponents (:func:`lib.training.orbit_sampler` uses it).
    With ``k = 1`` the QR factorisation of the single column is its normalisation.
    """
    check_callable("step", step, "(states (..., Nx) -> (..., Nx))")
    _check_state("x0", x0)
    check_positive_int("n_steps", n_steps)
    check_nonnegative_int("n_transient", n_transient)
    check_positive_int("n_blocks", n_blocks)
    if n_steps % n_blocks:
        raise ValueError(f"n_steps ({n_steps}) must be divisible by n_blocks ({n_blocks})")
    nx = x0.shape[-1]
    k = nx if n_exponents is None else check_positive_int("n_exponents", n_exponents)
    if k > nx:
        raise ValueError(f"n_exponents must be at most Nx = {nx}, got {k}")
    if on_state is not None and not callable(on_state):
        raise ValueError("on_state must be None or a callable taking the state (..., Nx)")
    x = x0.detach()
    with torch.no_grad():
        for t in range(n_transient):
            x = _first_step(step, x, "x0") if t == 0 else step(x)
            if on_state is not None:
                on_state(x)
    eye = torch.eye(nx, k, dtype=x0.dtype, device=x0.device)
    Q = eye.expand(*x.shape[:-1], nx, k).clone()
    block_len = n_steps // n_blocks
    blocks = []
    sums = x.new_zeros((*x.shape[:-1], k))
    with torch.no_grad():
        for t in range(n_steps):
            x_next, JQ = _tangent_map(step, x, Q, "x0" if t == 0 and not n_transient else None)
            if t == 0:
                _check_step_output(x, x_next)
            if k == 1:  # QR of one column: its norm and direction
                r = torch.linalg.vector_norm(JQ, dim=-2)  # (..., 1)
                # r = 0: the tangent collapsed exactly (a superstable orbit), λ_1 = -inf
                # as in the QR branch below; keep the old direction instead of 0/0
                Q = torch.where(r.unsqueeze(-1) > 0, JQ / r.unsqueeze(-1), Q)
                sums = sums + torch.log(r)
            else:
                Q, R = torch.linalg.qr(JQ)
                sums = sums + torch.log(torch.diagonal(R, dim1=-2, dim2=-1).abs())
            x = x_next
            if on_state is not None:
                on_state(x)
            if (t + 1) % block_len == 0:
                blocks.append(sums / block_len)
                sums = torch.zeros_like(sums)
    out = torch.stack(blocks)
    # -inf is a legitimate answer (a direction collapsed exactly: a superstable orbit);
    # NaN or +inf means the orbit itself diverged.
    return check_finite_result(
        "the Lyapunov exponents", out, batch_dims=x0.dim() - 1, lead=1, allow_neginf=True,
        hint="the orbits from these initial states diverged (check x0, the step map and "
             "n_steps)")


def lyapunov_spectrum(
    step: Step,
    x0: Tensor,
    n_steps: int,
    *,
    n_transient: int = 0,
    n_exponents: int | None = None,
) -> Tensor:
    """Lyapunov spectrum by the QR (Benettin) method on exact Jacobians (forward-mode AD).

    With ``Q_0 = I`` and ``J_t`` the Jacobian of ``step`` at ``x_t``, each step factors
    ``J_t Q_t = Q_{t+1} R_{t+1}``; the exponents are ``(1/n) Σ_t log|diag R_t|``.

    Args:
        step: map of states ``(..., Nx) -> (..., Nx)``.
        x0: initial states ``(..., Nx)``; every leading index is a separate orbit.
        n_steps: steps averaged over, after ``n_transient`` discarded ones.
        n_exponents: compute only the ``k`` largest (default: all Nx).

    Returns:
        Exponents of shape ``(..., k)`` in nats per step, sorted descending.
    """
    blocks = lyapunov_blocks(step, x0, n_steps, n_transient=n_transient, n_blocks=1,
                             n_exponents=n_exponents)
    return torch.sort(blocks[0], dim=-1, descending=True).values


def largest_lyapunov(step: Step, x0: Tensor, n_steps: int, *, n_transient: int = 0,
                     on_state: Callable[[Tensor], None] | None = None) -> Tensor:
    """Largest Lyapunov exponent λ_1 of ``step`` from each initial state, nats per step.

    :func:`lyapunov_spectrum` with ``n_exponents=1`` (one tangent vector, renormalised
    every step): ``x0`` is ``(..., Nx)``, the result ``(...)``. ``on_state`` sees every
    state of the orbit (see :func:`lyapunov_blocks`). The one definition of λ_1 in
    ``lib``: :func:`lib.landscape.landscape_lyapunov` (over a grid of parameters),
    :func:`lib.training.lyapunov_sampler` and :func:`lib.training.orbit_sampler` (over
    training epochs) call it.
    """
    blocks = lyapunov_blocks(step, x0, n_steps, n_transient=n_transient, n_blocks=1,
                             n_exponents=1, on_state=on_state)
    return blocks[0, ..., 0]


class FixedPoints(NamedTuple):
    """What :func:`fixed_points` returns.

    ``points`` ``(M, Nx)``: the distinct fixed points found; ``stable`` ``(M,)`` bool: the
    spectral radius of the Jacobian there is below 1; ``spectral_radius`` ``(M,)``;
    ``not_converged`` ``(R,)`` long: the rows of ``x0`` whose Newton iteration did not reach
    ``tol`` (reported, never returned as fixed points).
    """

    points: Tensor
    stable: Tensor
    spectral_radius: Tensor
    not_converged: Tensor


def fixed_points(step: Step, x0: Tensor, *, tol: float = 1e-10, max_iter: int = 100,
                 merge_tol: float | None = None) -> FixedPoints:
    """Fixed points ``x = step(x)`` by Newton's method from every row of ``x0``, batched.

    Newton's iteration on ``F(x) = step(x) - x``: ``x <- x - (J - I)^{-1} F(x)`` with the
    exact Jacobian ``J`` of :func:`jacobian`, from all K starts ``x0 (K, Nx)`` at once, until
    ``max |F(x)| <= tol`` (an iteration stops moving a converged row). Converged rows closer
    than ``merge_tol`` (default ``sqrt(tol)``, in the max norm) are one fixed point. A fixed
    point is *stable* when the spectral radius of ``J`` there is below 1 (it attracts every
    nearby state; Sussillo and Barak (2013) use the same test on trained networks).

    Raises ``ValueError`` for a non-finite ``x0``, a shape other than ``(K, Nx)``,
    ``tol <= 0``, ``max_iter < 1``, or when ``step`` changes the shape.
    """
    check_callable("step", step, "(states (K, Nx) -> (K, Nx))")
    _check_state("x0", x0)
    if x0.dim() != 2 or x0.shape[0] == 0 or x0.shape[1] == 0:
        raise ValueError(f"x0 must have shape (K, Nx) with K, Nx >= 1, got {tuple(x0.shape)}")
    check_positive_real("tol", tol)
    check_positive_int("max_iter", max_iter)
    merge = math.sqrt(tol) if merge_tol is None else merge_tol
    check_positive_real("merge_tol", merge)
    x = x0.clone()
    eye = torch.eye(x.shape[1], dtype=x.dtype, device=x.device)
    done = torch.zeros(x.shape[0], dtype=torch.bool, device=x.device)
    for _ in range(max_iter):
        fx, J = _jacobian(step, x)
        F = fx - x
        res = F.abs().amax(-1)
        done = torch.isfinite(res) & (res <= tol)
        if bool(done.all()):
            break
        try:
            delta = torch.linalg.solve(J - eye, F)
        except RuntimeError:  # a singular J - I somewhere: least squares for the batch
            delta = torch.linalg.lstsq(J - eye, F.unsqueeze(-1)).solution[..., 0]
        ok = torch.isfinite(delta).all(-1) & ~done
        x = torch.where(ok.unsqueeze(-1), x - delta, x)
    fx, J = _jacobian(step, x)
    res = (fx - x).abs().amax(-1)
    done = torch.isfinite(res) & (res <= tol)
    found, radii = [], []
    for k in done.nonzero()[:, 0].tolist():
        if any(float((x[k] - p).abs().max()) <= merge for p in found):
            continue
        found.append(x[k])
        radii.append(torch.linalg.eigvals(J[k]).abs().max().real)
    nx = x.shape[1]
    points = torch.stack(found) if found else x.new_zeros(0, nx)
    radius = torch.stack(radii).to(x.dtype) if radii else x.new_zeros(0)
    return FixedPoints(points, radius < 1, radius, (~done).nonzero()[:, 0])


def orbit_diagram(
    family: Callable[[Tensor, Tensor], Tensor],
    params: Tensor,
    x0: Tensor,
    *,
    n_keep: int,
    n_transient: int,
    observe: Callable[[Tensor], Tensor] | None = None,
) -> Tensor:
    """Steady-state samples of a family of maps, all parameters in one batched run.

    ``family(x, p)`` maps states ``(P, K, Nx)`` to next states, where ``p`` is ``params``
    reshaped so that it broadcasts over the K initial states: ``(P, 1, 1)`` for scalar
    parameters (``params`` of shape ``(P,)``), ``(P, 1, *param_shape)`` otherwise.
    ``x0`` is ``(K, Nx)`` (the same initial states for every parameter) or ``(P, K, Nx)``.

    Returns ``observe(x_t)`` for the ``n_keep`` steps after ``n_transient`` discarded ones,
    shape ``(P, K, n_keep, *obs_shape)`` (``observe`` defaults to the identity, giving
    ``(P, K, n_keep, Nx)``).

    Raises ``ValueError`` naming the ``(parameter, initial state)`` indices whose orbits
    leave the floats (the logistic map at r = 5, say, escapes to -inf).
    """
    check_callable("family", family, "(states (P, K, Nx), params) -> states")
    check_tensor("params", params, floating=True, min_ndim=1, what="(P, ...)")
    _check_state("x0", x0)
    if observe is not None:
        check_callable("observe", observe)
    check_positive_int("n_keep", n_keep)
    check_nonnegative_int("n_transient", n_transient)
    P = params.shape[0]
    if P == 0:
        raise ValueError("params must hold at least one parameter value")
    # scalar parameters become (P, 1, 1), vector ones (P, 1, d): both broadcast over (P, K, Nx)
    p = params.reshape(P, 1, 1) if params.dim() == 1 else params.reshape(P, 1, *params.shape[1:])
    if x0.dim() == 2:
        x0 = x0.unsqueeze(0).expand(P, *x0.shape).clone()
    elif x0.dim() != 3 or x0.shape[0] != P:
        raise ValueError(
            f"x0 must have shape (K, Nx) or (P={P}, K, Nx), got {tuple(x0.shape)}"
        )
    obs = observe if observe is not None else (lambda x: x)
    traj = simulate(lambda x: family(x, p), x0, n_keep, n_transient=n_transient)
    values = obs(traj)  # (n_keep, P, K, ...)
    if not isinstance(values, Tensor) or values.shape[:3] != traj.shape[:3]:
        raise ValueError(f"observe must map states (T, P, K, Nx) to (T, P, K, ...), got "
                         f"{getattr(values, 'shape', type(values).__name__)}")
    return check_finite_result("observe(orbit)", values.movedim(0, 2), batch_dims=2)


def detect_period(orbit: Tensor, *, max_period: int = 32, tol: float = 1e-6) -> Tensor:
    """Smallest period of each steady-state orbit, or 0 if none up to ``max_period``.

    ``orbit`` has shape ``(T, ..., d)`` (time first, as returned by :func:`simulate`).
    Period ``p`` is accepted when ``|x_{t+p} - x_t| <= tol * (1 + |x_t|)`` for every t.
    Returns an integer tensor of shape ``(...)``.
    """
    check_tensor("orbit", orbit, min_ndim=2, what="(T, ..., d)")
    check_positive_int("max_period", max_period)
    check_positive_real("tol", tol)
    T = orbit.shape[0]
    if T <= max_period:
        raise ValueError(f"orbit must have more than max_period={max_period} steps, got {T}")
    period = torch.zeros(orbit.shape[1:-1], dtype=torch.long, device=orbit.device)
    for p in range(max_period, 0, -1):  # descending, so the smallest period wins
        diff = (orbit[p:] - orbit[:-p]).abs()
        scale = tol * (1 + orbit[:-p].abs())
        ok = (diff <= scale).all(dim=-1).all(dim=0)
        period = torch.where(ok, torch.full_like(period, p), period)
    return period


def classify_attractor(period: Tensor, lyapunov_max: Tensor, *, tol: float = 1e-3) -> list[str]:
    """Name the attractor of each orbit from its period and largest Lyapunov exponent.

    ``"fixed point"`` (period 1), ``"period-k cycle"``, ``"chaotic"`` (aperiodic with
    λ_max > tol), ``"quasi-periodic"`` (aperiodic with |λ_max| <= tol), ``"aperiodic"``
    otherwise (e.g. a long transient). Inputs are flattened in C order.
    """
    check_positive_real("tol", tol)
    check_tensor("period", period, integer=True)
    check_tensor("lyapunov_max", lyapunov_max, floating=True, allow_neginf=True)
    if period.shape != lyapunov_max.shape:
        raise ValueError(
            f"period and lyapunov_max must have the same shape, got {tuple(period.shape)} "
            f"and {tuple(lyapunov_max.shape)}"
        )
    names = []
    for p, lam in zip(period.reshape(-1).tolist(), lyapunov_max.reshape(-1).tolist()):
        if p == 1:
            names.append("fixed point")
        elif p > 1:
            names.append(f"period-{p} cycle")
        elif lam > tol:
            names.append("chaotic")
        elif abs(lam) <= tol:
            names.append("quasi-periodic")
        else:
            names.append("aperiodic")
    return names
