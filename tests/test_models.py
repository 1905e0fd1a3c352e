"""lib.models: the state-space maps f, g against torch's own modules, batching, bad input."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from lib.models import GRU, LSTM, ElmanRNN, OrthogonalRNN, make_model, modrelu

# float64 for every check of this module (fixture in tests/conftest.py)
pytestmark = pytest.mark.usefixtures("float64_default")


def _torch_step(module, x_h, u, c=None):
    """One step of a torch recurrent module on a batch: returns the new (h, c)."""
    inp = u.unsqueeze(0)  # (1, B, Nu)
    if c is None:
        _, h = module(inp, x_h.unsqueeze(0))
        return h[0], None
    _, (h, c_new) = module(inp, (x_h.unsqueeze(0), c.unsqueeze(0)))
    return h[0], c_new[0]


@pytest.mark.parametrize("bias", [True, False])
def test_lstm_matches_torch(bias):
    torch.manual_seed(0)
    nu, H, ny, B = 3, 5, 2, 7
    module = nn.LSTM(nu, H, bias=bias).double()
    readout = nn.Linear(H, ny).double()
    model = LSTM(nu, H, ny, bias=bias)
    theta = model.theta_from_torch(module, readout)
    h, c, u = torch.randn(B, H), torch.randn(B, H), torch.randn(B, nu)
    x = torch.cat([h, c], -1)
    h_ref, c_ref = _torch_step(module, h, u, c)
    x_next = model.f(x, u, theta)
    assert torch.allclose(x_next[:, :H], h_ref, atol=1e-12, rtol=0)
    assert torch.allclose(x_next[:, H:], c_ref, atol=1e-12, rtol=0)
    assert torch.allclose(model.g(x_next, u, theta), readout(h_ref), atol=1e-12, rtol=0)


def test_gru_matches_torch():
    torch.manual_seed(1)
    nu, H, B = 4, 6, 5
    module = nn.GRU(nu, H).double()
    model = GRU(nu, H)
    theta = model.theta_from_torch(module)
    x, u = torch.randn(B, H), torch.randn(B, nu)
    h_ref, _ = _torch_step(module, x, u)
    assert torch.allclose(model.f(x, u, theta), h_ref, atol=1e-12, rtol=0)
    assert torch.equal(model.g(x, u, theta), x)  # no read-out: the output is the state


def test_elman_matches_torch_rnn():
    torch.manual_seed(2)
    nu, H, B = 2, 4, 3
    module = nn.RNN(nu, H, nonlinearity="tanh").double()
    model = ElmanRNN(nu, H)
    p = dict(W=module.weight_hh_l0.detach(), U=module.weight_ih_l0.detach(),
             b=(module.bias_ih_l0 + module.bias_hh_l0).detach())
    theta = model.flatten(p)
    x, u = torch.randn(B, H), torch.randn(B, nu)
    h_ref, _ = _torch_step(module, x, u)
    assert torch.allclose(model.f(x, u, theta), h_ref, atol=1e-12, rtol=0)


def test_orthogonal_rnn():
    model = OrthogonalRNN(2, 6, 1)
    theta = model.init_theta(seed=3, scale=1.0)
    W = model.recurrent_matrix(theta)
    assert torch.allclose(W @ W.T, torch.eye(6), atol=1e-12)
    x, u = torch.randn(6), torch.randn(2)
    p = model.unflatten(theta)
    expected = modrelu(W @ x + p["U"] @ u, p["b"])
    assert torch.allclose(model.f(x, u, theta), expected, atol=1e-12)
    assert model.g(x, u, theta).shape == (1,)


def test_modrelu_definition():
    z = torch.tensor([-2.0, -0.5, 0.0, 0.5, 2.0])
    b = torch.tensor(-1.0)
    assert torch.equal(modrelu(z, b), torch.tensor([-1.0, 0.0, 0.0, 0.0, 1.0]))


@pytest.mark.parametrize("name", ["elman", "lstm", "gru", "ornn"])
def test_batch_of_parameter_sets(name):
    """θ of shape (P, 1, Nθ) against states (P, K, Nx) equals P separate calls."""
    model = make_model(name, 2, 3, 2)
    P, K = 4, 5
    thetas = torch.stack([model.init_theta(seed=s) for s in range(P)])
    x = torch.randn(P, K, model.nx)
    u = torch.randn(2)
    batched = model.f(x, u, thetas[:, None, :])
    out_b = model.g(x, u, thetas[:, None, :])
    for p in range(P):
        assert torch.allclose(batched[p], model.f(x[p], u, thetas[p]), atol=1e-13)
        assert torch.allclose(out_b[p], model.g(x[p], u, thetas[p]), atol=1e-13)


@settings(max_examples=25, deadline=None)
@given(name=st.sampled_from(["elman", "lstm", "gru", "ornn"]),
       nu=st.integers(0, 3), H=st.integers(1, 4), ny=st.one_of(st.none(), st.integers(1, 3)),
       batch=st.lists(st.integers(1, 3), max_size=2))
def test_flatten_unflatten_roundtrip(name, nu, H, ny, batch):
    model = make_model(name, nu, H, ny)
    theta = torch.randn(*batch, model.n_params)
    assert torch.equal(model.flatten(model.unflatten(theta)), theta)
    assert model.n_params == sum(v.shape[len(batch):].numel()
                                 for v in model.unflatten(theta).values())


def test_init_theta_is_seeded():
    m = LSTM(2, 3)
    assert torch.equal(m.init_theta(seed=5), m.init_theta(seed=5))
    assert not torch.equal(m.init_theta(seed=5), m.init_theta(seed=6))
    assert m.init_theta(seed=0).abs().max() <= 1 / 3 ** 0.5


def test_bad_input():
    m = LSTM(2, 3, 1)
    theta = m.init_theta()
    with pytest.raises(ValueError, match="x"):
        m.f(torch.zeros(5), torch.zeros(2), theta)
    with pytest.raises(ValueError, match="u"):
        m.f(torch.zeros(6), torch.zeros(3), theta)
    with pytest.raises(ValueError, match="theta"):
        m.f(torch.zeros(6), torch.zeros(2), theta[:-1])
    with pytest.raises(ValueError, match="hidden_size"):
        LSTM(2, 0)
    with pytest.raises(ValueError, match="input_size"):
        GRU(-1, 2)
    with pytest.raises(ValueError, match="name"):
        make_model("transformer", 1, 1)
    with pytest.raises(ValueError, match="readout"):
        m.theta_from_torch(nn.LSTM(2, 3).double())
    with pytest.raises(ValueError, match="hidden_size"):
        m.theta_from_torch(nn.LSTM(2, 4).double(), nn.Linear(4, 1).double())
    with pytest.raises(ValueError, match="module"):
        m.theta_from_torch(nn.GRU(2, 3).double(), nn.Linear(3, 1).double())
    with pytest.raises(ValueError, match="missing"):
        m.flatten({"weight_ih": torch.zeros(12, 2)})
    bad = nn.LSTM(2, 3).double()
    with torch.no_grad():
        bad.weight_hh_l0[0, 0] = float("nan")
    with pytest.raises(ValueError, match="finite"):
        m.theta_from_torch(bad, nn.Linear(3, 1).double())
