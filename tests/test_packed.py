"""lib._packed.packed_linear and LanguageModel.token_map: the decoder packed once per record.

The packed product is the affine map of torch.nn.functional.linear to float rounding; the
language model's feedback orbits through it are the orbits through feedback_token; bad
input is refused naming the argument.
"""

from __future__ import annotations

import pytest
import torch

from lib._packed import packed_linear
from lib.models import LanguageModel
from lib.training import orbit_sampler


def weights(n_out=300, n_in=32, dtype=torch.float32, seed=0):
    gen = torch.Generator().manual_seed(seed)
    w = torch.empty(n_out, n_in, dtype=dtype).uniform_(-1, 1, generator=gen)
    b = torch.empty(n_out, dtype=dtype).uniform_(-1, 1, generator=gen)
    x = torch.empty(2, 7, n_in, dtype=dtype).uniform_(-1, 1, generator=gen)
    return w, b, x


@pytest.mark.parametrize("bias", [True, False])
def test_packed_is_the_affine_map_to_float_rounding(bias):
    w, b, x = weights()
    b = b if bias else None
    f = packed_linear(w, b)
    assert f.packed is None  # packed at the first call, for its number of rows
    y = f(x)
    want = torch.nn.functional.linear(x, w, b)
    assert y.shape == want.shape == (2, 7, 300)
    rel = float((y - want).abs().max() / want.abs().max())
    assert 0.0 <= rel < 1e-5
    import lib._packed as P
    assert f.packed == (P._onednn_ops() is not None)
    assert torch.equal(f(x), y)  # deterministic: the same numbers on every call
    other = f(x[:1, :3])  # another number of rows than the packing's
    assert float((other - want[:1, :3]).abs().max() / want.abs().max()) < 1e-5


def test_unpacked_and_float64_are_linear_exactly():
    w, b, x = weights()
    f = packed_linear(w, b, pack=False)
    assert torch.equal(f(x), torch.nn.functional.linear(x, w, b)) and f.packed is False
    w64, b64, x64 = weights(dtype=torch.float64)
    g = packed_linear(w64, b64)
    assert torch.equal(g(x64), torch.nn.functional.linear(x64, w64, b64)) and g.packed is False


def test_packed_copies_the_weight():
    w, b, x = weights()
    f = packed_linear(w, b)
    before = f(x)
    with torch.no_grad():
        w.mul_(2.0)
        b.zero_()
    assert torch.equal(f(x), before)


def test_packed_bad_input_names_the_argument():
    w, b, x = weights()
    with pytest.raises(ValueError, match="weight"):
        packed_linear(w[0], b)
    with pytest.raises(TypeError, match="weight"):
        packed_linear(w.numpy(), b)
    with pytest.raises(ValueError, match="bias"):
        packed_linear(w, b[:-1])
    with pytest.raises(TypeError, match="bias"):
        packed_linear(w, b.double())
    with pytest.raises(TypeError, match="pack"):
        packed_linear(w, b, pack="yes")
    f = packed_linear(w, b)
    with pytest.raises(ValueError, match="x"):
        f(x[..., :-1])
    with pytest.raises(TypeError, match="x"):
        f(x.long())


def float_lm(kind="lstm", seed=0):
    return LanguageModel(kind, 400, 16, 24, dropout=0.0, seed=seed).eval()


@pytest.mark.parametrize("pack", [True, False])
def test_token_map_is_feedback_token(pack):
    lm = float_lm()
    h = torch.empty(50, 6, 24).uniform_(-1, 1, generator=torch.Generator().manual_seed(3))
    token = lm.token_map(pack=pack)
    got = token(h)
    assert got.shape == (50, 6) and got.dtype == torch.long
    assert torch.equal(got, lm.feedback_token(h))
    assert torch.equal(token(h.double()), lm.feedback_token(h.double()))
    with pytest.raises(ValueError, match="NaN"):
        bad = h.clone()
        bad[3, 2, 5] = float("nan")
        token(bad)
    with pytest.raises(ValueError, match="h"):
        token(h[..., :-1])


@pytest.mark.parametrize("kind", LanguageModel.KINDS)
def test_feedback_orbits_through_the_packed_decoder(kind):
    """The recorder's fused feedback orbits (packed decoder) equal the layer's own forward
    with feedback_token (unpacked), in float32, and so does λ_1 with the decoder unpacked."""
    lm = float_lm(kind, seed=2)
    ids = torch.tensor([3, 11])
    args = dict(feedback=True, n_init=3, std=2.0, n_steps=80, n_transient=50, seed=1,
                shared_init=False)
    along = orbit_sampler(ids, **args, lyapunov_steps=30)
    y_along = along(lm)
    y_plain = orbit_sampler(ids, **args)(lm)
    assert float((y_along - y_plain).abs().max()) < 1e-4
    lam = along.last_lyapunov
    original = LanguageModel.token_map
    try:
        LanguageModel.token_map = lambda self, pack=True: original(self, pack=False)
        y_unpacked = along(lm)
    finally:
        LanguageModel.token_map = original
    assert torch.equal(y_unpacked, y_along)
    assert torch.equal(along.last_lyapunov, lam)


def test_without_onednn_the_map_is_linear(monkeypatch):
    """A torch without the packed operators (or whose operators fail) gets linear itself."""
    import lib._packed as P

    w, b, x = weights()
    monkeypatch.setattr(P, "_onednn_ops", lambda: None)
    f = packed_linear(w, b)
    assert torch.equal(f(x), torch.nn.functional.linear(x, w, b)) and f.packed is False

    class Failing:
        def _reorder_linear_weight(self, *a):
            raise RuntimeError("not on this CPU")

        def _linear_pointwise(self, *a):
            raise RuntimeError("not on this CPU")

    monkeypatch.setattr(P, "_onednn_ops", lambda: Failing())
    g = packed_linear(w, b)
    assert torch.equal(g(x), torch.nn.functional.linear(x, w, b)) and g.packed is False
