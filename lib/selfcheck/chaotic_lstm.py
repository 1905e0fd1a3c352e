"""Self-checks of the exercises of the chapter "A chaotic LSTM".

The checks know the right answers in closed form, or as numbers measured once with
``lib.dynamics.largest_lyapunov`` on the chapter's LSTM and asserted by the chapter's
solution cells, so a check runs in microseconds and needs no simulation.
"""

from __future__ import annotations

import math
from numbers import Integral

from lib.selfcheck import as_number, register

__all__ = ["S_STAR", "SIGN_FLIPS_CHAOTIC", "LAMBDA1_RANGE"]

#: where the origin of the LSTM along s θ_true stops attracting: ρ(I/2 + s W_hg / 4) = 1
S_STAR = (10 + 8 * math.sqrt(10)) / 45

#: indices k of θ_true whose sign flip leaves λ_1 > 0.01 (measured; asserted by the chapter)
SIGN_FLIPS_CHAOTIC = (1, 2, 3, 4, 12, 14)
_ZERO_ENTRIES = (6,)  # θ_6 = W_hf[1, 0] = 0: flipping it changes nothing

#: λ_1 of θ_true as any reasonable measurement gives it (the chapter measures about 0.17)
LAMBDA1_RANGE = (0.14, 0.20)




@register(
    "ex-cl-1",
    hint="W_hg has trace -10 and determinant 45; write the squared modulus of the "
         "eigenvalues of I/2 + (s/4) W_hg as a quadratic in s, set it to 1 and take the "
         "positive root",
    expects="s* as a float",
)
def _s_star(answer) -> None:
    s = as_number(answer, "s*")
    assert s > 0, f"s* = {s:.4g} is not positive: take the positive root of the quadratic"
    assert abs(s - S_STAR) <= 1e-6 * S_STAR, (
        f"s* = {s:.6g} does not put an eigenvalue of I/2 + (s/4) W_hg on the unit circle")


@register(
    "ex-cl-2",
    hint="t* = log(delta / eps) / lambda_1 with natural logarithms, eps = 2**-p for p "
         "significant bits, delta = 0.05; one bit halves eps, so it adds log(2) / lambda_1",
    expects="a tuple (steps for bfloat16, steps for float16, steps per bit) of 3 floats",
)
def _horizons(answer) -> None:
    assert len(answer) == 3, f"expected 3 numbers, got {len(answer)}"
    t_bf16, t_f16, per_bit = (as_number(v, w) for v, w in zip(
        answer, ("steps for bfloat16", "steps for float16", "steps per bit")))
    assert per_bit > 0 and t_bf16 > 0 and t_f16 > 0, "the numbers of steps must be positive"
    lam = math.log(2) / per_bit
    lo, hi = LAMBDA1_RANGE
    assert lo <= lam <= hi, (
        f"steps per bit {per_bit:.3g} means lambda_1 = log(2) / {per_bit:.3g} = {lam:.3g}, "
        f"but lambda_1 of theta_true is about 0.17 nats per step")
    for name, p, t in (("bfloat16", 8, t_bf16), ("float16", 11, t_f16)):
        want = math.log(0.05 * 2**p) / lam
        assert abs(t - want) <= 0.02 * want, (
            f"{name}: {t:.4g} steps does not match log(0.05 / 2**-{p}) / lambda_1 = "
            f"{want:.4g} with the lambda_1 of your steps per bit")


@register(
    "ex-cl-5",
    hint="negate one entry at a time (theta_true * (1 - 2 * torch.eye(16)) gives all 16 "
         "rows), skip the zero entry, and keep k where the mean lambda_1 exceeds 0.01",
    expects="a sorted list of ints k in 0..15",
)
def _sign_flips(answer) -> None:
    if hasattr(answer, "tolist"):
        answer = answer.tolist()
    ks = list(answer)
    assert all(isinstance(k, Integral) and not isinstance(k, bool) for k in ks), (
        "the list should hold integer indices k of theta")
    ks = [int(k) for k in ks]
    assert ks == sorted(set(ks)), "the indices should be sorted and distinct"
    assert all(0 <= k < 16 for k in ks), "theta has indices 0..15"
    zero = sorted(set(ks) & set(_ZERO_ENTRIES))
    assert not zero, (f"theta_{zero[0]} is zero: flipping its sign changes nothing; the "
                      "exercise asks about the fifteen nonzero entries")
    missing = sorted(set(SIGN_FLIPS_CHAOTIC) - set(ks))
    extra = sorted(set(ks) - set(SIGN_FLIPS_CHAOTIC))
    assert not missing and not extra, (
        f"{len(ks)} indices, of which {len(extra)} should not be there and "
        f"{len(missing)} are missing")
