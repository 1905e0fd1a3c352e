"""Self-checks of the exercises of the chapter "Learning attractors: symbol classification".

The answers are small: a number of steps, and the stable fixed points of a two-unit map
whose fixed points are known in closed form, so the checks need none of the chapter's
trained networks.
"""

from __future__ import annotations

import math

import torch

from lib.selfcheck import as_number, register

__all__ = ["memory_horizon", "two_bit_memory_points"]


def memory_horizon(rho: float, lipschitz_g: float, radius: float, margin: float) -> float:
    """The largest ``T - t0`` for which a rho-contracting network can still separate two
    classes that differ in the first symbol: ``log(2 B L_g / m) / log(1 / rho)``."""
    return math.log(2 * radius * lipschitz_g / margin) / math.log(1 / rho)


def _tanh_root(gain: float) -> float:
    """The positive root of ``a = tanh(gain * a)`` (gain > 1), by Newton's method."""
    a = 1.0
    for _ in range(50):
        a -= (math.tanh(gain * a) - a) / (gain / math.cosh(gain * a) ** 2 - 1)
    return a


def two_bit_memory_points(gain: float = 2.0) -> torch.Tensor:
    """The four stable fixed points ``(±a, ±a)`` of ``x -> tanh(gain * x)`` on R^2."""
    a = _tanh_root(gain)
    return torch.tensor([[a, a], [a, -a], [-a, a], [-a, -a]], dtype=torch.float64)


@register(
    "ex-symbol-classification-2",
    hint="the two end states are at most 2B apart, so the outputs differ by at most "
         "2 B L_g rho^(T - t0); solve 2 B L_g rho^(T - t0) >= m for T - t0 (natural "
         "logarithms)",
    expects="a number: the largest T - t0 (in steps) for rho = 0.9, L_g = 5, B = 4, m = 1",
)
def _horizon(answer) -> None:
    value = as_number(answer, "the horizon")
    right = memory_horizon(0.9, 5.0, 4.0, 1.0)
    assert value > 0, f"got {value}: a horizon is a positive number of steps"
    assert abs(value - right) < 0.5, (
        f"got {value:.2f} steps; check the distance between the two states (at most 2B) and "
        "the direction of the inequality"
    )


@register(
    "ex-symbol-classification-5",
    hint="start lib.dynamics.fixed_points from a grid of states covering [-1.5, 1.5]^2 "
         "(torch.cartesian_prod), then keep fp.points[fp.stable]",
    expects="a float tensor of shape (M, 2): the stable fixed points of x -> tanh(2 x), "
            "in any order",
)
def _two_bits(answer) -> None:
    points = torch.as_tensor(answer).detach().to(torch.float64)
    assert points.dim() == 2 and points.shape[-1] == 2, \
        f"expected shape (M, 2), got {tuple(points.shape)}"
    assert torch.isfinite(points).all(), "the answer holds NaN or inf"
    assert points.shape[0] > 0, "the answer holds no points"
    right = two_bit_memory_points()
    step = torch.tanh(2 * points)
    assert (step - points).abs().max() < 1e-6, \
        "some rows are not fixed points: tanh(2 x) differs from x there"
    near = (points[:, None] - right[None]).abs().amax(-1)  # (M, 4)
    unstable = int((near.min(dim=1).values > 1e-6).sum())
    assert unstable == 0, (
        f"{unstable} of your points are fixed points but not stable ones (a coordinate at 0, "
        "where the slope 2 is above 1)"
    )
    missing = int((near.min(dim=0).values > 1e-6).sum())
    assert missing == 0, f"{missing} stable fixed points are missing: start from more states"
    assert points.shape[0] == right.shape[0], \
        f"got {points.shape[0]} rows for {right.shape[0]} distinct points: remove duplicates"
