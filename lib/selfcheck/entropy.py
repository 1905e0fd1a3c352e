"""Self-checks of the exercises of the chapter "Entropy and forgetting".

Each check recomputes its reference with ``lib`` from the exercise's stated seeds and
constants (the driven network's entropy, the Lyapunov exponents of the expansive network)
or from closed forms, so it needs no variable of the chapter.
"""

from __future__ import annotations

import math

import torch

from lib.dynamics import lyapunov_spectrum
from lib.entropy import entropy_change, gaussian_entropy
from lib.models import ElmanRNN
from lib.selfcheck import as_number, call_answer, register

__all__ = ["rotation", "driven_entropy_reference", "expansive_exponent_sum"]


def rotation(phi: float) -> torch.Tensor:
    """The 2 x 2 rotation by ``phi`` radians (float64)."""
    c, s = math.cos(phi), math.sin(phi)
    return torch.tensor([[c, -s], [s, c]], dtype=torch.float64)


def _cloud() -> tuple[torch.Tensor, float]:
    """The chapter's cloud: 2000 states N(0, 0.1^2 I) from seed 7, and its entropy H0."""
    sigma0 = 0.1
    x0 = sigma0 * torch.randn(2000, 2, generator=torch.Generator().manual_seed(7),
                              dtype=torch.float64)
    return x0, float(gaussian_entropy(sigma0 ** 2 * torch.eye(2, dtype=torch.float64)))


def driven_entropy_reference() -> list[float]:
    """Exact entropies H_0 .. H_30 of the cloud under tanh(0.8 R x + U u_t + b)."""
    x, H0 = _cloud()
    rnn = ElmanRNN(1, 2)
    theta = rnn.flatten({"W": 0.8 * rotation(1.0),
                         "U": torch.tensor([[0.5], [-0.3]], dtype=torch.float64),
                         "b": torch.tensor([0.1, -0.2], dtype=torch.float64)})
    u = torch.randn(30, 1, generator=torch.Generator().manual_seed(13), dtype=torch.float64)
    H = [H0]
    for t in range(30):
        step = lambda z, t=t: rnn.f(z, u[t], theta)
        H.append(H[-1] + float(entropy_change(step, x)))
        x = step(x)
    return H


def expansive_exponent_sum() -> float:
    """lambda_1 + lambda_2 of x -> tanh(1.25 R x) on its attracting invariant circle."""
    rnn = ElmanRNN(0, 2)
    theta = rnn.flatten({"W": 1.25 * rotation(1.0), "U": torch.zeros(2, 0, dtype=torch.float64),
                         "b": torch.zeros(2, dtype=torch.float64)})
    x0, _ = _cloud()
    return float(lyapunov_spectrum(rnn.autonomous(theta), x0[:2], 400, n_transient=100)
                 .mean(0).sum())






@register(
    "ex-entropy-1",
    hint="N_x log of the spectral norm (torch.linalg.matrix_norm(A, ord=2)) minus "
         "log|det A| (torch.linalg.slogdet(A).logabsdet), with N_x = A.shape[-1]",
    expects="a function slack(A) -> float for a square invertible matrix A",
)
def _slack(answer) -> None:
    g = torch.Generator().manual_seed(21)
    q, r = torch.linalg.qr(torch.randn(5, 5, generator=g, dtype=torch.float64))
    cases = [
        (3.0 * q, 0.0, "a scaled orthogonal 5 x 5 matrix"),
        (torch.diag(torch.tensor([2.0, 0.5], dtype=torch.float64)), 2 * math.log(2.0),
         "diag(2, 1/2)"),
        (torch.diag(torch.tensor([1.0, 1.0, 0.1], dtype=torch.float64)), -math.log(0.1),
         "diag(1, 1, 0.1)"),
    ]
    for A, want, name in cases:
        got = as_number(call_answer(answer, A))
        assert abs(got - want) < 1e-9 * max(1.0, abs(want)), \
            f"for {name} your slack is {got:.6g}, not {want:.6g}"


@register(
    "ex-entropy-2",
    hint="start from H0 and add entropy_change(step, x) of the driven step at every t "
         "before moving the cloud with x = step(x); the step uses u[t], W = 0.8 R1, U and b",
    expects="a list of 31 floats: H_0, H_1, ..., H_30",
)
def _driven(answer) -> None:
    values = [float(v) for v in answer]
    assert len(values) == 31, f"expected 31 entropies (H_0 .. H_30), got {len(values)}"
    want = driven_entropy_reference()
    assert abs(values[0] - want[0]) < 1e-9, f"H_0 is {values[0]:.4f}, not the cloud's H0"
    bound = [want[0] + t * 2 * math.log(0.8) for t in range(31)]
    over = [t for t in range(31) if values[t] > bound[t] + 1e-9]
    assert not over, f"H_t exceeds the corollary's bound at t = {over[:3]}"
    worst = max(abs(a - b) for a, b in zip(values, want))
    assert worst < 1e-6, \
        f"your entropies differ from the driven network's by up to {worst:.3g} nats"


@register(
    "ex-entropy-3",
    hint="lyapunov_spectrum(rnn_step(1.25), x0[:2], 200, n_transient=50) gives both "
         "exponents per start; average over the starts and add the two",
    expects="one number: lambda_1 + lambda_2 in nats per step",
)
def _exponent_sum(answer) -> None:
    value = as_number(answer)
    want = expansive_exponent_sum()
    assert abs(value - want) < 0.01, \
        f"{value:.4f} is not the sum of the two exponents on the attractor"


@register(
    "ex-entropy-5",
    hint="|x| has density 2 phi(y) on y > 0; write H(|x|) as an integral over y > 0",
    expects="one number: H(|x|) - H(x) in nats",
)
def _fold(answer) -> None:
    value = as_number(answer)
    assert abs(value - (-math.log(2))) < 1e-3, \
        f"{value:.4f} nats is not the entropy lost by folding the two half-lines"


@register(
    "ex-entropy-6",
    hint="by the many-steps corollary the volume shrinks at least by L_f^(N_x t); solve "
         "for the first integer t with L_f^(N_x t) <= 1e-6",
    expects="an int: the number of steps",
)
def _horizon(answer) -> None:
    assert isinstance(answer, int) and not isinstance(answer, bool), \
        f"expected an int, got {type(answer).__name__}"
    assert answer == 14, f"{answer} steps is not the first time the bound reaches 1e-6"
