"""Self-checks of the dynamical-systems chapter: right answers pass, wrong ones fail."""

import math

import torch

from lib.dynamics import fixed_points, lyapunov_spectrum
from lib.models import LSTM, ElmanRNN
from lib.selfcheck import check


def test_selfcheck_dynamical_systems():
    torch.set_default_dtype(torch.float64)
    try:
        _run_checks()
    finally:
        torch.set_default_dtype(torch.float32)


def _run_checks():
    # ex-1: exponents of a linear map
    A = torch.tensor([[0.6, 0.8, 0.0], [-0.4, 0.5, 0.3], [0.2, 0.1, -1.0]])
    exps = lyapunov_spectrum(lambda x: x @ A.T, torch.tensor([0.3, -0.2, 0.5]), 2000)
    assert check("ex-dynamical-systems-1", (A, exps), quiet=True)
    moduli = torch.linalg.eigvals(A).abs().sort(descending=True).values
    assert not check("ex-dynamical-systems-1", (A, moduli), quiet=True)          # no log
    assert not check("ex-dynamical-systems-1", (A, exps.flip(0)), quiet=True)    # unsorted
    T = torch.triu(A) + torch.eye(3)
    assert not check("ex-dynamical-systems-1",
                     (T, torch.linalg.eigvals(T).abs().log().sort(descending=True).values),
                     quiet=True)                                                 # triangular
    assert not check("ex-dynamical-systems-1", None, quiet=True)

    # ex-3: lambda_1 of the rotation network over rho
    rhos = torch.linspace(0.8, 1.5, 8)
    R = torch.tensor([[math.cos(0.5), -math.sin(0.5)], [math.sin(0.5), math.cos(0.5)]])
    elman = ElmanRNN(0, 2)
    th = elman.flatten({"W": rhos[:, None, None] * R, "U": torch.zeros(8, 2, 0),
                        "b": torch.zeros(8, 2)})
    lam = lyapunov_spectrum(elman.autonomous(th), torch.full((8, 2), 0.1), 1000,
                            n_transient=500)[:, 0]
    assert check("ex-dynamical-systems-3", lam, quiet=True)
    assert not check("ex-dynamical-systems-3", rhos.log(), quiet=True)       # linearised
    assert not check("ex-dynamical-systems-3", torch.zeros(8), quiet=True)   # all neutral
    assert not check("ex-dynamical-systems-3", lam[:4], quiet=True)          # wrong shape

    # ex-4: the one-unit LSTM with all recurrent weights 10
    lstm = LSTM(0, 1)
    th1 = lstm.flatten({"weight_ih": torch.zeros(4, 0), "weight_hh": torch.full((4, 1), 10.0),
                        "bias_ih": torch.zeros(4), "bias_hh": torch.zeros(4)})
    fp = fixed_points(lstm.autonomous(th1), torch.tensor([[0.9, 2e4]]))
    right = (fp.points[0, 1].item(), fp.spectral_radius[0].log().item())
    assert check("ex-dynamical-systems-4", right, quiet=True)
    assert check("ex-dynamical-systems-4", (22016.4, math.log(1 / (1 + math.exp(-10)))),
                 quiet=True)
    assert not check("ex-dynamical-systems-4", (right[0], 0.0), quiet=True)   # lambda_1 = 0
    assert not check("ex-dynamical-systems-4", (1 + math.exp(10), right[1]), quiet=True)
    assert not check("ex-dynamical-systems-4", (13140.0, right[1]), quiet=True)  # unconverged
    assert not check("ex-dynamical-systems-4", (right[0], -right[1]), quiet=True)

    # ex-5: a chaotic one-unit LSTM without bias
    assert check("ex-dynamical-systems-5", torch.tensor([-13.44, 11.09, -24.37, -4.79]),
                 quiet=True)
    assert not check("ex-dynamical-systems-5", torch.full((4,), 10.0), quiet=True)
    assert not check("ex-dynamical-systems-5", torch.zeros(4), quiet=True)
    assert not check("ex-dynamical-systems-5", torch.tensor([1.0, 2.0]), quiet=True)

    # ex-6: where the route's fixed point loses stability
    assert check("ex-dynamical-systems-6", 0.48830, quiet=True)
    assert check("ex-dynamical-systems-6", 0.488, quiet=True)       # three decimals
    W0 = torch.tensor([[-1.5, 3.6], [-1.3, -3.3]])
    assert not check("ex-dynamical-systems-6", 1 / torch.linalg.matrix_norm(W0, 2).item(),
                     quiet=True)                                   # contraction bound
    assert not check("ex-dynamical-systems-6", 0.6518, quiet=True)  # period 4's onset
    assert not check("ex-dynamical-systems-6", 0.4875, quiet=True)  # period 2 on the grid
