"""Recurrent networks written as state-space models, eq. (1) of the paper:

    x_{t+1} = f(x_t, u_t; θ),        ŷ_t = g(x_t, u_t; θ).

Every model here stores *no* parameters: θ is a flat vector (or a batch of flat vectors,
shape ``(..., Nθ)``) that the model cuts into named matrices with :meth:`unflatten`.
States ``x`` have shape ``(..., Nx)``, inputs ``u`` shape ``(..., Nu)``; all leading
dimensions broadcast, so one call can run many states under many parameter sets at once.
That is what lets the later chapters compute Jacobians with ``torch.func``, loss landscapes
over grids of parameters, and Lyapunov spectra of whole families of networks without
Python loops.

The LSTM and GRU use exactly the weight layout of ``torch.nn.LSTM`` / ``torch.nn.GRU``
(gate order i, f, g, o and r, z, n), so a trained torch module converts to θ with
:meth:`LSTM.theta_from_torch` and back.
"""

from __future__ import annotations

import math
from typing import Callable, Mapping

import torch
from torch import Tensor, nn

from . import _packed
from ._checks import (ArgumentTypeError, check_broadcast, check_callable, check_finite,
                      check_int, check_last_dim, check_nonnegative_int, check_positive_int,
                      check_real, check_tensor)

__all__ = [
    "StateSpaceModel",
    "ElmanRNN",
    "LSTM",
    "GRU",
    "OrthogonalRNN",
    "modrelu",
    "make_model",
]


def _mv(matrix: Tensor, vector: Tensor) -> Tensor:
    """Batched matrix-vector product: ``(..., m, n) x (..., n) -> (..., m)``."""
    if matrix.dim() == 2:  # one matrix for the whole batch: a single matrix product
        return vector @ matrix.transpose(0, 1)
    return (matrix @ vector.unsqueeze(-1)).squeeze(-1)


def modrelu(z: Tensor, b: Tensor) -> Tensor:
    """modReLU of Arjovsky et al. (2016): ``sign(z) * relu(|z| + b)``, element-wise."""
    check_tensor("z", z, floating=True, finite=False)
    check_tensor("b", b, floating=True, finite=False)
    check_broadcast(z=z.shape, b=b.shape)
    return torch.sign(z) * torch.relu(z.abs() + b)


class StateSpaceModel:
    """Base class: a recurrent network as a pair of maps ``f``, ``g`` on a flat θ.

    Subclasses define ``param_shapes`` (name -> shape, in the order the entries sit in θ),
    ``nx``, ``nu``, ``ny``, and the two maps :meth:`f` and :meth:`g`.
    """

    nx: int
    nu: int
    ny: int
    param_shapes: dict[str, tuple[int, ...]]

    # ----------------------------------------------------------------- parameters
    @property
    def n_params(self) -> int:
        """Nθ, the length of the flat parameter vector."""
        return sum(math.prod(s) for s in self.param_shapes.values())

    def unflatten(self, theta: Tensor) -> dict[str, Tensor]:
        """Cut ``theta`` of shape ``(..., Nθ)`` into named tensors ``(..., *shape)``."""
        check_tensor("theta", theta, last=self.n_params, finite=False,
                     what=f"(..., {self.n_params})")
        out: dict[str, Tensor] = {}
        start = 0
        batch = theta.shape[:-1]
        for name, shape in self.param_shapes.items():
            size = math.prod(shape)
            out[name] = theta[..., start : start + size].reshape(*batch, *shape)
            start += size
        return out

    def flatten(self, params: Mapping[str, Tensor]) -> Tensor:
        """Inverse of :meth:`unflatten`: named tensors ``(..., *shape)`` -> ``(..., Nθ)``."""
        if not isinstance(params, Mapping):
            raise ArgumentTypeError(f"params must be a mapping name -> tensor, got "
                                    f"{type(params).__name__}")
        missing = set(self.param_shapes) - set(params)
        if missing:
            raise ValueError(f"params is missing entries {sorted(missing)}")
        parts = []
        for name, shape in self.param_shapes.items():
            p = check_tensor(f"params[{name!r}]", params[name], finite=False)
            if tuple(p.shape[p.dim() - len(shape) :]) != shape:
                raise ValueError(
                    f"params[{name!r}] must have shape (..., {', '.join(map(str, shape))}), "
                    f"got {tuple(p.shape)}"
                )
            parts.append(p.reshape(*p.shape[: p.dim() - len(shape)], -1))
        return torch.cat(parts, dim=-1)

    def init_theta(
        self,
        *,
        seed: int | None = 0,
        generator: torch.Generator | None = None,
        scale: float | None = None,
        dtype: torch.dtype = torch.float64,
        device: torch.device | str = "cpu",
    ) -> Tensor:
        """Random θ, uniform in ``[-scale, scale]`` (default ``1/sqrt(hidden)``, as torch)."""
        if generator is None:
            check_nonnegative_int("seed", 0 if seed is None else seed)
            generator = torch.Generator(device="cpu").manual_seed(0 if seed is None else seed)
        s = self.default_scale() if scale is None else check_real("scale", scale, lo=0)
        if not (isinstance(dtype, torch.dtype) and dtype.is_floating_point):
            raise ArgumentTypeError(f"dtype must be a floating-point torch.dtype, got {dtype!r}")
        theta = (torch.rand(self.n_params, generator=generator, dtype=torch.float64) * 2 - 1) * s
        return theta.to(dtype=dtype, device=device)

    def default_scale(self) -> float:
        return 1.0 / math.sqrt(self.hidden_size)

    # ----------------------------------------------------------------- the maps
    def _check(self, x: Tensor, u: Tensor, theta: Tensor) -> None:
        # Type, dtype and shape checks only: these maps run inside torch.func transforms,
        # where data-dependent checks (isfinite) are not allowed.
        for name, value, size in (("theta", theta, self.n_params), ("x", x, self.nx),
                                  ("u", u, self.nu)):
            check_tensor(name, value, floating=True, last=size, finite=False,
                         what=f"(..., {size})")
        if x.dtype != theta.dtype or u.dtype != theta.dtype:
            bad, value = ("x", x) if x.dtype != theta.dtype else ("u", u)
            raise ArgumentTypeError(f"{bad} must have theta's dtype {theta.dtype}, got "
                                    f"{value.dtype}")
        check_broadcast(x=x.shape[:-1], u=u.shape[:-1], theta=theta.shape[:-1])

    def f(self, x: Tensor, u: Tensor, theta: Tensor) -> Tensor:  # pragma: no cover
        raise NotImplementedError

    def g(self, x: Tensor, u: Tensor, theta: Tensor) -> Tensor:  # pragma: no cover
        raise NotImplementedError

    def hidden(self, x: Tensor) -> Tensor:
        """The part of the state that feeds the read-out (h for the LSTM, x otherwise)."""
        return check_tensor("x", x, last=self.nx, finite=False, what=f"(..., {self.nx})")

    def _readout(self, x: Tensor, p: dict[str, Tensor]) -> Tensor:
        h = self.hidden(x)
        if "C" not in p:
            return h
        return _mv(p["C"], h) + p["d"]

    def autonomous(self, theta: Tensor, u: Tensor | None = None) -> Callable[[Tensor], Tensor]:
        """The map ``x -> f(x, u, θ)`` for a constant input (zero input if ``u`` is None)."""
        check_tensor("theta", theta, floating=True, last=self.n_params,
                     what=f"(..., {self.n_params})")
        if u is None:
            u = theta.new_zeros(self.nu)
        else:
            check_tensor("u", u, floating=True, last=self.nu, what=f"(..., {self.nu})")
        return lambda x: self.f(x, u, theta)

    def zero_state(self, *batch: int, dtype=torch.float64, device="cpu") -> Tensor:
        """Zero states ``(*batch, Nx)``."""
        for i, b in enumerate(batch):
            check_nonnegative_int(f"batch[{i}]", b)
        return torch.zeros(*batch, self.nx, dtype=dtype, device=device)

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(nu={self.nu}, hidden={self.hidden_size}, ny={self.ny}, "
            f"Nx={self.nx}, Ntheta={self.n_params})"
        )


