"""Self-checks of the exercises of the chapter "Smoothness of the cost".

Each check recomputes what it needs from ``lib`` or from closed forms (the limits of S(t),
the constants of the softmax cross-entropy, the rates of the bound formulas, the logistic
map's Lyapunov exponent log 2), so it needs no variable of the chapter.
"""

from __future__ import annotations

import math

import torch

from lib import lipschitz as lip
from lib.selfcheck import as_number, register

__all__ = ["softmax_hard_cases", "p_ratio_reference"]


def _pair(answer) -> tuple[float, float]:
    assert isinstance(answer, (tuple, list)) and len(answer) == 2, \
        f"expected a pair of numbers, got {answer!r}"
    a, b = (float(v) for v in answer)
    assert math.isfinite(a) and math.isfinite(b), f"expected finite numbers, got {answer!r}"
    return a, b




@register(
    "ex-smooth-1",
    hint="use S(t, Lf) of lib.lipschitz for Lf = 0.9, and for Lf = 1.1 divide by "
         "1.1**401 (or subtract 401 log 1.1 from log_S before exponentiating)",
    expects="a pair (S(400, 0.9), S(400, 1.1) / 1.1**401) of floats",
)
def _s_limits(answer) -> None:
    a, b = _pair(answer)
    want_a, want_b = 1 / math.sqrt(1 - 0.81), 1 / math.sqrt(1.21 - 1)
    assert abs(a - want_a) < 1e-8 * want_a, \
        f"the first number is {a:.6g}; S(400, 0.9) is close to its limit for Lf < 1"
    assert abs(b - want_b) < 1e-6 * want_b, \
        f"the second number is {b:.6g}; it should approach 1 / sqrt(Lf^2 - 1)"


