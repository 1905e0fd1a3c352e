"""Exact Jacobians of a step map: lib.dynamics.jacobian against torch.func.

The claim in lib/dynamics.py: for the small maps of this book, the replicated-batch
reverse-mode Jacobian (one forward and one backward call per batch) is faster than
``vmap(jacrev(step))`` and ``vmap(jacfwd(step))``, whose per-call overhead dominates.
Both are compared on the same states in one run; the script prints medians of repeated
timings, the ratio, and the largest difference between the results.
"""

from __future__ import annotations

import statistics
import time

import torch
from torch.func import jacfwd, jacrev, vmap

from lib.dynamics import jacobian
from lib.models import LSTM, ElmanRNN

torch.set_default_dtype(torch.float64)


def median_time(fn, repeats: int = 7, inner: int = 20) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        for _ in range(inner):
            fn()
        times.append((time.perf_counter() - t0) / inner)
    return statistics.median(times)


def main() -> None:
    cases = {
        "Elman, 2 units": ElmanRNN(0, 2),
        "LSTM, 2 units (Nx = 4)": LSTM(0, 2, bias=False),
        "LSTM, 16 units (Nx = 32)": LSTM(0, 16),
    }
    print(f"{'map':26s} {'batch':>6s} {'lib (ms)':>9s} {'jacrev (ms)':>12s} "
          f"{'jacfwd (ms)':>12s} {'ratio rev':>10s} {'ratio fwd':>10s} {'max diff':>9s}")
    for name, model in cases.items():
        theta = model.init_theta(seed=0, scale=1.0)
        step = model.autonomous(theta)
        for batch in (1, 256):
            x = torch.randn(batch, model.nx, generator=torch.Generator().manual_seed(1))
            t_lib = median_time(lambda: jacobian(step, x))
            t_rev = median_time(lambda: vmap(jacrev(step))(x))
            t_fwd = median_time(lambda: vmap(jacfwd(step))(x))
            diff = (jacobian(step, x)[1] - vmap(jacrev(step))(x)).abs().max().item()
            print(f"{name:26s} {batch:6d} {1e3 * t_lib:9.3f} {1e3 * t_rev:12.3f} "
                  f"{1e3 * t_fwd:12.3f} {t_rev / t_lib:10.1f} {t_fwd / t_lib:10.1f} {diff:9.1e}")
            assert diff < 1e-12


if __name__ == "__main__":
    main()
