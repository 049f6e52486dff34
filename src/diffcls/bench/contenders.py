"""The contenders of ``diffcls bench``, behind one interface.

A :class:`Contender` is a model in the comparison: how it trains (its method, backbone and recipe) and with
which seeds, how it is read out on the grid and in the NFE sweep, how one row of it is measured, and what the
report shows of it (label, colour, role). There are two kinds:

* :class:`ClassifierContender` — any :class:`~diffcls.methods.ClassifierMethod` on a timm/DiDiRN backbone,
  trained with every seed and measured on the whole (or ``eval_limit``) test split. A method whose readout is a
  DiDiCM sampler (``uses_sampler``) meets the grid with the preset's grid sampler and one-pass, and the NFE sweep
  with every sampler's sweep configurations; any other method with its one readout;
* :class:`DiffusionClassifierContender` — a class-conditional DDPM scored by the Diffusion Classifier
  (:class:`DCSettings`): first seed only, a fixed test subset, its temperature fitted on calibration images.

The report gives contenders roles: the *baseline* is the base of every Δ (the standard twin), the *compared*
contender's first grid readout is what Δ measures (DiDiCM with the grid sampler), the *trajectories* contender
has its CP trajectories drawn, and *swept* contenders (their readouts are samplers) make up the NFE sweep.

:data:`CONTENDERS` are the benchmark's classifiers: a new contender is one more entry there (or in a preset's
``contenders``). A contender's ``key`` names its model folders and its rows, so it must never change.
"""

from __future__ import annotations

import dataclasses
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

import numpy as np
import torch

from diffcls.bench.stats import Row, Series
from diffcls.data import ImageDataset, ImageTransform, Split, TransformConfig, stratified_order
from diffcls.didicm import SAMPLERS, SamplerConfig
from diffcls.eval.diffusion_classifier import (
    DCEvalConfig,
    classify_indices,
    load_noise_model,
    lowest_error,
    lowest_last_stage,
)
from diffcls.eval.evaluate import evaluate_model, select_split
from diffcls.generative.adaptive import Schedule, stagewise_probabilities
from diffcls.generative.calibration import fit_temperature
from diffcls.generative.pretrained import NoiseModel
from diffcls.inference.calibration import fit_probability_temperature
from diffcls.inference.ood import all_ood_metrics, msp_histogram
from diffcls.methods import ClassifierMethod, get_method
from diffcls.models.noise_predictors import scores_all_classes
from diffcls.runtime.io import JsonlLog
from diffcls.train.config import TrainConfig

if TYPE_CHECKING:
    from diffcls.bench.grid import BenchPreset, Condition, Task, Training
    from diffcls.bench.runner import Benchmark

READOUT_COLUMNS = ("sampler", "cp_update", "steps", "chains")  # a row's fields naming its readout
ONE_PASS = SamplerConfig("onepass")  # every sampler contender's second grid readout: 1 network call per image


@dataclass
class Measurement:
    """What evaluating one task measured: class probabilities ``float[N, K]`` and labels ``int64[N]`` of its test
    images, the seconds it took, network evaluations per image, and fields only this contender's rows carry."""

    probs: torch.Tensor
    labels: torch.Tensor
    seconds: float
    nfe: int
    extra: dict = field(default_factory=dict)
    # Temperature scaling fitted on the validation split (None: not fitted): T of p ∝ p^(1/T) for classifiers,
    # lambda of softmax(-lambda * error) for the Diffusion Classifier, which gives its ``calibrated`` probabilities
    # itself (for classifiers they are ``probs`` at T).
    temperature: float | None = None
    calibrated: torch.Tensor | None = None
    # int64[N], the method's own decision where it is not the argmax of ``probs`` (the Diffusion Classifier's
    # survivor of elimination, which a class eliminated earlier can outweigh in the stage-wise probabilities)
    prediction: torch.Tensor | None = None


