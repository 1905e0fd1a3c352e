"""The public contract of ``lib`` (issue 17), tested property-based with hypothesis.

Every public function and method of ``lib`` either returns finite values (``-inf`` only
where documented: exponents of a superstable orbit) of the documented shape, or raises
``ValueError`` / ``TypeError`` naming the argument. ``SPECS`` holds, for every public name,
a builder of valid calls from hypothesis-drawn sizes and values; the tests then

* call it and check the result (finite, and its shape where the spec says so);
* mutate each tensor argument in the ways that produced faults before (a NaN entry, a
  NumPy array or a list instead of a tensor, an integer dtype, a wrong last dimension) and
  check that the call raises a clear error naming the argument, or (for an integer
  dtype, lists and arrays) gives exactly the result of the equivalent float tensor;
* run the spec's own bad calls.

``test_every_public_name_is_covered`` enumerates the ``__all__`` of every module and the
public methods of every public class, and fails when one has no spec and no stated
exemption. The regression tests at the end pin each example of the issue.
"""

from __future__ import annotations

import dataclasses
import inspect
import math
from typing import Any, Callable

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from torch import nn

import lib
from lib import corpus, dynamics, entropy, landscape, lipschitz, models, plotting, sensitivity
from lib import tasks, training
from lib import experiments
from lib._checks import ArgumentTypeError

MODULES = [lib, models, dynamics, sensitivity, entropy, lipschitz, landscape, tasks, training,
           corpus, plotting, experiments]
# Public names that are not functions to call: data containers (their fields are what the
# functions return), exceptions, constants, sub-modules (covered by the command-line tests
# of tests/test_experiments.py), and the style block that the chapters' helper owns.
EXEMPT = {
    "lib.dynamics.FixedPoints": "container returned by fixed_points",
    "lib.sensitivity.Jacobians": "container returned by jacobians",
    "lib.sensitivity.Sensitivities": "container returned by sensitivities",
    "lib.lipschitz.LossConstants": "container returned by loss_constants",
    "lib.lipschitz.InitialStateGradients": "container returned by initial_state_gradients",
    "lib.lipschitz.LOSSES": "constant table",
    "lib.training.TrainResult": "container returned by train",
    "lib.training.CheckpointError": "exception",
    "lib.corpus.Corpus": "container returned by the loaders",
    "lib.tasks.Corpus": "re-export of lib.corpus.Corpus",
    "lib.tasks.load_wikitext2": "re-export of lib.corpus.load_wikitext2",
    "lib.experiments.ConfigError": "exception",
    "lib.experiments.RunResult": "container returned by run",
    "lib.experiments.symbol_classification": "module: tests/test_experiments.py (CLI)",
    "lib.experiments.sine": "module: tests/test_experiments.py (CLI)",
    "lib.experiments.language_model": "module: tests/test_experiments.py (CLI)",
    "lib.experiments.EXPERIMENTS": "the command line's table",
    "lib.plotting.use_book_style": "the style block (owned by the chapters' helper)",
    "lib.models.StateSpaceModel": "abstract base (its methods are covered on ElmanRNN)",
    "lib.models.StateSpaceModel.f": "abstract: covered on every subclass",
    "lib.models.StateSpaceModel.g": "abstract: covered on every subclass",
    "lib.models.RecurrentModule": "abstract base (its methods are covered on TorchLSTM)",
}
ERRORS = (ValueError, TypeError)
D = torch.float64


@dataclasses.dataclass
class Spec:
    build: Callable[[Callable], tuple[Callable, dict[str, Any]]]  # draw -> (fn, kwargs)
    mutate: tuple[str, ...] | None = None  # tensor arguments to mutate (None: all of them)
    shape: tuple[str, ...] = ()  # arguments whose last dimension must be checked
    check: Callable[[Any, dict], None] | None = None  # extra check of a valid result
    bad: tuple[tuple[Callable[[dict], dict], str], ...] = ()  # (kwargs -> bad kwargs, name)
    neginf: bool = False  # -inf is a legitimate result
    posinf: bool = False  # +inf is documented (a vacuous bound beyond float range)
    no_nan: tuple[str, ...] = ()  # arguments where NaN is legitimate (e.g. targets of a mask)
    # Building blocks that run inside torch.func transforms or every training step (the
    # model maps, modReLU, the losses, a layer's forward) propagate a NaN they are given
    # (data-dependent checks are not allowed under vmap and would cost a sync per step):
    # their docstrings say so, and the entry points (simulate, rollout, batched_cost,
    # train's loss check, ...) refuse it.
    propagates_nan: bool = False


SPECS: dict[str, Spec] = {}


def spec(name: str, **kw):
    def register(build):
        assert name not in SPECS, name
        SPECS[name] = Spec(build=build, **kw)
        return build
    return register


# ----------------------------------------------------------------------------- helpers
def rnd(draw, *shape, scale=1.0, dtype=D):
    seed = draw(st.integers(0, 2 ** 16))
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(*shape, generator=g, dtype=torch.float64) * 2 - 1).mul(scale).to(dtype)


def small(draw, lo=1, hi=3):
    return draw(st.integers(lo, hi))


ELMAN = models.ElmanRNN(1, 2, 1)
LSTM_SS = models.LSTM(1, 2, 1)
GRU_SS = models.GRU(1, 2, 1)
ORNN_SS = models.OrthogonalRNN(1, 2, 1)


def theta_of(draw, m, *batch, scale=0.8):
    return rnd(draw, *batch, m.n_params, scale=scale)


def ss_call(m, method):
    def build(draw):
        B = small(draw, 1, 3)
        return getattr(m, method), {"x": rnd(draw, B, m.nx), "u": rnd(draw, B, m.nu),
                                    "theta": theta_of(draw, m)}
    return build


for _name, _m in (("ElmanRNN", ELMAN), ("LSTM", LSTM_SS), ("GRU", GRU_SS),
                  ("OrthogonalRNN", ORNN_SS)):
    for _meth in ("f", "g"):
        spec(f"lib.models.{_name}.{_meth}", shape=("x", "u", "theta"),
             propagates_nan=True)(ss_call(_m, _meth))


# ----------------------------------------------------------------------------- lib
@spec("lib.seed_everything", check=lambda r, kw: isinstance(r, torch.Generator),
      bad=((lambda kw: {"seed": -1}, "seed"), (lambda kw: {"seed": 1.5}, "seed")))
def _(draw):
    return lib.seed_everything, {"seed": draw(st.integers(0, 10))}


# ----------------------------------------------------------------------------- models
@spec("lib.models.ElmanRNN", bad=((lambda kw: {**kw, "hidden_size": 0}, "hidden_size"),))
def _(draw):
    return models.ElmanRNN, {"input_size": small(draw, 0, 2), "hidden_size": small(draw)}


@spec("lib.models.LSTM", bad=((lambda kw: {**kw, "input_size": -1}, "input_size"),))
def _(draw):
    return models.LSTM, {"input_size": small(draw, 0, 2), "hidden_size": small(draw)}


@spec("lib.models.GRU", bad=((lambda kw: {**kw, "hidden_size": 1.5}, "hidden_size"),))
def _(draw):
    return models.GRU, {"input_size": small(draw, 0, 2), "hidden_size": small(draw)}


@spec("lib.models.OrthogonalRNN", bad=((lambda kw: {**kw, "output_size": 0}, "output_size"),))
def _(draw):
    return models.OrthogonalRNN, {"input_size": small(draw), "hidden_size": small(draw),
                                  "output_size": small(draw)}


@spec("lib.models.make_model", bad=((lambda kw: {**kw, "name": "rnn"}, "name"),))
def _(draw):
    return models.make_model, {"name": draw(st.sampled_from(["elman", "lstm", "gru", "ornn"])),
                               "input_size": 1, "hidden_size": small(draw)}


@spec("lib.models.modrelu", shape=(), propagates_nan=True, check=lambda r, kw: r.shape == kw["z"].shape)
def _(draw):
    n = small(draw)
    return models.modrelu, {"z": rnd(draw, 2, n), "b": rnd(draw, n)}


@spec("lib.models.StateSpaceModel.n_params", mutate=())
def _(draw):
    return (lambda: ELMAN.n_params), {}


@spec("lib.models.StateSpaceModel.unflatten", shape=("theta",), propagates_nan=True,
      check=lambda r, kw: set(r) == set(ELMAN.param_shapes))
def _(draw):
    return ELMAN.unflatten, {"theta": theta_of(draw, ELMAN, small(draw))}


@spec("lib.models.StateSpaceModel.flatten", mutate=(),
      bad=((lambda kw: {"params": [1, 2]}, "params"),
           (lambda kw: {"params": {**kw["params"], "W": kw["params"]["W"].numpy()}}, "W")))