def _readout_shapes(hidden: int, output_size: int | None) -> dict[str, tuple[int, ...]]:
    if output_size is None:
        return {}
    check_positive_int("output_size", output_size)
    return {"C": (output_size, hidden), "d": (output_size,)}


class ElmanRNN(StateSpaceModel):
    """Elman network: ``x' = tanh(W x + U u + b)``, ``ŷ = C x + d`` (or ``ŷ = x``)."""

    def __init__(self, input_size: int, hidden_size: int, output_size: int | None = None,
                 *, bias: bool = True):
        self.nu = check_nonnegative_int("input_size", input_size)
        self.hidden_size = check_positive_int("hidden_size", hidden_size)
        self.nx = hidden_size
        self.ny = hidden_size if output_size is None else output_size
        self.bias = bias
        shapes: dict[str, tuple[int, ...]] = {"W": (hidden_size, hidden_size),
                                              "U": (hidden_size, input_size)}
        if bias:
            shapes["b"] = (hidden_size,)
        shapes.update(_readout_shapes(hidden_size, output_size))
        self.param_shapes = shapes

    def f(self, x: Tensor, u: Tensor, theta: Tensor) -> Tensor:
        self._check(x, u, theta)
        p = self.unflatten(theta)
        z = _mv(p["W"], x) + _mv(p["U"], u)
        if self.bias:
            z = z + p["b"]
        return torch.tanh(z)

    def g(self, x: Tensor, u: Tensor, theta: Tensor) -> Tensor:
        self._check(x, u, theta)
        return self._readout(x, self.unflatten(theta))


class LSTM(StateSpaceModel):
    """LSTM in ``torch.nn.LSTM``'s layout; the state is ``x = [h, c]`` (Nx = 2H).

    With gates ``[i, f, g, o] = W_ih u + b_ih + W_hh h + b_hh`` (stacked in that order),
    ``c' = σ(f) * c + σ(i) * tanh(g)`` and ``h' = σ(o) * tanh(c')`` (eq. S17-S18 of the
    supplement with input). The output is ``ŷ = C h + d`` (or ``h`` without read-out).
    """

    def __init__(self, input_size: int, hidden_size: int, output_size: int | None = None,
                 *, bias: bool = True):
        self.nu = check_nonnegative_int("input_size", input_size)
        self.hidden_size = H = check_positive_int("hidden_size", hidden_size)
        self.nx = 2 * H
        self.ny = H if output_size is None else output_size
        self.bias = bias
        shapes: dict[str, tuple[int, ...]] = {"weight_ih": (4 * H, input_size),
                                              "weight_hh": (4 * H, H)}
        if bias:
            shapes["bias_ih"] = (4 * H,)
            shapes["bias_hh"] = (4 * H,)
        shapes.update(_readout_shapes(H, output_size))
        self.param_shapes = shapes

    def hidden(self, x: Tensor) -> Tensor:
        """h, the first H entries of the state ``x = [h, c]`` ``(..., 2H)``."""
        check_tensor("x", x, last=self.nx, finite=False, what=f"(..., {self.nx})")
        return x[..., : self.hidden_size]

    def cell(self, x: Tensor) -> Tensor:
        """c, the last H entries of the state ``x = [h, c]`` ``(..., 2H)``."""
        check_tensor("x", x, last=self.nx, finite=False, what=f"(..., {self.nx})")
        return x[..., self.hidden_size :]

    def f(self, x: Tensor, u: Tensor, theta: Tensor) -> Tensor:
        self._check(x, u, theta)
        p = self.unflatten(theta)
        h, c = self.hidden(x), self.cell(x)
        z = _mv(p["weight_ih"], u) + _mv(p["weight_hh"], h)
        if self.bias:
            z = z + p["bias_ih"] + p["bias_hh"]
        i, fg, gg, o = z.chunk(4, dim=-1)
        c_next = torch.sigmoid(fg) * c + torch.sigmoid(i) * torch.tanh(gg)
        h_next = torch.sigmoid(o) * torch.tanh(c_next)
        return torch.cat([h_next, c_next], dim=-1)

    def g(self, x: Tensor, u: Tensor, theta: Tensor) -> Tensor:
        self._check(x, u, theta)
        return self._readout(x, self.unflatten(theta))

    def theta_from_torch(self, module: nn.LSTM, readout: nn.Linear | None = None) -> Tensor:
        """θ holding the weights of a one-layer ``nn.LSTM`` (and an optional ``nn.Linear``)."""
        return _theta_from_rnn_module(self, module, readout, nn.LSTM)


