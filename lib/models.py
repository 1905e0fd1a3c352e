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

from ._checks import check_finite, check_last_dim, check_nonnegative_int, check_positive_int

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
    return (matrix @ vector.unsqueeze(-1)).squeeze(-1)


def modrelu(z: Tensor, b: Tensor) -> Tensor:
    """modReLU of Arjovsky et al. (2016): ``sign(z) * relu(|z| + b)``, element-wise."""
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
        check_last_dim("theta", theta, self.n_params)
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
        missing = set(self.param_shapes) - set(params)
        if missing:
            raise ValueError(f"params is missing entries {sorted(missing)}")
        parts = []
        for name, shape in self.param_shapes.items():
            p = params[name]
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
            generator = torch.Generator(device="cpu").manual_seed(0 if seed is None else seed)
        s = self.default_scale() if scale is None else float(scale)
        theta = (torch.rand(self.n_params, generator=generator, dtype=torch.float64) * 2 - 1) * s
        return theta.to(dtype=dtype, device=device)

    def default_scale(self) -> float:
        return 1.0 / math.sqrt(self.hidden_size)

    # ----------------------------------------------------------------- the maps
    def _check(self, x: Tensor, u: Tensor, theta: Tensor) -> None:
        # Shape checks only: these maps run inside torch.func transforms, where
        # data-dependent checks (isfinite) are not allowed.
        check_last_dim("x", x, self.nx)
        check_last_dim("u", u, self.nu)
        check_last_dim("theta", theta, self.n_params)

    def f(self, x: Tensor, u: Tensor, theta: Tensor) -> Tensor:  # pragma: no cover
        raise NotImplementedError

    def g(self, x: Tensor, u: Tensor, theta: Tensor) -> Tensor:  # pragma: no cover
        raise NotImplementedError

    def hidden(self, x: Tensor) -> Tensor:
        """The part of the state that feeds the read-out (h for the LSTM, x otherwise)."""
        return x

    def _readout(self, x: Tensor, p: dict[str, Tensor]) -> Tensor:
        h = self.hidden(x)
        if "C" not in p:
            return h
        return _mv(p["C"], h) + p["d"]

    def autonomous(self, theta: Tensor, u: Tensor | None = None) -> Callable[[Tensor], Tensor]:
        """The map ``x -> f(x, u, θ)`` for a constant input (zero input if ``u`` is None)."""
        if u is None:
            u = theta.new_zeros(self.nu)
        return lambda x: self.f(x, u, theta)

    def zero_state(self, *batch: int, dtype=torch.float64, device="cpu") -> Tensor:
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
        return x[..., : self.hidden_size]

    def cell(self, x: Tensor) -> Tensor:
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