def _(draw):
    return ELMAN.flatten, {"params": ELMAN.unflatten(theta_of(draw, ELMAN))}


@spec("lib.models.StateSpaceModel.init_theta", mutate=(),
      check=lambda r, kw: r.shape == (ELMAN.n_params,),
      bad=((lambda kw: {**kw, "scale": float("nan")}, "scale"),
           (lambda kw: {**kw, "dtype": torch.long}, "dtype"),
           (lambda kw: {**kw, "seed": -2}, "seed")))
def _(draw):
    return ELMAN.init_theta, {"seed": draw(st.integers(0, 99)), "scale": 0.5}


@spec("lib.models.StateSpaceModel.default_scale", mutate=())
def _(draw):
    return ELMAN.default_scale, {}


@spec("lib.models.StateSpaceModel.hidden", shape=("x",), propagates_nan=True)
def _(draw):
    return ELMAN.hidden, {"x": rnd(draw, small(draw), ELMAN.nx)}


@spec("lib.models.StateSpaceModel.autonomous", shape=("theta", "u"),
      check=lambda r, kw: callable(r))
def _(draw):
    return ELMAN.autonomous, {"theta": theta_of(draw, ELMAN), "u": rnd(draw, 1)}


@spec("lib.models.StateSpaceModel.zero_state", mutate=(),
      bad=((lambda kw: {"batch": -1}, "batch"),))
def _(draw):
    b = small(draw)
    return (lambda batch=b: ELMAN.zero_state(batch)), {"batch": b}


@spec("lib.models.LSTM.hidden", shape=("x",), propagates_nan=True, check=lambda r, kw: r.shape[-1] == 2)
def _(draw):
    return LSTM_SS.hidden, {"x": rnd(draw, small(draw), 4)}


@spec("lib.models.LSTM.cell", shape=("x",), propagates_nan=True, check=lambda r, kw: r.shape[-1] == 2)
def _(draw):
    return LSTM_SS.cell, {"x": rnd(draw, small(draw), 4)}


@spec("lib.models.LSTM.theta_from_torch", mutate=(),
      check=lambda r, kw: r.shape == (models.LSTM(1, 2, 1).n_params,),
      bad=((lambda kw: {**kw, "module": nn.GRU(1, 2)}, "module"),
           (lambda kw: {**kw, "readout": None}, "readout")))
def _(draw):
    torch.manual_seed(draw(st.integers(0, 99)))
    return models.LSTM(1, 2, 1).theta_from_torch, {"module": nn.LSTM(1, 2),
                                                   "readout": nn.Linear(2, 1)}


@spec("lib.models.GRU.theta_from_torch", mutate=(),
      bad=((lambda kw: {**kw, "module": nn.LSTM(1, 2)}, "module"),))
def _(draw):
    torch.manual_seed(draw(st.integers(0, 99)))
    return models.GRU(1, 2).theta_from_torch, {"module": nn.GRU(1, 2)}


@spec("lib.models.OrthogonalRNN.recurrent_matrix", shape=("theta",),
      check=lambda r, kw: torch.allclose(r @ r.transpose(-1, -2), torch.eye(2, dtype=D)))
def _(draw):
    return ORNN_SS.recurrent_matrix, {"theta": theta_of(draw, ORNN_SS)}


def _layer(kind, seed):
    torch.manual_seed(seed)
    return models.make_rnn(kind, 2, 3)


@spec("lib.models.make_rnn", bad=((lambda kw: {**kw, "name": "gru"}, "model"),
                                  (lambda kw: {**kw, "hidden_size": 0}, "hidden_size")))
def _(draw):
    return models.make_rnn, {"name": draw(st.sampled_from(["lstm", "slstm", "ornn"])),
                             "input_size": 2, "hidden_size": small(draw)}


for _cls in ("TorchLSTM", "StableLSTM", "ExpRNN"):
    spec(f"lib.models.{_cls}", bad=((lambda kw: {**kw, "hidden_size": -1}, "hidden_size"),))(
        lambda draw, c=_cls: (getattr(models, c), {"input_size": small(draw),
                                                   "hidden_size": small(draw)}))


def _seq(draw, kind):
    layer = _layer(kind, draw(st.integers(0, 99)))
    B = small(draw)
    return layer, rnd(draw, small(draw), B, 2, dtype=torch.float32), rnd(
        draw, B, layer.state_size, dtype=torch.float32)


for _kind, _cls in (("lstm", "TorchLSTM"), ("ornn", "ExpRNN")):
    spec(f"lib.models.{_cls}.forward", shape=("u", "state"), propagates_nan=True,
         bad=((lambda kw: {**kw, "u": kw["u"].double()}, "u"),
              (lambda kw: {**kw, "state": kw["state"][:0]}, "state")))(
        lambda draw, k=_kind: (lambda L, u, s: (L, {"u": u, "state": s}))(*_seq(draw, k)))
    spec(f"lib.models.{_cls}.input_drive", shape=("u",), propagates_nan=True)(
        lambda draw, k=_kind: (lambda L, u, s: (L.input_drive, {"u": u[0]}))(*_seq(draw, k)))

spec("lib.models.TorchLSTM.drive_map", shape=("drive",), propagates_nan=True, check=lambda r, kw: callable(r))(
    lambda draw: (_layer("lstm", 0).drive_map, {"drive": rnd(draw, 2, 12, dtype=torch.float32)}))
spec("lib.models.ExpRNN.drive_map", shape=("drive",), propagates_nan=True, check=lambda r, kw: callable(r))(
    lambda draw: (_layer("ornn", 0).drive_map, {"drive": rnd(draw, 2, 3, dtype=torch.float32)}))
spec("lib.models.ExpRNN.recurrent_matrix", mutate=())(
    lambda draw: (_layer("ornn", draw(st.integers(0, 9))).recurrent_matrix, {}))
spec("lib.models.RecurrentModule.initial_state", mutate=(),
     check=lambda r, kw: r.shape == (kw["batch"], 6),
     bad=((lambda kw: {**kw, "std": -1.0}, "std"), (lambda kw: {**kw, "batch": -1}, "batch")))(
    lambda draw: (_layer("lstm", 0).initial_state, {"batch": small(draw), "std": 1.0}))
spec("lib.models.RecurrentModule.hidden", shape=("state",), propagates_nan=True)(
    lambda draw: (_layer("lstm", 0).hidden, {"state": rnd(draw, 2, 6, dtype=torch.float32)}))
spec("lib.models.RecurrentModule.step_map", shape=("u",), propagates_nan=True, check=lambda r, kw: callable(r))(
    lambda draw: (_layer("lstm", 0).step_map, {"u": rnd(draw, 2, 2, dtype=torch.float32)}))
spec("lib.models.RecurrentModule.input_drive", shape=("u",), propagates_nan=True)(
    lambda draw: (_layer("lstm", 0).input_drive, {"u": rnd(draw, 2, dtype=torch.float32)}))
spec("lib.models.RecurrentModule.drive_map", shape=("drive",), propagates_nan=True, check=lambda r, kw: callable(r))(
    lambda draw: (_layer("lstm", 0).drive_map, {"drive": rnd(draw, 12, dtype=torch.float32)}))


@spec("lib.models.StableLSTM.project_", mutate=())
def _(draw):
    return models.StableLSTM(2, small(draw)).project_, {}


@spec("lib.models.stable_lstm_projection_", mutate=(),
      bad=((lambda kw: {**kw, "bounds": {**models.STABLE_LSTM_BOUNDS, "g": -0.1}}, "bounds"),
           (lambda kw: {**kw, "rule": "clip"}, "rule")))
def _(draw):
    return models.stable_lstm_projection_, {"lstm": nn.LSTM(2, small(draw)),
                                            "rule": draw(st.sampled_from(models.STABLE_RULES))}


@spec("lib.models.apply_constraints", mutate=())
def _(draw):
    return models.apply_constraints, {"model": models.SequenceClassifier(
        models.StableLSTM(2, 3), 4)}


for _cls in ("SequenceClassifier", "SequenceRegressor"):
    spec(f"lib.models.{_cls}", bad=((lambda kw: {**kw, "rnn": nn.LSTM(2, 3)}, "rnn"),))(
        lambda draw, c=_cls: (getattr(models, c), {"rnn": _layer("lstm", 0),
                                                   "output_size": small(draw)}))
    spec(f"lib.models.{_cls}.forward", shape=("u",), propagates_nan=True,
         bad=((lambda kw: {**kw, "u": kw["u"][:, :, :1]}, "u"),))(
        lambda draw, c=_cls: (getattr(models, c)(_layer("lstm", 0), 3),
                              {"u": rnd(draw, small(draw), 2, 2, dtype=torch.float32)}))

