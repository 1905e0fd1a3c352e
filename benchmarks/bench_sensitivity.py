"""The gradient of an RNN's cost two ways: forward sensitivities (eq. S1-S2) against BPTT.

``lib.sensitivity.cost_gradient`` runs the recursion S1 forwards and accumulates eq. S2
(real-time recurrent learning); ``lib.sensitivity.bptt_gradient`` differentiates the cost
backwards through time with autograd. Both return the same gradient (checked here). For
a growing sequence length N the script measures, in one run, the median wall time of
repeated calls and the peak bytes of tensors each method holds at once
(``lib.sensitivity.peak_tensor_memory``, which counts every tensor storage created during
the call, autograd's saved tensors included), and prints the ratios forward / BPTT.

Expected: the time of both grows linearly in N, the forward method's by a factor that
grows with Nθ; the memory of BPTT grows linearly in N, the forward method's does not.

Run: ``.venv/bin/python benchmarks/bench_sensitivity.py [--hidden 16] [--threads 1]``.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from lib import sensitivity as sens
from lib.models import ElmanRNN


def square_loss(y_hat: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return ((y_hat - y) ** 2).sum()


def median_time(fn, repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hidden", type=int, default=16, help="units of the Elman RNN")
    parser.add_argument("--lengths", type=int, nargs="+", default=[64, 256, 1024, 2048])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads (1 avoids synchronisation costs on tiny matrices)")
    parser.add_argument("--chunk-size", type=int, default=32)
    args = parser.parse_args()

    torch.set_default_dtype(torch.float64)
    torch.set_num_threads(args.threads)
    model = ElmanRNN(1, args.hidden, 1)
    theta = model.init_theta(seed=0)
    x0 = torch.zeros(model.nx)
    print(f"Elman RNN: Nx = {model.nx}, Ntheta = {model.n_params}, float64, "
          f"{args.threads} thread(s), chunk_size = {args.chunk_size}, "
          f"median of {args.repeats} timings")
    print(f"{'N':>6s} {'fwd (s)':>9s} {'BPTT (s)':>9s} {'time ratio':>11s} "
          f"{'fwd mem (KiB)':>14s} {'BPTT mem (KiB)':>15s} {'mem ratio':>10s} {'max diff':>9s}")
    rows = []
    for N in args.lengths:
        gen = torch.Generator().manual_seed(N)
        u = torch.randn(N, 1, generator=gen)
        y = torch.randn(N, 1, generator=gen)
        forward = lambda: sens.cost_gradient(model.f, model.g, theta, x0, u, y, square_loss,
                                             chunk_size=args.chunk_size)
        backward = lambda: sens.bptt_gradient(model.f, model.g, theta, x0, u, y, square_loss)
        g_fwd, m_fwd = sens.peak_tensor_memory(forward)
        g_bptt, m_bptt = sens.peak_tensor_memory(backward)
        diff = (g_fwd - g_bptt).abs().max().item()
        assert diff < 1e-10 * (1 + g_bptt.abs().max().item()), diff
        t_fwd = median_time(forward, args.repeats)
        t_bptt = median_time(backward, args.repeats)
        rows.append((N, t_fwd, t_bptt, m_fwd, m_bptt))
        print(f"{N:6d} {t_fwd:9.3f} {t_bptt:9.3f} {t_fwd / t_bptt:11.2f} "
              f"{m_fwd / 1024:14.1f} {m_bptt / 1024:15.1f} {m_fwd / m_bptt:10.2f} {diff:9.1e}",
              flush=True)
    (N0, tf0, tb0, mf0, mb0), (N1, tf1, tb1, mf1, mb1) = rows[0], rows[-1]
    print(f"from N = {N0} to N = {N1} (x{N1 / N0:.0f}): forward time x{tf1 / tf0:.1f}, "
          f"BPTT time x{tb1 / tb0:.1f}, forward memory x{mf1 / mf0:.2f}, BPTT memory x{mb1 / mb0:.1f}")
    per_step = (mb1 - mb0) / (N1 - N0)
    print(f"BPTT keeps {per_step:.0f} bytes per step; the forward method's {mf1 / 1024:.0f} KiB "
          f"equal BPTT's memory at N = {mf1 / per_step:.0f}")


if __name__ == "__main__":
    main()
