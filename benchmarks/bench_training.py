"""Benchmark of lib.training at the reference configuration of symbol classification.

Two comparisons, each in one run, medians of repeated timings:

1. one epoch of :func:`lib.training.train` without recording, and the per-epoch orbit
   recording (6 constant inputs x 10 initial states x 800 steps, one batched sequence, a
   separate initial state per orbit as the authors draw them) on top of it: the ratio
   (epoch + recording) / epoch (target: at most 1.05 at the paper's scale), and with the
   book's λ_1 (2 initial states per input, 400 steps of the QR method) added;
   (also with denormal floats flushed to zero: the vanishing gradients of length-200
   sequences are denormal on CPU and slow the epoch several-fold, which flatters the ratio);
2. one epoch of the lib loop against a plain ``torch.nn.LSTM`` loop written the obvious
   way (same data, batch size, initial weights, Adam, gradient clipping; denormals flushed):
   the ratio lib / plain.

Times are CPU seconds of one thread (see :func:`median_time`).
Run: ``.venv/bin/python benchmarks/bench_training.py`` (add ``--quick`` for a smaller
problem: 300 sequences of length 100).
"""

from __future__ import annotations

import statistics
import sys
import time

import torch
from torch import nn

from lib.models import SequenceClassifier, make_rnn
from lib.tasks import symbol_classification
from lib.training import Batches, accuracy, lyapunov_sampler, orbit_sampler, train

QUICK = "--quick" in sys.argv
N, T, BATCH, HIDDEN, REPEATS = (300, 100, 100, 50, 3) if QUICK else (1000, 200, 100, 50, 3)
WINDOWS = ((9, 19), (39, 49))


def median_time(fn, repeats=REPEATS):
    """Median CPU time (``time.process_time``) of ``fn()``: with one torch thread this is the
    compute time, and unlike wall time it barely moves when other jobs share the machine."""
    times = []
    for _ in range(repeats):
        t0 = time.process_time()
        fn()
        times.append(time.process_time() - t0)
    return statistics.median(times)


def lib_epoch(model, u, y, recorders=()):
    train(model, nn.CrossEntropyLoss(), Batches(u, y, BATCH), epochs=1, lr=1e-3, clip=0.25,
          metrics={"accuracy": accuracy}, recorders=list(recorders), progress=False)


def plain_epoch(lstm, linear, opt, u, y):
    perm = torch.randperm(u.shape[1])
    for start in range(0, u.shape[1], BATCH):
        idx = perm[start:start + BATCH]
        opt.zero_grad()
        out, _ = lstm(u[:, idx])
        loss = nn.functional.cross_entropy(linear(out[-1]), y[idx])
        loss.backward()
        nn.utils.clip_grad_norm_(list(lstm.parameters()) + list(linear.parameters()), 0.25)
        opt.step()


def main() -> None:
    # One thread: these small recurrent models gain little from intra-op parallelism, and
    # on a shared machine extra threads mostly wait for each other.
    torch.set_num_threads(1)
    torch.manual_seed(0)
    u, y = symbol_classification(N, T, windows=WINDOWS, seed=0)
    print(f"symbol classification: {N} sequences of length {T}, batch {BATCH}, hidden {HIDDEN}, "
          f"{torch.get_num_threads()} thread(s); CPU seconds, medians of {REPEATS} runs")
    # the authors' recording (a separate initial state per (input, sequence) pair), and the
    # book's addition, lambda_1 from 2 initial states per input (lib.experiments' defaults)
    sampler = orbit_sampler(torch.eye(6), n_init=10, std=100.0, n_steps=800, n_transient=400,
                            shared_init=False)
    lyapunov = lyapunov_sampler(torch.eye(6), n_init=2, n_steps=200, n_transient=200)
    # length T (the reference) and T // 2 (Supplementary Figures 3-4 use length 100): the
    # recording costs the same, the epoch half as much or less
    for name, length, flush in (("lstm", T, False), ("lstm", T // 2, False), ("ornn", T, False),
                                ("lstm", T, True)):
        torch.set_flush_denormal(flush)
        uu, yy = symbol_classification(N, length, windows=WINDOWS, seed=0)
        model = SequenceClassifier(make_rnn(name, 6, HIDDEN), 4)
        lib_epoch(model, uu, yy)  # warm-up
        epoch = median_time(lambda: lib_epoch(model, uu, yy), repeats=1)
        record = median_time(lambda: sampler(model))
        lam = median_time(lambda: lyapunov(model))
        tag = ", denormals flushed" if flush else ""
        print(f"[{name}, length {length}{tag}] epoch {epoch:.3f} s, orbit recording {record:.3f} s, "
              f"ratio (epoch + recording) / epoch = {(epoch + record) / epoch:.3f}; "
              f"with lambda_1 ({lam:.3f} s) {(epoch + record + lam) / epoch:.3f}")

    # Denormals flushed and the same initial weights: how many denormals a backward pass meets
    # depends on the weights, and with them the comparison would measure the weights.
    torch.set_flush_denormal(True)
    lstm, linear = nn.LSTM(6, HIDDEN), nn.Linear(HIDDEN, 4)
    opt = torch.optim.Adam(list(lstm.parameters()) + list(linear.parameters()), lr=1e-3)
    model = SequenceClassifier(make_rnn("lstm", 6, HIDDEN), 4)
    model.rnn.lstm.load_state_dict(lstm.state_dict())
    model.readout.load_state_dict(linear.state_dict())
    plain_epoch(lstm, linear, opt, u, y)  # warm-up
    # interleaved, so that a change of machine load hits both loops alike
    t_plain, t_lib = [], []
    for _ in range(REPEATS):
        t_plain.append(median_time(lambda: plain_epoch(lstm, linear, opt, u, y), repeats=1))
        t_lib.append(median_time(lambda: lib_epoch(model, u, y), repeats=1))
    plain, lib_t = statistics.median(t_plain), statistics.median(t_lib)
    print(f"[lstm] one epoch: plain torch loop {plain:.3f} s, lib.training.train {lib_t:.3f} s, "
          f"ratio lib / plain = {lib_t / plain:.3f} (per-pair ratios "
          f"{', '.join(f'{b / a:.2f}' for a, b in zip(t_plain, t_lib))})")

if __name__ == "__main__":
    main()
