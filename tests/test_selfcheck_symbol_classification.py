"""The self-checks of the symbol-classification chapter pass right answers and fail wrong
ones."""

from __future__ import annotations

import math

import torch

from lib.dynamics import fixed_points
from lib.selfcheck import check
from lib.selfcheck.symbol_classification import memory_horizon, two_bit_memory_points


def test_memory_horizon_reference():
    # log(40) / log(1 / 0.9), the number of the exercise's solution
    assert abs(memory_horizon(0.9, 5.0, 4.0, 1.0) - 35.01) < 0.01


def test_memory_horizon_check():
    right = math.log(2 * 4 * 5 / 1) / math.log(1 / 0.9)
    assert check("ex-symbol-classification-2", right, quiet=True)
    assert check("ex-symbol-classification-2", 35, quiet=True)  # whole steps
    wrong = (
        math.log(4 * 5 / 1) / math.log(1 / 0.9),  # B instead of 2B: 28.4
        math.log(40) / math.log(0.9),  # sign: -35
        math.log(40) / math.log10(1 / 0.9),  # mixed logarithms: 80.6
        40 * 0.9,  # no logarithm at all
        float("nan"),
    )
    for answer in wrong:
        assert not check("ex-symbol-classification-2", answer, quiet=True), answer
    assert not check("ex-symbol-classification-2", "many", quiet=True)
    assert not check("ex-symbol-classification-2", None, quiet=True)


def test_two_bit_memory_reference():
    a = two_bit_memory_points()[0, 0].item()
    assert abs(a - math.tanh(2 * a)) < 1e-14 and 0.95 < a < 0.96
    assert 2 * (1 - a ** 2) < 1  # the slope there: stable


def test_two_bit_memory_check():
    g = torch.linspace(-1.5, 1.5, 7, dtype=torch.float64)
    fp = fixed_points(lambda x: torch.tanh(2 * x), torch.cartesian_prod(g, g))
    right = fp.points[fp.stable]
    assert check("ex-symbol-classification-5", right, quiet=True)
    assert check("ex-symbol-classification-5", right.flip(0).float(), quiet=True)
    a = two_bit_memory_points()[0, 0].item()
    wrong = (
        fp.points,  # all nine fixed points, the unstable ones included
        right[:2],  # two of the four
        torch.cat([right, right[:1]]),  # a duplicate
        right + 1e-3,  # not fixed points
        torch.tensor([[1.0, 1.0], [1.0, -1.0], [-1.0, 1.0], [-1.0, -1.0]]),  # tanh's limits
        torch.tensor([[a, a, 0.0]]),  # wrong shape
        torch.zeros(0, 2),  # none at all
    )
    for answer in wrong:
        assert not check("ex-symbol-classification-5", answer, quiet=True), answer
    assert not check("ex-symbol-classification-5", None, quiet=True)


def test_two_bit_memory_check_says_what_is_wrong(capsys):
    g = torch.linspace(-1.5, 1.5, 7, dtype=torch.float64)
    fp = fixed_points(lambda x: torch.tanh(2 * x), torch.cartesian_prod(g, g))
    check("ex-symbol-classification-5", fp.points)
    out = capsys.readouterr().out
    assert out.startswith("✗ ex-symbol-classification-5: not yet") and "stable" in out
