"""Word-level language model on WikiText-2 (Supplementary Figures 5-7) and its attractors.

The model (:class:`lib.models.LanguageModel`) is embedding -> dropout -> one recurrent layer
(LSTM, stable LSTM or orthogonal RNN) -> dropout -> linear decoder, trained by truncated
backpropagation through time: :class:`lib.training.BPTTWindows` cuts the token streams into
windows and :class:`lib.training.TruncatedBPTT` carries the hidden state from one window to
the next, inside the one training loop :func:`lib.training.train`.

Defaults (:data:`PAPER`) reproduce the authors' configuration (``word-language-model``):
embedding and hidden size 800, dropout 0.5, windows of 70 steps, batch 100, the loss
*summed* over the window and the batch and its gradient clipped at norm 0.25, Adam lr 1e-3
(one learning rate for every parameter), ReduceLROnPlateau (patience 7, factor 0.1), 150
epochs, the stable LSTM rescaled after every step. Orbits after every epoch: two seeded
random token ids and "is" as constant inputs, and the feedback mode that feeds back the
most probable word; 5 initial states of standard deviation 100 per input; 1500 steps of
burn-in; projections of the decoder output: its mean over the vocabulary
(1/V) Σ_v (C_v h + d_v) and the logits of "is", "Valkyria" and "<unk>". :data:`CPU` is the
chapter's reduced configuration; every difference is a field.
"""

from __future__ import annotations

import math
import sys
from typing import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import torch
from torch import Tensor, nn

from .. import corpus as corpus_mod
from .. import models
from ..training import (BPTTWindows, OrbitRecorder, TruncatedBPTT, evaluate,
                        orbit_sampler)
from . import _run

NAME = "language-model"
HELP = "Supplementary Figures 5-7: word-level language model on WikiText-2"
PROJECTIONS = ("decoder_mean", "hidden_mean")
CHOICES = {"model": models.LanguageModel.KINDS, "loss_reduction": _run.LOSS_REDUCTIONS,
           "stable_rule": models.STABLE_RULES, "projection": PROJECTIONS,
           "missing_train": ("error", "valid-as-train")}
# the option names the other experiments use for the same quantities, for the command line
ALIASES = {"n_init": ("--orbit-init",), "std": ("--orbit-std",),
           "lyap_steps": ("--lyapunov-steps",)}
FIELD_HELP = {"orbit_inputs": "words among the constant inputs, after the random ones"}


@dataclass(frozen=True)
class Config:
    """One language-model run; the defaults are the authors' configuration."""

    model: str = "lstm"
    n_embed: int = 800
    n_hidden: int = 800
    dropout: float = 0.5
    bptt: int = 70
    batch_size: int = 100
    eval_batch_size: int = 10
    lr: float = 1e-3
    clip: float = 0.25
    loss_reduction: str = "sum"
    patience: int = 7
    factor: float = 0.1
    epochs: int = 150
    stable_rule: str = "rescale"
    orthogonal_lr_factor: float = 1.0  # oRNN: learning rate of W's parameters, relative
    modrelu_bias: float | None = None  # oRNN: initial modReLU bias (None: the layer's own)
    max_words: int | None = None  # cap of the vocabulary (None: all words)
    train_tokens: int | None = None  # use only the first tokens of the training split
    eval_tokens: int | None = None
    orbit_every: int = 1
    orbit_at_start: bool = False
    n_random_inputs: int = 2  # seeded random token ids among the constant inputs
    orbit_inputs: tuple[str, ...] = ("is",)
    orbit_tokens: tuple[str, ...] = ("is", "Valkyria", "<unk>")
    projection: str = "decoder_mean"
    n_init: int = 5
    std: float = 100.0
    orbit_shared_init: bool = False
    n_burn: int = 1500
    n_keep: int = 100
    lyap_steps: int = 500  # λ_1 over the last lyap_steps steps of the feedback orbits
    missing_train: str = "valid-as-train"
    allow_synthetic: bool = False  # train on the synthetic fallback corpus if no WikiText-2
    seed: int = 0

    def validate(self) -> None:
        """Raise :class:`~lib.experiments._run.ConfigError` naming the first bad field."""
        _run.check_fields(
            self, choices=CHOICES,
            positive_int=("n_embed", "n_hidden", "bptt", "batch_size", "eval_batch_size",
                          "epochs", "max_words", "train_tokens", "eval_tokens", "orbit_every",
                          "n_init", "n_burn", "n_keep", "lyap_steps"),
            nonnegative_int=("patience", "n_random_inputs", "seed"),
            positive_real=("lr", "clip", "factor", "std", "orthogonal_lr_factor"),
            unit_interval=("dropout",))
        if self.factor >= 1:
            raise _run.ConfigError("factor", f"must be in (0, 1) (a decay), got {self.factor!r}")
        if self.modrelu_bias is not None and not _run._is_real(self.modrelu_bias):
            raise _run.ConfigError("modrelu_bias", f"must be a finite number or None, "
                                                   f"got {self.modrelu_bias!r}")
        if self.lyap_steps >= self.n_burn + self.n_keep:
            raise _run.ConfigError("lyap_steps", f"must be < n_burn + n_keep = "
                                                 f"{self.n_burn + self.n_keep} (λ_1 is measured "
                                                 f"along the orbit), got {self.lyap_steps}")
        if self.n_random_inputs + len(self.orbit_inputs) == 0:
            raise _run.ConfigError("orbit_inputs", "no orbit input: give words or random ones")


