"""lib.dynamics against known answers: linear maps, the logistic map, the Hénon map."""

from __future__ import annotations

import math

import pytest
import torch
from torch.func import jacrev

from lib.dynamics import (
    classify_attractor,
    detect_period,
    jacobian,
    largest_lyapunov,
    lyapunov_blocks,
    lyapunov_spectrum,
    orbit_diagram,
    rollout,
    simulate,
)
from lib.models import ElmanRNN, LSTM

# float64 for every check of this module (fixture in tests/conftest.py)
pytestmark = pytest.mark.usefixtures("float64_default")


def henon(x, a=1.4, b=0.3):
    return torch.stack([1 - a * x[..., 0] ** 2 + x[..., 1], b * x[..., 0]], dim=-1)


def test_linear_map_spectrum_is_log_of_eigenvalue_moduli():
    # A = V diag(λ) V^-1 with |λ| = 1.5, 0.9, 0.3 (one pair complex): exponents log|λ|.
    gen = torch.Generator().manual_seed(0)
    V = torch.randn(4, 4, generator=gen)
    rot = 0.9 * torch.tensor([[math.cos(0.7), -math.sin(0.7)], [math.sin(0.7), math.cos(0.7)]])
    D = torch.block_diag(torch.tensor([[1.5]]), rot, torch.tensor([[-0.3]]))
    A = V @ D @ torch.linalg.inv(V)
    exps = lyapunov_spectrum(lambda x: x @ A.T, torch.randn(4, generator=gen), 400)
    expected = torch.log(torch.tensor([1.5, 0.9, 0.9, 0.3]))
    # a linear map converges like 1/n (the transient of Q): 400 steps give ~1e-2
    assert torch.allclose(exps, expected, atol=2e-2)
    assert exps.sum().item() == pytest.approx(torch.log(torch.linalg.det(A).abs()).item(), abs=1e-10)


def test_logistic_map_at_r4_has_exponent_log2():
    exps = lyapunov_spectrum(lambda x: 4 * x * (1 - x), torch.tensor([[0.3], [0.61]]), 4000,
                             n_transient=100)
    assert exps.shape == (2, 1)
    assert torch.allclose(exps, torch.full((2, 1), math.log(2)), atol=0.02)


def test_largest_lyapunov_reports_its_orbit_and_uses_the_one_column_qr():
    """on_state sees x_1 .. x_{n_transient + n_steps}, the orbit of simulate; λ_1 with the
    one-column normalisation equals the full spectrum's first exponent (QR of Nx columns)."""
    x0 = torch.tensor([[0.1, 0.2], [-0.3, 0.1]])
    seen = []
    lam = largest_lyapunov(henon, x0, 3000, n_transient=50, on_state=seen.append)
    assert len(seen) == 3050
    assert torch.equal(torch.stack(seen), simulate(henon, x0, 3050))
    full = lyapunov_spectrum(henon, x0, 3000, n_transient=50)[..., 0]
    assert lam.shape == (2,)
    assert float((lam - full).abs().max()) < 1e-12
    assert 0.40 < float(lam.min()) and float(lam.max()) < 0.44  # Hénon: λ_1 ≈ 0.419
    with pytest.raises(ValueError, match="on_state"):
        largest_lyapunov(henon, x0, 10, on_state="not callable")


def test_henon_spectrum():
    # Known values for a = 1.4, b = 0.3: λ1 ≈ 0.419, λ1 + λ2 = log 0.3 exactly (det J = -b).
    exps = lyapunov_spectrum(henon, torch.tensor([0.1, 0.1]), 4000, n_transient=200)
    assert exps[0].item() == pytest.approx(0.419, abs=0.015)
    assert exps.sum().item() == pytest.approx(math.log(0.3), abs=1e-10)
    assert exps[0] > exps[1]


def test_sum_of_exponents_is_mean_log_det():
    model = LSTM(0, 2, bias=False)
    theta = torch.tensor([-1., -4, -3, -2, -2, 6, 0, -6, -1, -6, 6, -9, 4, 1, -9, -7])
    step = model.autonomous(theta)
    x0 = torch.full((4,), 0.5)
    # The map is chaotic: two computations of the orbit that differ in rounding (batched
    # or not) part like e^(0.17 t), so the comparison stays within ~100 steps.
    n = 100
    exps = lyapunov_spectrum(step, x0, n, n_transient=20)
    orbit = torch.cat([simulate(step, x0, 20)[-1:], simulate(step, x0, n - 1, n_transient=20)])
    _, J = jacobian(step, orbit)
    mean_logdet = torch.linalg.slogdet(J).logabsdet.mean()
    assert exps.sum().item() == pytest.approx(mean_logdet.item(), abs=1e-9)


