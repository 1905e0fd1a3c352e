"""Word-level language model of Supplementary Figures 5-7 and its attractors.

The model is embedding -> dropout -> one recurrent layer -> dropout -> linear decoder over
the vocabulary, trained by truncated backpropagation through time (BPTT) on a token stream
(:mod:`lib.corpus`). Three recurrent layers:

* ``"lstm"``: ``torch.nn.LSTM`` (:class:`lib.models.TorchLSTM`);
* ``"slstm"``: the *stable* LSTM of Miller and Hardt (2019) (:class:`lib.models.StableLSTM`):
  the same LSTM, projected after every optimizer step onto the set where each column of
  the recurrent gate matrices has L1 norm at most 0.395 (input), 0.155 (forget), 0.099
  (cell), 0.395 (output) and each column of the forget gate's input matrix at most 0.25;
* ``"ornn"``: the orthogonal RNN of expRNN (Lezcano-Casado and Martínez-Rubio, 2019),
  ``h' = modReLU(W h + U u, b)`` with ``W`` orthogonal (:class:`lib.models.ExpRNN`).

Seen as a dynamical system (eq. (1) of the paper), the trained network is a map of the
recurrent state ``x`` (``[h, c]`` for the LSTMs, ``h`` for the oRNN) driven by the embedded
input word. :func:`record_orbits` iterates it from random initial states (std 100) under a
*constant* input word, or in *feedback* mode, where the most probable next word is fed back
as the next input, and records projections of ``h`` after a burn-in: the average of the
hidden units, ``p(x) = h̄`` (the supplement's "average of internal states"; ``h`` is the
output of the recurrent layer), and the directions of chosen tokens' decoder rows,
``p_w(x) = C_w · h`` (the token's logit without its bias). The state maps are the
layers' own ``step_map`` (:mod:`lib.models`) at the trained weights, in float64.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Callable, Sequence

import torch
from torch import Tensor, nn
import torch.autograd.forward_ad as fwAD

from . import corpus as corpus_mod
from . import dynamics, models
from ._checks import check_nonnegative_int, check_positive_int, check_positive_real

__all__ = [
    "LanguageModel",
    "state_maps",
    "record_orbits",
    "feedback_lyapunov",
    "train_epoch",
    "evaluate",
    "LMConfig",
    "PAPER_CONFIG",
    "CPU_CONFIG",
    "run_experiment",
    "register_experiment",
]

MODEL_KINDS = ("lstm", "slstm", "ornn")


# --------------------------------------------------------------------------- model
class LanguageModel(nn.Module):
    """Embedding, dropout, one recurrent layer (``kind``), dropout, linear decoder.

    ``forward(tokens (L, B), state (B, Nx)) -> (logits (L, B, V), state (B, Nx))``; the state
    is flat, ``[h, c]`` (Nx = 2H) for the LSTMs and ``h`` (Nx = H) for the oRNN. The
    recurrent layer is :func:`lib.models.make_rnn` (``lstm``, ``slstm``, ``ornn``).
    """

    def __init__(self, kind: str, n_tokens: int, n_embed: int, n_hidden: int, *,
                 dropout: float = 0.5, seed: int = 0, modrelu_bias: float | None = None):
        super().__init__()
        if kind not in MODEL_KINDS:
            raise ValueError(f"kind must be one of {MODEL_KINDS}, got {kind!r}")
        check_positive_int("n_tokens", n_tokens)
        check_positive_int("n_embed", n_embed)
        check_positive_int("n_hidden", n_hidden)
        if not 0.0 <= float(dropout) < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout!r}")
        self.kind, self.n_tokens, self.n_embed, self.n_hidden = kind, n_tokens, n_embed, n_hidden
        with torch.random.fork_rng():  # the same weights for the same seed, whatever ran before
            torch.manual_seed(seed)
            self.encoder = nn.Embedding(n_tokens, n_embed)
            self.drop = nn.Dropout(dropout)
            self.rnn = models.make_rnn(kind, n_embed, n_hidden)
            self.decoder = nn.Linear(n_hidden, n_tokens)
            nn.init.uniform_(self.encoder.weight, -0.1, 0.1)
            nn.init.uniform_(self.decoder.weight, -0.1, 0.1)
            nn.init.zeros_(self.decoder.bias)
            if modrelu_bias is not None and kind == "ornn":
                # a negative modReLU bias shrinks every unit a little at each step, so the
                # neutral (orthogonal) state does not random-walk away over long streams
                nn.init.constant_(self.rnn.bias, float(modrelu_bias))

    @property
    def state_size(self) -> int:
        return self.rnn.state_size

    def init_state(self, batch_size: int) -> Tensor:
        return self.rnn.initial_state(batch_size)

    def forward(self, tokens: Tensor, state: Tensor) -> tuple[Tensor, Tensor]:
        out, state = self.rnn(self.drop(self.encoder(tokens)), state)
        return self.decoder(self.drop(out)), state

    def after_step(self) -> None:
        """Called after every optimizer step: the stable LSTM's projection."""
        models.apply_constraints(self)


