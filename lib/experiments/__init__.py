"""The paper's experiments at full scale: one module per experiment.

* :mod:`lib.experiments.symbol_classification` (Supplementary Figures 2-4),
* :mod:`lib.experiments.sine` (sine generation),
* :mod:`lib.experiments.language_model` (Supplementary Figures 5-7).

Each defines a frozen ``Config`` dataclass whose defaults are the authors' configuration
(``PAPER``), and ``run(config, out)``, which trains through :func:`lib.training.train`,
records orbits with :class:`lib.training.OrbitRecorder` and writes the run's files into
``out`` (:mod:`lib.experiments._run` describes them). From the shell::

    python -m lib.experiments symbol-classification --model lstm --seq-len 100 --out DIR
    python -m lib.experiments sine --epochs 400 --out DIR
    python -m lib.experiments language-model --model ornn --out DIR

Every config field is an option (``--field-name``); ``--help`` lists them with their
defaults. Rerunning a command resumes from its checkpoint.

Import graph, bottom to top: :mod:`lib.models`, :mod:`lib.dynamics` -> :mod:`lib.training`
-> these modules -> ``__main__`` (the command line), which nothing imports.
"""

from __future__ import annotations

from . import language_model, sine, symbol_classification
from ._run import ConfigError, RunResult, differences, differences_table, load_run

__all__ = ["EXPERIMENTS", "ConfigError", "RunResult", "differences", "differences_table", "load_run",
           "symbol_classification", "sine", "language_model"]

# The command line's table: subcommand -> module (with Config, PAPER, run, NAME, HELP).
EXPERIMENTS = {m.NAME: m for m in (symbol_classification, sine, language_model)}
