"""The self-checks of the language-model chapter pass right answers and fail wrong ones."""

from __future__ import annotations

import math

import torch

from lib.selfcheck import check
from lib.selfcheck.language_model import phi_max


def test_unigram_perplexity_check():
    def right(train, valid, n_words):
        counts = torch.bincount(train, minlength=n_words).double() + 1
        return math.exp(-float((counts / counts.sum()).log()[valid].mean()))

    def unsmoothed(train, valid, n_words):  # log 0 for unseen words
        counts = torch.bincount(train, minlength=n_words).double()
        return math.exp(-float((counts / counts.sum()).log()[valid].mean()))

    def cross_entropy(train, valid, n_words):  # forgot the exponential
        return math.log(right(train, valid, n_words))

    def valid_counts(train, valid, n_words):  # frequencies of the wrong split
        return right(valid, valid, n_words)

    def base_two(train, valid, n_words):  # bits instead of nats, then exp
        counts = torch.bincount(train, minlength=n_words).double() + 1
        return math.exp(-float((counts / counts.sum()).log2()[valid].mean()))

    def crashes(train, valid, n_words):
        raise RuntimeError("not written yet")

    assert check("ex-language-model-3", right, quiet=True)
    for wrong in (unsmoothed, cross_entropy, valid_counts, base_two, crashes, 99.5):
        assert not check("ex-language-model-3", wrong, quiet=True), wrong
    assert not check("ex-language-model-3", None, quiet=True)


def test_unigram_check_says_what_is_wrong(capsys):
    def cross_entropy(train, valid, n_words):
        counts = torch.bincount(train, minlength=n_words).double() + 1
        return -float((counts / counts.sum()).log()[valid].mean())

    check("ex-language-model-3", cross_entropy)
    out = capsys.readouterr().out
    assert out.startswith("✗ ex-language-model-3: not yet") and "exponential" in out


def test_modrelu_derivative_check():
    def right(z, b):
        return ((z.abs() + b) > 0).double()

    def right_bool(z, b):  # a bool tensor is accepted
        return z.abs() + b > 0

    def autograd(z, b):
        z = z.clone().requires_grad_(True)
        torch.sign(z).mul(torch.relu(z.abs() + b)).sum().backward()
        return z.grad

    def ones(z, b):  # forgets the dead zone
        return torch.ones_like(z)

    def positive_part(z, b):  # as if it were a ReLU
        return (z > 0).double()

    def sign(z, b):
        return torch.sign(z)

    def wrong_shape(z, b):
        return ((z.abs() + b) > 0).double()[:-1]

    for good in (right, right_bool, autograd):
        assert check("ex-language-model-8", good, quiet=True), good
    for wrong in (ones, positive_part, sign, wrong_shape, "1"):
        assert not check("ex-language-model-8", wrong, quiet=True), wrong


def test_phi_max_check():
    want = phi_max((0.395, 0.155, 0.198, 0.395))
    assert 0.55 < want < 0.6  # below the stable LSTM's own threshold: a wider cell gate
    assert abs(phi_max((0.395, 0.155, 0.099, 0.395)) - 0.6557) < 1e-3
    assert check("ex-language-model-9", want, quiet=True)
    assert check("ex-language-model-9", round(want, 3), quiet=True)
    own_radii = phi_max((0.395, 0.155, 0.099, 0.395))
    no_c_in_forget_term = 1 - 1 / ((1 - 0.395 / 4) / (0.395 / 4 + 0.198 + 0.155 / 4))
    for wrong in (own_radii, 0.5, no_c_in_forget_term, 1 / (1 - want), "phi"):
        assert not check("ex-language-model-9", wrong, quiet=True), wrong
