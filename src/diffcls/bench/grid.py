"""The benchmark's grid as data: presets, test conditions and the tasks (one per results row) they make.

A :class:`BenchPreset` says what a benchmark trains (its contenders, the budget, seeds and data fractions) and
under which conditions it evaluates them: clean test data; corruptions × severities; low-resolution views; each
data fraction (a separate set of trainings, tiled to the full split's length so every fraction gets the same
number of optimisation steps); and the NFE sweep on clean data and one hard condition. :meth:`BenchPreset.tasks`
lists every row to compute, one :class:`Task` per (contender, data ratio, seed, condition, readout).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace

from diffcls.bench.contenders import CONTENDERS, Contender, DCSettings, Lineup
from diffcls.data.corruptions import CORRUPTION_FAMILIES, CORRUPTION_NAMES
from diffcls.didicm import SamplerConfig


@dataclass(frozen=True)
class Condition:
    """One test condition. ``kind``: clean, corruption, low_res or data_ratio (clean test, fewer training images)."""

    kind: str
    corruption: str | None = None
    severity: int = 0
    low_res: int | None = None
    data_ratio: float = 1.0

    @property
    def label(self) -> str:
        if self.kind == "corruption":
            return f"{self.corruption}/{self.severity}"
        if self.kind == "low_res":
            return f"low_res/{self.low_res}"
        if self.kind == "data_ratio":
            return f"data_ratio/{self.data_ratio:g}"
        return "clean"

    def fields(self) -> dict:
        """A row's fields naming its condition."""
        return {
            "condition": self.label,
            "kind": self.kind,
            "corruption": self.corruption,
            "family": CORRUPTION_FAMILIES.get(self.corruption) if self.corruption else None,
            "severity": self.severity,
            "low_res": self.low_res,
            "data_ratio": self.data_ratio,
        }


@dataclass(frozen=True)
class Task:
    """One row to compute: a trained model (contender, data ratio, seed) under a condition, read out one way."""

    contender: Contender
    ratio: float
    seed: int
    condition: Condition
    readout: object  # one of the contender's readouts (a SamplerConfig, None for a method's own, DCSettings)

    @property
    def key(self) -> str:
        """The row's key in ``rows.jsonl``: a resumed benchmark skips the tasks whose key it holds."""
        return (
            f"{self.contender.key}|r{self.ratio:g}|s{self.seed}|{self.condition.label}|"
            f"{self.contender.readout_id(self.readout)}"
        )


Cell = tuple[Condition, float, tuple[int, ...]]
"""(condition, training data fraction of the models, training seeds that meet it)."""


