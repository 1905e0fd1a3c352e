"""Tokenising WikiText-2 at the size of its training split (about 2.1M tokens).

The shared data folder holds only the validation and test splits (0.46M tokens together),
so the text is repeated to ~2.1M tokens (the training split's size). Two ways, same result:

* naive: the textbook loop, one Python iteration per token (``for line in lines: for word
  in line.split() + ['<eos>']: add to dictionary; append index``);
* lib: :func:`lib.corpus.tokenize_text` (two C-level string operations) plus
  :meth:`lib.corpus.Dictionary.add_and_encode` (one ``map`` over a self-numbering
  ``defaultdict``, into ``np.fromiter``).

Prints the median of repeated timings of each and their ratio.
"""

from __future__ import annotations

import os
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from lib import corpus as C  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
FOLDER = Path(os.environ.get(C.DATA_ENV, ROOT.parent / "shared" / "data")) / "wikitext-2"


def naive(text: str) -> tuple[list[str], torch.Tensor]:
    word2idx: dict[str, int] = {}
    idx2word: list[str] = []
    ids: list[int] = []
    for line in text.splitlines():
        for word in line.split() + ["<eos>"]:
            if word not in word2idx:
                word2idx[word] = len(idx2word)
                idx2word.append(word)
            ids.append(word2idx[word])
    return idx2word, torch.tensor(ids, dtype=torch.long)


def fast(text: str) -> tuple[list[str], torch.Tensor]:
    d = C.Dictionary()
    ids = d.add_and_encode(C.tokenize_text(text))
    return d.idx2word, ids


def median_time(fn, text: str, repeats: int) -> tuple[float, tuple]:
    times, out = [], None
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn(text)
        times.append(time.perf_counter() - t0)
    return statistics.median(times), out


def main() -> None:
    if (FOLDER / "valid.txt").is_file():
        base = (FOLDER / "valid.txt").read_text(encoding="utf-8") + \
            (FOLDER / "test.txt").read_text(encoding="utf-8")
        origin = f"{FOLDER} (valid + test)"
    else:
        syn = C.synthetic_corpus()
        base = " ".join(syn.dictionary.decode(syn.train)).replace(" <eos> ", "\n")
        origin = "synthetic corpus (no WikiText-2 folder)"
    n_base = len(C.tokenize_text(base))
    text = base * max(1, round(2_100_000 / n_base))
    repeats = 5
    # alternate the two ways, so that a change of the machine's load hits both alike
    runs = {"naive": [], "fast": []}
    for _ in range(repeats):
        for name, fn in (("naive", naive), ("fast", fast)):
            runs[name].append(median_time(fn, text, 1))
    t_naive = statistics.median(t for t, _ in runs["naive"])
    t_fast = statistics.median(t for t, _ in runs["fast"])
    words_a, ids_a = runs["naive"][0][1]
    words_b, ids_b = runs["fast"][0][1]
    assert words_a == words_b and torch.equal(ids_a, ids_b), "the two tokenisers disagree"
    print(f"text: {origin}, repeated to {ids_a.numel():,} tokens, {len(words_a):,} words")
    print(f"naive per-token loop : median {t_naive:.3f} s over {repeats} runs")
    print(f"lib.corpus           : median {t_fast:.3f} s over {repeats} runs")
    print(f"ratio naive / lib    : {t_naive / t_fast:.1f}x "
          f"({ids_b.numel() / t_fast / 1e6:.2f} M tokens/s)")


if __name__ == "__main__":
    main()
