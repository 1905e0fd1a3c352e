"""THE training loop of the book and THE orbit recorder, with exact checkpoints.

The paper watches the attractors of an RNN change while it trains (supplement D): after
every k-th epoch the model runs from random initial states under constant inputs (or, for a
language model, feeding back its own most probable word), the transient is dropped, and the
steady-state outputs are drawn against the epoch. Every experiment of the book, the
language model included, trains and records through this module:

* :func:`train`: Adam (or any optimizer), gradient-norm clipping, learning-rate schedules
  (``MultiStepLR``, ``ReduceLROnPlateau`` or any callable), a ``tqdm.auto`` progress bar, a
  history of loss and metrics per epoch, recorders, and checkpoints after every epoch from
  which a killed run resumes *exactly* (model, optimizer, scheduler, history, recorders and
  every random-number generator are saved). The forward step is a callable: truncated BPTT
  for a language model (:class:`TruncatedBPTT`, which carries the hidden state from one
  window to the next) is a forward step and a batching (:class:`BPTTWindows`), not a
  second loop;
* :func:`evaluate`: mean loss and metrics over a data set;
* :class:`Batches`: mini-batches in a fixed order or reshuffled per epoch from
  ``(seed, epoch)``, so a resumed run sees the same batches;
* :class:`OrbitRecorder` with :func:`orbit_sampler` (constant-input and feedback orbits)
  and :func:`lyapunov_sampler` (λ_1 by :func:`lib.dynamics.largest_lyapunov`);
* :func:`save_checkpoint` (atomic, checksummed) and :func:`load_checkpoint`
  (``torch.load(weights_only=True)`` after the checksum is verified).

Import graph: this module uses :mod:`lib.dynamics` and :mod:`lib._checks` only; the
experiments (:mod:`lib.experiments`) sit on top of it.
"""

from __future__ import annotations

import hashlib
import io
import math
import os
import random
import tempfile
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence

import numpy as np
import torch
import torch.autograd.forward_ad as fwAD
from torch import Tensor, nn
from torch.nn.utils import parametrize as _parametrize

from ._checks import (ArgumentTypeError, check_callable, check_nonnegative_int, check_positive_int,
                      check_positive_real, check_tensor)
from .dynamics import largest_lyapunov

