"""Benchmark: language-model training throughput of the one loop against the former loop.

Before issue 12 the language model had a training loop of its own
(``lib.language_model.train_epoch``, reproduced verbatim below as ``former_epoch``). Now it
trains through :func:`lib.training.train` with :class:`~lib.training.BPTTWindows` and
:class:`~lib.training.TruncatedBPTT`. Both train the same model (same initial weights,
Adam, gradient-norm clipping at 0.25, mean loss) for one epoch on the same token streams;
the script prints tokens per second of each, the median over repeats, and the ratio
new / former (target: >= 0.95, no regression). Times are CPU seconds of one thread.

Run: ``.venv/bin/python benchmarks/bench_lm_loop.py`` (``--quick``: a smaller problem).
"""

from __future__ import annotations

import copy
import statistics
import sys
import time

import torch
from torch import nn

from lib import corpus as corpus_mod
from lib.models import LanguageModel, apply_constraints
from lib.training import BPTTWindows, TruncatedBPTT, train

QUICK = "--quick" in sys.argv
V, E, H, TOKENS, BATCH, BPTT, REPEATS = (
    (2000, 64, 64, 20_000, 20, 35, 3) if QUICK else (5000, 128, 128, 60_000, 32, 35, 5))


def former_epoch(lm, data, optimizer, *, bptt, clip):
    """The language model's former loop (lib/language_model.py before issue 12)."""
    lm.train()
    state = lm.init_state(data.shape[1])
    total, n_tok = 0.0, 0
    for i in range(0, data.shape[0] - 1, bptt):
        x, y = corpus_mod.get_batch(data, i, bptt)
        state = state.detach()
        logits, state = lm(x, state)
        loss = nn.functional.cross_entropy(logits.reshape(-1, lm.n_tokens), y.reshape(-1))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(lm.parameters(), clip)
        optimizer.step()
        apply_constraints(lm)
        total += float(loss.detach()) * y.numel()
        n_tok += y.numel()
    return total / n_tok, n_tok


def main() -> None:
    torch.set_num_threads(1)
    gen = torch.Generator().manual_seed(0)
    stream = torch.randint(V, (TOKENS,), generator=gen)
    data = corpus_mod.batchify(stream, BATCH)
    base = LanguageModel("lstm", V, E, H, dropout=0.5, seed=0)
    former, new = [], []
    for _ in range(REPEATS):  # interleaved, so that machine noise hits both alike
        lm = copy.deepcopy(base)
        torch.manual_seed(1)
        opt = torch.optim.Adam(lm.parameters(), lr=1e-3)
        t0 = time.process_time()
        loss_a, n_tok = former_epoch(lm, data, opt, bptt=BPTT, clip=0.25)
        former.append(n_tok / (time.process_time() - t0))
        lm = copy.deepcopy(base)
        torch.manual_seed(1)
        t0 = time.process_time()
        result = train(lm, nn.CrossEntropyLoss(), BPTTWindows(data, BPTT), epochs=1, lr=1e-3,
                       clip=0.25, forward=TruncatedBPTT(), post_step=apply_constraints,
                       progress=False)
        new.append(result.history["train_items"][0] / (time.process_time() - t0))
        # the same computation: equal losses (same dropout masks from the same seed)
        assert abs(result.history["train_loss"][0] - loss_a) < 1e-6, (result.history, loss_a)
    a, b = statistics.median(former), statistics.median(new)
    print(f"language model (V={V}, E={E}, H={H}, {TOKENS} tokens, batch {BATCH}, bptt {BPTT}); "
          f"medians of {REPEATS}")
    print(f"former loop {a:,.0f} tokens/s; lib.training.train {b:,.0f} tokens/s; "
          f"ratio new/former = {b / a:.3f}")


if __name__ == "__main__":
    main()
