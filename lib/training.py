"""One training loop for every chapter, with orbit recording and exact checkpoints.

The paper watches the attractors of an RNN change while it trains (supplement D): after
every k-th epoch the model runs from random initial states under constant inputs, the
transient is dropped, and the steady-state outputs are drawn against the epoch. This
module provides

* :func:`train`: Adam (or any optimizer), gradient-norm clipping, learning-rate schedules
  (``MultiStepLR``, ``ReduceLROnPlateau`` or any callable), a ``tqdm.auto`` progress bar, a
  history of loss and metrics per epoch, recorders called at epoch 0 and every k-th epoch,
  and checkpoints after every epoch from which a killed run resumes *exactly* (model,
  optimizer, scheduler, history, recorders and every random-number generator are saved);
* :class:`Batches`: mini-batches whose shuffling depends only on ``(seed, epoch)``, so a
  resumed run sees the same batches;
* :class:`OrbitRecorder` (model-agnostic: it takes a callable producing steady-state
  samples), :func:`constant_input_orbits` and :func:`largest_lyapunov` (such callables for
  the modules of :mod:`lib.models`);
* :func:`save_checkpoint` (atomic, checksummed) and :func:`load_checkpoint`
  (``torch.load(weights_only=True)`` after the checksum is verified).
"""

from __future__ import annotations

import hashlib
import io
import math
import os
import random
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence

import numpy as np
import torch
from torch import Tensor, nn

from ._checks import check_nonnegative_int, check_positive_int, check_positive_real
from .dynamics import lyapunov_spectrum

__all__ = [
    "Batches",
    "accuracy",
    "train",
    "evaluate",
    "TrainResult",
    "OrbitRecorder",
    "constant_input_orbits",
    "largest_lyapunov",
    "save_checkpoint",
    "load_checkpoint",
    "rng_state",
    "set_rng_state",
    "CheckpointError",
]


# ----------------------------------------------------------------------------- data
class Batches:
    """Mini-batches of ``(inputs, targets)`` along a batch dimension, reshuffled per epoch.

    The permutation of epoch ``e`` is drawn from a generator seeded with ``(seed, e)``, so
    it does not depend on how many epochs ran in this process: a resumed run sees exactly
    the batches an uninterrupted one would. :func:`train` calls :meth:`set_epoch`.

    Args:
        inputs, targets: tensors sharing the batch size along ``batch_dim`` and
            ``target_batch_dim`` (time-first sequences: ``batch_dim=1``).
        batch_size: sequences per batch (the last batch may be smaller).
        shuffle: reshuffle every epoch (else keep the order).
    """

    def __init__(self, inputs: Tensor, targets: Tensor, batch_size: int, *,
                 batch_dim: int = 1, target_batch_dim: int = 0, shuffle: bool = True,
                 seed: int = 0):
        check_positive_int("batch_size", batch_size)
        check_nonnegative_int("seed", seed)
        n = inputs.shape[batch_dim]
        if targets.shape[target_batch_dim] != n:
            raise ValueError(
                f"targets must hold {n} items along dim {target_batch_dim} (inputs' batch), "
                f"got shape {tuple(targets.shape)}"
            )
        self.inputs, self.targets = inputs, targets
        self.batch_size, self.batch_dim, self.target_batch_dim = batch_size, batch_dim, target_batch_dim
        self.shuffle, self.seed, self.epoch = shuffle, seed, 0
        self.n = n

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return math.ceil(self.n / self.batch_size)

    def __iter__(self):
        if self.shuffle:
            gen = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
            order = torch.randperm(self.n, generator=gen)
        else:
            order = torch.arange(self.n)
        order = order.to(self.inputs.device)
        for start in range(0, self.n, self.batch_size):
            idx = order[start : start + self.batch_size]
            yield (self.inputs.index_select(self.batch_dim, idx),
                   self.targets.index_select(self.target_batch_dim, idx.to(self.targets.device)))


def accuracy(output: Tensor, target: Tensor) -> Tensor:
    """Fraction of arg-max predictions equal to the class ``target`` (logits last)."""
    return (output.argmax(dim=-1) == target).float().mean()


