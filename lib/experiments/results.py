"""Compact results of paper-scale runs, committed under ``results/<run>/``, and their loading.

A finished run folder (:mod:`lib.experiments._run`) holds every recorded orbit in float32:
about 300 MB for 400 epochs of symbol classification. :func:`compact` keeps what the
book's figures need, and says how in ``run.json`` (key ``compaction``):

* ``run.json``: the run's provenance (config, commit, device, torch version, wall time,
  final accuracies in ``summary``) plus ``compaction``;
* ``history.json``: the whole history;
* ``orbits.pt`` (checksummed): the recorded epochs, λ_1 per recorded epoch (float32), and
  the steady-state outputs (not their differences) of the last ``keep_steps`` steps of every
  orbit at every ``every``-th recorded epoch, in float16.

:func:`compact_sweep` turns a seed sweep into one ``sweep.json`` (configuration, and per
seed the accuracy histories, λ_1 per recorded epoch and the class of :func:`classify_run`)
and a ``run.json`` with the sweep's provenance (commits, device, torch, summed times).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Mapping, Sequence

import torch

from ..training import save_checkpoint
from ._run import ROOT, load_run, write_json

RESULTS = ROOT / "results"
CLASSES = ("abrupt generalisation", "gradual generalisation", "slow memorisation", "failure")


def compact(run: str | Path, dest: str | Path, *, keep_steps: int = 16, every: int = 1) -> Path:
    """Write the compact copy of the finished run folder ``run`` into ``dest``."""
    if not isinstance(keep_steps, int) or keep_steps < 1:
        raise ValueError(f"keep_steps must be a positive integer, got {keep_steps!r}")
    if not isinstance(every, int) or every < 1:
        raise ValueError(f"every must be a positive integer, got {every!r}")
    data = load_run(run)
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    orbits = data.get("orbits", {})
    compacted: dict[str, Any] = {}
    for key in [k for k in orbits if not k.endswith(("_epochs", "_lyapunov", "_drift"))]:
        samples = orbits[key]
        epochs = orbits[f"{key}_epochs"]
        idx = torch.arange(0, len(epochs), every)
        if idx[-1] != len(epochs) - 1:
            idx = torch.cat([idx, torch.tensor([len(epochs) - 1])])
        # symbol/sine samples: (E, 2, P, K, T, Ny) with outputs first; LM: (E, P, K, T, Ny)
        values = samples[:, 0] if samples.dim() == 6 else samples
        compacted[f"{key}_epochs"] = epochs[idx].clone()
        compacted[key] = values[idx, :, :, -keep_steps:].to(torch.float16).clone()
        if f"{key}_drift" in orbits:  # at the kept epochs that have one
            # runs saved before drift_epochs existed measured drift on the latest records
            d_ep = orbits.get(f"{key}_drift_epochs",
                              epochs[len(epochs) - len(orbits[f"{key}_drift"]):]).tolist()
            keep = [d_ep.index(e) for e in epochs[idx].tolist() if e in d_ep]
            compacted[f"{key}_drift_epochs"] = torch.tensor([d_ep[k] for k in keep])
            compacted[f"{key}_drift"] = orbits[f"{key}_drift"][keep].float().clone()
        if f"{key}_lyapunov" in orbits:
            compacted[f"{key}_lyapunov_epochs"] = epochs.clone()
            compacted[f"{key}_lyapunov"] = orbits[f"{key}_lyapunov"].float().clone()
    save_checkpoint(dest / "orbits.pt", compacted)
    write_json(dest / "history.json", data["history"])
    info = dict(data["run"])
    h = data["history"]
    # over every invocation of a resumed run (wall_seconds is the last invocation's)
    info["train_record_seconds"] = float(sum(h.get("epoch_seconds", [])) + sum(
        h.get("record_seconds", [])) + sum(h.get("record_seconds_initial", [])))
    info["compaction"] = (
        f"orbits: the outputs (not their first differences) of the last {keep_steps} steps "
        f"of every orbit, at every {every}-th recorded epoch and the last, in float16; "
        "lambda_1 at every recorded epoch, in float32")
    write_json(dest / "run.json", info)
    return dest


def classify_run(history: Mapping[str, Sequence[float]], *, level: float = 0.9,
                 jump_epochs: int = 20) -> str:
    """The class of a symbol-classification run, by this rule (stated in the chapter):

    * ``"abrupt generalisation"``: the validation accuracy reaches ``level``, and the last
      epoch before that with validation accuracy below 0.5 is at most ``jump_epochs``
      epochs earlier;
    * ``"gradual generalisation"``: the validation accuracy reaches ``level`` more slowly;
    * ``"slow memorisation"``: the training accuracy reaches ``level``, the validation
      accuracy never does;
    * ``"failure"``: the training accuracy never reaches ``level``.
    """
    tr, va = list(history["train_accuracy"]), list(history["val_accuracy"])
    if not tr or len(tr) != len(va):
        raise ValueError("history must hold train_accuracy and val_accuracy of equal length")
    if max(va) >= level:
        first = next(i for i, a in enumerate(va) if a >= level)
        below = [i for i in range(first) if va[i] < 0.5]
        return CLASSES[0] if below and first - below[-1] <= jump_epochs else CLASSES[1]
    if max(tr) >= level:
        return CLASSES[2]
    return CLASSES[3]


def relapses(history: Mapping[str, Sequence[float]], *, level: float = 0.9) -> bool:
    """Whether the validation accuracy falls below 0.5 again after first reaching ``level``."""
    va = list(history["val_accuracy"])
    hit = [i for i, a in enumerate(va) if a >= level]
    return bool(hit) and min(va[hit[0]:]) < 0.5


def compact_sweep(sweep: str | Path, dest: str | Path) -> Path:
    """Write ``dest/sweep.json``: the sweep's config and, per seed, what the chapter shows."""
    sweep = Path(sweep)
    meta = json.loads((sweep / "sweep.json").read_text())
    runs = {}
    for folder in sorted(sweep.glob("seed_*"), key=lambda p: int(p.name.split("_")[1])):
        if not (folder / "run.json").is_file():
            continue
        data = load_run(folder)
        h, o = data["history"], data["orbits"]
        runs[folder.name.split("_")[1]] = {
            "train_accuracy": h["train_accuracy"], "val_accuracy": h["val_accuracy"],
            "train_loss": h["train_loss"],
            "lyapunov_epochs": o["orbits_epochs"].tolist() if "orbits_epochs" in o else [],
            "lyapunov_max": o["orbits_lyapunov"].flatten(1).amax(1).tolist()
            if "orbits_lyapunov" in o else [],
            "class": classify_run(h),
            "relapses": relapses(h),
            "wall_seconds": data["run"]["wall_seconds"],
            "train_record_seconds": float(sum(h["epoch_seconds"]) + sum(h["record_seconds"])),
            "commit": data["run"]["commit"], "device": data["run"]["device"],
            "torch": data["run"]["torch"],
        }
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    write_json(dest / "sweep.json", {**meta, "runs": runs})
    first = load_run(sweep / f"seed_{next(iter(runs))}")["run"] if runs else {}
    write_json(dest / "run.json", {  # the sweep's provenance, as for a single run
        "experiment": meta["experiment"], "sweep": True, "config": meta["config"],
        "seeds": [int(k) for k in runs], "commits": sorted({r["commit"] for r in runs.values()}),
        "device": first.get("device"), "torch": first.get("torch"),
        "train_record_seconds": sum(r["train_record_seconds"] for r in runs.values()),
        "wall_seconds": sum(r["wall_seconds"] for r in runs.values()),
        "compaction": "per seed: accuracy and loss histories, the largest lambda_1 per "
                      "recorded epoch, the class of classify_run and whether it relapses"})
    return dest


