"""The language model's decoder at every step of a feedback orbit: packed once against not.

The claim in ``lib/_packed.py``: applying a V x H decoder to a few rows (one per orbit) at
every step, oneDNN's packed weight (``lib._packed.packed_linear``) is faster than
``torch.nn.functional.linear`` on the CPU in float32. Mid scale of the book (H = 256,
V = 5,000, 15 orbits), the paper's scale (H = 800, V = 33,278) and the LSTM's recurrent
matrix (4H x H). Both ways run on the same rows, interleaved, in one thread; the script
prints the medians in microseconds, the ratio linear / packed and the largest relative
difference of the outputs (float rounding).

Run: ``.venv/bin/python benchmarks/bench_packed_linear.py``.
"""

from __future__ import annotations

import statistics
import time

import torch

from lib._packed import packed_linear


def per_call(fn, x, inner: int) -> float:
    t0 = time.perf_counter()
    for _ in range(inner):
        fn(x)
    return (time.perf_counter() - t0) / inner * 1e6


def main() -> None:
    torch.set_num_threads(1)
    gen = torch.Generator().manual_seed(0)
    cases = [("decoder, mid scale", 5000, 256, 15, 200),
             ("decoder, paper scale", 33278, 800, 15, 20),
             ("LSTM recurrent matrix, mid scale", 1024, 256, 15, 1000)]
    for name, n_out, n_in, rows, inner in cases:
        w = torch.empty(n_out, n_in).uniform_(-0.1, 0.1, generator=gen)
        b = torch.empty(n_out).uniform_(-0.1, 0.1, generator=gen)
        x = torch.empty(rows, n_in).uniform_(-1, 1, generator=gen)
        packed = packed_linear(w, b)
        plain = packed_linear(w, b, pack=False)
        want = plain(x)
        diff = float(((packed(x) - want).abs().max() / want.abs().max()))
        a, p = [], []
        with torch.no_grad():
            for _ in range(7):  # interleaved, so that load changes hit both ways alike
                a.append(per_call(plain, x, inner))
                p.append(per_call(packed, x, inner))
        ma, mp = statistics.median(a), statistics.median(p)
        print(f"{name} ({rows} x {n_in} -> {n_out}), packed: {packed.packed}: linear "
              f"{ma:.0f} us, packed {mp:.0f} us, ratio linear / packed = {ma / mp:.2f}, "
              f"largest relative difference {diff:.1e}")


if __name__ == "__main__":
    main()
