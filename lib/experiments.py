"""Command line for the full-scale experiments: ``python -m lib.experiments <name> ...``.

Built-in experiments (reference configuration of DESIGN.md as defaults)::

    python -m lib.experiments symbol-classification --model lstm|ornn|slstm \\
        --epochs N --seed S --device cpu|cuda --out DIR
    python -m lib.experiments sine --model lstm --epochs N --seed S --out DIR

Every run writes into ``DIR``: ``run.json`` (the configuration, the git commit, the device,
torch's version and the wall time), ``history.json`` (loss and accuracy per epoch),
``orbits.pt`` (the orbit data and λ_max per recorded epoch), ``model.pt`` (the final
``state_dict``) and ``checkpoint.pt`` (rerunning the same command resumes from it).

Other modules add experiments with :func:`register`. ``lib.language_model`` is imported
lazily when it exists and defines ``register_experiment(register)``, which adds the
``language-model`` subcommand.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import json
import platform
import subprocess
import sys
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn

__all__ = ["register", "main", "build_parser", "git_commit", "device_name", "load_run",
           "run_symbol_classification", "run_sine", "EXPERIMENTS"]

ROOT = Path(__file__).resolve().parent.parent


@dataclass
class Experiment:
    name: str
    add_arguments: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], dict | None]
    help: str = ""


EXPERIMENTS: dict[str, Experiment] = {}


def register(name: str, add_arguments: Callable[[argparse.ArgumentParser], None],
             run: Callable[[argparse.Namespace], dict | None], *, help: str = "") -> None:
    """Add a subcommand ``name``.

    ``add_arguments(parser)`` declares all its options; it must define ``--out`` (the output
    folder) and may define ``--device`` (default ``cpu``). ``run(args)`` does the work,
    writes its files into ``args.out`` and returns a dict; its scalar entries are stored as
    the ``summary`` of ``run.json``, which :func:`main` writes beside them with the config,
    the commit, the device and the wall time.
    """
    if not name or not isinstance(name, str):
        raise ValueError(f"name must be a non-empty string, got {name!r}")
    EXPERIMENTS[name] = Experiment(name, add_arguments, run, help)


PLUGINS: tuple[str, ...] = ("lib.language_model",)


def _load_plugins(names: tuple[str, ...] | None = None) -> None:
    """Import each plugin module that exists (``lib.language_model``) and call its
    ``register_experiment(register)``, which adds its subcommands (``language-model``)."""
    for name in PLUGINS if names is None else names:
        try:
            spec = importlib.util.find_spec(name)
        except (ImportError, ValueError):
            spec = None
        if spec is None:
            continue
        try:
            hook = getattr(importlib.import_module(name), "register_experiment", None)
        except Exception as exc:  # a broken plugin must not take the other experiments down
            warnings.warn(f"experiments of {name} unavailable: importing it failed with {exc!r}")
            continue
        if callable(hook):
            hook(register)


# ----------------------------------------------------------------------------- provenance
def git_commit(root: Path = ROOT) -> str:
    """``git rev-parse HEAD`` of the repository (with ``-dirty`` if files changed), or
    ``"unknown"`` outside a git checkout."""
    try:
        head = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], check=True,
                              capture_output=True, text=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
                               check=True, capture_output=True, text=True, timeout=10).stdout.strip()
        return head + ("-dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def device_name(device: str) -> str:
    """A readable name of the device a run used (GPU model, or CPU and thread count)."""
    dev = torch.device(device)
    if dev.type == "cuda":
        return f"cuda: {torch.cuda.get_device_name(dev)}"
    return f"cpu: {platform.processor() or platform.machine()}, {torch.get_num_threads()} threads"


def _write_json(path: Path, obj: Any) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(obj, indent=1, default=str))
    tmp.replace(path)


def load_run(out: str | Path) -> dict[str, Any]:
    """Read what a run wrote: ``run`` (run.json), ``history`` and, if present, ``orbits``."""
    out = Path(out)
    if not (out / "run.json").is_file():
        raise FileNotFoundError(f"{out / 'run.json'} does not exist: not a finished run folder")
    result: dict[str, Any] = {"run": json.loads((out / "run.json").read_text())}
    if (out / "history.json").is_file():
        result["history"] = json.loads((out / "history.json").read_text())
    if (out / "orbits.pt").is_file():
        from .training import load_checkpoint

        result["orbits"] = load_checkpoint(out / "orbits.pt")
    return result


# ----------------------------------------------------------------------------- common options
def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--seed", type=int, default=0, help="seed of the data and the initial weights")
    p.add_argument("--device", default="cpu", help="cpu or cuda")
    p.add_argument("--out", required=True, type=Path, help="output folder")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--no-resume", action="store_true", help="ignore an existing checkpoint")
    p.add_argument("--keep-denormals", action="store_true",
                   help="do not flush denormal floats to zero (on CPU, vanishing gradients "
                        "of long sequences are denormal and make an epoch several times slower)")


def _training_options(p: argparse.ArgumentParser, *, epochs: int, hidden: int, batch: int,
                      seq_len: int, models: tuple[str, ...]) -> None:
    p.add_argument("--model", default=models[0], choices=models, help="recurrent layer")
    p.add_argument("--epochs", type=int, default=epochs)
    p.add_argument("--hidden", type=int, default=hidden, help="hidden size")
    p.add_argument("--batch-size", type=int, default=batch)
    p.add_argument("--seq-len", type=int, default=seq_len)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--clip", type=float, default=0.25, help="gradient-norm clip")
    p.add_argument("--record-every", type=int, default=1, help="orbit recording period (epochs)")
    p.add_argument("--lyapunov-every", type=int, default=0,
                   help="λ_max recording period in epochs (0: at the orbit epochs)")
    p.add_argument("--lyapunov-steps", type=int, default=200, help="QR steps averaged for λ_max")
    p.add_argument("--lyapunov-transient", type=int, default=200,
                   help="steps discarded before averaging λ_max")


def _setup(args: argparse.Namespace):
    import lib

    if args.device.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError("device must be 'cpu' here: CUDA is not available")
    lib.seed_everything(args.seed)
    if not args.keep_denormals:
        torch.set_flush_denormal(True)  # this process only: the command owns it
    args.out.mkdir(parents=True, exist_ok=True)


def _finish(args, model: nn.Module, result, recorders: dict[str, Any]) -> dict[str, Any]:
    from .training import save_checkpoint

    _write_json(args.out / "history.json", result.history)
    orbits: dict[str, Any] = {}
    for key, rec in recorders.items():
        orbits[f"{key}_epochs"] = torch.tensor(rec.epochs)
        orbits[key] = rec.samples
        if rec.lyapunov is not None:
            orbits[f"{key}_lyapunov"] = rec.lyapunov
    save_checkpoint(args.out / "orbits.pt", orbits)  # checksummed; read with load_run
    torch.save(model.state_dict(), args.out / "model.pt")
    h = result.history
    return {k: h[k][-1] for k in h if k.startswith(("train_", "val_")) and h[k]}


def _train_run(args, model, loss_fn, train_data, val_data, metrics, recorders,
               scheduler, config):
    from .models import apply_constraints
    from .training import train

    return train(model, loss_fn, train_data, val_data=val_data, epochs=args.epochs,
                 metrics=metrics, lr=args.lr, clip=args.clip, scheduler=scheduler,
                 recorders=list(recorders.values()), post_step=apply_constraints,
                 checkpoint=args.out / "checkpoint.pt", resume=not args.no_resume,
                 config=_identity(config), device=args.device, progress=not args.no_progress,
                 desc=f"{config['experiment']} {args.model} seed {args.seed}")


def _recorders(args, orbit_sampler, lyap_fn):
    from .training import OrbitRecorder

    if args.lyapunov_every in (0, args.record_every):
        return {"orbits": OrbitRecorder(orbit_sampler, every=args.record_every, lyapunov=lyap_fn)}
    recs = {"orbits": OrbitRecorder(orbit_sampler, every=args.record_every)}
    if args.lyapunov_every > 0:
        recs["lyapunov"] = OrbitRecorder(lyap_fn, every=args.lyapunov_every)
    return recs


def _config(args: argparse.Namespace, experiment: str) -> dict[str, Any]:
    """The run's configuration (everything but where and how it runs)."""
    cfg = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()
           if k not in ("out", "no_progress", "no_resume", "device", "func")}
    cfg["experiment"] = experiment
    return cfg