@dataclass(frozen=True, eq=False)
class Contender:
    """A model in the comparison. Subclasses say how it is read out and measured; this base class holds what the
    report shows and the recipe every contender shares."""

    key: str  # names its model folders (models/<key>-<training>-s<seed>) and the first part of its row keys
    label: str  # its name in tables, plots and rows
    method: str  # the registered method it trains with
    model: str  # the backbone
    colour: str | None = None  # matplotlib colour of its training curves (and of the gain, when compared)
    short: str = ""  # its name in Δ headers, e.g. "twin" ("": the label)
    description: str = ""  # what it is, for the report's list of contenders ("": not listed there)
    baseline: bool = False  # the base of every Δ
    compared: bool = False  # its first grid readout is what every Δ measures
    trajectories: bool = False  # its first full-data model has its CP trajectories recorded
    full_test_split: ClassVar[bool] = True  # measured on the whole (eval_limit) test split, not a subset of it

    @property
    def name(self) -> str:
        """Its short name, in Δ headers."""
        return self.short or self.label

    @property
    def swept(self) -> bool:
        """Whether its readouts make up the NFE sweep (their rows carry sampler fields)."""
        return False

    def trains_with(self, seed: int, preset: BenchPreset) -> bool:
        """Whether it trains (and meets conditions) with ``seed``."""
        return True

    def meets(self, condition: Condition) -> bool:
        """Whether it is measured under ``condition`` (every condition by default)."""
        return True

    def train_config(
        self, preset: BenchPreset, training: Training, seed: int, *, data: str, output: str, device: str
    ) -> TrainConfig:
        """One recipe for all: the preset's batch, lr and warm-up, the contender's budget, the preset's validation
        split; the training's data fraction (by the reference's protocol, or tiled to equal steps) and input
        resolution."""
        return TrainConfig(
            data=data,
            method=self.method,
            model=self.model,
            output=output,
            epochs=preset.epochs_for(self),
            batch_size=preset.batch_size,
            lr=preset.lr,
            warmup_epochs=preset.warmup_epochs,
            data_ratio=training.ratio,
            equal_steps=training.equal_steps,
            ratio_lr=training.ratio < 1.0 and not training.equal_steps,
            img_size=training.resolution,
            val_split=preset.val_split,
            train_limit=preset.train_limit,
            seed=seed,
            device=device,
            val_sampler=preset.train_val_sampler,
        )

    def grid_readouts(self, preset: BenchPreset) -> list:
        """The readouts it meets every grid condition with (what :meth:`evaluate` takes as ``task.readout``)."""
        raise NotImplementedError

    def sweep_readouts(self, preset: BenchPreset) -> list:
        """The readouts it meets the NFE sweep's conditions with (none: it stays out of the sweep)."""
        raise NotImplementedError

    def readout_label(self, readout) -> str:
        """The rows' ``readout``: a display name, e.g. ``softmax``, ``CP-8``."""
        raise NotImplementedError

    def readout_id(self, readout) -> str:
        """The last part of a row key: it identifies the readout and every setting its numbers depend on."""
        raise NotImplementedError

    def readout_fields(self, readout) -> dict:
        """A row's fields naming its readout: ``readout`` (the label), then :data:`READOUT_COLUMNS`."""
        raise NotImplementedError

    def evaluate(self, task: Task, split: Split, runner: Benchmark) -> Measurement | None:
        """Measure ``task`` on the (corrupted) test ``split``; None on torchrun ranks that do not hold the result."""
        raise NotImplementedError

    def series_label(self, readout: str) -> str:
        """The label of its series read out by ``readout`` (a readout label)."""
        return self.label

    def report_notes(self, rows: list[Row], preset: BenchPreset) -> list[str]:
        """Paragraphs of its own for the report (how its cells were measured); none by default."""
        return []


def ood_fields(
    in_probs: torch.Tensor, in_native: dict, measured: dict[str, tuple[torch.Tensor, dict]]
) -> dict[str, dict]:
    """A clean row's OOD fields: ``ood`` = ``{OOD set: {score: ood_metrics}}`` and ``ood_msp_hist`` = msp counts
    (:func:`~diffcls.inference.ood.msp_histogram`) of the in-distribution images and of each OOD set. ``measured``:
    ``{OOD set: (probs float[M, K], native scores {name: float[M]})}``; ``in_native`` those of the test images."""
    return {
        "ood": {spec: all_ood_metrics(in_probs, p, in_native, native) for spec, (p, native) in measured.items()},
        "ood_msp_hist": {"in-distribution": msp_histogram(in_probs)}
        | {spec: msp_histogram(p) for spec, (p, _) in measured.items()},
    }


