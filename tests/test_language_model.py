"""Tests of lib.language_model: the three language models, the stable-LSTM projection,
the state-space view used for orbits, orbit recording, the feedback Lyapunov exponent,
training, and the ``language-model`` command."""

from __future__ import annotations

import argparse
import json
import math
from dataclasses import replace

import pytest
import torch

from lib import corpus as C
from lib import language_model as L
from lib import models

V, E, H = 30, 6, 8


def small_lm(kind: str, seed: int = 0) -> L.LanguageModel:
    return L.LanguageModel(kind, V, E, H, dropout=0.0, seed=seed).double().eval()


@pytest.mark.parametrize("kind", L.MODEL_KINDS)
def test_forward_shapes_and_state(kind):
    lm = small_lm(kind)
    tokens = torch.randint(0, V, (5, 3))
    logits, state = lm(tokens, lm.init_state(3).double())
    assert logits.shape == (5, 3, V)
    assert state.shape == (3, H if kind == "ornn" else 2 * H) == (3, lm.state_size)
    # running in two chunks with the carried state equals one run
    a, sa = lm(tokens[:2], lm.init_state(3).double())
    b, _ = lm(tokens[2:], sa)
    torch.testing.assert_close(torch.cat([a, b]), logits)


@pytest.mark.parametrize("kind", L.MODEL_KINDS)
def test_state_maps_equal_the_module(kind):
    """f and g (float64 step maps at the trained weights) reproduce the module step by step."""
    lm = small_lm(kind, seed=1)
    f, g, emb = L.state_maps(lm)
    tokens = torch.randint(0, V, (7, 4), generator=torch.Generator().manual_seed(0))
    x = torch.randn(4, lm.state_size, generator=torch.Generator().manual_seed(1),
                    dtype=torch.float64)
    logits, last = lm(tokens, x)
    for t in range(tokens.shape[0]):
        x = f(x, tokens[t])
        torch.testing.assert_close(g(x), logits[t])
    torch.testing.assert_close(x, last)


def test_orthogonal_layer_stays_orthogonal_under_training():
    corpus = C.synthetic_corpus(n_train=3000, n_valid=300, n_test=300, n_words=80)
    lm = L.LanguageModel("ornn", len(corpus.dictionary), E, H, dropout=0.0)
    opt = torch.optim.Adam(lm.parameters(), lr=1e-2)
    L.train_epoch(lm, C.batchify(corpus.train, 10), opt, bptt=10, clip=1.0)
    W = lm.rnn.recurrent_matrix().detach().double()
    torch.testing.assert_close(W @ W.t(), torch.eye(H, dtype=torch.float64), atol=1e-5, rtol=0)
    moved = [p.grad for p in lm.rnn.parameters() if p.grad is not None]
    assert moved and all(bool(torch.isfinite(g).all()) for g in moved)


def column_l1(block):
    return block.abs().sum(dim=0)


def test_stable_lstm_stays_stable_while_training():
    corpus = C.synthetic_corpus(n_train=3000, n_valid=300, n_test=300, n_words=80)
    lm = L.LanguageModel("slstm", len(corpus.dictionary), E, H, dropout=0.0)
    opt = torch.optim.Adam(lm.parameters(), lr=3e-2)
    L.train_epoch(lm, C.batchify(corpus.train, 10), opt, bptt=10, clip=1.0)
    w_hh = lm.rnn.lstm.weight_hh_l0.detach()
    for k, gate in enumerate("ifgo"):
        bound = models.STABLE_LSTM_BOUNDS[gate]
        assert float(column_l1(w_hh[k * H:(k + 1) * H]).max()) <= bound * 1.000001
    w_if = lm.rnn.lstm.weight_ih_l0.detach()[H:2 * H]
    assert float(column_l1(w_if).max()) <= models.STABLE_LSTM_BOUNDS["f_input"] * 1.000001


