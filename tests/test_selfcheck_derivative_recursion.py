"""Self-checks of the derivative-recursion chapter: right answers pass, wrong ones fail."""

import torch

from lib import sensitivity as sens
from lib.models import GRU, ElmanRNN
from lib.selfcheck import check


def square_loss(y_hat, y):
    return ((y_hat - y) ** 2).sum()


def test_selfcheck_derivative_recursion():
    # ex-1: the Jacobians of the Elman network at t = 3
    elman = ElmanRNN(2, 4, 2)
    theta = elman.init_theta(seed=2, scale=0.9)
    gen = torch.Generator().manual_seed(2)
    x0 = 0.5 * torch.randn(4, generator=gen, dtype=torch.float64)
    u = torch.randn(12, 2, generator=gen, dtype=torch.float64)
    y = torch.randn(12, 2, generator=gen, dtype=torch.float64)
    jac = sens.jacobians(elman.f, elman.g, theta, x0, u)
    assert check("ex-derivative-recursion-1", (jac.A[3], jac.B[3], jac.F[3]), quiet=True)
    W = elman.unflatten(theta)["W"]
    assert not check("ex-derivative-recursion-1", (W, jac.B[3], jac.F[3]), quiet=True)
    assert not check("ex-derivative-recursion-1", (jac.A[4], jac.B[4], jac.F[4]), quiet=True)
    assert not check("ex-derivative-recursion-1", (jac.A[3], jac.B[3][:, :16], jac.F[3]),
                     quiet=True)
    assert not check("ex-derivative-recursion-1", None, quiet=True)

    # ex-3: the adjoint gradient of the GRU
    gru = GRU(2, 4, 3)
    theta_g = gru.init_theta(seed=3, scale=0.9)
    gen = torch.Generator().manual_seed(3)
    u_g = torch.randn(15, 2, generator=gen, dtype=torch.float64)
    y_g = torch.randn(15, 3, generator=gen, dtype=torch.float64)
    grad = sens.cost_gradient(gru.f, gru.g, theta_g, torch.zeros(4, dtype=torch.float64),
                              u_g, y_g, square_loss)
    assert check("ex-derivative-recursion-3", grad, quiet=True)
    assert not check("ex-derivative-recursion-3", 15 * grad, quiet=True)     # sum, not mean
    assert not check("ex-derivative-recursion-3", -grad, quiet=True)
    assert not check("ex-derivative-recursion-3", grad[:-1], quiet=True)

    # ex-7: the gradient with respect to x0
    g_x0 = torch.func.grad(
        lambda x: sens.cost(elman.f, elman.g, theta, x, u, y, square_loss))(x0)
    assert check("ex-derivative-recursion-7", g_x0, quiet=True)
    assert not check("ex-derivative-recursion-7", 12 * g_x0, quiet=True)
    lp = torch.func.vmap(torch.func.grad(square_loss))(jac.y_hat, y)
    no_transpose = torch.zeros(4, dtype=torch.float64)
    for t in range(11, -1, -1):
        no_transpose = jac.A[t] @ no_transpose + jac.C[t].T @ lp[t] / 12
    assert not check("ex-derivative-recursion-7", no_transpose, quiet=True)
