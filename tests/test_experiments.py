"""Tests of lib.experiments: configs with the authors' defaults, the command line of the
full-scale runs (at a tiny scale), validation before any training, resuming, seed sweeps."""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch

from lib import corpus as C
from lib import experiments, tasks
from lib.experiments import language_model, sine, symbol_classification, sweep as sweep_mod
from lib.experiments.__main__ import build_parser, main
from lib.experiments._run import ConfigError, config_from_args, identity
from lib.models import SequenceClassifier, SequenceRegressor, make_rnn
from lib.training import load_checkpoint, orbit_sampler

TINY = ["--epochs", "2", "--hidden", "6", "--seq-len", "24", "--windows", "2", "6", "12", "16",
        "--n-sequences", "40", "--n-val", "40", "--batch-size", "20", "--orbit-init", "2",
        "--orbit-steps", "12", "--orbit-transient", "4", "--lyapunov-steps", "5",
        "--lyapunov-transient", "5", "--orbit-at-start", "true", "--no-progress"]
TINY_SINE = ["--epochs", "1", "--hidden", "5", "--seq-len", "20", "--n-sequences", "4",
             "--batch-size", "2", "--orbit-inputs", "2", "--orbit-init", "2", "--orbit-steps", "10",
             "--orbit-transient", "5", "--lyapunov-steps", "5", "--lyapunov-transient", "5",
             "--no-progress"]
TINY_LM = ["--n-embed", "8", "--n-hidden", "8", "--epochs", "1", "--batch-size", "8",
           "--train-tokens", "800", "--eval-tokens", "200", "--n-burn", "5", "--n-keep", "3",
           "--lyap-steps", "5", "--max-words", "50", "--n-init", "2",
           "--orbit-tokens", "is", "<unk>", "--no-progress"]


@pytest.fixture(scope="module")
def lm_data(tmp_path_factory):
    """A small synthetic corpus written as a WikiText-2 folder (no download, no warning)."""
    folder = tmp_path_factory.mktemp("wt2")
    corpus = C.synthetic_corpus(n_train=2000, n_valid=500, n_test=500, n_words=100)
    for split in ("train", "valid", "test"):
        words = corpus.dictionary.decode(getattr(corpus, split))
        (folder / f"{split}.txt").write_text(" ".join(words).replace("<eos>", "\n"))
    return folder


@pytest.fixture
def restore_threads():
    """The inline sweep sets torch's thread count to 1 in this process: put it back."""
    n = torch.get_num_threads()
    yield
    torch.set_num_threads(n)


def tiny_argv(name, lm_data):
    return {"symbol-classification": TINY, "sine": TINY_SINE,
            "language-model": [*TINY_LM, "--data", str(lm_data)]}[name]


def exits_2(argv, capsys) -> str:
    """Run main(argv), expect exit status 2 (argparse's error), return stderr."""
    with pytest.raises(SystemExit) as err:
        main(argv)
    assert err.value.code == 2
    return capsys.readouterr().err


# --------------------------------------------------------------------------- configs
def test_experiment_table():
    assert set(experiments.EXPERIMENTS) == {"symbol-classification", "sine", "language-model"}
    for name, module in experiments.EXPERIMENTS.items():
        assert module.NAME == name
        assert module.PAPER == module.Config()
        assert dataclasses.is_dataclass(module.Config) and callable(module.run)
        module.PAPER.validate()
        with pytest.raises(dataclasses.FrozenInstanceError):
            module.PAPER.seed = 3


def test_paper_defaults_are_the_authors_configuration():
    s = symbol_classification.PAPER
    assert (s.model, s.hidden, s.seq_len, s.n_sequences, s.n_val, s.batch_size) == (
        "lstm", 50, 200, 1000, 1000, 100)
    assert (s.lr, s.clip, s.loss_reduction, s.milestones, s.gamma, s.shuffle, s.seed) == (
        1e-3, 0.25, "sum", (500, 1000, 2000), 0.25, False, 2)
    assert (s.orbit_init, s.orbit_std, s.orbit_steps, s.orbit_transient) == (10, 100.0, 800, 400)
    assert not s.orbit_shared_init and not s.orbit_at_start and s.stable_rule == "rescale"
    assert s.windows == (9, 19, 39, 49)
    w = sine.PAPER
    assert (w.hidden, w.seq_len, w.n_sequences, w.batch_size, w.gamma, w.seed) == (
        200, 400, 100, 10, 0.1, 2)
    assert w.milestones == (500, 1000, 2000, 8000, 15000, 25000)
    assert (w.orbit_inputs, w.orbit_init, w.orbit_steps, w.orbit_transient) == (10, 4, 1600, 1200)
    assert not w.orbit_shared_init and not w.orbit_at_start and w.loss_reduction == "sum"


def test_identity_and_differences():
    p = symbol_classification.PAPER
    assert "epochs" not in identity(p)  # more epochs extend a run
    assert identity(dataclasses.replace(p, epochs=3)) == identity(p)
    assert identity(dataclasses.replace(p, hidden=7)) != identity(p)
    assert identity(p)["windows"] == [9, 19, 39, 49]  # JSON-ready
    assert experiments.differences(p, p) == []
    assert experiments.differences(p, dataclasses.replace(p, hidden=7, milestones=(5,))) == [
        ("hidden", 50, 7), ("milestones", [500, 1000, 2000], [5])]