LM = models.LanguageModel("lstm", 7, 3, 4, seed=0)


@spec("lib.models.LanguageModel", bad=((lambda kw: {**kw, "dropout": 1.0}, "dropout"),
                                       (lambda kw: {**kw, "kind": "gru"}, "kind")))
def _(draw):
    return models.LanguageModel, {"kind": draw(st.sampled_from(["lstm", "slstm", "ornn"])),
                                  "n_tokens": small(draw, 2, 9), "n_embed": small(draw),
                                  "n_hidden": small(draw)}


def _tokens(draw, *shape):
    return torch.randint(0, 7, shape, generator=torch.Generator().manual_seed(
        draw(st.integers(0, 99))))


@spec("lib.models.LanguageModel.forward", mutate=("tokens", "state"), shape=("state",),
      propagates_nan=True,
      bad=((lambda kw: {**kw, "tokens": -kw["tokens"] - 1}, "tokens"),
           (lambda kw: {**kw, "tokens": kw["tokens"] + 7}, "tokens"),
           (lambda kw: {**kw, "state": LM.init_state(kw["tokens"].shape[1] + 1)}, "state")))
def _(draw):
    B = small(draw)
    return LM, {"tokens": _tokens(draw, small(draw), B), "state": LM.init_state(B)}


spec("lib.models.LanguageModel.state_size", mutate=())(lambda draw: (lambda: LM.state_size, {}))
spec("lib.models.LanguageModel.init_state", mutate=(),
     bad=((lambda kw: {"batch_size": 0}, "batch_size"),))(
    lambda draw: (LM.init_state, {"batch_size": small(draw)}))
spec("lib.models.LanguageModel.input_vectors", bad=((lambda kw: {"ids": -kw["ids"] - 1}, "token"),))(
    lambda draw: (LM.input_vectors, {"ids": _tokens(draw, small(draw))}))
spec("lib.models.LanguageModel.token_map", mutate=(),
     check=lambda r, kw: callable(r) and torch.equal(
         r(torch.zeros(2, 4)), LM.feedback_token(torch.zeros(2, 4))),
     bad=((lambda kw: {"pack": "yes"}, "pack"),))(
    lambda draw: (LM.token_map, {"pack": draw(st.booleans())}))
for _meth in ("readout", "feedback_token", "feedback_input"):
    spec(f"lib.models.LanguageModel.{_meth}", shape=("h",), propagates_nan=_meth != "feedback_token")(
        lambda draw, m=_meth: (getattr(LM, m), {"h": rnd(draw, small(draw), 4,
                                                          dtype=torch.float32)}))


# ----------------------------------------------------------------------------- dynamics
def henon(x):
    return torch.stack([1 - 1.4 * x[..., 0] ** 2 + x[..., 1], 0.3 * x[..., 0]], -1)


def contraction(x):
    return 0.5 * torch.tanh(x)


def _state(draw, nx=2):
    return rnd(draw, small(draw), nx, scale=0.2)


spec("lib.dynamics.simulate", check=lambda r, kw: r.shape == (kw["n_steps"], *kw["x0"].shape),
     bad=((lambda kw: {**kw, "step": lambda x: x * 1e200, "n_steps": 5}, "floats"),
          (lambda kw: {**kw, "n_steps": 0}, "n_steps"),
          (lambda kw: {**kw, "step": 3}, "step")))(
    lambda draw: (dynamics.simulate, {"step": henon, "x0": _state(draw),
                                      "n_steps": small(draw, 1, 20)}))
spec("lib.dynamics.jacobian", check=lambda r, kw: r[1].shape == (*kw["x"].shape, 2),
     bad=((lambda kw: {**kw, "step": lambda x: x[..., :1]}, "step"),))(
    lambda draw: (dynamics.jacobian, {"step": henon, "x": _state(draw)}))


def _rollout(draw, m=ELMAN):
    return {"f": m.f, "g": m.g, "theta": theta_of(draw, m), "x0": rnd(draw, m.nx),
            "u": rnd(draw, small(draw, 1, 5), m.nu)}


spec("lib.dynamics.rollout", shape=("x0", "u"), check=lambda r, kw: r[0].shape[0] == kw["u"].shape[0] + 1)(
    lambda draw: (dynamics.rollout, _rollout(draw)))
for _fn in ("lyapunov_spectrum", "largest_lyapunov", "lyapunov_blocks"):
    spec(f"lib.dynamics.{_fn}", neginf=True,
         bad=((lambda kw: {**kw, "step": lambda x: x ** 2 + 1e3, "n_steps": 20}, "diverged"),
              (lambda kw: {**kw, "n_steps": -1}, "n_steps")))(
        lambda draw, fn=_fn: (getattr(dynamics, fn), {"step": contraction, "x0": _state(draw),
                                                       "n_steps": small(draw, 1, 10)}))
spec("lib.dynamics.fixed_points", check=lambda r, kw: r.points.shape[1] == 2,
     bad=((lambda kw: {**kw, "tol": 0.0}, "tol"),))(
    lambda draw: (dynamics.fixed_points, {"step": contraction, "x0": _state(draw)}))


def logistic(x, r):
    return r * x * (1 - x)


spec("lib.dynamics.orbit_diagram",
     check=lambda r, kw: r.shape == (kw["params"].shape[0], kw["x0"].shape[0], kw["n_keep"], 1),
     bad=((lambda kw: {**kw, "params": torch.tensor([3.5, 5.0], dtype=D), "n_transient": 100},
           "(1, 0)"),
          (lambda kw: {**kw, "family": None}, "family")))(
    lambda draw: (dynamics.orbit_diagram, {
        "family": logistic, "params": 3 + rnd(draw, small(draw)).abs(),
        "x0": 0.5 + 0.4 * rnd(draw, small(draw), 1), "n_keep": small(draw, 1, 6),
        "n_transient": small(draw, 0, 20)}))
spec("lib.dynamics.detect_period", bad=((lambda kw: {**kw, "max_period": 0}, "max_period"),))(
    lambda draw: (dynamics.detect_period, {"orbit": rnd(draw, 40, small(draw), 2)}))
spec("lib.dynamics.classify_attractor", mutate=("lyapunov_max",),
     bad=((lambda kw: {**kw, "period": kw["period"].double()}, "period"),
          (lambda kw: {**kw, "lyapunov_max": kw["lyapunov_max"][:0]}, "shape")))(
    lambda draw: (dynamics.classify_attractor, {
        "period": torch.randint(0, 4, (3,)), "lyapunov_max": rnd(draw, 3)}))


# ----------------------------------------------------------------------------- sensitivity
for _fn in ("jacobians", "sensitivities", "forward_sensitivity", "state_sensitivity",
            "initial_state_sensitivity", "bptt_jacobian"):
    spec(f"lib.sensitivity.{_fn}", mutate=("theta", "x0", "u"),
         bad=((lambda kw: {**kw, "x0": kw["x0"].float()}, "x0"),
              (lambda kw: {**kw, "f": 1}, "f")))(
        lambda draw, fn=_fn: (getattr(sensitivity, fn), _rollout(draw)))


def _with_targets(draw):
    kw = _rollout(draw)
    kw["y"] = rnd(draw, kw["u"].shape[0], 1)
    kw["loss"] = lambda a, b: ((a - b) ** 2).sum()
    return kw


for _fn in ("cost", "cost_gradient", "bptt_gradient"):
    spec(f"lib.sensitivity.{_fn}", mutate=("theta", "x0", "u", "y"),
         bad=((lambda kw: {**kw, "loss": lambda a, b: ((a - b) ** 2).sum() * math.nan}, "not finite"),
              (lambda kw: {**kw, "y": kw["y"][:-1]}, "y")))(
        lambda draw, fn=_fn: (getattr(sensitivity, fn), _with_targets(draw)))


def _abcf(draw):
    N = small(draw, 1, 4)
    return {"A": rnd(draw, N, 2, 2), "B": rnd(draw, N, 2, 3), "C": rnd(draw, N, 1, 2),
            "F": rnd(draw, N, 1, 3)}


for _fn in ("closed_form", "closed_form_printed"):
    spec(f"lib.sensitivity.{_fn}", shape=("A", "B", "C", "F"))(
        lambda draw, fn=_fn: (getattr(sensitivity, fn), _abcf(draw)))
spec("lib.sensitivity.peak_tensor_memory", mutate=(), bad=((lambda kw: {"fn": 3}, "fn"),))(
    lambda draw: (sensitivity.peak_tensor_memory, {"fn": lambda: torch.ones(small(draw)) * 2}))


