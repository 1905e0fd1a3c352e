"""Smoothness of the cost: supplement B.2-B.4 of the paper (Lemma 2, Theorem 1 (a) and (b)).

Three groups of functions:

* ``S``, ``log_S``: the sum S(t) of eq. (S11), in closed form, without the cancellation of
  the textbook formula near Lf = 1, and in log space for large ``t * log Lf``.
* The bound formulas: ``L_V`` (section B.3, the constant after eq. (S12)) and ``P``, ``Q``,
  ``T``, ``L_J``, ``L_Jyhat``, ``L_V_prime`` (section B.4). They take the constants of the
  proof (Lf, Lg, L'f, L'g, K0..K4, Ly and the output bound M(t)) and return whole curves
  t = 1..N (or horizons N = 1..N_max) at once. Every sum is evaluated in log space, so
  Lf > 1 with N in the thousands gives finite logarithms (``log=True``) instead of
  overflow; ``log=False`` returns ``exp`` of them (``inf`` beyond float range).
* Loss constants of Lemma 2 (``loss_constants``) and empirical estimates: the largest
  ratio ``|V(a) - V(b)| / ||a - b||`` and ``||∇V(a) - ∇V(b)|| / ||a - b||`` over sampled
  pairs, for every horizon N of one rollout (``cost_curves``, ``empirical_lipschitz``).
  Gradients are forward sensitivities (eq. S1-S2) by forward-mode autograd.

Conventions: the cost of eq. (2) is ``V_N(θ, x0) = (1/N) Σ_{t=1..N} l(ŷ_t, y_t)`` with
``ŷ_t = g(x_t, u_t; θ)``; a point is ``p = [θ, x0]`` (θ first). Norms are Euclidean
(spectral for matrices). Constants broadcast: pass tensors of shape ``(...)`` to evaluate a
whole batch of bounds (for instance many Lf at once); the time axis is always last.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, NamedTuple, Union

import torch
import torch.autograd.forward_ad as fwAD
from torch import Tensor

from ._checks import (ArgumentTypeError, check_callable, check_finite, check_finite_result,
                      check_positive_int, check_tensor)
from .dynamics import rollout
from .models import OrthogonalRNN, modrelu

__all__ = [
    "S",
    "log_S",
    "output_bound",
    "L_V",
    "T",
    "P",
    "Q",
    "L_J",
    "L_Jyhat",
    "L_V_prime",
    "fit_growth",
    "LossConstants",
    "loss_constants",
    "squared_error",
    "bce_with_logits",
    "LOSSES",
    "elman_constants",
    "max_ratio",
    "cost_curves",
    "output_jacobians",
    "empirical_lipschitz",
    "sample_pairs",
    "InitialStateGradients",
    "initial_state_gradients",
]

Number = Union[float, int, Tensor]
OutputBound = Union[Number, Callable[[Tensor], Tensor]]


# --------------------------------------------------------------------------- checks
def _const(name: str, value: Number, *, positive: bool = False) -> Tensor:
    """A constant of the bounds as a float64 tensor; finite and >= 0 (> 0 if ``positive``)."""
    if isinstance(value, bool) or not isinstance(value, (int, float, Tensor)):
        raise ArgumentTypeError(f"{name} must be a real number or a tensor, got "
                                f"{type(value).__name__}")
    if isinstance(value, Tensor) and (value.dtype == torch.bool or value.is_complex()):
        raise ArgumentTypeError(f"{name} must hold real numbers, got dtype {value.dtype}")
    v = torch.as_tensor(value, dtype=torch.float64)
    if not bool(torch.isfinite(v).all()):
        raise ValueError(f"{name} must be finite, got {value!r}")
    if positive and not bool((v > 0).all()):
        raise ValueError(f"{name} must be > 0, got {value!r}")
    if not bool((v >= 0).all()):
        raise ValueError(f"{name} must be >= 0, got {value!r}")
    return v


def _horizon(N: int) -> int:
    if isinstance(N, bool) or not isinstance(N, int) or N < 1:
        raise ValueError(f"N must be a positive integer (the sequence length), got {N!r}")
    return N


def _times(t: Number) -> Tensor:
    if isinstance(t, bool) or isinstance(t, str):
        raise ArgumentTypeError(f"t must be a number or a tensor of numbers, got {t!r}")
    try:
        v = torch.as_tensor(t, dtype=torch.float64)
    except (TypeError, ValueError, RuntimeError):
        raise ArgumentTypeError(f"t must be a number or a tensor of numbers, got "
                                f"{type(t).__name__}") from None
    if not bool(torch.isfinite(v).all()):
        raise ValueError(f"t must be finite, got {t!r}")
    if not bool((v >= 0).all()):
        raise ValueError(f"t must be >= 0, got {t!r}")
    return v


# --------------------------------------------------------------------------- S(t)
def _log_abs_expm1(a: Tensor) -> Tensor:
    """``log|exp(a) - 1|`` without overflow for large ``a`` (``-inf`` at ``a = 0``)."""
    pos = a + torch.log(-torch.expm1(-a.clamp(min=0)))
    neg = torch.log(-torch.expm1(a.clamp(max=0)))
    return torch.where(a > 0, pos, neg)


def log_S(t: Number, Lf: Number) -> Tensor:
    """``log S(t)`` of eq. (S11); ``t`` and ``Lf`` broadcast.

    ``S(t)^2 = Σ_{ℓ=0..t} Lf^{2ℓ} = (Lf^{2t+2} - 1) / (Lf^2 - 1)`` is evaluated as
    ``expm1((t+1) h) / expm1(h)`` with ``h = 2 log Lf``: both ``expm1`` keep full relative
    precision when ``Lf`` is close to 1, where the printed formula cancels, and the ratio
    is formed in log space so that ``Lf > 1`` never overflows. At ``h = 0`` (Lf = 1) it is
    ``log(t + 1) / 2``. ``t`` may be any real ``>= 0``.
    """
    L = _const("Lf", Lf, positive=True)
    tt = _times(t).to(L.device)
    h = 2.0 * torch.log(L)
    zero = h == 0
    h_safe = torch.where(zero, torch.ones_like(h), h)
    tt, h_safe, zero = torch.broadcast_tensors(tt, h_safe, zero)
    log_s2 = _log_abs_expm1((tt + 1) * h_safe) - _log_abs_expm1(h_safe)
    log_s2 = torch.where(zero, torch.log1p(tt), log_s2)
    return 0.5 * log_s2


def S(t: Number, Lf: Number) -> Tensor:
    """S(t) of eq. (S11): ``sqrt(Σ_{ℓ=0..t} Lf^{2ℓ})``, i.e. ``sqrt(t+1)`` at Lf = 1 and
    ``sqrt((Lf^{2t+2} - 1) / (Lf^2 - 1))`` otherwise (no cancellation near Lf = 1; see
    :func:`log_S`). Vectorised: ``t`` and ``Lf`` broadcast. ``+inf`` beyond float range (a
    true, vacuous bound; :func:`log_S` gives its finite logarithm).
    """
    return _values(log_S(t, Lf), False, "use log_S for its logarithm")


def output_bound(t: Number, Lf: Number, Lg: Number, radius: Number, offset: Number = 0.0) -> Tensor:
    """The output bound of footnote 4 of the supplement: ``M(t) = offset + Lg S(t) radius``.

    If f(0, u; 0) = 0 then {0} is invariant, and eq. (S10) with ``[φ, w0] = 0`` gives
    ``||ŷ_t|| <= ||g(0, u; 0)|| + Lg S(t) ||[θ, x0]||`` for every ``||[θ, x0]|| <= radius``.
    """
    return _const("offset", offset) + _const("Lg", Lg, positive=True) * _const(
        "radius", radius) * S(t, Lf)


def _output_values(name: str, M: OutputBound, t: Tensor) -> Tensor:
    """M(t) for ``t`` of shape ``(N,)``: a callable, or a constant (shape ``(...)``)."""
    if callable(M):
        v = torch.as_tensor(M(t), dtype=torch.float64, device=t.device)
        try:
            v = torch.broadcast_to(v, torch.broadcast_shapes(v.shape, t.shape))
        except RuntimeError:
            raise ValueError(f"{name}(t) must return a tensor broadcastable to (..., {t.shape[-1]}), "
                             f"got shape {tuple(v.shape)}") from None
        if not bool(torch.isfinite(v).all()) or not bool((v >= 0).all()):
            raise ValueError(f"{name}(t) must return finite values >= 0")
        return v
    return _const(name, M).to(t.device).unsqueeze(-1).expand(*torch.as_tensor(M).shape, t.shape[-1])


def _values(log_values: Tensor, log: bool, hint: str = "pass log=True for its logarithm") -> Tensor:
    """The bound itself, or its logarithm with ``log=True``.

    A bound beyond float range is ``+inf``: the correctly rounded value of an upper bound,
    and still a true (vacuous) bound, the one legitimate non-finite result of this module
    (its logarithm, with ``log=True`` or :func:`log_S`, stays finite). NaN never comes back.
    """
    if log:
        return check_finite_result("the logarithm of the bound", log_values, allow_neginf=True)
    return check_finite_result("the bound", torch.exp(log_values), allow_neginf=False) \
        if bool(torch.isnan(log_values).any()) else torch.exp(log_values)


def _log(x: Tensor) -> Tensor:
    return torch.log(x)  # log(0) = -inf is wanted: a zero constant drops its term


# --------------------------------------------------------------------------- B.3
def L_V(N: int, *, Lf: Number, Lg: Number, K1: Number, K2: Number, Ly: Number,
        M: OutputBound, K0: Number = 0.0, log: bool = False) -> Tensor:
    """Lipschitz constant of the cost (Theorem 1 (a), after eq. (S12)) for horizons 1..N.

    ``L_V(n) = (Lg / n) Σ_{t=1..n} (K0 + K1 Ly + K2 M(t)) S(t)``, returned for every
    ``n = 1..N`` (last axis). ``K0`` is the correction of Lemma 2 for the cross-entropy
    (see :func:`loss_constants`); the printed formula has ``K0 = 0``. ``M`` is the output
    bound ``||ŷ_t|| <= M(t)``: a constant or a callable of ``t`` (shape ``(N,)``) returning
    ``(..., N)``. Returns shape ``(..., N)`` (``log=True``: its logarithm).
    """
    N = _horizon(N)
    Lf_, Lg_ = _const("Lf", Lf, positive=True), _const("Lg", Lg, positive=True)
    K0_, K1_, K2_, Ly_ = (_const(n, v) for n, v in (("K0", K0), ("K1", K1), ("K2", K2), ("Ly", Ly)))
    t = torch.arange(1, N + 1, dtype=torch.float64, device=Lf_.device)
    Mt = _output_values("M", M, t)
    coef = K0_.unsqueeze(-1) + (K1_ * Ly_).unsqueeze(-1) + K2_.unsqueeze(-1) * Mt
    terms = _log(coef) + log_S(t, Lf_.unsqueeze(-1))
    out = torch.logcumsumexp(terms, dim=-1) + _log(Lg_).unsqueeze(-1) - torch.log(t)
    return _values(out, log)


# --------------------------------------------------------------------------- B.4
def T(t: Number, *, Lg: Number, dLg: Number, K4: Number, M: Number,
      M_psi: Number | None = None) -> Tensor:
    """``T(t) = K4 (L'g M(t) + Lg^2)`` of section B.4 (``M`` = M(t), values).

    With ``M_psi`` (a bound on ``||Ψ(ŷ_t)||``) the general form ``L'g M_psi + K4 Lg^2`` is
    used; the printed formula is the case ``M_psi = K4 M`` (valid when Ψ(0) = 0).
    """
    _times(t)
    Lg_, dLg_, K4_ = _const("Lg", Lg, positive=True), _const("dLg", dLg), _const("K4", K4)
    Mpsi = K4_ * _const("M", M) if M_psi is None else _const("M_psi", M_psi)
    return dLg_ * Mpsi + K4_ * Lg_ ** 2 + 0.0 * torch.as_tensor(t, dtype=torch.float64)


def _reverse_partial_sums(log_s: Tensor) -> Tensor:
    """``R[..., t, ℓ] = log Σ_{j=ℓ..t} S(j)`` for ``t, ℓ = 1..N`` (``-inf`` where ℓ > t)."""
    N = log_s.shape[-1]
    idx = torch.arange(N, device=log_s.device)
    upper = idx.unsqueeze(0) > idx.unsqueeze(1)  # [t, j]: j > t
    mat = log_s.unsqueeze(-2).expand(*log_s.shape[:-1], N, N)
    mat = mat.masked_fill(upper, -math.inf)
    return torch.logcumsumexp(mat.flip(-1), dim=-1).flip(-1)


def _common(N, Lf, Lg, dLf, dLg):
    N = _horizon(N)
    Lf_, Lg_ = _const("Lf", Lf, positive=True), _const("Lg", Lg, positive=True)
    dLf_, dLg_ = _const("dLf", dLf), _const("dLg", dLg)
    t = torch.arange(1, N + 1, dtype=torch.float64, device=Lf_.device)
    ls = log_S(t, Lf_.unsqueeze(-1))  # (..., N)
    R = _reverse_partial_sums(ls)  # (..., N, N)
    lag = (t.unsqueeze(-1) - t.unsqueeze(0))  # [t, ℓ] = t - ℓ
    mask = lag < 0
    log_pow = lag.clamp(min=0) * torch.log(Lf_)[..., None, None]
    return N, Lf_, Lg_, dLf_, dLg_, t, ls, R, mask, log_pow


def P(N: int, *, Lf: Number, Lg: Number, dLf: Number, dLg: Number, log: bool = False) -> Tensor:
    """``P(t, ℓ) = Lf^{t-ℓ} (Lg L'f Σ_{j=ℓ..t} S(j) + Lf L'g S(t))`` of section B.4.

    Returns the matrix ``[t-1, ℓ-1]`` for ``t, ℓ = 1..N``, zero (``-inf`` in log) for
    ``ℓ > t``; shape ``(..., N, N)``. ``dLf``, ``dLg`` are L'f, L'g (Lipschitz constants
    of the Jacobians of f and g).
    """
    N, Lf_, Lg_, dLf_, dLg_, t, ls, R, mask, log_pow = _common(N, Lf, Lg, dLf, dLg)
    a = _log(Lg_ * dLf_)[..., None, None] + R
    b = (_log(Lf_ * dLg_)[..., None] + ls).unsqueeze(-1)
    out = (log_pow + torch.logaddexp(a, b.expand_as(a))).masked_fill(mask, -math.inf)
    return _values(out, log)


def _Mvals(N, M, M_psi, K4_, t):
    Mt = _output_values("M", M, t)
    Mpsi = K4_.unsqueeze(-1) * Mt if M_psi is None else _output_values("M_psi", M_psi, t)
    return Mt, Mpsi


def Q(N: int, *, Lf: Number, Lg: Number, dLf: Number, dLg: Number, K4: Number,
      M: OutputBound, M_psi: OutputBound | None = None, log: bool = False) -> Tensor:
    """``Q(t, ℓ) = Lf^{t-ℓ} (K4 M(t) Lg L'f Σ_{j=ℓ..t} S(j) + Lf T(t) S(t))`` of B.4.

    Matrix ``[t-1, ℓ-1]``, shape ``(..., N, N)``, zero above the diagonal. With ``M_psi``
    (a bound on ``||Ψ(ŷ_t)||``) it replaces ``K4 M(t)`` here and in T (see :func:`T`).
    """
    N, Lf_, Lg_, dLf_, dLg_, t, ls, R, mask, log_pow = _common(N, Lf, Lg, dLf, dLg)
    K4_ = _const("K4", K4)
    Mt, Mpsi = _Mvals(N, M, M_psi, K4_, t)
    Tt = dLg_.unsqueeze(-1) * Mpsi + (K4_ * Lg_ ** 2).unsqueeze(-1)
    a = (_log(Mpsi * (Lg_ * dLf_).unsqueeze(-1))).unsqueeze(-1) + R
    b = (_log(Lf_).unsqueeze(-1) + _log(Tt) + ls).unsqueeze(-1)
    out = (log_pow + torch.logaddexp(a, b.expand_as(a))).masked_fill(mask, -math.inf)
    return _values(out, log)


def _log_geometric(t: Tensor, Lf: Tensor) -> Tensor:
    """``log G_t`` with ``G_t = Σ_{k=0..t-1} Lf^k`` (t >= 1), stable near Lf = 1."""
    h = torch.log(Lf)
    zero = h == 0
    h_safe = torch.where(zero, torch.ones_like(h), h)
    out = _log_abs_expm1(t * h_safe) - _log_abs_expm1(h_safe)
    return torch.where(zero, torch.log(t), out)


def _log_A(t: Tensor, Lf: Tensor, ls: Tensor, lG: Tensor) -> Tensor:
    """``log A_t`` with ``A_t = Σ_{ℓ=1..t} Lf^{t-ℓ} Σ_{j=ℓ..t} S(j)``, in O(N).

    Exchanging the sums, ``A_t = Σ_{k=1..t} Lf^{t-k} S(k) G_k`` (``A_t = Lf A_{t-1} + S(t) G_t``),
    a weighted cumulative sum: ``log A_t = t log Lf + logcumsumexp_k(log S(k) + log G_k - k log Lf)``.
    """
    h = torch.log(Lf)
    return t * h + torch.logcumsumexp(ls + lG - t * h, dim=-1)


def L_J(N: int, *, Lf: Number, Lg: Number, dLf: Number, dLg: Number, log: bool = False) -> Tensor:
    """``L_{J,t} = Σ_{ℓ=1..t} P(t, ℓ) + L'g S(t)`` for t = 1..N (B.4); shape ``(..., N)``.

    Bounds the Lipschitz constant of the output Jacobian J_t = dŷ_t/dθ in ``[θ, x0]``.
    Evaluated in O(N) as ``Lg L'f A_t + Lf L'g S(t) G_t + L'g S(t)`` (see :func:`_log_A`);
    equal to summing the rows of :func:`P`.
    """
    N = _horizon(N)
    Lf_, Lg_ = _const("Lf", Lf, positive=True).unsqueeze(-1), _const("Lg", Lg, positive=True).unsqueeze(-1)
    dLf_, dLg_ = _const("dLf", dLf).unsqueeze(-1), _const("dLg", dLg).unsqueeze(-1)
    t = torch.arange(1, N + 1, dtype=torch.float64, device=Lf_.device)
    ls, lG = log_S(t, Lf_), _log_geometric(t, Lf_)
    lA = _log_A(t, Lf_, ls, lG)
    out = torch.logsumexp(torch.stack(torch.broadcast_tensors(
        _log(Lg_ * dLf_) + lA, _log(Lf_ * dLg_) + ls + lG, _log(dLg_) + ls)), dim=0)
    return _values(out, log)


def L_Jyhat(N: int, *, Lf: Number, Lg: Number, dLf: Number, dLg: Number, K4: Number,
            M: OutputBound, M_psi: OutputBound | None = None, log: bool = False) -> Tensor:
    """``L_{Jŷ,t} = Σ_{ℓ=1..t} Q(t, ℓ) + T(t) S(t)`` for t = 1..N (B.4); shape ``(..., N)``.

    Bounds the Lipschitz constant of ``J_tᵀ Ψ(ŷ_t)`` in ``[θ, x0]``. Evaluated in O(N) as
    ``M_psi(t) Lg L'f A_t + Lf T(t) S(t) G_t + T(t) S(t)``; equal to summing the rows of :func:`Q`.
    """
    N = _horizon(N)
    Lf_, Lg_ = _const("Lf", Lf, positive=True).unsqueeze(-1), _const("Lg", Lg, positive=True).unsqueeze(-1)
    dLf_, dLg_ = _const("dLf", dLf).unsqueeze(-1), _const("dLg", dLg).unsqueeze(-1)
    K4_ = _const("K4", K4)
    t = torch.arange(1, N + 1, dtype=torch.float64, device=Lf_.device)
    _, Mpsi = _Mvals(N, M, M_psi, K4_, t)
    Tt = dLg_ * Mpsi + K4_.unsqueeze(-1) * Lg_ ** 2
    ls, lG = log_S(t, Lf_), _log_geometric(t, Lf_)
    lA = _log_A(t, Lf_, ls, lG)
    out = torch.logsumexp(torch.stack(torch.broadcast_tensors(
        _log(Mpsi * Lg_ * dLf_) + lA, _log(Lf_ * Tt) + ls + lG, _log(Tt) + ls)), dim=0)
    return _values(out, log)


def L_V_prime(N: int, *, Lf: Number, Lg: Number, dLf: Number, dLg: Number, K3: Number,
              K4: Number, Ly: Number, M: OutputBound, M_psi: OutputBound | None = None,
              log: bool = False) -> Tensor:
    """Lipschitz constant of the gradient (Theorem 1 (b)) for horizons n = 1..N:

    ``L'_V(n) = (1/n) Σ_{t=1..n} (K3 Ly L_{J,t} + L_{Jŷ,t})``; shape ``(..., N)``.
    """
    lj = L_J(N, Lf=Lf, Lg=Lg, dLf=dLf, dLg=dLg, log=True)
    ljy = L_Jyhat(N, Lf=Lf, Lg=Lg, dLf=dLf, dLg=dLg, K4=K4, M=M, M_psi=M_psi, log=True)
    K3_, Ly_ = _const("K3", K3), _const("Ly", Ly)
    terms = torch.logaddexp(_log(K3_ * Ly_).unsqueeze(-1) + lj, ljy)
    t = torch.arange(1, N + 1, dtype=torch.float64, device=terms.device)
    out = torch.logcumsumexp(terms, dim=-1) - torch.log(t)
    return _values(out, log)


def fit_growth(N: Tensor, log_values: Tensor, kind: str) -> Tensor:
    """Least-squares growth rate of ``exp(log_values)`` against ``N`` (last axis).

    ``kind="power"``: the exponent ``a`` of ``N^a`` (slope of log value vs log N);
    ``kind="exp"``: the rate ``r`` of ``exp(r N)`` (slope of log value vs N). Pass
    logarithms so that values beyond float range can be fitted.

    ``N`` is 1-D with at least two distinct values (a slope needs two points), and
    ``log_values`` has shape ``(..., len(N))``; the result has shape ``log_values.shape[:-1]``.
    """
    if kind not in ("power", "exp"):
        raise ValueError(f"kind must be 'power' or 'exp', got {kind!r}")
    n = _const("N", N) if not isinstance(N, (list, tuple)) else torch.as_tensor(
        N, dtype=torch.float64)
    check_finite("N", n)
    if n.dim() != 1:
        raise ValueError(f"N must be a 1-D tensor of horizons, got shape {tuple(n.shape)}")
    if not bool((n > 0).all()):
        raise ValueError("N must be > 0")
    if n.numel() < 2 or bool((n == n[0]).all()):
        raise ValueError(f"N must hold at least two distinct horizons to fit a slope, got "
                         f"{n.tolist()}")
    lv = log_values
    if isinstance(lv, (list, tuple)):
        lv = torch.as_tensor(lv, dtype=torch.float64)
    check_tensor("log_values", lv, floating=True, min_ndim=1, last=n.numel(),
                 what=f"(..., {n.numel()}) (one value per N)")
    lv = lv.to(torch.float64)
    x = torch.log(n) if kind == "power" else n
    x = x - x.mean()
    return ((lv - lv.mean(-1, keepdim=True)) * x).sum(-1) / (x * x).sum()


# --------------------------------------------------------------------------- Lemma 2
def squared_error(y_hat: Tensor, y: Tensor) -> Tensor:
    """``l(ŷ, y) = ||ŷ - y||^2`` over the last axis (Lemma 2 (a))."""
    check_tensor("y_hat", y_hat, floating=True, finite=False)
    check_tensor("y", y, finite=False)
    return ((y_hat - y) ** 2).sum(-1)


def bce_with_logits(y_hat: Tensor, y: Tensor) -> Tensor:
    """Binary cross-entropy on logits (Lemma 2 (b)), summed over the last axis:
    ``-yᵀ log σ(ŷ) - (1-y)ᵀ log(1-σ(ŷ)) = Σ softplus(ŷ) - yᵀ ŷ`` (stable form).
    """
    check_tensor("y_hat", y_hat, floating=True, finite=False)
    check_tensor("y", y, finite=False)
    return (torch.nn.functional.softplus(y_hat) - y * y_hat).sum(-1)


LOSSES: dict[str, Callable[[Tensor, Tensor], Tensor]] = {
    "squared_error": squared_error,
    "bce": bce_with_logits,
}


@dataclass(frozen=True)
class LossConstants:
    """Constants of Lemma 2 for one loss and Ny outputs.

    Property 1 (corrected): ``|l(ŷ,y) - l(ẑ,y)| <= (K0 + K1 ||y|| + K2 max(||ŷ||,||ẑ||)) ||ŷ-ẑ||``
    (the printed lemma has no K0). Property 2: ``l'(ŷ, y) = Ψ(ŷ) - K3 y`` with Ψ
    K4-Lipschitz; ``psi_bound`` bounds ``||Ψ(ŷ)||`` independently of ŷ (``inf`` if none).
    """

    name: str
    K0: float
    K1: float
    K2: float
    K3: float
    K4: float
    psi: Callable[[Tensor], Tensor]
    psi_bound: float


def loss_constants(loss: str, ny: int) -> LossConstants:
    """Lemma 2's constants for ``loss`` in ``("squared_error", "bce")`` and Ny outputs.

    * squared error: Ψ(ŷ) = 2ŷ, K3 = 2, K4 = 2, and property 1 with K1 = K2 = 2, K0 = 0;
    * cross-entropy on logits: l' = σ(ŷ) - y, so Ψ = σ, K3 = 1, K4 = 1/4 (max σ'), and
      property 1 holds with K0 = sqrt(Ny), K1 = K2 = 0 (eq. S8). No K1, K2 with K0 = 0
      work when y = 0 (the book's chapter "Smoothness of the cost" proves this).
    """
    check_positive_int("ny", ny)
    if loss == "squared_error":
        return LossConstants("squared_error", 0.0, 2.0, 2.0, 2.0, 2.0, lambda z: 2.0 * z, math.inf)
    if loss == "bce":
        return LossConstants("bce", math.sqrt(ny), 0.0, 0.0, 1.0, 0.25, torch.sigmoid, math.sqrt(ny))
    raise ValueError(f"loss must be one of {sorted(LOSSES)}, got {loss!r}")


# --------------------------------------------------------------------------- Elman constants
def elman_constants(*, rho: float, r: float, r_u: float, gamma: float, d_max: float) -> dict[str, float]:
    """Valid Lf, Lg, L'f, L'g and M for a bias-free Elman RNN with linear read-out.

    Model ``x' = tanh(W x + U u)``, ``ŷ = C x + d`` (``lib.models.ElmanRNN(..., bias=False)``),
    θ = (W, U, C, d), on the compact set Ω: ``||W||_2 <= rho``, ``||x|| <= r``,
    ``||u|| <= r_u``, ``||C||_2 <= gamma``, ``||d|| <= d_max`` (and any U with
    ``rho r + ||U||_2 r_u <= r``, so that the state ball is invariant; check that yourself).
    Derivation (chapter "Smoothness of the cost"): with |tanh'| <= 1 and |tanh''| <= c =
    4 / (3 sqrt 3), ``Lf = sqrt(rho^2 + r^2 + r_u^2)``, ``Lg = sqrt(gamma^2 + r^2 + 1)``,
    ``L'f = 1 + c Lf max(rho, sqrt(r^2 + r_u^2))``, ``L'g = 1``, ``M = gamma r + d_max``.
    """
    vals = {"rho": rho, "r": r, "r_u": r_u, "gamma": gamma, "d_max": d_max}
    for name, v in vals.items():
        _const(name, v)
    c = 4.0 / (3.0 * math.sqrt(3.0))
    Lf = math.sqrt(rho ** 2 + r ** 2 + r_u ** 2)
    if Lf == 0:
        raise ValueError("rho, r and r_u must not all be 0 (Lf must be > 0)")
    return {
        "Lf": Lf,
        "Lg": math.sqrt(gamma ** 2 + r ** 2 + 1.0),
        "dLf": 1.0 + c * Lf * max(rho, math.sqrt(r ** 2 + r_u ** 2)),
        "dLg": 1.0,
        "M": gamma * r + d_max,
        "tanh2": c,
    }


# --------------------------------------------------------------------------- empirical
def max_ratio(fun: Callable[[Tensor], Tensor], a: Tensor, b: Tensor, *, value_dims: int = 1) -> Tensor:
    """Largest ``||fun(a) - fun(b)|| / ||a - b||`` over the pairs (rows) of ``a``, ``b``.

    ``a``, ``b``: ``(P, d)``; ``fun`` maps ``(P, d)`` to ``(P, *batch, *value)``; the norm of
    the difference is taken over the last ``value_dims`` axes (0: absolute value), and the
    maximum over the P pairs. Returns a tensor of shape ``batch``: a lower bound of the
    Lipschitz constant on any set that holds the pairs.
    """
    check_callable("fun", fun)
    for name, v in (("a", a), ("b", b)):
        check_tensor(name, v, floating=True)
        if v.dim() != 2:
            raise ValueError(f"{name} must have shape (P, d), got {tuple(v.shape)}")
    if a.shape != b.shape:
        raise ValueError(f"a and b must have the same shape, got {tuple(a.shape)} and {tuple(b.shape)}")
    dist = torch.linalg.vector_norm(a - b, dim=-1)
    if not bool((dist > 0).all()):
        raise ValueError("a and b must differ in every pair (||a - b|| > 0)")
    diff = fun(a) - fun(b)
    if value_dims:
        diff = torch.linalg.vector_norm(diff, dim=tuple(range(-value_dims, 0)))
    else:
        diff = diff.abs()
    dist = dist.reshape(-1, *([1] * (diff.dim() - 1)))
    return (diff / dist).amax(0)


def cost_curves(model, params: Tensor, u: Tensor, y: Tensor, loss: str | Callable = "squared_error",
                *, grad: bool = False, wrt: Tensor | None = None) -> tuple[Tensor, Tensor | None]:
    """Costs ``V_n`` (eq. 2) for every horizon ``n = 1..N`` of one rollout, and their gradients.

    Args:
        model: a ``lib.models`` state-space model (``f``, ``g``, ``n_params``, ``nx``).
        params: ``(P, Nθ + Nx)``, rows ``[θ, x0]``.
        u: inputs ``(N + 1, Nu)`` or ``(N + 1, P, Nu)`` (u_0 .. u_N; ŷ_t = g(x_t, u_t)).
        y: targets ``(N, Ny)`` or ``(N, P, Ny)`` for t = 1..N.
        loss: ``"squared_error"``, ``"bce"`` or a callable ``(ŷ, y) -> l`` over the last axis.
        grad: also return ``∇_θ V_n`` by forward sensitivities (eq. S1-S2): the Nθ tangent
            directions ride along a leading batch axis of one forward-mode rollout.
        wrt: optional indices into θ: differentiate with respect to these entries only
            (for instance to leave out a parameter where f is not differentiable).

    Returns:
        ``V`` of shape ``(P, N)`` and, if ``grad``, ``G`` of shape ``(P, N, K)`` (else None),
        K = Nθ or ``len(wrt)``.
    """
    loss_fn = LOSSES.get(loss) if isinstance(loss, str) else loss
    if loss_fn is None or not callable(loss_fn):
        raise ValueError(f"loss must be one of {sorted(LOSSES)} or a callable, got {loss!r}")
    _check_model(model)
    check_tensor("params", params, floating=True)
    nth, nx = model.n_params, model.nx
    if params.dim() != 2 or params.shape[-1] != nth + nx:
        raise ValueError(f"params must have shape (P, {nth + nx}) = (P, Nθ + Nx), got {tuple(params.shape)}")
    check_tensor("u", u, floating=True)
    check_tensor("y", y, floating=True)
    if u.dim() < 2 or u.shape[0] < 2:
        raise ValueError(f"u must have shape (N + 1, ..., Nu) with N >= 1, got {tuple(u.shape)}")
    n = u.shape[0] - 1
    if y.shape[0] != n:
        raise ValueError(f"y must hold N = {n} targets (one per t = 1..N), got {y.shape[0]}")
    if u.dim() == 3:
        u = u.unsqueeze(1)  # (N+1, 1, P, Nu): broadcasts against the tangent axis
    if y.dim() == 3:
        y = y.unsqueeze(1)
    theta, x0 = params[:, :nth], params[:, nth:]
    steps = torch.arange(1, n + 1, dtype=params.dtype, device=params.device)
    if not grad:
        f, g = _maps(model, theta.unsqueeze(0))
        _, yh = rollout(f, g, theta.unsqueeze(0), x0.unsqueeze(0), u)
        losses = loss_fn(yh[1:], y if y.dim() == 4 else y.unsqueeze(1).unsqueeze(1))[:, 0]
        V = (torch.cumsum(losses, 0) / steps[:, None]).T.detach()
        return check_finite_result("the cost V", V, batch_dims=1, hint="rows of params whose "
                                   "rollout or loss left the floats"), None
    P_ = params.shape[0]
    eye = torch.eye(nth, dtype=params.dtype, device=params.device)
    if wrt is not None:
        wrt = torch.as_tensor(wrt, dtype=torch.long, device=params.device)
        if wrt.dim() != 1 or wrt.numel() == 0 or int(wrt.min()) < 0 or int(wrt.max()) >= nth:
            raise ValueError(f"wrt must be a non-empty 1-D tensor of indices in [0, {nth}), got {wrt!r}")
        eye = eye[wrt]
    k = eye.shape[0]
    primal = theta.unsqueeze(0).expand(k, P_, nth).contiguous()
    tangent = eye.unsqueeze(1).expand(k, P_, nth).contiguous()
    with fwAD.dual_level():
        dual = fwAD.make_dual(primal, tangent)
        f, g = _maps(model, dual)
        _, yh = rollout(f, g, dual, x0.unsqueeze(0).expand(k, P_, nx), u)
        target = y if y.dim() == 4 else y.unsqueeze(1).unsqueeze(1)
        losses = loss_fn(yh[1:], target)  # (N, K, P)
        val, tan = fwAD.unpack_dual(losses)
    if tan is None:
        tan = torch.zeros_like(val)
    V = (torch.cumsum(val[:, 0], 0) / steps[:, None]).T
    G = (torch.cumsum(tan, 0) / steps[:, None, None]).permute(2, 0, 1)
    check_finite_result("the cost V", V, batch_dims=1, hint="rows of params whose rollout or "
                        "loss left the floats")
    check_finite_result("the gradient of V", G, batch_dims=1)
    return V.detach(), G.detach()


def _check_model(model) -> None:
    if not all(hasattr(model, a) for a in ("f", "g", "n_params", "nx", "nu")):
        raise ArgumentTypeError(f"model must be a lib.models state-space model (f, g, n_params, "
                                f"nx, nu), got {type(model).__name__}")


def _maps(model, theta: Tensor):
    """``(f, g)`` for a rollout under a fixed θ. For the orthogonal RNN the recurrent matrix
    ``exp(A - Aᵀ)`` is computed once instead of at every step (same values as ``model.f``)."""
    if isinstance(model, OrthogonalRNN):
        p = model.unflatten(theta)
        W = model.recurrent_matrix(theta)

        def f(x, u, _theta):
            z = (W @ x.unsqueeze(-1)).squeeze(-1) + (p["U"] @ u.unsqueeze(-1)).squeeze(-1)
            return modrelu(z, p["b"])

        return f, model.g
    return model.f, model.g


def output_jacobians(model, params: Tensor, u: Tensor) -> tuple[Tensor, Tensor]:
    """Outputs ``ŷ_t`` and their Jacobians ``J_t = dŷ_t/dθ`` (eq. S1, D_0 = 0), t = 0..N.

    ``params``: ``(P, Nθ + Nx)`` rows ``[θ, x0]``; ``u``: ``(N + 1, Nu)``. Forward-mode AD
    with the Nθ tangents on a leading batch axis. Returns ``ŷ`` of shape ``(P, N + 1, Ny)``
    and ``J`` of shape ``(P, N + 1, Ny, Nθ)``.
    """
    _check_model(model)
    check_tensor("params", params, floating=True)
    nth, nx = model.n_params, model.nx
    if params.dim() != 2 or params.shape[-1] != nth + nx:
        raise ValueError(f"params must have shape (P, {nth + nx}) = (P, Nθ + Nx), got {tuple(params.shape)}")
    check_tensor("u", u, floating=True, ndim=2, what=f"(N + 1, {model.nu})")
    P_ = params.shape[0]
    theta, x0 = params[:, :nth], params[:, nth:]
    eye = torch.eye(nth, dtype=params.dtype, device=params.device)
    with fwAD.dual_level():
        dual = fwAD.make_dual(theta.unsqueeze(0).expand(nth, P_, nth).contiguous(),
                              eye.unsqueeze(1).expand(nth, P_, nth).contiguous())
        f, g = _maps(model, dual)
        _, yh = rollout(f, g, dual, x0.unsqueeze(0).expand(nth, P_, nx), u)
        val, tan = fwAD.unpack_dual(yh)  # (N+1, Nθ, P, Ny)
    if tan is None:
        tan = torch.zeros_like(val)
    return val[:, 0].transpose(0, 1).detach(), tan.permute(2, 0, 3, 1).detach()


class LipschitzEstimate(NamedTuple):
    value: Tensor  # (N,) largest |V_n(a) - V_n(b)| / ||a - b||
    gradient: Tensor | None  # (N,) largest ||∇V_n(a) - ∇V_n(b)|| / ||a - b||


def empirical_lipschitz(model, a: Tensor, b: Tensor, u: Tensor, y: Tensor,
                        loss: str | Callable = "squared_error", *, grad: bool = True,
                        wrt: Tensor | None = None) -> LipschitzEstimate:
    """Empirical Lipschitz constants of V_n and ∇V_n for every horizon n = 1..N.

    ``a``, ``b``: ``(P, Nθ + Nx)`` pairs of points ``[θ, x0]``; ``u``, ``y`` as in
    :func:`cost_curves` (shared by all pairs; ``wrt`` as there). Both points of all pairs run in one batched
    rollout. Returns the largest ratio over the pairs, per horizon (lower bounds of the true
    constants on any set holding the pairs).
    """
    for name, v in (("a", a), ("b", b)):
        check_tensor(name, v, floating=True)
    if a.shape != b.shape or a.dim() != 2:
        raise ValueError(f"a and b must both have shape (P, d), got {tuple(a.shape)} and {tuple(b.shape)}")
    dist = torch.linalg.vector_norm(a - b, dim=-1)
    if not bool((dist > 0).all()):
        raise ValueError("a and b must differ in every pair (||a - b|| > 0)")
    P_ = a.shape[0]
    V, G = cost_curves(model, torch.cat([a, b]), u, y, loss, grad=grad, wrt=wrt)
    rv = ((V[:P_] - V[P_:]).abs() / dist[:, None]).amax(0)
    rg = None
    if grad:
        rg = (torch.linalg.vector_norm(G[:P_] - G[P_:], dim=-1) / dist[:, None]).amax(0)
    return LipschitzEstimate(rv, rg)


def sample_pairs(center: Tensor, n_pairs: int, *, spread: float, delta: float,
                 generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
    """Pairs for local Lipschitz estimates around ``center`` (shape ``(d,)``).

    ``a = center + spread * N(0, I)`` and ``b = a + delta * v`` with ``v`` a uniformly random
    unit vector, so ``||a - b|| = delta`` exactly. Returns ``(a, b)``, each ``(n_pairs, d)``.
    """
    check_tensor("center", center, floating=True)
    if center.dim() != 1:
        raise ValueError(f"center must be a flat (1-D) tensor, got shape {tuple(center.shape)}")
    check_positive_int("n_pairs", n_pairs)
    _const("spread", spread)
    _const("delta", delta, positive=True)
    d = center.numel()
    z = torch.randn(2, n_pairs, d, generator=generator, dtype=torch.float64).to(center)
    a = center + spread * z[0]
    v = z[1] / torch.linalg.vector_norm(z[1], dim=-1, keepdim=True)
    return a, a + delta * v


class InitialStateGradients(NamedTuple):
    """What :func:`initial_state_gradients` returns, for P initial states and N horizons."""

    cost: Tensor  # (P, N): V_n(x0) for n = 1..N
    gradient: Tensor  # (P, N, Nx): ∇_{x0} V_n(x0), the local Lipschitz constant is its norm
    jacobian: Tensor  # (P, N, Nx, Nx): Φ_n = ∂x_n/∂x0 = A_{n-1} ... A_0, n = 1..N


def initial_state_gradients(model, theta: Tensor, x0: Tensor, u: Tensor, y: Tensor,
                            loss: str | Callable = "squared_error") -> InitialStateGradients:
    """Costs ``V_n`` (eq. 2), their gradients with respect to the initial state, and ``∂x_n/∂x0``.

    The cost is a function of the initial state alone here (θ and the inputs held fixed):
    ``V_n(x0) = (1/n) Σ_{t=1..n} l(ŷ_t, y_t)``, the convention of :func:`cost_curves`. By
    the chain rule ``∇_{x0} V_n = (1/n) Σ_t Φ_tᵀ C_tᵀ l'(ŷ_t, y_t)`` with the state Jacobian
    products ``Φ_t = ∂x_t/∂x0`` (eq. S1 with D_0 = I and no parameter term). One forward-mode
    rollout carries the Nx tangent directions of ``x0`` on a leading batch axis and gives
    every horizon ``n = 1..N`` at once; the norm ``||∇_{x0} V_n||`` is the local Lipschitz
    constant of ``V_n`` at ``x0``. The output Jacobians ``C_t Φ_t`` of one initial state
    by reverse-mode steps are :func:`lib.sensitivity.initial_state_sensitivity`; the two
    routes give the same gradients (tested).

    Args:
        model: a ``lib.models`` state-space model (``f``, ``g``, ``n_params``, ``nx``).
        theta: parameters ``(Nθ,)``, shared by all initial states.
        x0: initial states ``(P, Nx)``.
        u: inputs ``(N + 1, Nu)`` (u_0 .. u_N; ŷ_t = g(x_t, u_t)).
        y: targets ``(N, Ny)`` or ``(N, P, Ny)`` for t = 1..N.
        loss: ``"squared_error"``, ``"bce"`` or a callable ``(ŷ, y) -> l`` over the last axis.

    Returns:
        :class:`InitialStateGradients` ``(cost (P, N), gradient (P, N, Nx),
        jacobian (P, N, Nx, Nx))``.

    Raises:
        ValueError: non-finite inputs or shapes other than the above (naming the argument),
            or an unknown loss.
    """
    loss_fn = LOSSES.get(loss) if isinstance(loss, str) else loss
    if loss_fn is None or not callable(loss_fn):
        raise ValueError(f"loss must be one of {sorted(LOSSES)} or a callable, got {loss!r}")
    _check_model(model)
    nth, nx = model.n_params, model.nx
    for name, v in (("theta", theta), ("x0", x0), ("u", u), ("y", y)):
        check_tensor(name, v, floating=True)
    if theta.dim() != 1 or theta.shape[0] != nth:
        raise ValueError(f"theta must have shape ({nth},) = (Nθ,), got {tuple(theta.shape)}")
    if x0.dim() != 2 or x0.shape[0] == 0 or x0.shape[1] != nx:
        raise ValueError(f"x0 must have shape (P, {nx}) = (P, Nx) with P >= 1, got {tuple(x0.shape)}")
    if u.dim() != 2 or u.shape[0] < 2:
        raise ValueError(f"u must have shape (N + 1, Nu) with N >= 1, got {tuple(u.shape)}")
    n = u.shape[0] - 1
    if y.dim() not in (2, 3) or y.shape[0] != n or (y.dim() == 3 and y.shape[1] != x0.shape[0]):
        raise ValueError(f"y must have shape ({n}, Ny) or ({n}, P, Ny) (one target per "
                         f"t = 1..N), got {tuple(y.shape)}")
    P_ = x0.shape[0]
    eye = torch.eye(nx, dtype=x0.dtype, device=x0.device)
    with fwAD.dual_level():
        dual = fwAD.make_dual(x0.unsqueeze(0).expand(nx, P_, nx).contiguous(),
                              eye.unsqueeze(1).expand(nx, P_, nx).contiguous())
        f, g = _maps(model, theta)
        xs, yh = rollout(f, g, theta, dual, u)  # (N+1, Nx, P, Nx), (N+1, Nx, P, Ny)
        target = y.unsqueeze(1) if y.dim() == 3 else y[:, None, None]
        losses = loss_fn(yh[1:], target)  # (N, Nx, P)
        val, tan = fwAD.unpack_dual(losses)
        _, x_tan = fwAD.unpack_dual(xs[1: n + 1])  # x_1 .. x_N
    steps = torch.arange(1, n + 1, dtype=x0.dtype, device=x0.device)
    if tan is None:  # the loss does not depend on x0
        tan = torch.zeros_like(val)
    if x_tan is None:
        x_tan = torch.zeros(n, nx, P_, nx, dtype=x0.dtype, device=x0.device)
    cost = (torch.cumsum(val[:, 0], 0) / steps[:, None]).T
    gradient = (torch.cumsum(tan, 0) / steps[:, None, None]).permute(2, 0, 1)
    jac = x_tan.permute(2, 0, 3, 1)  # [p, t, i, j] = ∂x_t,i / ∂x0_j
    for what, value in (("the cost", cost), ("the gradient", gradient), ("the Jacobian", jac)):
        check_finite_result(what, value, batch_dims=1, hint="initial states (rows of x0) whose "
                            "rollout or loss left the floats")
    return InitialStateGradients(cost.detach(), gradient.detach(), jac.detach())
