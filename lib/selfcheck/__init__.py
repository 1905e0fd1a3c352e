"""Self-checks for the book's exercises: pass or fail, with a hint, without the solution.

A student computes an ``answer`` in the notebook and runs ``check(label, answer)``. Each
chapter's checks live in a module of this package and are registered at import with
:func:`register`. A check is a function ``answer -> None`` that raises ``AssertionError``
(its message says what is wrong) for a wrong answer. The book's build runs every check
against the exercise's solution, and the tests run each against wrong answers.
"""

from __future__ import annotations

import importlib
import math
from dataclasses import dataclass
from numbers import Real
from typing import Any, Callable

import torch

__all__ = ["register", "check", "load_all", "CHECKS", "Check", "CheckResult", "as_number",
           "as_tensor", "call_answer"]


@dataclass(frozen=True)
class Check:
    """A registered self-check: its exercise label, hint, what the answer is, and test."""

    label: str
    hint: str
    expects: str
    test: Callable[[Any], None]


CHECKS: dict[str, Check] = {}


def register(label: str, *, hint: str, expects: str) -> Callable[[Callable[[Any], None]],
                                                                  Callable[[Any], None]]:
    """Register ``test(answer)`` as the self-check of exercise ``label``.

    ``hint`` is shown when the answer is wrong; ``expects`` says in one line what ``answer``
    must be (its type and shape). Raises ``ValueError`` for a label registered twice.
    """
    if not isinstance(label, str) or not label.startswith("ex-"):
        raise ValueError(f"label must be an exercise label 'ex-...', got {label!r}")

    def decorate(test: Callable[[Any], None]) -> Callable[[Any], None]:
        if label in CHECKS:
            raise ValueError(f"a self-check for {label!r} is registered already")
        CHECKS[label] = Check(label, hint, expects, test)
        return test

    return decorate


class CheckResult:
    """Whether a self-check passed: true or false like a bool, and silent as the last line
    of a notebook cell (the printed line is the student's answer, not a stray ``True``)."""

    __slots__ = ("passed",)

    def __init__(self, passed: bool):
        self.passed = bool(passed)

    def __bool__(self) -> bool:
        return self.passed

    def __eq__(self, other: object) -> bool:
        return self.passed == bool(other) if isinstance(other, (bool, CheckResult)) else NotImplemented

    def __hash__(self) -> int:
        return hash(self.passed)

    def __repr__(self) -> str:
        return repr(self.passed)

    def _ipython_display_(self) -> None:  # IPython shows nothing for a cell ending in check()
        pass


def check(label: str, answer: Any, *, quiet: bool = False) -> CheckResult:
    """Run the self-check of exercise ``label`` on ``answer``; print one line, return pass.

    Prints ``✓ <label>: pass`` or ``✗ <label>: not yet: <what is wrong>. Hint: <hint>``
    (nothing when ``quiet``). ``answer`` None means not attempted. Returns a
    :class:`CheckResult`, true when the answer passed, which a notebook does not echo.
    Raises ``ValueError`` for an unknown label.
    """
    load_all()
    if label not in CHECKS:
        raise ValueError(f"no self-check for {label!r}; known: {sorted(CHECKS)}")
    c = CHECKS[label]
    if answer is None or answer is Ellipsis:
        ok, why = False, f"no answer yet (expected: {c.expects})"
    else:
        try:
            c.test(answer)
            ok, why = True, ""
        except AssertionError as err:
            # one line: the message's first line (pytest's assertion rewriting appends more)
            ok, why = False, (str(err).strip().splitlines() or ["the answer does not match"])[0]
        except (TypeError, ValueError, AttributeError, IndexError) as err:
            ok, why = False, f"the answer has the wrong form ({err}); expected: {c.expects}"
    if not quiet:
        print(f"✓ {label}: pass" if ok else f"✗ {label}: not yet: {why}. Hint: {c.hint}")
    return CheckResult(ok)


# ----------------------------------------------------------------- helpers for the checks
def as_number(value: Any, what: str = "the answer") -> float:
    """A finite real number from ``value`` (a float, an int, or a one-element tensor or
    array); otherwise ``AssertionError`` saying what ``what`` should be."""
    if hasattr(value, "numel") and hasattr(value, "item"):
        assert value.numel() == 1, (f"{what} should be one number, got a tensor of shape "
                                    f"{tuple(value.shape)}")
        value = value.item()
    elif hasattr(value, "item") and getattr(value, "ndim", 0) == 0:  # a NumPy scalar
        value = value.item()
    assert isinstance(value, Real) and not isinstance(value, bool), (
        f"{what} should be a number, got {type(value).__name__}")
    number = float(value)
    assert math.isfinite(number), f"{what} should be finite, got {value!r}"
    return number


def as_tensor(value: Any, shape: tuple[int, ...], what: str = "the answer", *,
              reshape: bool = False) -> torch.Tensor:
    """``value`` as a finite float64 tensor of ``shape`` (``reshape``: any layout of that
    many numbers is accepted); otherwise ``AssertionError`` naming ``what``."""
    t = torch.as_tensor(value, dtype=torch.float64)
    if reshape:
        n = math.prod(shape)
        assert t.numel() == n, f"{what} must have {n} numbers, got {t.numel()}"
        t = t.reshape(shape)
    assert tuple(t.shape) == tuple(shape), (f"{what} must have shape {tuple(shape)}, "
                                            f"got {tuple(t.shape)}")
    assert bool(torch.isfinite(t).all()), f"{what} has non-finite values"
    return t


def call_answer(answer: Any, *args: Any) -> Any:
    """Call the student's function; an error inside it is a wrong answer, said plainly."""
    assert callable(answer), f"expected a function, got {type(answer).__name__}"
    try:
        return answer(*args)
    except (TypeError, ValueError, IndexError, RuntimeError, ZeroDivisionError) as err:
        raise AssertionError(f"your function raised {type(err).__name__}: {err}") from None


_MODULES = ("dynamical_systems", "derivative_recursion", "entropy", "smoothness",
            "chaotic_lstm", "symbol_classification", "language_model")


def load_all() -> dict[str, Check]:
    """Import every chapter's module of checks (each registers its checks once) and return
    the registry. A chapter without a module yet is skipped."""
    for name in _MODULES:
        try:
            importlib.import_module(f"{__name__}.{name}")
        except ModuleNotFoundError as err:
            if err.name != f"{__name__}.{name}":
                raise
    return CHECKS


_load_all = load_all  # the name of the first version
