"""Shared plumbing of the experiments: configs, checks, set-up, provenance, output files.

Every experiment module (:mod:`~lib.experiments.symbol_classification`,
:mod:`~lib.experiments.sine`, :mod:`~lib.experiments.language_model`) defines a frozen
config dataclass whose defaults are the authors' configuration, and ``run(config, out)``,
which calls :func:`train_and_save` here. The command line (``__main__``) builds its options
from the dataclass fields with :func:`add_config_arguments` and :func:`config_from_args`.

Output folder of a run (``out``)::

    run.json          config, git commit, device, torch version, wall time, summary
    history.json      loss and metrics per epoch
    orbits.pt         the orbit data and λ_1 per recorded epoch (checksummed)
    model.pt          the final state_dict
    checkpoint.pt     the last epoch's checkpoint; rerunning the same command resumes it
    checkpoint_records/   one file per record (the checkpoint holds only their epochs)
    .invocations.json     invocations and resumes of the folder, cumulative wall time
    .lock                 held by the run that writes the folder (filelock)

Every file is written through :func:`lib.training.atomic_write` (unique temporary name,
fsync, rename); temporaries that a killed run left are swept when the next run takes the
lock.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import platform
import subprocess
import time
import typing
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import torch
from filelock import FileLock, Timeout
from torch import nn

from .. import seed_everything
from ..models import STABLE_RULES
from ..training import (CheckpointError, atomic_write, OrbitRecorder, TrainResult, load_checkpoint,
                        lyapunov_sampler, orbit_sampler, save_checkpoint, sweep_temporary_files,
                        train)

ROOT = Path(__file__).resolve().parents[2]
LOSS_REDUCTIONS = ("sum", "mean")


class ConfigError(ValueError):
    """A bad config value; ``field`` names the config field (the CLI option ``--field``)."""

    def __init__(self, field: str, message: str):
        super().__init__(f"{field}: {message}")
        self.field = field


# ----------------------------------------------------------------------------- checks
def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_real(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def check_fields(cfg: Any, *, positive_int: Sequence[str] = (), nonnegative_int: Sequence[str] = (),
                 positive_real: Sequence[str] = (), unit_interval: Sequence[str] = (),
                 choices: Mapping[str, Sequence[Any]] = {}) -> None:
    """Raise :class:`ConfigError` for the first field of ``cfg`` outside its range.

    ``None`` is accepted for a field whose annotation allows it (``int | None``).
    """
    hints = typing.get_type_hints(type(cfg))

    def optional(name):
        return type(None) in typing.get_args(hints.get(name))

    for group, ok, what in (
        (positive_int, lambda v: _is_int(v) and v > 0, "a positive integer"),
        (nonnegative_int, lambda v: _is_int(v) and v >= 0, "a non-negative integer"),
        (positive_real, lambda v: _is_real(v) and v > 0, "a finite number > 0"),
        (unit_interval, lambda v: _is_real(v) and 0 <= v < 1, "a number in [0, 1)"),
    ):
        for name in group:
            v = getattr(cfg, name)
            if v is None and optional(name):
                continue
            if not ok(v):
                raise ConfigError(name, f"must be {what}, got {v!r}")
    for name, allowed in choices.items():
        v = getattr(cfg, name)
        if v not in allowed:
            raise ConfigError(name, f"must be one of {tuple(allowed)}, got {v!r}")


def check_sorted_ints(cfg: Any, name: str) -> None:
    v = getattr(cfg, name)
    if not all(_is_int(m) and m > 0 for m in v) or list(v) != sorted(set(v)):
        raise ConfigError(name, f"must be increasing positive integers, got {v!r}")


def check_orbit_window(cfg: Any, steps: str, transient: str) -> None:
    if getattr(cfg, transient) >= getattr(cfg, steps):
        raise ConfigError(transient, f"must be < {steps} = {getattr(cfg, steps)}, "
                                     f"got {getattr(cfg, transient)}")


@dataclass(frozen=True)
class SequenceTaskConfig:
    """Fields shared by the symbol-classification and sine configs (symbol defaults).

    Training: ``model``, ``epochs``, ``hidden``, ``seq_len``, ``n_sequences``,
    ``batch_size``, Adam's ``lr``, the gradient-norm ``clip``, ``loss_reduction`` ("sum":
    the authors'), MultiStepLR ``milestones`` and ``gamma``, ``shuffle`` (False: the
    authors' fixed batch order), the stable LSTM's ``stable_rule``. Orbits: every
    ``orbit_every`` epochs, ``orbit_init`` initial states of standard deviation
    ``orbit_std`` per input, ``orbit_steps`` steps of which ``orbit_transient`` are dropped,
    ``orbit_shared_init`` (False: a separate state per (input, state) pair, the authors'),
    ``orbit_at_start`` (record the untrained model; the authors do not). λ_1 from
    ``lyapunov_init`` states (0: none) of standard deviation ``lyapunov_std``, averaged
    over ``lyapunov_steps`` steps after ``lyapunov_transient``.
    """

    model: str = "lstm"
    epochs: int = 400
    hidden: int = 50
    seq_len: int = 200
    n_sequences: int = 1000
    batch_size: int = 100
    lr: float = 1e-3
    clip: float = 0.25
    loss_reduction: str = "sum"
    milestones: tuple[int, ...] = (500, 1000, 2000)
    gamma: float = 0.25
    shuffle: bool = False
    stable_rule: str = "rescale"
    orbit_every: int = 1
    orbit_init: int = 10
    orbit_std: float = 100.0
    orbit_steps: int = 800
    orbit_transient: int = 400
    orbit_shared_init: bool = False
    orbit_at_start: bool = False
    lyapunov_init: int = 2
    lyapunov_std: float = 1.0
    lyapunov_steps: int = 200
    lyapunov_transient: int = 200
    seed: int = 2

    CHOICES = {"model": ("lstm", "ornn", "slstm"), "loss_reduction": LOSS_REDUCTIONS,
               "stable_rule": STABLE_RULES}

    def validate(self) -> None:
        """Raise :class:`ConfigError` naming the first bad field."""
        check_constant_input_orbits(self)


def check_constant_input_orbits(cfg: Any) -> None:
    """The orbit and λ_1 fields shared by the symbol and sine configs, and the schedule."""
    check_fields(cfg, choices=getattr(cfg, "CHOICES", {}),
                 positive_int=("epochs", "hidden", "seq_len", "n_sequences", "batch_size",
                               "orbit_every", "orbit_init", "orbit_steps", "lyapunov_steps"),
                 nonnegative_int=("orbit_transient", "lyapunov_init", "lyapunov_transient",
                                  "seed"),
                 positive_real=("lr", "clip", "gamma", "orbit_std", "lyapunov_std"))
    check_sorted_ints(cfg, "milestones")
    check_orbit_window(cfg, "orbit_steps", "orbit_transient")
    if cfg.orbit_transient < 1:
        raise ConfigError("orbit_transient", "must be >= 1 (first differences)")
    if cfg.gamma > 1:
        raise ConfigError("gamma", f"must be in (0, 1] (a decay), got {cfg.gamma!r}")


def constant_input_recorder(cfg: Any, inputs: torch.Tensor) -> OrbitRecorder:
    """The orbit recorder of the symbol and sine experiments, from the config's fields.

    Orbits under each constant input ``inputs[i]`` (``orbit_init`` initial states of
    standard deviation ``orbit_std``, ``orbit_steps`` steps, the first ``orbit_transient``
    dropped), every ``orbit_every`` epochs; λ_1 from ``lyapunov_init`` states (0: none).
    """
    return OrbitRecorder(
        orbit_sampler(inputs, n_init=cfg.orbit_init, std=cfg.orbit_std, n_steps=cfg.orbit_steps,
                      n_transient=cfg.orbit_transient, seed=cfg.seed,
                      shared_init=cfg.orbit_shared_init),
        every=cfg.orbit_every, at_start=cfg.orbit_at_start,
        lyapunov=lyapunov_sampler(inputs, n_init=cfg.lyapunov_init, std=cfg.lyapunov_std,
                                  n_steps=cfg.lyapunov_steps,
                                  n_transient=cfg.lyapunov_transient, seed=cfg.seed)
        if cfg.lyapunov_init else None)


# ----------------------------------------------------------------------------- configs
def config_dict(cfg: Any) -> dict[str, Any]:
    """The config as JSON-ready values (tuples as lists)."""
    return json.loads(json.dumps(dataclasses.asdict(cfg)))


def identity(cfg: Any) -> dict[str, Any]:
    """What a checkpoint must match to be resumed: the config without ``epochs``, so that
    rerunning with more epochs extends a finished run."""
    return {k: v for k, v in config_dict(cfg).items() if k != "epochs"}


def differences(paper: Any, live: Any) -> list[tuple[str, Any, Any]]:
    """``(field, paper value, live value)`` for every field where two configs differ."""
    for name, cfg in (("paper", paper), ("live", live)):
        if not dataclasses.is_dataclass(cfg) or isinstance(cfg, type):
            raise TypeError(f"{name} must be an experiment config (a dataclass instance), "
                            f"got {type(cfg).__name__}")
    if type(paper) is not type(live):
        raise TypeError(f"paper and live must be configs of one experiment, got "
                        f"{type(paper).__name__} and {type(live).__name__}")
    a, b = config_dict(paper), config_dict(live)
    return [(k, a[k], b[k]) for k in a if a[k] != b[k]]


# What an unset (None) field means, in words, for the tables of differences.
NONE_MEANS = {"max_words": "all words", "train_tokens": "the whole split",
              "eval_tokens": "the whole splits", "modrelu_bias": "the layer's own",
              "weight_seed": "the value of seed"}


def differences_table(paper: Any, live: Any, *, live_name: str = "this page") -> str:
    """A Markdown table of :func:`differences`: field, the authors' value, ``live``'s value.

    An unset field reads as its meaning (:data:`NONE_MEANS`: "all words", ...), not "None".
    """
    def fmt(v, field):  # as code, so that "<unk>" and the like print as they are
        if v is None:
            return NONE_MEANS.get(field, "unset")
        if isinstance(v, list):
            return ", ".join(f"`{x}`" for x in v)
        return f"`{v:g}`" if isinstance(v, float) else f"`{v}`"

    rows = [f"| `{k}` | {fmt(a, k)} | {fmt(b, k)} |" for k, a, b in differences(paper, live)]
    head = f"| field | the authors' configuration | {live_name} |\n|---|---|---|"
    return "\n".join([head, *rows]) if rows else "The two configurations are equal."


def _cli_type(hint) -> tuple[Callable, str | None]:
    """The argparse ``type`` and ``nargs`` of a config field's annotation."""
    if type(None) in typing.get_args(hint):  # X | None
        hint = next(a for a in typing.get_args(hint) if a is not type(None))
    if typing.get_origin(hint) is tuple:
        return typing.get_args(hint)[0], "+"
    if hint is bool:
        def boolean(s: str) -> bool:
            if s.lower() not in ("true", "false"):
                raise ValueError(s)
            return s.lower() == "true"
        boolean.__name__ = "true/false"
        return boolean, None
    return hint, None


FIELD_HELP = {  # what each config field means, for --help
    "model": "recurrent layer", "epochs": "number of epochs", "hidden": "hidden units",
    "seq_len": "sequence length (steps)", "n_sequences": "training sequences",
    "n_val": "validation sequences", "batch_size": "sequences (streams) per batch",
    "lr": "Adam's learning rate", "clip": "gradient-norm clip",
    "loss_reduction": "sum (the authors') or mean over the batch before clipping",
    "milestones": "MultiStepLR milestones (epochs)", "gamma": "MultiStepLR decay factor",
    "shuffle": "reshuffle the batches every epoch (true/false; the authors: false)",
    "stable_rule": "stable LSTM: rescale every column to its bound (the authors') or "
                   "project the columns above it",
    "orbit_every": "record the orbits every k epochs",
    "orbit_init": "initial states per constant input", "orbit_std": "their standard deviation",
    "orbit_steps": "steps per orbit", "orbit_transient": "steps dropped (burn-in)",
    "orbit_shared_init": "the same initial states under every input (true/false)",
    "orbit_at_start": "also record the untrained model (true/false)",
    "lyapunov_init": "initial states for lambda_1 per input (0: no lambda_1)",
    "lyapunov_std": "their standard deviation", "lyapunov_steps": "QR steps averaged",
    "lyapunov_transient": "steps before averaging", "seed": "seed of data and weights",
    "weight_seed": "seed of the initial weights and batch order",
    "windows": "the two windows A1 B1 A2 B2 where the symbols sit",
    "orbit_inputs": "constant inputs of the orbits",
    "n_embed": "embedding size", "n_hidden": "hidden units", "dropout": "dropout probability",
    "bptt": "truncated-BPTT window (steps)", "eval_batch_size": "streams when evaluating",
    "patience": "ReduceLROnPlateau patience (epochs)", "factor": "ReduceLROnPlateau factor",
    "orthogonal_lr_factor": "oRNN: learning rate of W relative to lr",
    "modrelu_bias": "oRNN: initial modReLU bias",
    "max_words": "vocabulary cap",
    "train_tokens": "use only the first N tokens of the training split",
    "eval_tokens": "use only the first N tokens of each evaluation split",
    "n_random_inputs": "seeded random words among the constant inputs",
    "orbit_tokens": "words whose logits are projected", "projection":
    "decoder_mean (the authors': mean decoder output and logits) or hidden_mean",
    "n_init": "initial states per orbit input", "std": "their standard deviation",
    "n_burn": "burn-in steps", "n_keep": "steps kept after the burn-in",
    "lyap_steps": "steps averaged for lambda_1 of the feedback map: the last ones of the "
                  "feedback orbits (must be < n_burn + n_keep)",
    "missing_train": "without train.txt: error, or train on valid.txt (then the first "
                     "half of test.txt validates and the second half tests)",
    "allow_synthetic": "train on the synthetic corpus when no WikiText-2 is found "
                       "(true/false)",
}


def _shown(field: str, value: Any) -> str:
    """A default as one types it on the command line (words for an unset field)."""
    if value is None:
        return NONE_MEANS.get(field, "unset")
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, (tuple, list)):
        return " ".join(str(v) for v in value)
    return str(value)


