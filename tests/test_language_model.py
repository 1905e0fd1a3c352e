"""Tests of the language model: lib.models.LanguageModel (three recurrent layers), its
orbit interface (constant-input and feedback orbits, the feedback Lyapunov exponent),
truncated BPTT through lib.training, lib.experiments.language_model and its command, and
the exact resume of a language-model run killed with SIGKILL."""

from __future__ import annotations

import math
import os
import signal
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from torch import nn

from lib import corpus as C
from lib import dynamics, experiments, models
from lib.experiments import language_model as LM
from lib.experiments.__main__ import build_parser, main
from lib.experiments._run import ConfigError, config_from_args
from lib.models import LanguageModel
from lib.training import (BPTTWindows, CheckpointError, OrbitRecorder, TruncatedBPTT, evaluate,
                          load_checkpoint, lyapunov_sampler, orbit_sampler, train)

ROOT = Path(__file__).resolve().parent.parent
V, E, H = 30, 6, 8


def small_lm(kind: str, seed: int = 0) -> LanguageModel:
    return LanguageModel(kind, V, E, H, dropout=0.0, seed=seed).double().eval()


def one_epoch(lm, corpus, *, lr, bptt=10, batch=10, clip=1.0):
    """One epoch of truncated BPTT through lib.training.train (stable LSTM projected)."""
    return train(lm, nn.CrossEntropyLoss(), BPTTWindows(C.batchify(corpus.train, batch), bptt),
                 epochs=1, lr=lr, clip=clip, forward=TruncatedBPTT(),
                 post_step=models.apply_constraints, progress=False)


# --------------------------------------------------------------------------- the model
@pytest.mark.parametrize("kind", LanguageModel.KINDS)
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


@pytest.mark.parametrize("kind", LanguageModel.KINDS)
def test_weights_depend_only_on_the_seed(kind):
    torch.manual_seed(123)
    a = LanguageModel(kind, V, E, H, seed=4)
    torch.manual_seed(456)  # the global generator does not matter
    b = LanguageModel(kind, V, E, H, seed=4)
    c = LanguageModel(kind, V, E, H, seed=5)
    for (k, pa), pb in zip(a.state_dict().items(), b.state_dict().values()):
        assert torch.equal(pa, pb), k
    assert not torch.equal(a.encoder.weight, c.encoder.weight)
    with torch.no_grad():
        assert float(a.encoder.weight.abs().max()) <= 0.1
        assert float(a.decoder.weight.abs().max()) <= 0.1
    assert not bool(a.decoder.bias.any())


@pytest.mark.parametrize("kind", LanguageModel.KINDS)
def test_orbit_interface_equals_the_module(kind):
    """step_map on input_vectors and readout on the hidden part (float64, at the trained
    weights) reproduce the module step by step: the state-space view of the orbits."""
    lm = small_lm(kind, seed=1)
    tokens = torch.randint(0, V, (7, 4), generator=torch.Generator().manual_seed(0))
    x = torch.randn(4, lm.state_size, generator=torch.Generator().manual_seed(1),
                    dtype=torch.float64)
    logits, last = lm(tokens, x)
    with torch.no_grad():
        for t in range(tokens.shape[0]):
            x = lm.rnn.step_map(lm.input_vectors(tokens[t]), dtype=torch.float64)(x)
            torch.testing.assert_close(lm.readout(lm.rnn.hidden(x)), logits[t])
        torch.testing.assert_close(x, last)
        # feedback_input embeds the most probable next word
        torch.testing.assert_close(lm.feedback_input(lm.rnn.hidden(x)),
                                   lm.encoder(logits[-1].argmax(-1)))