@dataclass(frozen=True, eq=False)
class ClassifierContender(Contender):
    """A :class:`~diffcls.methods.ClassifierMethod` on a timm/DiDiRN backbone: readouts come from the method."""

    @property
    def classifier(self) -> ClassifierMethod:
        return get_method(self.method)

    @property
    def swept(self) -> bool:
        return self.classifier.uses_sampler

    def grid_readouts(self, preset: BenchPreset) -> list[SamplerConfig | None]:
        return list(dict.fromkeys([preset.grid_sampler, *preset.extra_readouts, ONE_PASS])) if self.swept else [None]

    def sweep_readouts(self, preset: BenchPreset) -> list[SamplerConfig | None]:
        if not self.swept:
            return [None]  # its one readout, for scale
        return [config for spec in SAMPLERS.values() for config in spec.sweep(preset.cp_steps, preset.cl_runs)]

    def _fields(self, readout: SamplerConfig | None) -> dict:
        fields = readout.fields() if readout is not None else self.classifier.readout_fields(None)
        return {k: fields.get(k) for k in READOUT_COLUMNS}

    def readout_label(self, readout: SamplerConfig | None) -> str:
        return readout.label if readout is not None else self._fields(None)["sampler"]

    def readout_id(self, readout: SamplerConfig | None) -> str:
        return readout.key if readout is not None else self.readout_label(None)

    def readout_fields(self, readout: SamplerConfig | None) -> dict:
        return {"readout": self.readout_label(readout), **self._fields(readout)}

    def evaluate(self, task: Task, split: Split, runner: Benchmark) -> Measurement:
        folder = runner.model_dir(self, task.training, task.seed)
        model, mconfig = runner.load_classifier(folder)
        transform = TransformConfig.from_dict(mconfig["transform"])
        transform.low_res = task.condition.test_low_res
        # OOD detection on clean rows of the grid readouts (the NFE sweep's readouts would multiply its cost)
        with_ood = task.condition.kind == "clean" and task.readout in self.grid_readouts(runner.preset)
        in_native = {} if with_ood else None
        metrics, probs = self._measure(model, split, transform, task.readout, runner, runner.progress, in_native)
        key = ("temperature", folder, self.readout_id(task.readout))
        temperature = runner.cached(key, lambda: self._fit_temperature(model, mconfig, task.readout, runner))
        extra = {}
        if with_ood:
            measured = {}
            for spec, ood in runner.ood_splits().items():
                out_native = {}
                ood_probs = self._measure(model, ood, transform, task.readout, runner, False, out_native)[1]
                measured[spec] = (ood_probs, out_native)
            extra = ood_fields(probs, in_native, measured)
        return Measurement(
            probs,
            torch.as_tensor(split.labels),
            metrics["seconds"],
            metrics["nfe_per_image"],
            extra,
            temperature=temperature,
        )

    def _measure(
        self, model, split: Split, transform: TransformConfig, readout, runner: Benchmark, progress, scores=None
    ):
        return evaluate_model(
            self.classifier,
            model,
            split,
            transform,
            readout,
            device=runner.device,
            seed=0,
            batch_size=256,
            progress=progress,
            dist=runner.dist,
            scores_out=scores,
        )

    def _fit_temperature(self, model, mconfig: dict, readout, runner: Benchmark) -> float | None:
        """T fitted by NLL on the model's clean validation split at its own input resolution, with ``readout``
        (once per model and readout; every condition's rows use it). None without a validation split."""
        p = runner.preset
        if not p.val_split:
            return None
        val = select_split(runner.source, "val", train_limit=p.train_limit, val_split=p.val_split)
        _, probs = self._measure(model, val, TransformConfig.from_dict(mconfig["transform"]), readout, runner, False)
        return fit_probability_temperature(probs, torch.as_tensor(val.labels))

    def series_label(self, readout: str) -> str:
        return f"{self.label} {readout}" if self.swept else self.label


