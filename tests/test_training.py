"""Tests of lib.training and of the trainable modules of lib.models."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from lib import models
from lib.dynamics import lyapunov_spectrum
from lib.models import (ExpRNN, LSTM, STABLE_LSTM_BOUNDS, SequenceClassifier, SequenceRegressor,
                        StableLSTM, TorchLSTM, apply_constraints, make_rnn, stable_lstm_projection_)
from lib.tasks import symbol_classification
from lib.training import (Batches, CheckpointError, OrbitRecorder, accuracy, constant_input_orbits,
                          evaluate, largest_lyapunov, load_checkpoint, save_checkpoint, train)

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


def test_stable_lstm_projection_meets_bounds_exactly():
    lstm = nn.LSTM(6, 10)
    with torch.no_grad():
        lstm.weight_hh_l0.mul_(torch.linspace(0.01, 5, 10))  # some columns inside, some outside
        lstm.weight_ih_l0.mul_(3)
    before = copy.deepcopy(lstm)
    stable_lstm_projection_(lstm)
    H = 10
    for k, gate in enumerate("ifgo"):
        w0 = before.weight_hh_l0[k * H:(k + 1) * H].detach()
        w = lstm.weight_hh_l0[k * H:(k + 1) * H].detach()
        n0, n = w0.abs().sum(0), w.abs().sum(0)
        bound = STABLE_LSTM_BOUNDS[gate]
        assert bool((n <= bound * (1 + 1e-6)).all())
        outside = n0 > bound
        assert outside.any() and (~outside).any()
        torch.testing.assert_close(n[outside], torch.full_like(n[outside], bound))
        assert torch.equal(w[:, ~outside], w0[:, ~outside])  # inside: untouched
        # a projection along rays: the direction of each column is kept
        torch.testing.assert_close(w / n, w0 / n0)
    n_f = lstm.weight_ih_l0[H:2 * H].detach().abs().sum(0)
    assert bool((n_f <= 0.25 * (1 + 1e-6)).all())
    # idempotent
    snap = lstm.weight_hh_l0.detach().clone()
    stable_lstm_projection_(lstm)
    torch.testing.assert_close(lstm.weight_hh_l0.detach(), snap)


def test_stable_lstm_stays_projected_in_training():
    torch.manual_seed(0)
    m = SequenceClassifier(StableLSTM(6, 8), 4)
    u, y = small_problem()
    train(m, nn.CrossEntropyLoss(), Batches(u, y, 20), epochs=2, lr=0.1, post_step=apply_constraints,
          progress=False)
    w = m.rnn.lstm.weight_hh_l0.detach()
    for k, gate in enumerate("ifgo"):
        assert bool((w[k * 8:(k + 1) * 8].abs().sum(0) <= STABLE_LSTM_BOUNDS[gate] * (1 + 1e-6)).all())


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


# ----------------------------------------------------------------------------- training
def test_training_learns_and_records_history():
    u, y = small_problem(n=80)
    m = classifier()
    res = train(m, nn.CrossEntropyLoss(), Batches(u, y, 20), val_data=Batches(u, y, 80, shuffle=False),
                epochs=8, lr=0.03, metrics={"accuracy": accuracy}, progress=True)
    h = res.history
    assert h["epoch"] == list(range(1, 9))
    for key in ("train_loss", "train_accuracy", "val_loss", "val_accuracy", "lr", "epoch_seconds"):
        assert len(h[key]) == 8
    assert h["train_loss"][-1] < h["train_loss"][0]
    ev = evaluate(m, Batches(u, y, 80, shuffle=False), nn.CrossEntropyLoss(), metrics={"accuracy": accuracy})
    assert ev["loss"] == pytest.approx(h["val_loss"][-1], rel=1e-6)


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


# ----------------------------------------------------------------------------- orbits
def test_orbit_sampler_shapes_and_batching():
    m = classifier("lstm")
    inputs = torch.eye(6)
    sample = constant_input_orbits(inputs, n_init=3, std=100.0, n_steps=30, n_transient=10)
    s = sample(m)
    assert s.shape == (2, 6, 3, 20, 4)
    torch.testing.assert_close(s[1, :, :, 1:], s[0, :, :, 1:] - s[0, :, :, :-1])
    # input 2, initial state 1, run on its own, gives the same steady-state outputs
    x0 = m.rnn.initial_state(3, std=100.0, generator=torch.Generator().manual_seed(0))
    y = m.outputs(inputs[2].expand(30, 1, 6), x0[1:2])
    torch.testing.assert_close(s[0, 2, 1], y[10:, 0].detach(), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(s[1, 2, 1, 0], (y[10, 0] - y[9, 0]).detach(), rtol=1e-5, atol=1e-5)
    assert torch.equal(sample(m), s)  # the same initial states every call
    with pytest.raises(ValueError, match="n_transient"):
        constant_input_orbits(inputs, n_steps=10, n_transient=10)
    with pytest.raises(ValueError, match="inputs"):
        constant_input_orbits(torch.ones(6))


def test_largest_lyapunov_matches_lib_dynamics():
    m = classifier("lstm")
    inputs = torch.eye(6)[:2]
    lam = largest_lyapunov(inputs, n_init=2, std=1.0, n_steps=40, n_transient=10, seed=4)(m)
    assert lam.shape == (2, 2)
    ss = LSTM(6, 8)
    theta = ss.theta_from_torch(m.rnn.lstm).double()
    x0 = m.rnn.initial_state(2, std=1.0, generator=torch.Generator().manual_seed(4)).double()
    for i in range(2):
        ref = lyapunov_spectrum(ss.autonomous(theta, inputs[i].double()), x0, 40, n_transient=10,
                                n_exponents=1)[..., 0]
        torch.testing.assert_close(lam[i], ref)


def test_orbit_recorder_epochs():
    u, y = small_problem()
    rec = OrbitRecorder(constant_input_orbits(torch.eye(6), n_init=2, n_steps=12, n_transient=4),
                        every=2, lyapunov=largest_lyapunov(torch.eye(6), n_init=1, n_steps=5))
    train(classifier(), nn.CrossEntropyLoss(), Batches(u, y, 30), epochs=5, recorders=[rec], progress=False)
    assert rec.epochs == [0, 2, 4, 5]
    assert rec.samples.shape == (4, 2, 6, 2, 8, 4)
    assert rec.lyapunov.shape == (4, 6, 1)
    with pytest.raises(ValueError, match="sampler"):
        OrbitRecorder(None)


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

    rec = OrbitRecorder(constant_input_orbits(torch.eye(6), n_init=2, n_steps=10, n_transient=3))

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
    m_res, res_res, rec_res = _run(tmp_path / "b", "run", 5)
    assert res_res.epochs_run == 3
    for (k, a), (_, b) in zip(m_full.state_dict().items(), m_res.state_dict().items()):
        assert torch.equal(a, b), k
    for key in ("train_loss", "train_accuracy", "lr", "epoch"):
        assert res_full.history[key] == res_res.history[key]
    assert rec_full.epochs == rec_res.epochs
    assert torch.equal(rec_full.samples, rec_res.samples)


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