def test_jacobian_matches_jacrev():
    model = ElmanRNN(2, 5)
    theta = model.init_theta(seed=1, scale=1.0)
    u = torch.randn(2)
    x = torch.randn(3, 5)
    y, J = jacobian(model.autonomous(theta, u), x)
    for i in range(3):
        Ji = jacrev(lambda s: model.f(s, u, theta))(x[i])
        assert torch.allclose(J[i], Ji, atol=1e-13)
    assert torch.allclose(y, model.f(x, u, theta))


def test_batched_parameters_equal_separate_runs():
    r = torch.tensor([3.5, 3.7, 3.9])
    x0 = torch.full((3, 2, 1), 0.3)
    x0[:, 1] = 0.7
    batched = lyapunov_spectrum(lambda x: r[:, None, None] * x * (1 - x), x0, 500, n_transient=50)
    for i in range(3):
        single = lyapunov_spectrum(lambda x: r[i] * x * (1 - x), x0[i], 500, n_transient=50)
        assert torch.allclose(batched[i], single, atol=1e-12)


def test_forward_mode_path_equals_full_jacobian_path():
    # n_exponents small relative to Nx takes the dual-number path
    model = ElmanRNN(0, 16, bias=False)
    theta = model.init_theta(seed=2, scale=0.6)
    x0 = torch.randn(16)
    top = lyapunov_spectrum(model.autonomous(theta), x0, 200, n_exponents=1)
    full = lyapunov_spectrum(model.autonomous(theta), x0, 200)
    assert top.item() == pytest.approx(full[0].item(), abs=1e-10)


def test_blocks_average_to_the_spectrum():
    blocks = lyapunov_blocks(henon, torch.tensor([0.1, 0.1]), 1000, n_transient=100, n_blocks=4)
    assert blocks.shape == (4, 2)
    whole = lyapunov_blocks(henon, torch.tensor([0.1, 0.1]), 1000, n_transient=100)
    assert torch.allclose(blocks.mean(0), whole[0], atol=1e-12)


def test_orbit_diagram_and_periods_of_the_logistic_map():
    r = torch.tensor([2.8, 3.2, 3.5, 3.83, 4.0])
    orbits = orbit_diagram(lambda x, p: p * x * (1 - x), r, torch.tensor([[0.3], [0.6]]),
                           n_keep=64, n_transient=3000)
    assert orbits.shape == (5, 2, 64, 1)
    # fixed point 1 - 1/r at r = 2.8
    assert torch.allclose(orbits[0], torch.full_like(orbits[0], 1 - 1 / 2.8), atol=1e-10)
    periods = detect_period(orbits.movedim(2, 0), max_period=16, tol=1e-6)
    assert periods.tolist() == [[1, 1], [2, 2], [4, 4], [3, 3], [0, 0]]
    lyap = lyapunov_spectrum(lambda x: r[:, None, None] * x * (1 - x),
                             torch.full((5, 1, 1), 0.3), 2000, n_transient=500)[:, 0, 0]
    names = classify_attractor(periods[:, 0], lyap, tol=1e-2)
    assert names == ["fixed point", "period-2 cycle", "period-4 cycle", "period-3 cycle", "chaotic"]


def test_rollout_shapes_and_values():
    model = ElmanRNN(2, 3, 1)
    theta = model.init_theta(seed=0)
    u = torch.randn(7, 4, 2)
    x, y = rollout(model.f, model.g, theta, torch.zeros(4, 3), u)
    assert x.shape == (8, 4, 3) and y.shape == (7, 4, 1)
    assert torch.allclose(x[3], model.f(x[2], u[2], theta))
    assert torch.allclose(y[2], model.g(x[2], u[2], theta))


def test_simulate_shapes():
    out = simulate(lambda x: 0.5 * x, torch.ones(3, 2), 4, n_transient=2)
    assert out.shape == (4, 3, 2)
    assert torch.allclose(out[0], torch.full((3, 2), 0.125))