def test_bad_model_arguments():
    with pytest.raises(ValueError, match="kind"):
        LanguageModel("gru", V, E, H)
    with pytest.raises(ValueError, match="dropout"):
        LanguageModel("lstm", V, E, H, dropout=1.0)
    with pytest.raises(ValueError, match="n_hidden"):
        LanguageModel("lstm", V, E, 0)
    with pytest.raises(ValueError, match="rule"):
        LanguageModel("slstm", V, E, H, stable_rule="clip")
    lm = small_lm("lstm")
    with pytest.raises(ValueError, match="token ids"):
        lm.input_vectors(torch.tensor([V]))
    with pytest.raises(ValueError, match="token ids"):
        lm.input_vectors(torch.tensor([0.5]))
    with pytest.raises(ValueError, match="bptt"):
        BPTTWindows(torch.zeros(5, 2, dtype=torch.long), 0)
    with pytest.raises(ValueError, match="clip"):
        train(lm, nn.CrossEntropyLoss(), BPTTWindows(torch.zeros(5, 2, dtype=torch.long), 2),
              epochs=1, clip=0.0, forward=TruncatedBPTT(), progress=False)


# --------------------------------------------------------------------------- training
def test_orthogonal_layer_stays_orthogonal_under_training():
    corpus = C.synthetic_corpus(n_train=3000, n_valid=300, n_test=300, n_words=80)
    lm = LanguageModel("ornn", len(corpus.dictionary), E, H, dropout=0.0)
    W0 = lm.rnn.recurrent_matrix().detach().clone()
    res = one_epoch(lm, corpus, lr=1e-2)
    assert math.isfinite(res.history["train_loss"][0])
    W = lm.rnn.recurrent_matrix().detach().double()
    torch.testing.assert_close(W @ W.t(), torch.eye(H, dtype=torch.float64), atol=1e-5, rtol=0)
    assert float((W.float() - W0).abs().max()) > 1e-3  # it did move
    moved = [p.grad for p in lm.rnn.parameters() if p.grad is not None]
    assert moved and all(bool(torch.isfinite(g).all()) for g in moved)


def column_l1(block):
    return block.abs().sum(dim=0)


@pytest.mark.parametrize("rule", models.STABLE_RULES)
def test_stable_lstm_stays_stable_while_training(rule):
    corpus = C.synthetic_corpus(n_train=3000, n_valid=300, n_test=300, n_words=80)
    lm = LanguageModel("slstm", len(corpus.dictionary), E, H, dropout=0.0, stable_rule=rule)
    assert lm.rnn.rule == rule
    one_epoch(lm, corpus, lr=3e-2)
    w_hh = lm.rnn.lstm.weight_hh_l0.detach()
    blocks = {gate: w_hh[k * H:(k + 1) * H] for k, gate in enumerate("ifgo")}
    blocks["f_input"] = lm.rnn.lstm.weight_ih_l0.detach()[H:2 * H]
    for key, w in blocks.items():
        bound = models.STABLE_LSTM_BOUNDS[key]
        n = column_l1(w)
        assert float(n.max()) <= bound * 1.000001, key
        if rule == "rescale":  # exactly at the bound after the optimizer steps
            assert float(n.min()) >= bound * 0.99999, key
        else:  # at most the bound, not collapsed
            assert float(n.min()) > 0.1 * bound, key


def test_evaluate_uniform_model_gives_log_vocabulary():
    lm = small_lm("lstm")
    with torch.no_grad():
        lm.decoder.weight.zero_()
        lm.decoder.bias.zero_()
    data = C.batchify(torch.randint(0, V, (200,), generator=torch.Generator().manual_seed(0)), 4)
    for reduction in ("sum", "mean"):
        ev = evaluate(lm, BPTTWindows(data, 7), nn.CrossEntropyLoss(reduction=reduction),
                      forward=TruncatedBPTT())
        assert abs(ev["loss"] - math.log(V)) < 1e-12, reduction
        assert ev["items"] == 49 * 4
    # a non-uniform decoder does not give log V: the check above can fail
    ev = evaluate(small_lm("lstm"), BPTTWindows(data, 7), nn.CrossEntropyLoss(),
                  forward=TruncatedBPTT())
    assert abs(ev["loss"] - math.log(V)) > 1e-6