PAPER = Config()
# The chapter's configuration: small enough for 2 CPU cores within the chapter's time.
CPU = replace(
    PAPER, n_embed=64, n_hidden=64, dropout=0.1, bptt=35, batch_size=32, lr=2e-3, epochs=4,
    loss_reduction="mean", stable_rule="project", max_words=2000, train_tokens=48_000,
    eval_tokens=8_000, n_burn=200, n_keep=30, lyap_steps=100, orthogonal_lr_factor=0.1,
    modrelu_bias=-0.1, orbit_at_start=True, n_random_inputs=0, projection="hidden_mean",
    orbit_shared_init=True, orbit_tokens=("is", "<unk>"), allow_synthetic=True)  # "Valkyria" is only in train.txt


def parameter_groups(lm: models.LanguageModel, lr: float,
                     orthogonal_lr_factor: float = 1.0) -> list[dict]:
    """Adam parameter groups: the orthogonal matrix's parameters at ``lr * orthogonal_lr_factor``."""
    for name, value in (("lr", lr), ("orthogonal_lr_factor", orthogonal_lr_factor)):
        if not _run._is_real(value) or value <= 0:
            raise ValueError(f"{name} must be a finite number > 0, got {value!r}")
    orth = [p for name, p in lm.named_parameters() if "parametrizations" in name]
    ids = {id(p) for p in orth}
    groups = [{"params": [p for p in lm.parameters() if id(p) not in ids], "lr": lr}]
    if orth:
        groups.append({"params": orth, "lr": lr * orthogonal_lr_factor})
    return groups


def projection_readout(kind: str, token_ids: Tensor):
    """The recorded projections of the hidden outputs ``h (..., H)``, shape ``(..., 1 + W)``.

    ``"decoder_mean"`` (the authors'): the mean decoder output over the vocabulary,
    (1/V) Σ_v (C_v h + d_v), then the logits C_w h + d_w of the tokens ``token_ids``.
    ``"hidden_mean"``: the mean of ``h``, then C_w · h (no bias).
    """
    if kind not in PROJECTIONS:
        raise ValueError(f"projection must be one of {PROJECTIONS}, got {kind!r}")
    token_ids = torch.as_tensor(token_ids)
    if token_ids.dim() != 1 or token_ids.dtype != torch.long or bool((token_ids < 0).any()):
        raise ValueError(f"token_ids must be a 1-D tensor of non-negative token ids, "
                         f"got {token_ids!r}")

    def readout(model: models.LanguageModel, h: Tensor) -> Tensor:
        C, d = model.decoder.weight, model.decoder.bias
        h = h.to(C.dtype)
        if kind == "decoder_mean":
            directions = torch.cat([C.mean(0, keepdim=True), C[token_ids]])
            offsets = torch.cat([d.mean().reshape(1), d[token_ids]])
        else:
            directions = torch.cat([torch.full_like(C[:1], 1.0 / C.shape[1]), C[token_ids]])
            offsets = torch.zeros(directions.shape[0], dtype=C.dtype, device=C.device)
        return h @ directions.T + offsets

    return readout


