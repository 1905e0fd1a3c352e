"""The self-checks of the chapter "Entropy and forgetting": each passes a right answer and
fails wrong ones (with a message, never an exception)."""

from __future__ import annotations

import math

import pytest
import torch

from lib.selfcheck import check
from lib.selfcheck.entropy import driven_entropy_reference, expansive_exponent_sum

pytestmark = pytest.mark.usefixtures("float64_default")


def _slack(A):
    n = A.shape[-1]
    return float(n * torch.log(torch.linalg.matrix_norm(A, ord=2))
                 - torch.linalg.slogdet(A).logabsdet)


def test_ex_entropy_1_slack():
    assert check("ex-entropy-1", _slack, quiet=True)
    # Frobenius instead of the spectral norm
    wrong_norm = lambda A: float(A.shape[-1] * torch.log(torch.linalg.matrix_norm(A))
                                 - torch.linalg.slogdet(A).logabsdet)
    assert not check("ex-entropy-1", wrong_norm, quiet=True)
    # forgot the factor N_x
    no_n = lambda A: float(torch.log(torch.linalg.matrix_norm(A, ord=2))
                           - torch.linalg.slogdet(A).logabsdet)
    assert not check("ex-entropy-1", no_n, quiet=True)
    assert not check("ex-entropy-1", 0.0, quiet=True)  # not a function
    assert not check("ex-entropy-1", lambda A: A.foo, quiet=True)  # raises


def test_ex_entropy_2_driven_network():
    right = driven_entropy_reference()
    assert check("ex-entropy-2", right, quiet=True)
    bound = [right[0] + t * 2 * math.log(0.8) for t in range(31)]
    assert not check("ex-entropy-2", bound, quiet=True)  # the bound, not the entropy
    assert not check("ex-entropy-2", right[:30], quiet=True)  # one short
    shifted = [right[0]] + [h - 1e-3 for h in right[1:]]
    assert not check("ex-entropy-2", shifted, quiet=True)


def test_ex_entropy_3_exponent_sum():
    right = expansive_exponent_sum()
    assert -0.6 < right < -0.4
    assert check("ex-entropy-3", right + 0.004, quiet=True)
    assert not check("ex-entropy-3", 0.0, quiet=True)  # lambda_1 alone
    assert not check("ex-entropy-3", 2 * math.log(1.25), quiet=True)  # at the origin


def test_ex_entropy_5_fold():
    assert check("ex-entropy-5", -math.log(2), quiet=True)
    assert check("ex-entropy-5", torch.tensor(-math.log(2)), quiet=True)
    assert not check("ex-entropy-5", 0.0, quiet=True)  # log|det J| = 0
    assert not check("ex-entropy-5", math.log(2), quiet=True)  # sign
    assert not check("ex-entropy-5", -1.0, quiet=True)  # bits, not nats


def test_ex_entropy_6_horizon():
    assert check("ex-entropy-6", 14, quiet=True)
    assert not check("ex-entropy-6", 13, quiet=True)  # rounded down
    assert not check("ex-entropy-6", 132, quiet=True)  # without N_x
    assert not check("ex-entropy-6", 14.0, quiet=True)  # not an int
