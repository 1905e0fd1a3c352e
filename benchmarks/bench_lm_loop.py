"""Benchmark: language-model training throughput of lib's one loop.

Three ways to train the same language model (embedding, dropout, LSTM, dropout, linear
decoder; same initial weights, Adam, gradient-norm clipping at 0.25, the same windows of
truncated BPTT) for one epoch, interleaved, medians over repeats, CPU seconds of one thread:

1. a plain PyTorch loop over ``nn.Embedding``, ``nn.LSTM`` and ``nn.Linear``;
2. the language model's former loop of its own (``lib.language_model.train_epoch`` before
   the one training loop; reproduced verbatim below as ``former_epoch``);
3. :func:`lib.training.train` with :class:`~lib.training.BPTTWindows` and
   :class:`~lib.training.TruncatedBPTT`.

It prints tokens per second and the ratios lib / plain and lib / former (target for both:
0.95 or more). ``--paper`` instead times a few windows at the paper's scale (800 embedding
and hidden units, the full WikiText-2 vocabulary of 33,278 words, batch 100, BPTT 70) and
prints CPU tokens per second and the time of one epoch of the 2,088,628 training tokens
(``--save`` also writes them to ``results/lm_paper_scale_cpu.json``, which the
language-model chapter quotes).

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
PAPER = "--paper" in sys.argv
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


class PlainLM(nn.Module):
    """The model written the obvious way with torch.nn modules."""

    def __init__(self, lm: LanguageModel):
        super().__init__()
        self.encoder, self.decoder = copy.deepcopy(lm.encoder), copy.deepcopy(lm.decoder)
        self.lstm = copy.deepcopy(lm.rnn.lstm)
        self.drop = nn.Dropout(0.5)

    def forward(self, x, state):
        out, state = self.lstm(self.drop(self.encoder(x)), state)
        return self.decoder(self.drop(out)), state


def plain_epoch(model, data, optimizer, *, bptt, clip):
    model.train()
    state, n_tok = None, 0
    for i in range(0, data.shape[0] - 1, bptt):
        L = min(bptt, data.shape[0] - 1 - i)
        x, y = data[i:i + L], data[i + 1:i + 1 + L]
        if state is not None:
            state = tuple(s.detach() for s in state)
        logits, state = model(x, state)
        loss = nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), clip)
        optimizer.step()
        n_tok += y.numel()
    return n_tok


def paper_scale() -> None:
    V, E, H, B, L, WINDOWS = 33278, 800, 800, 100, 70, 3
    torch.set_num_threads(1)
    stream = torch.randint(V, ((WINDOWS + 1) * L * B + B,), generator=torch.Generator().manual_seed(0))
    data = corpus_mod.batchify(stream, B)
    lm = LanguageModel("lstm", V, E, H, dropout=0.5, seed=0)
    loss_fn = nn.CrossEntropyLoss(reduction="sum")
    windows = BPTTWindows(data[: WINDOWS * L + 1], L)
    train(lm, loss_fn, BPTTWindows(data[: L + 1], L), epochs=1, forward=TruncatedBPTT(),
          progress=False)  # warm-up
    t0 = time.process_time()
    result = train(lm, loss_fn, windows, epochs=1, forward=TruncatedBPTT(), progress=False)
    tps = result.history["train_items"][0] / (time.process_time() - t0)
    print(f"paper scale (V={V}, E=H={E}, batch {B}, BPTT {L}), {WINDOWS} windows, 1 thread: "
          f"{tps:,.0f} tokens/s; one epoch of 2,088,628 training tokens: "
          f"{2_088_628 / tps / 3600:.1f} h of CPU time")
    if "--save" in sys.argv:  # the chapter quotes it: results/lm_paper_scale_cpu.json
        from lib.experiments._run import ROOT, device_name, git_commit, write_json

        (ROOT / "results").mkdir(exist_ok=True)
        write_json(ROOT / "results" / "lm_paper_scale_cpu.json", {
            "tokens_per_second": tps, "epoch_cpu_hours": 2_088_628 / tps / 3600,
            "windows": WINDOWS, "config": {"V": V, "E": E, "H": H, "batch": B, "bptt": L},
            "commit": git_commit(), "device": device_name("cpu"), "torch": torch.__version__,
            "command": "python benchmarks/bench_lm_loop.py --paper --save"})


def main() -> None:
    if PAPER:
        return paper_scale()
    torch.set_num_threads(1)
    gen = torch.Generator().manual_seed(0)
    stream = torch.randint(V, (TOKENS,), generator=gen)
    data = corpus_mod.batchify(stream, BATCH)
    base = LanguageModel("lstm", V, E, H, dropout=0.5, seed=0)
    former, new, plain = [], [], []
    for _ in range(REPEATS):  # interleaved, so that machine noise hits all alike
        model = PlainLM(base)
        torch.manual_seed(1)
        opt = torch.optim.Adam(model.parameters(), lr=1e-3)
        t0 = time.process_time()
        n_tok = plain_epoch(model, data, opt, bptt=BPTT, clip=0.25)
        plain.append(n_tok / (time.process_time() - t0))
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
    a, b, p = statistics.median(former), statistics.median(new), statistics.median(plain)
    print(f"language model (V={V}, E={E}, H={H}, {TOKENS} tokens, batch {BATCH}, bptt {BPTT}); "
          f"medians of {REPEATS}")
    print(f"plain torch loop {p:,.0f} tokens/s; former lib loop {a:,.0f} tokens/s; "
          f"lib.training.train {b:,.0f} tokens/s")
    print(f"ratio lib/plain = {b / p:.3f}; ratio lib/former = {b / a:.3f}")


if __name__ == "__main__":
    main()