def _prepare_data(cfg: Config, corpus: corpus_mod.Corpus, device):
    keep = tuple(dict.fromkeys(cfg.orbit_inputs + cfg.orbit_tokens))
    if cfg.max_words is not None:
        corpus = corpus_mod.cap_vocabulary(corpus, cfg.max_words, keep=keep)
    d = corpus.dictionary
    for field in ("orbit_inputs", "orbit_tokens"):
        missing = [w for w in getattr(cfg, field) if w not in d]
        if missing:
            hint = ""
            if "Valkyria" in missing:
                hint = ("; 'Valkyria' (the authors' choice) occurs only in WikiText-2's "
                        "training split: without it, pass --orbit-tokens is '<unk>'")
            raise _run.ConfigError(field, f"{missing} not in the vocabulary of "
                                          f"{corpus.source}{hint}")
    train = corpus.train if cfg.train_tokens is None else corpus.train[: cfg.train_tokens]
    valid = corpus.valid if cfg.eval_tokens is None else corpus.valid[: cfg.eval_tokens]
    test = corpus.test if cfg.eval_tokens is None else corpus.test[: cfg.eval_tokens]
    windows = []
    for split, data, bs, size_field, batch_field in (
            ("training", train, cfg.batch_size, "train_tokens", "batch_size"),
            ("validation", valid, cfg.eval_batch_size, "eval_tokens", "eval_batch_size"),
            ("test", test, cfg.eval_batch_size, "eval_tokens", "eval_batch_size")):
        try:  # batchify's rule: at least two tokens per stream
            streams = corpus_mod.batchify(data, bs, device)
        except ValueError as exc:
            field = size_field if getattr(cfg, size_field) is not None else batch_field
            raise _run.ConfigError(field, f"the {split} text: {exc} ({batch_field})") from exc
        windows.append(BPTTWindows(streams, cfg.bptt))
    return corpus, windows


def run(cfg: Config, out=None, *, corpus: corpus_mod.Corpus | None = None, data=None,
        notify: Callable[[str], None] | None = None,
        device: str = "cpu", progress: bool | str = True, resume: bool = True) -> _run.RunResult:
    """Train ``cfg.model`` and record its orbits; write the files into ``out`` (None: none).

    ``corpus``: a :class:`lib.corpus.Corpus` (default: :func:`lib.corpus.load_wikitext2` of
    ``data``, a folder or None for the lookup of :mod:`lib.corpus`). ``notify`` (optional)
    receives one line naming the text trained on, before training. Recorders
    ``"constant"`` and ``"feedback"`` hold samples ``(E, P, n_init, n_keep, 1 + W)`` (P
    orbit inputs, W projection tokens, no differences); ``"feedback"`` also λ_1 of the
    feedback map ``(E, P, n_init)``. The summary holds the test loss (nats per token), the
    vocabulary size, the corpus source, the orbit inputs and tokens.
    """
    folder = _run.prepare(cfg, out, device=device, resume=resume)
    if corpus is None:
        try:  # without --allow-synthetic no fallback, so no warning about one: an error
            corpus = corpus_mod.load_wikitext2(data, missing_train=cfg.missing_train,
                                               fallback=cfg.allow_synthetic)
        except FileNotFoundError as exc:
            if data is not None:
                raise
            raise _run.ConfigError("data", f"{exc}; give its folder with --data or "
                                           "$RNN_BOOK_DATA, or pass --allow-synthetic true "
                                           "to train on the small synthetic stand-in") from exc
    if corpus.source.startswith("synthetic") and not cfg.allow_synthetic:
        raise _run.ConfigError("data", "no WikiText-2 corpus was found (give its folder with "
                                       "--data or $RNN_BOOK_DATA); to train on the small "
                                       "synthetic stand-in instead, pass --allow-synthetic true")
    if notify is not None:  # the command line says at once which text it trains on
        notify(f"language-model data: {corpus.source}")
    corpus, (train, valid, test) = _prepare_data(cfg, corpus, device)
    d = corpus.dictionary
    V = len(d)
    input_ids = _orbit_input_ids(cfg, d)
    token_ids = torch.tensor([d.word2idx[w] for w in cfg.orbit_tokens], dtype=torch.long)
    lm = models.LanguageModel(cfg.model, V, cfg.n_embed, cfg.n_hidden, dropout=cfg.dropout,
                              seed=cfg.seed, modrelu_bias=cfg.modrelu_bias,
                              stable_rule=cfg.stable_rule).to(device)
    common = dict(n_init=cfg.n_init, std=cfg.std, n_steps=cfg.n_burn + cfg.n_keep,
                  n_transient=cfg.n_burn, seed=cfg.seed, shared_init=cfg.orbit_shared_init)
    readout = projection_readout(cfg.projection, token_ids.to(device))
    # λ_1 of the feedback map along the feedback orbits themselves (one pass, one arg-max
    # per step): averaged over their last lyap_steps steps
    recorders = {
        mode: OrbitRecorder(
            orbit_sampler(input_ids, feedback=mode == "feedback", differences=False,
                          readout=readout, **common,
                          lyapunov_steps=cfg.lyap_steps if mode == "feedback" else None),
            every=cfg.orbit_every, at_start=cfg.orbit_at_start)
        for mode in ("constant", "feedback")}
    loss_fn = nn.CrossEntropyLoss(reduction=cfg.loss_reduction)
    forward = TruncatedBPTT()

    def summarize(result) -> dict:
        test_loss = evaluate(lm, test, loss_fn, forward=forward, device=device)["loss"]
        return {"val_perplexity": math.exp(result.history["val_loss"][-1]),
                "test_loss": test_loss, "test_perplexity": math.exp(test_loss),
                "vocabulary": V, "source": corpus.source,
                "inputs": d.decode(input_ids), "tokens": list(cfg.orbit_tokens)}

    return _run.train_and_save(
        cfg, folder, lm, experiment=NAME, recorders=recorders, device=device,
        progress=progress, resume=resume, summarize=summarize, loss_fn=loss_fn,
        train_data=train, val_data=valid, forward=forward,
        optimizer=lambda params: torch.optim.Adam(
            parameter_groups(lm, cfg.lr, cfg.orthogonal_lr_factor), lr=cfg.lr),
        scheduler={"name": "plateau", "patience": cfg.patience, "factor": cfg.factor},
        post_step=models.apply_constraints)


