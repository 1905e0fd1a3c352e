"""Tests of lib/entropy.py: the identity and the bound of supplement B.1 (Theorem 2, S3-S5)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.stats import multivariate_normal

from lib.entropy import (
    entropy_change,
    entropy_trajectory,
    gaussian_entropy,
    hadamard_bound,
    knn_entropy,
    lipschitz_entropy_bound,
    log_abs_det_jacobian,
    log_unit_ball_volume,
)

DT = torch.float64


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def random_spd(d: int, seed: int) -> torch.Tensor:
    A = torch.randn(d, d, generator=gen(seed), dtype=DT)
    return A @ A.T + 0.1 * torch.eye(d, dtype=DT)


def gaussian_samples(cov: torch.Tensor, n: int, seed: int) -> torch.Tensor:
    L = torch.linalg.cholesky(cov)
    return torch.randn(n, cov.shape[0], generator=gen(seed), dtype=DT) @ L.T


def tanh_plus_linear(W: torch.Tensor, a: float):
    """x -> tanh(W x) + a x: one-to-one with a nonsingular Jacobian when a > ||W||_2."""
    return lambda x: torch.tanh(x @ W.T) + a * x


# ---------------------------------------------------------------- closed forms
def test_unit_ball_volume():
    for d, V in [(1, 2.0), (2, math.pi), (3, 4 * math.pi / 3), (4, math.pi**2 / 2)]:
        assert math.isclose(log_unit_ball_volume(d), math.log(V), rel_tol=1e-12)


@settings(max_examples=25, deadline=None)
@given(d=st.integers(1, 5), seed=st.integers(0, 10_000))
def test_gaussian_entropy_matches_scipy(d, seed):
    cov = random_spd(d, seed)
    ours = float(gaussian_entropy(cov))
    ref = float(multivariate_normal(mean=np.zeros(d), cov=cov.numpy()).entropy())
    assert math.isclose(ours, ref, rel_tol=1e-10, abs_tol=1e-10)


def test_gaussian_entropy_diagonal_is_sum_of_marginals():
    s = torch.tensor([0.5, 2.0, 3.0], dtype=DT)
    H = gaussian_entropy(torch.diag(s**2))
    H1 = sum(0.5 * math.log(2 * math.pi * math.e * v**2) for v in s.tolist())
    assert math.isclose(float(H), H1, rel_tol=1e-12)


def test_gaussian_entropy_batched():
    covs = torch.stack([random_spd(3, s) for s in range(4)])
    H = gaussian_entropy(covs)
    assert H.shape == (4,)
    assert torch.allclose(H, torch.stack([gaussian_entropy(c) for c in covs]))


# ---------------------------------------------------------------- kNN estimator
@pytest.mark.parametrize("d", [1, 2, 3])
def test_knn_entropy_of_gaussians(d):
    cov = random_spd(d, 10 + d)
    x = gaussian_samples(cov, 8000, seed=d)
    exact = float(gaussian_entropy(cov))
    est = float(knn_entropy(x, k=3))
    # standard deviation of the estimator is about sqrt(d / (2 n)) < 0.02 here
    assert abs(est - exact) < 0.06, (est, exact)


def test_knn_entropy_scaling_and_translation():
    """Ĥ(c x + b) = Ĥ(x) + d log c holds exactly: distances scale by c."""
    x = gaussian_samples(random_spd(2, 3), 500, seed=3)
    H = knn_entropy(x, k=4)
    H2 = knn_entropy(3.0 * x + torch.tensor([5.0, -1.0], dtype=DT), k=4)
    assert math.isclose(float(H2), float(H) + 2 * math.log(3.0), rel_tol=0, abs_tol=1e-9)


def test_knn_entropy_bias_shrinks_with_sample_size():
    """Uniform on [0, 1]^3 (H = 0): boundary bias of order n^(-1/3), shrinking with n."""
    sizes = [100, 800, 6400]
    bias = []
    for n in sizes:
        est = [float(knn_entropy(torch.rand(n, 3, generator=gen(s), dtype=DT))) for s in range(12)]
        bias.append(abs(np.mean(est)))
    assert bias[0] > bias[1] > bias[2], bias
    assert bias[2] < 0.5 * bias[0], bias
    assert bias[2] < 0.1, bias


def test_knn_entropy_returns_float64_scalar():
    H = knn_entropy(torch.randn(50, 2, generator=gen(0), dtype=torch.float32), k=2)
    assert H.dim() == 0 and H.dtype == DT


# ---------------------------------------------------------------- the identity of B.1
@settings(max_examples=25, deadline=None)
@given(d=st.integers(1, 4), seed=st.integers(0, 10_000))
def test_entropy_change_of_linear_map_is_log_abs_det(d, seed):
    A = torch.randn(d, d, generator=gen(seed), dtype=DT) + 0.1 * torch.eye(d, dtype=DT)
    x = torch.randn(7, d, generator=gen(seed + 1), dtype=DT)
    lhs = entropy_change(lambda z: z @ A.T, x)
    rhs = torch.linalg.slogdet(A).logabsdet
    assert torch.allclose(lhs, rhs, rtol=1e-10, atol=1e-10)


def test_entropy_change_matches_gaussian_closed_forms():
    """H(A x) - H(x) for x ~ N(0, Σ): both sides in closed form."""
    cov = random_spd(3, 1)
    A = torch.randn(3, 3, generator=gen(2), dtype=DT)
    x = gaussian_samples(cov, 20, seed=0)
    H_next = gaussian_entropy(A @ cov @ A.T)
    H_now = gaussian_entropy(cov)
    assert torch.allclose(H_now + entropy_change(lambda z: z @ A.T, x), H_next, atol=1e-9)


def test_entropy_change_of_nonlinear_map_agrees_with_knn():
    d = 2
    W = torch.randn(d, d, generator=gen(5), dtype=DT)
    a = 1.1 * float(torch.linalg.matrix_norm(W, ord=2))
    step = tanh_plus_linear(W, a)
    cov = 0.5 * torch.eye(d, dtype=DT)
    x = gaussian_samples(cov, 8000, seed=6)
    predicted = gaussian_entropy(cov) + entropy_change(step, x)
    estimated = knn_entropy(step(x))
    assert abs(float(predicted - estimated)) < 0.06


def test_log_abs_det_jacobian_is_per_sample():
    x = torch.randn(4, 5, 2, generator=gen(0), dtype=DT)
    W = torch.tensor([[1.0, 2.0], [0.0, 1.0]], dtype=DT)
    out = log_abs_det_jacobian(lambda z: torch.tanh(z @ W.T), x)
    assert out.shape == (4, 5)
    y = torch.tanh(x @ W.T)
    assert torch.allclose(out, torch.log(1 - y**2).sum(-1), atol=1e-12)  # det W = 1


def test_entropy_trajectory_linear():
    A = torch.tensor([[0.9, 0.3], [-0.2, 0.7]], dtype=DT)
    x0 = torch.randn(30, 2, generator=gen(1), dtype=DT)
    xs, H, Js = entropy_trajectory(lambda z: z @ A.T, x0, 5, H0=1.5, return_jacobians=True)
    assert xs.shape == (6, 30, 2) and H.shape == (6,) and Js.shape == (5, 30, 2, 2)
    expected = 1.5 + torch.arange(6, dtype=DT) * torch.linalg.slogdet(A).logabsdet
    assert torch.allclose(H, expected, atol=1e-12)
    assert torch.allclose(xs[3], x0 @ torch.linalg.matrix_power(A, 3).T, atol=1e-12)
    assert torch.allclose(Js, A.expand_as(Js))


# ---------------------------------------------------------------- Hadamard (S4) and S5
@settings(max_examples=50, deadline=None)
@given(n=st.integers(1, 8), seed=st.integers(0, 10_000), scale=st.floats(1e-3, 1e3))
def test_hadamard_inequality_on_random_matrices(n, seed, scale):
    J = scale * torch.randn(16, n, n, generator=gen(seed), dtype=DT)
    lhs = torch.linalg.slogdet(J).logabsdet
    rhs = hadamard_bound(J)
    assert rhs.shape == (16,)
    assert bool((lhs <= rhs + 1e-10 * (1 + rhs.abs())).all())
    # and the Hadamard bound is itself at most n log ||J||_2 (the step from S4 to S5)
    assert bool((rhs <= n * torch.log(torch.linalg.matrix_norm(J, ord=2)) + 1e-10).all())


def test_hadamard_equality_for_orthogonal_columns():
    Q, _ = torch.linalg.qr(torch.randn(4, 4, generator=gen(0), dtype=DT))
    J = Q * torch.tensor([0.5, 2.0, 3.0, 0.1], dtype=DT)  # scales the columns
    assert torch.allclose(hadamard_bound(J), torch.linalg.slogdet(J).logabsdet, atol=1e-12)


def test_lipschitz_entropy_bound():
    assert math.isclose(float(lipschitz_entropy_bound(2.0, 3)), 3 * math.log(2.0))
    assert float(lipschitz_entropy_bound(torch.tensor(0.5), 2)) < 0


@pytest.mark.parametrize("rho", [0.5, 0.9, 1.0, 1.3])
def test_corrected_theorem_holds_printed_fails(rho):
    """H_{t+1} - H_t <= Nx log Lf for x -> tanh(rho Q x) (Lf = rho); the printed S3 needs >=."""
    d = 3
    Q, _ = torch.linalg.qr(torch.randn(d, d, generator=gen(1), dtype=DT))
    x = torch.randn(500, d, generator=gen(2), dtype=DT)
    dH = entropy_change(lambda z: torch.tanh(rho * z @ Q.T), x)
    bound = lipschitz_entropy_bound(rho, d)
    assert dH <= bound
    assert dH < bound - 0.1  # strict: the tanh contracts, so the printed S3 (dH >= bound) fails


def test_printed_direction_fails_for_a_linear_map():
    A = torch.diag(torch.tensor([2.0, 0.5], dtype=DT))
    x = torch.randn(10, 2, generator=gen(0), dtype=DT)
    dH = entropy_change(lambda z: z @ A.T, x)
    Lf = torch.linalg.matrix_norm(A, ord=2)
    assert torch.allclose(dH, torch.zeros((), dtype=DT), atol=1e-12)
    assert not bool(dH >= lipschitz_entropy_bound(Lf, 2))  # printed S3 fails
    assert bool(dH <= lipschitz_entropy_bound(Lf, 2))  # corrected form holds


# ---------------------------------------------------------------- bad input
def test_knn_too_few_samples():
    with pytest.raises(ValueError, match="samples.*k \\+ 1"):
        knn_entropy(torch.randn(3, 2, dtype=DT), k=3)


def test_knn_non_finite_samples():
    x = torch.randn(20, 2, dtype=DT)
    x[4, 1] = float("nan")
    with pytest.raises(ValueError, match="samples"):
        knn_entropy(x)
    x[4, 1] = float("inf")
    with pytest.raises(ValueError, match="samples"):
        knn_entropy(x)


def test_knn_bad_shape_k_and_duplicates():
    with pytest.raises(ValueError, match="samples.*\\(n, d\\)"):
        knn_entropy(torch.randn(20, dtype=DT))
    with pytest.raises(ValueError, match="k"):
        knn_entropy(torch.randn(20, 2, dtype=DT), k=0)
    x = torch.randn(10, 2, dtype=DT).repeat(2, 1)
    with pytest.raises(ValueError, match="repeated"):
        knn_entropy(x, k=1)
    with pytest.raises(ValueError, match="samples"):
        knn_entropy(np.zeros((10, 2)))


def test_hadamard_non_square():
    with pytest.raises(ValueError, match="J must be .*square"):
        hadamard_bound(torch.randn(3, 2, dtype=DT))
    with pytest.raises(ValueError, match="J must be .*square"):
        hadamard_bound(torch.randn(3, dtype=DT))
    with pytest.raises(ValueError, match="J"):
        hadamard_bound(torch.full((2, 2), float("nan"), dtype=DT))


def test_entropy_change_non_square_jacobian():
    B = torch.randn(3, 2, dtype=DT)
    with pytest.raises(ValueError, match="step"):
        entropy_change(lambda z: z @ B.T, torch.randn(5, 2, dtype=DT))


def test_entropy_change_bad_samples_and_singular_map():
    x = torch.randn(5, 2, dtype=DT)
    x[0, 0] = float("inf")
    with pytest.raises(ValueError, match="samples"):
        entropy_change(lambda z: z, x)
    P = torch.tensor([[1.0, 0.0], [0.0, 0.0]], dtype=DT)  # a projection: not one-to-one
    with pytest.raises(ValueError, match="singular"):
        entropy_change(lambda z: z @ P.T, torch.randn(5, 2, dtype=DT))
    with pytest.raises(ValueError, match="step"):
        entropy_change("not a map", torch.randn(5, 2, dtype=DT))


def test_entropy_trajectory_bad_input():
    x0 = torch.randn(5, 2, dtype=DT)
    with pytest.raises(ValueError, match="n_steps"):
        entropy_trajectory(lambda z: z, x0, 0)
    with pytest.raises(ValueError, match="H0"):
        entropy_trajectory(lambda z: z, x0, 2, H0=float("nan"))
    x0[1, 1] = float("nan")
    with pytest.raises(ValueError, match="x0"):
        entropy_trajectory(lambda z: z, x0, 2)


def test_gaussian_entropy_bad_cov():
    with pytest.raises(ValueError, match="cov"):
        gaussian_entropy(torch.randn(2, 3, dtype=DT))
    with pytest.raises(ValueError, match="cov must be symmetric"):
        gaussian_entropy(torch.tensor([[1.0, 0.5], [0.0, 1.0]], dtype=DT))
    with pytest.raises(ValueError, match="cov must be positive definite"):
        gaussian_entropy(torch.tensor([[1.0, 0.0], [0.0, -1.0]], dtype=DT))


def test_lipschitz_entropy_bound_bad_input():
    with pytest.raises(ValueError, match="Lf"):
        lipschitz_entropy_bound(0.0, 2)
    with pytest.raises(ValueError, match="Lf"):
        lipschitz_entropy_bound(-1.0, 2)
    with pytest.raises(ValueError, match="nx"):
        lipschitz_entropy_bound(1.0, 0)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_runs_on_cuda():  # pragma: no cover - only with a GPU
    x = torch.randn(200, 2, dtype=DT, device="cuda")
    A = torch.tensor([[2.0, 1.0], [0.0, 1.0]], dtype=DT, device="cuda")
    dH = entropy_change(lambda z: z @ A.T, x)
    assert dH.device.type == "cuda" and math.isclose(float(dH), math.log(2.0), rel_tol=1e-12)
    assert knn_entropy(x).device.type == "cuda"
    assert hadamard_bound(A).device.type == "cuda"