def add_config_arguments(parser, config_cls: type, choices: Mapping[str, Sequence] = {},
                         *, help: Mapping[str, str] = {},
                         aliases: Mapping[str, Sequence[str]] = {}) -> None:
    """One option ``--field-name`` per field of ``config_cls``, default: the field's.

    ``help`` overrides :data:`FIELD_HELP` for this experiment; ``aliases`` gives a field
    further option names (the names other experiments use for the same quantity)."""
    hints = typing.get_type_hints(config_cls)
    for f in fields(config_cls):
        typ, nargs = _cli_type(hints[f.name])
        default = f.default
        what = help.get(f.name, FIELD_HELP.get(f.name, ""))
        kw: dict[str, Any] = {"dest": f.name, "default": None,
                              "help": f"{what}{'; ' if what else ''}default: "
                                      f"{_shown(f.name, default)}"}
        if nargs:
            kw["nargs"] = nargs
        if f.name in choices:
            kw["choices"] = list(choices[f.name])
        kw["type"] = typ
        if type(None) in typing.get_args(hints[f.name]):
            inner = kw["type"]
            kw["type"] = lambda s, inner=inner: None if s.lower() == "none" else inner(s)
            kw["help"] += (" (or 'none')" if default is None
                           else f"; 'none': {NONE_MEANS.get(f.name, 'unset')}")
        names = ["--" + f.name.replace("_", "-"), *aliases.get(f.name, ())]
        parser.add_argument(*names, **kw)


