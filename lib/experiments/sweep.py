"""Seed sweeps: one run per weight seed, launched with submitit.

``executor="local"`` runs each seed in a subprocess of this machine (submitit's
``LocalExecutor``), at most ``workers`` at a time; ``executor="slurm"`` submits the same
function to a Slurm cluster unchanged; ``executor="inline"`` runs in this process (tests).
Every seed writes its own run folder ``out/seed_<s>`` through the experiment's
``run(config, out)``, so a partly finished sweep resumes where it stopped: finished seeds
(``run.json`` present) are skipped and interrupted ones resume from their checkpoints.
Several sweep processes may share one folder: each run locks its seed's folder, and a
seed that another process is running, or has finished meanwhile, is skipped.
``out/sweep.json`` records the configuration shared by all seeds; a sweep pointed at a
folder of another configuration is refused instead of mixing runs.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import time
from pathlib import Path
from typing import Any, Callable, Sequence

import torch

from ..training import scores_line
from . import _run

EXECUTORS = ("local", "slurm", "inline")


def _run_seed(module_name: str, cfg: Any, folder: str, device: str) -> dict | None:
    """One seed's run; None when its folder is finished or locked by another process."""
    import importlib

    torch.set_num_threads(1)
    if (Path(folder) / "run.json").is_file():
        return None
    module = importlib.import_module(module_name)
    try:
        return module.run(cfg, folder, device=device, progress=False).summary
    except _run.ConfigError as exc:
        if exc.field == "out" and "locked" in str(exc):
            return None  # another sweep process runs this seed
        raise


def sweep(module, base: Any, seeds: Sequence[int], out: str | Path, *, executor: str = "local",
          workers: int = 2, device: str = "cpu", field: str = "seed",
          slurm: dict | None = None,
          notify: Callable[[str], None] | None = None) -> dict[int, dict]:
    """Run ``module.run`` for ``base`` with every seed of ``seeds``; return the summaries of
    the seeds this call ran or found finished (not those another process is running).
    ``notify`` (optional) receives one line per seed as it is found finished, finishes,
    or is left to another process.

    ``field`` is the config field the seeds go to: ``"seed"`` (data and weights), or
    ``"weight_seed"`` where the config has one (the same data, other initial weights).

    Raises :class:`~lib.experiments._run.ConfigError` for bad seeds, workers or executor,
    and when ``out`` holds a sweep of another configuration.
    """
    if executor not in EXECUTORS:
        raise _run.ConfigError("executor", f"must be one of {EXECUTORS}, got {executor!r}")
    if executor == "slurm" and shutil.which("sbatch") is None:
        raise _run.ConfigError("executor", "slurm needs a Slurm cluster (no sbatch command "
                                           "here); use local on this machine")
    if not (isinstance(workers, int) and not isinstance(workers, bool) and workers > 0):
        raise _run.ConfigError("workers", f"must be a positive integer, got {workers!r}")
    if not seeds or not all(isinstance(s, int) and not isinstance(s, bool) and s >= 0
                            for s in seeds) or len(set(seeds)) != len(seeds):
        raise _run.ConfigError("seeds", f"must be distinct non-negative integers, got {seeds!r}")
    if field not in {f.name for f in dataclasses.fields(base)} or "seed" not in field:
        raise _run.ConfigError("sweep_field", f"must be a seed field of the config, got {field!r}")
    base.validate()
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise _run.ConfigError("out", f"{str(out)!r} exists and is not a folder")
    shared = {k: v for k, v in _run.identity(base).items() if k != field}
    shared["sweep_field"] = field
    shared["epochs"] = base.epochs
    marker = out / "sweep.json"
    if marker.is_file():
        saved = json.loads(marker.read_text())["config"]
        diff = sorted(k for k in set(saved) | set(shared) if saved.get(k) != shared.get(k))
        if diff:
            raise _run.ConfigError("out", f"{out} holds a sweep of another configuration "
                                          f"(differs in {', '.join(diff)}): choose another folder")
    out.mkdir(parents=True, exist_ok=True)
    _run.write_json(marker, {"experiment": module.NAME, "config": shared,
                             "seeds": sorted(set(seeds) | set(
                                 json.loads(marker.read_text())["seeds"] if marker.is_file()
                                 else []))})
    say = notify or (lambda line: None)
    todo, results = [], {}
    for s in seeds:
        folder = out / f"seed_{s}"
        if (folder / "run.json").is_file():
            results[s] = json.loads((folder / "run.json").read_text())["summary"]
            say(f"{field} {s}: finished before, kept ({scores_line(results[s])})")
        else:
            todo.append((s, dataclasses.replace(base, **{field: s}), str(folder)))
    if todo:
        say(f"{len(todo)} of {len(seeds)} runs to train ({executor}"
            + (f", {workers} at a time)" if executor != "inline" else ")"))

    def finished(s: int, summary: dict | None) -> None:
        if summary is None:
            say(f"{field} {s}: left to another process that holds its folder")
        else:
            results[s] = summary
            say(f"{field} {s}: done ({scores_line(summary)})")

    if executor == "inline":
        threads = torch.get_num_threads()
        try:
            for s, cfg, folder in todo:
                finished(s, _run_seed(module.__name__, cfg, folder, device))
        finally:
            torch.set_num_threads(threads)
        return dict(sorted(results.items()))
    import submitit

    ex = submitit.AutoExecutor(folder=out / "submitit", cluster=executor)
    ex.update_parameters(timeout_min=24 * 60, cpus_per_task=1, **(slurm or {}))
    running: list = []
    while todo or running:
        while todo and len(running) < workers:
            s, cfg, folder = todo.pop(0)
            running.append((s, ex.submit(_run_seed, module.__name__, cfg, folder, device)))
        time.sleep(0.5)
        for item in [r for r in running if r[1].done()]:
            running.remove(item)
            finished(item[0], item[1].result())  # result() re-raises a failed job's error
    return dict(sorted(results.items()))

