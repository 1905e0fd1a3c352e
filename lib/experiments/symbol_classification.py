"""Symbol classification (Supplementary Figures 2-4): the authors' configuration by default.

The task (:func:`lib.tasks.symbol_classification`): one-hot inputs of 2 symbols and 4
distractors; one symbol at a random step of each of the windows [9, 19) and [39, 49); the
class is the two symbols read as a base-2 number. The model is a recurrent layer (LSTM,
orthogonal RNN or stable LSTM) with a linear read-out scored on the last step.

Defaults reproduce the authors' public code (repository
antonior92/attractors-and-smoothness-RNN, ``sequence-classification/train.py``): cross-entropy
*summed* over a batch of 100 sequences, then the gradient norm clipped at 0.25; Adam, lr
1e-3; MultiStepLR at epochs 500, 1000, 2000 with factor 0.25; batches in a fixed order;
1000 training sequences (seed 2) and 1000 validation ones (seed 3) of length 200; hidden
size 50; the stable LSTM rescaled after every optimizer step. Orbits (the authors'
``EvaluateOrbitDiagram``): the six one-hot inputs held constant, a separate initial state of
standard deviation 100 for each (input, sequence) pair, 800 steps of which the first 400
are dropped, recorded after every epoch and never for the untrained model. The largest
Lyapunov exponent per recorded epoch is the book's addition (``lyapunov_init=0`` turns it
off). Every departure is a field of :class:`Config`, recorded in ``run.json``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from .. import models, tasks
from ..training import Batches, accuracy
from . import _run

NAME = "symbol-classification"
HELP = "Supplementary Figures 2-4: symbol classification (LSTM, oRNN, stable LSTM)"
CHOICES = _run.SequenceTaskConfig.CHOICES


@dataclass(frozen=True)
class Config(_run.SequenceTaskConfig):
    """One symbol-classification run; the defaults are the authors' configuration.

    The fields of :class:`~lib.experiments._run.SequenceTaskConfig` (training, orbits,
    λ_1), plus ``n_val`` validation sequences, the two ``windows`` [A1, B1), [A2, B2) where
    the symbols sit, and ``weight_seed`` (None: ``seed``; see :func:`run`).
    """

    n_val: int = 1000
    windows: tuple[int, ...] = (9, 19, 39, 49)
    weight_seed: int | None = None  # None: ``seed`` (the authors' single seed)

    def validate(self) -> None:
        """Raise :class:`~lib.experiments._run.ConfigError` naming the first bad field."""
        super().validate()
        _run.check_fields(self, positive_int=("n_val",), nonnegative_int=("weight_seed",))
        if len(self.windows) != 4:
            raise _run.ConfigError("windows", f"must be 4 integers A1 B1 A2 B2, got {self.windows!r}")
        try:
            tasks.check_windows((self.windows[:2], self.windows[2:]), self.seq_len)
        except ValueError as exc:
            raise _run.ConfigError("windows", str(exc)) from None


PAPER = Config()


def run(cfg: Config, out=None, *, device: str = "cpu", progress: bool | str = True,
        resume: bool = True) -> _run.RunResult:
    """Train and record one run of ``cfg``; write its files into ``out`` (None: none).

    The data come from ``cfg.seed`` (validation: ``cfg.seed + 1``); the initial weights and
    the batch order from ``cfg.weight_seed`` (default: the same seed, as in the authors'
    code), so that runs can share data and differ only in their initial weights.

    Returns a :class:`~lib.experiments._run.RunResult` whose recorder ``"orbits"`` holds
    samples ``(E, 2, 6, orbit_init, orbit_steps - orbit_transient, 4)`` (outputs and their
    first differences, per input, initial state, step and class) and λ_1 ``(E, 6,
    lyapunov_init)``.
    """
    weight_seed = cfg.seed if cfg.weight_seed is None else cfg.weight_seed
    folder = _run.prepare(cfg, out, device=device, resume=resume, seed=weight_seed)
    windows = (tuple(cfg.windows[:2]), tuple(cfg.windows[2:]))
    u, y = tasks.symbol_classification(cfg.n_sequences, cfg.seq_len, windows=windows,
                                       seed=cfg.seed)
    uv, yv = tasks.symbol_classification(cfg.n_val, cfg.seq_len, windows=windows,
                                         seed=cfg.seed + 1)
    n_in = u.shape[-1]
    model = models.SequenceClassifier(
        models.make_rnn(cfg.model, n_in, cfg.hidden, stable_rule=cfg.stable_rule), 4)
    inputs = torch.eye(n_in)
    recorder = _run.constant_input_recorder(cfg, inputs)
    return _run.train_and_save(
        cfg, folder, model, experiment=NAME, recorders={"orbits": recorder}, device=device,
        progress=progress, resume=resume,
        loss_fn=nn.CrossEntropyLoss(reduction=cfg.loss_reduction),
        train_data=Batches(u, y, cfg.batch_size, shuffle=cfg.shuffle, seed=weight_seed),
        val_data=Batches(uv, yv, cfg.n_val, shuffle=False), metrics={"accuracy": accuracy},
        scheduler={"name": "multistep", "milestones": list(cfg.milestones), "gamma": cfg.gamma},
        post_step=models.apply_constraints)