@pytest.mark.parametrize("feedback", [False, True])
@pytest.mark.parametrize("kind", ["lstm", "ornn"])
def test_record_orbits_matches_a_plain_loop(kind, feedback):
    lm = small_lm(kind, seed=2)
    proj = [3, 7]
    out = L.record_orbits(lm, [5, 9], project_tokens=proj, feedback=feedback, n_init=3,
                          std=2.0, n_burn=6, n_keep=4, seed=4)
    assert out.shape == (2, 3, 4, 3)
    # reference: the torch module itself, one step at a time, from the same initial states
    gen = torch.Generator().manual_seed(4)
    x0 = torch.randn(3, lm.state_size, generator=gen, dtype=torch.float64) * 2.0
    for p, word in enumerate([5, 9]):
        state = x0
        words = torch.full((3,), word)
        for t in range(10):
            logits, state = lm(words.view(1, 3), state)
            if feedback:
                words = logits[0].argmax(-1)
            if t >= 6:
                h = state[:, :H]
                expected = torch.stack([h.mean(-1), *(h @ lm.decoder.weight[w] for w in proj)], -1)
                torch.testing.assert_close(out[p, :, t - 6], expected)


def test_record_orbits_bad_input():
    lm = small_lm("lstm")
    with pytest.raises(ValueError, match="inputs"):
        L.record_orbits(lm, [V])
    with pytest.raises(ValueError, match="inputs"):
        L.record_orbits(lm, [])
    with pytest.raises(ValueError, match="project_tokens"):
        L.record_orbits(lm, [1], project_tokens=[-1])
    with pytest.raises(ValueError, match="n_init"):
        L.record_orbits(lm, [1], n_init=0)
    with pytest.raises(ValueError, match="std"):
        L.record_orbits(lm, [1], std=-1.0)


def test_bad_model_arguments():
    with pytest.raises(ValueError, match="kind"):
        L.LanguageModel("gru", V, E, H)
    with pytest.raises(ValueError, match="dropout"):
        L.LanguageModel("lstm", V, E, H, dropout=1.0)
    with pytest.raises(ValueError, match="n_hidden"):
        L.LanguageModel("lstm", V, E, 0)
    lm = small_lm("lstm")
    with pytest.raises(ValueError, match="bptt"):
        L.train_epoch(lm, torch.zeros(5, 2, dtype=torch.long), None, bptt=0, clip=1.0)
    with pytest.raises(ValueError, match="clip"):
        L.train_epoch(lm, torch.zeros(5, 2, dtype=torch.long), None, bptt=2, clip=0.0)


def test_orthogonal_linear_feedback_map_has_zero_exponent():
    """With b = 0, modReLU is the identity: the feedback map is x -> W x + U E[w(x)], whose
    Jacobian (word held fixed) is the orthogonal W, so every exponent is 0."""
    lm = small_lm("ornn", seed=3)
    with torch.no_grad():
        lm.rnn.bias.zero_()
    lam = L.feedback_lyapunov(lm, n_init=3, std=5.0, n_transient=10, n_steps=50)
    assert lam.shape == (3,)
    # W is orthogonal up to its float32 initialisation: λ lies between the logs of its
    # extreme singular values, all within 1e-6 of 0
    sv = torch.linalg.svdvals(lm.rnn.recurrent_matrix().detach()).log()
    assert float(sv.abs().max()) < 1e-6
    assert bool((lam >= sv.min() - 1e-12).all() and (lam <= sv.max() + 1e-12).all())