__all__ = [
    "Batches",
    "BPTTWindows",
    "TruncatedBPTT",
    "accuracy",
    "train",
    "evaluate",
    "TrainResult",
    "OrbitRecorder",
    "orbit_sampler",
    "lyapunov_sampler",
    "feedback_map",
    "save_checkpoint",
    "load_checkpoint",
    "rng_state",
    "set_rng_state",
    "CheckpointError",
    "atomic_write",
    "sweep_temporary_files",
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
        check_tensor("inputs", inputs, finite=False)
        check_tensor("targets", targets, finite=False)
        for name, value, dim in (("batch_dim", inputs, batch_dim),
                                 ("target_batch_dim", targets, target_batch_dim)):
            if isinstance(dim, bool) or not isinstance(dim, int) or not (
                    -value.dim() <= dim < value.dim()):
                raise ValueError(f"{name} must be a dimension of a tensor of shape "
                                 f"{tuple(value.shape)}, got {dim!r}")
        n = inputs.shape[batch_dim]
        if n == 0:
            raise ValueError(f"inputs must hold at least one item along dim {batch_dim}, got "
                             f"shape {tuple(inputs.shape)}")
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
        """Select the permutation of ``epoch`` (``(seed, epoch)`` seeds it)."""
        self.epoch = check_nonnegative_int("epoch", epoch)

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


class BPTTWindows:
    """Windows of truncated BPTT over token streams ``data (T, B)`` (:func:`lib.corpus.batchify`).

    Yields ``(inputs, targets)`` = ``data[i:i+L]``, ``data[i+1:i+1+L]`` for ``i = 0, bptt,
    2 bptt, ...`` with ``L <= bptt``, in order: the hidden state is carried from one window
    to the next by :class:`TruncatedBPTT`, so the order is the stream's.
    """

    def __init__(self, data: Tensor, bptt: int):
        check_positive_int("bptt", bptt)
        if not isinstance(data, Tensor) or data.dim() != 2 or data.shape[0] < 2:
            raise ValueError("data must be token streams of shape (T, B) with T >= 2, got "
                             f"{getattr(data, 'shape', type(data).__name__)}")
        if data.dtype != torch.long:
            raise ValueError(f"data must hold token ids (torch.long), got {data.dtype}")
        self.data, self.bptt = data, bptt

    def __len__(self) -> int:
        return math.ceil((self.data.shape[0] - 1) / self.bptt)

    def __iter__(self):
        T = self.data.shape[0]
        for i in range(0, T - 1, self.bptt):
            L = min(self.bptt, T - 1 - i)
            yield self.data[i : i + L], self.data[i + 1 : i + 1 + L]


class TruncatedBPTT:
    """The forward step of truncated BPTT, for :func:`train` and :func:`evaluate`.

    ``model(tokens (L, B), state (B, Nx)) -> (logits (L, B, V), state)``. The state is
    carried from one window to the next and detached in between (gradients flow through
    ``L`` steps at most); :func:`train` calls :meth:`reset` at the start of every pass, so
    each epoch starts from the zero state ``model.init_state(B)``.
    """

    def __init__(self) -> None:
        self.state: Tensor | None = None

    def reset(self) -> None:
        self.state = None

    def __call__(self, model: nn.Module, batch, loss_fn):
        x, y = batch
        if self.state is None or self.state.shape[0] != x.shape[1]:
            self.state = model.init_state(x.shape[1])
        logits, state = model(x, self.state.detach())
        self.state = state.detach()
        loss = loss_fn(logits.reshape(-1, logits.shape[-1]), y.reshape(-1))
        return loss, logits, y


def accuracy(output: Tensor, target: Tensor) -> Tensor:
    """Fraction of arg-max predictions equal to the class ``target`` (logits last).

    ``output`` is ``(..., C)`` (floating point), ``target`` the class indices ``(...)``.
    """
    check_tensor("output", output, floating=True, min_ndim=1, finite=False, what="(..., C)")
    check_tensor("target", target, integer=True, what="(...) of class indices")
    if tuple(target.shape) != tuple(output.shape[:-1]) or output.shape[-1] == 0:
        raise ValueError(f"target must have shape {tuple(output.shape[:-1])} (output's without "
                         f"its last dimension), got {tuple(target.shape)}")
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
    """Restore the generators saved by :func:`rng_state`.

    Every tensor of ``state`` is moved to the CPU before it is converted: a checkpoint
    loaded with ``map_location="cuda"`` (a run resumed on a GPU) holds them on the GPU,
    where ``torch.set_rng_state`` and ``.numpy()`` refuse them.
    """
    if not isinstance(state, Mapping) or not {"torch", "python", "numpy"} <= set(state):
        raise ValueError("state must be a mapping saved by rng_state() (keys torch, python, "
                         "numpy)")
    torch.set_rng_state(state["torch"].cpu())
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    name, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((name, keys.cpu().numpy().astype(np.uint32), pos, has_gauss, cached))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([s.cpu() for s in state["cuda"]])


# ----------------------------------------------------------------------------- checkpoints
class CheckpointError(ValueError):
    """A checkpoint that is corrupted, truncated or does not match the run."""


_MAGIC = b"RNNBOOK-CKPT-1\n"


_UMASK = os.umask(0)
os.umask(_UMASK)


_TMP_SUFFIX = ".tmp"
_TMP_PREFIX = ".rnnbook-"


def atomic_write(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically: THE way ``lib`` writes an output file.

    A temporary file with an unpredictable name (``tempfile.mkstemp``: created with
    ``O_EXCL``, so it never follows or reuses a planted symlink) in the same folder,
    written, flushed to disk (fsync), then renamed over ``path`` (``os.replace`` replaces a
    symlink at ``path`` itself and never writes through it), and the folder's entry is
    synced too. A process killed while writing leaves the previous file intact, never a
    truncated ``path``; a hard kill can leave one ``.rnnbook-<name>.<random>.tmp``, which
    :func:`sweep_temporary_files` removes at the next start.
    """
    path = Path(path)
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise ArgumentTypeError(f"data must be bytes, got {type(data).__name__}")
    if not path.parent.is_dir():
        raise FileNotFoundError(f"the folder of {str(path)!r} does not exist")
    fd, tmp = tempfile.mkstemp(prefix=f"{_TMP_PREFIX}{path.name}.", suffix=_TMP_SUFFIX,
                               dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp's 0600 -> what open() would have made
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    try:  # make the rename itself durable
        dfd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
    except OSError:  # pragma: no cover - some file systems cannot sync a folder
        pass


def sweep_temporary_files(folder: str | os.PathLike) -> list[Path]:
    """Remove the temporary files that :func:`atomic_write` left in ``folder`` and its
    sub-folders when a process was killed mid-write; return them. Call it only while
    holding the folder's lock (no other writer is running)."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    removed = []
    # this module's names, and those of the versions before the prefix existed
    for pattern in (f"{_TMP_PREFIX}*{_TMP_SUFFIX}", f"*.pt.*{_TMP_SUFFIX}",
                    f"*.json.*{_TMP_SUFFIX}"):
        for p in folder.rglob(pattern):
            if p.is_file() and not p.is_symlink():
                p.unlink()
                removed.append(p)
    return removed


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
    atomic_write(path, _MAGIC + digest + b"\n" + payload)
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
# The orbit recorder works on any model with the "orbit interface" of lib.models:
#   model.rnn                 a lib.models.RecurrentModule (initial_state, forward, step_map)
#   model.input_vectors(u)    orbit inputs (P, ...) -> input vectors (P, Nu) of the layer
#   model.readout(h)          hidden outputs (..., H) -> outputs (..., Ny)
#   model.feedback_input(h)   (feedback mode only) hidden outputs -> the next input vectors
# SequenceClassifier, SequenceRegressor and LanguageModel implement it.
Readout = Callable[[nn.Module, Tensor], Tensor]


def _orbit_initial_states(rnn, n_inputs: int, n_init: int, std: float, seed: int,
                          shared_init: bool) -> Tensor:
    """Initial states ``(n_inputs, n_init, Nx)``, drawn on the CPU from ``seed``.

    ``shared_init``: the same ``n_init`` states under every input; otherwise a separate
    state for every (input, initial state) pair (the authors' convention).
    """
    gen = torch.Generator().manual_seed(seed)
    if shared_init:
        x0 = rnn.initial_state(n_init, std=std, generator=gen)
        return x0.unsqueeze(0).expand(n_inputs, -1, -1)
    return rnn.initial_state(n_inputs * n_init, std=std, generator=gen).reshape(
        n_inputs, n_init, -1)


def _check_orbit_args(n_init, std, n_steps, n_transient, seed, differences) -> None:
    check_positive_int("n_init", n_init)
    check_positive_int("n_steps", n_steps)
    check_nonnegative_int("n_transient", n_transient)
    check_nonnegative_int("seed", seed)
    if n_transient >= n_steps:
        raise ValueError(f"n_transient must be < n_steps={n_steps}, got {n_transient}")
    if differences and n_transient < 1:
        raise ValueError("n_transient must be >= 1 when differences are recorded")
    if isinstance(std, bool) or not isinstance(std, (int, float)) or not (
            math.isfinite(std) and std >= 0):
        raise ValueError(f"std must be a finite number >= 0, got {std!r}")


def orbit_sampler(inputs: Tensor, *, feedback: bool = False, n_init: int = 10,
                  std: float = 100.0, n_steps: int = 800, n_transient: int = 400,
                  seed: int = 0, shared_init: bool = True, differences: bool = True,
                  readout: Readout | None = None,
                  lyapunov_steps: int | None = None) -> Callable[[nn.Module], Tensor]:
    """THE orbit recorder's sampler: steady-state outputs of a model's state map.

    For every orbit input ``inputs[i]`` (``model.input_vectors`` turns them into input
    vectors: one-hot symbols, frequencies, or token ids of a language model) and ``n_init``
    Gaussian initial states of standard deviation ``std`` (for the LSTM both h and c), the
    model's recurrent layer runs ``n_steps`` steps, in eval mode (no dropout), all orbits in
    one batch:

    * **constant input** (``feedback=False``): ``x_{t+1} = f(x_t, u_i)``, the map whose
      attractors the orbit diagram shows (eq. (1) with a constant input);
    * **feedback** (``feedback=True``): ``u_0 = u_i`` and ``u_{t+1} = model.feedback_input(h_{t+1})``
      (for the language model: the embedding of the most probable next word).

    The first ``n_transient`` steps are dropped (the burn-in); the rest are read out by
    ``readout(model, h)`` (default ``model.readout(h)``).

    ``shared_init`` (default True, the book's convention): the same ``n_init`` initial states
    under every input; False: a separate state for every (input, initial state) pair (the
    authors' convention). The states are drawn from ``seed``, identically at every call.

    Returns a callable ``model -> samples`` with ``samples`` of shape
    ``(n_inputs, n_init, n_steps - n_transient, Ny)`` on the CPU, or ``(2, ...)`` with the
    first differences ``ŷ_t - ŷ_{t-1}`` stacked second when ``differences`` is true.

    Convergence of the burn-in: each call also sets the callable's ``last_drift``, shape
    ``(n_inputs, n_init)``: for every orbit the largest change, over the outputs, of the
    envelope (maximum and minimum over time) from the first half of the kept window to the
    second. It is 0 on a fixed point and on a periodic orbit whose period is at most half
    the window, small on a chaotic or quasi-periodic attractor, and large while a transient
    is still decaying. :class:`OrbitRecorder` records it beside the samples (None for a
    window of one step).

    λ_1 along the same orbits (``lyapunov_steps``, optional): the orbits are then iterated
    with the layer's own map ``model.rnn.step_map`` (the feedback map of :func:`feedback_map`
    after the first step), in the layer's dtype, through
    :func:`lib.dynamics.largest_lyapunov`, which also yields the orbit: λ_1 is averaged over
    the last ``lyapunov_steps`` of the ``n_steps`` steps (``1 <= lyapunov_steps <
    n_steps``; the tangent starts at step ``n_steps - lyapunov_steps``). One pass serves
    both, so the language model's arg-max decoder runs once per step, not twice. Each
    call sets ``last_lyapunov``, shape ``(n_inputs, n_init)`` in nats per step, which
    :class:`OrbitRecorder` records. Without ``lyapunov_steps``, ``last_lyapunov`` is None
    and the orbits run through the layer's forward (the fused kernel of ``torch.nn.LSTM``);
    the two iterations agree to float rounding (tested).

    Raises ``ValueError`` for bad arguments, and when an orbit leaves the floats (non-finite
    samples; the message names the orbits).
    """
    if not isinstance(inputs, Tensor) or inputs.dim() < 1 or inputs.shape[0] < 1:
        raise ValueError("inputs must be a tensor with one orbit input per row, got "
                         f"{getattr(inputs, 'shape', type(inputs).__name__)}")
    _check_orbit_args(n_init, std, n_steps, n_transient, seed, differences)
    if readout is not None and not callable(readout):
        raise ValueError("readout must be None or a callable (model, h) -> outputs")
    if lyapunov_steps is not None:
        check_positive_int("lyapunov_steps", lyapunov_steps)
        if lyapunov_steps >= n_steps:
            raise ValueError(f"lyapunov_steps must be < n_steps={n_steps}, got {lyapunov_steps}")

    lead = int(differences)  # the step before the kept window, for the first differences

    def along_lyapunov(model: nn.Module, u: Tensor, x: Tensor, shape: tuple[int, int]) -> Tensor:
        """The kept window's hidden states, from largest_lyapunov's pass; sets last_lyapunov."""
        rnn = model.rnn
        dtype = next(rnn.parameters()).dtype
        first = rnn.step_map(u, dtype=dtype)
        x1 = first(x.to(dtype))  # step 1, under the orbit input
        step = feedback_map(model, dtype) if feedback else first
        start = n_transient - lead + 1  # keep the states x_start, ..., x_{n_steps}
        kept = [rnn.hidden(x1)] if start <= 1 else []
        t = [1]

        def keep(state: Tensor) -> None:
            t[0] += 1
            if t[0] >= start:
                kept.append(rnn.hidden(state))

        lam = largest_lyapunov(step, x1, lyapunov_steps,
                               n_transient=n_steps - 1 - lyapunov_steps, on_state=keep)
        sample.last_lyapunov = lam.reshape(shape).cpu()
        return torch.stack(kept)

    @torch.no_grad()
    def sample(model: nn.Module) -> Tensor:
        was_training = model.training
        model.eval()
        try:
            rnn = model.rnn
            u = model.input_vectors(inputs)  # (P, Nu)
            P, K = u.shape[0], n_init
            x = _orbit_initial_states(rnn, P, K, std, seed, shared_init).reshape(P * K, -1)
            u = u.to(device=x.device).repeat_interleave(K, dim=0)  # (P*K, Nu)
            read = (lambda h: model.readout(h)) if readout is None else (
                lambda h: readout(model, h))
            with _parametrize.cached():  # an orthogonal W is computed once, not per step
                if lyapunov_steps is not None:
                    h = along_lyapunov(model, u, x, (P, K))
                elif not feedback:
                    h, _ = rnn(u.unsqueeze(0).expand(n_steps, -1, -1), x)
                    h = h[n_transient - lead:]
                else:
                    kept = []
                    for t in range(n_steps):
                        h_t, x = rnn(u.unsqueeze(0), x)
                        if t >= n_transient - lead:
                            kept.append(h_t[0])
                        u = model.feedback_input(h_t[0])
                    h = torch.stack(kept)
            y = read(h)  # (lead + window, P*K, Ny)
        finally:
            model.train(was_training)
        y = y.reshape(y.shape[0], P, K, -1).permute(1, 2, 0, 3)
        bad = ~torch.isfinite(y).flatten(2).all(-1)
        if bool(bad.any()):
            raise ValueError(f"the orbits (input, initial state) {bad.nonzero().tolist()} "
                             "left the floats (non-finite outputs)")
        kept_y = y[:, :, lead:]
        half = kept_y.shape[2] // 2  # the envelope of the kept window's two halves
        first, second = kept_y[:, :, :half], kept_y[:, :, -half:]
        sample.last_drift = torch.maximum(
            (second.amax(2) - first.amax(2)).abs(), (second.amin(2) - first.amin(2)).abs()
        ).amax(-1).cpu() if half else None
        if not differences:
            return kept_y.cpu().clone()
        return torch.stack([kept_y, kept_y - y[:, :, lead - 1 : -1]]).cpu()

    sample.last_drift = None
    sample.last_lyapunov = None
    return sample


def feedback_map(model: nn.Module, dtype: torch.dtype = torch.float64) -> Callable[[Tensor], Tensor]:
    """``x -> f(x, feedback_input(h(x)))``: the autonomous feedback map, in ``dtype``.

    The fed-back input depends on ``x`` only through a piecewise-constant arg-max: it is
    computed from the primal values, outside any derivative, so a Jacobian treats the
    word as fixed and ignores the jumps where it switches. For a model with a vocabulary
    (``feedback_token`` and ``n_tokens``: the language model), every word's input drive
    ``rnn.input_drive`` is computed once when the map is built and looked up at each step,
    which saves the input matrix product per step (the same map, to float rounding), and
    the decoder is packed once (``model.token_map``, :func:`lib._packed.packed_linear`),
    which halves the cost of the per-step arg-max on the CPU in float32 (the word differs
    from ``feedback_token``'s only where two logits tie to float rounding).
    """
    rnn = model.rnn
    if hasattr(model, "feedback_token") and hasattr(model, "n_tokens"):
        # a vocabulary: every word's input drive computed once, then looked up per step
        with torch.no_grad():
            words = torch.arange(model.n_tokens, device=next(rnn.parameters()).device)
            table = rnn.input_drive(model.input_vectors(words), dtype=dtype)
        token = model.token_map() if hasattr(model, "token_map") else model.feedback_token

        def step(x: Tensor) -> Tensor:
            primal = fwAD.unpack_dual(x).primal.detach()
            with torch.no_grad():
                drive = table[token(rnn.hidden(primal))]
            return rnn.drive_map(drive, dtype=dtype)(x)

        return step

    def step(x: Tensor) -> Tensor:
        primal = fwAD.unpack_dual(x).primal.detach()
        with torch.no_grad():
            u = model.feedback_input(rnn.hidden(primal))
        return rnn.step_map(u, dtype=dtype)(x)

    return step


def lyapunov_sampler(inputs: Tensor, *, feedback: bool = False, n_init: int = 4,
                     std: float = 1.0, n_steps: int = 200, n_transient: int = 200,
                     seed: int = 0, shared_init: bool = True,
                     dtype: torch.dtype = torch.float64) -> Callable[[nn.Module], Tensor]:
    """A callable ``model -> λ_1`` of shape ``(n_inputs, n_init)``, for :class:`OrbitRecorder`.

    :func:`lib.dynamics.largest_lyapunov` of the model's state map (the orbit interface of
    :func:`orbit_sampler`) in ``dtype``: under the constant inputs ``model.input_vectors(inputs)``
    (``model.rnn.step_map``), or of the feedback map (``feedback=True``; the arg-max is
    held fixed in the Jacobian). Batched over the inputs and ``n_init`` Gaussian initial
    states of standard deviation ``std``; nats per step.
    """
    if not isinstance(inputs, Tensor) or inputs.dim() < 1 or inputs.shape[0] < 1:
        raise ValueError("inputs must be a tensor with one orbit input per row, got "
                         f"{getattr(inputs, 'shape', type(inputs).__name__)}")
    _check_orbit_args(n_init, std, n_steps + n_transient, n_transient, seed, False)
    check_positive_int("n_steps", n_steps)

    def measure(model: nn.Module) -> Tensor:
        rnn = model.rnn
        with torch.no_grad():
            u = model.input_vectors(inputs).detach().to(dtype)  # (P, Nu)
        x0 = _orbit_initial_states(rnn, u.shape[0], n_init, std, seed, shared_init)
        x0 = x0.to(dtype).contiguous()
        with _parametrize.cached():
            if feedback:
                # the first step under the orbit input, then the autonomous feedback map
                x0 = rnn.step_map(u.unsqueeze(1), dtype=dtype)(x0)
                step = feedback_map(model, dtype)
            else:
                step = rnn.step_map(u.unsqueeze(1), dtype=dtype)
            lam = largest_lyapunov(step, x0, n_steps, n_transient=n_transient)
        return lam.cpu()

    return measure


class OrbitRecorder:
    """THE orbit recorder: samples (and optionally λ_1) every ``every``-th epoch.

    Args:
        sampler: ``model -> Tensor``; any shape, the same at every call (e.g.
            :func:`orbit_sampler`). The recorder knows nothing else about the model.
        every: record after epochs ``every, 2 every, ...`` and the last epoch.
        lyapunov: optional ``model -> Tensor`` (e.g. :func:`lyapunov_sampler`). When the
            sampler itself reports ``last_lyapunov`` (:func:`orbit_sampler` with
            ``lyapunov_steps``), that is recorded instead, and passing both is an error.
        at_start: also record the untrained model (epoch 0). The authors do not.

    After training: ``epochs`` (list), ``samples`` (Tensor ``(E, *sample_shape)``),
    ``lyapunov`` (``(E, ...)`` or None), ``drift`` (the convergence measure that
    :func:`orbit_sampler` reports, ``(E, n_inputs, n_init)``, or None) and ``seconds``
    (time spent recording per call).

    With a ``folder`` (:func:`train` sets one beside its checkpoint), every record is also
    written to its own checksummed file ``epoch_<e>.pt`` there, and the checkpoint holds
    only the list of epochs, so that it keeps the same size from epoch to epoch; a resumed
    run reads the records back from the folder.
    """

    def __init__(self, sampler: Callable[[nn.Module], Tensor], *, every: int = 1,
                 lyapunov: Callable[[nn.Module], Tensor] | None = None, at_start: bool = True):
        if not callable(sampler):
            raise ValueError("sampler must be callable: model -> Tensor")
        if lyapunov is not None and not callable(lyapunov):
            raise ValueError("lyapunov must be None or callable: model -> Tensor")
        self.sampler, self.lyapunov_fn = sampler, lyapunov
        self.every = check_positive_int("every", every)
        self.at_start = bool(at_start)
        self.folder: Path | None = None
        self.epochs: list[int] = []
        self._samples: list[Tensor] = []
        self._lyap: list[Tensor] = []
        self._drift: list[Tensor] = []
        self.drift_epochs: list[int] = []
        self.seconds: list[float] = []

    def wants(self, epoch: int, last_epoch: int) -> bool:
        if epoch == 0:
            return self.at_start
        return epoch % self.every == 0 or epoch == last_epoch

    def __call__(self, model: nn.Module, epoch: int) -> None:
        t0 = time.perf_counter()
        samples = self.sampler(model).detach().cpu().clone()
        drift = getattr(self.sampler, "last_drift", None)
        along = getattr(self.sampler, "last_lyapunov", None)
        if along is not None and self.lyapunov_fn is not None:
            raise ValueError("the sampler measures λ_1 along its orbits (lyapunov_steps): "
                             "pass lyapunov=None to OrbitRecorder")
        if along is not None:
            lyap = along.detach().cpu().clone()
        else:
            lyap = self.lyapunov_fn(model).detach().cpu().clone() if self.lyapunov_fn else None
        self.epochs.append(int(epoch))
        self._samples.append(samples)
        if drift is not None:
            self._drift.append(drift.clone())
            self.drift_epochs.append(int(epoch))
        if lyap is not None:
            self._lyap.append(lyap)
        self.seconds.append(time.perf_counter() - t0)
        if self.folder is not None:
            save_checkpoint(self.folder / f"epoch_{epoch:06d}.pt",
                            {"epoch": int(epoch), "samples": samples, "lyapunov": lyap,
                             "drift": drift})

    @property
    def samples(self) -> Tensor:
        if not self._samples:
            raise ValueError("the recorder holds no records yet")
        return torch.stack(self._samples)

    @property
    def lyapunov(self) -> Tensor | None:
        return torch.stack(self._lyap) if self._lyap else None

    @property
    def drift(self) -> Tensor | None:
        """The sampler's convergence measure ``(E', ...)`` at the epochs ``drift_epochs``
        (every record whose sampler reported one), or None."""
        return torch.stack(self._drift) if self._drift else None

    def state_dict(self) -> dict[str, Any]:
        state: dict[str, Any] = {"epochs": list(self.epochs), "seconds": list(self.seconds)}
        if self.folder is None:
            state.update(samples=list(self._samples), lyapunov=list(self._lyap),
                         drift=list(self._drift), drift_epochs=list(self.drift_epochs))
        return state

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned (records from ``folder`` if it has none)."""
        if not isinstance(state, Mapping) or not {"epochs", "seconds"} <= set(state):
            raise ValueError("state must be a mapping from OrbitRecorder.state_dict() (keys "
                             "epochs, seconds)")
        self.epochs = [int(e) for e in state["epochs"]]
        self.seconds = [float(s) for s in state["seconds"]]
        if "samples" in state:
            self._samples, self._lyap = list(state["samples"]), list(state["lyapunov"])
            self._drift = list(state.get("drift", []))
            self.drift_epochs = [int(e) for e in state.get("drift_epochs", [])]
            return
        if self.folder is None:
            raise CheckpointError("the checkpoint keeps its records in a folder: set folder")
        self._samples, self._lyap, self._drift, self.drift_epochs = [], [], [], []
        for e in self.epochs:
            rec = load_checkpoint(self.folder / f"epoch_{e:06d}.pt")
            self._samples.append(rec["samples"])
            if rec["lyapunov"] is not None:
                self._lyap.append(rec["lyapunov"])
            if rec.get("drift") is not None:
                self._drift.append(rec["drift"])
                self.drift_epochs.append(e)


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


def _loss_total(loss: Tensor, loss_fn, n: int) -> float:
    """The summed loss of a batch of ``n`` terms, whatever the loss function's reduction."""
    if getattr(loss_fn, "reduction", "mean") == "sum":
        return float(loss.detach())
    return float(loss.detach()) * n


def _run_epoch(model, data, loss_fn, forward, metrics, *, opt=None, clip=None, post_step=None,
               device="cpu"):
    sums: dict[str, float] = {"loss": 0.0, **{m: 0.0 for m in metrics}}
    count = 0
    reset = getattr(forward, "reset", None)
    if callable(reset):  # a forward step that carries state across batches starts afresh
        reset()
    params = list(model.parameters())  # clipped together, in the model's order
    for batch in data:
        batch = _to_device(batch, device)
        if opt is not None:
            opt.zero_grad(set_to_none=True)
            loss, output, target = forward(model, batch, loss_fn)
            if not torch.isfinite(loss):
                raise FloatingPointError(f"the training loss became {loss.item()} (diverged)")
            loss.backward()
            if clip is not None:
                nn.utils.clip_grad_norm_(params, clip)
            opt.step()
            if post_step is not None:
                post_step(model)
        else:
            loss, output, target = forward(model, batch, loss_fn)
        n = target.numel() if isinstance(target, Tensor) else 1
        with torch.no_grad():
            sums["loss"] += _loss_total(loss, loss_fn, n)
            for name, fn in metrics.items():
                sums[name] += float(fn(output.detach(), target)) * n
        count += n
    if count == 0:
        raise ValueError("data yielded no batches")
    stats = {k: v / count for k, v in sums.items()}
    stats["items"] = count
    return stats


@torch.no_grad()
def evaluate(model: nn.Module, data: Iterable, loss_fn: Callable, *,
             metrics: Mapping[str, Callable] | None = None, forward: Callable | None = None,
             device: str | torch.device = "cpu") -> dict[str, float]:
    """THE evaluation: mean loss per item and metrics of ``model`` (eval mode) over ``data``.

    ``forward`` and ``loss_fn`` as in :func:`train`; the loss is the mean over every target
    entry whatever ``loss_fn``'s reduction (``"sum"`` or ``"mean"``). The result also
    holds ``items``, the number of target entries (tokens for a language model).
    """
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


def scores_line(scores: Mapping[str, Any]) -> str:
    """``"train_loss 1.4047, val_loss 1.3753, ..."``: the losses and metrics of a history row
    or a run's summary (keys ``train_*`` / ``val_*``, not the item counts), for one-line logs."""
    return ", ".join(f"{k} {v:.4f}" for k, v in scores.items()
                     if k.startswith(("train_", "val_")) and not k.endswith("_items")
                     and isinstance(v, (int, float))) or "no scores"


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
    progress: bool | str = True,
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

    ``forward`` may carry state across batches (:class:`TruncatedBPTT`); its ``reset()``
    is called at the start of every training and evaluation pass. The history's losses are
    means per target entry whatever ``loss_fn``'s reduction: with ``reduction="sum"`` (the
    authors' convention) the gradient, and so the clipping, sees the summed loss.

    ``progress``: True, a ``tqdm`` bar (cleared at the end); ``"lines"``, one line per
    epoch on standard error, for a log file (the command line's choice when standard error
    is not a terminal); False, nothing.

    Recorders that want epoch 0 (``at_start``) run once before training. With
    ``checkpoint`` set, the recorders write their records beside it (see
    :class:`OrbitRecorder`). With ``checkpoint`` set and
    ``resume`` true, an existing checkpoint is loaded (its ``config`` must equal ``config``)
    and training continues after its last epoch, bit for bit as if never interrupted.

    History keys: ``epoch``, ``lr``, ``train_loss``, ``train_<metric>``, ``val_loss``,
    ``val_<metric>``, ``train_items`` (target entries per epoch: tokens for a language
    model), ``items_per_second`` (of the training pass), ``epoch_seconds`` (training pass)
    and ``record_seconds``.
    """
    check_positive_int("epochs", epochs)
    if progress not in (True, False, "lines"):
        raise ValueError(f"progress must be True, False or 'lines', got {progress!r}")
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
    if ckpt_path is not None:  # records go to files beside the checkpoint, not into it
        for i, r in enumerate(recorders):
            if r.folder is None:
                r.folder = ckpt_path.parent / f"{ckpt_path.stem}_records" / f"recorder{i}"

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
            if r.wants(0, epochs):
                r(model, 0)
        history["record_seconds_initial"] = [time.perf_counter() - t0]
        if ckpt_path is not None:
            save_checkpoint(ckpt_path, snapshot(0))

    bar = None
    if progress is True and start <= epochs:
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
            row["items_per_second"] = stats["items"] / seconds
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
            elif progress == "lines":
                print(f"{desc}: epoch {epoch}/{epochs}: {scores_line(row)}; {seconds:.1f} s, "
                      f"records {row['record_seconds']:.1f} s", file=sys.stderr, flush=True)
            for cb in callbacks:
                cb(epoch, history)
    finally:
        if bar is not None:
            bar.close()
    return TrainResult(history=history, recorders=recorders, epochs_run=max(0, epochs - start + 1))