# --------------------------------------------------------------------------- as f, g
def state_maps(lm: LanguageModel, *, dtype: torch.dtype = torch.float64
               ) -> tuple[Callable[[Tensor, Tensor], Tensor], Callable[[Tensor], Tensor], Tensor]:
    """The trained model as a state-space system (eq. (1)), in ``dtype``, dropout off.

    Returns ``(f, g, embedding)``: ``f(x, words)`` maps states ``(..., Nx)`` and word indices
    ``(...)`` to next states (the layer's ``step_map`` on the embedded words), ``g(x)`` gives
    the logits ``(..., V)`` of the next word, and ``embedding`` is ``(V, E)``.
    """
    emb = lm.encoder.weight.detach().to(dtype)
    C = lm.decoder.weight.detach().to(dtype)
    d = lm.decoder.bias.detach().to(dtype)
    rnn = lm.rnn

    def f(x: Tensor, words: Tensor) -> Tensor:
        return rnn.step_map(emb[words], dtype=dtype)(x)

    def g(x: Tensor) -> Tensor:
        return rnn.hidden(x) @ C.t() + d

    return f, g, emb


@torch.no_grad()
def record_orbits(
    lm: LanguageModel,
    inputs: Sequence[int],
    *,
    project_tokens: Sequence[int] = (),
    feedback: bool = False,
    n_init: int = 5,
    std: float = 100.0,
    n_burn: int = 1500,
    n_keep: int = 100,
    seed: int = 0,
) -> Tensor:
    """Steady-state projections of the language model's orbits, batched over initial states.

    For each input word in ``inputs`` (P of them) and ``n_init`` initial states drawn with
    standard deviation ``std`` (the same K states for every input; for the LSTM both h and
    c are drawn), iterate ``x_{t+1} = f(x_t, E[w_t])`` for ``n_burn + n_keep`` steps, where
    ``w_t`` is the input word (constant mode) or, with ``feedback=True``, ``w_0`` is the input
    word and ``w_{t+1} = argmax g(x_{t+1})`` is the most probable next word.

    Returns ``(P, K, n_keep, 1 + len(project_tokens))``: the mean of ``h`` and the
    projections ``C_w · h`` on the decoder rows of ``project_tokens``, after the burn-in.
    """
    f, g, emb = state_maps(lm)
    V = emb.shape[0]
    inputs_t = torch.as_tensor(list(inputs), dtype=torch.long)
    proj = torch.as_tensor(list(project_tokens), dtype=torch.long)
    for name, ids in (("inputs", inputs_t), ("project_tokens", proj)):
        if ids.numel() and (ids.min() < 0 or ids.max() >= V):
            raise ValueError(f"{name} must be token indices in [0, {V}), got {ids.tolist()}")
    if inputs_t.numel() == 0:
        raise ValueError("inputs must hold at least one token index")
    check_positive_int("n_init", n_init)
    check_positive_real("std", std)
    check_nonnegative_int("n_burn", n_burn)
    check_positive_int("n_keep", n_keep)
    P, K, nx = inputs_t.numel(), n_init, lm.state_size
    dev = emb.device
    gen = torch.Generator().manual_seed(seed)  # on the CPU: the same states on every device
    x0 = (torch.randn(K, nx, generator=gen, dtype=torch.float64) * std).to(dev)
    x = x0.unsqueeze(0).expand(P, K, nx).clone()
    words = inputs_t.to(dev).view(P, 1).expand(P, K).clone()
    directions = torch.cat([torch.full((1, lm.n_hidden), 1.0 / lm.n_hidden, dtype=torch.float64,
                                       device=dev),
                            lm.decoder.weight.detach().to(torch.float64)[proj.to(dev)]])
    out = x.new_empty(P, K, n_keep, directions.shape[0])
    step = lm.rnn.step_map(emb[words], dtype=torch.float64)  # constant mode: one map
    for t in range(n_burn + n_keep):
        if feedback:
            x = f(x, words)
            words = g(x).argmax(-1)
        else:
            x = step(x)
        if t >= n_burn:
            # [h̄, C_w · h for each chosen w]
            out[:, :, t - n_burn] = lm.rnn.hidden(x) @ directions.t()
    if not bool(torch.isfinite(out).all()):
        raise ValueError("the orbit diverged (non-finite states): check the model")
    return out