# ----------------------------------------------------------------------------- RNG state
def rng_state() -> dict[str, Any]:
    """Every generator a training run may draw from (torch CPU/CUDA, Python, NumPy)."""
    np_state = np.random.get_state()
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "python": random.getstate(),
        "numpy": (np_state[0], torch.from_numpy(np_state[1].astype(np.int64)), *np_state[2:]),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: Mapping[str, Any]) -> None:
    """Restore the generators saved by :func:`rng_state`."""
    torch.set_rng_state(state["torch"].cpu())
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    name, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([s.cpu() for s in state["cuda"]])


# ----------------------------------------------------------------------------- checkpoints
class CheckpointError(ValueError):
    """A checkpoint that is corrupted, truncated or does not match the run."""


_MAGIC = b"RNNBOOK-CKPT-1\n"


def save_checkpoint(path: str | os.PathLike, state: Mapping[str, Any]) -> Path:
    """Write ``state`` atomically with a SHA-256 checksum; return the path.

    The file is a magic line, the hex digest of the payload, a newline and the payload
    (``torch.save`` of ``state``). It is written to a temporary file in the same folder,
    flushed to disk and renamed over ``path``: a run killed while saving leaves the previous
    checkpoint intact. ``state`` may hold tensors, numbers, strings, lists, tuples and dicts
    (what ``torch.load(weights_only=True)`` accepts).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    buf = io.BytesIO()
    torch.save(dict(state), buf)
    payload = buf.getvalue()
    digest = hashlib.sha256(payload).hexdigest().encode()
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(_MAGIC + digest + b"\n" + payload)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


def load_checkpoint(path: str | os.PathLike, *, model: nn.Module | None = None,
                    optimizer: torch.optim.Optimizer | None = None,
                    expected: Mapping[str, Any] | None = None,
                    map_location: str | torch.device | None = "cpu") -> dict[str, Any]:
    """Read a checkpoint written by :func:`save_checkpoint`, verifying it first.

    Raises ``FileNotFoundError`` if ``path`` is missing and :class:`CheckpointError` (a
    ``ValueError``) if the file is not such a checkpoint, its checksum fails (corrupted or
    truncated), ``torch.load(weights_only=True)`` rejects it, its ``config`` differs from
    ``expected`` on a key of ``expected``, or ``model``/``optimizer`` (loaded in place when
    given, from ``state["model"]`` / ``state["optimizer"]``) do not match its tensors.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {str(path)!r} does not exist")
    raw = path.read_bytes()
    head = len(_MAGIC)
    if not raw.startswith(_MAGIC) or len(raw) < head + 65 or raw[head + 64 : head + 65] != b"\n":
        raise CheckpointError(f"{path} is not a checkpoint of lib.training (bad header)")
    digest, payload = raw[head : head + 64], raw[head + 65 :]
    if hashlib.sha256(payload).hexdigest().encode() != digest:
        raise CheckpointError(f"{path} is corrupted: its SHA-256 checksum does not match")
    try:
        state = torch.load(io.BytesIO(payload), map_location=map_location, weights_only=True)
    except Exception as exc:  # pragma: no cover - checksum already guards this
        raise CheckpointError(f"{path} could not be loaded with weights_only=True: {exc}") from exc
    if expected is not None:
        saved = state.get("config", {})
        diff = {k: (saved.get(k, "<missing>"), v) for k, v in expected.items() if saved.get(k, "<missing>") != v}
        if diff:
            detail = ", ".join(f"{k}: saved {a!r}, expected {b!r}" for k, (a, b) in diff.items())
            raise CheckpointError(f"{path} belongs to a different run ({detail})")
    if model is not None:
        try:
            model.load_state_dict(state["model"])
        except (KeyError, RuntimeError) as exc:
            raise CheckpointError(f"{path} does not match the model: {exc}") from exc
    if optimizer is not None:
        try:
            optimizer.load_state_dict(state["optimizer"])
        except (KeyError, ValueError, RuntimeError) as exc:
            raise CheckpointError(f"{path} does not match the optimizer: {exc}") from exc
    return state