# ----------------------------------------------------------------------------- entropy
def linear(x):
    return x @ torch.tensor([[1.2, 0.3], [0.0, 0.7]], dtype=x.dtype).T


for _fn in ("log_abs_det_jacobian", "entropy_change"):
    spec(f"lib.entropy.{_fn}", shape=("samples",),
         bad=((lambda kw: {**kw, "step": lambda x: 0 * x}, "singular"),))(
        lambda draw, fn=_fn: (getattr(entropy, fn), {"step": linear, "samples": _state(draw)}))
spec("lib.entropy.entropy_trajectory", shape=("x0",),
     bad=((lambda kw: {**kw, "step": lambda x: x * 1e300, "n_steps": 3}, "left the floats"),))(
    lambda draw: (entropy.entropy_trajectory, {"step": linear, "x0": _state(draw),
                                               "n_steps": small(draw)}))
spec("lib.entropy.hadamard_bound", neginf=True, shape=("J",))(
    lambda draw: (entropy.hadamard_bound, {"J": rnd(draw, small(draw), 2, 2)}))
spec("lib.entropy.gaussian_entropy", shape=("cov",),
     bad=((lambda kw: {"cov": -kw["cov"]}, "positive definite"),))(
    lambda draw: (entropy.gaussian_entropy, {"cov": torch.eye(2, dtype=D) * (1 + rnd(draw, 1).abs())}))
spec("lib.entropy.knn_entropy", bad=((lambda kw: {**kw, "k": 0}, "k"),))(
    lambda draw: (entropy.knn_entropy, {"samples": rnd(draw, 20, small(draw))}))
spec("lib.entropy.lipschitz_entropy_bound", mutate=(),
     bad=((lambda kw: {**kw, "Lf": -1.0}, "Lf"), (lambda kw: {**kw, "nx": 0}, "nx")))(
    lambda draw: (entropy.lipschitz_entropy_bound, {"Lf": 0.5 + draw(st.floats(0, 2)),
                                                    "nx": small(draw)}))
spec("lib.entropy.log_unit_ball_volume", mutate=(), bad=((lambda kw: {"d": 0}, "d"),))(
    lambda draw: (entropy.log_unit_ball_volume, {"d": small(draw, 1, 9)}))


# ----------------------------------------------------------------------------- lipschitz
_LF = st.floats(0.1, 1.5)


spec("lib.lipschitz.S", mutate=(), posinf=True, bad=((lambda kw: {**kw, "Lf": -1.0}, "Lf"),
                                                   (lambda kw: {**kw, "t": "3"}, "t")))(
    lambda draw: (lipschitz.S, {"t": torch.arange(small(draw, 1, 20)), "Lf": draw(_LF)}))
spec("lib.lipschitz.log_S", mutate=(), bad=((lambda kw: {**kw, "t": -1}, "t"),))(
    lambda draw: (lipschitz.log_S, {"t": small(draw, 0, 100), "Lf": draw(_LF)}))
spec("lib.lipschitz.output_bound", mutate=(), bad=((lambda kw: {**kw, "Lg": 0.0}, "Lg"),))(
    lambda draw: (lipschitz.output_bound, {"t": small(draw, 0, 9), "Lf": draw(_LF), "Lg": 1.0,
                                           "radius": 2.0}))
_C = dict(Lf=0.9, Lg=1.1, dLf=1.0, dLg=0.5)
spec("lib.lipschitz.L_V", mutate=(), bad=((lambda kw: {**kw, "N": 0}, "N"),))(
    lambda draw: (lipschitz.L_V, {"N": small(draw, 1, 9), "Lf": draw(_LF), "Lg": 1.0, "K1": 2.0,
                                  "K2": 2.0, "Ly": 1.0, "M": 1.0}))
spec("lib.lipschitz.T", mutate=(), bad=((lambda kw: {**kw, "K4": -1.0}, "K4"),))(
    lambda draw: (lipschitz.T, {"t": small(draw, 0, 9), "Lg": 1.0, "dLg": 0.5, "K4": 2.0,
                                "M": 1.0}))
for _fn, _extra in (("P", {}), ("L_J", {}), ("Q", {"K4": 2.0, "M": 1.0}),
                    ("L_Jyhat", {"K4": 2.0, "M": 1.0}),
                    ("L_V_prime", {"K3": 2.0, "K4": 2.0, "Ly": 1.0, "M": 1.0})):
    spec(f"lib.lipschitz.{_fn}", mutate=(),
         bad=((lambda kw: {**kw, "Lf": float("nan")}, "Lf"), (lambda kw: {**kw, "N": 1.5}, "N")))(
        lambda draw, fn=_fn, e=_extra: (getattr(lipschitz, fn),
                                        {"N": small(draw, 1, 9), **_C, **e}))
spec("lib.lipschitz.fit_growth", mutate=("log_values",),
     bad=((lambda kw: {**kw, "N": kw["N"][:1], "log_values": kw["log_values"][..., :1]}, "N"),
          (lambda kw: {**kw, "kind": "linear"}, "kind")))(
    lambda draw: (lambda n: (lipschitz.fit_growth, {
        "N": torch.arange(1.0, n + 1, dtype=D), "log_values": rnd(draw, small(draw), n),
        "kind": draw(st.sampled_from(["power", "exp"]))}))(small(draw, 2, 6)))
for _fn in ("squared_error", "bce_with_logits"):
    spec(f"lib.lipschitz.{_fn}", propagates_nan=True)(
        lambda draw, fn=_fn: (getattr(lipschitz, fn), {"y_hat": rnd(draw, 3, 2),
                                                       "y": rnd(draw, 3, 2).abs()}))
spec("lib.lipschitz.loss_constants", mutate=(), bad=((lambda kw: {**kw, "loss": "l1"}, "loss"),
                                                    (lambda kw: {**kw, "ny": 0}, "ny")))(
    lambda draw: (lipschitz.loss_constants, {"loss": draw(st.sampled_from(["squared_error", "bce"])),
                                             "ny": small(draw)}))
spec("lib.lipschitz.elman_constants", mutate=(), bad=((lambda kw: {**kw, "rho": -1.0}, "rho"),))(
    lambda draw: (lipschitz.elman_constants, {"rho": draw(st.floats(0.1, 2)), "r": 1.0,
                                              "r_u": 1.0, "gamma": 1.0, "d_max": 0.5}))
spec("lib.lipschitz.max_ratio", bad=((lambda kw: {**kw, "b": kw["a"]}, "differ"),))(
    lambda draw: (lipschitz.max_ratio, {"fun": torch.tanh, "a": rnd(draw, 3, 2),
                                        "b": rnd(draw, 3, 2) + 3}))


def _params(draw, P=None):
    P = P or small(draw)
    return torch.cat([theta_of(draw, ELMAN, P), rnd(draw, P, 2)], -1)


spec("lib.lipschitz.cost_curves", mutate=("params", "u", "y"),
     bad=((lambda kw: {**kw, "loss": "hinge"}, "loss"),))(
    lambda draw: (lipschitz.cost_curves, {"model": ELMAN, "params": _params(draw),
                                          "u": rnd(draw, 4, 1), "y": rnd(draw, 3, 1),
                                          "grad": draw(st.booleans())}))
spec("lib.lipschitz.output_jacobians", mutate=("params", "u"))(
    lambda draw: (lipschitz.output_jacobians, {"model": ELMAN, "params": _params(draw),
                                               "u": rnd(draw, 4, 1)}))
spec("lib.lipschitz.empirical_lipschitz", mutate=("a", "b", "u", "y"),
     bad=((lambda kw: {**kw, "b": kw["a"]}, "differ"),))(
    lambda draw: (lambda a: (lipschitz.empirical_lipschitz, {
        "model": ELMAN, "a": a, "b": a + 0.01, "u": rnd(draw, 4, 1), "y": rnd(draw, 3, 1)}))(
        _params(draw)))
spec("lib.lipschitz.sample_pairs", mutate=("center",),
     bad=((lambda kw: {**kw, "delta": 0.0}, "delta"),))(
    lambda draw: (lipschitz.sample_pairs, {"center": rnd(draw, 3), "n_pairs": small(draw),
                                           "spread": 0.1, "delta": 0.01}))
spec("lib.lipschitz.initial_state_gradients", mutate=("theta", "x0", "u", "y"),
     bad=((lambda kw: {**kw, "x0": kw["x0"][:, :1]}, "x0"),))(
    lambda draw: (lipschitz.initial_state_gradients, {
        "model": ELMAN, "theta": theta_of(draw, ELMAN), "x0": rnd(draw, small(draw), 2),
        "u": rnd(draw, 4, 1), "y": rnd(draw, 3, 1)}))


