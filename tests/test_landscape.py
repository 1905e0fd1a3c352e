"""lib.landscape: batched costs against torch.nn.LSTM point by point, grids, local minima."""

from __future__ import annotations

import itertools
import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from lib.dynamics import lyapunov_spectrum, rollout
from lib.landscape import (
    batched_cost,
    count_local_minima,
    landscape_1d,
    landscape_2d,
    landscape_lyapunov,
    line,
    local_minima,
    mse,
    plane,
)
from lib.models import GRU, LSTM, ElmanRNN

# float64 for every check of this module (fixture in tests/conftest.py)
pytestmark = pytest.mark.usefixtures("float64_default")

# The chaotic LSTM of supplement C, in the authors' code reading (weight_hh in torch order).
THETA_TRUE = torch.tensor([-1, -4, -3, -2, -2, 6, 0, -6, -1, -6, 6, -9, 4, 1, -9, -7.0],
                          dtype=torch.float64)
X0 = torch.full((4,), 0.5, dtype=torch.float64)
CHAOTIC = LSTM(0, 2, bias=False)


def chaotic_data(n_steps: int) -> torch.Tensor:
    _, y = rollout(CHAOTIC.f, CHAOTIC.g, THETA_TRUE, X0, torch.zeros(n_steps, 0))
    return y