@dataclass
class DCSettings:
    """The Diffusion Classifier as a further contender (``diffcls bench --diffusion-classifier``).

    A class-conditional UNet (DDPM) is trained at every data fraction with the first seed only, and classifies a
    fixed stratified subset of the test split under every condition (thousands of network evaluations per image
    make the whole split too slow on a CPU). Its temperature lambda is fitted once per model on images of the
    validation split, so its NLL and ECE mean something; the standard models get no temperature scaling. It
    trains at its own resolution, so it stays out of the paper's low-resolution protocol (its shift rows remain).
    """

    model: str = "unet_small"
    epochs: int | None = None  # None: the preset's budget
    # Its own recipe: a DDPM needs many more optimisation steps than a classifier (batch 128 for 15 epochs left
    # a unet_small at chance on mnist5k; batch 32 with an EMA of the weights reached 0.84 by epoch 13), and it
    # runs at 16 px, where a unet_small step costs a third of 32 px, so the grid's thousands of network calls fit
    # a CPU. A model's low-resolution views at 16 px and above are therefore no degradation for it.
    img_size: int | None = 16  # None: the data's default size, as the other contenders
    batch_size: int = 32
    lr: float = 1e-3
    ema_decay: float | None = 0.995
    test_images: int = 50  # the fixed subset every DC row is measured on
    calibration_images: int = 50  # validation images on which lambda is fitted
    n_samples: tuple[int, ...] = (4, 16)  # nested timestep grids per stage (see diffcls.generative.adaptive)
    to_keep: tuple[int, ...] = (2, 1)  # classes kept after each stage
    val_images: int = 50  # validation images of the per-epoch validation (a flat 4-timestep classifier)

    @property
    def schedule(self) -> Schedule:
        return Schedule(tuple(self.n_samples), tuple(self.to_keep))

    @property
    def readout(self) -> str:
        """Display name, e.g. ``DC 4→16 t, keep 2→1``."""
        return f"DC {'→'.join(map(str, self.n_samples))} t, keep {'→'.join(map(str, self.to_keep))}"

    @property
    def readout_id(self) -> str:
        """What a row key records of these settings: rows of other settings are not reused."""
        return (
            f"dc-n{','.join(map(str, self.n_samples))}-k{','.join(map(str, self.to_keep))}"
            f"-i{self.test_images}-c{self.calibration_images}"
        )

    def contender(self) -> DiffusionClassifierContender:
        return DiffusionClassifierContender(
            "dc", "Diffusion Classifier", "ddpm", self.model, colour="C4", settings=self
        )


