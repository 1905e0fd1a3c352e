"""Tests of lib/lipschitz.py: S(t), the bound formulas of B.3-B.4, Lemma 2, the estimators."""

from __future__ import annotations

import math
from fractions import Fraction

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from lib import lipschitz as lip
from lib.dynamics import rollout
from lib.models import ElmanRNN, OrthogonalRNN

# float64 for every check of this module (fixture in tests/conftest.py)
pytestmark = pytest.mark.usefixtures("float64_default")


def S_exact(t: int, Lf: float) -> float:
    q = Fraction(Lf) ** 2
    return math.sqrt(sum(q ** l for l in range(t + 1)))


# ----------------------------------------------------------------------------- S(t)
@settings(max_examples=30, deadline=None)
@given(t=st.integers(0, 200), Lf=st.floats(0.05, 2.5))
def test_S_matches_the_sum(t, Lf):
    ref = S_exact(t, Lf)
    assert lip.S(t, Lf).item() == pytest.approx(ref, rel=1e-12)


@pytest.mark.parametrize("eps", [1e-15, 1e-12, 1e-9, 1e-6, -1e-12, -1e-9])
@pytest.mark.parametrize("t", [0, 1, 10, 100])
def test_S_near_one_has_no_cancellation(eps, t):
    Lf = 1.0 + eps
    assert lip.S(t, Lf).item() == pytest.approx(S_exact(t, Lf), rel=1e-13)


def test_S_at_one_and_limits():
    t = torch.arange(50)
    assert torch.allclose(lip.S(t, 1.0), torch.sqrt(t + 1.0), rtol=0, atol=1e-14)
    assert lip.S(10_000, 0.9).item() == pytest.approx(1 / math.sqrt(1 - 0.81), rel=1e-12)
    # Lf > 1: S(t) Lf^{-(t+1)} -> 1/sqrt(Lf^2 - 1), in log space far beyond float range
    ls = lip.log_S(100_000, 1.5)
    assert (ls - 100_001 * math.log(1.5)).exp().item() == pytest.approx(1 / math.sqrt(1.25), rel=1e-9)
    assert torch.isinf(lip.S(100_000, 1.5))


def test_S_is_vectorised():
    Lf = torch.tensor([[0.5], [1.0], [1.5]])
    t = torch.arange(7)
    out = lip.S(t, Lf)
    assert out.shape == (3, 7)
    for i in range(3):
        for j in range(7):
            assert out[i, j].item() == pytest.approx(S_exact(j, Lf[i, 0].item()), rel=1e-13)


@pytest.mark.parametrize("Lf", [0.0, -1.0, float("nan"), float("inf")])
def test_S_rejects_bad_Lf(Lf):
    with pytest.raises(ValueError, match="Lf"):
        lip.S(3, Lf)


@pytest.mark.parametrize("t", [-1, -0.5, float("nan"), float("inf")])
def test_S_rejects_bad_t(t):
    with pytest.raises(ValueError, match="t must"):
        lip.S(t, 0.9)


# ----------------------------------------------------------------------------- bounds, brute force
def brute(N, Lf, Lg, dLf, dLg, K0, K1, K2, K3, K4, Ly, M, Mpsi):
    """The formulas of B.3-B.4 summed literally (Python floats)."""
    S = [S_exact(j, Lf) for j in range(N + 1)]
    LV = Lg / N * sum((K0 + K1 * Ly + K2 * M(t)) * S[t] for t in range(1, N + 1))
    T = lambda t: dLg * Mpsi(t) + K4 * Lg ** 2
    P = lambda t, l: Lf ** (t - l) * (Lg * dLf * sum(S[l:t + 1]) + Lf * dLg * S[t])
    Q = lambda t, l: Lf ** (t - l) * (Mpsi(t) * Lg * dLf * sum(S[l:t + 1]) + Lf * T(t) * S[t])
    LJ = [sum(P(t, l) for l in range(1, t + 1)) + dLg * S[t] for t in range(1, N + 1)]
    LJy = [sum(Q(t, l) for l in range(1, t + 1)) + T(t) * S[t] for t in range(1, N + 1)]
    LVp = sum(K3 * Ly * LJ[t] + LJy[t] for t in range(N)) / N
    return LV, LJ, LJy, LVp, P, Q