def test_lstm_feedback_exponent_equals_direct_product():
    """λ_max from lib.dynamics equals (1/n) log ||J_n ... J_1 v|| computed by hand."""
    lm = small_lm("lstm", seed=5)
    step = L.feedback_step(lm)
    from lib import dynamics
    x0 = torch.randn(1, lm.state_size, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    n = 40
    lam = L.dynamics.lyapunov_spectrum(step, x0, n, n_exponents=1)[0, 0]
    x, v = x0, torch.eye(2 * H, dtype=torch.float64)[:, :1].unsqueeze(0)
    log_growth = 0.0
    for _ in range(n):
        x_next, J = dynamics.jacobian(step, x)
        v = J @ v
        norm = v.norm()
        log_growth += math.log(float(norm))
        v = v / norm
        x = x_next
    assert abs(float(lam) - log_growth / n) < 1e-9


def test_evaluate_uniform_model_gives_log_vocabulary():
    lm = small_lm("lstm")
    with torch.no_grad():
        lm.decoder.weight.zero_()
        lm.decoder.bias.zero_()
    data = C.batchify(torch.randint(0, V, (200,)), 4)
    assert abs(L.evaluate(lm, data, bptt=7) - math.log(V)) < 1e-12


TINY = replace(L.CPU_CONFIG, n_embed=8, n_hidden=8, epochs=2, batch_size=8, bptt=10,
               max_words=60, train_tokens=1200, eval_tokens=400, n_burn=10, n_keep=5,
               lyap_steps=10, n_init=2, orbit_tokens=("is", "Valkyria", "<unk>", "absent"))


@pytest.mark.parametrize("kind", L.MODEL_KINDS)
def test_run_experiment_reduced_config(kind):
    corpus = C.synthetic_corpus(n_train=3000, n_valid=600, n_test=600, n_words=200)
    res = L.run_experiment(replace(TINY, model=kind), corpus, progress=False)
    assert res["tokens"] == ["is", "Valkyria", "<unk>"]  # "absent" is not in the vocabulary
    assert res["orbit_epochs"] == [0, 1, 2]
    assert res["constant"].shape == (3, 1, 2, 5, 4)
    assert res["feedback"].shape == (3, 1, 2, 5, 4)
    assert res["lyapunov"].shape == (3, 2)
    h = res["history"]
    assert len(h["valid_loss"]) == 3 and h["valid_loss"][2] < h["valid_loss"][0]
    assert res["vocabulary"] == 60
    assert math.isfinite(res["test_loss"])


def test_command_line_reduced_run(tmp_path):
    data = tmp_path / "wt2"
    data.mkdir()
    syn = C.synthetic_corpus(n_train=2000, n_valid=500, n_test=500, n_words=100)
    for split in ("train", "valid", "test"):
        words = syn.dictionary.decode(getattr(syn, split))
        (data / f"{split}.txt").write_text(" ".join(words).replace("<eos>", "\n"))
    argv = [
        "--model", "slstm", "--scale", "cpu", "--n-embed", "8", "--n-hidden", "8",
        "--epochs", "1", "--batch-size", "8", "--train-tokens", "800", "--eval-tokens", "200",
        "--n-burn", "5", "--n-keep", "3", "--lyap-steps", "5", "--max-words", "50",
        "--data", str(data), "--missing-train", "error", "--device", "cpu",
        "--out", str(tmp_path / "out")]
    registered = {}
    L.register_experiment(lambda name, add, run: registered.setdefault(name, (add, run)))
    add, _ = registered["language-model"]
    parser = argparse.ArgumentParser()
    add(parser)
    cfg = L.config_from_args(parser.parse_args(argv))
    assert cfg.model == "slstm" and cfg.n_hidden == 8 and cfg.lr == L.CPU_CONFIG.lr
    assert cfg.bptt == L.CPU_CONFIG.bptt and cfg.missing_train == "error"
    # the same run through the book's command line, python -m lib.experiments language-model
    experiments = pytest.importorskip("lib.experiments")
    assert experiments.main(["language-model", *argv]) == 0
    run_info = json.loads((tmp_path / "out" / "run.json").read_text())
    assert run_info["summary"]["vocabulary"] == 50
    summary = json.loads((tmp_path / "out" / "slstm.json").read_text())
    assert summary["config"]["n_hidden"] == 8
    assert set(summary["meta"]) >= {"commit", "device", "wall_seconds", "torch"}
    saved = torch.load(tmp_path / "out" / "slstm.pt", weights_only=False)
    assert saved["constant"].shape[0] == 2  # epochs 0 and 1


def test_paper_config_defaults():
    p = L.PAPER_CONFIG
    assert (p.n_embed, p.n_hidden, p.dropout, p.bptt, p.batch_size) == (800, 800, 0.5, 70, 100)
    assert (p.lr, p.clip, p.patience, p.factor, p.std, p.n_burn) == (1e-3, 0.25, 7, 0.1, 100.0, 1500)


def test_parameter_groups_and_modrelu_bias():
    ornn = L.LanguageModel("ornn", V, E, H, modrelu_bias=-0.05)
    assert bool((ornn.rnn.bias == -0.05).all())
    groups = L.parameter_groups(ornn, 1e-3, 0.1)
    assert [g["lr"] for g in groups] == [1e-3, pytest.approx(1e-4)]
    n_params = sum(p.numel() for g in groups for p in g["params"])
    assert n_params == sum(p.numel() for p in ornn.parameters())
    assert len(L.parameter_groups(L.LanguageModel("lstm", V, E, H), 1e-3, 0.1)) == 1
    with pytest.raises(ValueError, match="orthogonal_lr_factor"):
        L.parameter_groups(ornn, 1e-3, 0.0)
