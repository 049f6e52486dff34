"""The benchmark's grid as data: presets, test conditions, trainings and the tasks (one per results row) they make.

A :class:`BenchPreset` says what a benchmark trains (its contenders, their budgets, seeds, data fractions and
resolutions) and under which conditions it evaluates them. Conditions come in kinds, and a kind says which model
meets it (its :class:`Training`):

* ``clean`` and ``corruption`` — full-data models at the data's size, on clean or corrupted test images;
* ``low_res`` — the DiDiCM paper's protocol: models *trained and tested* at RES×RES (the network's input is RES);
* ``low_res_shift`` — full-data models tested on a RES×RES view resized back (a train/test shift they never saw);
* ``data_ratio`` — the DiDiCM reference's scarce-data protocol: the same epochs on the subset (so fewer steps),
  learning rate × √(1/r);
* ``data_ratio_eq`` — the equal-steps variant: the subset tiled to the full split's length, so every fraction
  gets the same number of optimisation steps.

:meth:`BenchPreset.tasks` lists every row to compute, one :class:`Task` per (contender, training, seed,
condition, readout); the trainings a benchmark needs are the distinct (contender, training, seed) of its tasks.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace

from diffcls.bench.contenders import CONTENDERS, DIDICM, STANDARD_TWIN, Contender, DCSettings, Lineup
from diffcls.data.corruptions import CORRUPTION_FAMILIES, CORRUPTION_NAMES
from diffcls.didicm import SamplerConfig

# The reference's CP readout (the Euler step clamped to [0, 1]): beside the library default in every preset
REFERENCE_CP = SamplerConfig("cp", steps=8, cp_update="euler")

CONDITION_KINDS = {
    "clean": "clean test images",
    "corruption": "corrupted test images",
    "low_res": "trained and tested at RES×RES (the paper's protocol)",
    "low_res_shift": "trained at full size, tested on a RES×RES view resized back (a shift)",
    "data_ratio": "trained on a fraction r of the images for the same epochs, lr × √(1/r) (the reference's protocol)",
    "data_ratio_eq": "trained on a fraction r of the images, tiled to equal optimisation steps (our variant)",
}


@dataclass(frozen=True)
class Training:
    """How a model of the grid is trained, besides its contender's recipe and seed: on which fraction of the
    training pool (tiled to equal steps or not) and at which input resolution (None: the data's default)."""

    ratio: float = 1.0
    equal_steps: bool = False
    resolution: int | None = None

    @property
    def tag(self) -> str:
        """Its part of model folder names and row keys: ``r1``, ``r0.05``, ``r0.05eq``, ``r1-16px``."""
        return (
            f"r{self.ratio:g}"
            + ("eq" if self.equal_steps else "")
            + (f"-{self.resolution}px" if self.resolution else "")
        )


@dataclass(frozen=True)
class Condition:
    """One test condition; ``kind`` is one of :data:`CONDITION_KINDS`."""

    kind: str
    corruption: str | None = None
    severity: int = 0
    low_res: int | None = None
    data_ratio: float = 1.0

    @property
    def label(self) -> str:
        if self.kind == "corruption":
            return f"{self.corruption}/{self.severity}"
        if self.kind in ("low_res", "low_res_shift"):
            return f"{self.kind}/{self.low_res}"
        if self.kind in ("data_ratio", "data_ratio_eq"):
            return f"{self.kind}/{self.data_ratio:g}"
        return "clean"

    @property
    def training(self) -> Training:
        """The training of the models that meet this condition."""
        if self.kind == "low_res":
            return Training(resolution=self.low_res)
        if self.kind in ("data_ratio", "data_ratio_eq"):
            return Training(self.data_ratio, equal_steps=self.kind == "data_ratio_eq")
        return Training()

    @property
    def test_low_res(self) -> int | None:
        """The resolution of the test-time low-resolution view (only the shift condition degrades test images)."""
        return self.low_res if self.kind == "low_res_shift" else None

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
    """One row to compute: a trained model (contender, training, seed) under a condition, read out one way."""

    contender: Contender
    seed: int
    condition: Condition
    readout: object  # one of the contender's readouts (a SamplerConfig, None for a method's own, DCSettings)

    @property
    def training(self) -> Training:
        return self.condition.training

    @property
    def job(self) -> Job:
        """The model the row reads: (contender, training, seed)."""
        return self.contender, self.training, self.seed

    @property
    def key(self) -> str:
        """The row's key in ``rows.jsonl``: a resumed benchmark skips the tasks whose key it holds."""
        return (
            f"{self.contender.key}|{self.training.tag}|s{self.seed}|{self.condition.label}|"
            f"{self.contender.readout_id(self.readout)}"
        )


Job = tuple[Contender, Training, int]
"""A model to train: (contender, training, seed)."""

Cell = tuple[Condition, tuple[int, ...]]
"""(condition, training seeds whose models meet it)."""


@dataclass
class BenchPreset:
    """What a benchmark trains and evaluates. ``epochs`` is every contender's budget unless :attr:`budgets` gives
    it its own (a contender that learns more slowly, as DiDiCM, trains until its validation curve is flat)."""

    name: str
    epochs: int
    budgets: tuple[tuple[str, int], ...] = ()  # (contender key, epochs): budgets other than ``epochs``
    seeds: tuple[int, ...] = (0, 1, 2)
    data_ratios: tuple[float, ...] = (0.5, 0.25, 0.1, 0.05)  # the reference's protocol: same epochs, fewer steps
    equal_steps_ratios: tuple[float, ...] = ()  # the equal-steps variant (each fraction tiled to the full length)
    corruptions: tuple[str, ...] = CORRUPTION_NAMES
    severities: tuple[int, ...] = (1, 2, 3, 4, 5)
    low_res: tuple[int, ...] = (16, 12, 8)  # the paper's protocol: trained and tested at RES
    shift_low_res: tuple[int, ...] = ()  # full-size models tested on a RES view (a train/test shift)
    grid_seeds: int = 3  # training seeds whose models meet the corruption and low-resolution grids
    val_split: float = 0.1  # fraction of the training pool held out: validation curves, the DC's temperature
    train_limit: int | None = None  # a fixed stratified subset of N training images (large data sets on a CPU)
    cp_steps: tuple[int, ...] = (1, 2, 4, 8, 16)
    cl_runs: tuple[tuple[int, int], ...] = ((10, 4), (10, 8), (10, 16))  # (chains, steps)
    hard_condition: tuple[str, int] | None = ("gaussian_noise", 5)  # a second NFE sweep, on hard inputs
    grid_sampler: SamplerConfig = field(default_factory=lambda: SamplerConfig("cp", steps=8))  # the library default
    # Further CP readouts every sampler contender meets the grid with (the tie-free variants beside the grid
    # sampler), e.g. SamplerConfig("cp", steps=8, cp_update="euler-lower")
    extra_readouts: tuple[SamplerConfig, ...] = ()
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

    def epochs_for(self, contender: Contender) -> int:
        """The contender's budget in epochs: its entry of :attr:`budgets`, else :attr:`epochs`."""
        return dict(self.budgets).get(contender.key, self.epochs)

    def seeds_for_ratio(self, ratio: float) -> tuple[int, ...]:
        """All seeds for the full data and the smallest fraction; the first seed for the fractions between."""
        smallest = min(self.data_ratios + self.equal_steps_ratios, default=1.0)
        return self.seeds if ratio in (1.0, smallest) else self.seeds[:1]

    def grid_cells(self) -> list[Cell]:
        """The grid: clean data, each data fraction (both protocols), low resolutions (the paper's protocol, then
        the shift), corruptions × severities."""
        full = self.seeds_for_ratio(1.0)
        grid = full[: self.grid_seeds]
        return (
            [(Condition("clean"), full)]
            + [(Condition("data_ratio", data_ratio=r), self.seeds_for_ratio(r)) for r in self.data_ratios]
            + [(Condition("data_ratio_eq", data_ratio=r), self.seeds_for_ratio(r)) for r in self.equal_steps_ratios]
            + [(Condition("low_res", low_res=s), grid) for s in self.low_res]
            + [(Condition("low_res_shift", low_res=s), grid) for s in self.shift_low_res]
            + [
                (Condition("corruption", corruption=n, severity=s), grid)
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
        return [(condition, seeds) for condition in conditions]

    def tasks(self) -> list[Task]:
        """Every row of the benchmark, condition-major so that each corrupted test set is built once; the sweep
        last, without the rows the grid has already (its grid readouts on grid conditions)."""
        tasks = self._tasks(self.grid_cells(), lambda c: c.grid_readouts(self)) + self._tasks(
            self.sweep_cells(), lambda c: c.sweep_readouts(self)
        )
        return list({t.key: t for t in tasks}.values())

    def trainings(self) -> list[Job]:
        """The models the tasks need, (contender, training, seed), in the order the tasks first need them."""
        jobs: dict[tuple, Job] = {}  # each model once, by value (a contender may compare by identity)
        for t in self.tasks():
            jobs.setdefault((t.contender.key, t.training, t.seed), t.job)
        return list(jobs.values())

    def _tasks(self, cells: list[Cell], readouts: Callable[[Contender], list]) -> list[Task]:
        """Tasks of ``cells``: per condition, per seed, each contender that trains with that seed and meets the
        condition, its readouts."""
        return [
            Task(c, seed, condition, readout)
            for condition, seeds in cells
            for seed in seeds
            for c in self.lineup
            if c.trains_with(seed, self) and c.meets(condition)
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
    # `make demo`: the twin and DiDiCM, each trained to its validation plateau (the training curves in
    # docs/protocols.md), one corruption per family at severities 3 and 5, an 8-px test-time view (the paper's
    # train-and-test low-resolution protocol is in the full preset), on 400 test images, DiDiCM read out by the
    # library's CP-8 (the full preset adds the reference's); within 15 min on 2 CPU cores (README: measured time).
    "quick": BenchPreset(
        name="quick",
        epochs=8,
        budgets=(("didicm", 20),),
        seeds=(0,),
        data_ratios=(),
        grid_seeds=1,
        corruptions=("gaussian_noise", "defocus_blur", "fog", "contrast"),
        severities=(3, 5),
        low_res=(),  # trained at 8 px, DiDiCM needs more than its 20 epochs (val top-1 0.55 and climbing)
        shift_low_res=(8,),
        cp_steps=(1, 2, 4, 8),
        cl_runs=((10, 4),),
        hard_condition=None,  # the NFE sweep on clean images only
        eval_limit=400,
        contenders=(STANDARD_TWIN, DIDICM),
    ),
    # The whole grid with the papers' protocols and the variants beside them: 54 trainings and 982 rows on the
    # default contenders (its CPU time is not measured yet; its report records it): 3 seeds at full data and at 5%
    # (both scarce-data protocols); the paper's low resolution at 16/12/8 px and a 12-px shift; all 19 corruptions
    # at severities 1/3/5 for all 3 seeds; 500 test images; the NFE sweep with the first seed.
    "full": BenchPreset(
        name="full",
        epochs=15,
        budgets=(("didicm", 40), ("didicm-late1", 40)),
        data_ratios=(0.05,),
        equal_steps_ratios=(0.05,),
        severities=(1, 3, 5),
        low_res=(16, 12, 8),
        shift_low_res=(12,),
        cl_runs=((10, 4), (10, 8)),
        eval_limit=500,
        sweep_seeds=1,
        extra_readouts=(REFERENCE_CP,),
    ),
}