def config_from_args(base: Any, args) -> Any:
    """``base`` with every option given on the command line replaced (validated)."""
    changes = {}
    for f in fields(base):
        v = getattr(args, f.name, None)
        if v is not None:
            changes[f.name] = tuple(v) if isinstance(v, list) else v
    return dataclasses.replace(base, **changes)


# ----------------------------------------------------------------------------- provenance
def git_state(root: Path = ROOT) -> dict[str, Any]:
    """``{"commit": HEAD, "modified": n, "untracked": m, "dirty": n + m > 0}`` of the
    checkout ``root`` (ignored files do not count; an untracked source file does, since it
    can change what ran), or ``{"commit": "unknown", ...}`` outside a git checkout."""
    try:
        head = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], check=True,
                              capture_output=True, text=True, timeout=10).stdout.strip()
        status = subprocess.run(["git", "-C", str(root), "status", "--porcelain",
                                 "--untracked-files=all"], check=True, capture_output=True,
                                text=True, timeout=10).stdout.splitlines()
    except (OSError, subprocess.SubprocessError):
        return {"commit": "unknown", "modified": None, "untracked": None, "dirty": None}
    untracked = sum(1 for line in status if line.startswith("??"))
    modified = len(status) - untracked
    return {"commit": head, "modified": modified, "untracked": untracked,
            "dirty": modified + untracked > 0}