@pytest.mark.parametrize("Lf", [0.7, 1.0, 1.3])
@pytest.mark.parametrize("N", [1, 2, 9])
def test_bounds_match_the_printed_sums(Lf, N):
    c = dict(Lg=1.3, dLf=0.7, dLg=1.1, K0=0.4, K1=2.0, K2=2.0, K3=2.0, K4=2.0, Ly=0.9)
    M = lambda t: 0.5 + 1.3 * S_exact(int(t), Lf)
    Mt = lambda tt: 0.5 + 1.3 * lip.S(tt, Lf)
    LV, LJ, LJy, LVp, P, Q = brute(N, Lf, c["Lg"], c["dLf"], c["dLg"], c["K0"], c["K1"], c["K2"],
                                   c["K3"], c["K4"], c["Ly"], M, lambda t: c["K4"] * M(t))
    got_LV = lip.L_V(N, Lf=Lf, Lg=c["Lg"], K0=c["K0"], K1=c["K1"], K2=c["K2"], Ly=c["Ly"], M=Mt)
    assert got_LV[-1].item() == pytest.approx(LV, rel=1e-12)
    kw = dict(Lf=Lf, Lg=c["Lg"], dLf=c["dLf"], dLg=c["dLg"])
    Pm = lip.P(N, **kw)
    Qm = lip.Q(N, **kw, K4=c["K4"], M=Mt)
    for t in range(1, N + 1):
        for l in range(1, N + 1):
            want_p = P(t, l) if l <= t else 0.0
            want_q = Q(t, l) if l <= t else 0.0
            assert Pm[t - 1, l - 1].item() == pytest.approx(want_p, rel=1e-12)
            assert Qm[t - 1, l - 1].item() == pytest.approx(want_q, rel=1e-12)
    assert torch.allclose(lip.L_J(N, **kw), torch.tensor(LJ), rtol=1e-12)
    assert torch.allclose(lip.L_Jyhat(N, **kw, K4=c["K4"], M=Mt), torch.tensor(LJy), rtol=1e-12)
    got = lip.L_V_prime(N, **kw, K3=c["K3"], K4=c["K4"], Ly=c["Ly"], M=Mt)
    assert got[-1].item() == pytest.approx(LVp, rel=1e-12)
    Tt = lip.T(torch.arange(1, N + 1), Lg=c["Lg"], dLg=c["dLg"], K4=c["K4"], M=Mt(torch.arange(1, N + 1.0)))
    assert torch.allclose(Tt, c["dLg"] * c["K4"] * Mt(torch.arange(1, N + 1.0)) + c["K4"] * c["Lg"] ** 2)


def test_L_J_fast_path_equals_matrix_rows_at_large_N():
    LF = torch.tensor([0.8, 1.0, 1.0 + 1e-9, 1.2])
    kw = dict(Lf=LF, Lg=1.3, dLf=0.7, dLg=1.1)
    N = 300
    t = torch.arange(1, N + 1.0)
    M = lambda tt: 0.5 + lip.S(tt, LF[:, None])
    lj = lip.L_J(N, **kw, log=True)
    rows = torch.logaddexp(torch.logsumexp(lip.P(N, **kw, log=True), -1),
                           math.log(1.1) + lip.log_S(t, LF[:, None]))
    assert torch.allclose(lj, rows, rtol=0, atol=1e-12)
    ljy = lip.L_Jyhat(N, **kw, K4=0.25, M=M, M_psi=1.0, log=True)
    T = 1.1 * 1.0 + 0.25 * 1.3 ** 2
    rows = torch.logaddexp(torch.logsumexp(lip.Q(N, **kw, K4=0.25, M=M, M_psi=1.0, log=True), -1),
                           math.log(T) + lip.log_S(t, LF[:, None]))
    assert torch.allclose(ljy, rows, rtol=0, atol=1e-12)