class GRU(StateSpaceModel):
    """GRU in ``torch.nn.GRU``'s layout (gate order r, z, n):

    ``r = σ(W_ir u + b_ir + W_hr x + b_hr)``, ``z = σ(W_iz u + b_iz + W_hz x + b_hz)``,
    ``n = tanh(W_in u + b_in + r * (W_hn x + b_hn))``, ``x' = (1 - z) * n + z * x``.
    """

    def __init__(self, input_size: int, hidden_size: int, output_size: int | None = None,
                 *, bias: bool = True):
        self.nu = check_nonnegative_int("input_size", input_size)
        self.hidden_size = H = check_positive_int("hidden_size", hidden_size)
        self.nx = H
        self.ny = H if output_size is None else output_size
        self.bias = bias
        shapes: dict[str, tuple[int, ...]] = {"weight_ih": (3 * H, input_size),
                                              "weight_hh": (3 * H, H)}
        if bias:
            shapes["bias_ih"] = (3 * H,)
            shapes["bias_hh"] = (3 * H,)
        shapes.update(_readout_shapes(H, output_size))
        self.param_shapes = shapes

    def f(self, x: Tensor, u: Tensor, theta: Tensor) -> Tensor:
        self._check(x, u, theta)
        p = self.unflatten(theta)
        gi = _mv(p["weight_ih"], u)
        gh = _mv(p["weight_hh"], x)
        if self.bias:
            gi = gi + p["bias_ih"]
            gh = gh + p["bias_hh"]
        i_r, i_z, i_n = gi.chunk(3, dim=-1)
        h_r, h_z, h_n = gh.chunk(3, dim=-1)
        r = torch.sigmoid(i_r + h_r)
        z = torch.sigmoid(i_z + h_z)
        n = torch.tanh(i_n + r * h_n)
        return (1 - z) * n + z * x

    def g(self, x: Tensor, u: Tensor, theta: Tensor) -> Tensor:
        self._check(x, u, theta)
        return self._readout(x, self.unflatten(theta))

    def theta_from_torch(self, module: nn.GRU, readout: nn.Linear | None = None) -> Tensor:
        """θ holding the weights of a one-layer ``nn.GRU`` (and an optional ``nn.Linear``)."""
        return _theta_from_rnn_module(self, module, readout, nn.GRU)


class OrthogonalRNN(StateSpaceModel):
    """Orthogonal RNN of expRNN (Lezcano-Casado and Martínez-Rubio, 2019):

    ``x' = modReLU(W x + U u, b)`` with ``W = exp(A - Aᵀ)`` orthogonal for every θ (the
    exponential of a skew-symmetric matrix), ``ŷ = C x + d``. θ holds A, so any θ gives an
    orthogonal recurrent matrix: the "neutral" network of the later chapters.
    """

    def __init__(self, input_size: int, hidden_size: int, output_size: int | None = None):
        self.nu = check_nonnegative_int("input_size", input_size)
        self.hidden_size = H = check_positive_int("hidden_size", hidden_size)
        self.nx = H
        self.ny = H if output_size is None else output_size
        shapes: dict[str, tuple[int, ...]] = {"A": (H, H), "U": (H, input_size), "b": (H,)}
        shapes.update(_readout_shapes(H, output_size))
        self.param_shapes = shapes

    def recurrent_matrix(self, theta: Tensor) -> Tensor:
        """``W = exp(A - Aᵀ)``, shape ``(..., H, H)``."""
        check_tensor("theta", theta, floating=True, last=self.n_params,
                     what=f"(..., {self.n_params})")
        A = self.unflatten(theta)["A"]
        return torch.linalg.matrix_exp(A - A.transpose(-1, -2))

    def f(self, x: Tensor, u: Tensor, theta: Tensor) -> Tensor:
        self._check(x, u, theta)
        p = self.unflatten(theta)
        W = torch.linalg.matrix_exp(p["A"] - p["A"].transpose(-1, -2))
        return modrelu(_mv(W, x) + _mv(p["U"], u), p["b"])

    def g(self, x: Tensor, u: Tensor, theta: Tensor) -> Tensor:
        self._check(x, u, theta)
        return self._readout(x, self.unflatten(theta))


