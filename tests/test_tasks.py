"""Tests of lib.tasks: symbol classification and sine generation."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings, strategies as st

from lib.tasks import sine_frequencies, sine_generation, symbol_classification

WINDOWS = ((9, 19), (39, 49))


def test_shapes_and_one_hot():
    u, y = symbol_classification(37, 60, seed=3)
    assert u.shape == (60, 37, 6) and u.dtype == torch.float32
    assert y.shape == (37,) and y.dtype == torch.long
    assert torch.equal(u.sum(-1), torch.ones(60, 37))  # exactly one channel per step
    assert set(u.unique().tolist()) == {0.0, 1.0}
    assert 0 <= int(y.min()) and int(y.max()) <= 3


@settings(max_examples=25, deadline=None)
@given(n_symbols=st.integers(1, 4), n_distractors=st.integers(0, 5), seed=st.integers(0, 10_000),
       a1=st.integers(0, 10), len1=st.integers(1, 8), gap=st.integers(0, 5), len2=st.integers(1, 8))
def test_symbols_inside_their_windows_and_class_is_base_n(n_symbols, n_distractors, seed, a1, len1,
                                                         gap, len2):
    windows = ((a1, a1 + len1), (a1 + len1 + gap, a1 + len1 + gap + len2))
    T = windows[1][1] + 3
    u, y = symbol_classification(50, T, n_symbols=n_symbols, n_distractors=n_distractors,
                                 windows=windows, seed=seed)
    is_symbol = u[..., :n_symbols].sum(-1) > 0  # (T, B)
    assert torch.equal(is_symbol.sum(0), torch.full((50,), 2))  # one symbol per window
    digits = []
    for a, b in windows:
        inside = is_symbol[a:b]
        assert torch.equal(inside.sum(0), torch.ones(50, dtype=torch.long))
        pos = inside.float().argmax(0) + a
        digits.append(u[pos, torch.arange(50), :n_symbols].argmax(-1))
    assert torch.equal(y, digits[0] * n_symbols + digits[1])
    if n_distractors == 0:  # steps outside the symbols are zero vectors
        assert torch.equal(u.sum(-1), is_symbol.float())
    else:
        assert torch.equal(u.sum(-1), torch.ones(T, 50))


def test_same_seed_same_data_other_seed_other_data():
    u1, y1 = symbol_classification(20, 60, seed=5)
    u2, y2 = symbol_classification(20, 60, seed=5)
    u3, y3 = symbol_classification(20, 60, seed=6)
    assert torch.equal(u1, u2) and torch.equal(y1, y2)
    assert not torch.equal(u1, u3)


def test_class_balance_over_many_seeds():
    counts = torch.zeros(4)
    for seed in range(40):
        _, y = symbol_classification(100, 50, seed=seed)
        counts += torch.bincount(y, minlength=4)
    n = counts.sum()
    # chi-square with 3 degrees of freedom: 16.27 is the 0.1 % quantile
    chi2 = float(((counts - n / 4) ** 2 / (n / 4)).sum())
    assert chi2 < 16.27, counts
    assert float(counts.min()) > 0.22 * n


def test_three_windows_three_digits():
    u, y = symbol_classification(500, 40, n_symbols=3, windows=((0, 5), (10, 15), (20, 25)))
    assert int(y.max()) <= 26 and len(y.unique()) > 20


@pytest.mark.parametrize("windows, match", [
    (((9, 19), (39, 70)), "windows"),        # outside the sequence
    (((-1, 5), (39, 49)), "windows"),        # negative start
    (((9, 19), (15, 25)), "overlap"),        # overlapping
    (((9, 9), (39, 49)), "windows"),         # empty
    ((), "windows"),
    ((5, 6), "windows"),                     # not pairs
])
def test_bad_windows(windows, match):
    with pytest.raises(ValueError, match=match):
        symbol_classification(10, 60, windows=windows)


@pytest.mark.parametrize("kwargs, name", [
    ({"n_symbols": 0}, "n_symbols"), ({"n_symbols": -1}, "n_symbols"),
    ({"n_symbols": 1.5}, "n_symbols"), ({"n_distractors": -1}, "n_distractors"),
    ({"seed": -2}, "seed"),
])
def test_bad_arguments(kwargs, name):
    with pytest.raises(ValueError, match=name):
        symbol_classification(10, 60, **kwargs)
    with pytest.raises(ValueError, match="n_sequences"):
        symbol_classification(0, 60)
    with pytest.raises(ValueError, match="seq_len"):
        symbol_classification(10, 0)


def test_sine_generation_targets():
    om = sine_frequencies(7)
    assert om[0].item() == pytest.approx(math.pi / 16) and om[-1].item() == pytest.approx(math.pi / 8)
    u, y = sine_generation(om.double(), 50)
    assert u.shape == y.shape == (50, 7, 1)
    assert torch.equal(u[:, :, 0], om.double().expand(50, 7))
    t = torch.arange(1, 51, dtype=torch.float64).unsqueeze(1)
    expected = torch.sin(t * om.double())  # sin(Σ_{k<=t} ω) = sin(ω (t + 1)) with t from 0
    torch.testing.assert_close(y[:, :, 0], expected, rtol=0, atol=1e-12)
    torch.testing.assert_close(y[:, :, 0], torch.sin(torch.cumsum(u[:, :, 0], 0)), rtol=0, atol=1e-12)


@pytest.mark.parametrize("omegas, match", [
    (torch.tensor([0.1, float("nan")]), "omegas"), (torch.tensor([[0.1]]), "omegas"),
    (torch.tensor([0.1, -0.2]), "omegas"), (torch.tensor([]), "omegas"),
])
def test_sine_bad_input(omegas, match):
    with pytest.raises(ValueError, match=match):
        sine_generation(omegas, 10)
    with pytest.raises(ValueError, match="seq_len"):
        sine_generation(torch.tensor([0.1]), 0)
    with pytest.raises(ValueError, match="low and high"):
        sine_frequencies(5, 0.3, 0.2)


def test_load_wikitext2_is_public_in_tasks():
    """DESIGN.md names lib.tasks.load_wikitext2; it is the loader of lib.corpus."""
    import lib.corpus
    import lib.tasks

    assert lib.tasks.load_wikitext2 is lib.corpus.load_wikitext2