# ----------------------------------------------------------------------------- orbits
def constant_input_orbits(inputs: Tensor, *, n_init: int = 10, std: float = 100.0,
                          n_steps: int = 800, n_transient: int = 400, seed: int = 0,
                          differences: bool = True) -> Callable[[nn.Module], Tensor]:
    """A sampler of steady-state outputs under constant inputs, for :class:`OrbitRecorder`.

    For a model with ``model.rnn`` (a :class:`lib.models.RecurrentModule`) and
    ``model.outputs(u, state)``, the sampler runs every constant input ``inputs[i]``
    (shape ``(n_inputs, Nu)``) from the same ``n_init`` Gaussian initial states of standard
    deviation ``std`` for ``n_steps`` steps, *all in one batched sequence* of
    ``n_inputs * n_init`` columns, and keeps the outputs after the first ``n_transient``.

    Returns a callable ``model -> samples`` with ``samples`` of shape
    ``(n_inputs, n_init, n_steps - n_transient, Ny)``, or ``(2, ...)`` with the first
    differences ``ŷ_t - ŷ_{t-1}`` stacked second when ``differences`` is true.
    """
    if inputs.dim() != 2:
        raise ValueError(f"inputs must have shape (n_inputs, Nu), got {tuple(inputs.shape)}")
    check_positive_int("n_init", n_init)
    check_positive_int("n_steps", n_steps)
    check_nonnegative_int("n_transient", n_transient)
    if n_transient >= n_steps:
        raise ValueError(f"n_transient must be < n_steps={n_steps}, got {n_transient}")
    if differences and n_transient < 1:
        raise ValueError("n_transient must be >= 1 when differences are recorded")
    if not (math.isfinite(std) and std >= 0):
        raise ValueError(f"std must be finite and >= 0, got {std!r}")
    n_in = inputs.shape[0]

    @torch.no_grad()
    def sample(model: nn.Module) -> Tensor:
        was_training = model.training
        model.eval()
        gen = torch.Generator().manual_seed(seed)
        x0 = model.rnn.initial_state(n_init, std=std, generator=gen)  # (K, Nx)
        x0 = x0.unsqueeze(0).expand(n_in, -1, -1).reshape(n_in * n_init, -1)
        u = inputs.to(dtype=x0.dtype, device=x0.device)
        u = u.unsqueeze(1).expand(n_in, n_init, -1).reshape(1, n_in * n_init, -1)
        y = model.outputs(u.expand(n_steps, -1, -1), x0)  # (T, n_in*K, Ny)
        model.train(was_training)
        y = y.reshape(n_steps, n_in, n_init, -1).permute(1, 2, 0, 3)
        kept = y[:, :, n_transient:]
        if not differences:
            return kept.cpu()
        return torch.stack([kept, kept - y[:, :, n_transient - 1 : -1]]).cpu()

    return sample


def largest_lyapunov(inputs: Tensor, *, n_init: int = 4, std: float = 1.0,
                     n_steps: int = 200, n_transient: int = 200, seed: int = 0,
                     dtype: torch.dtype = torch.float64) -> Callable[[nn.Module], Tensor]:
    """A callable ``model -> λ_max`` of shape ``(n_inputs, n_init)`` for :class:`OrbitRecorder`.

    Uses ``model.rnn.step_map(u)`` (the autonomous map under constant input ``u``) and
    :func:`lib.dynamics.lyapunov_spectrum` with ``n_exponents=1``, batched over the inputs
    (shape ``(n_inputs, Nu)``) and the ``n_init`` Gaussian initial states.
    """
    if inputs.dim() != 2:
        raise ValueError(f"inputs must have shape (n_inputs, Nu), got {tuple(inputs.shape)}")
    check_positive_int("n_init", n_init)

    def measure(model: nn.Module) -> Tensor:
        rnn = model.rnn
        p = next(rnn.parameters())
        u = inputs.to(dtype=dtype, device=p.device).unsqueeze(1)  # (n_in, 1, Nu)
        gen = torch.Generator().manual_seed(seed)
        x0 = rnn.initial_state(n_init, std=std, generator=gen).to(dtype)
        x0 = x0.unsqueeze(0).expand(inputs.shape[0], -1, -1).contiguous()
        lam = lyapunov_spectrum(rnn.step_map(u, dtype=dtype), x0, n_steps,
                                n_transient=n_transient, n_exponents=1)
        return lam[..., 0].cpu()

    return measure