def git_commit(root: Path = ROOT) -> str:
    """``git rev-parse HEAD`` (with ``-dirty`` if tracked files changed or untracked files
    exist), or ``"unknown"``."""
    state = git_state(root)
    return state["commit"] + ("-dirty" if state["dirty"] else "")


def device_name(device: str | torch.device) -> str:
    """A readable name of the device a run used (GPU model, or CPU and thread count)."""
    dev = torch.device(device)
    if dev.type == "cuda":
        return f"cuda: {torch.cuda.get_device_name(dev)}"
    n = torch.get_num_threads()
    return f"cpu: {platform.processor() or platform.machine()}, {n} thread{'s' * (n != 1)}"


def write_json(path: Path, obj: Any) -> None:
    """Write ``obj`` as JSON atomically (unique temporary file, fsync, rename)."""
    atomic_write(path, json.dumps(obj, indent=1, default=float).encode())


def load_run(out: str | Path) -> dict[str, Any]:
    """Read what a run wrote: ``run`` (run.json), ``history`` and, if present, ``orbits``."""
    out = Path(out)
    if not (out / "run.json").is_file():
        raise FileNotFoundError(f"{out / 'run.json'} does not exist: not a finished run folder")
    result: dict[str, Any] = {"run": json.loads((out / "run.json").read_text())}
    if (out / "history.json").is_file():
        result["history"] = json.loads((out / "history.json").read_text())
    if (out / "orbits.pt").is_file():
        result["orbits"] = load_checkpoint(out / "orbits.pt")
    return result