def load_result(name: str, root: str | Path = RESULTS) -> dict[str, Any]:
    """Read ``results/<name>``: ``run``, ``history`` and ``orbits`` (or ``sweep``)."""
    folder = Path(root) / name
    if (folder / "sweep.json").is_file():
        return {"sweep": json.loads((folder / "sweep.json").read_text())}
    if not (folder / "run.json").is_file():
        raise FileNotFoundError(f"no saved result {name!r} under {root}")
    return load_run(folder)


def provenance(run: Mapping[str, Any]) -> str:
    """One line naming where a saved run comes from (for the label beside its figure)."""
    commit = str(run.get("commit", "unknown"))
    short = commit[:10] + (" (uncommitted changes)" if commit.endswith("-dirty") else "")
    seconds = run.get("train_record_seconds", run.get("wall_seconds", float("nan")))
    cfg = run.get("config", {})
    what = f"{run.get('experiment', '?')} {cfg.get('model', '')}".strip()
    device = str(run.get("device", "?")).replace(", 1 threads", ", 1 thread")  # older runs
    return (f"saved run ({what}): commit {short}, {device}, "
            f"torch {run.get('torch', '?')}, {float(seconds) / 60:.1f} min of training "
            "and recording")


def config_of(module, run: Mapping[str, Any]):
    """The ``module.Config`` a saved run used (JSON lists back to tuples), validated."""
    cfg = module.Config(**{k: tuple(v) if isinstance(v, list) else v
                           for k, v in run["config"].items()})
    cfg.validate()
    return cfg