class OrbitRecorder:
    """Record steady-state samples (and optionally λ_max) at epoch 0 and every k-th epoch.

    Args:
        sampler: ``model -> Tensor``; any shape, the same at every call (e.g.
            :func:`constant_input_orbits`). The recorder knows nothing else about the model.
        every: record after epochs ``0, every, 2 every, ...`` (and the last epoch).
        lyapunov: optional ``model -> Tensor`` (e.g. :func:`largest_lyapunov`).

    After training: ``epochs`` (list), ``samples`` (Tensor ``(E, *sample_shape)``),
    ``lyapunov`` (``(E, ...)`` or None) and ``seconds`` (time spent recording per call).
    """

    def __init__(self, sampler: Callable[[nn.Module], Tensor], *, every: int = 1,
                 lyapunov: Callable[[nn.Module], Tensor] | None = None):
        if not callable(sampler):
            raise ValueError("sampler must be callable: model -> Tensor")
        self.sampler, self.lyapunov_fn = sampler, lyapunov
        self.every = check_positive_int("every", every)
        self.epochs: list[int] = []
        self._samples: list[Tensor] = []
        self._lyap: list[Tensor] = []
        self.seconds: list[float] = []

    def wants(self, epoch: int, last_epoch: int) -> bool:
        return epoch % self.every == 0 or epoch == last_epoch

    def __call__(self, model: nn.Module, epoch: int) -> None:
        t0 = time.perf_counter()
        self._samples.append(self.sampler(model).detach().cpu())
        if self.lyapunov_fn is not None:
            self._lyap.append(self.lyapunov_fn(model).detach().cpu())
        self.epochs.append(int(epoch))
        self.seconds.append(time.perf_counter() - t0)

    @property
    def samples(self) -> Tensor:
        return torch.stack(self._samples)

    @property
    def lyapunov(self) -> Tensor | None:
        return torch.stack(self._lyap) if self._lyap else None

    def state_dict(self) -> dict[str, Any]:
        return {"epochs": list(self.epochs), "samples": list(self._samples),
                "lyapunov": list(self._lyap), "seconds": list(self.seconds)}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.epochs = [int(e) for e in state["epochs"]]
        self._samples = list(state["samples"])
        self._lyap = list(state["lyapunov"])
        self.seconds = [float(s) for s in state["seconds"]]


# ----------------------------------------------------------------------------- the loop
def _default_forward(model: nn.Module, batch, loss_fn):
    inputs, targets = batch
    output = model(inputs)
    return loss_fn(output, targets), output, targets


def _to_device(batch, device):
    if isinstance(batch, Tensor):
        return batch.to(device)
    if isinstance(batch, (list, tuple)):
        return type(batch)(_to_device(b, device) for b in batch)
    if isinstance(batch, dict):
        return {k: _to_device(v, device) for k, v in batch.items()}
    return batch


def _make_optimizer(optimizer, params, lr: float, weight_decay: float):
    if callable(optimizer) and not isinstance(optimizer, str):
        return optimizer(params)
    if optimizer == "adam":
        return torch.optim.Adam(params, lr=lr, weight_decay=weight_decay)
    if optimizer == "sgd":
        return torch.optim.SGD(params, lr=lr, weight_decay=weight_decay)
    raise ValueError(f"optimizer must be 'adam', 'sgd' or a callable, got {optimizer!r}")


def _make_scheduler(spec, opt):
    if spec is None:
        return None
    if callable(spec):
        return spec(opt)
    spec = dict(spec)
    name = spec.pop("name", None)
    if name == "multistep":
        return torch.optim.lr_scheduler.MultiStepLR(opt, **spec)
    if name == "plateau":
        return torch.optim.lr_scheduler.ReduceLROnPlateau(opt, **spec)
    if name == "step":
        return torch.optim.lr_scheduler.StepLR(opt, **spec)
    raise ValueError(
        "scheduler must be None, a callable(optimizer) or a dict with name 'multistep', "
        f"'plateau' or 'step'; got {name!r}"
    )