def _identity(config: dict[str, Any]) -> dict[str, Any]:
    """What a checkpoint must match to be resumed: the config without ``epochs``, so that
    rerunning with more epochs extends a finished run."""
    return {k: v for k, v in config.items() if k != "epochs"}


# ----------------------------------------------------------------------------- symbol classification
def _add_symbol_args(p: argparse.ArgumentParser) -> None:
    _common(p)
    _training_options(p, epochs=400, hidden=50, batch=100, seq_len=200,
                      models=("lstm", "ornn", "slstm"))
    p.add_argument("--n-train", type=int, default=1000)
    p.add_argument("--n-val", type=int, default=1000)
    p.add_argument("--windows", type=int, nargs=4, default=[9, 19, 39, 49],
                   metavar=("A1", "B1", "A2", "B2"), help="the two windows [A1, B1), [A2, B2)")
    p.add_argument("--milestones", type=int, nargs="*", default=[500, 1000, 2000],
                   help="MultiStepLR milestones (epochs)")
    p.add_argument("--gamma", type=float, default=0.25)
    p.add_argument("--orbit-init", type=int, default=10, help="initial states per input")
    p.add_argument("--orbit-steps", type=int, default=800)
    p.add_argument("--orbit-transient", type=int, default=400)


def run_symbol_classification(args: argparse.Namespace) -> dict[str, Any]:
    """Supplementary Figures 2-4: symbol classification with orbit recording."""
    from .models import SequenceClassifier, make_rnn
    from .tasks import symbol_classification
    from .training import Batches, accuracy, constant_input_orbits, largest_lyapunov

    _setup(args)
    windows = ((args.windows[0], args.windows[1]), (args.windows[2], args.windows[3]))
    u, y = symbol_classification(args.n_train, args.seq_len, windows=windows, seed=args.seed)
    uv, yv = symbol_classification(args.n_val, args.seq_len, windows=windows, seed=args.seed + 1)
    n_in = u.shape[-1]
    model = SequenceClassifier(make_rnn(args.model, n_in, args.hidden), 4)
    inputs = torch.eye(n_in)
    recs = _recorders(
        args,
        constant_input_orbits(inputs, n_init=args.orbit_init, std=100.0, n_steps=args.orbit_steps,
                              n_transient=args.orbit_transient, seed=args.seed),
        largest_lyapunov(inputs, n_init=2, seed=args.seed, n_steps=args.lyapunov_steps,
                         n_transient=args.lyapunov_transient),
    )
    result = _train_run(
        args, model, nn.CrossEntropyLoss(),
        Batches(u, y, args.batch_size, seed=args.seed),
        Batches(uv, yv, max(args.batch_size, 500), shuffle=False),
        {"accuracy": accuracy}, recs,
        {"name": "multistep", "milestones": list(args.milestones), "gamma": args.gamma},
        _config(args, "symbol-classification"))
    return _finish(args, model, result, recs)