def test_options_are_the_config_fields(capsys):
    parser = build_parser()
    for name, module in experiments.EXPERIMENTS.items():
        args = parser.parse_args([name, "--out", "x"])
        assert config_from_args(module.PAPER, args) == module.PAPER  # no option: the defaults
        with pytest.raises(SystemExit) as err:
            main([name, "--help"])
        assert err.value.code == 0
        text = capsys.readouterr().out
        for f in dataclasses.fields(module.Config):
            assert hasattr(args, f.name), (name, f.name)
            assert ("--" + f.name.replace("_", "-") + " ") in text, (name, f.name)
        for option in ("--out", "--device", "--no-progress", "--no-resume"):
            assert option in text, (name, option)
        for option in ("--seeds", "--sweep-field", "--workers", "--executor"):
            # sweeps for the sequence tasks; a language-model run is hours at scale
            assert (option in text) == (name != "language-model"), (name, option)
        assert ("--data" in text) == (name == "language-model")
    args = parser.parse_args(["symbol-classification", "--out", "x", "--windows", "1", "2", "3",
                              "4", "--shuffle", "true", "--lr", "0.01"])
    cfg = config_from_args(symbol_classification.PAPER, args)
    assert cfg.windows == (1, 2, 3, 4) and cfg.shuffle is True and cfg.lr == 0.01
    args = parser.parse_args(["language-model", "--out", "x", "--modrelu-bias", "none",
                              "--max-words", "None", "--orbit-tokens", "a", "b"])
    cfg = config_from_args(language_model.PAPER, args)
    assert cfg.modrelu_bias is None and cfg.max_words is None and cfg.orbit_tokens == ("a", "b")
    args = parser.parse_args(["language-model", "--out", "x", "--modrelu-bias", "-0.1"])
    assert config_from_args(language_model.PAPER, args).modrelu_bias == -0.1