def test_bounds_batch_equals_single():
    LF = torch.tensor([0.6, 1.0, 1.4])
    batch = lip.L_V_prime(50, Lf=LF, Lg=1.0, dLf=1.0, dLg=1.0, K3=2.0, K4=2.0, Ly=1.0, M=1.0)
    for i, v in enumerate(LF.tolist()):
        single = lip.L_V_prime(50, Lf=v, Lg=1.0, dLf=1.0, dLg=1.0, K3=2.0, K4=2.0, Ly=1.0, M=1.0)
        assert torch.allclose(batch[i], single, rtol=1e-13)


def test_growth_rates_of_eq_6_and_7():
    N = 1000
    LF = torch.tensor([0.8, 1.0, 1.2])
    M = lambda t: 1.0 + lip.S(t, LF[:, None])
    lv = lip.L_V(N, Lf=LF, Lg=1.0, K1=2.0, K2=2.0, Ly=1.0, M=M, log=True)
    lvp = lip.L_V_prime(N, Lf=LF, Lg=1.0, dLf=1.0, dLg=1.0, K3=2.0, K4=2.0, Ly=1.0, M=M, log=True)
    Ns = torch.arange(1, N + 1.0)
    w = slice(499, None)
    assert abs(lip.fit_growth(Ns[w], lv[0, w], "power")) < 0.05
    assert abs(lip.fit_growth(Ns[w], lvp[0, w], "power")) < 0.05
    assert abs(lip.fit_growth(Ns[w], lv[1, w], "power") - 1) < 0.06
    assert abs(lip.fit_growth(Ns[w], lvp[1, w], "power") - 3) < 0.06
    assert abs(lip.fit_growth(Ns[w], lv[2, w], "exp") / math.log(1.2) - 2) < 0.02
    assert abs(lip.fit_growth(Ns[w], lvp[2, w], "exp") / math.log(1.2) - 3) < 0.02
    # overflow only in the linear scale
    assert torch.isfinite(lvp).all()
    assert torch.isinf(lip.L_V_prime(3000, Lf=1.5, Lg=1.0, dLf=1.0, dLg=1.0, K3=2.0, K4=2.0, Ly=1.0, M=1.0)[-1])


def test_fit_growth_exact():
    N = torch.arange(10, 200.0)
    assert lip.fit_growth(N, 2.5 * torch.log(N) + 3, "power").item() == pytest.approx(2.5)
    assert lip.fit_growth(N, 0.3 * N - 1, "exp").item() == pytest.approx(0.3)
    with pytest.raises(ValueError, match="kind"):
        lip.fit_growth(N, N, "linear")
    with pytest.raises(ValueError, match="log_values"):
        lip.fit_growth(N, N * float("nan"), "exp")


BAD = [
    ("N", dict(N=0)), ("N", dict(N=-3)), ("N", dict(N=2.5)), ("N", dict(N=True)),
    ("Lf", dict(Lf=0.0)), ("Lf", dict(Lf=-0.5)), ("Lf", dict(Lf=float("inf"))),
    ("Lg", dict(Lg=float("nan"))), ("Lg", dict(Lg=0.0)), ("dLf", dict(dLf=float("inf"))),
    ("dLg", dict(dLg=-1.0)), ("K3", dict(K3=float("nan"))), ("K4", dict(K4=float("inf"))),
    ("Ly", dict(Ly=-1.0)), ("M", dict(M=float("nan"))), ("M", dict(M=lambda t: t * float("nan"))),
    ("M", dict(M=lambda t: torch.ones(3))),
]


@pytest.mark.parametrize("name,override", BAD)
def test_bounds_reject_bad_input(name, override):
    kw = dict(N=5, Lf=0.9, Lg=1.0, dLf=1.0, dLg=1.0, K3=2.0, K4=2.0, Ly=1.0, M=1.0)
    kw.update(override)
    N = kw.pop("N")
    with pytest.raises(ValueError, match=name):
        lip.L_V_prime(N, **kw)


@pytest.mark.parametrize("name,override", [
    ("N", dict(N=-1)), ("Lf", dict(Lf=-1.0)), ("K1", dict(K1=float("inf"))),
    ("K0", dict(K0=float("nan"))), ("K2", dict(K2=-2.0)), ("M", dict(M=float("inf")))])
