"""Self-checks for the exercises of the chapter "RNNs as dynamical systems".

Each check recomputes what it needs (small, float64) and compares it with the student's
answer; none of them holds the solution as a constant.
"""

from __future__ import annotations

import math
from functools import lru_cache

import torch

from lib.dynamics import fixed_points, lyapunov_spectrum
from lib.models import LSTM, ElmanRNN
from lib.selfcheck import as_number, as_tensor, register

_DT = torch.float64
W0 = ((-1.5, 3.6), (-1.3, -3.3))
B0 = (-1.85, -2.27)




@register("ex-dynamical-systems-1",
          hint="the exponents are the logs of the eigenvalues' moduli, sorted descending; "
               "run lyapunov_spectrum(lambda x: x @ A.T, x0, 2000)",
          expects="a pair (A, exponents): a 3 x 3 matrix and a tensor of 3 exponents")
def _linear_map(answer) -> None:
    A, exponents = answer
    A = as_tensor(A, (3, 3), "A", reshape=True)
    exponents = as_tensor(exponents, (3,), "the exponents", reshape=True)
    assert bool((A.tril(-1) != 0).any() and (A.triu(1) != 0).any()), (
        "choose a matrix that is not triangular (for a triangular one the QR method is "
        "exact at once)")
    eig = torch.linalg.eigvals(A).abs()
    assert bool((eig > 0).all()), "choose an invertible A (an eigenvalue 0 gives -inf)"
    expected = eig.log().sort(descending=True).values
    assert bool((exponents[:-1] >= exponents[1:]).all()), "sort the exponents, largest first"
    err = (exponents - expected).abs().max().item()
    assert err < 0.02, (f"the exponents differ from log|eigenvalues| of your A by {err:.3f}; "
                        "are they logs, per step, of the moduli?")


@lru_cache(maxsize=1)
def _rotation_lambdas() -> torch.Tensor:
    elman = ElmanRNN(0, 2)
    rhos = torch.linspace(0.8, 1.5, 8, dtype=_DT)
    R = torch.tensor([[math.cos(0.5), -math.sin(0.5)], [math.sin(0.5), math.cos(0.5)]],
                     dtype=_DT)
    th = elman.flatten({"W": rhos[:, None, None] * R, "U": torch.zeros(8, 2, 0, dtype=_DT),
                        "b": torch.zeros(8, 2, dtype=_DT)})
    return lyapunov_spectrum(elman.autonomous(th), torch.full((8, 2), 0.1, dtype=_DT), 1000,
                             n_transient=500)[:, 0]


@register("ex-dynamical-systems-3",
          hint="below rho = 1 the origin attracts with lambda_1 = log(rho); above it the "
               "orbit lies on an invariant circle, where lambda_1 is (nearly) zero",
          expects="a tensor of 8 largest exponents, for rho = torch.linspace(0.8, 1.5, 8)")
def _rotation(answer) -> None:
    lam = as_tensor(answer, (8,), "the answer", reshape=True)
    rhos = torch.linspace(0.8, 1.5, 8, dtype=_DT)
    below = rhos < 0.95
    err_below = (lam[below] - rhos[below].log()).abs().max().item()
    assert err_below < 5e-3, (f"for rho < 1 lambda_1 should be log(rho); yours is off by "
                              f"{err_below:.3f}")
    above = rhos > 1.05
    worst = lam[above].abs().max().item()
    assert worst < 5e-3, (f"for rho > 1 lambda_1 should be about 0 (invariant circle), "
                          f"yours reaches {worst:.3f}; linearising at the origin gives "
                          "log(rho), which holds only while the origin attracts")
    ref = _rotation_lambdas()
    assert (lam - ref).abs().max().item() < 5e-3, "the exponents do not match a rerun"


