"""The self-checks of the chapter "Smoothness of the cost": each passes a right answer and
fails wrong ones (with a message, never an exception)."""

from __future__ import annotations

import math

import pytest
import torch

from lib import lipschitz as lip
from lib.selfcheck import check
from lib.selfcheck.smoothness import p_ratio_reference

pytestmark = pytest.mark.usefixtures("float64_default")


def test_ex_smooth_1_limits_of_S():
    right = (lip.S(400, 0.9).item(), (lip.log_S(400, 1.1) - 401 * math.log(1.1)).exp().item())
    assert check("ex-smooth-1", right, quiet=True)
    not_rescaled = (lip.S(400, 0.9).item(), lip.S(400, 1.1).item())
    assert not check("ex-smooth-1", not_rescaled, quiet=True)
    assert not check("ex-smooth-1", (1 / 0.19, 1 / 0.21), quiet=True)  # squares
    assert not check("ex-smooth-1", 2.29, quiet=True)  # not a pair


def test_ex_smooth_3_softmax_constants():
    right = dict(K0=math.sqrt(2), K1=0.0, K2=0.0, K3=1.0, K4=0.5)
    assert check("ex-smooth-3", right, quiet=True)
    assert check("ex-smooth-3", dict(right, K0=2.0, K4=1.0), quiet=True)  # valid, looser
    assert not check("ex-smooth-3", dict(right, K4=0.25), quiet=True)  # the binary K4
    assert not check("ex-smooth-3", dict(right, K0=1.0), quiet=True)  # |p - y| can pass 1
    assert not check("ex-smooth-3", dict(right, K3=2.0), quiet=True)
    assert not check("ex-smooth-3", dict(K0=1.5), quiet=True)  # keys missing
    assert not check("ex-smooth-3", [1.5, 0, 0, 1, 0.5], quiet=True)


def test_ex_smooth_4_bounded_rates():
    N = torch.arange(1, 2001.0)
    lv = lip.L_V(2000, Lf=torch.tensor([1.0, 1.3]), Lg=1.0, K0=1.0, K1=0.0, K2=0.0, Ly=1.0,
                 M=0.0, log=True)
    right = (lip.fit_growth(N[999:], lv[0, 999:], "power").item(),
             (lip.fit_growth(N[999:], lv[1, 999:], "exp") / math.log(1.3)).item())
    assert check("ex-smooth-4", right, quiet=True)
    assert not check("ex-smooth-4", (1.0, 2.0), quiet=True)  # the unbounded row
    assert not check("ex-smooth-4", (right[0], right[1] * math.log(1.3)), quiet=True)


def test_ex_smooth_5_p_ratio():
    right = p_ratio_reference()
    assert right <= 1
    assert check("ex-smooth-5", right, quiet=True)
    assert not check("ex-smooth-5", 1.0, quiet=True)
    assert not check("ex-smooth-5", 1.2, quiet=True)
    assert not check("ex-smooth-5", "0.9", quiet=True)


def test_ex_smooth_6_logistic_rate():
    assert check("ex-smooth-6", 0.695, quiet=True)
    assert check("ex-smooth-6", torch.tensor(0.69), quiet=True)
    assert not check("ex-smooth-6", math.log10(2), quiet=True)  # log10
    assert not check("ex-smooth-6", 2 * math.log(2), quiet=True)
    assert not check("ex-smooth-6", 0.0, quiet=True)
