"""The self-checks of the chaotic-LSTM chapter pass right answers and fail wrong ones."""

from __future__ import annotations

import math

import numpy as np
import torch

from lib.selfcheck import check
from lib.selfcheck.chaotic_lstm import S_STAR


def test_s_star_check():
    assert check("ex-cl-1", (10 + 8 * math.sqrt(10)) / 45, quiet=True)
    assert check("ex-cl-1", torch.tensor(S_STAR, dtype=torch.float64), quiet=True)
    wrong = [
        (10 - 8 * math.sqrt(10)) / 45,      # the negative root
        0.76,                               # where the two attractors coexist
        (20 + math.sqrt(2560)) / 45,        # a factor 2 lost
        2 / math.sqrt(45),                  # |eigenvalue of W_hg / 4| = 1, no I / 2
        "0.7849",                           # not a number
        float("nan"),
        None,
    ]
    for answer in wrong:
        assert not check("ex-cl-1", answer, quiet=True), answer


def test_horizon_check():
    lam = 0.166
    right = (math.log(0.05 / 2**-8) / lam, math.log(0.05 / 2**-11) / lam, math.log(2) / lam)
    assert check("ex-cl-2", right, quiet=True)
    assert check("ex-cl-2", [torch.tensor(v) for v in right], quiet=True)
    log10 = tuple(v * math.log10(math.e) for v in right)             # base-10 logarithms
    inverted = (math.log(2**-8 / 0.05) / lam, math.log(2**-11 / 0.05) / lam, math.log(2) / lam)
    swapped = (right[1], right[0], right[2])                          # formats swapped
    stored_bits = (math.log(0.05 / 2**-7) / lam, math.log(0.05 / 2**-10) / lam,
                   math.log(2) / lam)                                 # bits without the hidden one
    wrong_lambda = tuple(v * 0.166 / 0.5 for v in right)              # lambda_1 = 0.5
    no_delta = (math.log(2**8) / lam, math.log(2**11) / lam, math.log(2) / lam)  # delta = 1
    for answer in (log10, inverted, swapped, stored_bits, wrong_lambda, no_delta,
                   right[:2], 42.0, None):
        assert not check("ex-cl-2", answer, quiet=True), answer


def test_sign_flip_check():
    right = [1, 2, 3, 4, 12, 14]
    assert check("ex-cl-5", right, quiet=True)
    assert check("ex-cl-5", torch.tensor(right), quiet=True)
    assert check("ex-cl-5", np.array(right), quiet=True)
    wrong = [
        [1, 2, 3, 4, 6, 12, 14],            # the zero entry counted
        [1, 2, 3, 4, 12, 14, 15],           # the flip that the erratum shows is regular
        [0, 5, 7, 8, 9, 10, 11, 13, 15],    # the complement: flips that end the chaos
        [1, 2, 3, 4, 12],                   # one missing
        [14, 12, 4, 3, 2, 1],               # not sorted
        [1.0, 2.0, 3.0, 4.0, 12.0, 14.0],   # not integers
        [2, 3, 4, 5, 13, 15],               # 1-based indices
        None,
    ]
    for answer in wrong:
        assert not check("ex-cl-5", answer, quiet=True), answer
