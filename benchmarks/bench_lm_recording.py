"""Benchmark: the cost of orbit recording against a training epoch, language model, mid scale.

The configuration of the saved mid-scale runs (256 embedding and hidden units, 5,000 words,
batches of 20 streams, windows of 70, the authors' orbit settings: 3 constant inputs, 5
initial states of standard deviation 100, 1500 steps of burn-in, 100 kept; λ_1 over 500
steps). In one run it times, in CPU seconds of one thread: one training epoch over the
validation split of WikiText-2 (or the synthetic corpus), then, interleaved and repeated,
one record made two ways:

* **separate** (how the recorder measured λ_1 before): the feedback orbits, then λ_1 of the
  feedback map from fresh orbits in float64 (``lyapunov_sampler``, 1500 + 500 steps),
  each step running the 5,000-word arg-max decoder again (both ways now share the
  per-word input-drive table of ``feedback_map``, so the ratio understates the old cost);
* **along, decoder not packed**: ``orbit_sampler(lyapunov_steps=500)``, λ_1 measured
  along the feedback orbits themselves in one pass (one decoder per step), with the
  decoder's product as in training (``torch.nn.functional.linear``);
* **along** (the recorder now): the same, with the decoder's weight packed once per record
  (``LanguageModel.token_map``, oneDNN; ``benchmarks/bench_packed_linear.py``).

All include the constant-input orbits. It prints the medians, each as a fraction of the
epoch (target of issue 14: at most 10 %), the ratios separate / along and not packed /
along, and checks that packing changed no recorded number.

Run: ``.venv/bin/python benchmarks/bench_lm_recording.py [--repeats 3]``.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import statistics
import time
from dataclasses import replace

import torch

from lib import corpus as corpus_mod
from lib.experiments import language_model as lm_exp
from lib.models import LanguageModel
from lib.training import TruncatedBPTT, lyapunov_sampler, orbit_sampler, train


def cpu_time(fn) -> float:
    t0 = time.process_time()
    fn()
    return time.process_time() - t0


@contextlib.contextmanager
def decoder_not_packed():
    """LanguageModel.token_map with pack=False, for the comparison."""
    original = LanguageModel.token_map
    LanguageModel.token_map = functools.partialmethod(original, pack=False)
    try:
        yield
    finally:
        LanguageModel.token_map = original


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3, help="records timed each way")
    args = parser.parse_args()
    if args.repeats < 1:
        parser.error("--repeats must be >= 1")
    torch.set_num_threads(1)
    torch.set_flush_denormal(True)
    cfg = replace(lm_exp.PAPER, n_embed=256, n_hidden=256, max_words=5000, batch_size=20,
                  orbit_tokens=("is", "<unk>"), allow_synthetic=True)
    corpus = corpus_mod.load_wikitext2(missing_train="valid-as-train")
    corpus, (train_w, _, _) = lm_exp._prepare_data(cfg, corpus, "cpu")
    lm = LanguageModel("lstm", len(corpus.dictionary), 256, 256, seed=0)
    ids = lm_exp._orbit_input_ids(cfg, corpus.dictionary)
    tokens = torch.tensor([corpus.dictionary.word2idx[w] for w in cfg.orbit_tokens])
    common = dict(n_init=cfg.n_init, std=cfg.std, n_steps=cfg.n_burn + cfg.n_keep,
                  n_transient=cfg.n_burn, seed=0, shared_init=False, differences=False,
                  readout=lm_exp.projection_readout(cfg.projection, tokens))
    epoch = cpu_time(lambda: train(lm, torch.nn.CrossEntropyLoss(reduction="sum"), train_w,
                                   epochs=1, forward=TruncatedBPTT(), progress=False))
    constant = orbit_sampler(ids, feedback=False, **common)
    feedback = orbit_sampler(ids, feedback=True, **common)
    lam = lyapunov_sampler(ids, feedback=True, n_init=cfg.n_init, std=cfg.std,
                           n_steps=cfg.lyap_steps, n_transient=cfg.n_burn, seed=0,
                           shared_init=False)
    along = orbit_sampler(ids, feedback=True, **common, lyapunov_steps=cfg.lyap_steps)
    y_packed = along(lm)
    lam_packed = along.last_lyapunov
    with decoder_not_packed():
        y_plain = along(lm)
    same = bool(torch.equal(y_packed, y_plain) and torch.equal(lam_packed, along.last_lyapunov))
    separate_t, plain_t, along_t = [], [], []
    for _ in range(args.repeats):  # interleaved, so that load changes hit all ways alike
        separate_t.append(cpu_time(lambda: (constant(lm), feedback(lm), lam(lm))))
        with decoder_not_packed():
            plain_t.append(cpu_time(lambda: (constant(lm), along(lm))))
        along_t.append(cpu_time(lambda: (constant(lm), along(lm))))
    sep, pla, alo = (statistics.median(t) for t in (separate_t, plain_t, along_t))
    print(f"mid scale (E=H=256, V={len(corpus.dictionary)}, {train_w.data.numel():,} training "
          f"tokens, {corpus.source}): one epoch {epoch:.1f} s CPU")
    print(f"one record, separate λ_1 (before): median {sep:.2f} s = {100 * sep / epoch:.1f} % "
          f"of an epoch  [{', '.join(f'{t:.2f}' for t in separate_t)}]")
    print(f"one record, λ_1 along the orbits, decoder not packed: median {pla:.2f} s = "
          f"{100 * pla / epoch:.1f} % of an epoch  [{', '.join(f'{t:.2f}' for t in plain_t)}]")
    print(f"one record, λ_1 along the orbits (now): median {alo:.2f} s = "
          f"{100 * alo / epoch:.1f} % of an epoch  [{', '.join(f'{t:.2f}' for t in along_t)}]")
    print(f"ratio separate / along = {sep / alo:.2f}; not packed / along = {pla / alo:.2f}")
    print(f"packing changed no recorded orbit or λ_1: {same}")


if __name__ == "__main__":
    main()