def fixed_point_census(lm: models.LanguageModel, input_ids: Tensor, *, n_starts: int = 16,
                       std: float = 1.0, warm_up: int = 300, seed: int = 0,
                       tol: float = 1e-9, max_iter: int = 60) -> list[dict]:
    """The fixed points of the constant-input maps ``F_w`` of a trained language model.

    For each word ``w`` of ``input_ids``: ``n_starts`` Gaussian states of standard deviation
    ``std`` are iterated ``warm_up`` steps under ``F_w`` (float64, no dropout), then
    :func:`lib.dynamics.fixed_points` runs Newton's method from where they are (a start
    whose orbit converges to a fixed point gives it; one on a cycle or a chaotic orbit
    usually does not converge and is reported). Returns per word a dict with the number of
    distinct fixed points, how many are stable (spectral radius < 1), their spectral radii
    and the number of starts that did not converge.
    """
    from ..dynamics import fixed_points, simulate

    ids = torch.as_tensor(input_ids)
    emb = lm.input_vectors(ids).detach().double()
    gen = torch.Generator().manual_seed(seed)
    census = []
    for k in range(len(ids)):
        step = lm.rnn.step_map(emb[k], dtype=torch.float64)
        x0 = std * torch.randn(n_starts, lm.state_size, generator=gen, dtype=torch.float64)
        x = simulate(step, x0.to(emb.device), 1, n_transient=warm_up)[-1]
        fp = fixed_points(step, x, tol=tol, max_iter=max_iter)
        census.append({"word_id": int(ids[k]), "n_fixed_points": int(fp.points.shape[0]),
                       "n_stable": int(fp.stable.sum()),
                       "spectral_radius": [float(r) for r in fp.spectral_radius],
                       "not_converged": int(fp.not_converged.numel())})
    return census


def _orbit_input_ids(cfg: Config, d: corpus_mod.Dictionary) -> Tensor:
    """The orbit inputs of a run: ``n_random_inputs`` seeded random ids, then the words."""
    random_ids = torch.randint(len(d), (cfg.n_random_inputs,),
                               generator=torch.Generator().manual_seed(cfg.seed))
    return torch.cat([random_ids, torch.tensor([d.word2idx[w] for w in cfg.orbit_inputs],
                                               dtype=torch.long)])


def census_of_run(run_folder, dest, *, data=None, **kwargs) -> Path:
    """:func:`fixed_point_census` of a finished run's model, written to ``dest/fixed_points.json``.

    Rebuilds the run's vocabulary from its config (the same corpus lookup as :func:`run`),
    loads ``model.pt`` and counts the fixed points under each orbit input word.
    """
    from ..training import load_checkpoint
    from .results import config_of

    run_folder, dest = Path(run_folder), Path(dest)
    info = _run.load_run(run_folder)["run"]
    cfg = config_of(sys.modules[__name__], info)
    corpus, _ = _prepare_data(cfg, corpus_mod.load_wikitext2(data,
                                                             missing_train=cfg.missing_train),
                              "cpu")
    d = corpus.dictionary
    lm = models.LanguageModel(cfg.model, len(d), cfg.n_embed, cfg.n_hidden,
                              dropout=cfg.dropout, stable_rule=cfg.stable_rule)
    lm.load_state_dict(load_checkpoint(run_folder / "model.pt")["model"])
    lm.eval()
    ids = _orbit_input_ids(cfg, d)
    rows = fixed_point_census(lm, ids, **kwargs)
    for row in rows:
        row["word"] = d.idx2word[row["word_id"]]
    dest.mkdir(parents=True, exist_ok=True)
    _run.write_json(dest / "fixed_points.json", rows)
    return dest