def _run_epoch(model, data, loss_fn, forward, metrics, *, opt=None, clip=None, post_step=None,
               device="cpu"):
    sums: dict[str, float] = {"loss": 0.0, **{m: 0.0 for m in metrics}}
    count = 0
    for batch in data:
        batch = _to_device(batch, device)
        if opt is not None:
            opt.zero_grad(set_to_none=True)
            loss, output, target = forward(model, batch, loss_fn)
            if not torch.isfinite(loss):
                raise FloatingPointError(f"the training loss became {loss.item()} (diverged)")
            loss.backward()
            if clip is not None:
                nn.utils.clip_grad_norm_(model.parameters(), clip)
            opt.step()
            if post_step is not None:
                post_step(model)
        else:
            loss, output, target = forward(model, batch, loss_fn)
        n = target.numel() if isinstance(target, Tensor) else 1
        with torch.no_grad():
            sums["loss"] += loss.item() * n
            for name, fn in metrics.items():
                sums[name] += float(fn(output.detach(), target)) * n
        count += n
    if count == 0:
        raise ValueError("data yielded no batches")
    return {k: v / count for k, v in sums.items()}


@torch.no_grad()
def evaluate(model: nn.Module, data: Iterable, loss_fn: Callable, *,
             metrics: Mapping[str, Callable] | None = None, forward: Callable | None = None,
             device: str | torch.device = "cpu") -> dict[str, float]:
    """Mean loss and metrics of ``model`` (in eval mode) over the batches of ``data``."""
    was = model.training
    model.eval()
    try:
        return _run_epoch(model, data, loss_fn, forward or _default_forward, dict(metrics or {}),
                          device=device)
    finally:
        model.train(was)


@dataclass
class TrainResult:
    """What :func:`train` returns: the history (dict of per-epoch lists) and the recorders."""

    history: dict[str, list]
    recorders: list
    epochs_run: int