# ----------------------------------------------------------------------------- a run
@dataclass
class RunResult:
    """What ``run(config, out)`` returns: the trained model, history, recorders, summary."""

    config: Any
    model: nn.Module
    history: dict[str, list]
    recorders: dict[str, OrbitRecorder]
    summary: dict[str, Any]
    out: Path | None


def check_device(device: str | torch.device) -> torch.device:
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise ConfigError("device", f"must be 'cpu' or 'cuda[:k]', got {device!r}") from exc
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device", "CUDA is not available here: use 'cpu'")
    if dev.type not in ("cpu", "cuda"):
        raise ConfigError("device", f"must be 'cpu' or 'cuda[:k]', got {device!r}")
    return dev


def prepare(cfg: Any, out: str | Path | None, *, device, resume: bool,
            flush_denormals: bool = True, seed: int | None = None) -> Path | None:
    """Everything checked before any data is loaded or any epoch runs.

    Validates ``cfg`` (its ``validate()``), the device and ``out``: a folder (created by
    :func:`train_and_save`, once the data are loaded and checked) or None (nothing written); an existing checkpoint there must belong to the same run
    (:func:`identity`) when ``resume`` is true. Then seeds every generator with
    ``seed`` (default ``cfg.seed``) and, on the CPU, flushes denormal floats to zero (the vanishing gradients
    of long sequences are denormal and make an epoch several times slower).
    """
    cfg.validate()
    dev = check_device(device)
    folder = None
    if out is not None:
        folder = Path(out)
        if folder.exists() and not folder.is_dir():
            raise ConfigError("out", f"{str(folder)!r} exists and is not a folder")
        ckpt = folder / "checkpoint.pt"
        if resume and ckpt.exists():
            try:
                done = load_checkpoint(ckpt, expected=identity(cfg))["epoch"]
            except CheckpointError as exc:
                raise ConfigError("out", f"{exc}; choose another folder (or --no-resume, which "
                                         "replaces that run)") from exc
            if done > cfg.epochs:
                raise ConfigError("epochs", f"{str(folder)!r} already holds {done} epochs of this "
                                            f"run; ask for at least {done} (or another folder)")
    seed_everything(cfg.seed if seed is None else seed)
    if flush_denormals and dev.type == "cpu":
        torch.set_flush_denormal(True)
    return folder