def feedback_step(lm: LanguageModel) -> Callable[[Tensor], Tensor]:
    """The autonomous feedback map ``x -> f(x, E[argmax g(x)])`` on states ``(..., Nx)``.

    The arg-max is piecewise constant in ``x``: differentiating this map (for Lyapunov
    exponents) treats the fed-back word as fixed and ignores the jumps where it switches.
    """
    f, g, _ = state_maps(lm)

    def step(x: Tensor) -> Tensor:
        # the word depends on x only through a piecewise-constant arg-max: pick it from the
        # primal values, outside any derivative (forward- or reverse-mode)
        primal = fwAD.unpack_dual(x).primal.detach()
        with torch.no_grad():
            words = g(primal).argmax(-1)
        return f(x, words)

    return step


def feedback_lyapunov(lm: LanguageModel, *, n_init: int = 5, std: float = 100.0,
                      n_transient: int = 500, n_steps: int = 500, seed: int = 0) -> Tensor:
    """Largest Lyapunov exponent (nats/step) of the feedback map from ``n_init`` states.

    :func:`lib.dynamics.lyapunov_spectrum` with ``n_exponents=1`` on :func:`feedback_step`;
    returns shape ``(n_init,)``. See :func:`feedback_step` for what the Jacobian ignores.
    """
    check_positive_int("n_init", n_init)
    check_positive_real("std", std)
    step = feedback_step(lm)
    gen = torch.Generator().manual_seed(seed)
    x0 = (torch.randn(n_init, lm.state_size, generator=gen, dtype=torch.float64) * std).to(
        lm.decoder.weight.device)
    return dynamics.lyapunov_spectrum(step, x0, n_steps, n_transient=n_transient,
                                      n_exponents=1)[:, 0]


# --------------------------------------------------------------------------- training
def train_epoch(lm: LanguageModel, data: Tensor, optimizer: torch.optim.Optimizer, *,
                bptt: int, clip: float, progress: bool = False) -> dict[str, float]:
    """One epoch of truncated BPTT over ``data`` of shape ``(T, B)`` (:func:`lib.corpus.batchify`).

    The state is carried from one window of ``bptt`` steps to the next and detached in
    between; gradients are clipped to norm ``clip``; the stable LSTM is projected after
    every step. Returns the mean training loss (nats/token), tokens and tokens per second.
    """
    check_positive_int("bptt", bptt)
    check_positive_real("clip", clip)
    lm.train()
    state = lm.init_state(data.shape[1])
    total, n_tok = 0.0, 0
    starts = range(0, data.shape[0] - 1, bptt)
    if progress:
        from tqdm.auto import tqdm
        starts = tqdm(starts, leave=False)
    t0 = time.perf_counter()
    for i in starts:
        x, y = corpus_mod.get_batch(data, i, bptt)
        state = state.detach()
        logits, state = lm(x, state)
        loss = nn.functional.cross_entropy(logits.reshape(-1, lm.n_tokens), y.reshape(-1))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(lm.parameters(), clip)
        optimizer.step()
        lm.after_step()
        total += float(loss.detach()) * y.numel()
        n_tok += y.numel()
    seconds = time.perf_counter() - t0
    if not math.isfinite(total):
        raise ValueError("the training loss is not finite: lower the learning rate")
    return {"loss": total / n_tok, "tokens": n_tok, "tokens_per_s": n_tok / seconds}