# ----------------------------------------------------------------------------- landscape
spec("lib.landscape.mse", propagates_nan=True, check=lambda r, kw: r.shape == kw["y"].shape[:-1])(
    lambda draw: (landscape.mse, {"y_hat": rnd(draw, 3, 2), "y": rnd(draw, 3, 2)}))
spec("lib.landscape.batched_cost", mutate=("thetas", "x0", "y"), shape=("thetas",),
     check=lambda r, kw: r.shape == kw["thetas"].shape[:-1],
     bad=((lambda kw: {**kw, "loss": lambda a, b: (a - b).sum(-1) * math.nan}, "NaN"),
          (lambda kw: {**kw, "model": "elman"}, "model")))(
    lambda draw: (landscape.batched_cost, {"model": ELMAN, "thetas": theta_of(draw, ELMAN, small(draw)),
                                           "x0": rnd(draw, 2), "u": None,
                                           "y": rnd(draw, small(draw), 1)}))
spec("lib.landscape.line",
     bad=((lambda kw: {**kw, "origin": torch.ones(1, dtype=D)}, "origin"),))(
    lambda draw: (landscape.line, {"direction": rnd(draw, 4), "s": rnd(draw, small(draw))}))
spec("lib.landscape.plane", shape=("direction2",))(
    lambda draw: (landscape.plane, {"direction1": rnd(draw, 4), "direction2": rnd(draw, 4),
                                    "s1": rnd(draw, 2), "s2": rnd(draw, 3)}))
spec("lib.landscape.landscape_1d", mutate=("direction", "s", "x0", "y"))(
    lambda draw: (landscape.landscape_1d, {"model": ELMAN, "direction": theta_of(draw, ELMAN),
                                           "s": rnd(draw, 3), "x0": rnd(draw, 2), "u": None,
                                           "y": rnd(draw, 3, 1)}))
spec("lib.landscape.landscape_2d", mutate=("direction1", "x0", "y"))(
    lambda draw: (landscape.landscape_2d, {"model": ELMAN, "direction1": theta_of(draw, ELMAN),
                                           "direction2": theta_of(draw, ELMAN),
                                           "s1": rnd(draw, 2), "s2": rnd(draw, 2),
                                           "x0": rnd(draw, 2), "u": None, "y": rnd(draw, 3, 1)}))
spec("lib.landscape.landscape_lyapunov", neginf=True, mutate=("thetas", "x0"), shape=("thetas", "x0"),
     bad=((lambda kw: {**kw, "n_steps": 0}, "n_steps"),))(
    lambda draw: (landscape.landscape_lyapunov, {"model": ELMAN,
                                                 "thetas": theta_of(draw, ELMAN, small(draw)),
                                                 "x0": rnd(draw, 2), "n_steps": small(draw, 1, 9)}))
for _fn in ("local_minima", "count_local_minima"):
    spec(f"lib.landscape.{_fn}", bad=((lambda kw: {**kw, "connectivity": "diag"}, "connectivity"),))(
        lambda draw, fn=_fn: (getattr(landscape, fn), {"values": rnd(draw, 4, small(draw, 1, 4))}))


# ----------------------------------------------------------------------------- tasks
spec("lib.tasks.symbol_classification", mutate=(),
     check=lambda r, kw: r[0].shape == (kw["seq_len"], kw["n_sequences"], 6),
     bad=((lambda kw: {**kw, "n_sequences": -1}, "n_sequences"),
          (lambda kw: {**kw, "windows": ((9, 19.5),)}, "windows"),
          (lambda kw: {**kw, "dtype": torch.long}, "dtype")))(
    lambda draw: (tasks.symbol_classification, {"n_sequences": small(draw, 1, 9),
                                                "seq_len": small(draw, 50, 60),
                                                "seed": draw(st.integers(0, 9))}))
spec("lib.tasks.check_windows", mutate=(), bad=((lambda kw: {**kw, "windows": ((5, 3),)}, "windows"),
                                                (lambda kw: {**kw, "seq_len": 0}, "seq_len")))(
    lambda draw: (tasks.check_windows, {"windows": ((1, 3), (4, 6)), "seq_len": small(draw, 6, 9)}))
spec("lib.tasks.sine_frequencies", mutate=(), bad=((lambda kw: {**kw, "low": -1.0}, "low"),
                                                  (lambda kw: {**kw, "low": "a"}, "low")))(
    lambda draw: (tasks.sine_frequencies, {"n": small(draw, 1, 9)}))
spec("lib.tasks.sine_generation", bad=((lambda kw: {**kw, "omegas": -kw["omegas"]}, "omegas"),))(
    lambda draw: (tasks.sine_generation, {"omegas": 0.1 + rnd(draw, small(draw)).abs(),
                                          "seq_len": small(draw, 1, 9)}))


# ----------------------------------------------------------------------------- corpus
def _dictionary():
    d = corpus.Dictionary()
    d.add_words("the cat sat on the mat <unk>".split())
    return d


spec("lib.corpus.Dictionary", mutate=())(lambda draw: (corpus.Dictionary, {}))
spec("lib.corpus.Dictionary.add_words", mutate=(), bad=((lambda kw: {"words": 3}, "words"),))(
    lambda draw: (_dictionary().add_words, {"words": ["a", "b"][: small(draw, 1, 2)]}))
spec("lib.corpus.Dictionary.add_and_encode", mutate=(), bad=((lambda kw: {"words": "ab"}, "words"),
                                                               (lambda kw: {"words": [1]}, "words")))(
    lambda draw: (_dictionary().add_and_encode, {"words": ["a", "the"][: small(draw, 1, 2)]}))
spec("lib.corpus.Dictionary.encode", mutate=(), bad=((lambda kw: {"words": ["dog"]}, "dog"),))(
    lambda draw: (_dictionary().encode, {"words": ["the", "cat"][: small(draw, 1, 2)]}))
spec("lib.corpus.Dictionary.decode", mutate=(), check=lambda r, kw: len(r) == len(kw["ids"]),
     bad=((lambda kw: {"ids": [-1]}, "ids"), (lambda kw: {"ids": [99]}, "ids"),
          (lambda kw: {"ids": [0.5]}, "ids")))(
    lambda draw: (_dictionary().decode, {"ids": torch.tensor([0, 1, 2][: small(draw)])}))
spec("lib.corpus.tokenize_text", mutate=(), bad=((lambda kw: {"text": b"a b"}, "text"),))(
    lambda draw: (corpus.tokenize_text, {"text": draw(st.text(alphabet="ab \n", max_size=12))}))


def _folder(draw, tmp):
    for s in corpus.SPLITS:
        (tmp / f"{s}.txt").write_text(" the cat sat \n on the mat <unk> \n")
    return tmp


spec("lib.corpus.find_wikitext2", mutate=(),
     bad=((lambda kw: {**kw, "missing_train": "maybe"}, "missing_train"),))(
    lambda draw: (corpus.find_wikitext2, {"root": "/nonexistent"}))
spec("lib.corpus.cache_dir", mutate=())(lambda draw: (corpus.cache_dir, {}))
spec("lib.corpus.synthetic_corpus", mutate=(), bad=((lambda kw: {**kw, "n_words": 5}, "n_words"),))(
    lambda draw: (corpus.synthetic_corpus, {"n_train": 600, "n_valid": 120, "n_test": 120,
                                            "n_words": 100, "seed": draw(st.integers(0, 3))}))
_SMALL = corpus.synthetic_corpus(n_train=600, n_valid=120, n_test=120, n_words=100)
spec("lib.corpus.cap_vocabulary", mutate=(), bad=((lambda kw: {**kw, "max_words": 0}, "max_words"),
                                                 (lambda kw: {**kw, "corpus": []}, "corpus")))(
    lambda draw: (corpus.cap_vocabulary, {"corpus": _SMALL, "max_words": small(draw, 3, 50)}))
spec("lib.corpus.batchify", shape=(), check=lambda r, kw: r.shape[1] == kw["batch_size"],
     bad=((lambda kw: {**kw, "data": -kw["data"] - 1}, "data"),
          (lambda kw: {**kw, "data": kw["data"].double()}, "data")))(
    lambda draw: (corpus.batchify, {"data": _SMALL.train[: small(draw, 10, 40)],
                                    "batch_size": small(draw)}))
spec("lib.corpus.get_batch", bad=((lambda kw: {**kw, "i": -1}, "i"),
                                  (lambda kw: {**kw, "bptt": 0}, "bptt")))(
    lambda draw: (corpus.get_batch, {"source": corpus.batchify(_SMALL.train[:40], 2),
                                     "i": small(draw, 0, 5), "bptt": small(draw, 1, 5)}))