def test_L_V_rejects_bad_input(name, override):
    kw = dict(N=5, Lf=0.9, Lg=1.0, K1=2.0, K2=2.0, Ly=1.0, M=1.0)
    kw.update(override)
    N = kw.pop("N")
    with pytest.raises(ValueError, match=name):
        lip.L_V(N, **kw)


def test_output_bound_is_footnote_4():
    t = torch.arange(10)
    assert torch.allclose(lip.output_bound(t, 1.1, 2.0, 3.0, offset=0.5), 0.5 + 6.0 * lip.S(t, 1.1))
    with pytest.raises(ValueError, match="radius"):
        lip.output_bound(t, 1.1, 2.0, float("nan"))


# ----------------------------------------------------------------------------- Lemma 2
@pytest.mark.parametrize("loss", ["squared_error", "bce"])
@settings(max_examples=20, deadline=None)
@given(seed=st.integers(0, 2 ** 31 - 1), scale=st.floats(1e-6, 10.0), ny=st.integers(1, 4))
def test_lemma2_property1_corrected(loss, seed, scale, ny):
    g = torch.Generator().manual_seed(seed)
    K = lip.loss_constants(loss, ny)
    a = 3 * torch.randn(64, ny, generator=g)
    b = a + scale * torch.randn(64, ny, generator=g)
    y = torch.randn(64, ny, generator=g) if loss == "squared_error" else \
        torch.randint(0, 2, (64, ny), generator=g).double()
    y[:8] = 0.0
    l = lip.LOSSES[loss]
    lhs = (l(a, y) - l(b, y)).abs()
    rhs = (K.K0 + K.K1 * y.norm(dim=-1) + K.K2 * torch.maximum(a.norm(dim=-1), b.norm(dim=-1))) * (a - b).norm(dim=-1)
    # in 1-D the bound is tight up to |a - b|^2: allow for rounding of the loss difference
    assert torch.all(lhs <= rhs * (1 + 1e-9) + 1e-14 * (1 + l(a, y)))
    # property 2 against autograd
    ag = a.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(l(ag, y).sum(), ag)
    assert torch.allclose(grad, K.psi(a) - K.K3 * y, atol=1e-12)
    assert lip.max_ratio(K.psi, a, b) <= K.K4 * (1 + 1e-12)


@pytest.mark.parametrize("loss", ["squared_error", "bce"])
def test_lemma2_strict_fails_only_at_equal_arguments(loss):
    K = lip.loss_constants(loss, 2)
    a = torch.tensor([[0.3, -1.0]])
    y = torch.tensor([[1.0, 0.0]])
    l = lip.LOSSES[loss]
    assert (l(a, y) - l(a, y)).abs().item() == 0.0  # both sides are 0: "<" is false
    b = a + 1e-3
    rhs = (K.K0 + K.K1 * y.norm() + K.K2 * max(a.norm(), b.norm())) * (a - b).norm()
    assert (l(a, y) - l(b, y)).abs().item() < rhs.item()


def test_printed_property1_fails_for_bce_at_y_zero():
    # y = 0, z = 0, yhat = eps e1: lhs ~ eps/2, printed rhs = K2 eps^2 (K1 ||y|| = 0)
    for K2 in (1.0, 100.0, 1e4):
        eps = 1.0 / (4 * K2)
        lhs = lip.bce_with_logits(torch.tensor([eps, 0.0]), torch.zeros(2)) - lip.bce_with_logits(torch.zeros(2), torch.zeros(2))
        assert lhs.item() > K2 * eps * eps


def test_loss_constants_values_and_bad_input():
    se, ce = lip.loss_constants("squared_error", 3), lip.loss_constants("bce", 4)
    assert (se.K1, se.K2, se.K3, se.K4, se.K0) == (2.0, 2.0, 2.0, 2.0, 0.0)
    assert (ce.K0, ce.K1, ce.K2, ce.K3, ce.K4, ce.psi_bound) == (2.0, 0.0, 0.0, 1.0, 0.25, 2.0)
    with pytest.raises(ValueError, match="loss"):
        lip.loss_constants("hinge", 3)
    with pytest.raises(ValueError, match="ny"):
        lip.loss_constants("bce", 0)


