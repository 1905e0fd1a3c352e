"""Batched loss landscape vs a Python loop over torch.nn.LSTM, on the chaotic LSTM.

The same 1-D slice V(s θ_true), s in [0, 1.5], 5000 points x 200 steps, float64, CPU:

* batched: ``lib.landscape.landscape_1d``, one rollout of all 5000 parameter vectors;
* loop: for each point, copy the weights into a ``torch.nn.LSTM`` and run it (the
  straightforward way). The loop is timed on a random subset of the points and its time
  per point extrapolated to the 5000 (the output says so); its values are compared with
  the batched ones on that subset.

Prints medians of repeated timings, the ratio and the largest difference. If a CUDA device
is present, also times a 1000 x 1000 plane (10^6 parameter vectors x 200 steps).

Both ways run with the same number of torch threads, 1 by default: every operation here is
tiny (tensors of a few thousand numbers), and on a shared 2-core machine the second intra-op
thread mostly waits to be scheduled, which slowed both ways several-fold in our runs
(``--threads 2`` to see it).

Usage: ``python benchmarks/bench_landscape.py [--subset 200] [--repeats 5] [--threads 1]``
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from torch import nn

from lib.dynamics import rollout
from lib.landscape import landscape_1d, landscape_2d
from lib.models import LSTM

THETA_TRUE = [-1, -4, -3, -2, -2, 6, 0, -6, -1, -6, 6, -9, 4, 1, -9, -7.0]
N_POINTS, N_STEPS = 5000, 200


def loop_costs(weights: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """One torch.nn.LSTM, its weights set point by point (zero input: one zero channel)."""
    lstm = nn.LSTM(1, 2, bias=False).double()
    h0 = torch.full((1, 1, 2), 0.5, dtype=torch.float64)
    inputs = torch.zeros(len(y) - 1, 1, 1, dtype=torch.float64)
    out_costs = []
    with torch.no_grad():
        lstm.weight_ih_l0.zero_()
        for w in weights:
            lstm.weight_hh_l0.copy_(w.reshape(8, 2))
            out, _ = lstm(inputs, (h0, h0))
            y_hat = torch.cat([h0[0], out[:, 0]])  # the book reads out h_0 .. h_{N-1}
            out_costs.append(((y_hat - y) ** 2).mean())
    return torch.stack(out_costs)


def median_time(fn, repeats: int) -> tuple[float, object]:
    times, result = [], None
    for _ in range(repeats):
        t0 = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subset", type=int, default=200, help="points timed in the loop")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1, help="torch threads for both ways")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    model = LSTM(0, 2, bias=False)
    theta_true = torch.tensor(THETA_TRUE, dtype=torch.float64)
    x0 = torch.full((4,), 0.5, dtype=torch.float64)
    _, y = rollout(model.f, model.g, theta_true, x0, torch.zeros(N_STEPS, 0, dtype=torch.float64))
    s = torch.linspace(0.0, 1.5, N_POINTS, dtype=torch.float64)

    with torch.no_grad():
        t_batched, V = median_time(lambda: landscape_1d(model, theta_true, s, x0, None, y),
                                   args.repeats)
    subset = torch.randperm(N_POINTS, generator=torch.Generator().manual_seed(0))[: args.subset]
    weights = s[subset, None] * theta_true
    t_loop, V_loop = median_time(lambda: loop_costs(weights, y), max(1, args.repeats // 2))
    per_point = t_loop / len(subset)
    t_loop_all = per_point * N_POINTS
    diff = (V[subset] - V_loop).abs().max().item()

    print(f"1-D slice V(s θ_true): {N_POINTS} points x {N_STEPS} steps, float64, CPU, "
          f"{torch.get_num_threads()} torch thread(s), torch {torch.__version__}")
    print(f"  batched (lib.landscape.landscape_1d, all {N_POINTS} points): "
          f"median {t_batched:.3f} s over {args.repeats} runs")
    print(f"  loop over torch.nn.LSTM: {per_point * 1e3:.2f} ms per point, median over "
          f"{max(1, args.repeats // 2)} runs of a random subset of {len(subset)} points;")
    print(f"    extrapolated to {N_POINTS} points: {t_loop_all:.1f} s")
    print(f"  ratio (loop / batched): {t_loop_all / t_batched:.1f}x")
    print(f"  largest |difference| on the {len(subset)} common points: {diff:.3e} "
          f"({'equal to 1e-12' if diff <= 1e-12 else 'NOT equal to 1e-12'})")

    if torch.cuda.is_available():  # pragma: no cover - only where a GPU is present
        dev = torch.device("cuda")
        s1 = torch.linspace(0.0, 1.5, 1000, device=dev)
        s2 = torch.linspace(-0.5, 0.5, 1000, device=dev)
        r = torch.randn(16, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
        for dtype in (torch.float32, torch.float64):
            th, rr = theta_true.to(dev, dtype), r.to(dev, dtype)

            def run():
                with torch.no_grad():
                    out = landscape_2d(model, th, rr, s1.to(dtype), s2.to(dtype), x0, None, y)
                torch.cuda.synchronize()
                return out

            run()  # warm-up
            t_gpu, P = median_time(run, 3)
            print(f"  CUDA ({torch.cuda.get_device_name()}), {dtype}: 1000 x 1000 plane "
                  f"(10^6 parameter vectors x {N_STEPS} steps): median {t_gpu:.3f} s; "
                  f"min cost {P.min().item():.3e}")


if __name__ == "__main__":
    main()
