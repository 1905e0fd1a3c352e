"""Sine generation: an LSTM learns to turn a constant input ω into the output sin(ω t).

Defaults reproduce the authors' public code (``sine-generator/train.py``): 100 frequencies
ω in linspace(π/16, π/8), sequences of length 400 from the zero state, hidden size 200,
batches of 10 in a fixed order, squared error *summed* over the batch and the steps, the
gradient norm clipped at 0.25, Adam lr 1e-3, MultiStepLR at epochs 500, 1000, 2000, 8000,
15000, 25000 with factor 0.1, seed 2, 10,000 epochs (the script's default; the paper gives
no epoch count for this task). Orbits: 10 constant inputs in [π/16, π/8], a
separate initial state of standard deviation 100 for each of 4 sequences per input, 1600
steps of which the first 1200 are dropped, recorded after every epoch (never for the
untrained model). λ_1 per recorded epoch is the book's addition.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from .. import models, tasks
from ..training import Batches
from . import _run

NAME = "sine"
HELP = "sine generation: a fixed point gives way to an oscillation"
CHOICES = _run.SequenceTaskConfig.CHOICES
FIELD_HELP = {"orbit_inputs": "number of constant inputs ω of the orbits"}


@dataclass(frozen=True)
class Config(_run.SequenceTaskConfig):
    """One sine-generation run; the defaults are the authors' configuration.

    The fields of :class:`~lib.experiments._run.SequenceTaskConfig` with the sine task's
    defaults (``n_sequences`` is the number of frequencies), plus ``orbit_inputs``: the
    number of constant inputs (frequencies in [π/16, π/8]) of the orbit diagram.
    """

    epochs: int = 10000  # the authors' script's default (the paper states no epoch count)
    hidden: int = 200
    seq_len: int = 400
    n_sequences: int = 100
    batch_size: int = 10
    milestones: tuple[int, ...] = (500, 1000, 2000, 8000, 15000, 25000)
    gamma: float = 0.1
    orbit_init: int = 4
    orbit_steps: int = 1600
    orbit_transient: int = 1200
    lyapunov_init: int = 1
    orbit_inputs: int = 10

    def validate(self) -> None:
        """Raise :class:`~lib.experiments._run.ConfigError` naming the first bad field."""
        super().validate()
        _run.check_fields(self, positive_int=("orbit_inputs",))


PAPER = Config()


def run(cfg: Config, out=None, *, device: str = "cpu", progress: bool | str = True,
        resume: bool = True) -> _run.RunResult:
    """Train and record one run of ``cfg``; write its files into ``out`` (None: none).

    The recorder ``"orbits"`` holds samples ``(E, 2, orbit_inputs, orbit_init,
    orbit_steps - orbit_transient, 1)`` and λ_1 ``(E, orbit_inputs, lyapunov_init)``.
    """
    folder = _run.prepare(cfg, out, device=device, resume=resume)
    u, y = tasks.sine_generation(tasks.sine_frequencies(cfg.n_sequences), cfg.seq_len)
    model = models.SequenceRegressor(
        models.make_rnn(cfg.model, 1, cfg.hidden, stable_rule=cfg.stable_rule), 1)
    inputs = tasks.sine_frequencies(cfg.orbit_inputs).reshape(-1, 1)
    recorder = _run.constant_input_recorder(cfg, inputs)
    return _run.train_and_save(
        cfg, folder, model, experiment=NAME, recorders={"orbits": recorder}, device=device,
        progress=progress, resume=resume, loss_fn=nn.MSELoss(reduction=cfg.loss_reduction),
        train_data=Batches(u, y, cfg.batch_size, target_batch_dim=1, shuffle=cfg.shuffle,
                           seed=cfg.seed),
        scheduler={"name": "multistep", "milestones": list(cfg.milestones), "gamma": cfg.gamma},
        post_step=models.apply_constraints)