@dataclass
class BenchPreset:
    """What a benchmark trains and evaluates. ``epochs`` is the budget of every contender at every data fraction."""

    name: str
    epochs: int
    seeds: tuple[int, ...] = (0, 1, 2)
    data_ratios: tuple[float, ...] = (0.5, 0.25, 0.1, 0.05)
    corruptions: tuple[str, ...] = CORRUPTION_NAMES
    severities: tuple[int, ...] = (1, 2, 3, 4, 5)
    low_res: tuple[int, ...] = (16, 12, 8)
    grid_seeds: int = 3  # training seeds whose models meet the corruption and low-resolution grids
    cp_steps: tuple[int, ...] = (1, 2, 4, 8, 16)
    cl_runs: tuple[tuple[int, int], ...] = ((10, 4), (10, 8), (10, 16))  # (chains, steps)
    hard_condition: tuple[str, int] | None = ("gaussian_noise", 5)  # a second NFE sweep, on hard inputs
    grid_sampler: SamplerConfig = field(default_factory=lambda: SamplerConfig("cp", steps=8, cp_update="euler"))
    batch_size: int = 128
    # DiDiCM's per-epoch validation (the training curves): the one-pass readout costs 1 network evaluation per
    # image where CP-8 costs 8, which would add about half to each DiDiCM epoch on a CPU
    train_val_sampler: str = "onepass"
    lr: float | None = None  # None: the training default (AdamW 2e-3 × batch / 256)
    warmup_epochs: int = 1
    eval_limit: int | None = None  # evaluate a fixed stratified subset of N test images (CPU budgets, huge test sets)
    sweep_seeds: int | None = None  # full-data seeds whose swept contenders run the NFE sweep (None: all)
    trajectory_images: int = 3  # easy and hard images each in the CP trajectory figure
    diffusion_classifier: DCSettings | None = None  # a further contender; None: not in the comparison
    # The classifier contenders. Not recorded in bench.json: like the Diffusion Classifier, a contender can join
    # (or leave) a finished benchmark, adding (or dropping) only its own rows and models, which its key names.
    contenders: tuple[Contender, ...] = CONTENDERS

    @property
    def lineup(self) -> Lineup:
        """Every contender of the comparison: :attr:`contenders`, then the Diffusion Classifier if it is in."""
        dc = self.diffusion_classifier
        return Lineup(self.contenders + ((dc.contender(),) if dc else ()))

    def seeds_for_ratio(self, ratio: float) -> tuple[int, ...]:
        """All seeds for the full data and the smallest fraction; the first seed for the fractions between."""
        smallest = min(self.data_ratios, default=1.0)
        return self.seeds if ratio in (1.0, smallest) else self.seeds[:1]

    def grid_cells(self) -> list[Cell]:
        """The grid: clean data, each data fraction, low resolutions, corruptions × severities."""
        full = self.seeds_for_ratio(1.0)
        grid = full[: self.grid_seeds]
        return (
            [(Condition("clean"), 1.0, full)]
            + [(Condition("data_ratio", data_ratio=r), r, self.seeds_for_ratio(r)) for r in self.data_ratios]
            + [(Condition("low_res", low_res=s), 1.0, grid) for s in self.low_res]
            + [
                (Condition("corruption", corruption=n, severity=s), 1.0, grid)
                for n in self.corruptions
                for s in self.severities
            ]
        )

    def sweep_cells(self) -> list[Cell]:
        """The NFE sweep: clean data and the hard condition, with the first ``sweep_seeds`` full-data seeds."""
        conditions = [Condition("clean")]
        if self.hard_condition:
            name, severity = self.hard_condition
            conditions.append(Condition("corruption", corruption=name, severity=severity))
        seeds = self.seeds_for_ratio(1.0)[: self.sweep_seeds]
        return [(condition, 1.0, seeds) for condition in conditions]

    def tasks(self) -> list[Task]:
        """Every row of the benchmark, condition-major so that each corrupted test set is built once; the sweep
        last, without the rows the grid has already (its grid readouts on grid conditions)."""
        tasks = self._tasks(self.grid_cells(), lambda c: c.grid_readouts(self)) + self._tasks(
            self.sweep_cells(), lambda c: c.sweep_readouts(self)
        )
        return list({t.key: t for t in tasks}.values())

    def _tasks(self, cells: list[Cell], readouts: Callable[[Contender], list]) -> list[Task]:
        """Tasks of ``cells``: per condition, per seed, each contender training with that seed, its readouts."""
        return [
            Task(c, ratio, seed, condition, readout)
            for condition, ratio, seeds in cells
            for seed in seeds
            for c in self.lineup
            if c.trains_with(seed, self)
            for readout in readouts(c)
        ]

    def to_dict(self) -> dict:
        """The preset as ``bench.json`` records it (every field but :attr:`contenders`)."""
        d = asdict(replace(self, contenders=()))
        del d["contenders"]
        return d

    def comparable(self) -> dict:
        """What must match for an output folder to be resumed: the recorded preset less the Diffusion
        Classifier's settings, as it reads back from JSON."""
        return comparable(jsonable(self.to_dict()))


def comparable(preset: dict) -> dict:
    """A recorded preset's fields less the Diffusion Classifier's, which can join (or leave) a finished benchmark,
    adding (or dropping) only its own rows."""
    return {k: v for k, v in preset.items() if k != "diffusion_classifier"}


def jsonable(value):
    """The value as it reads back from JSON (tuples become lists), for comparing with a stored manifest."""
    return json.loads(json.dumps(value))


PRESETS = {
    # `make demo`: the three trainings plus one corruption per family, on 500 test images; 9.5 min on 2 CPU cores.
    "quick": BenchPreset(
        name="quick",
        epochs=10,
        seeds=(0,),
        data_ratios=(),
        grid_seeds=1,
        corruptions=("gaussian_noise", "defocus_blur", "fog", "contrast"),
        severities=(1, 3, 5),
        low_res=(16, 8),
        cp_steps=(1, 2, 4, 8),
        cl_runs=((10, 4),),
        eval_limit=500,
    ),
    # The whole grid, sized for about 2 h on 2 CPU cores (docs/benchmarks/mnist5k/report.md has the measured
    # time): 3 seeds at full data and at 5%; all 19 corruptions at severities 1/3/5 for all 3 seeds; 500 test
    # images; the NFE sweep with the first seed.
    "full": BenchPreset(
        name="full",
        epochs=15,
        data_ratios=(0.05,),
        severities=(1, 3, 5),
        cl_runs=((10, 4), (10, 8)),
        eval_limit=500,
        sweep_seeds=1,
    ),
}