def train_and_save(cfg: Any, out: Path | None, model: nn.Module, *, experiment: str,
                   recorders: Mapping[str, OrbitRecorder], device, progress: bool | str,
                   resume: bool, summarize: Callable[[TrainResult], dict] | None = None,
                   **train_kwargs) -> RunResult:
    """:func:`lib.training.train` with the config's epochs, lr and clip, then the files.

    ``train_kwargs`` go to :func:`~lib.training.train` (loss, data, forward, optimizer,
    scheduler, ...). With ``out`` set, the checkpoint lives there and the run's files are
    written when training ends (see the module docstring); the run holds an exclusive lock
    on ``out`` (``filelock``), and a second run on the same folder is refused with a
    :class:`ConfigError` naming ``out`` instead of mixing the two runs' files.
    """
    lock = contextlib.nullcontext()
    if out is not None:
        try:
            out.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ConfigError("out", f"cannot create the folder {str(out)!r}: {exc}") from None
        try:  # held until the with-block ends
            lock = FileLock(out / ".lock").acquire(timeout=0)
        except Timeout:
            raise ConfigError("out", f"{str(out)!r} is in use by another run (locked)") from None
    with lock:
        if out is not None:  # what a run killed mid-write left behind
            sweep_temporary_files(out)
        return _train_and_save(cfg, out, model, experiment=experiment, recorders=recorders,
                               device=device, progress=progress, resume=resume,
                               summarize=summarize, **train_kwargs)


PROVENANCE = ".invocations.json"  # every invocation on an output folder, resumes included