def test_bad_input():
    step = lambda x: 0.5 * x  # noqa: E731
    with pytest.raises(ValueError, match="x0"):
        simulate(step, torch.tensor([float("nan")]), 3)
    with pytest.raises(ValueError, match="n_steps"):
        simulate(step, torch.ones(2), 0)
    with pytest.raises(ValueError, match="n_transient"):
        lyapunov_spectrum(step, torch.ones(2), 5, n_transient=-1)
    with pytest.raises(ValueError, match="n_steps"):
        lyapunov_spectrum(step, torch.ones(2), -3)
    with pytest.raises(ValueError, match="step"):
        simulate(lambda x: x[..., :1], torch.ones(2), 3)
    with pytest.raises(ValueError, match="step"):
        lyapunov_spectrum(lambda x: torch.cat([x, x], -1), torch.ones(2), 3)
    with pytest.raises(ValueError, match="n_exponents"):
        lyapunov_spectrum(step, torch.ones(2), 3, n_exponents=3)
    with pytest.raises(ValueError, match="divisible"):
        lyapunov_blocks(step, torch.ones(2), 10, n_blocks=3)
    with pytest.raises(ValueError, match="diverged"):
        lyapunov_spectrum(lambda x: x ** 2 + 1e3, torch.ones(1), 50)
    with pytest.raises(ValueError, match="params"):
        orbit_diagram(lambda x, p: x, torch.empty(0), torch.ones(1, 1), n_keep=2, n_transient=0)
    with pytest.raises(ValueError, match="x0"):
        orbit_diagram(lambda x, p: x, torch.ones(3), torch.ones(2, 2, 1), n_keep=2, n_transient=0)
    with pytest.raises(ValueError, match="params"):
        orbit_diagram(lambda x, p: x, torch.tensor([float("inf")]), torch.ones(1, 1),
                      n_keep=2, n_transient=0)
    with pytest.raises(ValueError, match="u"):
        rollout(lambda x, u, t: x, lambda x, u, t: x, torch.ones(1), torch.ones(1),
                torch.ones(0, 1))
    with pytest.raises(ValueError, match="f"):
        rollout(lambda x, u, t: torch.cat([x, x], -1), lambda x, u, t: x, torch.ones(1),
                torch.ones(1), torch.ones(3, 1))
    with pytest.raises(ValueError, match="max_period"):
        detect_period(torch.zeros(10, 1), max_period=10)
    with pytest.raises(ValueError, match="same shape"):
        classify_attractor(torch.ones(2, dtype=torch.long), torch.zeros(3))


# ----------------------------------------------------------------------------- fixed points
def test_fixed_points_of_the_logistic_map_in_closed_form():
    from lib.dynamics import fixed_points

    r = 2.8  # fixed points 0 (f' = r, unstable) and 1 - 1/r (f' = 2 - r, stable)
    x0 = torch.linspace(-0.3, 1.2, 9, dtype=torch.float64).unsqueeze(-1)
    fp = fixed_points(lambda x: r * x * (1 - x), x0)
    order = fp.points[:, 0].argsort()
    assert fp.points.shape == (2, 1)
    assert torch.allclose(fp.points[order, 0], torch.tensor([0.0, 1 - 1 / r], dtype=torch.float64),
                          atol=1e-12)
    assert fp.stable[order].tolist() == [False, True]
    assert torch.allclose(fp.spectral_radius[order], torch.tensor([r, abs(2 - r)],
                                                                  dtype=torch.float64))
    assert fp.not_converged.numel() == 0


def test_fixed_point_of_an_affine_map_and_its_stability():
    from lib.dynamics import fixed_points

    gen = torch.Generator().manual_seed(0)
    for rho, stable in ((0.7, True), (1.3, False)):
        A = torch.randn(4, 4, generator=gen, dtype=torch.float64)
        A = rho * A / torch.linalg.eigvals(A).abs().max()
        b = torch.randn(4, generator=gen, dtype=torch.float64)
        fp = fixed_points(lambda x: x @ A.T + b, torch.randn(5, 4, generator=gen,
                                                              dtype=torch.float64))
        exact = torch.linalg.solve(torch.eye(4, dtype=torch.float64) - A, b)
        assert fp.points.shape == (1, 4)
        assert torch.allclose(fp.points[0], exact, atol=1e-10)
        assert bool(fp.stable[0]) is stable
        assert abs(float(fp.spectral_radius[0]) - rho) < 1e-10


def test_fixed_points_reports_starts_that_do_not_converge():
    from lib.dynamics import fixed_points

    fp = fixed_points(lambda x: x + 1.0, torch.zeros(3, 2, dtype=torch.float64), max_iter=5)
    assert fp.points.shape == (0, 2) and fp.stable.shape == (0,)
    assert fp.not_converged.tolist() == [0, 1, 2]


@pytest.mark.parametrize("kwargs, match", [
    ({"x0": torch.tensor([[float("nan")]])}, "x0"),
    ({"x0": torch.zeros(3)}, "x0"),
    ({"tol": 0.0}, "tol"),
    ({"max_iter": 0}, "max_iter"),
])
def test_fixed_points_bad_input(kwargs, match):
    from lib.dynamics import fixed_points

    args = {"x0": torch.zeros(2, 1, dtype=torch.float64), **kwargs}
    with pytest.raises(ValueError, match=match):
        fixed_points(lambda x: 0.5 * x, args.pop("x0"), **args)