def softmax_hard_cases() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Logit pairs ``(a, b)`` close together and one-hot targets ``y`` that push the
    softmax cross-entropy towards its constants: confident wrong predictions (|p - y| near
    sqrt 2) and two tied classes (the softmax Jacobian's norm near 1/2)."""
    g = torch.Generator().manual_seed(7)
    n, k = 4000, 5
    a = 3 * torch.randn(n, k, generator=g, dtype=torch.float64)
    y = torch.nn.functional.one_hot(torch.randint(0, k, (n,), generator=g), k).double()
    # confident and wrong: logit 12 on class 1, target class 0, step along e_1 - e_0
    wrong = torch.zeros(200, k, dtype=torch.float64)
    wrong[:, 1] = 12.0
    y_wrong = torch.nn.functional.one_hot(torch.zeros(200, dtype=torch.long), k).double()
    d_wrong = torch.zeros(200, k, dtype=torch.float64)
    d_wrong[:, 1], d_wrong[:, 0] = 1 / math.sqrt(2), -1 / math.sqrt(2)
    # two tied classes, the others far below: the softmax Jacobian has eigenvalue 1/2
    tied = torch.full((200, k), -40.0, dtype=torch.float64)
    tied[:, :2] = 0.0
    d_tied = d_wrong.clone()
    step = 1e-5 * torch.rand(200, 1, generator=g, dtype=torch.float64) + 1e-6
    d = torch.randn(n, k, generator=g, dtype=torch.float64)
    a_all = torch.cat([a, wrong, tied])
    b_all = torch.cat([a + 1e-3 * d, wrong + step * d_wrong, tied + step * d_tied])
    y_all = torch.cat([y, y_wrong, y_wrong])
    return a_all, b_all, y_all


@register(
    "ex-smooth-3",
    hint="Psi is the softmax, so K3 = 1; bound the norm of p - y for property 1 and the "
         "largest eigenvalue of diag(p) - p p^T for K4",
    expects="a dict with the keys K0, K1, K2, K3, K4 (numbers >= 0)",
)
def _softmax_constants(answer) -> None:
    assert isinstance(answer, dict), f"expected a dict, got {type(answer).__name__}"
    missing = [k for k in ("K0", "K1", "K2", "K3", "K4") if k not in answer]
    assert not missing, f"the dict lacks {missing}"
    K = {k: as_number(answer[k]) for k in ("K0", "K1", "K2", "K3", "K4")}
    assert all(v >= 0 for v in K.values()), f"the constants must be >= 0, got {K}"
    assert K["K3"] == 1.0, f"K3 = {K['K3']}: l' = softmax(y_hat) - K3 y fixes K3"
    a, b, y = softmax_hard_cases()
    loss = lambda z: torch.logsumexp(z, -1) - (y * z).sum(-1)
    gap = (a - b).norm(dim=-1)
    lhs = (loss(a) - loss(b)).abs()
    rhs = (K["K0"] + K["K1"] * y.norm(dim=-1)
           + K["K2"] * torch.maximum(a.norm(dim=-1), b.norm(dim=-1))) * gap
    bad = int((lhs > rhs * (1 + 1e-9)).sum())
    assert bad == 0, f"property 1 fails on {bad} of {len(gap)} test pairs with these constants"
    ratio = float(((torch.softmax(a, -1) - torch.softmax(b, -1)).norm(dim=-1) / gap).max())
    assert ratio <= K["K4"] * (1 + 1e-9), \
        f"the softmax changes by up to {ratio:.4f} times the change of its argument, more " \
        f"than K4 = {K['K4']}"


@register(
    "ex-smooth-4",
    hint="lip.L_V(2000, Lf=torch.tensor([1.0, 1.3]), Lg=1.0, K0=1.0, K1=0.0, K2=0.0, Ly=1.0, "
         "M=0.0, log=True), then fit_growth over N = 1000..2000: 'power' for Lf = 1, 'exp' "
         "for Lf = 1.3 divided by log 1.3",
    expects="a pair (power exponent at Lf = 1, exponential rate / log 1.3 at Lf = 1.3)",
)
def _bounded_rates(answer) -> None:
    a, b = _pair(answer)
    assert abs(a - 0.5) < 0.05, f"the exponent at Lf = 1 is {a:.3f}, not that of sqrt(N)"
    assert abs(b - 1.0) < 0.05, \
        f"the rate at Lf = 1.3 divided by log 1.3 is {b:.3f}; did you divide by log 1.3?"


def p_ratio_reference(N: int = 50, Lf: float = 1.1) -> float:
    """The largest ratio of the correctly indexed P~(t, l) to the printed P(t, l) of
    the paper's Theorem 1(b), with Lg = L'f = L'g = 1."""
    Pm = lip.P(N, Lf=Lf, Lg=1.0, dLf=1.0, dLg=1.0)
    S = lip.S(torch.arange(N + 1), Lf)
    return max(float(Lf ** (t - l) * (S[l - 1:t].sum() + Lf * S[t]) / Pm[t - 1, l - 1])
               for t in range(1, N + 1) for l in range(1, t + 1))


@register(
    "ex-smooth-5",
    hint="for 1 <= l <= t <= 50 compare Lf**(t - l) * (S(l-1) + ... + S(t-1) + Lf S(t)) "
         "with lip.P(50, Lf=1.1, Lg=1.0, dLf=1.0, dLg=1.0)[t - 1, l - 1] and take the "
         "largest ratio",
    expects="one number: the largest ratio P~(t, l) / P(t, l)",
)
def _p_ratio(answer) -> None:
    value = as_number(answer)
    want = p_ratio_reference()
    assert value <= 1 + 1e-9, f"{value:.6f} > 1 would mean that P~ exceeds P somewhere"
    assert abs(value - want) < 1e-6, \
        f"{value:.6f} is not the largest ratio; check the range of the sum (j = l-1 .. t-1)"


@register(
    "ex-smooth-6",
    hint="accumulate the squared errors over t to get N V_N, differentiate with autograd "
         "with respect to the 64 initial states for each N, and fit the mean of log|grad| "
         "against N with kind='exp' (natural logarithms)",
    expects="one number: the fitted growth rate in nats per step",
)
def _logistic_rate(answer) -> None:
    value = as_number(answer)
    assert abs(value - math.log(2)) < 0.1 * math.log(2), \
        f"the rate {value:.4f} is not within 10 % of what the lemma predicts for this map " \
        f"(natural logarithms, per step)"