# ----------------------------------------------------------------------------- training
def _batches(draw):
    u, y = tasks.symbol_classification(6, 50, seed=draw(st.integers(0, 9)))
    return {"inputs": u, "targets": y, "batch_size": small(draw)}


spec("lib.training.Batches", mutate=("inputs", "targets"), propagates_nan=True,
     bad=((lambda kw: {**kw, "targets": kw["targets"][:1]}, "targets"),
          (lambda kw: {**kw, "batch_size": 0}, "batch_size")))(
    lambda draw: (training.Batches, _batches(draw)))
spec("lib.training.Batches.set_epoch", mutate=(), bad=((lambda kw: {"epoch": -1}, "epoch"),))(
    lambda draw: (training.Batches(**_batches(draw)).set_epoch, {"epoch": small(draw, 0, 9)}))
spec("lib.training.BPTTWindows", bad=((lambda kw: {**kw, "bptt": 0}, "bptt"),
                                      (lambda kw: {**kw, "data": kw["data"].float()}, "data")))(
    lambda draw: (training.BPTTWindows, {"data": corpus.batchify(_SMALL.train[:40], 2),
                                         "bptt": small(draw)}))
spec("lib.training.TruncatedBPTT", mutate=())(lambda draw: (training.TruncatedBPTT, {}))
spec("lib.training.TruncatedBPTT.reset", mutate=())(lambda draw: (training.TruncatedBPTT().reset, {}))
spec("lib.training.accuracy", propagates_nan=True,
     bad=((lambda kw: {**kw, "target": kw["target"][:0]}, "target"),))(
    lambda draw: (lambda n: (training.accuracy, {"output": rnd(draw, n, 4),
                                                 "target": torch.randint(0, 4, (n,))}))(small(draw)))


def _tiny_model():
    torch.manual_seed(0)
    return models.SequenceClassifier(models.make_rnn("lstm", 6, 3), 4)


spec("lib.training.train", mutate=(), bad=((lambda kw: {**kw, "epochs": 0}, "epochs"),
                                         (lambda kw: {**kw, "lr": -1.0}, "lr"),
                                         (lambda kw: {**kw, "clip": float("nan")}, "clip")))(
    lambda draw: (training.train, {"model": _tiny_model(), "loss_fn": nn.CrossEntropyLoss(),
                                   "train_data": training.Batches(**_batches(draw)),
                                   "epochs": 1, "progress": False}))
spec("lib.training.evaluate", mutate=(), bad=((lambda kw: {**kw, "data": []}, "data"),))(
    lambda draw: (training.evaluate, {"model": _tiny_model(), "loss_fn": nn.CrossEntropyLoss(),
                                      "data": training.Batches(**_batches(draw))}))
_INPUTS = torch.eye(6)[:2]
spec("lib.training.orbit_sampler", mutate=(), check=lambda r, kw: callable(r),
     bad=((lambda kw: {**kw, "n_transient": 50}, "n_transient"),
          (lambda kw: {**kw, "std": -1.0}, "std")))(
    lambda draw: (training.orbit_sampler, {"inputs": _INPUTS, "n_init": small(draw),
                                           "n_steps": 20, "n_transient": 10}))
spec("lib.training.lyapunov_sampler", mutate=(), check=lambda r, kw: callable(r),
     bad=((lambda kw: {**kw, "n_steps": 0}, "n_steps"),))(
    lambda draw: (training.lyapunov_sampler, {"inputs": _INPUTS, "n_init": small(draw),
                                              "n_steps": 5, "n_transient": 5}))
spec("lib.training.feedback_map", mutate=(), check=lambda r, kw: callable(r))(
    lambda draw: (training.feedback_map, {"model": LM}))


def _recorder(draw, record=True):
    rec = training.OrbitRecorder(training.orbit_sampler(_INPUTS, n_init=2, n_steps=20,
                                                        n_transient=10))
    if record:
        rec(_tiny_model(), 0)
    return rec


spec("lib.training.OrbitRecorder", mutate=(), bad=((lambda kw: {**kw, "every": 0}, "every"),
                                                 (lambda kw: {**kw, "sampler": 3}, "sampler")))(
    lambda draw: (training.OrbitRecorder, {"sampler": lambda m: torch.zeros(2),
                                           "every": small(draw)}))
spec("lib.training.OrbitRecorder.wants", mutate=())(
    lambda draw: (_recorder(draw, False).wants, {"epoch": small(draw, 0, 5), "last_epoch": 5}))
for _p in ("samples", "lyapunov", "drift"):
    spec(f"lib.training.OrbitRecorder.{_p}", mutate=())(
        lambda draw, p=_p: (lambda r: (lambda: getattr(r, p), {}))(_recorder(draw)))
spec("lib.training.OrbitRecorder.state_dict", mutate=())(
    lambda draw: (_recorder(draw).state_dict, {}))
spec("lib.training.OrbitRecorder.load_state_dict", mutate=(),
     bad=((lambda kw: {"state": {"epochs": [1]}}, "seconds"),))(
    lambda draw: (lambda r: (r.load_state_dict, {"state": r.state_dict()}))(_recorder(draw)))
spec("lib.training.rng_state", mutate=())(lambda draw: (training.rng_state, {}))
spec("lib.training.set_rng_state", mutate=(), bad=((lambda kw: {"state": {}}, "state"),))(
    lambda draw: (training.set_rng_state, {"state": training.rng_state()}))


# files: a fresh folder per call (hypothesis runs a test function many times)
def _tmpdir():
    import tempfile
    from pathlib import Path
    return Path(tempfile.mkdtemp(prefix="contract-"))


spec("lib.training.atomic_write", mutate=(), bad=((lambda kw: {**kw, "data": "text"}, "data"),))(
    lambda draw: (training.atomic_write, {"path": _tmpdir() / "a.bin",
                                          "data": bytes(small(draw, 0, 9))}))
spec("lib.training.sweep_temporary_files", mutate=())(
    lambda draw: (training.sweep_temporary_files, {"folder": _tmpdir()}))
spec("lib.training.save_checkpoint", mutate=())(
    lambda draw: (training.save_checkpoint, {"path": _tmpdir() / "c.pt",
                                             "state": {"x": rnd(draw, small(draw))}}))
spec("lib.training.load_checkpoint", mutate=(),
     bad=((lambda kw: {"path": kw["path"].with_name("missing.pt")}, "missing"),))(
    lambda draw: (training.load_checkpoint, {"path": training.save_checkpoint(
        _tmpdir() / "c.pt", {"x": rnd(draw, small(draw))})}))
spec("lib.corpus.tokenize_file", mutate=(),
     bad=((lambda kw: {**kw, "path": kw["path"].with_name("none.txt")}, "none.txt"),))(
    lambda draw: (corpus.tokenize_file, {"path": _folder(draw, _tmpdir()) / "valid.txt",
                                         "dictionary": _dictionary()}))
spec("lib.corpus.load_wikitext2", mutate=(),
     bad=((lambda kw: {"root": kw["root"] / "nothing"}, "root"),))(
    lambda draw: (corpus.load_wikitext2, {"root": _folder(draw, _tmpdir())}))
def _archive(draw):
    import hashlib
    import zipfile
    path = _tmpdir() / "w.zip"
    with zipfile.ZipFile(path, "w") as zf:
        for split in corpus.SPLITS:
            zf.writestr(f"wikitext-2/wiki.{split}.tokens", " the cat \n" * small(draw))
    return {"target": _tmpdir() / "w", "urls": [path.as_uri()],
            "sha256": hashlib.sha256(path.read_bytes()).hexdigest(), "retries": 0}


spec("lib.corpus.download_wikitext2", mutate=(),
     bad=((lambda kw: {**kw, "urls": ()}, "urls"), (lambda kw: {**kw, "retries": -1}, "retries"),
          (lambda kw: {**kw, "sha256": "0" * 64}, "checksum mismatch")))(
    lambda draw: (corpus.download_wikitext2, _archive(draw)))
spec("lib.corpus.safe_extract", mutate=(),
     bad=((lambda kw: {**kw, "members": {"wikitext-2/wiki.test.tokens": "../x.txt"}}, "outside"),))(
    lambda draw: (lambda a: (corpus.safe_extract, {
        "archive": __import__("zipfile").ZipFile(a["urls"][0][len("file://"):]),
        "members": {"wikitext-2/wiki.test.tokens": "test.txt"}, "dest": _tmpdir()}))(
        _archive(draw)))


# ----------------------------------------------------------------------------- plotting
def _axes():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots()
    plt.close(fig)
    return ax