# --------------------------------------------------------------------------- orbits
@pytest.mark.parametrize("feedback", [False, True])
@pytest.mark.parametrize("kind", ["lstm", "ornn"])
def test_recorded_projections_match_a_plain_loop(kind, feedback):
    """The experiment's projections (mean of h, C_w · h) of constant and feedback orbits,
    against the torch module itself run one word at a time."""
    lm = small_lm(kind, seed=2)
    proj = torch.tensor([3, 7])
    out = orbit_sampler(torch.tensor([5, 9]), feedback=feedback, n_init=3, std=2.0, n_steps=10,
                        n_transient=6, seed=4, differences=False,
                        readout=LM.projection_readout("hidden_mean", proj))(lm)
    assert out.shape == (2, 3, 4, 3)
    # reference: the same initial states (shared by both inputs), one step at a time
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


def test_decoder_mean_projection():
    lm = small_lm("lstm", seed=3)
    with torch.no_grad():
        lm.decoder.bias.uniform_(-1, 1)
    h = torch.randn(5, H, dtype=torch.float64)
    ids = torch.tensor([2, 11])
    y = LM.projection_readout("decoder_mean", ids)(lm, h)
    logits = lm.readout(h)
    assert y.shape == (5, 3)
    torch.testing.assert_close(y[:, 0], logits.mean(-1))
    torch.testing.assert_close(y[:, 1:], logits[:, ids])
    z = LM.projection_readout("hidden_mean", ids)(lm, h)
    torch.testing.assert_close(z[:, 0], h.mean(-1))
    torch.testing.assert_close(z[:, 1:], logits[:, ids] - lm.decoder.bias[ids])  # no bias
    with pytest.raises(ValueError, match="projection"):
        LM.projection_readout("max", ids)


def test_orbit_sampler_bad_input():
    lm = small_lm("lstm")
    with pytest.raises(ValueError, match="inputs"):
        orbit_sampler(torch.tensor([V]))(lm)
    with pytest.raises(ValueError, match="inputs"):
        orbit_sampler(torch.tensor([], dtype=torch.long))
    with pytest.raises(ValueError, match="inputs"):
        orbit_sampler([1, 2])
    with pytest.raises(ValueError, match="n_init"):
        orbit_sampler(torch.tensor([1]), n_init=0)
    with pytest.raises(ValueError, match="std"):
        orbit_sampler(torch.tensor([1]), std=-1.0)
    with pytest.raises(ValueError, match="readout"):
        orbit_sampler(torch.tensor([1]), readout="mean")


def test_diverging_orbit_is_reported():
    lm = small_lm("ornn", seed=1)
    with torch.no_grad():
        lm.decoder.weight.fill_(float("inf"))
    with pytest.raises(ValueError, match="left the floats"):
        orbit_sampler(torch.tensor([1]), n_init=2, n_steps=4, n_transient=2)(lm)


def test_orthogonal_linear_feedback_map_has_zero_exponent():
    """With b = 0, modReLU is the identity: the feedback map is x -> W x + U E[w(x)], whose
    Jacobian (word held fixed) is the orthogonal W, so every exponent is 0."""
    lm = small_lm("ornn", seed=3)
    with torch.no_grad():
        lm.rnn.bias.zero_()
    lam = lyapunov_sampler(torch.tensor([4]), feedback=True, n_init=3, std=5.0, n_transient=10,
                           n_steps=50)(lm)
    assert lam.shape == (1, 3)
    # W is orthogonal up to its float32 initialisation: λ lies between the logs of its
    # extreme singular values, all within 1e-6 of 0
    sv = torch.linalg.svdvals(lm.rnn.recurrent_matrix().detach()).log()
    assert float(sv.abs().max()) < 1e-6
    assert bool((lam >= sv.min() - 1e-12).all() and (lam <= sv.max() + 1e-12).all())
    # a negative modReLU bias shrinks the state: a negative exponent, the check above can fail
    with torch.no_grad():
        lm.rnn.bias.fill_(-0.1)
    lam = lyapunov_sampler(torch.tensor([4]), feedback=True, n_init=3, std=5.0, n_transient=10,
                           n_steps=50)(lm)
    assert bool((lam < -1e-3).all() and (lam > -1).all())


