"""Differential entropy of state distributions: supplement B.1 (Theorem 2, eq. S3-S5).

If the states ``x_t`` of eq. (1) are random with density ``p_t`` and the state map
``x -> f(x, u_t; θ)`` is one-to-one with a nonsingular Jacobian, the change of variables in
the proof of Theorem 2 gives the *exact* identity

    H_{t+1} = H_t + E[ log |det ∂x_{t+1}/∂x_t| ],

where ``H_t`` is the differential entropy of eq. (3) (in nats). Hadamard's inequality (S4)
bounds every log-determinant by the sum of the log column norms, and each column norm by the
Lipschitz constant ``Lf``, so ``H_{t+1} <= H_t + Nx log Lf`` (the corrected form of S3/S5;
the extracted supplement prints the inequality the other way round, see the chapter
"Entropy and forgetting").

Functions:

* :func:`log_abs_det_jacobian` - ``log |det ∂step/∂x|`` at every sample;
* :func:`entropy_change` - its mean: the exact entropy change of the pushed-forward law;
* :func:`entropy_trajectory` - push a cloud through ``n_steps`` steps, accumulating it;
* :func:`hadamard_bound` - the right-hand side of S4, ``Σ_i log ||v_i||_2``;
* :func:`lipschitz_entropy_bound` - ``Nx log Lf``, the last step of S5;
* :func:`gaussian_entropy` - ``½ log det(2πe Σ)``, the closed form used to check the rest;
* :func:`knn_entropy` - the Kozachenko-Leonenko k-nearest-neighbour estimator.
"""

from __future__ import annotations

import math
from typing import Callable

import numpy as np
import torch
from scipy.spatial import cKDTree
from scipy.special import digamma, gammaln
from torch import Tensor

from ._checks import (check_callable, check_finite, check_finite_result, check_min_ndim,
                      check_positive_int, check_positive_real, check_tensor)
from .dynamics import _jacobian, jacobian

Step = Callable[[Tensor], Tensor]

__all__ = [
    "log_abs_det_jacobian",
    "entropy_change",
    "entropy_trajectory",
    "hadamard_bound",
    "lipschitz_entropy_bound",
    "gaussian_entropy",
    "knn_entropy",
    "log_unit_ball_volume",
]


def _check_square(name: str, J: Tensor) -> None:
    check_tensor(name, J, floating=True, finite=False, what="(..., n, n)")
    if J.dim() < 2 or J.shape[-1] != J.shape[-2]:
        raise ValueError(
            f"{name} must be a batch of square matrices (..., n, n), got shape {tuple(J.shape)}"
        )


def _check_samples(name: str, samples: Tensor) -> None:
    check_tensor(name, samples, floating=True, what="(..., Nx)")
    check_min_ndim(name, samples, 1)
    if samples.numel() == 0:
        raise ValueError(f"{name} must hold at least one state (..., Nx), got {tuple(samples.shape)}")


def _log_abs_det(J: Tensor) -> Tensor:
    """``log |det J|`` of the Jacobians of ``step``; raise where Theorem 2 does not apply."""
    bad = ~torch.isfinite(J).flatten(-2).all(-1) if J.dim() > 2 else None
    if bad is not None and bool(bad.any()):
        from ._checks import format_indices
        raise ValueError(f"step has non-finite Jacobian entries at the samples "
                         f"{format_indices(bad)}")
    if not bool(torch.isfinite(J).all()):
        raise ValueError("step has non-finite Jacobian entries at some samples")
    sign, logabsdet = torch.linalg.slogdet(J)
    if bool((sign == 0).any()) or not bool(torch.isfinite(logabsdet).all()):
        raise ValueError(
            "step has a singular Jacobian at some samples: the map is not locally one-to-one "
            "there, so the entropy of the pushed-forward distribution is not defined"
        )
    return logabsdet


def log_abs_det_jacobian(step: Step, samples: Tensor) -> Tensor:
    """``log |det ∂step/∂x|`` at every sample: shape ``samples.shape[:-1]``.

    ``step`` maps states ``(..., Nx)`` to next states ``(..., Nx)``; the Jacobians come from
    :func:`lib.dynamics.jacobian` (exact reverse-mode AD, batched). A singular Jacobian at
    some sample means the map is not locally one-to-one there, Theorem 2 does not apply and
    the pushed-forward law has no density; that raises ``ValueError`` instead of returning
    ``-inf``.
    """
    if not callable(step):
        raise ValueError(f"step must be callable (states (..., Nx) -> (..., Nx)), got {step!r}")
    _check_samples("samples", samples)
    _, J = _jacobian(step, samples, "samples")  # raises ValueError naming `step` if not (..., Nx) -> (..., Nx)
    return _log_abs_det(J)


def entropy_change(step: Step, samples: Tensor) -> Tensor:
    """Exact change of differential entropy ``H_{t+1} - H_t`` (nats), the identity of B.1.

    ``samples`` (shape ``(..., Nx)``) are draws of ``x_t``; the result is the Monte-Carlo mean
    of ``log |det ∂step/∂x|`` over all of them, a 0-dim tensor. For a linear map ``x -> A x``
    it is exactly ``log |det A|`` whatever the samples.
    """
    return log_abs_det_jacobian(step, samples).mean()