def _theta_from_rnn_module(model: StateSpaceModel, module: nn.RNNBase,
                           readout: nn.Linear | None, kind: type) -> Tensor:
    if not isinstance(module, kind):
        raise ValueError(f"module must be a torch.nn.{kind.__name__}, got {type(module).__name__}")
    if module.num_layers != 1 or module.bidirectional:
        raise ValueError("module must have num_layers=1 and bidirectional=False")
    if module.input_size != model.nu or module.hidden_size != model.hidden_size:
        raise ValueError(
            f"module has input_size={module.input_size}, hidden_size={module.hidden_size}; "
            f"the model expects {model.nu}, {model.hidden_size}"
        )
    if bool(module.bias) != model.bias:
        raise ValueError(f"module.bias={module.bias} but the model has bias={model.bias}")
    params = {name: getattr(module, name + "_l0").detach()
              for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")
              if name in model.param_shapes}
    if "C" in model.param_shapes:
        if readout is None:
            raise ValueError("readout must be given: the model has an output layer")
        params["C"] = readout.weight.detach()
        params["d"] = readout.bias.detach()
    elif readout is not None:
        raise ValueError("readout given, but the model was built with output_size=None")
    theta = model.flatten(params)
    check_finite("module parameters", theta)
    return theta


_MODELS = {"elman": ElmanRNN, "lstm": LSTM, "gru": GRU, "ornn": OrthogonalRNN}


def make_model(name: str, input_size: int, hidden_size: int,
               output_size: int | None = None) -> StateSpaceModel:
    """Build a state-space model by name: ``elman``, ``lstm``, ``gru`` or ``ornn``."""
    try:
        cls = _MODELS[name]
    except KeyError:
        raise ValueError(f"name must be one of {sorted(_MODELS)}, got {name!r}") from None
    return cls(input_size, hidden_size, output_size)


# =====================================================================================
# Trainable torch modules (chapter "Learning attractors"). The state-space maps above
# hold no parameters; the modules below do, and each can hand the training loop its
# steady-state machinery: ``initial_state`` (random states for orbit diagrams),
# ``forward(u, state)`` over a whole sequence, and ``step_map(u)``, the autonomous map
# x -> f(x, u) on flat states, which lib.dynamics.lyapunov_spectrum differentiates.
# States are flat tensors (B, Nx), [h, c] for the LSTM, as in the state-space models.
# =====================================================================================

from torch.nn.utils import parametrizations as _parametrizations  # noqa: E402
from torch.nn.utils import parametrize as _parametrize  # noqa: E402

__all__ += [
    "RecurrentModule",
    "TorchLSTM",
    "StableLSTM",
    "ExpRNN",
    "SequenceClassifier",
    "LanguageModel",
    "STABLE_RULES",
    "SequenceRegressor",
    "make_rnn",
    "stable_lstm_projection_",
    "apply_constraints",
    "STABLE_LSTM_BOUNDS",
]


class RecurrentModule(nn.Module):
    """A recurrent layer with a flat state ``(B, Nx)``; time is the first input dimension.

    Subclasses define ``input_size``, ``hidden_size``, ``state_size`` and
    ``forward(u, state=None) -> (h, state_T)`` with ``u: (T, B, Nu)``, ``h: (T, B, H)``
    (the hidden outputs h_1..h_T) and ``state_T: (B, Nx)``, plus the state map in two
    parts: ``input_drive(u)``, the input's additive term in the pre-activations, and
    ``drive_map(drive)``, the map ``x -> f(x, u)`` given that term. ``step_map(u)`` composes
    them. A caller that feeds back one of a few inputs (the language model's words) computes
    every input's drive once and looks it up.
    """

    input_size: int
    hidden_size: int
    state_size: int

    def initial_state(self, batch: int, *, std: float = 0.0,
                      generator: torch.Generator | None = None) -> Tensor:
        """States ``(batch, Nx)``: zero, or Gaussian with standard deviation ``std``."""
        check_nonnegative_int("batch", batch)
        check_real("std", std, lo=0)
        if generator is not None and not isinstance(generator, torch.Generator):
            raise ArgumentTypeError(f"generator must be a torch.Generator or None, got "
                                    f"{type(generator).__name__}")
        p = next(self.parameters())
        if std == 0:
            return p.new_zeros(batch, self.state_size)
        x = torch.randn(batch, self.state_size, generator=generator, dtype=torch.float64)
        return (std * x).to(dtype=p.dtype, device=p.device)

    def hidden(self, state: Tensor) -> Tensor:
        """The part of the state that feeds the read-out."""
        check_tensor("state", state, last=self.state_size, finite=False,
                     what=f"(..., {self.state_size})")
        return state[..., : self.hidden_size]

    def _weight(self) -> Tensor:
        return next(self.parameters())

    def _check_sequence(self, u: Tensor, state: Tensor | None) -> None:
        """``u (T, B, Nu)`` and ``state (B, Nx)`` in the layer's dtype: named errors, not
        torch's internal ones."""
        w = self._weight()
        check_tensor("u", u, floating=True, ndim=3, finite=False,
                     what=f"(T, B, {self.input_size})")
        if u.shape[-1] != self.input_size or u.shape[0] == 0:
            raise ValueError(f"u must have shape (T >= 1, B, {self.input_size}), got "
                             f"{tuple(u.shape)}")
        if u.dtype != w.dtype:
            raise ArgumentTypeError(f"u must have the layer's dtype {w.dtype}, got {u.dtype} "
                                    f"(convert u, or the layer with .to({u.dtype}))")
        if state is not None:
            self._check_state(state, u.shape[1], f"u of shape {tuple(u.shape)}")

    def _check_state(self, state: Tensor, batch: int, source: str) -> None:
        w = self._weight()
        check_tensor("state", state, floating=True, ndim=2, finite=False,
                     what=f"(B, {self.state_size})")
        if tuple(state.shape) != (batch, self.state_size):
            raise ValueError(f"state must have shape (B={batch}, {self.state_size}) "
                             f"for {source}, got {tuple(state.shape)}")
        if state.dtype != w.dtype:
            raise ArgumentTypeError(f"state must have the layer's dtype {w.dtype}, got "
                                    f"{state.dtype}")

    def _check_inputs(self, name: str, u: Tensor, size: int, dtype) -> None:
        check_tensor(name, u, floating=True, last=size, finite=False, what=f"(..., {size})")
        if dtype is not None and not (isinstance(dtype, torch.dtype) and dtype.is_floating_point):
            raise ArgumentTypeError(f"dtype must be a floating-point torch.dtype or None, "
                                    f"got {dtype!r}")

    def input_drive(self, u: Tensor, *, dtype: torch.dtype | None = None) -> Tensor:
        raise NotImplementedError  # pragma: no cover

    def drive_map(self, drive: Tensor, *,
                  dtype: torch.dtype | None = None) -> Callable[[Tensor], Tensor]:
        raise NotImplementedError  # pragma: no cover

    def step_map(self, u: Tensor, *, dtype: torch.dtype | None = None) -> Callable[[Tensor], Tensor]:
        """``x -> f(x, u)`` with this module's detached weights, in ``dtype``.

        ``u`` has shape ``(..., Nu)`` and broadcasts against the states ``(..., Nx)``; it is
        ``drive_map(input_drive(u))``.
        """
        return self.drive_map(self.input_drive(u, dtype=dtype), dtype=dtype)


