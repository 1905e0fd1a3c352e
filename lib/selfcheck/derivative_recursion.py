"""Self-checks for the exercises of the chapter "The derivative recursion".

Each check rebuilds the exercise's network and data (float64, the seeds the exercise
names) and compares the student's answer with what `lib.sensitivity` or autograd gives.
"""

from __future__ import annotations

from functools import lru_cache

import torch

from lib import sensitivity as sens
from lib.models import GRU, ElmanRNN
from lib.selfcheck import as_tensor, register

_DT = torch.float64


def _square_loss(y_hat, y):
    return ((y_hat - y) ** 2).sum()


@lru_cache(maxsize=1)
def _elman_problem():
    """The Elman network of the sections on S14 and S2, with its inputs and targets."""
    elman = ElmanRNN(input_size=2, hidden_size=4, output_size=2)
    theta = elman.init_theta(seed=2, scale=0.9)
    gen = torch.Generator().manual_seed(2)
    x0 = 0.5 * torch.randn(elman.nx, generator=gen, dtype=_DT)
    u = torch.randn(12, elman.nu, generator=gen, dtype=_DT)
    y = torch.randn(12, elman.ny, generator=gen, dtype=_DT)
    return elman, theta, x0, u, y




@register("ex-derivative-recursion-1",
          hint="Sigma_t = diag(1 - x_{t+1}^2) multiplies both A_t and B_t; vec W is row-major, "
               "so d(Wx)/d vec W = kron(I, x^T)",
          expects="a triple (A_3, B_3, F_3) of tensors, shapes (4, 4), (4, 38), (2, 38)")
def _elman_jacobians(answer) -> None:
    A, B, F = answer
    elman, theta, x0, u, _ = _elman_problem()
    jac = sens.jacobians(elman.f, elman.g, theta, x0, u)
    for name, mine, ref in (("A_3", A, jac.A[3]), ("B_3", B, jac.B[3]), ("F_3", F, jac.F[3])):
        mine = as_tensor(mine, ref.shape, name)
        err = (mine - ref).abs().max().item()
        assert err < 1e-10, f"{name} differs from the network's Jacobian by {err:.2e}"


@lru_cache(maxsize=1)
def _gru_gradient() -> torch.Tensor:
    gru = GRU(2, 4, 3)
    theta = gru.init_theta(seed=3, scale=0.9)
    gen = torch.Generator().manual_seed(3)
    u = torch.randn(15, 2, generator=gen, dtype=_DT)
    y = torch.randn(15, 3, generator=gen, dtype=_DT)
    return sens.cost_gradient(gru.f, gru.g, theta, torch.zeros(4, dtype=_DT), u, y,
                              _square_loss)


@register("ex-derivative-recursion-3",
          hint="run mu backwards from mu_N = 0; add B_t^T mu_{t+1} + F_t^T l'_t / N before "
               "updating mu to mu_t; V is the MEAN of the losses",
          expects="the gradient of V for the exercise's GRU, a tensor of shape (N_theta,)")
def _adjoint(answer) -> None:
    ref = _gru_gradient()
    mine = as_tensor(answer, ref.shape, "the gradient")
    err = (mine - ref).abs().max().item()
    assert err < 1e-10, (f"the gradient differs from cost_gradient by {err:.2e} "
                         f"(relative {err / ref.abs().max().item():.2e})")


@lru_cache(maxsize=1)
def _x0_gradient() -> torch.Tensor:
    elman, theta, x0, u, y = _elman_problem()
    return torch.func.grad(
        lambda x: sens.cost(elman.f, elman.g, theta, x, u, y, _square_loss))(x0)


@register("ex-derivative-recursion-7",
          hint="nu_N = 0, nu_t = A_t^T nu_{t+1} + C_t^T l'_t / N; the gradient is nu_0 "
               "(transposes, and the 1/N of the mean)",
          expects="the gradient of V with respect to x0, a tensor of shape (N_x,) = (4,)")
def _x0(answer) -> None:
    ref = _x0_gradient()
    mine = as_tensor(answer, ref.shape, "the gradient")
    err = (mine - ref).abs().max().item()
    assert err < 1e-10, f"the gradient differs from autograd's by {err:.2e}"
