"""``diffcls bench``: the uncertainty benchmark, one module per concern.

* :mod:`.grid` — the grid as data: presets (:data:`PRESETS`), test conditions, one task per results row;
* :mod:`.contenders` — the models compared, behind one interface (classifiers and the Diffusion Classifier);
* :mod:`.runner` — the :class:`Benchmark`: trainings, evaluations, the resumable rows log, results files;
* :mod:`.stats` — per-seed means, mean ± std, paired gains, condition groups;
* :mod:`.tables` — markdown tables, the terminal summary and the report's text;
* :mod:`.plots` — the figures;
* :mod:`.report` — ``report.md`` and ``plots/*.png`` put together.

The benchmark builds on the evaluation runners (:mod:`diffcls.eval`) and everything below them; nothing below
imports it.
"""

from diffcls.bench.contenders import (
    CONTENDERS,
    OPTIONAL_CONTENDERS,
    ClassifierContender,
    Contender,
    DCSettings,
    DiffusionClassifierContender,
    Lineup,
    Measurement,
)
from diffcls.bench.grid import CONDITION_KINDS, PRESETS, BenchPreset, Condition, Task, Training
from diffcls.bench.report import write_report
from diffcls.bench.runner import Benchmark, result_row, run_benchmark
from diffcls.bench.tables import summary_table

__all__ = [
    "run_benchmark",
    "Benchmark",
    "result_row",
    "PRESETS",
    "BenchPreset",
    "Condition",
    "Task",
    "Training",
    "CONDITION_KINDS",
    "CONTENDERS",
    "OPTIONAL_CONTENDERS",
    "Contender",
    "ClassifierContender",
    "DiffusionClassifierContender",
    "DCSettings",
    "Lineup",
    "Measurement",
    "write_report",
    "summary_table",
]