class TorchLSTM(RecurrentModule):
    """One-layer ``torch.nn.LSTM`` (fast fused kernels) with the flat state ``[h, c]``."""

    def __init__(self, input_size: int, hidden_size: int):
        super().__init__()
        self.input_size = check_nonnegative_int("input_size", input_size)
        self.hidden_size = check_positive_int("hidden_size", hidden_size)
        self.state_size = 2 * hidden_size
        self.lstm = nn.LSTM(input_size, hidden_size)

    def forward(self, u: Tensor, state: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """Hidden outputs ``(T, B, H)`` and the last state ``(B, 2H)`` for ``u (T, B, Nu)``."""
        self._check_sequence(u, state)
        if state is None:
            out, (h, c) = self.lstm(u)
        else:
            H = self.hidden_size
            h0 = state[..., :H].unsqueeze(0).contiguous()
            c0 = state[..., H:].unsqueeze(0).contiguous()
            out, (h, c) = self.lstm(u, (h0, c0))
        return out, torch.cat([h[0], c[0]], dim=-1)

    def input_drive(self, u: Tensor, *, dtype: torch.dtype | None = None) -> Tensor:
        """``W_ih u + b_ih + b_hh``, shape ``(..., 4H)``, for inputs ``u (..., Nu)``."""
        self._check_inputs("u", u, self.input_size, dtype)
        if dtype is None and u.dtype != self._weight().dtype:
            raise ArgumentTypeError(f"u must have the layer's dtype {self._weight().dtype} "
                                    f"(or pass dtype), got {u.dtype}")
        w_ih = self.lstm.weight_ih_l0.detach()
        b = (self.lstm.bias_ih_l0 + self.lstm.bias_hh_l0).detach()
        if dtype is not None:
            w_ih, b, u = w_ih.to(dtype), b.to(dtype), u.to(dtype)
        return _mv(w_ih, u) + b

    def drive_map(self, drive: Tensor, *,
                  dtype: torch.dtype | None = None) -> Callable[[Tensor], Tensor]:
        """``x -> f(x, u)`` of :class:`LSTM` (eq. S17-S18) given ``drive = input_drive(u)``.

        ``drive (..., 4H)`` broadcasts against the states ``(..., 2H)``; with
        :meth:`step_map` the map equals ``LSTM.f`` (tested).
        """
        self._check_inputs("drive", drive, 4 * self.hidden_size, dtype)
        w_hh = self.lstm.weight_hh_l0.detach()
        if dtype is not None:
            w_hh, drive = w_hh.to(dtype), drive.to(dtype)
        elif drive.dtype != w_hh.dtype:
            raise ArgumentTypeError(f"drive must have the layer's dtype {w_hh.dtype} (or pass "
                                    f"dtype), got {drive.dtype}")
        H = self.hidden_size

        def step(x: Tensor) -> Tensor:
            h, c = x[..., :H], x[..., H:]
            z = h @ w_hh.T + drive
            i, fg, gg, o = z.chunk(4, dim=-1)
            c_next = torch.sigmoid(fg) * c + torch.sigmoid(i) * torch.tanh(gg)
            return torch.cat([torch.sigmoid(o) * torch.tanh(c_next), c_next], dim=-1)

        return step


# Miller and Hardt (2019): bounds on the L1 norm of each column of the recurrent gate
# matrices (gate order i, f, g, o of torch.nn.LSTM) and of the forget gate's input matrix.
STABLE_LSTM_BOUNDS = {"i": 0.395, "f": 0.155, "g": 0.099, "o": 0.395, "f_input": 0.25}


STABLE_RULES = ("rescale", "project")


def _constrain_columns_(w: Tensor, bound: float, rule: str) -> None:
    norms = w.abs().sum(dim=0, keepdim=True)
    if rule == "rescale":  # every column to exactly the bound (a zero column stays zero)
        scale = torch.where(norms > 0, bound / norms.clamp_min(torch.finfo(w.dtype).tiny),
                            torch.ones_like(norms))
    else:  # only the columns above the bound, down to it
        scale = torch.where(norms > bound, bound / norms, torch.ones_like(norms))
    w.mul_(scale)


@torch.no_grad()
def stable_lstm_projection_(lstm: nn.LSTM, bounds: Mapping[str, float] = STABLE_LSTM_BOUNDS,
                            *, rule: str = "rescale") -> None:
    """Constrain a one-layer ``nn.LSTM`` to the stable set of Miller and Hardt, in place.

    Acts on every column of the recurrent block of gate k (``weight_hh_l0`` rows of that
    gate, bound ``bounds[k]``) and of the forget gate's input block (``weight_ih_l0``,
    bound ``bounds["f_input"]``):

    * ``rule="rescale"`` (the authors' code): every column is scaled to L1 norm *exactly*
      its bound;
    * ``rule="project"`` (Miller and Hardt's constraint "at most"): only columns whose L1
      norm exceeds the bound are scaled down to it; the others keep their values.

    Raises ``ValueError`` for an unknown rule or a bound that is not positive.
    """
    if rule not in STABLE_RULES:
        raise ValueError(f"rule must be one of {STABLE_RULES}, got {rule!r}")
    for key in ("i", "f", "g", "o", "f_input"):
        b = bounds[key]
        if isinstance(b, bool) or not isinstance(b, (int, float)) or not (
                math.isfinite(b) and b > 0):
            raise ValueError(f"bounds[{key!r}] must be a finite number > 0, got {b!r}")
    H = lstm.hidden_size
    w_hh = lstm.weight_hh_l0
    for k, gate in enumerate("ifgo"):
        _constrain_columns_(w_hh[k * H : (k + 1) * H], float(bounds[gate]), rule)
    _constrain_columns_(lstm.weight_ih_l0[H : 2 * H], float(bounds["f_input"]), rule)


class StableLSTM(TorchLSTM):
    """The stable LSTM: a :class:`TorchLSTM` constrained by :func:`stable_lstm_projection_`.

    ``rule="rescale"`` (default, the authors' code): the constraint acts only after
    optimizer steps (:meth:`project_`, which the training loop calls through
    :func:`apply_constraints`), rescaling every column to its bound. ``rule="project"``:
    the columns above their bound are projected onto it, at construction and after every
    step. Neither makes the map a contraction by itself: biases and inputs can push the
    forget gate towards 1.
    """

    def __init__(self, input_size: int, hidden_size: int, *, rule: str = "rescale"):
        super().__init__(input_size, hidden_size)
        if rule not in STABLE_RULES:
            raise ValueError(f"rule must be one of {STABLE_RULES}, got {rule!r}")
        self.rule = rule
        if rule == "project":
            self.project_()

    def project_(self) -> None:
        stable_lstm_projection_(self.lstm, rule=self.rule)


class ExpRNN(RecurrentModule):
    """Orthogonal RNN of expRNN (Lezcano-Casado and Martínez-Rubio, 2019) as a module.

    ``x_{t+1} = modReLU(W x_t + U u_t, b)`` with ``W`` orthogonal by construction:
    ``torch.nn.utils.parametrizations.orthogonal(..., orthogonal_map="matrix_exp")`` stores
    an unconstrained matrix and maps it through the exponential of its skew-symmetric part
    (times a fixed orthogonal base), so every optimizer step stays on the orthogonal group.
    The recurrence has no input bias, as :class:`OrthogonalRNN`; ``b`` is modReLU's bias.
    """

    def __init__(self, input_size: int, hidden_size: int):
        super().__init__()
        self.input_size = check_nonnegative_int("input_size", input_size)
        self.hidden_size = check_positive_int("hidden_size", hidden_size)
        self.state_size = hidden_size
        self.recurrent = nn.Linear(hidden_size, hidden_size, bias=False)
        nn.init.orthogonal_(self.recurrent.weight)
        _parametrizations.orthogonal(self.recurrent, orthogonal_map="matrix_exp")
        self.input = nn.Linear(input_size, hidden_size, bias=False)
        self.bias = nn.Parameter(torch.empty(hidden_size).uniform_(-0.01, 0.01))

    def recurrent_matrix(self) -> Tensor:
        """The orthogonal ``W`` (H, H)."""
        return self.recurrent.weight

    def forward(self, u: Tensor, state: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """Hidden outputs ``(T, B, H)`` and the last state ``(B, H)`` for ``u (T, B, Nu)``."""
        self._check_sequence(u, state)
        x = u.new_zeros(u.shape[1], self.hidden_size) if state is None else state
        with _parametrize.cached():  # W = exp(.) once per sequence, not once per step
            W = self.recurrent.weight
            drive = self.input(u)  # all input terms in one matmul
            outs = []
            for t in range(u.shape[0]):
                x = modrelu(x @ W.T + drive[t], self.bias)
                outs.append(x)
        return torch.stack(outs), x

    def input_drive(self, u: Tensor, *, dtype: torch.dtype | None = None) -> Tensor:
        """``U u``, shape ``(..., H)``, for inputs ``u (..., Nu)``."""
        self._check_inputs("u", u, self.input_size, dtype)
        U = self.input.weight.detach()
        if dtype is not None:
            U, u = U.to(dtype), u.to(dtype)
        elif u.dtype != U.dtype:
            raise ArgumentTypeError(f"u must have the layer's dtype {U.dtype} (or pass dtype), "
                                    f"got {u.dtype}")
        return _mv(U, u)

    def drive_map(self, drive: Tensor, *,
                  dtype: torch.dtype | None = None) -> Callable[[Tensor], Tensor]:
        """``x -> modReLU(W x + drive, b)`` with detached weights, ``drive = U u``."""
        self._check_inputs("drive", drive, self.hidden_size, dtype)
        W = self.recurrent.weight.detach()
        b = self.bias.detach()
        if dtype is not None:
            W, b, drive = W.to(dtype), b.to(dtype), drive.to(dtype)
        elif drive.dtype != W.dtype:
            raise ArgumentTypeError(f"drive must have the layer's dtype {W.dtype} (or pass "
                                    f"dtype), got {drive.dtype}")
        return lambda x: modrelu(_mv(W, x) + drive, b)


class _WithReadout(nn.Module):
    """A :class:`RecurrentModule` followed by a linear read-out ``ŷ_t = C h_t + d``.

    It implements the orbit interface of :func:`lib.training.orbit_sampler`: ``rnn``,
    ``input_vectors(u) = u`` (the orbit inputs are input vectors already) and
    ``readout(h)``.
    """

    def __init__(self, rnn: RecurrentModule, output_size: int):
        super().__init__()
        if not isinstance(rnn, RecurrentModule):
            raise ValueError(f"rnn must be a lib.models.RecurrentModule, got {type(rnn).__name__}")
        self.rnn = rnn
        self.readout = nn.Linear(rnn.hidden_size, check_positive_int("output_size", output_size))

    def outputs(self, u: Tensor, state: Tensor | None = None) -> Tensor:
        """All outputs ``(T, B, Ny)`` for inputs ``(T, B, Nu)`` from ``state`` (zero if None)."""
        h, _ = self.rnn(u, state)
        return self.readout(h)

    def input_vectors(self, u: Tensor) -> Tensor:
        """Orbit inputs ``(P, Nu)`` as input vectors: themselves, in the layer's dtype."""
        p = next(self.rnn.parameters())
        check_tensor("inputs", u, floating=True, what=f"(P, {self.rnn.input_size})")
        if u.dim() != 2 or u.shape[-1] != self.rnn.input_size:
            raise ValueError(f"inputs must have shape (P, {self.rnn.input_size}), "
                             f"got {tuple(u.shape)}")
        return u.to(dtype=p.dtype, device=p.device)

    def feedback_input(self, h: Tensor) -> Tensor:
        raise ValueError(f"{type(self).__name__} has no feedback mode: its outputs are not "
                         "its inputs")


class SequenceClassifier(_WithReadout):
    """RNN + linear read-out scored on the last step: ``forward(u) -> logits (B, n_classes)``."""

    def forward(self, u: Tensor, state: Tensor | None = None) -> Tensor:
        h, _ = self.rnn(u, state)
        return self.readout(h[-1])


class SequenceRegressor(_WithReadout):
    """RNN + linear read-out at every step: ``forward(u) -> ŷ (T, B, Ny)``."""

    def forward(self, u: Tensor, state: Tensor | None = None) -> Tensor:
        return self.outputs(u, state)


_RNN_MODULES = {"lstm": TorchLSTM, "slstm": StableLSTM, "ornn": ExpRNN}


def make_rnn(name: str, input_size: int, hidden_size: int, *,
             stable_rule: str = "rescale") -> RecurrentModule:
    """Trainable recurrent layer by name: ``lstm``, ``slstm`` (stable LSTM) or ``ornn``.

    ``stable_rule`` is the stable LSTM's constraint (:class:`StableLSTM`); ignored otherwise.
    """
    try:
        cls = _RNN_MODULES[name]
    except (KeyError, TypeError):
        raise ValueError(
            f"model must be one of {sorted(_RNN_MODULES)}, got {name!r}"
        ) from None
    if cls is StableLSTM:
        return cls(input_size, hidden_size, rule=stable_rule)
    return cls(input_size, hidden_size)


def _most_probable(h: Tensor, logits: Tensor) -> Tensor:
    """The arg-max word of ``logits`` computed from ``h``; ``ValueError`` for a NaN in ``h``
    (arg-max would pick a word anyway)."""
    if bool(torch.isnan(h).any()):
        raise ValueError("h holds NaN entries: the most probable word is undefined")
    return logits.argmax(-1)


class LanguageModel(nn.Module):
    """Word-level language model: embedding, dropout, one recurrent layer, dropout, decoder.

    ``forward(tokens (L, B), state (B, Nx)) -> (logits (L, B, V), state (B, Nx))``; the state
    is flat, ``[h, c]`` (Nx = 2H) for the LSTMs and ``h`` (Nx = H) for the oRNN. The
    recurrent layer is :func:`make_rnn` (``lstm``, ``slstm``, ``ornn``). Weights: the
    embedding and the decoder uniform in [-0.1, 0.1], the decoder bias zero (the PyTorch
    word-language-model example, on which the authors' code builds); the weights depend
    only on ``seed``.

    Orbit interface (:func:`lib.training.orbit_sampler`): ``input_vectors(ids)`` embeds
    token ids, ``readout(h)`` gives the logits, ``feedback_input(h)`` embeds the most
    probable next word.
    """

    KINDS = ("lstm", "slstm", "ornn")

    def __init__(self, kind: str, n_tokens: int, n_embed: int, n_hidden: int, *,
                 dropout: float = 0.5, seed: int = 0, modrelu_bias: float | None = None,
                 stable_rule: str = "rescale"):
        super().__init__()
        if kind not in self.KINDS:
            raise ValueError(f"kind must be one of {self.KINDS}, got {kind!r}")
        check_positive_int("n_tokens", n_tokens)
        check_positive_int("n_embed", n_embed)
        check_positive_int("n_hidden", n_hidden)
        if isinstance(dropout, bool) or not isinstance(dropout, (int, float)) or not (
                0.0 <= float(dropout) < 1.0):
            raise ValueError(f"dropout must be in [0, 1), got {dropout!r}")
        self.kind, self.n_tokens, self.n_embed, self.n_hidden = kind, n_tokens, n_embed, n_hidden
        with torch.random.fork_rng():  # the same weights for the same seed, whatever ran before
            torch.manual_seed(seed)
            self.encoder = nn.Embedding(n_tokens, n_embed)
            self.drop = nn.Dropout(dropout)
            self.rnn = make_rnn(kind, n_embed, n_hidden, stable_rule=stable_rule)
            self.decoder = nn.Linear(n_hidden, n_tokens)
            nn.init.uniform_(self.encoder.weight, -0.1, 0.1)
            nn.init.uniform_(self.decoder.weight, -0.1, 0.1)
            nn.init.zeros_(self.decoder.bias)
            if modrelu_bias is not None and kind == "ornn":
                nn.init.constant_(self.rnn.bias, float(modrelu_bias))

    @property
    def state_size(self) -> int:
        return self.rnn.state_size

    def init_state(self, batch_size: int) -> Tensor:
        """Zero states ``(batch_size, Nx)``."""
        return self.rnn.initial_state(check_positive_int("batch_size", batch_size))

    def _check_ids(self, name: str, ids: Tensor) -> None:
        check_tensor(name, ids, integer=True, what="of token ids")
        if ids.numel():
            lo, hi = torch.aminmax(ids)
            if int(lo) < 0 or int(hi) >= self.n_tokens:
                raise ValueError(f"{name} must be token ids in [0, {self.n_tokens}), got ids "
                                 f"from {int(lo)} to {int(hi)}")

    def forward(self, tokens: Tensor, state: Tensor) -> tuple[Tensor, Tensor]:
        """Logits ``(L, B, V)`` and the last state ``(B, Nx)``: ``tokens (L, B)`` are ids in
        ``[0, V)``, ``state (B, Nx)`` in the model's dtype."""
        self._check_ids("tokens", tokens)
        if tokens.dim() != 2 or tokens.shape[0] == 0:
            raise ValueError(f"tokens must have shape (L >= 1, B), got {tuple(tokens.shape)}")
        if state is None:
            raise ValueError(f"state must be a tensor (B, {self.state_size}), e.g. "
                             "init_state(B), got None")
        self.rnn._check_state(state, tokens.shape[1], f"tokens of shape {tuple(tokens.shape)}")
        out, state = self.rnn(self.drop(self.encoder(tokens)), state)
        return self.decoder(self.drop(out)), state

    def input_vectors(self, ids: Tensor) -> Tensor:
        """Token ids ``(P,)`` -> their embeddings ``(P, E)``; ids must be in [0, V)."""
        check_tensor("ids", ids, integer=True, what="(P,) of token ids")
        if ids.dim() != 1 or ids.dtype not in (torch.int64, torch.int32) or ids.numel() == 0:
            raise ValueError(f"inputs must be a 1-D tensor of token ids, got {ids!r}")
        if bool((ids < 0).any() or (ids >= self.n_tokens).any()):
            raise ValueError(f"inputs must be token ids in [0, {self.n_tokens}), "
                             f"got {ids.tolist()}")
        return self.encoder(ids.to(self.encoder.weight.device))

    def readout(self, h: Tensor) -> Tensor:
        """Logits ``(..., V)`` of the next word from hidden outputs ``(..., H)``."""
        check_tensor("h", h, floating=True, last=self.n_hidden, finite=False,
                     what=f"(..., {self.n_hidden})")
        w = self.decoder.weight
        return self.decoder(h.to(w.dtype).contiguous())  # a state's slice: faster contiguous

    def feedback_token(self, h: Tensor) -> Tensor:
        """The most probable next word's id, ``(...)``, from hidden outputs ``(..., H)``.

        A NaN anywhere in ``h`` raises ``ValueError`` (arg-max would pick a word anyway);
        checked on ``h``, 20 times smaller than the logits (this runs at every step of a
        feedback orbit)."""
        return _most_probable(h, self.readout(h))

    def token_map(self, *, pack: bool = True) -> Callable[[Tensor], Tensor]:
        """:meth:`feedback_token` for a loop over fixed weights: ``h (..., H) -> ids (...)``.

        The decoder's weight is copied now and packed once (:func:`lib._packed.packed_linear`,
        oneDNN on the CPU in float32; otherwise, or with ``pack=False``, the same product as
        :meth:`readout`). The packed logits differ from :meth:`readout`'s by float rounding,
        so the word differs only where two logits tie to rounding. A NaN in ``h`` raises
        ``ValueError``. Build a new map after the weights change.
        """
        decode = _packed.packed_linear(self.decoder.weight, self.decoder.bias, pack=pack)
        H = self.n_hidden

        def token(h: Tensor) -> Tensor:
            check_tensor("h", h, floating=True, last=H, finite=False, what=f"(..., {H})")
            return _most_probable(h, decode(h.to(self.decoder.weight.dtype)))

        token.decode = decode  # whether the decoder is packed: token.decode.packed
        return token

    def feedback_input(self, h: Tensor) -> Tensor:
        """The embedding of the most probable next word, ``(..., E)``."""
        return self.encoder(self.feedback_token(h))


def apply_constraints(model: nn.Module) -> None:
    """Call ``project_()`` on every submodule that defines it (e.g. :class:`StableLSTM`).

    Pass it as ``post_step`` to :func:`lib.training.train` so constrained models are
    projected after every optimizer step.
    """
    for m in model.modules():
        project = getattr(m, "project_", None)
        if callable(project):
            project()