@torch.no_grad()
def evaluate(lm: LanguageModel, data: Tensor, *, bptt: int) -> float:
    """Mean next-word cross-entropy (nats/token) over ``data (T, B)``; perplexity = exp."""
    lm.eval()
    state = lm.init_state(data.shape[1])
    total, n_tok = 0.0, 0
    for i in range(0, data.shape[0] - 1, bptt):
        x, y = corpus_mod.get_batch(data, i, bptt)
        logits, state = lm(x, state)
        total += float(nn.functional.cross_entropy(
            logits.reshape(-1, lm.n_tokens), y.reshape(-1), reduction="sum"))
        n_tok += y.numel()
    return total / n_tok


# --------------------------------------------------------------------------- experiment
@dataclass(frozen=True)
class LMConfig:
    """One language-model run; :data:`PAPER_CONFIG` and :data:`CPU_CONFIG` are the two scales."""

    model: str = "lstm"
    n_embed: int = 800
    n_hidden: int = 800
    dropout: float = 0.5
    bptt: int = 70
    batch_size: int = 100
    lr: float = 1e-3
    clip: float = 0.25
    patience: int = 7
    factor: float = 0.1
    epochs: int = 150
    orthogonal_lr_factor: float = 1.0  # oRNN: learning rate of W's parameters, relative
    modrelu_bias: float | None = None  # oRNN: initial modReLU bias (None: the layer's own)
    max_words: int | None = None  # cap of the vocabulary (None: all words)
    train_tokens: int | None = None  # use only the first tokens of the training split
    eval_tokens: int | None = None
    orbit_every: int = 1
    orbit_inputs: tuple[str, ...] = ("is",)
    orbit_tokens: tuple[str, ...] = ("is", "Valkyria", "<unk>")
    n_init: int = 5
    std: float = 100.0
    n_burn: int = 1500
    n_keep: int = 100
    lyap_steps: int = 500
    missing_train: str = "valid-as-train"
    seed: int = 0


# The paper's configuration (DESIGN.md): 150 epochs of the full corpus, 800 units.
PAPER_CONFIG = LMConfig()
# The chapter's configuration: small enough for ~2 shared CPU cores (see the chapter).
CPU_CONFIG = LMConfig(
    n_embed=64, n_hidden=64, dropout=0.1, bptt=35, batch_size=32, lr=2e-3, epochs=4,
    max_words=2000, train_tokens=48_000, eval_tokens=8_000, n_burn=200, n_keep=30,
    lyap_steps=100, n_init=5, orthogonal_lr_factor=0.1, modrelu_bias=-0.1,
)


def parameter_groups(lm: LanguageModel, lr: float, orthogonal_lr_factor: float = 1.0) -> list[dict]:
    """Adam parameter groups: the orthogonal matrix's parameters at ``lr * orthogonal_lr_factor``.

    expRNN trains the parameters of its orthogonal matrix with a smaller learning rate than
    the rest (Lezcano-Casado and Martínez-Rubio, 2019); for the LSTMs there is one group.
    """
    check_positive_real("lr", lr)
    check_positive_real("orthogonal_lr_factor", orthogonal_lr_factor)
    orth = [p for name, p in lm.named_parameters() if "parametrizations" in name]
    ids = {id(p) for p in orth}
    rest = [p for p in lm.parameters() if id(p) not in ids]
    groups = [{"params": rest, "lr": lr}]
    if orth:
        groups.append({"params": orth, "lr": lr * orthogonal_lr_factor})
    return groups


def _prepare_data(cfg: LMConfig, corpus: corpus_mod.Corpus, device) -> tuple:
    keep = tuple(dict.fromkeys(cfg.orbit_inputs + cfg.orbit_tokens))
    if cfg.max_words is not None:
        corpus = corpus_mod.cap_vocabulary(corpus, cfg.max_words, keep=keep)
    train = corpus.train if cfg.train_tokens is None else corpus.train[: cfg.train_tokens]
    valid = corpus.valid if cfg.eval_tokens is None else corpus.valid[: cfg.eval_tokens]
    test = corpus.test if cfg.eval_tokens is None else corpus.test[: cfg.eval_tokens]
    eval_batch = min(cfg.batch_size, 10)
    return (corpus, corpus_mod.batchify(train, cfg.batch_size, device),
            corpus_mod.batchify(valid, eval_batch, device),
            corpus_mod.batchify(test, eval_batch, device))