@dataclass(frozen=True, eq=False)
class DiffusionClassifierContender(Contender):
    """A DDPM scored by the Diffusion Classifier; its one readout is its :class:`DCSettings`. It stays out of the
    NFE sweep; per-image outcomes go to resumable JSONL logs under ``dc/``."""

    settings: DCSettings = field(default_factory=DCSettings)
    full_test_split: ClassVar[bool] = False

    def trains_with(self, seed: int, preset: BenchPreset) -> bool:
        return seed == preset.seeds[0]

    def meets(self, condition: Condition) -> bool:
        return condition.kind != "low_res"  # it trains at its own img_size (see DCSettings)

    def train_config(
        self, preset: BenchPreset, training: Training, seed: int, *, data: str, output: str, device: str
    ) -> TrainConfig:
        s = self.settings
        config = super().train_config(preset, training, seed, data=data, output=output, device=device)
        return dataclasses.replace(
            config,
            epochs=s.epochs or preset.epochs_for(self),
            img_size=s.img_size,
            batch_size=s.batch_size,
            lr=s.lr,
            ema_decay=s.ema_decay,
            ratio_lr=False,  # the reference's rule is for its classifiers; a DDPM keeps its own lr
            val_images=s.val_images,
            val_steps=4,
        )

    def grid_readouts(self, preset: BenchPreset) -> list[DCSettings]:
        return [self.settings]

    def sweep_readouts(self, preset: BenchPreset) -> list:
        return []

    def readout_label(self, readout: DCSettings) -> str:
        return readout.readout

    def readout_id(self, readout: DCSettings) -> str:
        return readout.readout_id

    def readout_fields(self, readout: DCSettings) -> dict:
        return {"readout": readout.readout, **dict.fromkeys(READOUT_COLUMNS), "sampler": "diffusion-classifier"}

    def test_subset(self, runner: Benchmark) -> np.ndarray:
        """The indices of the fixed stratified subset of the (eval_limit) test split that every DC row measures."""
        order = stratified_order(select_split(runner.source, "test", runner.preset.eval_limit).labels)
        return order[: self.settings.test_images]

    def evaluate(self, task: Task, split: Split, runner: Benchmark) -> Measurement | None:
        """The fixed test subset under ``task``'s condition. Under torchrun the ranks share the images and rank 0
        gets the measurement (the others None)."""
        folder = runner.model_dir(self, task.training, task.seed)
        cfg, model, temperature = self._scorer(folder, runner)
        transform = TransformConfig.from_dict(asdict(model.transform))
        transform.low_res = task.condition.test_low_res
        name = f"{folder.name}-{task.condition.label.replace('/', '-')}-{self.settings.readout_id}.jsonl"
        classes = list(range(runner.source.num_classes))
        classified = classify_indices(
            cfg,
            model,
            ImageDataset(split, ImageTransform(transform)),
            self.test_subset(runner),
            classes,
            self._log(runner, name),
            runner.progress,
            runner.dist,
        )
        ood_means = {}  # OOD detection on the clean rows, on as many images of each OOD set
        if task.condition.kind == "clean":
            for spec, ood in runner.ood_splits().items():
                subset = stratified_order(ood.labels)[: self.settings.test_images]
                safe = spec.replace(":", "-").replace("/", "-")
                log = self._log(runner, f"{folder.name}-ood-{safe}-{self.settings.readout_id}.jsonl")
                dataset = ImageDataset(ood, ImageTransform(transform))
                done = classify_indices(cfg, model, dataset, subset, classes, log, runner.progress, runner.dist)
                ood_means[spec] = None if done is None else done[0]
        if classified is None:
            return None
        means, labels, seconds = classified
        calibrated = stagewise_probabilities(means, temperature).float()
        extra = {}
        if ood_means:  # scored by the calibrated probabilities: at lambda = 1 they are nearly uniform
            measured = {
                spec: (stagewise_probabilities(m, temperature).float(), {"lowest_error": lowest_error(m)})
                for spec, m in ood_means.items()
            }
            extra = ood_fields(calibrated, {"lowest_error": lowest_error(means)}, measured)
        return Measurement(
            stagewise_probabilities(means, 1.0).float(),  # the raw Bayes rule: softmax(-error)
            labels,
            seconds,
            self.settings.schedule.nfe(runner.source.num_classes, scores_all_classes(model.eps_fn)),
            extra,
            temperature=temperature,
            calibrated=calibrated,
            prediction=lowest_last_stage(means),  # the candidates are the classes
        )

    def _scorer(self, folder: Path, runner: Benchmark) -> tuple[DCEvalConfig, NoiseModel, float]:
        """The scoring settings, the noise model of ``folder`` and its lambda (softmax(-lambda * error))."""
        cfg = DCEvalConfig(
            data=runner.data, checkpoint=str(folder), schedule=self.settings.schedule, device=runner.device
        )
        model, temperature = runner.cached(folder, lambda: self._load(cfg, folder, runner))
        return cfg, model, temperature

    def _load(self, cfg: DCEvalConfig, folder: Path, runner: Benchmark) -> tuple[NoiseModel, float]:
        """The noise model and its lambda, fitted on the first calibration images of the validation split."""
        model = load_noise_model(cfg, runner.source.class_names)
        p = runner.preset
        val = select_split(runner.source, "val", train_limit=p.train_limit, val_split=p.val_split)
        clean = ImageDataset(val, ImageTransform(model.transform))
        calibration = stratified_order(val.labels)[: self.settings.calibration_images]
        log = self._log(runner, f"{folder.name}-calibration-{self.settings.readout_id}.jsonl")
        classified = classify_indices(
            cfg, model, clean, calibration, list(range(runner.source.num_classes)), log, runner.progress, runner.dist
        )
        temperature = None
        if classified is not None:  # rank 0 fits lambda and tells the others
            means, labels, _ = classified
            temperature = fit_temperature(means, labels) if len(calibration) >= 2 else 1.0
        return model, runner.dist.broadcast(temperature)

    @staticmethod
    def _log(runner: Benchmark, name: str) -> JsonlLog | None:
        """The per-image log ``dc/<name>`` (on rank 0; the other ranks log nothing)."""
        (runner.out / "dc").mkdir(exist_ok=True)
        return JsonlLog(runner.out / "dc" / name) if runner.dist.is_main else None

    def report_notes(self, rows: list[Row], preset: BenchPreset) -> list[str]:
        mine = [r for r in rows if r["contender"] == self.key]
        if not mine:
            return []
        s, first = self.settings, mine[0]
        low_res = (
            f", images at {s.img_size} px (so low-resolution views at {s.img_size} px and above do not degrade them)"
            if s.img_size
            else ""
        )
        recipe = (
            f" Its own training recipe (a DDPM needs more optimisation steps than a classifier): "
            f"{s.epochs or preset.epochs_for(self)} epochs at batch {s.batch_size}, lr {s.lr:g}, EMA {s.ema_decay}"
            f"{low_res}."
        )
        return [
            "",
            f"**{self.label}** ({first['model']}, DDPM; readout `{first['readout']}`, {first['nfe']} "
            f"network evaluations per image): seed {first['seed']} only, each cell measured on a fixed "
            f"stratified subset of {first['num_samples']} test images (the other contenders use the whole "
            f"test split); its raw probabilities are softmax(−error) (λ = 1, nearly uniform), and after "
            f"temperature scaling softmax(−λ·error) with λ fitted on validation images "
            f"(λ = {first['temperature']:.4g})." + recipe,
        ]