spec("lib.plotting.to_numpy", mutate=(), bad=((lambda kw: {"value": object()}, "value"),))(
    lambda draw: (plotting.to_numpy, {"value": rnd(draw, small(draw))}))
spec("lib.plotting.orbit_diagram", mutate=(),
     bad=((lambda kw: {**kw, "ax": None}, "ax"),
          (lambda kw: {**kw, "values": kw["values"][:1]}, "values")))(
    lambda draw: (plotting.orbit_diagram, {"ax": _axes(), "params": rnd(draw, 3),
                                           "values": rnd(draw, 3, 4)}))
spec("lib.plotting.lyapunov_curve", mutate=(),
     bad=((lambda kw: {**kw, "exponents": kw["exponents"] * math.nan}, "exponents"),
          (lambda kw: {**kw, "exponents": kw["exponents"][:1]}, "exponents")))(
    lambda draw: (plotting.lyapunov_curve, {"ax": _axes(), "params": rnd(draw, 3),
                                            "exponents": rnd(draw, 3, 2)}))


# ----------------------------------------------------------------------------- experiments
spec("lib.experiments.differences", mutate=(), bad=((lambda kw: {**kw, "live": 3}, "live"),))(
    lambda draw: (experiments.differences, {
        "paper": experiments.symbol_classification.PAPER,
        "live": dataclasses.replace(experiments.symbol_classification.PAPER, epochs=small(draw))}))
spec("lib.experiments.differences_table", mutate=(), bad=((lambda kw: {**kw, "paper": None}, "paper"),))(
    lambda draw: (experiments.differences_table, {
        "paper": experiments.sine.PAPER,
        "live": dataclasses.replace(experiments.sine.PAPER, hidden=small(draw))}))
spec("lib.experiments.load_run", mutate=(), bad=((lambda kw: {"out": kw["out"] / "x"}, "run.json"),))(
    lambda draw: (lambda d: (d / "run.json").write_text("{}") and (experiments.load_run, {"out": d}))(_tmpdir()))


# ============================================================================= the tests
def public_names() -> list[str]:
    """Every public name of lib: the ``__all__`` of each module and the public methods and
    properties of each public class (defined in that class)."""
    names = []
    for mod in MODULES:
        for name in mod.__all__:
            obj = getattr(mod, name)
            full = f"{mod.__name__}.{name}"
            names.append(full)
            if inspect.isclass(obj) and obj.__module__.startswith("lib"):
                for attr, value in vars(obj).items():
                    if attr.startswith("_"):
                        continue
                    if inspect.isfunction(value) or isinstance(value, property):
                        names.append(f"{full}.{attr}")
    return names


def test_every_public_name_is_covered():
    names = public_names()
    missing = [n for n in names if n not in SPECS and n not in EXEMPT
               and not any(n.startswith(e + ".") for e in EXEMPT if "abstract" in EXEMPT[e])
               and not isinstance(_resolve(n), (int, float, str, tuple, dict))]
    assert not missing, f"public names without a contract spec: {missing}"
    stale = [n for n in SPECS if n not in names]
    assert not stale, f"specs of names that are not public: {stale}"


def _resolve(name: str):
    parts = name.split(".")
    obj = lib
    for p in parts[1:]:
        obj = getattr(obj, p)
    return obj


def _tensors(value, path="result"):
    if isinstance(value, torch.Tensor):
        yield path, value
    elif isinstance(value, np.ndarray):
        yield path, torch.from_numpy(value)
    elif isinstance(value, tuple) and hasattr(value, "_fields"):
        for f in value._fields:
            yield from _tensors(getattr(value, f), f"{path}.{f}")
    elif isinstance(value, (list, tuple)):
        for i, v in enumerate(value):
            yield from _tensors(v, f"{path}[{i}]")
    elif isinstance(value, dict):
        for k, v in value.items():
            yield from _tensors(v, f"{path}[{k!r}]")
    elif isinstance(value, float):
        yield path, torch.tensor(value)


def check_result(s: Spec, result, kw) -> None:
    for path, t in _tensors(result):
        if not (t.is_floating_point() or t.is_complex()):
            continue
        t = t.detach()
        bad = torch.isnan(t)
        if not s.neginf:
            bad |= torch.isneginf(t)
        if not s.posinf:
            bad |= torch.isposinf(t)
        assert not bool(bad.any()), f"{path} holds non-finite values: {t}"
    if s.check is not None:
        assert s.check(result, kw) is not False


def _mutations(value: torch.Tensor, name: str, s: Spec):
    """(label, mutated value, must_raise) for one tensor argument."""
    out = []
    if value.is_floating_point() and value.numel() and name not in s.no_nan:
        v = value.detach().clone()
        v.view(-1)[0] = math.nan
        out.append(("nan", v, True))
    if value.dim() >= 1 and value.numel():
        out.append(("numpy", value.detach().cpu().numpy(), False))
        out.append(("list", value.detach().tolist(), False))
    if value.is_floating_point():
        out.append(("int", value.detach().round().long(), False))
    if name in s.shape and value.dim() >= 1:
        out.append(("shape", torch.cat([value, value[..., :1]], -1), True))
    return out


def _call(fn, kw):
    return fn(**kw)


def _same(a, b) -> bool:
    ta, tb = list(_tensors(a)), list(_tensors(b))
    if len(ta) != len(tb):
        return False
    return all(x.shape == y.shape and torch.equal(x.detach().to(torch.float64).nan_to_num(),
                                                  y.detach().to(torch.float64).nan_to_num())
               for (_, x), (_, y) in zip(ta, tb))


CONTRACT = settings(max_examples=6, deadline=None, derandomize=True,
                    suppress_health_check=list(HealthCheck))
COUNTS = {"valid": 0, "mutated": 0, "bad": 0}


@pytest.mark.parametrize("name", sorted(SPECS))
@CONTRACT
@given(data=st.data())
def test_valid_calls_return_finite_results(name, data):
    s = SPECS[name]
    fn, kw = s.build(data.draw)
    check_result(s, _call(fn, kw), kw)
    COUNTS["valid"] += 1


@pytest.mark.parametrize("name", sorted(SPECS))
@CONTRACT
@given(data=st.data())
def test_mutated_arguments_are_refused_or_exact(name, data):
    """NaN and wrong shapes raise naming the argument; lists, arrays and integer tensors
    either raise a clear error naming the argument or give the float tensor's result."""
    s = SPECS[name]
    fn, kw = s.build(data.draw)
    names = [k for k, v in kw.items() if isinstance(v, torch.Tensor)
             and (s.mutate is None or k in s.mutate)]
    for arg in names:
        for label, value, must_raise in _mutations(kw[arg], arg, s):
            bad_kw = {**kw, arg: value}
            try:
                result = _call(fn, bad_kw)
            except ERRORS as err:
                assert arg.split("_")[0] in str(err) or (label == "nan" and "finite" in str(err)), (
                    f"{name}: {label} {arg}: the message does not name {arg}: {err}")
                COUNTS["mutated"] += 1
                continue
            except Exception as err:  # noqa: BLE001 - the contract: only ValueError/TypeError
                raise AssertionError(f"{name}: {label} {arg} raised {type(err).__name__}: {err}")
            if label == "nan" and s.propagates_nan:  # NaN in, NaN (or nothing) out
                COUNTS["mutated"] += 1
                continue
            assert not must_raise, f"{name}: {label} {arg} was accepted"
            # accepted: it must mean exactly what the float tensor means
            ref = kw[arg] if label in ("numpy", "list") else kw[arg].new_tensor(value.tolist())
            check_result(s, result, bad_kw)
            expected = _call(fn, {**kw, arg: ref})
            if label == "int" or not _is_random(name):
                assert _same(result, expected), f"{name}: {label} {arg} changed the result"
            COUNTS["mutated"] += 1


def _is_random(name: str) -> bool:  # calls whose result depends on global RNG state
    return name.endswith(("sample_pairs", "LanguageModel", "make_rnn", "TorchLSTM", "StableLSTM",
                          "ExpRNN", "SequenceClassifier", "SequenceRegressor"))


@pytest.mark.parametrize("name", sorted(n for n in SPECS if SPECS[n].bad))
@CONTRACT
@given(data=st.data())
def test_bad_calls_raise_a_named_error(name, data):
    s = SPECS[name]
    fn, kw = s.build(data.draw)
    for make_bad, word in s.bad:
        with pytest.raises(ERRORS + (FileNotFoundError,), match=_escape(word)):
            _call(fn, make_bad(kw))
        COUNTS["bad"] += 1


def _escape(word: str) -> str:
    import re
    return re.escape(word)