def _record_epoch(lm: LanguageModel, cfg: LMConfig, inputs: list[int], tokens: list[int]) -> dict:
    kw = dict(project_tokens=tokens, n_init=cfg.n_init, std=cfg.std, n_burn=cfg.n_burn,
              n_keep=cfg.n_keep, seed=cfg.seed)
    lm.eval()
    return {
        "constant": record_orbits(lm, inputs, feedback=False, **kw).float().cpu(),
        "feedback": record_orbits(lm, inputs, feedback=True, **kw).float().cpu(),
        "lyapunov": feedback_lyapunov(lm, n_init=cfg.n_init, std=cfg.std,
                                      n_transient=cfg.n_burn, n_steps=cfg.lyap_steps,
                                      seed=cfg.seed).float().cpu(),
    }


def run_experiment(cfg: LMConfig, corpus: corpus_mod.Corpus | None = None, *,
                   device: torch.device | str = "cpu", progress: bool = True,
                   log: Callable[[str], None] | None = None) -> dict:
    """Train ``cfg.model`` for ``cfg.epochs`` epochs and record, before training and after
    every ``cfg.orbit_every``-th epoch, the orbits (constant input and feedback) and the
    largest Lyapunov exponent of the feedback map.

    Adam (``cfg.lr``), gradient-norm clipping ``cfg.clip``, ``ReduceLROnPlateau`` on the
    validation loss (``cfg.patience``, ``cfg.factor``). Returns a dict with the config, the
    per-epoch history (losses, perplexities, tokens/s, learning rates), the orbit tensors
    ``(n_records, P, K, n_keep, 1 + n_tokens)``, the exponents ``(n_records, K)``, the
    epochs at which they were recorded, the token names, and the final test perplexity.
    """
    if cfg.model not in MODEL_KINDS:
        raise ValueError(f"cfg.model must be one of {MODEL_KINDS}, got {cfg.model!r}")
    if corpus is None:
        corpus = corpus_mod.load_wikitext2(missing_train=cfg.missing_train)
    corpus, train, valid, test = _prepare_data(cfg, corpus, device)
    d = corpus.dictionary
    inputs = [w for w in cfg.orbit_inputs if w in d]
    tokens = [w for w in cfg.orbit_tokens if w in d]
    if not inputs:
        raise ValueError(f"none of cfg.orbit_inputs {cfg.orbit_inputs} is in the vocabulary")
    in_ids = [d.word2idx[w] for w in inputs]
    tok_ids = [d.word2idx[w] for w in tokens]
    torch.manual_seed(cfg.seed)
    lm = LanguageModel(cfg.model, len(d), cfg.n_embed, cfg.n_hidden, dropout=cfg.dropout,
                       seed=cfg.seed, modrelu_bias=cfg.modrelu_bias).to(device)
    opt = torch.optim.Adam(parameter_groups(lm, cfg.lr, cfg.orthogonal_lr_factor), lr=cfg.lr)
    sched = torch.optim.lr_scheduler.ReduceLROnPlateau(opt, patience=cfg.patience,
                                                       factor=cfg.factor)
    history: dict[str, list] = {"epoch": [], "train_loss": [], "valid_loss": [],
                                "tokens_per_s": [], "lr": []}
    records: dict[str, list] = {"epoch": [], "constant": [], "feedback": [], "lyapunov": []}

    def record(epoch: int) -> None:
        rec = _record_epoch(lm, cfg, in_ids, tok_ids)
        records["epoch"].append(epoch)
        for k, v in rec.items():
            records[k].append(v)

    record(0)
    history["epoch"].append(0)
    history["train_loss"].append(float("nan"))
    history["valid_loss"].append(evaluate(lm, valid, bptt=cfg.bptt))
    history["tokens_per_s"].append(float("nan"))
    history["lr"].append(cfg.lr)
    t_start = time.perf_counter()
    for epoch in range(1, cfg.epochs + 1):
        stats = train_epoch(lm, train, opt, bptt=cfg.bptt, clip=cfg.clip, progress=progress)
        val = evaluate(lm, valid, bptt=cfg.bptt)
        sched.step(val)
        history["epoch"].append(epoch)
        history["train_loss"].append(stats["loss"])
        history["valid_loss"].append(val)
        history["tokens_per_s"].append(stats["tokens_per_s"])
        history["lr"].append(opt.param_groups[0]["lr"])
        if epoch % cfg.orbit_every == 0 or epoch == cfg.epochs:
            record(epoch)
        if log is not None:
            log(f"{cfg.model} epoch {epoch}: train {stats['loss']:.3f} valid ppl "
                f"{math.exp(val):.1f} ({stats['tokens_per_s']:.0f} tokens/s)")
    return {
        "config": asdict(cfg),
        "source": corpus.source,
        "vocabulary": len(d),
        "inputs": inputs,
        "tokens": tokens,
        "history": history,
        "orbit_epochs": records["epoch"],
        "constant": torch.stack(records["constant"]),
        "feedback": torch.stack(records["feedback"]),
        "lyapunov": torch.stack(records["lyapunov"]),
        "test_loss": evaluate(lm, test, bptt=cfg.bptt),
        "train_seconds": time.perf_counter() - t_start,
        "state_dict": {k: v.detach().cpu() for k, v in lm.state_dict().items()},
    }