def train(
    model: nn.Module,
    loss_fn: Callable[[Any, Any], Tensor],
    train_data: Iterable,
    *,
    epochs: int,
    val_data: Iterable | None = None,
    metrics: Mapping[str, Callable[[Any, Any], Tensor]] | None = None,
    forward: Callable | None = None,
    optimizer: str | Callable = "adam",
    lr: float = 1e-3,
    weight_decay: float = 0.0,
    clip: float | None = 0.25,
    scheduler: Mapping[str, Any] | Callable | None = None,
    recorders: Sequence[OrbitRecorder] = (),
    callbacks: Sequence[Callable[[int, dict], None]] = (),
    post_step: Callable[[nn.Module], None] | None = None,
    checkpoint: str | os.PathLike | None = None,
    resume: bool = True,
    config: Mapping[str, Any] | None = None,
    device: str | torch.device = "cpu",
    progress: bool = True,
    desc: str = "training",
) -> TrainResult:
    """Train ``model`` for ``epochs`` epochs; record, checkpoint and resume.

    Each epoch: for every batch of ``train_data`` (``set_epoch(e)`` is called on it if it
    has one) ``loss, output, target = forward(model, batch, loss_fn)`` (default:
    ``output = model(inputs)`` for ``batch = (inputs, targets)``), backpropagate, clip the
    gradient norm to ``clip``, step the optimizer, call ``post_step(model)`` (a projection,
    e.g. :func:`lib.models.apply_constraints`). Then evaluate on ``val_data``, step the
    scheduler (``ReduceLROnPlateau`` on the validation loss, or the training loss without
    validation data), call the recorders that want this epoch, append to the history, save
    the checkpoint, and call ``callbacks(epoch, history)``.

    Recorders also run once before training (epoch 0). With ``checkpoint`` set and
    ``resume`` true, an existing checkpoint is loaded (its ``config`` must equal ``config``)
    and training continues after its last epoch, bit for bit as if never interrupted.

    History keys: ``epoch``, ``lr``, ``train_loss``, ``train_<metric>``, ``val_loss``,
    ``val_<metric>``, ``epoch_seconds`` (training pass) and ``record_seconds``.
    """
    check_positive_int("epochs", epochs)
    if clip is not None:
        check_positive_real("clip", clip)
    check_positive_real("lr", lr)
    metrics = dict(metrics or {})
    forward = forward or _default_forward
    config = dict(config or {})
    model.to(device)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = _make_optimizer(optimizer, params, lr, weight_decay)
    sched = _make_scheduler(scheduler, opt)
    recorders = list(recorders)
    history: dict[str, list] = {"epoch": [], "lr": [], "epoch_seconds": [], "record_seconds": []}
    start = 1
    ckpt_path = Path(checkpoint) if checkpoint is not None else None

    def snapshot(epoch: int) -> dict[str, Any]:
        return {
            "epoch": epoch,
            "config": config,
            "model": model.state_dict(),
            "optimizer": opt.state_dict(),
            "scheduler": sched.state_dict() if sched is not None else None,
            "history": history,
            "recorders": [r.state_dict() for r in recorders],
            "rng": rng_state(),
        }

    if ckpt_path is not None and resume and ckpt_path.exists():
        state = load_checkpoint(ckpt_path, model=model, optimizer=opt, expected=config,
                                map_location=device)
        if sched is not None and state["scheduler"] is not None:
            sched.load_state_dict(state["scheduler"])
        history = {k: list(v) for k, v in state["history"].items()}
        if len(state["recorders"]) != len(recorders):
            raise CheckpointError(
                f"{ckpt_path} holds {len(state['recorders'])} recorders, the run has {len(recorders)}"
            )
        for r, rs in zip(recorders, state["recorders"]):
            r.load_state_dict(rs)
        set_rng_state(state["rng"])
        start = int(state["epoch"]) + 1
    else:
        t0 = time.perf_counter()
        for r in recorders:
            r(model, 0)
        history["record_seconds_initial"] = [time.perf_counter() - t0]
        if ckpt_path is not None:
            save_checkpoint(ckpt_path, snapshot(0))

    bar = None
    if progress and start <= epochs:
        from tqdm.auto import tqdm
        bar = tqdm(total=epochs, initial=start - 1, desc=desc, leave=False)
    try:
        for epoch in range(start, epochs + 1):
            if hasattr(train_data, "set_epoch"):
                train_data.set_epoch(epoch)
            model.train()
            t0 = time.perf_counter()
            stats = _run_epoch(model, train_data, loss_fn, forward, metrics, opt=opt, clip=clip,
                               post_step=post_step, device=device)
            seconds = time.perf_counter() - t0
            row = {f"train_{k}": v for k, v in stats.items()}
            if val_data is not None:
                row.update({f"val_{k}": v for k, v in evaluate(
                    model, val_data, loss_fn, metrics=metrics, forward=forward, device=device
                ).items()})
            row["lr"] = opt.param_groups[0]["lr"]
            if sched is not None:
                if isinstance(sched, torch.optim.lr_scheduler.ReduceLROnPlateau):
                    sched.step(row.get("val_loss", row["train_loss"]))
                else:
                    sched.step()
            t1 = time.perf_counter()
            for r in recorders:
                if r.wants(epoch, epochs):
                    r(model, epoch)
            row["record_seconds"] = time.perf_counter() - t1
            row["epoch_seconds"] = seconds
            row["epoch"] = epoch
            for k, v in row.items():
                history.setdefault(k, []).append(v)
            if ckpt_path is not None:
                save_checkpoint(ckpt_path, snapshot(epoch))
            if bar is not None:
                bar.update(1)
                bar.set_postfix({k: f"{row[k]:.3g}" for k in row if k.startswith(("train_", "val_"))})
            for cb in callbacks:
                cb(epoch, history)
    finally:
        if bar is not None:
            bar.close()
    return TrainResult(history=history, recorders=recorders, epochs_run=max(0, epochs - start + 1))
