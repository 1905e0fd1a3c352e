"""Tests of lib.sensitivity: the recursion S1, the gradient S2, the closed form S14, BPTT."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from lib import sensitivity as S
from lib.dynamics import rollout
from lib.models import GRU, LSTM, ElmanRNN, OrthogonalRNN

DT = torch.float64
MODELS = {
    "elman": lambda: ElmanRNN(2, 5, 3),
    "lstm": lambda: LSTM(2, 3, 2),
    "gru": lambda: GRU(2, 4, 3),
}


def problem(name: str, N: int, seed: int):
    """A model, random θ (larger than torch's default scale), x0 and inputs."""
    model = MODELS[name]()
    gen = torch.Generator().manual_seed(seed)
    theta = model.init_theta(seed=seed, scale=0.9)
    x0 = torch.randn(model.nx, generator=gen, dtype=DT) * 0.5
    u = torch.randn(N, model.nu, generator=gen, dtype=DT)
    return model, theta, x0, u


def square_loss(y_hat, y):
    return ((y_hat - y) ** 2).sum()


def central_differences(fn, p: torch.Tensor, h: float) -> torch.Tensor:
    """∂fn/∂p by central differences, all directions in one batched call.

    ``fn`` maps a batch of P points ``(P, P)`` to outputs ``(N, P, ...)`` (time first, as
    :func:`lib.dynamics.rollout`); returns ``(N, ..., P)``.
    """
    E = torch.eye(p.shape[0], dtype=p.dtype) * h
    plus, minus = fn(p + E), fn(p - E)  # (*out, P, ...) with the batch after time
    return ((plus - minus) / (2 * h)).movedim(1, -1)


# --------------------------------------------------------------------------- S1 vs autograd
@pytest.mark.parametrize("name", sorted(MODELS))
@pytest.mark.parametrize("N,seed", [(1, 0), (4, 1), (17, 2)])
def test_recursion_equals_bptt(name, N, seed):
    model, theta, x0, u = problem(name, N, seed)
    y_hat, J = S.forward_sensitivity(model.f, model.g, theta, x0, u, chunk_size=5)
    y_b, J_b = S.bptt_jacobian(model.f, model.g, theta, x0, u)
    assert y_hat.shape == (N, model.ny)
    assert J.shape == (N, model.ny, model.n_params)
    torch.testing.assert_close(y_hat, rollout(model.f, model.g, theta, x0, u)[1], rtol=0, atol=1e-12)
    torch.testing.assert_close(J, J_b, rtol=0, atol=1e-10)
    # x_0 does not depend on θ: J_0 = F_0 = ∂g/∂θ at (x_0, u_0)
    F0 = torch.func.jacrev(model.g, argnums=2)(x0, u[0], theta)
    torch.testing.assert_close(J[0], F0, rtol=0, atol=1e-12)


@pytest.mark.parametrize("name", sorted(MODELS))
def test_recursion_and_bptt_equal_central_differences(name):
    model, theta, x0, u = problem(name, 8, 3)
    _, J = S.forward_sensitivity(model.f, model.g, theta, x0, u)
    _, J_b = S.bptt_jacobian(model.f, model.g, theta, x0, u)
    J_fd = central_differences(lambda th: rollout(model.f, model.g, th, x0.expand(th.shape[0], -1), u)[1], theta, 1e-5)
    # central differences: error O(h²) + O(eps/h), about 1e-9 here
    torch.testing.assert_close(J, J_fd, rtol=0, atol=1e-7)
    torch.testing.assert_close(J_b, J_fd, rtol=0, atol=1e-7)
    # and the check can fail: a perturbed Jacobian is caught
    assert not torch.allclose(J + 1e-5, J_fd, rtol=0, atol=1e-7)


@pytest.mark.parametrize("chunk", [1, 3, 100])
def test_chunk_size_does_not_change_the_result(chunk):
    model, theta, x0, u = problem("lstm", 10, 4)
    ref = S.forward_sensitivity(model.f, model.g, theta, x0, u, chunk_size=10)
    out = S.forward_sensitivity(model.f, model.g, theta, x0, u, chunk_size=chunk)
    torch.testing.assert_close(out[0], ref[0], rtol=0, atol=1e-13)
    torch.testing.assert_close(out[1], ref[1], rtol=0, atol=1e-13)


def test_sensitivities_are_consistent():
    model, theta, x0, u = problem("gru", 9, 5)
    sens = S.sensitivities(model.f, model.g, theta, x0, u, chunk_size=4)
    N, nx, ny, P = 9, model.nx, model.ny, model.n_params
    assert sens.x.shape == (N + 1, nx) and sens.D.shape == (N + 1, nx, P)
    assert sens.Phi.shape == (N + 1, nx, nx) and sens.K.shape == (N, ny, nx)
    assert torch.count_nonzero(sens.D[0]) == 0
    torch.testing.assert_close(sens.Phi[0], torch.eye(nx, dtype=DT))
    xs, ys = rollout(model.f, model.g, theta, x0, u)
    torch.testing.assert_close(sens.x, xs, rtol=0, atol=1e-12)
    torch.testing.assert_close(sens.y_hat, ys, rtol=0, atol=1e-12)
    D_ad = torch.func.jacrev(lambda th: rollout(model.f, model.g, th, x0, u)[0])(theta)
    torch.testing.assert_close(sens.D, D_ad, rtol=0, atol=1e-10)
    torch.testing.assert_close(S.state_sensitivity(model.f, model.g, theta, x0, u), sens.D,
                               rtol=0, atol=1e-13)
    _, J = S.forward_sensitivity(model.f, model.g, theta, x0, u)
    torch.testing.assert_close(sens.J, J, rtol=0, atol=1e-13)
    jac = S.jacobians(model.f, model.g, theta, x0, u)
    for name in ("A", "B", "C", "F"):
        torch.testing.assert_close(getattr(sens, name), getattr(jac, name), rtol=0, atol=1e-13)


@pytest.mark.parametrize("name", sorted(MODELS))
def test_initial_state_sensitivity(name):
    model, theta, x0, u = problem(name, 7, 6)
    y_hat, K = S.initial_state_sensitivity(model.f, model.g, theta, x0, u)
    assert K.shape == (7, model.ny, model.nx)
    outputs = lambda x: rollout(model.f, model.g, theta, x, u)[1]
    torch.testing.assert_close(K, torch.func.jacrev(outputs)(x0), rtol=0, atol=1e-10)
    torch.testing.assert_close(K, central_differences(outputs, x0, 1e-5), rtol=0, atol=1e-7)
    torch.testing.assert_close(K, S.sensitivities(model.f, model.g, theta, x0, u).K,
                               rtol=0, atol=1e-13)


# --------------------------------------------------------------------------- S14
@pytest.mark.parametrize("name", sorted(MODELS))
def test_closed_form_corrected_agrees_printed_does_not(name):
    model, theta, x0, u = problem(name, 12, 7)
    jac = S.jacobians(model.f, model.g, theta, x0, u)
    sens = S.sensitivities(model.f, model.g, theta, x0, u)
    J_closed = S.closed_form(jac.A, jac.B, jac.C, jac.F)
    J_printed = S.closed_form_printed(jac.A, jac.B, jac.C, jac.F)
    torch.testing.assert_close(J_closed, sens.J, rtol=0, atol=1e-12)
    # the printed S14 disagrees with S1 from t = 1 on (at t = 0 both are F_0) ...
    torch.testing.assert_close(J_printed[0], sens.J[0], rtol=0, atol=1e-14)
    gap = (J_printed[1:] - sens.J[1:]).flatten(1).norm(dim=1)
    assert bool((gap > 1e-3 * sens.J[1:].flatten(1).norm(dim=1)).all())
    # ... because it is C_t (D_{t+1} - A_t ⋯ A_1 B_0) + F_t
    for t in range(12):
        P = torch.eye(model.nx, dtype=DT)
        for k in range(t, 0, -1):
            P = P @ jac.A[k]
        expected = jac.C[t] @ (sens.D[t + 1] - P @ jac.B[0]) + jac.F[t]
        torch.testing.assert_close(J_printed[t], expected, rtol=0, atol=1e-12)


def recursion(A, B, C, F):
    D = torch.zeros_like(B[0])
    out = []
    for t in range(A.shape[0]):
        out.append(C[t] @ D + F[t])
        D = A[t] @ D + B[t]
    return torch.stack(out)


@settings(max_examples=25, deadline=None)
@given(N=st.integers(1, 8), nx=st.integers(1, 4), ny=st.integers(1, 3), p=st.integers(1, 5),
       seed=st.integers(0, 2**31 - 1))
def test_closed_form_property(N, nx, ny, p, seed):
    gen = torch.Generator().manual_seed(seed)
    A = torch.randn(N + 1, nx, nx, generator=gen, dtype=DT)
    B = torch.randn(N + 1, nx, p, generator=gen, dtype=DT)
    C = torch.randn(N, ny, nx, generator=gen, dtype=DT)
    F = torch.randn(N, ny, p, generator=gen, dtype=DT)
    ref = recursion(A[:N], B[:N], C, F)
    scale = 1 + ref.abs().max()
    torch.testing.assert_close(S.closed_form(A[:N], B[:N], C, F), ref, rtol=0, atol=1e-11 * scale)
    # The printed S14 is the right formula for Jacobians indexed by the step they *produce*
    # (A'_t = A_{t-1}, B'_t = B_{t-1}, i.e. D_t = A'_t D_{t-1} + B'_t); A'_0, B'_0 are unused.
    A_sh = torch.cat([A[-1:], A[: N - 1]])
    B_sh = torch.cat([B[-1:], B[: N - 1]])
    shifted = S.closed_form_printed(A_sh, B_sh, C, F)
    torch.testing.assert_close(shifted, ref, rtol=0, atol=1e-11 * scale)


# --------------------------------------------------------------------------- S2
@pytest.mark.parametrize("name", sorted(MODELS))
def test_cost_gradient_equals_bptt_and_S2(name):
    model, theta, x0, u = problem(name, 11, 8)
    y = torch.randn(11, model.ny, dtype=DT, generator=torch.Generator().manual_seed(9))
    g_fwd = S.cost_gradient(model.f, model.g, theta, x0, u, y, square_loss, chunk_size=4)
    g_bptt = S.bptt_gradient(model.f, model.g, theta, x0, u, y, square_loss)
    assert g_fwd.shape == g_bptt.shape == (model.n_params,)
    torch.testing.assert_close(g_fwd, g_bptt, rtol=0, atol=1e-10)
    # S2 with the transpose: (1/N) Σ_t J_tᵀ l'(ŷ_t, y_t), l' = 2 (ŷ - y)
    y_hat, J = S.forward_sensitivity(model.f, model.g, theta, x0, u)
    lprime = 2 * (y_hat - y)
    s2 = sum(J[t].T @ lprime[t] for t in range(11)) / 11
    torch.testing.assert_close(s2, g_bptt, rtol=0, atol=1e-10)
    # S2 as printed, J_t l', does not even have matching shapes (Ny != Nθ)
    with pytest.raises(RuntimeError):
        J[0] @ lprime[0]
    # the cost and its gradient by central differences
    V = lambda th: S.cost(model.f, model.g, th, x0, u, y, square_loss)
    h = 1e-5
    E = torch.eye(model.n_params, dtype=DT) * h
    fd = torch.stack([(V(theta + e) - V(theta - e)) / (2 * h) for e in E[:: max(1, model.n_params // 12)]])
    torch.testing.assert_close(g_fwd[:: max(1, model.n_params // 12)], fd, rtol=0, atol=1e-7)


def test_cost_gradient_with_cross_entropy():
    model, theta, x0, u = problem("elman", 6, 10)
    y = torch.tensor([0, 2, 1, 1, 0, 2])
    loss = lambda y_hat, c: torch.nn.functional.cross_entropy(y_hat, c)
    torch.testing.assert_close(S.cost_gradient(model.f, model.g, theta, x0, u, y, loss),
                               S.bptt_gradient(model.f, model.g, theta, x0, u, y, loss),
                               rtol=0, atol=1e-10)


def test_orthogonal_rnn():
    model = OrthogonalRNN(1, 3, 2)
    theta = model.init_theta(seed=1)
    x0 = torch.tensor([0.3, -0.2, 0.5], dtype=DT)
    u = torch.randn(5, 1, dtype=DT, generator=torch.Generator().manual_seed(1))
    _, J = S.forward_sensitivity(model.f, model.g, theta, x0, u)
    J_fd = central_differences(lambda th: rollout(model.f, model.g, th, x0.expand(th.shape[0], -1), u)[1], theta, 1e-5)
    torch.testing.assert_close(J, J_fd, rtol=0, atol=1e-7)


# --------------------------------------------------------------------------- bad input
def test_bad_input_raises_value_error_naming_the_argument():
    model, theta, x0, u = problem("elman", 4, 0)
    f, g = model.f, model.g
    y = torch.zeros(4, model.ny, dtype=DT)
    cases = [
        ("x0", lambda: S.forward_sensitivity(f, g, theta, x0[None], u)),
        ("x0", lambda: S.forward_sensitivity(f, g, theta, x0[:-1], u)),  # model's own check
        ("u", lambda: S.forward_sensitivity(f, g, theta, x0, u[0])),
        ("u", lambda: S.forward_sensitivity(f, g, theta, x0, u[:0])),  # N = 0
        ("u", lambda: S.forward_sensitivity(f, g, theta, x0, torch.zeros(4, 3, dtype=DT))),
        ("theta", lambda: S.forward_sensitivity(f, g, theta[None], x0, u)),
        ("theta", lambda: S.forward_sensitivity(f, g, theta.float(), x0, u)),
        ("theta", lambda: S.forward_sensitivity(f, g, theta * float("nan"), x0, u)),
        ("x0", lambda: S.forward_sensitivity(f, g, theta, x0.float(), u)),
        ("f", lambda: S.forward_sensitivity(lambda x, v, th: f(x, v, th)[:-1], g, theta, x0, u)),
        ("g", lambda: S.forward_sensitivity(f, lambda x, v, th: g(x, v, th)[None], theta, x0, u)),
        ("chunk_size", lambda: S.forward_sensitivity(f, g, theta, x0, u, chunk_size=0)),
        ("x0", lambda: S.initial_state_sensitivity(f, g, theta, x0[None], u)),
        ("u", lambda: S.state_sensitivity(f, g, theta, x0, u[:0])),
        ("theta", lambda: S.sensitivities(f, g, theta[None], x0, u)),
        ("u", lambda: S.jacobians(f, g, theta, x0, u[:0])),
        ("y", lambda: S.cost_gradient(f, g, theta, x0, u, y[:3], square_loss)),
        ("loss", lambda: S.cost_gradient(f, g, theta, x0, u, y, lambda a, b: (a - b) ** 2)),
        ("y", lambda: S.bptt_gradient(f, g, theta, x0, u, y[:3], square_loss)),
        ("x0", lambda: S.bptt_jacobian(f, g, theta, x0[None], u)),
        ("u", lambda: S.cost(f, g, theta, x0, u[:0], y, square_loss)),
        ("B", lambda: S.closed_form(torch.zeros(3, 2, 2), torch.zeros(2, 2, 4),
                                    torch.zeros(3, 1, 2), torch.zeros(3, 1, 4))),
        ("A", lambda: S.closed_form_printed(torch.zeros(3, 2), torch.zeros(3, 2, 4),
                                            torch.zeros(3, 1, 2), torch.zeros(3, 1, 4))),
        ("A", lambda: S.closed_form(torch.zeros(0, 2, 2), torch.zeros(0, 2, 4),
                                    torch.zeros(0, 1, 2), torch.zeros(0, 1, 4))),
        ("fn", lambda: S.peak_tensor_memory(3)),
    ]
    for name, call in cases:
        with pytest.raises(ValueError, match=rf"\b{name}\b"):
            call()


def test_peak_tensor_memory():
    n = 1000
    value, peak = S.peak_tensor_memory(lambda: [torch.ones(n, dtype=DT) for _ in range(3)])
    assert len(value) == 3 and peak == 3 * 8 * n
    # freed tensors do not count twice; views are free
    _, peak = S.peak_tensor_memory(lambda: [torch.ones(n, dtype=DT)[:10].sum() for _ in range(3)])
    assert 8 * n <= peak <= 8 * n + 64
    # BPTT keeps every step: its memory grows with N; the forward recursion's does not
    model = ElmanRNN(1, 4, 1)
    theta = model.init_theta(seed=0)
    mems = {}
    for N in (40, 160):
        u = torch.zeros(N, 1, dtype=DT)
        y = torch.zeros(N, 1, dtype=DT)
        x0 = torch.zeros(4, dtype=DT)
        mems[N] = (
            S.peak_tensor_memory(lambda: S.cost_gradient(model.f, model.g, theta, x0, u, y, square_loss, chunk_size=8))[1],
            S.peak_tensor_memory(lambda: S.bptt_gradient(model.f, model.g, theta, x0, u, y, square_loss))[1],
        )
    assert mems[160][0] <= 1.05 * mems[40][0]
    assert mems[160][1] > 3 * mems[40][1]


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda():
    model, theta, x0, u = problem("lstm", 6, 11)
    dev = torch.device("cuda")
    y_hat, J = S.forward_sensitivity(model.f, model.g, theta.to(dev), x0.to(dev), u.to(dev))
    assert J.device.type == "cuda"
    torch.testing.assert_close(J.cpu(), S.forward_sensitivity(model.f, model.g, theta, x0, u)[1],
                               rtol=0, atol=1e-10)