def _invocations(out: Path | None, resume: bool, t0: float) -> tuple[dict[str, Any], Callable]:
    """The folder's record of invocations, counted with this one, and a callback that
    keeps its cumulative wall time current after every epoch (a killed invocation's time
    counts too); ``t0`` is the invocation's start (``time.perf_counter``)."""
    if out is None:
        state = {"invocations": 1, "resumes": 0, "previous_wall_seconds": 0.0}
        return state, lambda *a: None
    path = out / PROVENANCE
    prev: dict[str, Any] = {}
    if resume and (out / "checkpoint.pt").exists() and path.is_file():
        try:
            prev = json.loads(path.read_text())
        except (OSError, ValueError):
            prev = {}
    resumed = bool(resume and (out / "checkpoint.pt").exists())
    git = git_state()  # the code this invocation runs: taken now, not when it ends
    commit = git["commit"] + ("-dirty" if git["dirty"] else "")
    state = {"invocations": int(prev.get("invocations", 1 if resumed else 0)) + 1,
             "resumes": int(prev.get("resumes", 0)) + int(resumed),
             "commits": [*prev.get("commits", []), commit], "git": git,
             "previous_wall_seconds": float(prev.get("wall_seconds_total", 0.0))}

    def update(*_args) -> None:
        state["wall_seconds_total"] = state["previous_wall_seconds"] + time.perf_counter() - t0
        write_json(path, {k: v for k, v in state.items()
                          if k not in ("previous_wall_seconds", "git")})

    update()
    return state, update


def _train_and_save(cfg, out, model, *, experiment, recorders, device, progress, resume,
                    summarize, **train_kwargs) -> RunResult:
    t0 = time.perf_counter()
    invocations, update = _invocations(out, resume, t0)
    train_kwargs["callbacks"] = [*train_kwargs.get("callbacks", ()), update]
    result = train(model, epochs=cfg.epochs, lr=cfg.lr, clip=cfg.clip,
                   recorders=list(recorders.values()),
                   checkpoint=None if out is None else out / "checkpoint.pt", resume=resume,
                   config=identity(cfg), device=device, progress=progress,
                   desc=f"{experiment} {cfg.model} seed {cfg.seed}", **train_kwargs)
    wall = time.perf_counter() - t0
    update()
    h = result.history
    summary = {k: h[k][-1] for k in h if k.startswith(("train_", "val_")) and h[k]}
    for key, rec in recorders.items():
        if rec.drift is not None:  # did the last record's burn-in converge?
            summary[f"{key}_drift_last"] = float(rec.drift[-1].max())
    if summarize is not None:
        summary.update(summarize(result))
    if out is not None and result.epochs_run == 0 and (out / "run.json").is_file():
        # a rerun of a finished run trained nothing: its files, timings included, stand
        return RunResult(cfg, model, h, dict(recorders), summary, out)
    if out is not None:
        write_json(out / "history.json", h)
        orbits: dict[str, Any] = {}
        for key, rec in recorders.items():
            if not rec.epochs:
                continue
            orbits[f"{key}_epochs"] = torch.tensor(rec.epochs)
            orbits[key] = rec.samples
            if rec.lyapunov is not None:
                orbits[f"{key}_lyapunov"] = rec.lyapunov
            if rec.drift is not None:
                orbits[f"{key}_drift"] = rec.drift
                orbits[f"{key}_drift_epochs"] = torch.tensor(rec.drift_epochs)
        save_checkpoint(out / "orbits.pt", orbits)
        save_checkpoint(out / "model.pt", {"model": model.state_dict()})
        git = invocations["git"]  # as the last invocation started: the code that ran
        write_json(out / "run.json", {
            "experiment": experiment,
            "config": config_dict(cfg),
            "commit": git["commit"] + ("-dirty" if git["dirty"] else ""),
            "commits": invocations["commits"],  # every invocation's, resumes included
            "dirty": git["dirty"],
            "git": git,
            "resumes": invocations["resumes"],
            "invocations": invocations["invocations"],
            "wall_seconds_total": invocations["wall_seconds_total"],
            "device": device_name(device),
            "torch": torch.__version__,
            "python": platform.python_version(),
            "finished": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "wall_seconds": wall,
            "epochs_run": result.epochs_run,
            "summary": summary,
        })
    return RunResult(cfg, model, h, dict(recorders), summary, out)
