"""The book's figures: one style, orbit (bifurcation) diagrams, Lyapunov-exponent curves.

Functions draw on a given ``matplotlib`` axis and return it, so chapters compose them into
their own figure layouts. They accept tensors or arrays.
"""

from __future__ import annotations

from typing import Sequence

import matplotlib as mpl
import numpy as np
import torch
from matplotlib.axes import Axes

__all__ = ["use_book_style", "orbit_diagram", "lyapunov_curve", "to_numpy"]

# Sizes for the page. A figure at most 7 in wide is drawn at 100 dpi (about 700 px) and
# shown at the page's content width (about 670 px), so a point in the figure is about a
# point on the screen: every text element below is at least 9 pt there (and "small", 0.83 of
# font.size, is 9.2 pt). Wider figures shrink on the page and their text with them.
BOOK_STYLE = {
    "figure.figsize": (7.0, 3.6),
    "figure.dpi": 100,
    "savefig.dpi": 120,
    "axes.grid": True,
    "grid.alpha": 0.3,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "font.size": 11,
    "axes.titlesize": 12,
    "axes.labelsize": 11,
    "xtick.labelsize": 10,
    "ytick.labelsize": 10,
    "legend.fontsize": 10,
    "legend.title_fontsize": 10,
    "figure.titlesize": 12,
    "figure.labelsize": 11,
    "legend.frameon": False,
}
# The largest figure width (inches) whose text keeps its point size on the page.
MAX_FIGURE_WIDTH_IN = 7.0
MIN_FONT_PT = 9.0


def use_book_style() -> None:
    """Apply the book's matplotlib style (called in each chapter's first cell): at most
    7 in wide, every text element at least 9 pt at the page's width."""
    mpl.rcParams.update(BOOK_STYLE)


def to_numpy(value) -> np.ndarray:
    """A tensor, array or sequence of numbers as a NumPy array (on the CPU, detached)."""
    if isinstance(value, torch.Tensor):
        return value.detach().cpu().numpy()
    try:
        arr = np.asarray(value)
    except (TypeError, ValueError):
        arr = None
    if arr is None or arr.dtype.kind not in "biuf":
        raise TypeError(f"value must be a tensor, array or sequence of numbers, got "
                        f"{type(value).__name__}")
    return arr


def orbit_diagram(
    ax: Axes,
    params,
    values,
    *,
    color: str = "k",
    size: float = 0.05,
    alpha: float = 0.5,
    xlabel: str | None = None,
    ylabel: str | None = None,
) -> Axes:
    """Scatter steady-state samples ``values`` of shape ``(P, ...)`` against ``params`` (P,).

    Every sample that belongs to parameter ``params[i]`` (all initial states, all kept steps)
    is drawn at abscissa ``params[i]``: fixed points show as single curves, cycles of period
    k as k branches, chaos as filled bands.
    """
    _check_axes(ax)
    p = to_numpy(params).reshape(-1)
    v = to_numpy(values)
    if v.ndim == 0 or v.shape[0] != p.shape[0]:
        raise ValueError(
            f"values must have params' length {p.shape[0]} as first dimension, got {v.shape}"
        )
    v = v.reshape(p.shape[0], -1)
    xs = np.repeat(p, v.shape[1])
    ax.scatter(xs, v.reshape(-1), s=size, color=color, alpha=alpha, linewidths=0, rasterized=True)
    if xlabel:
        ax.set_xlabel(xlabel)
    if ylabel:
        ax.set_ylabel(ylabel)
    return ax


def _check_axes(ax) -> None:
    if not isinstance(ax, Axes):
        raise TypeError(f"ax must be a matplotlib Axes, got {type(ax).__name__}")


def lyapunov_curve(
    ax: Axes,
    params,
    exponents,
    *,
    labels: Sequence[str] | None = None,
    xlabel: str | None = None,
    ylabel: str = "Lyapunov exponent (nats/step)",
) -> Axes:
    """Plot Lyapunov exponents ``(P,)`` or ``(P, k)`` against ``params`` with a zero line."""
    _check_axes(ax)
    p = to_numpy(params).reshape(-1)
    e = to_numpy(exponents)
    if e.ndim not in (1, 2) or e.shape[0] != p.shape[0] or p.shape[0] == 0:
        raise ValueError(f"exponents must have shape (P,) or (P, k) with P = {p.shape[0]} "
                         f"(params' length), got {e.shape}")
    if np.isnan(e).any() or np.isposinf(e).any():
        raise ValueError("exponents must not be NaN or +inf (-inf, a superstable orbit, is "
                         "drawn off the axis)")
    e = e.reshape(p.shape[0], -1)
    if labels is not None and len(labels) != e.shape[1]:
        raise ValueError(f"labels must hold one label per exponent ({e.shape[1]}), got "
                         f"{len(labels)}")
    for j in range(e.shape[1]):
        label = labels[j] if labels is not None else (f"$\\lambda_{j + 1}$" if e.shape[1] > 1 else None)
        ax.plot(p, e[:, j], lw=0.8, label=label)
    ax.axhline(0.0, color="grey", lw=0.8, ls="--")
    if xlabel:
        ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if e.shape[1] > 1 or labels is not None:
        ax.legend()
    return ax