# --------------------------------------------------------------------------- tiny runs
@pytest.mark.parametrize("model", ["lstm", "ornn", "slstm"])
def test_symbol_classification_tiny_run(tmp_path, model, capsys):
    out = tmp_path / model
    assert main(["symbol-classification", "--model", model, "--out", str(out), *TINY]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["out"] == str(out) and "val_accuracy" in printed
    for name in ("run.json", "history.json", "orbits.pt", "model.pt", "checkpoint.pt"):
        assert (out / name).is_file(), name
    assert sorted(p.name for p in (out / "checkpoint_records" / "recorder0").iterdir()) == [
        f"epoch_{e:06d}.pt" for e in (0, 1, 2)]
    run = experiments.load_run(out)
    info = run["run"]
    assert info["experiment"] == "symbol-classification"
    assert info["config"]["model"] == model and info["config"]["epochs"] == 2
    assert info["config"]["stable_rule"] == "rescale" and info["config"]["seed"] == 2
    assert info["commit"] and info["device"].startswith("cpu") and info["wall_seconds"] > 0
    assert info["epochs_run"] == 2 and info["summary"]["val_accuracy"] == printed["val_accuracy"]
    assert run["history"]["epoch"] == [1, 2]
    assert len(run["history"]["val_accuracy"]) == 2
    assert run["history"]["train_items"] == [40, 40]
    orbits = run["orbits"]
    assert set(orbits) == {"orbits", "orbits_epochs", "orbits_lyapunov", "orbits_drift",
                           "orbits_drift_epochs"}
    assert orbits["orbits_drift"].shape == orbits["orbits"].shape[:1] + orbits["orbits"].shape[2:4]
    assert orbits["orbits_epochs"].tolist() == [0, 1, 2]
    assert orbits["orbits"].shape == (3, 2, 6, 2, 8, 4)  # epochs, (y, Δy), inputs, states, steps, classes
    assert orbits["orbits_lyapunov"].shape == (3, 6, 2)
    net = SequenceClassifier(make_rnn(model, 6, 6), 4)
    net.load_state_dict(load_checkpoint(out / "model.pt")["model"])
    # the last record is the final model's orbits (separate states per input, seed 2)
    last = orbit_sampler(torch.eye(6), n_init=2, std=100.0, n_steps=12, n_transient=4, seed=2,
                         shared_init=False)(net)
    torch.testing.assert_close(orbits["orbits"][-1], last, rtol=1e-6, atol=1e-6)
    assert not torch.equal(orbits["orbits"][0], orbits["orbits"][-1])


@pytest.mark.parametrize("name", ["symbol-classification", "sine", "language-model"])
def test_every_experiment_runs_through_main(tmp_path, name, lm_data, capsys):
    out = tmp_path / "out"
    assert main([name, "--out", str(out), *tiny_argv(name, lm_data)]) == 0
    assert json.loads(capsys.readouterr().out)["out"] == str(out)
    run = experiments.load_run(out)
    assert run["run"]["experiment"] == name
    assert set(run["run"]) >= {"config", "commit", "device", "wall_seconds", "torch", "python",
                               "finished", "summary", "epochs_run"}
    module = experiments.EXPERIMENTS[name]
    assert run["run"]["config"] == json.loads(json.dumps(dataclasses.asdict(
        config_from_args(module.PAPER, build_parser().parse_args(
            [name, "--out", str(out), *tiny_argv(name, lm_data)])))))
    assert run["history"]["epoch"] == list(range(1, run["run"]["config"]["epochs"] + 1))
    assert all(torch.isfinite(v).all() for v in run["orbits"].values() if v.is_floating_point())
    assert set(load_checkpoint(out / "model.pt")) == {"model"}
    assert load_checkpoint(out / "checkpoint.pt")["epoch"] == run["run"]["config"]["epochs"]


def test_sine_tiny_run(tmp_path, capsys):
    """The sine command with its orbits. (A fresh ``python -m lib.experiments`` process from
    the repository root: test_language_model.py::test_language_model_resume.)"""
    out = tmp_path / "sine"
    argv = ["sine", "--model", "lstm", *TINY_SINE, "--seed", "1", "--device", "cpu",
            "--orbit-at-start", "true", "--out", str(out)]
    assert main(argv) == 0
    assert json.loads(capsys.readouterr().out)["out"] == str(out)
    info = json.loads((out / "run.json").read_text())
    assert info["experiment"] == "sine" and info["config"]["seed"] == 1
    assert set(info) >= {"config", "commit", "device", "wall_seconds", "torch"}
    orbits = experiments.load_run(out)["orbits"]
    assert orbits["orbits_epochs"].tolist() == [0, 1]
    assert orbits["orbits"].shape == (2, 2, 2, 2, 5, 1)  # epochs, (y, Δy), ω, states, steps, 1
    assert orbits["orbits_lyapunov"].shape == (2, 2, 1)
    net = SequenceRegressor(make_rnn("lstm", 1, 5), 1)
    net.load_state_dict(load_checkpoint(out / "model.pt")["model"])
    # the recorded orbits are those of the final model under the orbit frequencies
    last = orbit_sampler(tasks.sine_frequencies(2).reshape(-1, 1), n_init=2, std=100.0,
                         n_steps=10, n_transient=5, seed=1, shared_init=False)(net)
    torch.testing.assert_close(orbits["orbits"][-1], last, rtol=1e-6, atol=1e-6)


# --------------------------------------------------------------------------- validation
BAD_OPTIONS = [  # (experiment, bad options, the option the error must name)
    ("symbol-classification", ["--loss-reduction", "median"], "--loss-reduction"),
    ("symbol-classification", ["--stable-rule", "x"], "--stable-rule"),
    ("symbol-classification", ["--model", "transformer"], "--model"),
    ("symbol-classification", ["--orbit-every", "0"], "--orbit-every"),
    ("symbol-classification", ["--epochs", "-1"], "--epochs"),
    ("symbol-classification", ["--orbit-transient", "12"], "--orbit-transient"),
    ("symbol-classification", ["--orbit-transient", "0"], "--orbit-transient"),
    ("symbol-classification", ["--windows", "2", "6", "12"], "--windows"),
    ("symbol-classification", ["--windows", "2", "6", "12", "30"], "--windows"),
    ("symbol-classification", ["--milestones", "5", "3"], "--milestones"),
    ("symbol-classification", ["--shuffle", "maybe"], "--shuffle"),
    ("symbol-classification", ["--device", "tpu"], "--device"),
    ("sine", ["--gamma", "-1"], "--gamma"),
    ("sine", ["--gamma", "2"], "--gamma"),
    ("sine", ["--hidden", "0"], "--hidden"),
    ("sine", ["--lr", "nan"], "--lr"),
    ("language-model", ["--bptt", "0"], "--bptt"),
    ("language-model", ["--dropout", "1"], "--dropout"),
    ("language-model", ["--factor", "1"], "--factor"),
    ("language-model", ["--projection", "max"], "--projection"),
    ("language-model", ["--seeds", "0", "1"], "--seeds"),
    ("language-model", ["--bptt", "-3"], "--bptt"),
    ("language-model", ["--orbit-every", "0"], "--orbit-every"),
    ("language-model", ["--epochs", "-2"], "--epochs"),
    ("language-model", ["--train-tokens", "-5"], "--train-tokens"),
    ("language-model", ["--n-random-inputs", "-1"], "--n-random-inputs"),
    ("language-model", ["--patience", "-1"], "--patience"),
]


@pytest.mark.parametrize("name, bad, option", BAD_OPTIONS,
                         ids=[f"{n}:{' '.join(b)}" for n, b, _ in BAD_OPTIONS])
def test_bad_option_exits_2_before_training(tmp_path, name, bad, option, lm_data, capsys):
    out = tmp_path / "out"
    err = exits_2([name, "--out", str(out), *tiny_argv(name, lm_data), *bad], capsys)
    assert f"argument {option}:" in err, err
    assert not (out / "checkpoint.pt").exists()
    assert not out.exists()  # refused before the folder is even made


@pytest.mark.parametrize("name", ["symbol-classification", "language-model"])
def test_out_pointing_at_a_file_exits_2(tmp_path, name, lm_data, capsys):
    out = tmp_path / "a_file"
    out.write_text("keep me")
    err = exits_2([name, "--out", str(out), *tiny_argv(name, lm_data)], capsys)
    assert "argument --out:" in err and "not a folder" in err
    assert out.read_text() == "keep me"


def test_unknown_orbit_token_is_refused_before_training(tmp_path, lm_data, capsys):
    out = tmp_path / "out"
    argv = ["language-model", "--out", str(out), *TINY_LM, "--data", str(lm_data)]
    argv[argv.index("<unk>")] = "Valkyria-not-a-word"
    err = exits_2(argv, capsys)
    assert "argument --orbit-tokens:" in err and "Valkyria-not-a-word" in err
    assert not (out / "checkpoint.pt").exists()
    # a data folder that does not exist is an error too, not the synthetic fallback
    err = exits_2(["language-model", "--out", str(tmp_path / "o2"), *TINY_LM,
                   "--data", str(tmp_path / "missing")], capsys)
    assert "missing" in err
    assert not (tmp_path / "o2" / "checkpoint.pt").exists()


def test_unknown_experiment(tmp_path, capsys):
    err = exits_2(["no-such-experiment", "--out", str(tmp_path)], capsys)
    assert "invalid choice: 'no-such-experiment'" in err
    err = exits_2(["symbol-classification", "--model", "transformer", "--out", str(tmp_path)],
                  capsys)
    assert "invalid choice: 'transformer'" in err


def test_load_run_missing(tmp_path):
    with pytest.raises(FileNotFoundError, match="run.json"):
        experiments.load_run(tmp_path)


# --------------------------------------------------------------------------- resuming
def test_rerun_with_more_epochs_resumes(tmp_path, capsys):
    out = tmp_path / "r"
    assert main(["symbol-classification", "--out", str(out), *TINY]) == 0
    argv = ["symbol-classification", "--out", str(out), *TINY]
    argv[argv.index("--epochs") + 1] = "3"
    assert main(argv) == 0
    run = experiments.load_run(out)
    assert run["history"]["epoch"] == [1, 2, 3]
    assert run["run"]["epochs_run"] == 1  # only the third epoch ran
    assert run["orbits"]["orbits_epochs"].tolist() == [0, 1, 2, 3]
    # ... and ends where a run of 3 epochs from scratch ends, bit for bit
    direct = tmp_path / "direct"
    assert main([*argv[:2], str(direct), *argv[3:]]) == 0
    ref = experiments.load_run(direct)
    a, b = load_checkpoint(out / "model.pt")["model"], load_checkpoint(direct / "model.pt")["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert torch.equal(run["orbits"]["orbits"], ref["orbits"]["orbits"])
    assert run["history"]["train_loss"] == ref["history"]["train_loss"]
    # a different configuration refuses the checkpoint instead of silently mixing runs
    before = (out / "checkpoint.pt").read_bytes()
    argv[argv.index("--hidden") + 1] = "7"
    err = exits_2(argv, capsys)
    assert "argument --out:" in err and "different run" in err and "hidden" in err
    assert (out / "checkpoint.pt").read_bytes() == before
    # --no-resume starts afresh in the same folder
    assert main([*argv, "--no-resume"]) == 0
    run = experiments.load_run(out)
    assert run["run"]["config"]["hidden"] == 7 and run["history"]["epoch"] == [1, 2, 3]
    assert run["run"]["epochs_run"] == 3


# --------------------------------------------------------------------------- sweeps
def test_inline_sweep_skips_finished_seeds_and_refuses_another_config(
        tmp_path, capsys, monkeypatch, restore_threads):
    out = tmp_path / "sweep"
    base = ["symbol-classification", "--out", str(out), *TINY]
    assert main([*base, "--seeds", "0", "1", "--executor", "inline"]) == 0
    captured = capsys.readouterr()
    printed = json.loads(captured.out)
    assert printed["out"] == str(out) and printed["seeds"] == [0, 1]
    for seed in ("0", "1"):  # each seed's summary, as a single run prints it
        assert printed["summaries"][seed] == {
            k: v for k, v in experiments.load_run(out / f"seed_{seed}")["run"]["summary"].items()
            if isinstance(v, (int, float, str))}
    assert "seed 0: done (train_loss" in captured.err and "seed 1: done" in captured.err
    for s in (0, 1):
        info = json.loads((out / f"seed_{s}" / "run.json").read_text())
        assert info["config"]["seed"] == s and info["config"]["hidden"] == 6
    marker = json.loads((out / "sweep.json").read_text())
    assert marker["experiment"] == "symbol-classification" and marker["seeds"] == [0, 1]
    assert "seed" not in marker["config"] and marker["config"]["epochs"] == 2
    m0 = load_checkpoint(out / "seed_0" / "model.pt")["model"]
    m1 = load_checkpoint(out / "seed_1" / "model.pt")["model"]
    assert any(not torch.equal(m0[k], m1[k]) for k in m0)  # the seeds differ
    # a rerun with one more seed runs only that seed
    calls = []
    real_run = symbol_classification.run

    def counting_run(cfg, out=None, **kwargs):
        calls.append(cfg.seed)
        return real_run(cfg, out, **kwargs)

    monkeypatch.setattr(symbol_classification, "run", counting_run)
    stamp = (out / "seed_0" / "run.json").stat().st_mtime_ns
    assert main([*base, "--seeds", "0", "1", "2", "--executor", "inline"]) == 0
    assert calls == [2]
    assert (out / "seed_0" / "run.json").stat().st_mtime_ns == stamp
    assert json.loads((out / "sweep.json").read_text())["seeds"] == [0, 1, 2]
    err = capsys.readouterr().err
    assert "seed 0: finished before, kept" in err and "seed 2: done" in err
    assert "1 of 3 runs to train" in err
    # another configuration in the same folder is refused, naming --out, and runs nothing
    other = [*base, "--seeds", "3", "--executor", "inline"]
    other[other.index("--hidden") + 1] = "7"
    err = exits_2(other, capsys)
    assert "argument --out:" in err and "hidden" in err
    assert calls == [2] and not (out / "seed_3").exists()
    # as do more epochs: a sweep's runs share every field but the seed
    other = [*base, "--seeds", "3", "--executor", "inline"]
    other[other.index("--epochs") + 1] = "3"
    assert "argument --out:" in exits_2(other, capsys)


def test_sweep_argument_errors(tmp_path):
    cfg = symbol_classification.PAPER
    for kwargs, field in (({"executor": "cloud"}, "executor"), ({"workers": 0}, "workers"),
                          ({"seeds": []}, "seeds"), ({"seeds": [1, 1]}, "seeds"),
                          ({"seeds": [-1]}, "seeds")):
        kw = {"seeds": [0], **kwargs}
        seeds = kw.pop("seeds")
        with pytest.raises(ConfigError) as err:
            sweep_mod.sweep(symbol_classification, cfg, seeds, tmp_path / "s", **kw)
        assert err.value.field == field
    with pytest.raises(ConfigError) as err:
        sweep_mod.sweep(symbol_classification, dataclasses.replace(cfg, hidden=0), [0],
                        tmp_path / "s", executor="inline")
    assert err.value.field == "hidden"
    assert not (tmp_path / "s").exists()


def test_local_sweep_with_submitit(tmp_path, restore_threads):
    """Two tiny seeds through submitit's local executor (one subprocess per seed)."""
    args = build_parser().parse_args(["symbol-classification", "--out", "x", *TINY])
    cfg = config_from_args(symbol_classification.PAPER, args)
    out = tmp_path / "sweep"
    summaries = sweep_mod.sweep(symbol_classification, cfg, [0, 1], out, executor="local",
                                workers=2)
    assert sorted(summaries) == [0, 1]
    for s in (0, 1):
        info = json.loads((out / f"seed_{s}" / "run.json").read_text())
        assert info["config"]["seed"] == s
        assert summaries[s] == info["summary"]
    assert (out / "submitit").is_dir()
    # the subprocess ran the same computation as this process does
    inline = sweep_mod.sweep(symbol_classification, cfg, [0], tmp_path / "inline",
                             executor="inline")
    assert inline[0]["train_loss"] == summaries[0]["train_loss"]
    a = load_checkpoint(out / "seed_0" / "model.pt")["model"]
    b = load_checkpoint(tmp_path / "inline" / "seed_0" / "model.pt")["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_a_locked_output_folder_is_refused(tmp_path, capsys):
    """Two runs on one folder: the second is refused (exit 2, naming --out), not mixed in."""
    from filelock import FileLock

    out = tmp_path / "busy"
    out.mkdir()
    with FileLock(out / ".lock"):
        with pytest.raises(SystemExit) as err:
            main(["symbol-classification", "--out", str(out), *TINY])
    assert err.value.code == 2
    assert "--out" in capsys.readouterr().err
    assert not (out / "checkpoint.pt").exists()
    assert main(["symbol-classification", "--out", str(out), *TINY]) == 0  # free again


def test_fewer_epochs_than_done_is_refused_and_argv_is_recorded(tmp_path, capsys):
    out = tmp_path / "r"
    argv = ["symbol-classification", "--out", str(out), *TINY]
    assert main(argv) == 0
    info = json.loads((out / "run.json").read_text())
    assert info["argv"] == ["python", "-m", "lib.experiments", *argv]
    fewer = list(argv)
    fewer[fewer.index("--epochs") + 1] = "1"
    with pytest.raises(SystemExit) as err:
        main(fewer)
    assert err.value.code == 2 and "argument --epochs" in capsys.readouterr().err
    assert json.loads((out / "run.json").read_text()) == info  # untouched


def test_language_model_refuses_the_synthetic_fallback_unless_asked():
    cfg = dataclasses.replace(language_model.PAPER, allow_synthetic=False)
    corpus = C.synthetic_corpus(n_train=2000, n_valid=500, n_test=500, n_words=100)
    with pytest.raises(ConfigError, match="synthetic") as err:
        language_model.run(cfg, None, corpus=corpus)
    assert err.value.field == "data"


def test_language_model_without_data_is_an_error_not_a_fallback_warning(monkeypatch):
    """Without --allow-synthetic the loader is asked for no fallback: one clear error naming
    --data, and no warning about a fallback that will not be used."""
    import warnings

    asked = {}

    def loader(root=None, *, missing_train="error", download=True, fallback=True):
        asked["fallback"] = fallback
        if not fallback:
            raise FileNotFoundError("no WikiText-2 folder; download failed: offline")
        raise AssertionError("the fallback must not be asked for")

    monkeypatch.setattr(C, "load_wikitext2", loader)
    cfg = dataclasses.replace(language_model.PAPER, allow_synthetic=False)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(ConfigError, match="--allow-synthetic true") as err:
            language_model.run(cfg, None)
    assert err.value.field == "data" and asked == {"fallback": False}
    assert "download failed: offline" in str(err.value)


def test_every_option_says_what_it_means():
    """--help describes every config field, not just its default."""
    from lib.experiments._run import FIELD_HELP

    for module in (symbol_classification, sine, language_model):
        for f in dataclasses.fields(module.Config):
            assert FIELD_HELP.get(f.name), f.name
    text = build_parser()._subparsers._group_actions[0].choices["sine"].format_help()
    assert "gradient-norm clip" in text and "default: 0.25" in text


# --------------------------------------------------------------------------- issue 17: CLI
import os  # noqa: E402
import signal  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
MORE_BAD_OPTIONS = [  # checked before anything runs: exit 2, the option named, no traceback
    ("symbol-classification", ["--gamma", "-0.5"], "--gamma"),
    ("symbol-classification", ["--gamma", "inf"], "--gamma"),
    ("symbol-classification", ["--lr", "1e999"], "--lr"),
    ("symbol-classification", ["--clip", "0"], "--clip"),
    ("symbol-classification", ["--epochs", "0"], "--epochs"),
    ("symbol-classification", ["--hidden", "abc"], "--hidden"),
    ("symbol-classification", ["--seed", "-1"], "--seed"),
    ("symbol-classification", ["--orbit-std", "-1"], "--orbit-std"),
    ("symbol-classification", ["--lyapunov-std", "nan"], "--lyapunov-std"),
    ("symbol-classification", ["--orbit-shared-init", "2"], "--orbit-shared-init"),
    ("symbol-classification", ["--milestones", "-1"], "--milestones"),
    ("symbol-classification", ["--workers", "0", "--seeds", "1"], "--workers"),
    ("symbol-classification", ["--seeds", "-1"], "--seeds"),
    ("symbol-classification", ["--sweep-field", "foo", "--seeds", "1"], "--sweep-field"),
    ("sine", ["--orbit-inputs", "0"], "--orbit-inputs"),
    ("sine", ["--orbit-every", "0"], "--orbit-every"),
    ("language-model", ["--max-words", "0"], "--max-words"),
    ("language-model", ["--lyap-steps", "0"], "--lyap-steps"),
    ("language-model", ["--modrelu-bias", "nan"], "--modrelu-bias"),
    ("language-model", ["--orthogonal-lr-factor", "-1"], "--orthogonal-lr-factor"),
]


@pytest.mark.parametrize("name, bad, option", MORE_BAD_OPTIONS,
                         ids=[f"{n}:{' '.join(b)}" for n, b, _ in MORE_BAD_OPTIONS])
def test_more_bad_options_exit_2_naming_the_option(tmp_path, name, bad, option, lm_data, capsys):
    out = tmp_path / "out"
    err = exits_2([name, "--out", str(out), *tiny_argv(name, lm_data), *bad], capsys)
    assert f"argument {option}:" in err and "Traceback" not in err, err
    assert not out.exists()


def test_an_output_folder_that_cannot_be_made_exits_2(tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    err = exits_2(["symbol-classification", "--out", str(blocker / "sub"), *TINY], capsys)
    assert "argument --out:" in err


def _cli(out, *extra, **kw):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    return subprocess.Popen([sys.executable, "-m", "lib.experiments", "symbol-classification",
                             "--out", str(out), *TINY, *extra], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kw)


def test_two_concurrent_runs_into_one_folder_the_second_is_refused(tmp_path):
    """Two real processes: the first holds the lock while it trains; the second (the same
    command) exits non-zero at once with a message naming --out and writes nothing."""
    out = tmp_path / "shared"
    first = _cli(out, "--epochs", "100000")  # trains until stopped
    try:
        deadline = time.time() + 120
        while not (out / "checkpoint.pt").exists():  # the first is training, lock held
            assert first.poll() is None and time.time() < deadline, first.communicate()
            time.sleep(0.2)
        def names():  # the first run's own files (not its temporaries mid-write)
            return sorted(p.name for p in out.iterdir() if not p.name.startswith(".rnnbook-"))

        before = names()
        second = _cli(out, "--epochs", "100000")
        _, err2 = second.communicate(timeout=120)
        assert second.returncode == 2, err2
        assert "argument --out:" in err2 and "in use by another run" in err2
        assert "Traceback" not in err2
        assert first.poll() is None  # the first run goes on undisturbed
        assert not (out / "run.json").exists() and names() == before
    finally:
        first.kill()
        first.wait()


def test_stale_temporaries_are_swept_and_run_json_counts_resumes(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["symbol-classification", "--out", str(out), *TINY]) == 0
    first = json.loads((out / "run.json").read_text())
    assert first["resumes"] == 0 and first["invocations"] == 1
    assert first["wall_seconds_total"] >= first["wall_seconds"] > 0
    assert isinstance(first["dirty"], bool) and {"modified", "untracked"} <= set(first["git"])
    stale = [out / ".rnnbook-model.pt.k2j4h5g6.tmp", out / "checkpoint.pt.abcdef12.tmp",
             out / "checkpoint_records" / "recorder0" / ".rnnbook-epoch_000001.pt.zz9x8y7w.tmp"]
    for p in stale:
        p.write_bytes(b"half a file")
    keep = out / "notes.tmp.txt"
    keep.write_text("not ours")
    argv = ["symbol-classification", "--out", str(out), *TINY]
    argv[argv.index("--epochs") + 1] = "3"
    assert main(argv) == 0  # resumes the finished 2 epochs, runs a third
    assert not any(p.exists() for p in stale) and keep.exists()
    second = json.loads((out / "run.json").read_text())
    assert second["resumes"] == 1 and second["invocations"] == 2
    assert second["wall_seconds_total"] > first["wall_seconds_total"]
    assert not list(out.rglob("*.tmp"))


def test_the_dirty_flag_counts_untracked_files(tmp_path):
    from lib.experiments._run import git_commit, git_state

    repo = tmp_path / "repo"
    repo.mkdir()
    git = ["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@t"]
    subprocess.run([*git, "init", "-q"], check=True)
    (repo / "a.py").write_text("x = 1\n")
    subprocess.run([*git, "add", "a.py"], check=True)
    subprocess.run([*git, "commit", "-qm", "a"], check=True)
    assert git_state(repo)["dirty"] is False and not git_commit(repo).endswith("-dirty")
    (repo / "b.py").write_text("y = 2\n")  # untracked
    state = git_state(repo)
    assert state["dirty"] is True and state["untracked"] == 1 and state["modified"] == 0
    assert git_commit(repo).endswith("-dirty")
    assert git_state(tmp_path / "nowhere")["commit"] == "unknown"


KILLER = r'''
import sys, torch
from lib.training import save_checkpoint
out = sys.argv[1]
state = {"model": {"w": torch.randn(1_500_000)}}  # ~6 MB: a save takes a while
print("ready", flush=True)
while True:
    save_checkpoint(out + "/model.pt", state)
'''


def test_sigkill_in_the_middle_of_saves_leaves_no_orphans_after_the_next_start(tmp_path):
    """Kill a process that saves model.pt over and over, many times, at random moments;
    then start a run on the folder: zero temporary files remain and model.pt is whole."""
    from lib.training import load_checkpoint as load, sweep_temporary_files

    out = tmp_path / "run"
    out.mkdir()
    rng = __import__("random").Random(0)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    orphans_seen: set[str] = set()
    for _ in range(12):
        proc = subprocess.Popen([sys.executable, "-c", KILLER, str(out)], cwd=ROOT, env=env,
                                stdout=subprocess.PIPE, text=True)
        assert proc.stdout.readline().strip() == "ready"
        time.sleep(rng.uniform(0.05, 0.6))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        orphans_seen |= {p.name for p in out.glob(".rnnbook-*.tmp")}
        if (out / "model.pt").exists():
            assert load(out / "model.pt")["model"]["w"].numel() == 1_500_000  # never truncated
    # the next start sweeps (train_and_save calls sweep_temporary_files under the lock)
    removed = sweep_temporary_files(out)
    assert not list(out.glob("*.tmp")) and len(removed) == len(list(set(removed)))
    assert (out / "model.pt").exists() and load(out / "model.pt")["model"]["w"].numel() > 0
    assert {p.name for p in removed} == orphans_seen
    print(f"kill-during-save: 12 kills, {len(orphans_seen)} orphan temporaries left by the "
          f"kills, 0 after the next start; model.pt whole after every kill")


def test_run_json_records_the_commit_at_the_start_of_the_run(tmp_path, monkeypatch, capsys):
    """A commit made while a run trains is not the code that ran: run.json records the
    checkout as the invocation started (and every invocation's commit), not as it ended."""
    from lib.experiments import _run
    states = iter([{"commit": "a" * 40, "modified": 0, "untracked": 0, "dirty": False}])
    later = {"commit": "b" * 40, "modified": 0, "untracked": 0, "dirty": False}
    monkeypatch.setattr(_run, "git_state", lambda *a, **k: next(states, later))
    out = tmp_path / "run"
    assert main(["symbol-classification", "--model", "lstm", "--out", str(out), *TINY]) == 0
    info = experiments.load_run(out)["run"]
    assert info["commit"] == "a" * 40 and info["commits"] == ["a" * 40]
    # a resume (more epochs) is a second invocation, on the later checkout
    assert main(["symbol-classification", "--model", "lstm", "--out", str(out),
                 *[v if v != "2" or i != 1 else "3" for i, v in enumerate(TINY)]]) == 0
    info = experiments.load_run(out)["run"]
    assert info["commit"] == "b" * 40 and info["commits"] == ["a" * 40, "b" * 40]
    assert info["resumes"] == 1 and info["invocations"] == 2


@pytest.mark.parametrize("option", [["--sweep-field", "weight_seed"], ["--workers", "3"],
                                    ["--executor", "inline"]])
def test_sweep_options_without_seeds_exit_2(tmp_path, option, capsys):
    with pytest.raises(SystemExit) as exc:
        main(["symbol-classification", "--out", str(tmp_path / "x"), *TINY, *option])
    assert exc.value.code == 2
    assert f"argument {option[0]}" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()


def test_language_model_command_names_its_data_before_training(tmp_path, lm_data, capsys):
    out = tmp_path / "out"
    assert main(["language-model", "--out", str(out), *TINY_LM, "--data", str(lm_data)]) == 0
    err = capsys.readouterr().err
    source = experiments.load_run(out)["run"]["summary"]["source"]
    named = err.split("language-model data: ", 1)[1].splitlines()[0]
    assert named and source.startswith(named)  # the run's source adds the vocabulary cap


# --------------------------------------------------------------------------- the command line, for a newcomer
def test_log_lines_rerun_hint_and_default_named(tmp_path, capsys):
    """Without a terminal (a log file) the command writes one line per epoch, not a bar; a
    rerun of a finished run says that it trains nothing; an error caused by an option the
    user did not give says that its default is at fault."""
    out = tmp_path / "r"
    argv = ["symbol-classification", "--out", str(out), *[a for a in TINY if a != "--no-progress"]]
    assert main(argv) == 0  # pytest's captured stderr is not a terminal
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if ": epoch " in line]
    assert [line.split(": epoch ")[1].split(":")[0] for line in lines] == ["1/2", "2/2"]
    assert "train_loss" in lines[0] and "val_loss" in lines[0] and "\r" not in err
    files = {p.name: p.read_bytes() for p in out.iterdir()
             if p.is_file() and not p.name.startswith(".")}  # not the lock, the invocations
    assert main(argv) == 0
    err = capsys.readouterr().err
    assert "already holds this run, finished: nothing to train" in err
    assert ": epoch " not in err
    # a rerun that trains nothing leaves the run's files, timings included, as they were
    assert {p.name: p.read_bytes() for p in out.iterdir() if p.name in files} == files
    argv[argv.index("--epochs") + 1] = "3"  # more epochs: resumed, and it says so
    assert main(argv) == 0
    err = capsys.readouterr().err
    assert "already holds" not in err and "epoch 3/3" in err
    assert "resuming this run after epoch 2 of 3" in err
    i = TINY.index("--windows")
    no_windows = TINY[:i] + TINY[i + 5:]
    bad = ["symbol-classification", "--out", str(tmp_path / "w"), *no_windows]
    bad[bad.index("--seq-len") + 1] = "20"  # the default windows reach step 49
    err = exits_2(bad, capsys)
    assert "argument --windows (not given: its default):" in err
    bad += ["--windows", "2", "6", "12", "40"]  # given: no such note
    err = exits_2(bad, capsys)
    assert "argument --windows:" in err and "not given" not in err


def test_language_model_takes_the_other_experiments_option_names(tmp_path, lm_data):
    """--orbit-init, --orbit-std and --lyapunov-steps name n_init, std and lyap_steps."""
    out = tmp_path / "lm"
    argv = [a for a in TINY_LM]
    for old, new in (("--n-init", "--orbit-init"), ("--lyap-steps", "--lyapunov-steps")):
        argv[argv.index(old)] = new
    assert main(["language-model", "--out", str(out), *argv, "--orbit-std", "3.5",
                 "--data", str(lm_data)]) == 0
    cfg = experiments.load_run(out)["run"]["config"]
    assert (cfg["n_init"], cfg["lyap_steps"], cfg["std"]) == (2, 5, 3.5)


def test_typos_and_abbreviations_are_refused_with_a_suggestion(tmp_path, capsys):
    base = ["symbol-classification", "--out", str(tmp_path / "t"), *TINY]
    err = exits_2([*base, "--hiden", "7"], capsys)
    assert "unrecognized arguments: --hiden 7" in err and "did you mean --hidden?" in err
    assert err.count("\n") <= 3  # the message is not buried under every option
    err = exits_2([*base, "--hid", "7"], capsys)  # no silent abbreviation of --hidden
    assert "unrecognized arguments: --hid 7" in err
    assert not (tmp_path / "t").exists()


def test_language_model_token_counts_and_the_authors_token_named(tmp_path, lm_data, capsys):
    base = ["language-model", "--out", str(tmp_path / "x"), *TINY_LM, "--data", str(lm_data)]
    err = exits_2([*base, "--train-tokens", "10"], capsys)
    assert "argument --train-tokens: the training text: data has 10 tokens" in err
    assert "(batch_size)" in err
    err = exits_2([*base, "--eval-tokens", "5"], capsys)
    assert "argument --eval-tokens: the validation text: data has 5 tokens" in err
    assert "(eval_batch_size)" in err
    # the default tokens, on a text without "Valkyria" (as WikiText-2 without train.txt)
    folder = tmp_path / "no_valkyria"
    folder.mkdir()
    for split in ("valid", "test"):
        text = (lm_data / f"{split}.txt").read_text().replace("Valkyria", "Robert")
        (folder / f"{split}.txt").write_text(text)
    i = base.index("--orbit-tokens")
    no_tokens = base[:i] + base[i + 3:-1] + [str(folder), "--missing-train", "valid-as-train"]
    err = exits_2(no_tokens, capsys)
    assert "argument --orbit-tokens (not given: its default):" in err
    assert "pass --orbit-tokens is '<unk>'" in err
    assert not (tmp_path / "x").exists()


def test_differences_table_says_what_unset_means_and_provenance_counts_threads():
    from dataclasses import replace as _replace

    from lib.experiments import language_model as lm_exp
    from lib.experiments.results import provenance

    live = _replace(lm_exp.PAPER, max_words=5000, eval_tokens=30000)
    table = experiments.differences_table(lm_exp.PAPER, live)
    assert "| `max_words` | all words | `5000` |" in table
    assert "| `eval_tokens` | the whole splits | `30000` |" in table
    assert "None" not in table
    line = provenance({"commit": "a" * 40, "device": "cpu: x86_64, 1 threads",
                       "experiment": "sine", "config": {"model": "lstm"}, "wall_seconds": 60})
    assert "cpu: x86_64, 1 thread," in line and "1 threads" not in line


def test_slurm_sweep_off_a_cluster_exits_2_and_writes_nothing(tmp_path, capsys, monkeypatch):
    import shutil

    monkeypatch.setattr(shutil, "which", lambda name: None)
    out = tmp_path / "sw"
    err = exits_2(["symbol-classification", "--out", str(out), *TINY, "--seeds", "0",
                   "--executor", "slurm"], capsys)
    assert "argument --executor: slurm needs a Slurm cluster" in err
    assert not out.exists()
