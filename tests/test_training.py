"""Tests of lib.training and of the trainable modules of lib.models."""

from __future__ import annotations

import copy
import math
from pathlib import Path

import pytest
import torch
from torch import nn

from lib import corpus as C
from lib import dynamics, models
from lib.dynamics import lyapunov_spectrum
from lib.models import (ExpRNN, LSTM, STABLE_LSTM_BOUNDS, STABLE_RULES, LanguageModel,
                        SequenceClassifier, SequenceRegressor, StableLSTM, TorchLSTM,
                        apply_constraints, make_rnn, stable_lstm_projection_)
from lib.tasks import symbol_classification
from lib.training import (Batches, BPTTWindows, CheckpointError, OrbitRecorder, TruncatedBPTT,
                          accuracy, evaluate, load_checkpoint,
                          lyapunov_sampler, orbit_sampler, save_checkpoint, train)

WINDOWS = ((2, 6), (12, 16))


def small_problem(seed=0, n=60, T=20):
    u, y = symbol_classification(n, T, windows=WINDOWS, seed=seed)
    return u, y


def classifier(name="lstm", hidden=8, seed=0):
    torch.manual_seed(seed)
    return SequenceClassifier(make_rnn(name, 6, hidden), 4)


# ----------------------------------------------------------------------------- models
@pytest.mark.parametrize("name", ["lstm", "slstm", "ornn"])
def test_module_shapes_and_state(name):
    m = classifier(name)
    u, _ = small_problem()
    assert m(u).shape == (60, 4)
    assert m.outputs(u).shape == (20, 60, 4)
    h, x = m.rnn(u)
    assert h.shape == (20, 60, 8) and x.shape == (60, m.rnn.state_size)
    # the flat final state continues the sequence exactly
    h1, x1 = m.rnn(u[:11])
    h2, x2 = m.rnn(u[11:], x1)
    torch.testing.assert_close(torch.cat([h1, h2]), h, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name", ["lstm", "ornn"])
def test_step_map_reproduces_forward(name):
    m = classifier(name)
    u, _ = small_problem()
    x0 = m.rnn.initial_state(60, std=2.0, generator=torch.Generator().manual_seed(1))
    h, xT = m.rnn(u[:1].expand(5, -1, -1).contiguous(), x0)  # constant input, 5 steps
    step = m.rnn.step_map(u[0])
    x = x0
    for _ in range(5):
        x = step(x)
    torch.testing.assert_close(x, xT, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(m.rnn.hidden(x), h[-1], rtol=1e-5, atol=1e-5)


def test_lstm_step_map_equals_state_space_lstm():
    rnn = TorchLSTM(3, 5)
    ss = LSTM(3, 5)
    theta = ss.theta_from_torch(rnn.lstm).double()
    u = torch.randn(4, 3, dtype=torch.float64)
    x = torch.randn(4, 10, dtype=torch.float64)
    torch.testing.assert_close(rnn.step_map(u, dtype=torch.float64)(x), ss.f(x, u, theta))


def test_orthogonal_rnn_stays_orthogonal_during_training():
    m = classifier("ornn", hidden=16)
    u, y = small_problem()
    opt = torch.optim.Adam(m.parameters(), lr=0.05)
    for _ in range(20):
        opt.zero_grad()
        nn.functional.cross_entropy(m(u), y).backward()
        opt.step()
    W = m.rnn.recurrent_matrix().detach()
    err = (W @ W.T - torch.eye(16)).abs().max()
    assert err < 1e-5
    # it did move away from its initial value
    W0 = classifier("ornn", hidden=16).rnn.recurrent_matrix().detach()
    assert (W - W0).abs().max() > 1e-2


def _columns(lstm, H):
    """Column L1 norms of the constrained blocks: the four recurrent gates and f's input."""
    w_hh, w_ih = lstm.weight_hh_l0.detach(), lstm.weight_ih_l0.detach()
    blocks = {gate: w_hh[k * H:(k + 1) * H] for k, gate in enumerate("ifgo")}
    blocks["f_input"] = w_ih[H:2 * H]
    return {key: w.abs().sum(0) for key, w in blocks.items()}


def _lstm_with_columns_inside_and_outside(H=10, seed=0):
    torch.manual_seed(seed)
    lstm = nn.LSTM(6, H)
    with torch.no_grad():
        lstm.weight_hh_l0.mul_(torch.linspace(0.01, 5, H))  # some columns inside, some outside
        lstm.weight_ih_l0[H:2 * H].mul_(torch.linspace(0.01, 3, 6))
        lstm.weight_hh_l0[:H, H - 1] = 0.0  # a zero column of gate i
    return lstm


def test_stable_lstm_projection_meets_bounds_exactly():
    """rule="project": columns above the bound are scaled onto it, the others untouched."""
    lstm = _lstm_with_columns_inside_and_outside()
    before = copy.deepcopy(lstm)
    stable_lstm_projection_(lstm, rule="project")
    H = 10
    n0s, ns = _columns(before, H), _columns(lstm, H)
    for key, bound in STABLE_LSTM_BOUNDS.items():
        n0, n = n0s[key], ns[key]
        assert bool((n <= bound * (1 + 1e-6)).all()), key
        outside = n0 > bound
        assert outside.any() and (~outside).any(), key
        torch.testing.assert_close(n[outside], torch.full_like(n[outside], bound))
        torch.testing.assert_close(n[~outside], n0[~outside], rtol=0, atol=0)  # inside: untouched
    for k, gate in enumerate("ifgo"):
        w0 = before.weight_hh_l0[k * H:(k + 1) * H].detach()
        w = lstm.weight_hh_l0[k * H:(k + 1) * H].detach()
        n0 = w0.abs().sum(0)
        inside = n0 <= STABLE_LSTM_BOUNDS[gate]
        assert torch.equal(w[:, inside], w0[:, inside])
        # a projection along rays: the direction of each (nonzero) column is kept
        nz = n0 > 0
        torch.testing.assert_close(w[:, nz] / w.abs().sum(0)[nz], w0[:, nz] / n0[nz])
    # the other blocks of weight_ih (gates i, g, o) are not constrained
    for rows in (slice(0, H), slice(2 * H, 4 * H)):
        assert torch.equal(lstm.weight_ih_l0[rows], before.weight_ih_l0[rows])
    # idempotent
    snap = lstm.weight_hh_l0.detach().clone()
    stable_lstm_projection_(lstm, rule="project")
    torch.testing.assert_close(lstm.weight_hh_l0.detach(), snap)


def test_stable_lstm_rescale_sets_every_column_to_its_bound():
    """rule="rescale" (the authors' code, the default): every nonzero column to exactly its
    bound, the ones inside scaled up as well; directions kept; a zero column stays zero."""
    assert STABLE_RULES == ("rescale", "project")
    lstm = _lstm_with_columns_inside_and_outside()
    before = copy.deepcopy(lstm)
    stable_lstm_projection_(lstm)  # default rule
    H = 10
    n0s, ns = _columns(before, H), _columns(lstm, H)
    for key, bound in STABLE_LSTM_BOUNDS.items():
        n0, n = n0s[key], ns[key]
        nz = n0 > 0
        assert (n0[nz] < bound).any() and (n0[nz] > bound).any(), key  # both kinds present
        torch.testing.assert_close(n[nz], torch.full_like(n[nz], bound))
        assert bool((n[~nz] == 0).all())
    assert not bool(n0s["i"][H - 1]) and not bool(ns["i"][H - 1])  # the zero column stayed zero
    w0 = before.weight_hh_l0.detach()
    w = lstm.weight_hh_l0.detach()
    assert torch.equal(torch.sign(w), torch.sign(w0))
    # idempotent
    snap = w.clone()
    stable_lstm_projection_(lstm, rule="rescale")
    torch.testing.assert_close(lstm.weight_hh_l0.detach(), snap)
    with pytest.raises(ValueError, match="rule"):
        stable_lstm_projection_(lstm, rule="clip")
    with pytest.raises(ValueError, match="bounds"):
        stable_lstm_projection_(lstm, {**STABLE_LSTM_BOUNDS, "g": 0.0})


def test_stable_lstm_construction_depends_on_the_rule():
    """"rescale" acts only after optimizer steps: construction leaves torch's initial
    weights alone; "project" projects at construction."""
    torch.manual_seed(3)
    plain = TorchLSTM(6, 8)
    torch.manual_seed(3)
    rescale = StableLSTM(6, 8, rule="rescale")
    torch.manual_seed(3)
    project = StableLSTM(6, 8, rule="project")
    assert StableLSTM(6, 8).rule == "rescale"
    for a, b in zip(plain.lstm.parameters(), rescale.lstm.parameters()):
        assert torch.equal(a, b)
    n_plain, n_project = _columns(plain.lstm, 8), _columns(project.lstm, 8)
    for key, bound in STABLE_LSTM_BOUNDS.items():
        assert bool((n_plain[key] > bound * 1.01).any()), key  # torch's init breaks the bound
        assert bool((n_project[key] <= bound * (1 + 1e-6)).all()), key
    assert not torch.equal(plain.lstm.weight_hh_l0, project.lstm.weight_hh_l0)
    assert make_rnn("slstm", 6, 8, stable_rule="project").rule == "project"
    assert make_rnn("slstm", 6, 8).rule == "rescale"
    with pytest.raises(ValueError, match="rule"):
        StableLSTM(6, 8, rule="clip")
    with pytest.raises(ValueError, match="rule"):
        make_rnn("slstm", 6, 8, stable_rule="clip")


@pytest.mark.parametrize("rule", STABLE_RULES)
def test_stable_lstm_stays_constrained_in_training(rule):
    torch.manual_seed(0)
    m = SequenceClassifier(StableLSTM(6, 8, rule=rule), 4)
    u, y = small_problem()
    train(m, nn.CrossEntropyLoss(), Batches(u, y, 20), epochs=2, lr=0.01,
          post_step=apply_constraints, progress=False)
    norms = _columns(m.rnn.lstm, 8)
    below = []
    for key, bound in STABLE_LSTM_BOUNDS.items():
        n = norms[key]
        assert bool((n <= bound * (1 + 1e-5)).all()), key
        if rule == "rescale":  # after a step: every column exactly at its bound
            torch.testing.assert_close(n, torch.full_like(n, bound))
        below.append(bool((n < bound * (1 - 1e-3)).any()))
    if rule == "project":  # "at most": some columns end strictly inside
        assert any(below)


def test_make_rnn_unknown_name():
    with pytest.raises(ValueError, match="model must be one of"):
        make_rnn("gru2", 6, 8)
    with pytest.raises(ValueError, match="rnn"):
        SequenceClassifier(nn.LSTM(6, 8), 4)
    assert isinstance(make_rnn("ornn", 6, 8), ExpRNN)


# ----------------------------------------------------------------------------- data
def test_batches_reproducible_and_complete():
    u, y = small_problem(n=25)
    b = Batches(u, y, 10, seed=3)
    b.set_epoch(4)
    first = [yy.clone() for _, yy in b]
    assert [len(t) for t in first] == [10, 10, 5]
    assert torch.equal(torch.sort(torch.cat(first)).values, torch.sort(y).values)
    b2 = Batches(u, y, 10, seed=3)
    b2.set_epoch(4)
    assert all(torch.equal(a, c) for a, (_, c) in zip(first, b2))
    b2.set_epoch(5)
    assert not all(torch.equal(a, c) for a, (_, c) in zip(first, b2))
    with pytest.raises(ValueError, match="targets"):
        Batches(u, y[:5], 10)


def test_bptt_windows_cover_the_stream_in_order():
    data = torch.arange(23 * 3).reshape(23, 3)
    w = BPTTWindows(data, 5)
    wins = list(w)
    assert len(w) == len(wins) == 5  # 22 targets in windows of 5, 5, 5, 5, 2
    assert [x.shape[0] for x, _ in wins] == [5, 5, 5, 5, 2]
    for i, (x, y) in enumerate(wins):
        assert torch.equal(x, data[5 * i:5 * i + x.shape[0]])
        assert torch.equal(y, data[5 * i + 1:5 * i + 1 + x.shape[0]])  # the next tokens
    assert torch.equal(torch.cat([x for x, _ in wins]), data[:-1])
    assert torch.equal(torch.cat([y for _, y in wins]), data[1:])
    # lib.corpus.get_batch cuts the same windows
    for i, (x, y) in zip(range(0, 22, 5), wins):
        gx, gy = C.get_batch(data, i, 5)
        assert torch.equal(gx, x) and torch.equal(gy, y)
    with pytest.raises(ValueError, match="bptt"):
        BPTTWindows(data, 0)
    with pytest.raises(ValueError, match="shape"):
        BPTTWindows(data[:, 0], 5)
    with pytest.raises(ValueError, match="shape"):
        BPTTWindows(data[:1], 5)
    with pytest.raises(ValueError, match="torch.long"):
        BPTTWindows(data.float(), 5)


# ----------------------------------------------------------------------------- training
def test_training_learns_and_records_history():
    u, y = small_problem(n=80)
    m = classifier()
    res = train(m, nn.CrossEntropyLoss(), Batches(u, y, 20), val_data=Batches(u, y, 80, shuffle=False),
                epochs=8, lr=0.03, metrics={"accuracy": accuracy}, progress=True)
    h = res.history
    assert h["epoch"] == list(range(1, 9))
    for key in ("train_loss", "train_accuracy", "val_loss", "val_accuracy", "lr", "epoch_seconds",
                "record_seconds", "train_items", "val_items", "items_per_second"):
        assert len(h[key]) == 8, key
    assert h["train_items"] == [80] * 8 and h["val_items"] == [80] * 8
    assert all(r > 0 for r in h["items_per_second"])
    assert h["train_loss"][-1] < h["train_loss"][0]
    ev = evaluate(m, Batches(u, y, 80, shuffle=False), nn.CrossEntropyLoss(), metrics={"accuracy": accuracy})
    assert ev["loss"] == pytest.approx(h["val_loss"][-1], rel=1e-6)
    assert ev["accuracy"] == pytest.approx(h["val_accuracy"][-1], rel=1e-6)
    assert ev["items"] == 80
    assert m.training  # evaluate() restores the mode


def test_schedulers():
    u, y = small_problem()
    res = train(classifier(), nn.CrossEntropyLoss(), Batches(u, y, 30), epochs=5, lr=0.01,
                scheduler={"name": "multistep", "milestones": [2, 4], "gamma": 0.5}, progress=False)
    assert res.history["lr"] == pytest.approx([0.01, 0.01, 0.005, 0.005, 0.0025])
    # plateau: no epoch improves the loss by half (threshold), so the rate is cut
    res = train(classifier(), nn.CrossEntropyLoss(), Batches(u, y, 30, shuffle=False), epochs=3,
                lr=1e-3, scheduler={"name": "plateau", "patience": 0, "factor": 0.1,
                                    "threshold": 0.5}, progress=False)
    assert res.history["lr"] == pytest.approx([1e-3, 1e-3, 1e-4])
    with pytest.raises(ValueError, match="scheduler"):
        train(classifier(), nn.CrossEntropyLoss(), Batches(u, y, 30), epochs=1,
              scheduler={"name": "cosine"}, progress=False)


def test_bad_training_arguments():
    u, y = small_problem()
    for kwargs, name in (({"epochs": 0}, "epochs"), ({"epochs": 1, "clip": -1.0}, "clip"),
                         ({"epochs": 1, "lr": 0.0}, "lr"), ({"epochs": 1, "optimizer": "lbfgs"}, "optimizer")):
        with pytest.raises(ValueError, match=name):
            train(classifier(), nn.CrossEntropyLoss(), Batches(u, y, 30), progress=False, **kwargs)
    with pytest.raises(ValueError, match="progress"):
        train(classifier(), nn.CrossEntropyLoss(), Batches(u, y, 30), epochs=1, progress="bar")


# ----------------------------------------------------------------------------- truncated BPTT
def _lm_data(n_words=80):
    corpus = C.synthetic_corpus(n_train=1500, n_valid=300, n_test=300, n_words=n_words)
    return len(corpus.dictionary), C.batchify(corpus.train, 6), C.batchify(corpus.valid, 3)


def test_truncated_bptt_in_train_equals_a_hand_written_loop():
    """TruncatedBPTT + BPTTWindows in train() is truncated BPTT: one epoch equals the loop
    of the PyTorch word-language-model example, step for step (dropout included)."""
    V, data, val = _lm_data()
    bptt, lr, clip = 7, 0.01, 0.25
    lm_a = LanguageModel("lstm", V, 6, 8, dropout=0.2, seed=1)
    torch.manual_seed(5)
    res = train(lm_a, nn.CrossEntropyLoss(), BPTTWindows(data, bptt), epochs=1, lr=lr, clip=clip,
                val_data=BPTTWindows(val, bptt), forward=TruncatedBPTT(), progress=False)

    lm_b = LanguageModel("lstm", V, 6, 8, dropout=0.2, seed=1)
    torch.manual_seed(5)
    params = [p for p in lm_b.parameters() if p.requires_grad]
    opt = torch.optim.Adam(params, lr=lr)
    lm_b.train()
    state = lm_b.init_state(data.shape[1])
    total, n = 0.0, 0
    for i in range(0, data.shape[0] - 1, bptt):
        x, y = C.get_batch(data, i, bptt)
        opt.zero_grad(set_to_none=True)
        logits, state = lm_b(x, state.detach())
        loss = nn.functional.cross_entropy(logits.reshape(-1, V), y.reshape(-1))
        loss.backward()
        nn.utils.clip_grad_norm_(params, clip)
        opt.step()
        total += float(loss.detach()) * y.numel()
        n += y.numel()
    lm_b.eval()
    with torch.no_grad():  # evaluation: the whole stream from the zero state
        logits, _ = lm_b(val[:-1], lm_b.init_state(val.shape[1]))
        val_loss = float(nn.functional.cross_entropy(logits.reshape(-1, V), val[1:].reshape(-1)))

    h = res.history
    assert h["train_items"] == [n] == [(data.shape[0] - 1) * data.shape[1]]
    assert h["train_loss"][0] == total / n  # the same operations in the same order
    assert h["val_loss"][0] == pytest.approx(val_loss, rel=1e-5, abs=0)
    assert h["val_items"] == [(val.shape[0] - 1) * val.shape[1]]
    assert h["items_per_second"][0] > 0
    for (k, a), b in zip(lm_a.state_dict().items(), lm_b.state_dict().values()):
        assert torch.equal(a, b), k
    moved = max(float((a - b).abs().max()) for a, b in zip(
        lm_b.state_dict().values(),
        LanguageModel("lstm", V, 6, 8, dropout=0.2, seed=1).state_dict().values()))
    assert moved > 1e-3  # the loop did train


def test_truncated_bptt_carries_the_state_and_resets_it():
    V, data, _ = _lm_data()
    lm = LanguageModel("lstm", V, 6, 8, dropout=0.0, seed=2).double().eval()
    fwd = TruncatedBPTT()
    loss_fn = nn.CrossEntropyLoss()
    with torch.no_grad():
        whole, last = lm(data[:-1], lm.init_state(data.shape[1]).double())
        logits = []
        for batch in BPTTWindows(data, 5):
            _, out, _ = fwd(lm, batch, loss_fn)
            logits.append(out)
    torch.testing.assert_close(torch.cat(logits), whole, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(fwd.state, last, rtol=1e-12, atol=1e-12)
    assert not fwd.state.requires_grad
    fwd.reset()
    assert fwd.state is None
    # evaluate() resets it: the same loss twice, from the zero state each time
    a = evaluate(lm, BPTTWindows(data, 5), loss_fn, forward=fwd)
    b = evaluate(lm, BPTTWindows(data, 5), loss_fn, forward=fwd)
    assert a == b
    ref = float(nn.functional.cross_entropy(whole.reshape(-1, V), data[1:].reshape(-1)))
    assert a["loss"] == pytest.approx(ref, rel=1e-12)
    assert a["items"] == data[1:].numel()


def test_loss_reduction_sum_and_mean_give_the_same_history():
    """The history's losses are means per target entry whatever the loss' reduction."""
    V, data, val = _lm_data()
    lm = LanguageModel("lstm", V, 6, 8, dropout=0.0, seed=3).double()
    ev = {r: evaluate(lm, BPTTWindows(data, 7), nn.CrossEntropyLoss(reduction=r),
                      forward=TruncatedBPTT()) for r in ("sum", "mean")}
    assert ev["sum"]["items"] == ev["mean"]["items"] == data[1:].numel()
    assert ev["sum"]["loss"] == pytest.approx(ev["mean"]["loss"], rel=1e-12)
    with torch.no_grad():
        logits, _ = lm.eval()(data[:-1], lm.init_state(6).double())
    ref = float(nn.functional.cross_entropy(logits.reshape(-1, V), data[1:].reshape(-1)))
    assert ev["mean"]["loss"] == pytest.approx(ref, rel=1e-12)
    assert ev["mean"]["loss"] < math.log(V) + 0.1 and ev["mean"]["loss"] > 0.5 * math.log(V)
    # the training pass too: with a learning rate of zero both reductions see the same model
    hist = {}
    for r in ("sum", "mean"):
        res = train(lm, nn.CrossEntropyLoss(reduction=r), BPTTWindows(data, 7), epochs=2,
                    forward=TruncatedBPTT(), val_data=BPTTWindows(val, 7), progress=False,
                    optimizer=lambda params: torch.optim.SGD(params, lr=0.0))
        hist[r] = res.history
    for key in ("train_loss", "val_loss", "train_items", "val_items"):
        assert hist["sum"][key] == pytest.approx(hist["mean"][key], rel=1e-12), key
    assert hist["mean"]["train_loss"][0] == pytest.approx(ref, rel=1e-12)


# ----------------------------------------------------------------------------- orbits
def test_orbit_sampler_shapes_and_batching():
    m = classifier("lstm")
    inputs = torch.eye(6)
    sample = orbit_sampler(inputs, n_init=3, std=100.0, n_steps=30, n_transient=10)
    s = sample(m)
    assert s.shape == (2, 6, 3, 20, 4)
    torch.testing.assert_close(s[1, :, :, 1:], s[0, :, :, 1:] - s[0, :, :, :-1])
    # input 2, initial state 1, run on its own, gives the same steady-state outputs
    x0 = m.rnn.initial_state(3, std=100.0, generator=torch.Generator().manual_seed(0))
    y = m.outputs(inputs[2].expand(30, 1, 6), x0[1:2])
    torch.testing.assert_close(s[0, 2, 1], y[10:, 0].detach(), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(s[1, 2, 1, 0], (y[10, 0] - y[9, 0]).detach(), rtol=1e-5, atol=1e-5)
    assert torch.equal(sample(m), s)  # the same initial states every call
    # without differences: the outputs alone, the same values
    plain = orbit_sampler(inputs, n_init=3, std=100.0, n_steps=30, n_transient=10,
                          differences=False)(m)
    assert plain.shape == (6, 3, 20, 4)
    assert torch.equal(plain, s[0])
    assert m.training  # the sampler runs in eval mode and restores the mode
    with pytest.raises(ValueError, match="n_transient"):
        orbit_sampler(inputs, n_steps=10, n_transient=10)
    with pytest.raises(ValueError, match="n_transient"):
        orbit_sampler(inputs, n_steps=10, n_transient=0)  # differences need one step
    with pytest.raises(ValueError, match="inputs"):
        orbit_sampler(torch.ones(6))(m)  # not (P, Nu): refused by input_vectors
    with pytest.raises(ValueError, match="inputs"):
        orbit_sampler(torch.ones(0, 6))
    with pytest.raises(ValueError, match="std"):
        orbit_sampler(inputs, std=-1.0)
    with pytest.raises(ValueError, match="feedback mode"):
        orbit_sampler(inputs, feedback=True, n_steps=5, n_transient=2)(m)


def test_orbit_sampler_shared_init():
    """shared_init=True: the same n_init states under every input; False: one state per
    (input, initial state) pair. Two equal orbit inputs tell them apart."""
    m = classifier("lstm")
    inputs = torch.eye(6)[[1, 1, 4]]
    kw = dict(n_init=2, std=3.0, n_steps=12, n_transient=4, seed=7)
    shared = orbit_sampler(inputs, shared_init=True, **kw)(m)
    separate = orbit_sampler(inputs, shared_init=False, **kw)(m)
    assert shared.shape == separate.shape == (2, 3, 2, 8, 4)
    assert torch.equal(shared[:, 0], shared[:, 1])  # same input, same states: same orbits
    assert not torch.allclose(separate[:, 0], separate[:, 1])  # same input, other states
    assert not torch.allclose(shared[:, 0, 0], shared[:, 0, 1])  # the K states differ
    # the separate states are the first P*K draws of the seed, input-major
    x0 = m.rnn.initial_state(6, std=3.0, generator=torch.Generator().manual_seed(7)).reshape(3, 2, -1)
    y = m.outputs(inputs[2].expand(12, 1, 6), x0[2, 1:2])
    torch.testing.assert_close(separate[0, 2, 1], y[4:, 0].detach(), rtol=1e-5, atol=1e-5)


def _initial_states(rnn, P, K, std, seed, shared):
    gen = torch.Generator().manual_seed(seed)
    if shared:
        return rnn.initial_state(K, std=std, generator=gen).repeat(P, 1)
    return rnn.initial_state(P * K, std=std, generator=gen)


def _constant_input_loop(model, vectors, *, K, std, n_steps, n_transient, seed, shared):
    """The reference: a plain Python loop of model.rnn.step_map, one input at a time."""
    P = vectors.shape[0]
    x0 = _initial_states(model.rnn, P, K, std, seed, shared).reshape(P, K, -1)
    out = []
    for i in range(P):
        step = model.rnn.step_map(vectors[i])
        x, kept = x0[i], []
        for t in range(n_steps):
            x = step(x)
            if t >= n_transient:
                kept.append(model.readout(model.rnn.hidden(x)))
        out.append(torch.stack(kept, 1))  # (K, T', Ny)
    return torch.stack(out)


@pytest.mark.parametrize("shared", [True, False])
@pytest.mark.parametrize("name", ["lstm", "slstm", "ornn"])
def test_constant_input_orbits_equal_a_step_map_loop(name, shared):
    m = classifier(name).double()
    inputs = torch.eye(6)[[0, 3, 5]].double()
    kw = dict(n_init=2, std=2.0, n_steps=15, n_transient=6, seed=3)
    s = orbit_sampler(inputs, shared_init=shared, differences=False, **kw)(m)
    with torch.no_grad():
        ref = _constant_input_loop(m, inputs, K=2, std=2.0, n_steps=15, n_transient=6, seed=3,
                                   shared=shared)
    assert s.dtype == torch.float64 and s.shape == ref.shape == (3, 2, 9, 4)
    torch.testing.assert_close(s, ref, rtol=1e-10, atol=1e-10)
    assert ref.std() > 1e-3  # the orbits are not trivial


@pytest.mark.parametrize("kind", LanguageModel.KINDS)
def test_language_model_constant_orbits_equal_a_step_map_loop(kind):
    lm = LanguageModel(kind, 30, 6, 8, dropout=0.3, seed=1).double()
    ids = torch.tensor([4, 17])
    kw = dict(n_init=3, std=2.0, n_steps=14, n_transient=5, seed=2)
    s = orbit_sampler(ids, differences=False, **kw)(lm)
    with torch.no_grad():
        ref = _constant_input_loop(lm, lm.input_vectors(ids), K=3, std=2.0, n_steps=14,
                                   n_transient=5, seed=2, shared=True)
    assert s.shape == ref.shape == (2, 3, 9, 30)
    torch.testing.assert_close(s, ref, rtol=1e-10, atol=1e-10)
    assert lm.training  # eval mode (no dropout) only while sampling


@pytest.mark.parametrize("shared", [True, False])
@pytest.mark.parametrize("kind", LanguageModel.KINDS)
def test_feedback_orbits_equal_a_loop_feeding_back_the_argmax(kind, shared):
    """Feedback mode against the language model's own forward, one word at a time."""
    lm = LanguageModel(kind, 30, 6, 8, dropout=0.0, seed=4).double().eval()
    ids = torch.tensor([3, 11])
    P, K, n_steps, n_tr = 2, 3, 16, 6
    s = orbit_sampler(ids, feedback=True, differences=False, n_init=K, std=2.0,
                      n_steps=n_steps, n_transient=n_tr, seed=5, shared_init=shared)(lm)
    assert s.shape == (P, K, n_steps - n_tr, 30)
    x = _initial_states(lm.rnn, P, K, 2.0, 5, shared)
    words = ids.repeat_interleave(K)
    kept, switched = [], False
    with torch.no_grad():
        for t in range(n_steps):
            logits, x = lm(words.view(1, -1), x)
            if t >= n_tr:
                kept.append(logits[0])
            new = logits[0].argmax(-1)
            switched |= bool((new != words).any())
            words = new
    ref = torch.stack(kept, 1).reshape(P, K, n_steps - n_tr, 30)
    torch.testing.assert_close(s, ref, rtol=1e-9, atol=1e-9)
    assert switched  # the fed-back words do change: a constant-input run would differ
    const = orbit_sampler(ids, differences=False, n_init=K, std=2.0, n_steps=n_steps,
                          n_transient=n_tr, seed=5, shared_init=shared)(lm)
    assert not torch.allclose(const, s)


def test_lyapunov_sampler_matches_lib_dynamics():
    m = classifier("lstm")
    inputs = torch.eye(6)[:2]
    lam = lyapunov_sampler(inputs, n_init=2, std=1.0, n_steps=40, n_transient=10, seed=4)(m)
    assert lam.shape == (2, 2) and lam.dtype == torch.float64
    ss = LSTM(6, 8)
    theta = ss.theta_from_torch(m.rnn.lstm).double()
    x0 = m.rnn.initial_state(2, std=1.0, generator=torch.Generator().manual_seed(4)).double()
    for i in range(2):
        ref = lyapunov_spectrum(ss.autonomous(theta, inputs[i].double()), x0, 40, n_transient=10,
                                n_exponents=1)[..., 0]
        torch.testing.assert_close(lam[i], ref)
        # lib.dynamics.largest_lyapunov is the same definition
        torch.testing.assert_close(
            dynamics.largest_lyapunov(ss.autonomous(theta, inputs[i].double()), x0, 40,
                                      n_transient=10), ref, rtol=0, atol=0)
    # separate initial states per input: other states, other (finite) exponents
    sep = lyapunov_sampler(inputs, n_init=2, std=1.0, n_steps=40, n_transient=10, seed=4,
                           shared_init=False)(m)
    assert sep.shape == (2, 2) and bool(torch.isfinite(sep).all())
    assert not torch.equal(sep, lam)
    with pytest.raises(ValueError, match="n_steps"):
        lyapunov_sampler(inputs, n_steps=0)
    with pytest.raises(ValueError, match="inputs"):
        lyapunov_sampler(torch.ones(0, 6))


def test_orbit_recorder_epochs():
    u, y = small_problem()
    rec = OrbitRecorder(orbit_sampler(torch.eye(6), n_init=2, n_steps=12, n_transient=4),
                        every=2, lyapunov=lyapunov_sampler(torch.eye(6), n_init=1, n_steps=5))
    late = OrbitRecorder(orbit_sampler(torch.eye(6), n_init=1, n_steps=6, n_transient=2),
                         every=3, at_start=False)
    res = train(classifier(), nn.CrossEntropyLoss(), Batches(u, y, 30), epochs=5,
                recorders=[rec, late], progress=False)
    assert rec.epochs == [0, 2, 4, 5]
    assert late.epochs == [3, 5]
    assert rec.samples.shape == (4, 2, 6, 2, 8, 4)
    assert rec.lyapunov.shape == (4, 6, 1)
    assert late.lyapunov is None and late.samples.shape == (2, 2, 6, 1, 4, 4)
    assert len(rec.seconds) == 4 and all(s > 0 for s in rec.seconds)
    assert rec.folder is None  # no checkpoint: the records stay in memory
    assert res.recorders == [rec, late]
    with pytest.raises(ValueError, match="sampler"):
        OrbitRecorder(None)
    with pytest.raises(ValueError, match="every"):
        OrbitRecorder(lambda m: torch.zeros(1), every=0)
    with pytest.raises(ValueError, match="no records"):
        OrbitRecorder(lambda m: torch.zeros(1)).samples


# ----------------------------------------------------------------------------- checkpoints
def _run(tmp_path, name, epochs, *, model_name="lstm", fail_at=None, ckpt="ck.pt"):
    torch.manual_seed(0)
    m = classifier(model_name, seed=0)
    m.dropout = nn.Dropout(0.3)  # randomness inside the loop: the RNG state must be restored
    u, y = small_problem(n=40)

    def forward(model, batch, loss_fn):
        inputs, targets = batch
        out = model.dropout(model(inputs))
        return loss_fn(out, targets), out, targets

    rec = OrbitRecorder(orbit_sampler(torch.eye(6), n_init=2, n_steps=10, n_transient=3))

    def boom(epoch, history):
        if epoch == fail_at:
            raise KeyboardInterrupt("killed")

    res = train(m, nn.CrossEntropyLoss(), Batches(u, y, 16, seed=1), epochs=epochs, lr=0.02,
                forward=forward, metrics={"accuracy": accuracy}, recorders=[rec],
                scheduler={"name": "multistep", "milestones": [2], "gamma": 0.5},
                callbacks=[boom], checkpoint=tmp_path / ckpt, config={"name": name}, progress=False)
    return m, res, rec


def test_resume_is_bit_identical(tmp_path):
    m_full, res_full, rec_full = _run(tmp_path / "a", "run", 5)
    with pytest.raises(KeyboardInterrupt):
        _run(tmp_path / "b", "run", 5, fail_at=2)
    state = load_checkpoint(tmp_path / "b" / "ck.pt")
    assert state["epoch"] == 2
    # the records live beside the checkpoint, one file per record; the checkpoint holds
    # only their epochs
    assert state["recorders"][0]["epochs"] == [0, 1, 2]
    assert "samples" not in state["recorders"][0]
    folder = tmp_path / "b" / "ck_records" / "recorder0"
    assert sorted(p.name for p in folder.iterdir()) == [f"epoch_{e:06d}.pt" for e in (0, 1, 2)]
    m_res, res_res, rec_res = _run(tmp_path / "b", "run", 5)
    assert res_res.epochs_run == 3
    assert rec_res.folder == folder
    for (k, a), (_, b) in zip(m_full.state_dict().items(), m_res.state_dict().items()):
        assert torch.equal(a, b), k
    timing = {"epoch_seconds", "record_seconds", "record_seconds_initial", "items_per_second"}
    assert set(res_full.history) == set(res_res.history)
    for key in set(res_full.history) - timing:
        assert res_full.history[key] == res_res.history[key], key
    assert rec_full.epochs == rec_res.epochs == [0, 1, 2, 3, 4, 5]
    assert torch.equal(rec_full.samples, rec_res.samples)
    # the records of epochs 0-2 were read back from their files: tamper with one and the
    # resumed recorder sees it
    rec = load_checkpoint(folder / "epoch_000001.pt")
    save_checkpoint(folder / "epoch_000001.pt", {**rec, "samples": rec["samples"] + 1})
    again = OrbitRecorder(lambda m: torch.zeros(1))
    again.folder = folder
    again.load_state_dict(load_checkpoint(tmp_path / "b" / "ck.pt")["recorders"][0])
    assert again.epochs == [0, 1, 2, 3, 4, 5]
    assert torch.equal(again.samples[1], rec_full.samples[1] + 1)
    assert torch.equal(again.samples[3], rec_full.samples[3])
    # without its folder, a checkpoint whose records live in files is refused
    with pytest.raises(CheckpointError, match="folder"):
        OrbitRecorder(lambda m: torch.zeros(1)).load_state_dict(
            load_checkpoint(tmp_path / "b" / "ck.pt")["recorders"][0])


def test_checkpoint_size_does_not_grow_with_the_records(tmp_path):
    u, y = small_problem(n=40)
    rec = OrbitRecorder(orbit_sampler(torch.eye(6), n_init=4, n_steps=90, n_transient=10),
                        lyapunov=lyapunov_sampler(torch.eye(6), n_init=1, n_steps=5))
    ckpt = tmp_path / "ck.pt"
    sizes = {}
    train(classifier(), nn.CrossEntropyLoss(), Batches(u, y, 20), epochs=6, recorders=[rec],
          checkpoint=ckpt, progress=False,
          callbacks=[lambda epoch, history: sizes.setdefault(epoch, ckpt.stat().st_size)])
    record_size = (tmp_path / "ck_records" / "recorder0" / "epoch_000003.pt").stat().st_size
    n_bytes = 4 * rec.samples[0].numel()  # float32 samples, 60 KB a record
    assert n_bytes < record_size < n_bytes + 4096
    # four more records would add > 240 KB if the checkpoint held them; it holds their
    # epochs, and the history grows by a few numbers per epoch
    assert abs(sizes[6] - sizes[2]) < 600, sizes
    assert rec.epochs == list(range(7))


def test_checkpoint_corruption_and_mismatch(tmp_path):
    path = save_checkpoint(tmp_path / "c.pt", {"config": {"a": 1}, "x": torch.arange(5.0)})
    assert torch.equal(load_checkpoint(path)["x"], torch.arange(5.0))
    raw = bytearray(path.read_bytes())
    raw[-20] ^= 0xFF  # one flipped byte in the payload
    bad = tmp_path / "bad.pt"
    bad.write_bytes(bytes(raw))
    with pytest.raises(CheckpointError, match="corrupted"):
        load_checkpoint(bad)
    bad.write_bytes(path.read_bytes()[:-100])  # truncated
    with pytest.raises(CheckpointError, match="corrupted"):
        load_checkpoint(bad)
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="header"):
        load_checkpoint(bad)
    with pytest.raises(FileNotFoundError):
        load_checkpoint(tmp_path / "missing.pt")
    with pytest.raises(CheckpointError, match="different run"):
        load_checkpoint(path, expected={"a": 2})
    # a checkpoint of another model
    save_checkpoint(tmp_path / "m.pt", {"model": classifier("lstm").state_dict()})
    with pytest.raises(CheckpointError, match="does not match the model"):
        load_checkpoint(tmp_path / "m.pt", model=classifier("ornn"))
    with pytest.raises(CheckpointError, match="does not match the model"):
        load_checkpoint(tmp_path / "m.pt", model=classifier("lstm", hidden=9))
    # resuming a run with another config refuses the checkpoint
    _run(tmp_path, "one", 1)
    with pytest.raises(CheckpointError, match="different run"):
        _run(tmp_path, "two", 2)


def test_atomic_save_keeps_old_checkpoint(tmp_path, monkeypatch):
    path = save_checkpoint(tmp_path / "c.pt", {"v": torch.tensor(1)})

    def fail(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr("lib.training.os.replace", fail)
    with pytest.raises(OSError):
        save_checkpoint(path, {"v": torch.tensor(2)})
    assert load_checkpoint(path)["v"].item() == 1
    assert [p.name for p in tmp_path.iterdir()] == ["c.pt"]  # no temporary file left


def test_regressor_with_sine():
    from lib.tasks import sine_frequencies, sine_generation
    u, y = sine_generation(sine_frequencies(4), 30)
    m = SequenceRegressor(make_rnn("lstm", 1, 6), 1)
    res = train(m, nn.MSELoss(), Batches(u, y, 2, target_batch_dim=1), epochs=2, progress=False)
    assert len(res.history["train_loss"]) == 2
    assert models.SequenceRegressor is SequenceRegressor


def test_orbit_drift_measures_the_burn_in():
    """last_drift: 0 on an orbit that has converged to a fixed point, large on a transient."""
    torch.manual_seed(0)
    model = SequenceClassifier(make_rnn("lstm", 2, 3), 2).double()
    with torch.no_grad():  # a strongly contracting map: every orbit reaches its fixed point
        model.rnn.lstm.weight_hh_l0.mul_(0.01)
    inputs = torch.eye(2, dtype=torch.float64)
    settled = orbit_sampler(inputs, n_init=3, std=5.0, n_steps=400, n_transient=200)
    settled(model)
    assert settled.last_drift.shape == (2, 3)
    assert float(settled.last_drift.max()) < 1e-9
    early = orbit_sampler(inputs, n_init=3, std=5.0, n_steps=12, n_transient=1)
    early(model)
    assert float(early.last_drift.max()) > 1e-3  # the state of size 5 has not decayed yet
    one = orbit_sampler(inputs, n_init=3, std=5.0, n_steps=10, n_transient=9)
    one(model)
    assert one.last_drift is None  # a window of one step: nothing to compare
    rec = OrbitRecorder(settled, every=1)
    rec(model, 0)
    rec(model, 1)
    assert rec.drift.shape == (2, 2, 3)


def test_atomic_write_gives_ordinary_permissions(tmp_path):
    """Files written atomically get what open() would give them (umask), not mkstemp's 0600."""
    import os

    from lib.training import atomic_write

    umask = os.umask(0)
    os.umask(umask)
    atomic_write(tmp_path / "f.bin", b"data")
    assert (tmp_path / "f.bin").read_bytes() == b"data"
    assert os.stat(tmp_path / "f.bin").st_mode & 0o777 == 0o666 & ~umask
    assert [p.name for p in tmp_path.iterdir()] == ["f.bin"]  # no temporary left


# --------------------------------------------------------------------------- issue 17
def test_a_checkpoint_keeps_its_size_from_epoch_to_epoch_and_records_are_append_only(tmp_path):
    """The orbit records go to their own files (one per record, written once); the
    checkpoint holds only their epochs, so its size does not grow with the records."""
    import os as _os

    from lib.models import SequenceClassifier, make_rnn
    from lib.tasks import symbol_classification
    from lib.training import Batches, OrbitRecorder, orbit_sampler, train

    torch.manual_seed(0)
    model = SequenceClassifier(make_rnn("lstm", 6, 8), 4)
    u, y = symbol_classification(20, 50, seed=0)
    rec = OrbitRecorder(orbit_sampler(torch.eye(6), n_init=5, n_steps=60, n_transient=10))
    ckpt = tmp_path / "checkpoint.pt"
    sizes, mtimes = [], {}

    def watch(epoch, history):
        sizes.append(ckpt.stat().st_size)
        for p in sorted((tmp_path / "checkpoint_records").rglob("*.pt")):
            mtimes.setdefault(p.name, _os.stat(p).st_mtime_ns)
            assert _os.stat(p).st_mtime_ns == mtimes[p.name]  # never rewritten

    train(model, torch.nn.CrossEntropyLoss(), Batches(u, y, 10), epochs=6, recorders=[rec],
          checkpoint=ckpt, callbacks=[watch], progress=False)
    record = (tmp_path / "checkpoint_records" / "recorder0" / "epoch_000006.pt").stat().st_size
    growth = [b - a for a, b in zip(sizes, sizes[1:])]
    assert record > 20_000 and max(growth) < 600, (sizes, record)  # a few history floats
    assert len(mtimes) == 7  # epochs 0..6, one file each


def test_saved_orbit_records_do_not_drag_their_storage(tmp_path):
    from lib.models import SequenceClassifier, make_rnn
    from lib.training import OrbitRecorder, orbit_sampler

    torch.manual_seed(0)
    model = SequenceClassifier(make_rnn("lstm", 6, 4), 4)
    rec = OrbitRecorder(orbit_sampler(torch.eye(6)[:2], n_init=2, n_steps=30, n_transient=20,
                                      differences=False))
    rec(model, 0)
    s = rec._samples[0]
    assert s.untyped_storage().nbytes() == s.numel() * s.element_size()


def test_set_rng_state_moves_a_gpu_state_to_the_cpu_first():
    """A checkpoint loaded with map_location='cuda' holds the RNG state on the GPU;
    set_rng_state must move it to the CPU before converting it (mocked without a GPU)."""
    from lib.training import rng_state, set_rng_state

    class OnGPU:  # a tensor that only converts once moved to the CPU
        def __init__(self, t):
            self.t = t

        def cpu(self):
            return self.t

        def numpy(self):
            raise TypeError("can't convert cuda:0 device type tensor to numpy")

    state = rng_state()
    expected = torch.rand(3)
    name, keys, *rest = state["numpy"]
    gpu_state = {**state, "torch": OnGPU(state["torch"]), "numpy": (name, OnGPU(keys), *rest)}
    set_rng_state(gpu_state)
    assert torch.equal(torch.rand(3), expected)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")
def test_resume_on_cuda_restores_the_rng_state(tmp_path):
    from lib.training import load_checkpoint, rng_state, save_checkpoint, set_rng_state

    save_checkpoint(tmp_path / "c.pt", {"rng": rng_state()})
    expected = torch.rand(3)
    state = load_checkpoint(tmp_path / "c.pt", map_location="cuda")
    set_rng_state(state["rng"])
    assert torch.equal(torch.rand(3), expected)


def test_atomic_write_uses_unpredictable_names_and_does_not_follow_symlinks(tmp_path):
    from lib.training import atomic_write

    victim = tmp_path / "victim.txt"
    victim.write_text("keep")
    link = tmp_path / "model.pt"
    link.symlink_to(victim)
    atomic_write(link, b"new")
    assert victim.read_text() == "keep"  # the link was replaced, not written through
    assert not link.is_symlink() and link.read_bytes() == b"new"
    import lib.training as T
    names = set()
    real = T.tempfile.mkstemp

    def spy(*a, **kw):
        fd, name = real(*a, **kw)
        names.add(Path(name).name)
        return fd, name

    T.tempfile.mkstemp = spy
    try:
        for _ in range(5):
            atomic_write(tmp_path / "a.bin", b"x")
    finally:
        T.tempfile.mkstemp = real
    assert len(names) == 5 and all(n.startswith(".rnnbook-a.bin.") for n in names)
    assert not list(tmp_path.glob("*.tmp"))