def test_contract_counts(capsys):
    """The size of the contract: names covered (the cases run above are counted by
    pytest: 3 tests per name, hypothesis examples each)."""
    names = public_names()
    covered = [n for n in names if n in SPECS]
    n_bad = sum(len(s.bad) for s in SPECS.values())
    print(f"contract: {len(covered)} public functions and methods with specs, "
          f"{len(names) - len(covered)} exempt, {n_bad} named bad calls; cases run in this "
          f"process so far: {COUNTS}")
    assert len(covered) >= 150


# ============================================================================= regressions
def test_orbit_diagram_of_the_logistic_map_at_r5_names_the_diverging_parameter():
    with pytest.raises(ValueError, match=r"\(1, 0\)") as err:
        dynamics.orbit_diagram(logistic, torch.tensor([3.5, 5.0], dtype=D),
                               torch.tensor([[0.3]], dtype=D), n_keep=10, n_transient=50)
    assert "(0, 0)" not in str(err.value)


def test_simulate_refuses_an_overflowing_map():
    with pytest.raises(ValueError, match="not finite"):
        dynamics.simulate(lambda x: x * 1e200, torch.ones(2, dtype=D), 5)


def test_fit_growth_needs_two_horizons_and_fits_exactly():
    with pytest.raises(ValueError, match="two distinct"):
        lipschitz.fit_growth(torch.tensor([5.0]), torch.tensor([1.0]), "exp")
    N = torch.arange(1.0, 6.0, dtype=D)
    assert lipschitz.fit_growth(N, 0.3 * N + 2, "exp").item() == pytest.approx(0.3, abs=1e-12)
    assert lipschitz.fit_growth(N, 1.5 * N.log(), "power").item() == pytest.approx(1.5, abs=1e-12)


def test_a_nan_from_a_user_loss_in_batched_cost_names_the_batch_index():
    thetas = ELMAN.init_theta().expand(3, -1)
    nan_on_1 = lambda a, b: torch.where(torch.arange(3) == 1, math.nan, ((a - b) ** 2).sum(-1))  # noqa: E731
    with pytest.raises(ValueError, match=r"batch index \(1,\)"):
        landscape.batched_cost(ELMAN, thetas, torch.zeros(2, dtype=D), None,
                               torch.zeros(4, 1, dtype=D), loss=nan_on_1)


def test_broadcasting_cannot_hide_a_shape_error():
    th = ELMAN.init_theta()
    with pytest.raises(ValueError, match="do not broadcast"):
        ELMAN.f(torch.zeros(3, 2, dtype=D), torch.zeros(4, 1, dtype=D), th)
    with pytest.raises(ValueError, match="origin"):
        landscape.line(torch.ones(3, dtype=D), torch.linspace(0, 1, 4), origin=torch.ones(1, dtype=D))
    with pytest.raises(ValueError, match="log_values"):
        lipschitz.fit_growth(torch.arange(1.0, 6.0), torch.ones(5, 1), "exp")


def test_integer_dtypes_where_floats_are_needed_are_refused():
    with pytest.raises(TypeError, match="x0 must be a floating-point"):
        dynamics.simulate(lambda x: x // 2, torch.ones(2, dtype=torch.long), 3)
    with pytest.raises(TypeError, match="omegas"):
        tasks.sine_generation(torch.tensor([1, 2]), 5)
    with pytest.raises(TypeError, match="samples"):
        entropy.knn_entropy(torch.randint(0, 10, (50, 2)))
    with pytest.raises(TypeError, match="A"):
        sensitivity.closed_form(*(torch.ones(3, 2, 2, dtype=torch.long),) * 2,
                                torch.ones(3, 1, 2, dtype=torch.long), torch.ones(3, 1, 2, dtype=torch.long))


def test_negative_token_ids_are_refused():
    with pytest.raises(ValueError, match="tokens"):
        LM(torch.tensor([[-1]]), LM.init_state(1))
    with pytest.raises(ValueError, match="ids"):
        _dictionary().decode([-1])
    with pytest.raises(ValueError, match="data"):
        corpus.batchify(torch.tensor([-1, 2, 3, 4]), 2)


def test_a_negative_bound_of_the_stable_lstm_projection_is_refused():
    lstm = nn.LSTM(2, 3)
    before = lstm.weight_hh_l0.detach().clone()
    with pytest.raises(ValueError, match=r"bounds\['i'\]"):
        models.stable_lstm_projection_(lstm, {**models.STABLE_LSTM_BOUNDS, "i": -0.395})
    assert torch.equal(lstm.weight_hh_l0, before)


def test_model_maps_name_dtype_and_batch_mismatches():
    th = ELMAN.init_theta()
    with pytest.raises(TypeError, match="x must have theta's dtype"):
        ELMAN.f(torch.zeros(2, dtype=torch.float32), torch.zeros(1, dtype=D), th)
    with pytest.raises(TypeError, match="u must have the layer's dtype"):
        models.ExpRNN(2, 3)(torch.zeros(4, 1, 2, dtype=D))
    with pytest.raises(ValueError, match=r"state must have shape \(B=2"):
        LM(torch.tensor([[1, 2]]), LM.init_state(3))
    with pytest.raises(TypeError, match="tokens must be an integer"):
        LM(torch.tensor([[1.0]]), LM.init_state(1))


def test_numpy_arrays_and_lists_give_a_clear_type_error():
    th = ELMAN.init_theta()
    for bad in (np.zeros(2), [0.0, 0.0]):
        with pytest.raises(TypeError, match="x must be a torch.Tensor"):
            ELMAN.f(bad, torch.zeros(1, dtype=D), th)
    with pytest.raises(TypeError, match="x must be a torch.Tensor"):
        dynamics.jacobian(lambda x: x, np.ones(2))
    with pytest.raises(TypeError, match="output"):
        training.accuracy(np.zeros((2, 3)), np.zeros(2))
    assert isinstance(ArgumentTypeError("x"), ValueError)  # old callers catching ValueError


def test_superstable_orbits_give_minus_inf_consistently():
    zero = lambda x: 0 * x  # noqa: E731
    x0 = torch.ones(2, dtype=D)
    assert torch.isneginf(dynamics.lyapunov_spectrum(zero, x0, 10)).all()
    assert torch.isneginf(dynamics.largest_lyapunov(zero, x0, 10))
    assert torch.isneginf(dynamics.lyapunov_blocks(zero, x0, 10, n_blocks=2)).all()
    assert dynamics.classify_attractor(torch.tensor([1]), torch.tensor([-math.inf])) == ["fixed point"]
    lam = landscape.landscape_lyapunov(ELMAN, torch.zeros(1, ELMAN.n_params, dtype=D),
                                       torch.ones(2, dtype=D), 5)
    assert torch.isneginf(lam).all()


def test_diverging_members_of_a_batch_are_named():
    x0 = torch.tensor([[0.1], [10.0], [0.2]], dtype=D)
    with pytest.raises(ValueError, match=r"\[1\] \(1 of 3\)"):
        dynamics.lyapunov_spectrum(lambda x: x ** 2, x0, 30)
    with pytest.raises(ValueError, match=r"\[1\] \(1 of 3\)"):
        dynamics.simulate(lambda x: x ** 2, x0, 30)


def test_forward_sensitivity_falls_back_for_maps_that_cannot_be_vmapped():
    def f(x, u, th):  # writes in place into a buffer it creates: eager only
        out = torch.zeros(2, dtype=x.dtype)
        out[0] = torch.tanh(th[0] * x[0] + th[1] * x[1] + u[0])
        out[1] = torch.tanh(th[2] * x[0] + th[3] * x[1])
        return out

    def g(x, u, th):
        y = torch.zeros(1, dtype=x.dtype)
        y[0] = th[4] * x[0]
        return y

    th = torch.tensor([0.5, -0.3, 0.8, 0.2, 1.5], dtype=D)
    x0 = torch.tensor([0.1, -0.2], dtype=D)
    u = torch.linspace(-1, 1, 7, dtype=D)[:, None]
    y_hat, J = sensitivity.forward_sensitivity(f, g, th, x0, u, chunk_size=3)
    y_ref, J_ref = sensitivity.bptt_jacobian(f, g, th, x0, u)
    assert torch.allclose(y_hat, y_ref, atol=1e-14) and torch.allclose(J, J_ref, atol=1e-13)
    g_fwd = sensitivity.cost_gradient(f, g, th, x0, u, torch.zeros(7, 1, dtype=D),
                                      lambda a, b: ((a - b) ** 2).sum())
    g_bptt = sensitivity.bptt_gradient(f, g, th, x0, u, torch.zeros(7, 1, dtype=D),
                                       lambda a, b: ((a - b) ** 2).sum())
    assert torch.allclose(g_fwd, g_bptt, atol=1e-13)