def torch_lstm_cost(weight_hh: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """The straightforward way: set the weights of a torch.nn.LSTM and run it.

    nn.LSTM needs input_size >= 1, so the zero input is one input channel with zero weights.
    Its outputs are h_1..h_N; the book's convention reads out h_0..h_{N-1}.
    """
    lstm = nn.LSTM(1, 2, bias=False)
    h0 = torch.full((1, 1, 2), 0.5)
    with torch.no_grad():
        lstm.weight_ih_l0.zero_()
        lstm.weight_hh_l0.copy_(weight_hh.reshape(8, 2))
        out, _ = lstm(torch.zeros(len(y) - 1, 1, 1), (h0, h0.clone()))
    y_hat = torch.cat([h0[0], out[:, 0]])
    return ((y_hat - y) ** 2).mean()


def test_batched_cost_equals_torch_lstm_point_by_point():
    # 40 steps: a last-bit difference between two float64 implementations grows like
    # e^(0.17 t) on the chaotic part of the line, which stays below 1e-12 up to t ~ 60.
    # (benchmarks/bench_landscape.py compares 200 steps, where the two agree bitwise here.)
    y = chaotic_data(40)
    s = torch.linspace(0.0, 1.5, 24)
    batched = landscape_1d(CHAOTIC, THETA_TRUE, s, X0, None, y)
    looped = torch.stack([torch_lstm_cost(si * THETA_TRUE, y) for si in s])
    assert batched.shape == (24,)
    assert torch.allclose(batched, looped, rtol=0, atol=1e-12)
    # the true parameters reproduce their own data
    assert batched_cost(CHAOTIC, THETA_TRUE, X0, None, y).item() == 0.0


def test_batched_cost_equals_torch_lstm_with_input_bias_and_readout():
    gen = torch.Generator().manual_seed(3)
    model = LSTM(3, 4, 2)
    N, P = 30, 5
    u = torch.randn(N, 3, generator=gen)
    y = torch.randn(N, 2, generator=gen)
    x0 = torch.randn(8, generator=gen)
    thetas = torch.stack([model.init_theta(seed=k, scale=1.5) for k in range(P)])
    batched = batched_cost(model, thetas, x0, u, y)
    looped = []
    for theta in thetas:
        lstm, lin = nn.LSTM(3, 4), nn.Linear(4, 2)
        p = model.unflatten(theta)
        with torch.no_grad():
            for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
                getattr(lstm, name + "_l0").copy_(p[name])
            lin.weight.copy_(p["C"])
            lin.bias.copy_(p["d"])
            h0, c0 = x0[:4].reshape(1, 1, 4), x0[4:].reshape(1, 1, 4)
            out, _ = lstm(u[:-1, None], (h0, c0))
            y_hat = lin(torch.cat([h0[0], out[:, 0]]))
        assert torch.equal(model.theta_from_torch(lstm, lin), theta)
        looped.append(((y_hat - y) ** 2).mean())
    assert torch.allclose(batched, torch.stack(looped), rtol=0, atol=1e-12)


@settings(max_examples=20, deadline=None)
@given(
    kind=st.sampled_from(["elman", "lstm", "gru"]),
    batch=st.lists(st.integers(1, 3), min_size=1, max_size=3),
    n_steps=st.integers(1, 12),
    seed=st.integers(0, 2**16),
)
def test_batched_cost_equals_per_point_rollout(kind, batch, n_steps, seed):
    model = {"elman": ElmanRNN, "lstm": LSTM, "gru": GRU}[kind](2, 3, 1)
    gen = torch.Generator().manual_seed(seed)
    thetas = torch.randn(*batch, model.n_params, generator=gen)
    x0 = torch.randn(model.nx, generator=gen)
    u = torch.randn(n_steps, 2, generator=gen)
    y = torch.randn(n_steps, 1, generator=gen)
    V = batched_cost(model, thetas, x0, u, y)
    assert V.shape == tuple(batch)
    for index in itertools.product(*(range(b) for b in batch)):
        _, y_hat = rollout(model.f, model.g, thetas[index], x0, u)
        expected = mse(y_hat, y).mean()
        assert V[index].item() == pytest.approx(expected.item(), rel=1e-12, abs=1e-14)


def test_batched_cost_broadcasts_x0_u_y_and_accepts_a_loss_callable():
    model = ElmanRNN(1, 2)
    gen = torch.Generator().manual_seed(0)
    thetas = torch.randn(4, 1, model.n_params, generator=gen)
    x0 = torch.randn(3, 2, generator=gen)  # three initial states per θ
    u = torch.randn(5, 1, generator=gen)
    y = torch.randn(5, 2, generator=gen)
    V = batched_cost(model, thetas, x0, u, y)
    assert V.shape == (4, 3)
    for i, k in itertools.product(range(4), range(3)):
        _, y_hat = rollout(model.f, model.g, thetas[i, 0], x0[k], u)
        assert V[i, k].item() == pytest.approx(mse(y_hat, y).mean().item(), rel=1e-12)
    l1 = batched_cost(model, thetas, x0, u, y, loss=lambda a, b: (a - b).abs().sum(-1))
    _, y_hat = rollout(model.f, model.g, thetas[2, 0], x0[1], u)
    assert l1[2, 1].item() == pytest.approx((y_hat - y).abs().sum(-1).mean().item(), rel=1e-12)


@pytest.mark.parametrize("burn_in", [0, 1, 7, 11])
def test_burn_in_averages_the_kept_steps_like_a_hand_written_loop(burn_in):
    model = LSTM(2, 3, 2)
    gen = torch.Generator().manual_seed(burn_in)
    n_steps = 12
    thetas = torch.stack([model.init_theta(seed=k, scale=1.5) for k in range(4)])
    x0 = torch.randn(model.nx, generator=gen)
    u = torch.randn(n_steps, 2, generator=gen)
    y = torch.randn(n_steps, 2, generator=gen)
    V = batched_cost(model, thetas, x0, u, y, burn_in=burn_in)
    for k, theta in enumerate(thetas):
        # the loop spelled out: x_0 is the initial state, ŷ_t = g(x_t, u_t), steps t >= burn_in
        x, total = x0, 0.0
        for t in range(n_steps):
            if t >= burn_in:
                total += ((model.g(x, u[t], theta) - y[t]) ** 2).mean().item()
            x = model.f(x, u[t], theta)
        expected = total / (n_steps - burn_in)
        assert V[k].item() == pytest.approx(expected, rel=1e-12, abs=1e-15)


def test_burn_in_passes_through_the_landscapes_and_zero_changes_nothing():
    y = chaotic_data(60)
    s = torch.linspace(0.6, 1.3, 5)
    r = torch.randn(16, generator=torch.Generator().manual_seed(4))
    for burn_in in (0, 20, 59):
        V1 = landscape_1d(CHAOTIC, THETA_TRUE, s, X0, None, y, burn_in=burn_in)
        per_point = torch.stack([batched_cost(CHAOTIC, si * THETA_TRUE, X0, None, y,
                                              burn_in=burn_in) for si in s])
        assert torch.equal(V1, per_point)
        V2 = landscape_2d(CHAOTIC, THETA_TRUE, r, s, s[:2], X0, None, y, burn_in=burn_in)
        assert torch.equal(V2, batched_cost(CHAOTIC, plane(THETA_TRUE, r, s, s[:2]), X0, None,
                                            y, burn_in=burn_in))
    # burn_in = 0 is the cost of eq. (2) over every step from t = 0, as before
    _, y_hat = rollout(CHAOTIC.f, CHAOTIC.g, 0.9 * THETA_TRUE, X0, torch.zeros(60, 0))
    expected = mse(y_hat, y).mean()
    for V in (batched_cost(CHAOTIC, 0.9 * THETA_TRUE, X0, None, y),
              batched_cost(CHAOTIC, 0.9 * THETA_TRUE, X0, None, y, burn_in=0)):
        assert V.item() == pytest.approx(expected.item(), rel=1e-12)
    # the last kept step alone
    last = batched_cost(CHAOTIC, 0.9 * THETA_TRUE, X0, None, y, burn_in=59)
    assert last.item() == pytest.approx(mse(y_hat[59], y[59]).item(), rel=1e-12)


def test_the_authors_cost_compares_h101_to_h200():
    # chaotic_lstm.py: nn.LSTM over 200 zero inputs returns h_1 .. h_200 and the script keeps
    # output[100:], that is h_101 .. h_200; here ŷ_t = h_t for t = 0 .. N-1: burn_in=101, N=201.
    theta = 0.8 * THETA_TRUE  # attracting cycles (periods 3 and 4): implementations agree
    data_theta = 2.0 * THETA_TRUE
    lstm_out = {}
    for name, th in (("model", theta), ("data", data_theta)):
        lstm = nn.LSTM(1, 2, bias=False)
        h0 = torch.full((1, 1, 2), 0.5)
        with torch.no_grad():
            lstm.weight_ih_l0.zero_()
            lstm.weight_hh_l0.copy_(th.reshape(8, 2))
            lstm_out[name], _ = lstm(torch.zeros(200, 1, 1), (h0, h0.clone()))
    script_loss = nn.functional.mse_loss(lstm_out["model"][100:], lstm_out["data"][100:])
    _, y = rollout(CHAOTIC.f, CHAOTIC.g, data_theta, X0, torch.zeros(201, 0))
    V = batched_cost(CHAOTIC, theta, X0, None, y, burn_in=101)
    assert V.item() == pytest.approx(script_loss.item(), rel=1e-10)
    off_by_one = batched_cost(CHAOTIC, theta, X0, None, y[:200], burn_in=100)
    assert abs(off_by_one.item() - script_loss.item()) > 1e-6


def test_bad_burn_in_raises_value_error_naming_it():
    y = chaotic_data(10)
    for bad in (-1, 10, 11, 2.0, True, None):
        with pytest.raises(ValueError, match="burn_in"):
            batched_cost(CHAOTIC, THETA_TRUE, X0, None, y, burn_in=bad)
    with pytest.raises(ValueError, match=r"burn_in must be an integer with 0 <= burn_in < N = 10"):
        landscape_1d(CHAOTIC, THETA_TRUE, [1.0], X0, None, y, burn_in=10)
    with pytest.raises(ValueError, match="burn_in"):
        landscape_2d(CHAOTIC, THETA_TRUE, THETA_TRUE, [1.0], [0.0], X0, None, y, burn_in=-3)


def test_a_nan_from_the_loss_raises_instead_of_returning_nan():
    y = chaotic_data(10)
    thetas = line(THETA_TRUE, torch.tensor([0.5, 1.0, 1.5]))

    def nan_for_large(y_hat, y_t):  # NaN only for the third parameter vector
        v = mse(y_hat, y_t)
        return torch.where(torch.arange(v.shape[0]) == 2, torch.full_like(v, math.nan), v)

    with pytest.raises(ValueError, match=r"loss is NaN for 1 of 3 parameter vector\(s\) "
                                         r"\(the first at batch index \(2,\)\)"):
        batched_cost(CHAOTIC, thetas, X0, None, y, loss=nan_for_large)
    with pytest.raises(ValueError, match="loss is NaN"):
        landscape_1d(CHAOTIC, THETA_TRUE, [1.0], X0, None, y,
                     loss=lambda a, b: mse(a, b) * math.nan)
    # a NaN at a step left out by the burn-in is never computed, so it cannot surface
    def nan_at_step_0(y_hat, y_t):
        return mse(y_hat, y_t) * (math.nan if torch.equal(y_t, y[0]) else 1.0)

    assert torch.isfinite(batched_cost(CHAOTIC, THETA_TRUE, X0, None, y, loss=nan_at_step_0,
                                       burn_in=1))
    with pytest.raises(ValueError, match="loss is NaN"):
        batched_cost(CHAOTIC, THETA_TRUE, X0, None, y, loss=nan_at_step_0)


def test_batched_cost_is_differentiable():
    y = chaotic_data(20)
    theta = (0.9 * THETA_TRUE).requires_grad_(True)
    (grad,) = torch.autograd.grad(batched_cost(CHAOTIC, theta, X0, None, y), theta)
    e = torch.zeros(16)
    e[5] = 1e-6
    fd = (batched_cost(CHAOTIC, 0.9 * THETA_TRUE + e, X0, None, y)
          - batched_cost(CHAOTIC, 0.9 * THETA_TRUE - e, X0, None, y)) / 2e-6
    assert grad[5].item() == pytest.approx(fd.item(), rel=1e-6, abs=1e-10)


def test_float32_runs_in_float32_and_agrees_on_short_sequences():
    y = chaotic_data(20)
    s = torch.linspace(0.5, 1.2, 7)
    V64 = landscape_1d(CHAOTIC, THETA_TRUE, s, X0, None, y)
    V32 = landscape_1d(CHAOTIC, THETA_TRUE.float(), s, X0, None, y)
    assert V32.dtype == torch.float32
    assert torch.allclose(V32.double(), V64, rtol=1e-3, atol=1e-6)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_matches_cpu():  # pragma: no cover - runs only where a GPU is present
    y = chaotic_data(30)
    s = torch.linspace(0.5, 1.2, 9)
    cpu = landscape_1d(CHAOTIC, THETA_TRUE, s, X0, None, y)
    gpu = landscape_1d(CHAOTIC, THETA_TRUE.cuda(), s, X0, None, y)
    assert gpu.device.type == "cuda"
    assert torch.allclose(gpu.cpu(), cpu, rtol=1e-9, atol=1e-12)


def test_line_and_plane_geometry():
    d1, d2, o = torch.randn(5), torch.randn(5), torch.randn(5)
    s = torch.tensor([-1.0, 0.0, 2.0])
    L = line(d1, s, origin=o)
    assert L.shape == (3, 5)
    assert torch.allclose(L[2], o + 2 * d1)
    assert torch.equal(line(d1, [0.0, 1.0])[1], d1)
    P = plane(d1, d2, s, [0.5, 1.0], origin=o)
    assert P.shape == (3, 2, 5)
    assert torch.allclose(P[0, 1], o - d1 + d2)
    assert torch.allclose(P[2, 0], o + 2 * d1 + 0.5 * d2)


def test_landscape_2d_equals_batched_cost_on_the_plane():
    y = chaotic_data(50)
    gen = torch.Generator().manual_seed(1)
    r = torch.randn(16, generator=gen)
    s1, s2 = torch.linspace(0.8, 1.2, 4), torch.linspace(-0.2, 0.2, 3)
    V = landscape_2d(CHAOTIC, THETA_TRUE, r, s1, s2, X0, None, y)
    assert V.shape == (4, 3)
    for i, j in itertools.product(range(4), range(3)):
        theta = s1[i] * THETA_TRUE + s2[j] * r
        assert V[i, j].item() == pytest.approx(batched_cost(CHAOTIC, theta, X0, None, y).item(),
                                               rel=1e-12, abs=1e-15)


def test_largest_lyapunov_matches_per_point_spectrum():
    # one θ at a stable fixed point (s = 0.5), one chaotic (s = 1), and a scalar θ
    s = torch.tensor([0.5, 1.0])
    thetas = line(THETA_TRUE, s)
    lam = landscape_lyapunov(CHAOTIC, thetas, X0, 150, n_transient=50)
    assert lam.shape == (2,)
    for k, tol in enumerate((1e-10, 1e-3)):  # the chaotic orbit amplifies rounding
        ref = lyapunov_spectrum(CHAOTIC.autonomous(thetas[k]), X0, 150, n_transient=50)[0]
        assert lam[k].item() == pytest.approx(ref.item(), abs=tol)
    assert lam[1] > 0.05 and lam[0] < -0.3  # chaos at θ_true, a stable fixed point at half
    several = landscape_lyapunov(CHAOTIC, thetas, torch.stack([X0, -X0]), 20)
    assert several.shape == (2, 2)
    single = landscape_lyapunov(CHAOTIC, thetas[0], X0, 150, n_transient=50)
    assert single.shape == () and single.item() == pytest.approx(lam[0].item(), abs=1e-10)


# ------------------------------------------------------------------ local minima
def brute_force_minima(v: torch.Tensor, include_boundary: bool, connectivity: str) -> int:
    count = 0
    for idx in itertools.product(*(range(n) for n in v.shape)):
        if not include_boundary and any(i in (0, n - 1) for i, n in zip(idx, v.shape)):
            continue
        ok = True
        for off in itertools.product((-1, 0, 1), repeat=v.dim()):
            nz = sum(o != 0 for o in off)
            if nz == 0 or (connectivity == "axes" and nz > 1):
                continue
            j = tuple(i + o for i, o in zip(idx, off))
            if all(0 <= a < n for a, n in zip(j, v.shape)) and not v[idx] < v[j]:
                ok = False
        count += ok
    return count


def test_local_minima_of_cosine():
    # cos(x) on [0, 6π] has minima at π, 3π, 5π: three, all interior.
    x = torch.linspace(0, 6 * math.pi, 601)
    assert count_local_minima(torch.cos(x)) == 3
    mask = local_minima(torch.cos(x))
    assert torch.allclose(x[mask], torch.tensor([1.0, 3.0, 5.0]) * math.pi, atol=0.05)
    # cos(x) + cos(y) on [0, 4π]^2: minima at (π, 3π) x (π, 3π), four.
    g = torch.linspace(0, 4 * math.pi, 201)
    X, Y = torch.meshgrid(g, g, indexing="ij")
    assert count_local_minima(torch.cos(X) + torch.cos(Y)) == 4


def test_local_minima_boundary_plateau_and_connectivity():
    x = torch.linspace(-1, 1, 21)
    assert count_local_minima(x**2) == 1
    assert count_local_minima(x) == 0  # the minimum sits on the edge
    assert count_local_minima(x, include_boundary=True) == 1
    assert count_local_minima(torch.zeros(5, 5)) == 0  # ties are not strict minima
    flat_bottom = torch.tensor([3.0, 1.0, 1.0, 3.0])
    assert count_local_minima(flat_bottom) == 0
    # a point beaten only by a diagonal neighbour: a minimum along the axes, not in full
    v = torch.full((3, 3), 5.0)
    v[1, 1] = 1.0
    v[0, 0] = 0.0
    assert count_local_minima(v, connectivity="axes") == 1
    assert count_local_minima(v) == 0
    assert count_local_minima(torch.tensor([2, 1, 2])) == 1  # integer grids too


@settings(max_examples=30, deadline=None)
@given(
    shape=st.lists(st.integers(1, 6), min_size=1, max_size=3),
    seed=st.integers(0, 2**16),
    include_boundary=st.booleans(),
    connectivity=st.sampled_from(["full", "axes"]),
)
def test_local_minima_agree_with_brute_force(shape, seed, include_boundary, connectivity):
    gen = torch.Generator().manual_seed(seed)
    v = torch.randint(0, 4, shape, generator=gen).double()  # small range: many ties
    got = count_local_minima(v, include_boundary=include_boundary, connectivity=connectivity)
    assert got == brute_force_minima(v, include_boundary, connectivity)


# ------------------------------------------------------------------ bad input
def test_bad_input_raises_value_error_naming_the_argument():
    y = chaotic_data(10)
    with pytest.raises(ValueError, match="s must hold at least one grid point"):
        line(THETA_TRUE, torch.tensor([]))
    with pytest.raises(ValueError, match="s1 must hold at least one grid point"):
        plane(THETA_TRUE, THETA_TRUE, [], [0.0])
    with pytest.raises(ValueError, match="s2 must hold at least one grid point"):
        landscape_2d(CHAOTIC, THETA_TRUE, THETA_TRUE, [1.0], [], X0, None, y)
    with pytest.raises(ValueError, match="s must be a 1-D grid"):
        line(THETA_TRUE, torch.zeros(2, 2))
    with pytest.raises(ValueError, match="s must be finite"):
        line(THETA_TRUE, [0.0, math.nan])
    with pytest.raises(ValueError, match=r"thetas must have shape \(\.\.\., 16\)"):
        batched_cost(CHAOTIC, torch.zeros(5, 15), X0, None, y)
    with pytest.raises(ValueError, match="thetas must hold at least one parameter vector"):
        batched_cost(CHAOTIC, torch.zeros(0, 16), X0, None, y)
    with pytest.raises(ValueError, match="thetas must be a floating-point"):
        batched_cost(CHAOTIC, torch.zeros(3, 16, dtype=torch.long), X0, None, y)
    bad = THETA_TRUE.clone()
    bad[3] = math.inf
    with pytest.raises(ValueError, match="thetas must be finite"):
        batched_cost(CHAOTIC, torch.stack([THETA_TRUE, bad]), X0, None, y)
    with pytest.raises(ValueError, match="thetas must be finite"):
        landscape_lyapunov(CHAOTIC, bad, X0, 10)
    with pytest.raises(ValueError, match="direction must be finite"):
        line(bad, [1.0])
    with pytest.raises(ValueError, match="direction2 must have 16 entries"):
        plane(THETA_TRUE, torch.zeros(15), [1.0], [1.0])
    with pytest.raises(ValueError, match="origin must have 16 entries"):
        line(THETA_TRUE, [1.0], origin=torch.zeros(3))
    with pytest.raises(ValueError, match=r"x0 must have shape \(\.\.\., 4\)"):
        batched_cost(CHAOTIC, THETA_TRUE, torch.zeros(3), None, y)
    with pytest.raises(ValueError, match="y must hold at least one time step"):
        batched_cost(CHAOTIC, THETA_TRUE, X0, None, torch.zeros(0, 2))
    with pytest.raises(ValueError, match="u and y must have the same number of steps"):
        batched_cost(CHAOTIC, THETA_TRUE, X0, torch.zeros(9, 0), y)
    with pytest.raises(ValueError, match="y must be finite"):
        batched_cost(CHAOTIC, THETA_TRUE, X0, None, torch.full((4, 2), math.nan))
    with pytest.raises(ValueError, match="do not broadcast"):
        batched_cost(CHAOTIC, torch.zeros(3, 16), torch.zeros(2, 4), None, y)
    with pytest.raises(ValueError, match="loss must be one of"):
        batched_cost(CHAOTIC, THETA_TRUE, X0, None, y, loss="hinge")
    with pytest.raises(ValueError, match="loss must map outputs"):
        batched_cost(CHAOTIC, torch.zeros(3, 16), X0, None, y, loss=lambda a, b: a - b)
    with pytest.raises(ValueError, match="values must be a non-empty grid"):
        count_local_minima(torch.zeros(0, 3))
    with pytest.raises(ValueError, match="values must be finite"):
        count_local_minima(torch.tensor([1.0, math.nan, 2.0]))
    with pytest.raises(ValueError, match="connectivity must be"):
        count_local_minima(torch.zeros(3), connectivity="diagonal")
    with pytest.raises(ValueError, match="x0 must have shape"):
        landscape_lyapunov(CHAOTIC, THETA_TRUE, torch.zeros(2, 2, 4), 10)