# ----------------------------------------------------------------------------- Elman constants
def _elman_in_omega(n, rho, r, r_u, gamma, d_max, g):
    m = ElmanRNN(1, 3, 1, bias=False)
    mu = (r - rho * r) / r_u

    def ball(shape, radius):
        z = torch.randn(n, *shape, generator=g)
        nrm = torch.linalg.matrix_norm(z, ord=2) if len(shape) == 2 else z.norm(dim=-1)
        return z * (radius * torch.rand(n, generator=g) / nrm).reshape(n, *([1] * len(shape)))

    th = m.flatten({"W": ball((3, 3), rho), "U": ball((3, 1), mu), "C": ball((1, 3), gamma), "d": ball((1,), d_max)})
    return m, th, ball((3,), r)


def test_elman_constants_are_valid_on_omega():
    om = dict(rho=0.6, r=0.6, r_u=math.sqrt(0.28), gamma=1.0, d_max=0.5)
    c = lip.elman_constants(**om)
    assert c["Lf"] == pytest.approx(1.0)
    g = torch.Generator().manual_seed(0)
    m, th1, x1 = _elman_in_omega(500, **om, g=g)
    _, th2, x2 = _elman_in_omega(500, **om, g=g)
    u = om["r_u"] * (2 * torch.rand(500, 1, generator=g) - 1)
    lhs_f = (m.f(x1, u, th1) - m.f(x2, u, th2)).norm(dim=-1)
    lhs_g = (m.g(x1, u, th1) - m.g(x2, u, th2)).norm(dim=-1)
    d = torch.sqrt((x1 - x2).pow(2).sum(-1) + (th1 - th2).pow(2).sum(-1))
    assert torch.all(lhs_f <= c["Lf"] * d) and torch.all(lhs_g <= c["Lg"] * d)
    assert torch.all(m.f(x1, u, th1).norm(dim=-1) <= om["r"])  # invariance
    assert torch.all(m.g(x1, u, th1).norm(dim=-1) <= c["M"])
    with pytest.raises(ValueError, match="rho"):
        lip.elman_constants(rho=float("nan"), r=1.0, r_u=0.0, gamma=1.0, d_max=0.0)


# ----------------------------------------------------------------------------- estimators
def test_max_ratio_linear_map():
    g = torch.Generator().manual_seed(1)
    A = torch.randn(4, 3, generator=g)
    a = torch.randn(100, 3, generator=g)
    b = a + torch.randn(100, 3, generator=g)
    fun = lambda x: x @ A.T
    top = torch.linalg.svd(A).Vh[0]
    assert lip.max_ratio(fun, a, b) <= torch.linalg.matrix_norm(A, ord=2) * (1 + 1e-12)
    assert lip.max_ratio(fun, a, a + 1e-3 * top).item() == pytest.approx(torch.linalg.matrix_norm(A, ord=2).item())
    with pytest.raises(ValueError, match="differ"):
        lip.max_ratio(fun, a, a)
    with pytest.raises(ValueError, match="same shape"):
        lip.max_ratio(fun, a, b[:5])


def test_sample_pairs_distance_and_bad_input():
    a, b = lip.sample_pairs(torch.zeros(5), 7, spread=0.1, delta=1e-4, generator=torch.Generator().manual_seed(0))
    assert a.shape == b.shape == (7, 5)
    assert torch.allclose((a - b).norm(dim=-1), torch.full((7,), 1e-4))
    with pytest.raises(ValueError, match="delta"):
        lip.sample_pairs(torch.zeros(5), 7, spread=0.1, delta=0.0)
    with pytest.raises(ValueError, match="n_pairs"):
        lip.sample_pairs(torch.zeros(5), 0, spread=0.1, delta=1.0)