def test_lstm_feedback_exponent_equals_direct_product():
    """λ_1 of the feedback map (lyapunov_sampler) equals (1/n) log ||J_n ... J_1 e_1|| computed
    by hand, the fed-back word held fixed in each Jacobian."""
    lm = small_lm("lstm", seed=5)
    n = 40
    lam = lyapunov_sampler(torch.tensor([6]), feedback=True, n_init=1, std=1.0, n_steps=n,
                           n_transient=0, seed=2)(lm)
    assert lam.shape == (1, 1)

    def step(x):  # the word from the primal values, outside the derivative
        with torch.no_grad():
            u = lm.feedback_input(lm.rnn.hidden(x.detach()))
        return lm.rnn.step_map(u, dtype=torch.float64)(x)

    x0 = lm.rnn.initial_state(1, std=1.0, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():  # the first step under the orbit input
        x = lm.rnn.step_map(lm.input_vectors(torch.tensor([6])), dtype=torch.float64)(x0)
    v = torch.eye(2 * H, dtype=torch.float64)[:, :1].unsqueeze(0)
    log_growth = 0.0
    words = set()
    for _ in range(n):
        words.add(int(lm.readout(lm.rnn.hidden(x)).argmax()))
        x_next, J = dynamics.jacobian(step, x)
        v = J @ v
        norm = v.norm()
        log_growth += math.log(float(norm))
        v = v / norm
        x = x_next
    assert abs(float(lam) - log_growth / n) < 1e-9
    assert abs(log_growth / n) > 1e-3  # not a trivial zero


@pytest.mark.parametrize("kind", ["lstm", "slstm", "ornn"])
@pytest.mark.parametrize("feedback", [False, True])
def test_lyapunov_along_the_orbit_is_the_same_orbit_and_the_same_exponent(kind, feedback):
    """orbit_sampler(lyapunov_steps=L) iterates the map once for both: its samples equal the
    plain sampler's (the layer's forward) to float rounding, and its λ_1 equals
    lyapunov_sampler's over the same last L steps of the same orbits, in the same dtype
    (lyapunov_sampler's feedback orbit takes its first step before its transient)."""
    lm = small_lm(kind, seed=4)
    if kind == "ornn":  # a shrinking modReLU, so that λ_1 is not the orthogonal W's 0
        with torch.no_grad():
            lm.rnn.bias.fill_(-0.01)
    ids = torch.tensor([3, 7])
    args = dict(feedback=feedback, n_init=3, std=2.0, n_steps=60, n_transient=40, seed=1,
                shared_init=False)
    plain = orbit_sampler(ids, **args)
    along = orbit_sampler(ids, **args, lyapunov_steps=25)
    y_plain, y_along = plain(lm), along(lm)
    assert plain.last_lyapunov is None
    assert y_along.shape == y_plain.shape == (2, 2, 3, 20, V)
    assert float((y_along - y_plain).abs().max()) < 1e-10
    lam = lyapunov_sampler(ids, feedback=feedback, n_init=3, std=2.0, n_steps=25,
                           n_transient=60 - 25 - int(feedback), seed=1, shared_init=False,
                           dtype=torch.float64)(lm)
    assert along.last_lyapunov.shape == (2, 3)
    assert float((along.last_lyapunov - lam).abs().max()) < 1e-10
    assert float(along.last_lyapunov.abs().max()) > 1e-4  # not a trivial zero


def test_lyapunov_along_the_orbit_bad_input_and_the_recorder():
    lm = small_lm("lstm")
    ids = torch.tensor([3])
    for bad in (0, -1, 20, 25, 2.5):
        with pytest.raises(ValueError, match="lyapunov_steps"):
            orbit_sampler(ids, n_init=2, n_steps=20, n_transient=10, lyapunov_steps=bad)
    sampler = orbit_sampler(ids, feedback=True, n_init=2, n_steps=20, n_transient=10,
                            lyapunov_steps=5)
    rec = OrbitRecorder(sampler, every=1)
    rec(lm, 1)
    rec(lm, 2)
    assert rec.lyapunov.shape == (2, 1, 2)
    assert torch.equal(rec.lyapunov[0], rec.lyapunov[1])  # seeded: the same at every call
    both = OrbitRecorder(sampler, every=1, lyapunov=lyapunov_sampler(ids, feedback=True))
    with pytest.raises(ValueError, match="lyapunov=None"):
        both(lm, 1)


# --------------------------------------------------------------------------- experiment
TINY = replace(LM.CPU, n_embed=8, n_hidden=8, epochs=2, batch_size=8, bptt=10, max_words=60,
               train_tokens=1200, eval_tokens=400, n_burn=10, n_keep=5, lyap_steps=10, n_init=2,
               orbit_tokens=("is", "Valkyria", "<unk>"))


@pytest.fixture(scope="module")
def tiny_corpus():
    return C.synthetic_corpus(n_train=3000, n_valid=600, n_test=600, n_words=200)


@pytest.mark.parametrize("kind", LanguageModel.KINDS)
def test_run_reduced_config(kind, tiny_corpus):
    res = LM.run(replace(TINY, model=kind), corpus=tiny_corpus, progress=False)
    s = res.summary
    assert s["tokens"] == ["is", "Valkyria", "<unk>"] and s["inputs"] == ["is"]
    assert s["vocabulary"] == 60 and s["source"].startswith("synthetic")
    assert math.isfinite(s["test_loss"]) and s["test_perplexity"] == pytest.approx(
        math.exp(s["test_loss"]))
    const, fb = res.recorders["constant"], res.recorders["feedback"]
    assert const.epochs == fb.epochs == [0, 1, 2]  # CPU config: the untrained model too
    assert const.samples.shape == (3, 1, 2, 5, 4)  # epochs, inputs, states, steps, 1 + tokens
    assert fb.samples.shape == (3, 1, 2, 5, 4)
    assert fb.lyapunov.shape == (3, 1, 2) and const.lyapunov is None
    assert bool(torch.isfinite(fb.lyapunov).all())
    h = res.history
    assert h["epoch"] == [1, 2] and len(h["val_loss"]) == 2
    assert 3.0 < h["val_loss"][-1] < math.log(60)  # better than the uniform model
    assert h["val_loss"][1] < h["val_loss"][0]  # and it improves
    assert h["train_items"][0] == (1200 // 8 - 1) * 8
    assert res.out is None


def test_missing_orbit_token_is_a_config_error(tiny_corpus):
    with pytest.raises(ConfigError, match="orbit_tokens") as err:
        LM.run(replace(TINY, orbit_tokens=("is", "absent-word")), corpus=tiny_corpus,
               progress=False)
    assert err.value.field == "orbit_tokens"
    with pytest.raises(ConfigError, match="orbit_inputs"):
        LM.run(replace(TINY, orbit_inputs=("absent-word",)), corpus=tiny_corpus, progress=False)


def test_paper_config_defaults():
    p = LM.PAPER
    assert p == LM.Config()
    assert (p.n_embed, p.n_hidden, p.dropout, p.bptt, p.batch_size) == (800, 800, 0.5, 70, 100)
    assert (p.lr, p.clip, p.patience, p.factor, p.std, p.n_burn) == (1e-3, 0.25, 7, 0.1, 100.0, 1500)
    assert (p.loss_reduction, p.stable_rule, p.epochs, p.n_keep, p.n_init) == (
        "sum", "rescale", 150, 100, 5)
    assert p.orbit_tokens == ("is", "Valkyria", "<unk>") and p.projection == "decoder_mean"
    # every difference of the chapter's configuration is a field
    diff = {k: (a, b) for k, a, b in experiments.differences(LM.PAPER, LM.CPU)}
    assert diff["n_hidden"] == (800, 64) and diff["stable_rule"] == ("rescale", "project")
    assert "patience" not in diff and "clip" not in diff
    LM.PAPER.validate()
    LM.CPU.validate()


@pytest.mark.parametrize("field, value", [
    ("bptt", 0), ("dropout", 1.0), ("factor", 1.0), ("orthogonal_lr_factor", 0.0),
    ("stable_rule", "clip"), ("loss_reduction", "median"), ("modrelu_bias", float("nan")),
    ("max_words", 0), ("n_random_inputs", -1), ("orbit_every", 0)])
def test_config_validation_names_the_field(field, value):
    with pytest.raises(ConfigError) as err:
        replace(LM.PAPER, **{field: value}).validate()
    assert err.value.field == field
    replace(LM.PAPER, max_words=None, modrelu_bias=-0.1).validate()  # None where allowed
    with pytest.raises(ConfigError) as err:
        replace(LM.PAPER, n_random_inputs=0, orbit_inputs=()).validate()
    assert err.value.field == "orbit_inputs"


def test_parameter_groups_and_modrelu_bias():
    ornn = LanguageModel("ornn", V, E, H, modrelu_bias=-0.05)
    assert bool((ornn.rnn.bias == -0.05).all())
    groups = LM.parameter_groups(ornn, 1e-3, 0.1)
    assert [g["lr"] for g in groups] == [1e-3, pytest.approx(1e-4)]
    n_params = sum(p.numel() for g in groups for p in g["params"])
    assert n_params == sum(p.numel() for p in ornn.parameters())
    assert len(LM.parameter_groups(LanguageModel("lstm", V, E, H), 1e-3, 0.1)) == 1
    # a modReLU bias is only for the oRNN
    assert not bool((LanguageModel("ornn", V, E, H).rnn.bias == -0.05).all())


def write_corpus(folder: Path, corpus) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for split in ("train", "valid", "test"):
        words = corpus.dictionary.decode(getattr(corpus, split))
        (folder / f"{split}.txt").write_text(" ".join(words).replace("<eos>", "\n"))
    return folder


def test_command_line_reduced_run(tmp_path):
    data = write_corpus(tmp_path / "wt2",
                        C.synthetic_corpus(n_train=2000, n_valid=500, n_test=500, n_words=100))
    argv = [
        "--model", "slstm", "--n-embed", "8", "--n-hidden", "8", "--orbit-at-start", "true",
        "--epochs", "1", "--batch-size", "8", "--train-tokens", "800", "--eval-tokens", "200",
        "--n-burn", "5", "--n-keep", "3", "--lyap-steps", "5", "--max-words", "50",
        "--n-init", "2", "--data", str(data), "--missing-train", "error", "--device", "cpu",
        "--no-progress", "--out", str(tmp_path / "out")]
    args = build_parser().parse_args(["language-model", *argv])
    cfg = config_from_args(LM.PAPER, args)
    assert cfg.model == "slstm" and cfg.n_hidden == 8 and cfg.lr == LM.PAPER.lr
    assert cfg.bptt == LM.PAPER.bptt and cfg.missing_train == "error" and cfg.orbit_at_start
    assert args.data == str(data)
    # the same run through the book's command line, python -m lib.experiments language-model
    assert main(["language-model", *argv]) == 0
    run = experiments.load_run(tmp_path / "out")
    info = run["run"]
    assert info["experiment"] == "language-model"
    assert info["summary"]["vocabulary"] == 50
    assert info["summary"]["source"].startswith(str(data))
    assert info["config"]["n_hidden"] == 8 and info["config"]["model"] == "slstm"
    assert set(info) >= {"commit", "device", "wall_seconds", "torch", "epochs_run"}
    orbits = run["orbits"]
    assert set(orbits) == {"constant", "constant_epochs", "feedback", "feedback_epochs",
                           "feedback_lyapunov", "constant_drift", "feedback_drift",
                           "constant_drift_epochs", "feedback_drift_epochs"}
    # n_burn 5 >= n_keep 3: the burn-in's convergence is measured, (records, inputs, states)
    assert orbits["constant_drift"].shape == orbits["constant"].shape[:3]
    assert bool((orbits["feedback_drift"] >= 0).all())
    assert orbits["constant_epochs"].tolist() == orbits["feedback_epochs"].tolist() == [0, 1]
    # epochs, inputs (2 random + "is"), states, steps, 1 + tokens
    assert orbits["constant"].shape == orbits["feedback"].shape == (2, 3, 2, 3, 4)
    assert orbits["feedback_lyapunov"].shape == (2, 3, 2)
    lm = LanguageModel("slstm", 50, 8, 8)
    lm.load_state_dict(load_checkpoint(tmp_path / "out" / "model.pt")["model"])


# --------------------------------------------------------------------------- exact resume
def _data_folder(tmp_path: Path) -> Path:
    """WikiText-2 (the shared valid/test splits) when present, else a synthetic corpus
    written to a folder (lib.corpus's own fallback would try a download first)."""
    found = C.find_wikitext2(missing_train="valid-as-train")
    if found is not None:
        return found
    return write_corpus(tmp_path / "synthetic",
                        C.synthetic_corpus(n_train=4000, n_valid=800, n_test=800, n_words=300))


TIMING = ("epoch_seconds", "record_seconds", "record_seconds_initial", "items_per_second")


def test_language_model_resume(tmp_path):
    """A run killed with SIGKILL after epoch 2 and rerun ends bit for bit where an
    uninterrupted run ends: model, history, orbits and λ_1."""
    t_start = time.perf_counter()
    epochs = 6
    args = ["language-model", "--n-embed", "8", "--n-hidden", "8", "--max-words", "200",
            "--train-tokens", "3000", "--eval-tokens", "600", "--epochs", str(epochs),
            "--bptt", "10", "--batch-size", "8", "--eval-batch-size", "4", "--n-burn", "10",
            "--n-keep", "4", "--lyap-steps", "5", "--n-init", "2", "--orbit-tokens", "is", "<unk>",
            "--no-progress", "--data", str(_data_folder(tmp_path))]
    full, cut = tmp_path / "full", tmp_path / "cut"
    # the uninterrupted run, in this process with one thread as the subprocesses below
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        assert main([*args, "--out", str(full)]) == 0
    finally:
        torch.set_num_threads(threads)

    cmd = [sys.executable, "-m", "lib.experiments", *args, "--out", str(cut)]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    ckpt, killed_at, seen = cut / "checkpoint.pt", None, None
    deadline = time.monotonic() + 240
    while proc.poll() is None and time.monotonic() < deadline:
        try:
            stamp = ckpt.stat().st_mtime_ns
            if stamp != seen:  # read it only when it was replaced (atomic rename)
                seen = stamp
                epoch = int(load_checkpoint(ckpt)["epoch"])
                if epoch >= 2:
                    proc.send_signal(signal.SIGKILL)
                    killed_at = epoch
                    break
        except (FileNotFoundError, CheckpointError):  # not written yet
            pass
        time.sleep(0.02)
    proc.communicate(timeout=60)
    assert killed_at is not None, "the run ended before its checkpoint reached epoch 2"
    assert proc.returncode == -signal.SIGKILL
    assert not (cut / "run.json").exists() and not (cut / "model.pt").exists()
    state = load_checkpoint(ckpt)
    assert 2 <= state["epoch"] < epochs  # interrupted in the middle

    rerun = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stderr
    a, b = experiments.load_run(full), experiments.load_run(cut)
    assert a["run"]["epochs_run"] == epochs
    assert b["run"]["epochs_run"] == epochs - state["epoch"]  # only the missing epochs ran

    ma = load_checkpoint(full / "model.pt")["model"]
    mb = load_checkpoint(cut / "model.pt")["model"]
    assert list(ma) == list(mb)
    for k in ma:
        assert torch.equal(ma[k], mb[k]), k
    ha, hb = a["history"], b["history"]
    assert set(ha) == set(hb)
    assert ha["epoch"] == hb["epoch"] == list(range(1, epochs + 1))
    for key in sorted(set(ha) - set(TIMING)):
        assert ha[key] == hb[key], key
    oa, ob = a["orbits"], b["orbits"]
    assert set(oa) == set(ob) == {"constant", "constant_epochs", "feedback", "feedback_epochs",
                                  "feedback_lyapunov", "constant_drift", "feedback_drift",
                           "constant_drift_epochs", "feedback_drift_epochs"}
    assert oa["constant_epochs"].tolist() == list(range(1, epochs + 1))
    for key in oa:
        assert torch.equal(oa[key], ob[key]), key
    assert a["run"]["summary"]["test_loss"] == b["run"]["summary"]["test_loss"]
    # the runs did train and record: distinct losses and orbits from epoch to epoch
    assert ha["train_loss"][-1] < ha["train_loss"][0]
    assert not torch.equal(oa["feedback"][0], oa["feedback"][-1])
    print(f"\ntest_language_model_resume: killed at epoch {killed_at}, "
          f"wall time {time.perf_counter() - t_start:.1f} s")
