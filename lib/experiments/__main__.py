"""``python -m lib.experiments NAME [--field-name VALUE ...] --out DIR``: parse, dispatch."""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path

from . import EXPERIMENTS
from ._run import ConfigError, add_config_arguments, config_from_args, write_json
from .results import config_of
from .sweep import sweep


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m lib.experiments",
        description="Run one of the paper's experiments (defaults: the authors' configuration).")
    sub = parser.add_subparsers(dest="experiment", required=True, metavar="EXPERIMENT")
    parser.subparsers = {}
    for name, module in EXPERIMENTS.items():
        p = parser.subparsers[name] = sub.add_parser(name, help=module.HELP, description=module.__doc__.split("\n\n")[0])
        add_config_arguments(p, module.Config, module.CHOICES,
                             help=getattr(module, "FIELD_HELP", {}),
                             aliases=getattr(module, "ALIASES", {}))
        p.add_argument("--out", required=True, help="output folder (resumed if it holds a "
                                                    "checkpoint of the same run)")
        p.add_argument("--device", default="cpu", help="cpu (default) or cuda")
        p.add_argument("--no-progress", action="store_true",
                       help="no progress bar (on a terminal) or per-epoch lines (otherwise)")
        p.add_argument("--no-resume", action="store_true", help="ignore an existing checkpoint")
        p.add_argument("--seeds", type=int, nargs="+", default=None,
                       help="a sweep: one run per seed in OUT/seed_<s> (resumable)")
        p.add_argument("--sweep-field", default="seed",
                       help="sweep: the config field the seeds go to: seed (data and weights), "
                            "or weight_seed (symbol-classification only: other initial "
                            "weights, the same data)")
        p.add_argument("--workers", type=int, default=2, help="sweep: runs at a time")
        p.add_argument("--executor", default="local", choices=("local", "slurm", "inline"),
                       help="sweep: submitit's local executor, Slurm, or this process")
        if name == "language-model":
            p.add_argument("--data", default=None, help="WikiText-2 folder (default: lookup)")
    return parser


def _finished(module, cfg, out: Path) -> bool:
    """Whether ``out`` holds this very run, all its epochs done (a rerun trains nothing)."""
    try:
        info = json.loads((out / "run.json").read_text())
        return (config_of(module, info) == cfg and int(info.get("epochs_run", -1)) == cfg.epochs
                and (out / "checkpoint.pt").exists())
    except (OSError, ValueError, TypeError, KeyError):
        return False


def main(argv: list[str] | None = None) -> int:
    """Parse ``argv``, validate everything, run; bad options exit with status 2."""
    parser = build_parser()
    args = parser.parse_args(argv)
    module = EXPERIMENTS[args.experiment]
    sub = parser.subparsers[args.experiment]  # errors show the subcommand's usage
    # a bar on a terminal; in a log file (nohup, a pipe) one line per epoch instead
    progress = False if args.no_progress else (True if sys.stderr.isatty() else "lines")
    kwargs = {"device": args.device, "progress": progress, "resume": not args.no_resume}
    if getattr(args, "data", None) is not None:
        kwargs["data"] = args.data
    if args.experiment == "language-model":  # say at once which data it trains on
        kwargs["notify"] = lambda message: print(message, file=sys.stderr, flush=True)
    if args.seeds is not None and args.experiment == "language-model":
        sub.error("argument --seeds: sweeps are for symbol-classification and sine")
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
                              field=args.sweep_field)
            print(json.dumps({"out": args.out, "seeds": sorted(summaries)}))
            return 0
        if not args.no_resume and _finished(module, cfg, Path(args.out)):
            print(f"{args.out} already holds this run, finished: nothing to train; its "
                  "files are rewritten (--no-resume trains it again, more --epochs extend "
                  "it)", file=sys.stderr, flush=True)
        result = module.run(cfg, args.out, **kwargs)
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
    print(json.dumps({"out": str(result.out), **{k: v for k, v in result.summary.items()
                                                  if isinstance(v, (int, float, str))}}))
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
