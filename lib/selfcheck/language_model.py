"""Self-checks of the exercises of the chapter "Attractors of a language model".

Each check calls the student's answer on small inputs whose right result is known, so it
needs neither the corpus nor the trained models of the chapter.
"""

from __future__ import annotations

import math

import torch

from lib.selfcheck import as_number, call_answer, register

__all__ = ["unigram_perplexity_reference", "modrelu_derivative_reference", "phi_max"]


def unigram_perplexity_reference(train: torch.Tensor, valid: torch.Tensor,
                                 n_words: int) -> float:
    """Perplexity on ``valid`` of the add-one smoothed unigram model of ``train``."""
    counts = torch.bincount(train, minlength=n_words).double() + 1
    log_p = (counts / counts.sum()).log()
    return math.exp(-float(log_p[valid].mean()))


def modrelu_derivative_reference(z: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Diagonal of the Jacobian of modReLU ``sign(z) relu(|z| + b)`` (off its kinks)."""
    return ((z.abs() + b) > 0).to(z.dtype)


def phi_max(beta: tuple[float, float, float, float]) -> float:
    """The largest forget-gate level phi for which the stable LSTM's contraction
    proposition gives L < 1 for some alpha, for gate radii ``beta = (i, f, g, o)``: C is
    the positive root of beta_o/4 + C (C beta_f/4 + beta_i/4 + beta_g) = 1, phi = 1 - 1/C."""
    bi, bf, bg, bo = beta
    a2, a1, a0 = bf / 4, bi / 4 + bg, bo / 4 - 1
    c_max = (-a1 + math.sqrt(a1 ** 2 - 4 * a2 * a0)) / (2 * a2)
    return 1 - 1 / c_max




@register(
    "ex-language-model-3",
    hint="count each word of the training tokens (torch.bincount with minlength=n_words), "
         "add one to every count, normalise to probabilities, and return exp of the mean "
         "negative log-probability of the validation tokens (natural logarithm)",
    expects="a function unigram_perplexity(train, valid, n_words) -> float, train and "
            "valid 1-D tensors of token ids",
)
def _unigram(answer) -> None:
    gen = torch.Generator().manual_seed(3)
    cases = [(torch.tensor([0, 0, 1, 2]), torch.tensor([0, 1, 3]), 4)]
    for n_words, n_train, n_valid in ((7, 50, 20), (30, 400, 300)):
        # Zipf-like frequencies, and validation words the training tokens may not contain
        p = 1.0 / torch.arange(1, n_words + 1, dtype=torch.float64)
        cases.append((torch.multinomial(p, n_train, replacement=True, generator=gen),
                      torch.randint(0, n_words, (n_valid,), generator=gen), n_words))
    for train, valid, n_words in cases:
        want = unigram_perplexity_reference(train, valid, n_words)
        got = float(call_answer(answer, train.clone(), valid.clone(), n_words))
        assert math.isfinite(got), (
            f"perplexity {got} for a validation word that the training tokens never "
            "contain: smooth the counts (add one to each)")
        if abs(got - math.log(want)) < 1e-6 * max(1.0, abs(math.log(want))):
            raise AssertionError(f"got {got:.4g}, the cross-entropy in nats; the perplexity "
                                 "is its exponential")
        assert abs(got - want) <= 1e-6 * want, (
            f"got {got:.6g} on a test case whose unigram perplexity is {want:.6g} "
            f"({n_words} words, {len(train)} training and {len(valid)} validation tokens)")


@register(
    "ex-language-model-8",
    hint="where |z_i| + b_i > 0, modReLU is z_i + b_i sign(z_i), whose derivative is 1; "
         "where |z_i| + b_i < 0 it is identically 0",
    expects="a function modrelu_derivative(z, b) -> tensor of z's shape, the diagonal of "
            "the Jacobian of modReLU at z",
)
def _modrelu_derivative(answer) -> None:
    gen = torch.Generator().manual_seed(8)
    z = torch.randn(400, generator=gen, dtype=torch.float64)
    b = 0.8 * torch.rand(400, generator=gen, dtype=torch.float64) - 0.6  # mostly negative
    away = ((z.abs() > 1e-3) & ((z.abs() + b).abs() > 1e-3))  # off the kinks
    z, b = z[away], b[away]
    want = modrelu_derivative_reference(z, b)
    got = torch.as_tensor(call_answer(answer, z.clone(), b.clone())).to(torch.float64)
    assert got.shape == z.shape, f"expected a tensor of shape {tuple(z.shape)}, got " \
                                 f"{tuple(got.shape)}"
    wrong = (got - want).abs() > 1e-9
    if bool(wrong.any()):
        k = int(wrong.nonzero()[0])
        raise AssertionError(f"{int(wrong.sum())} of {len(z)} entries are wrong, e.g. at "
                             f"z = {float(z[k]):.3f}, b = {float(b[k]):.3f} you return "
                             f"{float(got[k]):.3g}, not {float(want[k]):.3g}")


@register(
    "ex-language-model-9",
    hint="as alpha decreases to phi/(1-phi), the first term of L tends to "
         "beta_o/4 + C (C beta_f/4 + beta_i/4 + beta_g) with C = 1/(1-phi); set it to 1, "
         "solve the quadratic for C, and return 1 - 1/C",
    expects="a float, the largest phi for the radii (0.395, 0.155, 0.198, 0.395)",
)
def _phi_max(answer) -> None:
    got = as_number(answer, "phi")
    want = phi_max((0.395, 0.155, 0.198, 0.395))
    if abs(got - phi_max((0.395, 0.155, 0.099, 0.395))) < 2e-3:
        raise AssertionError(f"{got:.4f} is the value for the stable LSTM's own radii; "
                             "the exercise doubles the cell gate's radius to 0.198")
    assert abs(got - want) < 2e-3, f"got {got:.4f}; it should lie within 0.002 of the " \
                                   "threshold"