# --------------------------------------------------------------------------- command line
def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``python -m lib.experiments language-model`` (defaults: the paper's)."""
    p = PAPER_CONFIG
    parser.add_argument("--model", choices=MODEL_KINDS, default="lstm")
    parser.add_argument("--scale", choices=("paper", "cpu"), default="paper",
                        help="start from the paper's configuration or the chapter's CPU one")
    for name in ("n_embed", "n_hidden", "bptt", "batch_size", "epochs", "patience",
                 "max_words", "train_tokens", "eval_tokens", "orbit_every", "n_init",
                 "n_burn", "n_keep", "lyap_steps", "seed"):
        parser.add_argument("--" + name.replace("_", "-"), dest=name, type=int, default=None,
                            help=f"default: {getattr(p, name)} (paper scale)")
    for name in ("dropout", "lr", "clip", "factor", "std", "orthogonal_lr_factor",
                 "modrelu_bias"):
        parser.add_argument("--" + name.replace("_", "-"), dest=name, type=float, default=None,
                            help=f"default: {getattr(p, name)} (paper scale)")
    parser.add_argument("--data", default=None, help="WikiText-2 folder (default: lookup)")
    parser.add_argument("--missing-train", default="valid-as-train",
                        choices=("error", "valid-as-train"))
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--out", default="runs/language_model",
                        help="folder for <model>.pt (results) and <model>.json (summary)")


def config_from_args(args: argparse.Namespace) -> LMConfig:
    cfg = CPU_CONFIG if args.scale == "cpu" else PAPER_CONFIG
    changes = {k: v for k, v in vars(args).items()
               if k in LMConfig.__dataclass_fields__ and v is not None}
    changes["model"] = args.model
    changes["missing_train"] = args.missing_train
    return replace(cfg, **changes)


def run(args: argparse.Namespace) -> dict:
    """Run the experiment, save results with config, commit, device and wall time."""
    cfg = config_from_args(args)
    corpus = corpus_mod.load_wikitext2(args.data, missing_train=cfg.missing_train)
    t0 = time.perf_counter()
    result = run_experiment(cfg, corpus, device=args.device, progress=False, log=print)
    from .experiments import device_name, git_commit  # lazy: experiments imports this module

    result["meta"] = {"commit": git_commit(), "device": str(args.device),
                      "device_name": device_name(str(args.device)),
                      "torch": torch.__version__, "wall_seconds": time.perf_counter() - t0}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    torch.save(result, out / f"{cfg.model}.pt")
    summary = {k: result[k] for k in ("config", "source", "vocabulary", "inputs", "tokens",
                                      "history", "orbit_epochs", "test_loss", "meta")}
    summary["lyapunov"] = result["lyapunov"].tolist()
    (out / f"{cfg.model}.json").write_text(json.dumps(summary, indent=1, default=float))
    print(f"saved {out / (cfg.model + '.pt')}; test perplexity {math.exp(result['test_loss']):.1f}")
    return result


def register_experiment(register: Callable) -> None:
    """Add the ``language-model`` subcommand: ``register(name, add_arguments, run)``."""
    register("language-model", add_arguments, run)


def main(argv: Sequence[str] | None = None) -> dict:
    """Stand-alone entry point (``python -m lib.language_model ...``), same options."""
    parser = argparse.ArgumentParser(prog="language-model", description=__doc__.split("\n")[0])
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":  # pragma: no cover
    main()
