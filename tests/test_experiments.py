"""Tests of lib.experiments: the command line of the full-scale runs, at a tiny scale."""

from __future__ import annotations

import importlib.machinery
import json
import subprocess
import sys
import types
from pathlib import Path

import pytest
import torch

from lib import experiments
from lib.models import SequenceClassifier, make_rnn

ROOT = Path(__file__).resolve().parent.parent
TINY = ["--epochs", "2", "--hidden", "6", "--seq-len", "24", "--windows", "2", "6", "12", "16",
        "--n-train", "40", "--n-val", "40", "--batch-size", "20", "--orbit-init", "2",
        "--orbit-steps", "12", "--orbit-transient", "4", "--lyapunov-steps", "5",
        "--lyapunov-transient", "5", "--no-progress"]


@pytest.mark.parametrize("model", ["lstm", "ornn", "slstm"])
def test_symbol_classification_tiny_run(tmp_path, model):
    out = tmp_path / model
    assert experiments.main(["symbol-classification", "--model", model, "--out", str(out), *TINY]) == 0
    for name in ("run.json", "history.json", "orbits.pt", "model.pt", "checkpoint.pt"):
        assert (out / name).is_file(), name
    run = experiments.load_run(out)
    info = run["run"]
    assert info["config"]["model"] == model and info["config"]["epochs"] == 2
    assert info["commit"] and info["device"].startswith("cpu") and info["wall_seconds"] > 0
    assert run["history"]["epoch"] == [1, 2]
    assert len(run["history"]["val_accuracy"]) == 2
    orbits = run["orbits"]
    assert orbits["orbits_epochs"].tolist() == [0, 1, 2]
    assert orbits["orbits"].shape == (3, 2, 6, 2, 8, 4)  # epochs, (y, Δy), inputs, states, steps, classes
    assert orbits["orbits_lyapunov"].shape == (3, 6, 2)
    net = SequenceClassifier(make_rnn(model, 6, 6), 4)
    net.load_state_dict(torch.load(out / "model.pt", weights_only=True))


def test_rerun_with_more_epochs_resumes(tmp_path):
    out = tmp_path / "r"
    experiments.main(["symbol-classification", "--out", str(out), *TINY])
    argv = ["symbol-classification", "--out", str(out), *TINY]
    argv[argv.index("--epochs") + 1] = "3"
    experiments.main(argv)
    run = experiments.load_run(out)
    assert run["history"]["epoch"] == [1, 2, 3]
    # a different configuration refuses the checkpoint instead of silently mixing runs
    argv[argv.index("--hidden") + 1] = "7"
    with pytest.raises(SystemExit) as err:
        experiments.main(argv)
    assert err.value.code == 2


def test_unknown_model_is_a_clear_error(tmp_path, capsys):
    with pytest.raises(SystemExit) as err:
        experiments.main(["symbol-classification", "--model", "transformer", "--out", str(tmp_path)])
    assert err.value.code == 2
    assert "invalid choice: 'transformer'" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        experiments.main(["no-such-experiment", "--out", str(tmp_path)])


def test_sine_from_the_command_line(tmp_path):
    """The command as a user runs it, in a fresh process from the repository root."""
    out = tmp_path / "sine"
    cmd = [sys.executable, "-m", "lib.experiments", "sine", "--model", "lstm", "--epochs", "1",
           "--hidden", "5", "--seq-len", "20", "--n-freq", "4", "--batch-size", "2",
           "--orbit-freq", "2", "--orbit-init", "2", "--orbit-steps", "10", "--orbit-transient", "5",
           "--lyapunov-steps", "5", "--lyapunov-transient", "5",
           "--seed", "1", "--device", "cpu", "--out", str(out), "--no-progress"]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    info = json.loads((out / "run.json").read_text())
    assert info["experiment"] == "sine" and info["config"]["seed"] == 1
    assert set(info) >= {"config", "commit", "device", "wall_seconds", "torch"}
    orbits = experiments.load_run(out)["orbits"]
    assert orbits["orbits"].shape == (2, 2, 2, 2, 5, 1)


def test_register_and_plugins(tmp_path, monkeypatch):
    calls = []

    def add_arguments(parser):
        parser.add_argument("--out", required=True)
        parser.add_argument("--size", type=int, default=3)

    def run(args):
        calls.append(args.size)
        return {"value": 2.5, "tensor": torch.zeros(3)}  # non-scalars stay out of run.json

    fake = types.ModuleType("fake_plugin_for_tests")
    fake.__spec__ = importlib.machinery.ModuleSpec("fake_plugin_for_tests", None)
    fake.register_experiment = lambda register: register("dummy", add_arguments, run, help="test")
    monkeypatch.setitem(sys.modules, "fake_plugin_for_tests", fake)
    monkeypatch.setattr(experiments, "PLUGINS", ("fake_plugin_for_tests", "no_such_module_xyz"))
    monkeypatch.setattr(experiments, "EXPERIMENTS", dict(experiments.EXPERIMENTS))
    assert experiments.main(["dummy", "--out", str(tmp_path), "--size", "4"]) == 0
    assert calls == [4]
    info = json.loads((tmp_path / "run.json").read_text())
    assert info["summary"] == {"value": 2.5}
    assert info["config"]["size"] == 4 and info["device"].startswith("cpu")
    with pytest.raises(ValueError, match="name"):
        experiments.register("", add_arguments, run)


def test_load_run_missing(tmp_path):
    with pytest.raises(FileNotFoundError, match="run.json"):
        experiments.load_run(tmp_path)


def test_broken_plugin_only_warns(tmp_path, monkeypatch):
    broken = types.ModuleType("broken_plugin_for_tests")
    broken.__spec__ = importlib.machinery.ModuleSpec("broken_plugin_for_tests", None)
    monkeypatch.setitem(sys.modules, "broken_plugin_for_tests", broken)
    monkeypatch.setattr(experiments, "PLUGINS", ("broken_plugin_for_tests",))
    monkeypatch.setattr(experiments.importlib, "import_module",
                        lambda name: (_ for _ in ()).throw(ImportError("boom")))
    with pytest.warns(UserWarning, match="boom"):
        parser = experiments.build_parser()
    assert "symbol-classification" in parser.format_help()