@pytest.mark.parametrize("model", [ElmanRNN(2, 3, 2), OrthogonalRNN(2, 3, 2)], ids=["elman", "ornn"])
@pytest.mark.parametrize("loss", ["squared_error", "bce"])
def test_cost_curves_match_autograd(model, loss):
    g = torch.Generator().manual_seed(2)
    N = 12
    params = torch.cat([model.init_theta(seed=3).expand(2, -1), 0.5 * torch.randn(2, model.nx, generator=g)], -1)
    params = params + 0.05 * torch.randn(params.shape, generator=g)
    u = torch.randn(N + 1, 2, generator=g)
    y = torch.randn(N, 2, generator=g) if loss == "squared_error" else torch.randint(0, 2, (N, 2), generator=g).double()
    V, G = lip.cost_curves(model, params, u, y, loss, grad=True)
    wrt = torch.tensor([0, 4, model.n_params - 1])
    _, Gw = lip.cost_curves(model, params, u, y, loss, grad=True, wrt=wrt)
    V0, none = lip.cost_curves(model, params, u, y, loss)
    assert none is None and torch.allclose(V0, V)
    for p in range(2):
        for n in (1, 5, N):
            th = params[p, :model.n_params].clone().requires_grad_(True)
            _, yh = rollout(model.f, model.g, th, params[p, model.n_params:], u[: n + 1])
            v = lip.LOSSES[loss](yh[1:], y[:n]).mean()
            (grad,) = torch.autograd.grad(v, th)
            assert V[p, n - 1].item() == pytest.approx(v.item(), rel=1e-12)
            assert torch.allclose(G[p, n - 1], grad, atol=1e-12)
            assert torch.allclose(Gw[p, n - 1], grad[wrt], atol=1e-12)


def test_output_jacobians_match_autograd():
    model = ElmanRNN(1, 3, 2)
    g = torch.Generator().manual_seed(4)
    params = torch.cat([model.init_theta(seed=1), torch.randn(3, generator=g)])[None]
    u = torch.randn(6, 1, generator=g)
    yh, J = lip.output_jacobians(model, params, u)
    th = params[0, :model.n_params]
    ref = torch.autograd.functional.jacobian(lambda t: rollout(model.f, model.g, t, params[0, model.n_params:], u)[1], th)
    assert torch.allclose(J[0], ref, atol=1e-12)
    assert torch.allclose(yh[0], rollout(model.f, model.g, th, params[0, model.n_params:], u)[1])


def test_empirical_lipschitz_below_bound_and_bad_input():
    om = dict(rho=0.5, r=0.5, r_u=0.2, gamma=1.0, d_max=0.5)
    c = lip.elman_constants(**om)
    g = torch.Generator().manual_seed(5)
    m, th1, x1 = _elman_in_omega(20, **om, g=g)
    _, th2, x2 = _elman_in_omega(20, **om, g=g)
    a = torch.cat([th1, x1], -1)
    b = a + 1e-2 * (torch.cat([th2, x2], -1) - a)
    N = 25
    u = om["r_u"] * (2 * torch.rand(N + 1, 1, generator=g) - 1)
    y = 2 * torch.rand(N, 1, generator=g) - 1
    est = lip.empirical_lipschitz(m, a, b, u, y)
    K = lip.loss_constants("squared_error", 1)
    Ly = y.norm(dim=-1).max()
    LV = lip.L_V(N, Lf=c["Lf"], Lg=c["Lg"], K1=K.K1, K2=K.K2, Ly=Ly, M=c["M"])
    LVp = lip.L_V_prime(N, Lf=c["Lf"], Lg=c["Lg"], dLf=c["dLf"], dLg=c["dLg"], K3=K.K3, K4=K.K4, Ly=Ly, M=c["M"])
    assert est.value.shape == est.gradient.shape == (N,)
    assert torch.all(est.value > 0) and torch.all(est.value <= LV) and torch.all(est.gradient <= LVp)
    no_grad = lip.empirical_lipschitz(m, a, b, u, y, grad=False)
    assert no_grad.gradient is None and torch.allclose(no_grad.value, est.value)
    with pytest.raises(ValueError, match="differ"):
        lip.empirical_lipschitz(m, a, a, u, y)
    with pytest.raises(ValueError, match="params"):
        lip.cost_curves(m, a[:, :-1], u, y)
    with pytest.raises(ValueError, match="y must"):
        lip.cost_curves(m, a, u, y[:-1])
    with pytest.raises(ValueError, match="loss"):
        lip.cost_curves(m, a, u, y, "hinge")
    with pytest.raises(ValueError, match="wrt"):
        lip.cost_curves(m, a, u, y, grad=True, wrt=torch.tensor([m.n_params]))
    with pytest.raises(ValueError, match="u"):
        lip.cost_curves(m, a, u * float("nan"), y)


