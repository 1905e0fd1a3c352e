"""``python -m lib.experiments NAME [--field-name VALUE ...] --out DIR``: parse, dispatch."""

from __future__ import annotations

import argparse
import dataclasses
import difflib
import json
import sys
from pathlib import Path

from . import EXPERIMENTS
from ._run import ConfigError, add_config_arguments, config_from_args, write_json
from .sweep import sweep


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m lib.experiments", allow_abbrev=False,
        description="Run one of the paper's experiments (defaults: the authors' configuration).")
    sub = parser.add_subparsers(dest="experiment", required=True, metavar="EXPERIMENT")
    parser.subparsers = {}
    for name, module in EXPERIMENTS.items():
        # a short usage line, so that an error message is not buried under every option
        p = parser.subparsers[name] = sub.add_parser(
            name, help=module.HELP, description=module.__doc__.split("\n\n")[0],
            usage=f"python -m lib.experiments {name} [--option VALUE ...] --out DIR  "
                  "(--help lists the options)", allow_abbrev=False)
        add_config_arguments(p, module.Config, module.CHOICES,
                             help=getattr(module, "FIELD_HELP", {}),
                             aliases=getattr(module, "ALIASES", {}))
        p.add_argument("--out", required=True, help="output folder (resumed if it holds a "
                                                    "checkpoint of the same run)")
        p.add_argument("--device", default="cpu", help="cpu (default) or cuda")
        p.add_argument("--no-progress", action="store_true",
                       help="no progress bar (on a terminal) or per-epoch lines (otherwise)")
        p.add_argument("--no-resume", action="store_true",
                       help="start afresh, replacing a run already in --out")
        if name == "language-model":  # no sweeps: one run is hours at the paper's scale
            p.set_defaults(seeds=None, sweep_field="seed", workers=2, executor="local")
        else:
            fields = [f.name for f in dataclasses.fields(module.Config) if "seed" in f.name]
            p.add_argument("--seeds", type=int, nargs="+", default=None,
                           help="a sweep: one run per seed in OUT/seed_<s> (resumable); "
                                "default: no sweep, one run")
            p.add_argument("--sweep-field", default="seed", choices=fields,
                           help="sweep: the config field the seeds go to: seed (data and "
                                "weights)" + (", or weight_seed (other initial weights, the "
                                              "same data)" if "weight_seed" in fields else "")
                                + "; default: seed")
            p.add_argument("--workers", type=int, default=2,
                           help="sweep: runs at a time; default: 2")
            p.add_argument("--executor", default="local", choices=("local", "slurm", "inline"),
                           help="sweep: submitit's local executor (subprocesses), "
                                "Slurm, or inline (this process, one run after another); "
                                "default: local")
        if name == "language-model":
            p.add_argument("--data", default=None, help="WikiText-2 folder (default: lookup)")
    return parser


def _printable(summary: dict) -> dict:
    """The numbers and strings of a run's summary: the final line the command prints."""
    return {k: v for k, v in summary.items() if isinstance(v, (int, float, str))}


def _checkpoint_epoch(cfg, out: Path) -> int | None:
    """The last epoch of this run's checkpoint in ``out``, or None (none, or another run's,
    which the run itself then refuses with a clear error)."""
    if not (out / "checkpoint.pt").is_file():
        return None
    try:
        from ..training import load_checkpoint
        from ._run import identity

        return int(load_checkpoint(out / "checkpoint.pt", expected=identity(cfg))["epoch"])
    except (OSError, ValueError, KeyError):
        return None


def main(argv: list[str] | None = None) -> int:
    """Parse ``argv``, validate everything, run; bad options exit with status 2."""
    parser = build_parser()
    args, unknown = parser.parse_known_args(argv)
    module = EXPERIMENTS[args.experiment]
    sub = parser.subparsers[args.experiment]  # errors show the subcommand's usage
    sweep_options = ("--seeds", "--sweep-field", "--workers", "--executor")
    for word in unknown:
        if word.split("=")[0] in sweep_options:  # the language model has no sweeps
            sub.error(f"argument {word.split('=')[0]}: sweeps are for symbol-classification "
                      "and sine (a language-model run takes hours at the paper's scale)")
    if unknown:
        known = [o for a in sub._actions for o in a.option_strings]
        hints = []
        for word in unknown:
            close = difflib.get_close_matches(word.split("=")[0], known, n=1) \
                if word.startswith("--") else []
            if close:
                hints.append(f"{word} (did you mean {close[0]}?)")
        sub.error(f"unrecognized arguments: {' '.join(unknown)}"
                  + (f"; {'; '.join(hints)}" if hints else ""))
    # a bar on a terminal; in a log file (nohup, a pipe) one line per epoch instead
    progress = False if args.no_progress else (True if sys.stderr.isatty() else "lines")
    kwargs = {"device": args.device, "progress": progress, "resume": not args.no_resume}
    if getattr(args, "data", None) is not None:
        kwargs["data"] = args.data
    if args.experiment == "language-model":  # say at once which data it trains on
        kwargs["notify"] = lambda message: print(message, file=sys.stderr, flush=True)
    if args.seeds is None:  # sweep options without a sweep would be silently ignored
        for option, value, default in (("--sweep-field", args.sweep_field, "seed"),
                                       ("--workers", args.workers, 2),
                                       ("--executor", args.executor, "local")):
            if value != default:
                sub.error(f"argument {option}: a sweep option; give --seeds to sweep")
    try:
        cfg = config_from_args(module.PAPER, args)
        if args.seeds is not None:
            summaries = sweep(module, cfg, args.seeds, args.out, executor=args.executor,
                              workers=args.workers, device=args.device,
                              field=args.sweep_field,
                              notify=lambda line: print(line, file=sys.stderr, flush=True))
            print(json.dumps({"out": args.out, "seeds": sorted(summaries), "summaries": {
                str(s): _printable(summary) for s, summary in summaries.items()}}))
            return 0
        done = None if args.no_resume else _checkpoint_epoch(cfg, Path(args.out))
        finished = done == cfg.epochs and (Path(args.out) / "run.json").is_file()
        if done is not None and done < cfg.epochs:
            print(f"{args.out}: resuming this run after epoch {done} of {cfg.epochs}",
                  file=sys.stderr, flush=True)
        if finished:
            print(f"{args.out} already holds this run, finished: nothing to train, its files "
                  "are left as they are; the summary printed is the run's (more --epochs "
                  "extend it; --no-resume trains it again from scratch, replacing it)",
                  file=sys.stderr, flush=True)
        result = module.run(cfg, args.out, **kwargs)
        if not finished:
            info_path = Path(args.out) / "run.json"  # the command that made the run
            info = json.loads(info_path.read_text())
            info["argv"] = ["python", "-m", "lib.experiments",
                            *(sys.argv[1:] if argv is None else argv)]
            write_json(info_path, info)
    except ConfigError as exc:
        option = exc.field.replace("_", "-")
        given = exc.field not in {f.name for f in dataclasses.fields(module.Config)} or (
            getattr(args, exc.field, None) is not None)
        default = "" if given else " (not given: its default)"
        sub.error(f"argument --{option}{default}: {str(exc).split(': ', 1)[1]}")
    except FileNotFoundError as exc:
        sub.error(f"argument --data: {exc}" if getattr(args, "data", None) else str(exc))
    print(json.dumps({"out": str(result.out), **_printable(result.summary)}))
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
