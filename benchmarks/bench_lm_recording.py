"""Benchmark: the cost of orbit recording against a training epoch, language model, mid scale.

The configuration of the saved mid-scale runs (``results/lm_mid_*``: 256 embedding and
hidden units, 5,000 words, batches of 20 streams, windows of 70, the authors' orbit settings:
3 constant inputs, 5 initial states of standard deviation 100, 1500 steps of burn-in, 100
kept). In one run it times, in CPU seconds of one thread: one training epoch over the
validation split of WikiText-2 (or the synthetic corpus), the constant-input orbits, the
feedback orbits, and λ_1 of the feedback map, and prints each as a fraction of the epoch
(target of issue 14: at most 10 % for the recording).

Run: ``.venv/bin/python benchmarks/bench_lm_recording.py``.
"""

from __future__ import annotations

import time
from dataclasses import replace

import torch

from lib import corpus as corpus_mod
from lib.experiments import language_model as lm_exp
from lib.models import LanguageModel
from lib.training import BPTTWindows, TruncatedBPTT, lyapunov_sampler, orbit_sampler, train


def cpu_time(fn):
    t0 = time.process_time()
    out = fn()
    return time.process_time() - t0, out


def main() -> None:
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
    epoch, _ = cpu_time(lambda: train(lm, torch.nn.CrossEntropyLoss(reduction="sum"), train_w,
                                      epochs=1, forward=TruncatedBPTT(), progress=False))
    const, _ = cpu_time(lambda: orbit_sampler(ids, feedback=False, **common)(lm))
    feed, _ = cpu_time(lambda: orbit_sampler(ids, feedback=True, **common)(lm))
    lam, _ = cpu_time(lambda: lyapunov_sampler(ids, feedback=True, n_init=cfg.n_init,
                                               std=cfg.std, n_steps=cfg.lyap_steps,
                                               n_transient=cfg.n_burn, seed=0)(lm))
    print(f"mid scale (E=H=256, V={len(corpus.dictionary)}, {train_w.data.numel():,} training "
          f"tokens): one epoch {epoch:.1f} s CPU")
    print(f"constant-input orbits {const:.2f} s ({100 * const / epoch:.1f} % of an epoch); "
          f"feedback orbits {feed:.2f} s ({100 * feed / epoch:.1f} %); "
          f"lambda_1 of the feedback map {lam:.2f} s ({100 * lam / epoch:.1f} %)")
    print(f"one record (orbits and lambda_1): {100 * (const + feed + lam) / epoch:.1f} % of an "
          f"epoch; the orbits alone {100 * (const + feed) / epoch:.1f} %")


if __name__ == "__main__":
    main()