def test_initial_state_gradients_match_reverse_mode_and_jacobian_products():
    g = torch.Generator().manual_seed(11)
    model = ElmanRNN(1, 3, 2)
    theta = model.init_theta(seed=4)
    x0 = torch.randn(5, 3, generator=g)
    N = 12
    u = torch.randn(N + 1, 1, generator=g)
    y = torch.randn(N, 2, generator=g)
    out = lip.initial_state_gradients(model, theta, x0, u, y)
    assert out.cost.shape == (5, N) and out.gradient.shape == (5, N, 3)
    assert out.jacobian.shape == (5, N, 3, 3)
    V, _ = lip.cost_curves(model, torch.cat([theta.expand(5, -1), x0], -1), u, y)
    assert torch.allclose(out.cost, V, atol=1e-14)
    for n in (1, 7, N):
        x = x0.clone().requires_grad_(True)
        _, yh = rollout(model.f, model.g, theta, x, u[: n + 1])
        (grad,) = torch.autograd.grad(lip.squared_error(yh[1:], y[:n, None]).mean(0).sum(), x)
        assert torch.allclose(out.gradient[:, n - 1], grad, atol=1e-12)
    # Φ_n = A_{n-1} ... A_0, from the one-step Jacobians
    from lib.dynamics import jacobian
    xs, _ = rollout(model.f, model.g, theta, x0, u)
    phi = torch.eye(3).expand(5, 3, 3)
    for t in range(N):
        _, A = jacobian(lambda z, t=t: model.f(z, u[t], theta), xs[t])
        phi = A @ phi
        assert torch.allclose(out.jacobian[:, t], phi, atol=1e-12)
    # the other route, lib.sensitivity's output Jacobians ∂ŷ_t/∂x0 = C_t Φ_t (reverse-mode
    # one-step Jacobians, chained): the chain rule of the docstring with l' = 2 (ŷ - y)
    from lib import sensitivity as S
    for p in range(x0.shape[0]):
        y_hat, K = S.initial_state_sensitivity(model.f, model.g, theta, x0[p], u)
        for n in (1, 7, N):
            grad = torch.einsum("tyx,ty->x", K[1 : n + 1], 2 * (y_hat[1 : n + 1] - y[:n])) / n
            assert torch.allclose(out.gradient[p, n - 1], grad, atol=1e-12)
            assert float(grad.abs().max()) > 1e-3  # not a trivial zero
    # per-sequence targets and the cross-entropy
    out_b = lip.initial_state_gradients(model, theta, x0, u, (y > 0).double()[:, None].expand(N, 5, 2),
                                        "bce")
    assert torch.isfinite(out_b.gradient).all()


def test_initial_state_gradients_bad_input():
    model = ElmanRNN(1, 3, 2)
    theta = model.init_theta(seed=4)
    x0 = torch.zeros(2, 3)
    u = torch.zeros(5, 1)
    y = torch.zeros(4, 2)
    for kwargs, match in ((dict(theta=theta[:-1]), "theta"), (dict(x0=x0[:, :2]), "x0"),
                          (dict(u=u[:1]), "u"), (dict(y=y[:3]), "y"),
                          (dict(x0=x0 * float("nan")), "x0"), (dict(loss="hinge"), "loss")):
        args = dict(model=model, theta=theta, x0=x0, u=u, y=y)
        args.update(kwargs)
        with pytest.raises(ValueError, match=match):
            lip.initial_state_gradients(**args)