STANDARD_TWIN = ClassifierContender(
    "standard",
    "standard twin",
    "standard",
    "didirn_small",
    colour="C0",
    short="twin",
    baseline=True,
    description="DiDiRN without the label/noise conditioning, cross-entropy",
)
PLAIN_RESNET = ClassifierContender(
    "plain", "plain ResNet", "standard", "resnet_small", colour="C1", description="same widths, BatchNorm only"
)
DIDICM = ClassifierContender(
    "didicm",
    "DiDiCM",
    "didicm",
    "didirn_small",
    colour="C2",
    compared=True,
    trajectories=True,
    description="score entropy on the same DiDiRN",
)
CONTENDERS: tuple[Contender, ...] = (STANDARD_TWIN, PLAIN_RESNET, DIDICM)
DIDICM_LATE1 = ClassifierContender(
    "didicm-late1",
    "DiDiCM late-1",
    "didicm",
    "didirn_small_late1",
    colour="C5",
    description="DiDiCM whose last stage alone sees the label and σ, so the first stages run once per image",
)
# Contenders a benchmark can add by name (``diffcls bench --with NAME``); each may join a finished benchmark.
OPTIONAL_CONTENDERS: dict[str, Contender] = {"late1": DIDICM_LATE1}


@dataclass(frozen=True)
class Lineup:
    """The contenders of one benchmark in table order, looked up by key and by role."""

    contenders: tuple[Contender, ...]

    @classmethod
    def default(cls) -> Lineup:
        """:data:`CONTENDERS` and the Diffusion Classifier: what rows without a preset are read against."""
        return cls(CONTENDERS + (DCSettings().contender(),))

    @classmethod
    def of(cls, preset: BenchPreset | None) -> Lineup:
        """The preset's lineup, or the default one for rows read without a preset."""
        return preset.lineup if preset is not None else cls.default()

    def __iter__(self):
        return iter(self.contenders)

    def get(self, key: str) -> Contender | None:
        return next((c for c in self.contenders if c.key == key), None)

    @property
    def baseline(self) -> Contender | None:
        return next((c for c in self.contenders if c.baseline), None)

    @property
    def compared(self) -> Contender | None:
        return next((c for c in self.contenders if c.compared), None)

    @property
    def trajectory(self) -> Contender | None:
        """The contender whose CP trajectories are recorded."""
        return next((c for c in self.contenders if c.trajectories), None)

    @property
    def swept(self) -> list[Contender]:
        return [c for c in self.contenders if c.swept]

    def series(self, rows: list[Row], preset: BenchPreset | None = None) -> list[Series]:
        """The tables' columns and the plots' lines: each contender's grid readouts that have rows. Without a
        preset, a contender's grid readouts are those it was measured with under every condition it met."""
        series = []
        for c in self.contenders:
            mine = [r for r in rows if r["contender"] == c.key]
            readouts = [c.readout_label(x) for x in c.grid_readouts(preset)] if preset else _everywhere(mine)
            series += [Series(c.key, x, c.series_label(x)) for x in readouts if any(r["readout"] == x for r in mine)]
        return series

    def gain_pair(self, series: list[Series]) -> tuple[Series, Series] | None:
        """(the baseline's series, the compared contender's first series): the pair every Δ compares."""

        def first(contender: Contender | None) -> Series | None:
            return next((s for s in series if contender and s.contender == contender.key), None)

        base, new = first(self.baseline), first(self.compared)
        return (base, new) if base and new else None


def _everywhere(rows: list[Row]) -> list[str]:
    """The readouts of ``rows`` (one contender's) present under every condition they cover, in row order."""
    conditions = {r["condition"] for r in rows}
    readouts = list(dict.fromkeys(r["readout"] for r in rows))
    return [x for x in readouts if {r["condition"] for r in rows if r["readout"] == x} == conditions]