@lru_cache(maxsize=1)
def _lstm_all_tens() -> tuple[float, float]:
    lstm = LSTM(0, 1)
    th = lstm.flatten({"weight_ih": torch.zeros(4, 0, dtype=_DT),
                       "weight_hh": torch.full((4, 1), 10.0, dtype=_DT),
                       "bias_ih": torch.zeros(4, dtype=_DT),
                       "bias_hh": torch.zeros(4, dtype=_DT)})
    fp = fixed_points(lstm.autonomous(th), torch.tensor([[0.9, 2e4]], dtype=_DT))
    return fp.points[0, 1].item(), fp.spectral_radius[0].log().item()


@register("ex-dynamical-systems-4",
          hint="find the fixed point with fixed_points from a start near (1, 2e4); "
               "lambda_1 is the log of the Jacobian's spectral radius there",
          expects="a pair (c_star, lambda_1) of floats")
def _lstm_fixed_point(answer) -> None:
    c_star, lam = (float(v) for v in answer)
    c_ref, lam_ref = _lstm_all_tens()
    bound = 1 + math.exp(10)
    assert abs(c_star) <= bound, (f"c* = {c_star:.1f} exceeds the bound 1 + e^10 = "
                                  f"{bound:.1f} of part 1")
    assert abs(c_star - c_ref) < 1.0, (f"c* = {c_star:.1f} is not the attracting fixed "
                                       "point's cell state (a simulation of a few thousand "
                                       "steps is far from converged)")
    assert lam < 0, "lambda_1 must be negative: the fixed point attracts"
    assert abs(lam / lam_ref - 1) < 0.01, (f"lambda_1 = {lam:.4e} is not the log of the "
                                           "spectral radius at the fixed point")


@register("ex-dynamical-systems-5",
          hint="draw the 4 recurrent weights with standard deviation 8, thousands at once, "
               "and keep a draw whose lambda_1 is clearly above 0.05",
          expects="a tensor of 4 recurrent weights (W_hi, W_hf, W_hg, W_ho)")
def _chaotic_lstm(answer) -> None:
    w = as_tensor(answer, (4, 1), "W_hh", reshape=True)
    lstm = LSTM(0, 1)
    th = lstm.flatten({"weight_ih": torch.zeros(4, 0, dtype=_DT), "weight_hh": w,
                       "bias_ih": torch.zeros(4, dtype=_DT),
                       "bias_hh": torch.zeros(4, dtype=_DT)})
    gen = torch.Generator().manual_seed(0)
    x0 = 0.5 * torch.randn(8, 2, generator=gen, dtype=_DT)
    lam = lyapunov_spectrum(lstm.autonomous(th), x0, 2000, n_transient=1000)[:, 0]
    # a chaotic attractor may coexist with a periodic one: ask for chaos from most starts
    assert lam.median().item() > 0.05, (
        f"lambda_1 from 8 starts ranges over [{lam.min().item():.3f}, "
        f"{lam.max().item():.3f}] with median {lam.median().item():.3f}; it must exceed "
        "0.05 from most starts")


@lru_cache(maxsize=1)
def _flip_point() -> float:
    elman = ElmanRNN(0, 2)
    W0t, b0t = torch.tensor(W0, dtype=_DT), torch.tensor(B0, dtype=_DT)

    def radius(s: float) -> float:
        th = elman.flatten({"W": s * W0t, "U": torch.zeros(2, 0, dtype=_DT), "b": b0t})
        fp = fixed_points(elman.autonomous(th), torch.tensor([[-0.9, -0.5]], dtype=_DT))
        return fp.spectral_radius[0].item()

    lo, hi = 0.2, 0.6
    for _ in range(40):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if radius(mid) < 1 else (lo, mid)
    return lo


@register("ex-dynamical-systems-6",
          hint="bisect on s between 0.2 and 0.6 on the spectral radius of the Jacobian at "
               "the fixed point, found with fixed_points",
          expects="a float, s* where the fixed point's spectral radius reaches 1")
def _flip(answer) -> None:
    s = as_number(answer, "s*")
    ref = _flip_point()
    assert abs(s - ref) < 5e-4, (f"s* = {s:.4f} is not where the spectral radius reaches 1 "
                                 "(||s W0||_2 = 1 is a sufficient condition for a contraction, "
                                 "far from the loss of stability)")