def entropy_trajectory(
    step: Step,
    x0: Tensor,
    n_steps: int,
    *,
    H0: float | Tensor = 0.0,
    return_jacobians: bool = False,
) -> tuple[Tensor, Tensor] | tuple[Tensor, Tensor, Tensor]:
    """Push the cloud ``x0`` (``(..., Nx)``, draws of ``x_0``) through ``n_steps`` steps.

    Returns ``(xs, H)``: the clouds ``x_0 .. x_{n_steps}`` with shape
    ``(n_steps + 1, *x0.shape)`` and the exact entropies ``H_0 .. H_{n_steps}`` (shape
    ``(n_steps + 1,)``), obtained from ``H0`` (the entropy of ``x_0``, e.g.
    :func:`gaussian_entropy`) by adding the identity of B.1 (:func:`entropy_change`) at
    every step. With ``return_jacobians=True`` also the one-step Jacobians
    ``∂x_{t+1}/∂x_t`` at every sample, shape ``(n_steps, *x0.shape, Nx)``; their products
    are the derivatives ``∂x_t/∂x_0`` of the gradient recursion.
    """
    if not callable(step):
        raise ValueError(f"step must be callable (states (..., Nx) -> (..., Nx)), got {step!r}")
    _check_samples("x0", x0)
    check_positive_int("n_steps", n_steps)
    H0 = torch.as_tensor(H0, dtype=x0.dtype, device=x0.device)
    check_finite("H0", H0)
    if H0.numel() != 1:
        raise ValueError(f"H0 must be a single number, got shape {tuple(H0.shape)}")
    xs, dH, Js = [x0], [], []
    x = x0
    for t in range(n_steps):
        x, J = _jacobian(step, x, "x0" if t == 0 else None)
        check_finite_result(f"the cloud at step {t + 1}", x, batch_dims=x.dim() - 1,
                            hint="these samples left the floats")
        dH.append(_log_abs_det(J).mean())
        xs.append(x)
        if return_jacobians:
            Js.append(J)
    H = torch.cat([H0.reshape(1), H0.reshape(1) + torch.cumsum(torch.stack(dH), 0)])
    if return_jacobians:
        return torch.stack(xs), H, torch.stack(Js)
    return torch.stack(xs), H


def hadamard_bound(J: Tensor) -> Tensor:
    """Right-hand side of Hadamard's inequality (S4): ``Σ_i log ||v_i||_2``.

    ``J`` has shape ``(..., n, n)`` and ``v_i = J[..., :, i]`` is its i-th column; the result
    has shape ``J.shape[:-2]`` and satisfies ``log |det J| <= hadamard_bound(J)`` (a zero
    column gives ``-inf`` on both sides).
    """
    _check_square("J", J)
    check_finite("J", J)
    return torch.log(torch.linalg.vector_norm(J, dim=-2)).sum(-1)


def lipschitz_entropy_bound(Lf: float | Tensor, nx: int) -> Tensor:
    """``Nx log Lf``: the bound of S5 on the entropy change of one step (nats)."""
    check_positive_real("Lf", Lf)
    check_positive_int("nx", nx)
    return nx * torch.log(torch.as_tensor(Lf, dtype=torch.float64))


def gaussian_entropy(cov: Tensor) -> Tensor:
    """Differential entropy of ``N(μ, Σ)`` in nats: ``½ log det(2πe Σ)``.

    ``cov`` has shape ``(..., n, n)`` and must be symmetric positive definite.
    """
    _check_square("cov", cov)
    check_finite("cov", cov)
    if not torch.allclose(cov, cov.transpose(-1, -2), rtol=1e-10, atol=1e-12):
        raise ValueError("cov must be symmetric")
    L, info = torch.linalg.cholesky_ex(cov)
    if bool((info != 0).any()):
        raise ValueError("cov must be positive definite")
    n = cov.shape[-1]
    logdet = 2 * torch.log(torch.diagonal(L, dim1=-2, dim2=-1)).sum(-1)
    return 0.5 * (n * math.log(2 * math.pi * math.e) + logdet)


def log_unit_ball_volume(d: int) -> float:
    """``log V_d`` with ``V_d = π^{d/2} / Γ(d/2 + 1)``, the volume of the Euclidean unit ball."""
    check_positive_int("d", d)
    return 0.5 * d * math.log(math.pi) - float(gammaln(0.5 * d + 1))


def knn_entropy(samples: Tensor, k: int = 3) -> Tensor:
    """Kozachenko-Leonenko estimate of differential entropy (nats) from ``samples`` ``(n, d)``.

        Ĥ = ψ(n) - ψ(k) + log V_d + (d / n) Σ_i log r_i,

    with ``r_i`` the Euclidean distance from sample i to its k-th nearest other sample, ψ the
    digamma function and ``V_d`` the volume of the unit ball in R^d (Kozachenko and
    Leonenko, 1987; Kraskov, Stögbauer and Grassberger, 2004, eq. 20). The estimator is
    consistent; its bias shrinks as ``n`` grows (fastest for smooth densities without sharp
    edges). Neighbours come from ``scipy.spatial.cKDTree``; the result is a 0-dim float64
    tensor on the device of ``samples``.
    """
    check_positive_int("k", k)
    check_tensor("samples", samples, floating=True, what="(n, d)")
    if samples.dim() != 2:
        raise ValueError(f"samples must have shape (n, d), got {tuple(samples.shape)}")
    n, d = samples.shape
    if d == 0:
        raise ValueError("samples must have at least one coordinate (d >= 1)")
    if n < k + 1:
        raise ValueError(
            f"samples must hold at least k + 1 = {k + 1} points for the k-th neighbour, got {n}"
        )
    x = samples.detach().to("cpu", torch.float64).numpy()
    dist, _ = cKDTree(x).query(x, k=k + 1)  # column 0 is the point itself
    r = dist[:, k]
    if np.any(r <= 0):
        raise ValueError(
            "samples contain repeated points (a k-th neighbour distance is 0); the estimator "
            "needs a continuous distribution - increase k or remove duplicates"
        )
    H = digamma(n) - digamma(k) + log_unit_ball_volume(d) + d * np.mean(np.log(r))
    return torch.tensor(float(H), dtype=torch.float64, device=samples.device)