# ----------------------------------------------------------------------------- sine generation
def _add_sine_args(p: argparse.ArgumentParser) -> None:
    _common(p)
    _training_options(p, epochs=400, hidden=200, batch=10, seq_len=400,
                      models=("lstm", "ornn", "slstm"))
    p.add_argument("--n-freq", type=int, default=100, help="frequencies in [π/16, π/8]")
    p.add_argument("--orbit-freq", type=int, default=10, help="constant inputs of the orbits")
    p.add_argument("--orbit-init", type=int, default=4)
    p.add_argument("--orbit-steps", type=int, default=1600)
    p.add_argument("--orbit-transient", type=int, default=1200)


def run_sine(args: argparse.Namespace) -> dict[str, Any]:
    """Sine generation: an LSTM learns a limit cycle whose frequency the input sets."""
    from .models import SequenceRegressor, make_rnn
    from .tasks import sine_frequencies, sine_generation
    from .training import Batches, constant_input_orbits, largest_lyapunov

    _setup(args)
    u, y = sine_generation(sine_frequencies(args.n_freq), args.seq_len)
    model = SequenceRegressor(make_rnn(args.model, 1, args.hidden), 1)
    inputs = sine_frequencies(args.orbit_freq).reshape(-1, 1)
    recs = _recorders(
        args,
        constant_input_orbits(inputs, n_init=args.orbit_init, std=100.0, n_steps=args.orbit_steps,
                              n_transient=args.orbit_transient, seed=args.seed),
        largest_lyapunov(inputs, n_init=1, seed=args.seed, n_steps=args.lyapunov_steps,
                         n_transient=args.lyapunov_transient),
    )
    result = _train_run(args, model, nn.MSELoss(),
                        Batches(u, y, args.batch_size, target_batch_dim=1, seed=args.seed),
                        None, {}, recs, None, _config(args, "sine"))
    return _finish(args, model, result, recs)


register("symbol-classification", _add_symbol_args, run_symbol_classification,
         help="Supplementary Figures 2-4 (LSTM, oRNN, stable LSTM)")
register("sine", _add_sine_args, run_sine, help="sine generation: learning a limit cycle")


# ----------------------------------------------------------------------------- entry point
def build_parser() -> argparse.ArgumentParser:
    _load_plugins()
    parser = argparse.ArgumentParser(prog="python -m lib.experiments", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="experiment", required=True, metavar="EXPERIMENT")
    for exp in EXPERIMENTS.values():
        p = sub.add_parser(exp.name, help=exp.help)
        exp.add_arguments(p)
        p.set_defaults(func=exp.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Parse ``argv``, run the experiment, write ``run.json``; return the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    start = time.time()
    t0 = time.perf_counter()
    try:
        summary = args.func(args)
    except ValueError as exc:
        parser.error(str(exc))  # exits with status 2 and the message
    wall = time.perf_counter() - t0
    summary = {k: v for k, v in (summary or {}).items()
               if isinstance(v, (int, float, str, bool)) or v is None}
    device = str(getattr(args, "device", "cpu"))
    info = {
        "experiment": args.experiment,
        "config": _config(args, args.experiment),
        "argv": list(sys.argv[1:] if argv is None else argv),
        "commit": git_commit(),
        "device": device_name(device),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(start)),
        "wall_seconds": wall,
        "summary": summary,
    }
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    _write_json(out / "run.json", info)
    print(json.dumps({"out": str(out), "wall_seconds": round(wall, 2), **summary}))
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
