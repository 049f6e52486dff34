"""``diffcls bench``: DiDiCM against its standard twin and a plain ResNet under uncertainty.

The benchmark trains three contenders with one recipe, one budget and the same seeds:

* ``standard`` — DiDiRN's *standard twin*: the same network without the label/noise conditioning, cross-entropy;
* ``plain``    — the paper's kind of baseline: a plain ResNet of the same widths (BatchNorm only);
* ``didicm``   — DiDiCM on the DiDiRN backbone, read out by the CP sampler and by the one-pass readout;

so ``didicm − standard`` is what the diffusion adds and ``standard − plain`` what DiDiRN's architecture adds.
It then evaluates a grid of conditions, one row per (contender, sampler, training seed, condition):
clean test data; corruptions × severities; low-resolution views; each data fraction (a separate set of trainings,
tiled to the full split's length so every fraction gets the same number of optimisation steps); and DiDiCM's NFE
sweep (CP Euler and analytic over steps, CL chains × steps, one-pass) on clean data and one hard condition.

Output folder::

    models/<contender>-r<ratio>-s<seed>/   checkpoints: reused when complete, resumed when interrupted
    rows.jsonl                             one line per finished row: the resume log
    results.csv, results.json              all rows (written atomically)
    trajectories.json                      CP class-probability trajectories of a few easy and hard images
    report.md, plots/*.png                 see :mod:`diffcls.eval.report`
    cache/                                 corrupted test sets

A killed benchmark restarted with the same command keeps its finished rows and trained checkpoints.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn

from diffcls.data import ImageDataset, ImageTransform, Split, TransformConfig, load_source, stratified_order
from diffcls.data.corruptions import CORRUPTION_FAMILIES, CORRUPTION_NAMES, check_corruption, default_corruption_set
from diffcls.didicm import SamplerConfig, cp_sample
from diffcls.errors import DiffclsError
from diffcls.eval.evaluate import corrupt_split, evaluate_model, select_split
from diffcls.inference.metrics import classification_metrics, reliability_bins
from diffcls.inference.predict import bind_image
from diffcls.eval.diffusion_classifier import DCEvalConfig, classify_indices, load_noise_model
from diffcls.generative.adaptive import Schedule, stagewise_probabilities
from diffcls.generative.calibration import fit_temperature
from diffcls.generative.pretrained import NoiseModel
from diffcls.methods import get_method, load_classifier, train
from diffcls.runtime.io import JsonlLog, atomic_write, prepare_output_dir, write_json
from diffcls.runtime.checkpoint import CONFIG_NAME, METRICS_NAME, STATE_NAME
from diffcls.runtime.distributed import SINGLE_PROCESS, Dist, rank_device
from diffcls.train.config import TrainConfig
from diffcls.runtime.device import resolve_device


TRAJECTORY_POOL = 512  # test images among which the trajectory figure picks its easy and hard examples


@dataclass(frozen=True)
class Contender:
    """A model in the comparison: its key, display label, training method and backbone."""

    key: str
    label: str
    method: str
    model: str


CONTENDERS = (
    Contender("standard", "standard twin", "standard", "didirn_small"),
    Contender("plain", "plain ResNet", "standard", "resnet_small"),
    Contender("didicm", "DiDiCM", "didicm", "didirn_small"),
)
DC_KEY = "dc"


@dataclass
class DCSettings:
    """The Diffusion Classifier as a fourth contender (``diffcls bench --diffusion-classifier``).

    A class-conditional UNet (DDPM) is trained at every data fraction with the first seed only, and classifies a
    fixed stratified subset of the test split under every condition (thousands of network evaluations per image
    make the whole split too slow on a CPU). Its temperature lambda is fitted once per model on other clean test
    images, so its NLL and ECE mean something; the standard models get no temperature scaling.
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
    calibration_images: int = 50  # other clean test images on which lambda is fitted
    n_samples: tuple[int, ...] = (4, 16)  # nested timestep grids per stage (see diffcls.generative.adaptive)
    to_keep: tuple[int, ...] = (2, 1)  # classes kept after each stage
    val_images: int = 50  # test images of the per-epoch validation (a flat 4-timestep classifier)

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
        return (f"dc-n{','.join(map(str, self.n_samples))}-k{','.join(map(str, self.to_keep))}"
                f"-i{self.test_images}-c{self.calibration_images}")

    def contender(self) -> Contender:
        return Contender(DC_KEY, "Diffusion Classifier", "ddpm", self.model)


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
    sweep_seeds: int | None = None  # full-data seeds whose DiDiCM models run the NFE sweep (None: all)
    trajectory_images: int = 3  # easy and hard images each in the CP trajectory figure
    diffusion_classifier: DCSettings | None = None  # a fourth contender; None: not in the comparison

    @property
    def contenders(self) -> tuple[Contender, ...]:
        dc = self.diffusion_classifier
        return CONTENDERS + ((dc.contender(),) if dc else ())

    def trains_with(self, contender: Contender, seed: int) -> bool:
        """Whether a contender trains (and meets conditions) with a seed: every seed, the first only for the DC."""
        return contender.key != DC_KEY or seed == self.seeds[0]

    def seeds_for_ratio(self, ratio: float) -> tuple[int, ...]:
        """All seeds for the full data and the smallest fraction; the first seed for the fractions between."""
        smallest = min(self.data_ratios, default=1.0)
        return self.seeds if ratio in (1.0, smallest) else self.seeds[:1]

    def to_dict(self) -> dict:
        d = asdict(self)
        d["grid_sampler"] = asdict(self.grid_sampler)
        return d

    def comparable(self) -> dict:
        """What must match for an output folder to be resumed (see :func:`_comparable`)."""
        return _comparable(self.to_dict())


PRESETS = {
    # `make demo`: the three trainings plus one corruption per family, on 500 test images; 9.5 min on 2 CPU cores.
    "quick": BenchPreset(name="quick", epochs=10, seeds=(0,), data_ratios=(), grid_seeds=1,
                         corruptions=("gaussian_noise", "defocus_blur", "fog", "contrast"), severities=(1, 3, 5),
                         low_res=(16, 8), cp_steps=(1, 2, 4, 8), cl_runs=((10, 4),), eval_limit=500),
    # The whole grid, sized for about 2 h on 2 CPU cores (docs/benchmarks/mnist5k/report.md has the measured
    # time): 3 seeds at full data and at 5%; all 19 corruptions at severities 1/3/5 for all 3 seeds; 500 test
    # images; the NFE sweep with the first seed.
    "full": BenchPreset(name="full", epochs=15, data_ratios=(0.05,), severities=(1, 3, 5),
                        cl_runs=((10, 4), (10, 8)), eval_limit=500, sweep_seeds=1),
}


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
        return {"condition": self.label, "kind": self.kind, "corruption": self.corruption,
                "family": CORRUPTION_FAMILIES.get(self.corruption) if self.corruption else None,
                "severity": self.severity, "low_res": self.low_res, "data_ratio": self.data_ratio}


@dataclass(frozen=True)
class Task:
    """One row to compute: a trained model (contender, data ratio, seed) under a condition and a sampler."""

    contender: Contender
    ratio: float
    seed: int
    condition: Condition
    sampler: SamplerConfig | None  # None: softmax of a standard classifier, or the DC's own readout
    dc: DCSettings | None = None  # set for the Diffusion Classifier's rows

    @property
    def key(self) -> str:
        s = self.sampler
        readout = ("softmax" if s is None else f"{s.sampler}-{s.cp_update}-{s.steps}" if s.sampler == "cp" else
                   f"cl-{s.chains}x{s.steps}" if s.sampler == "cl" else s.sampler)
        if self.dc is not None:
            readout = self.dc.readout_id
        return f"{self.contender.key}|r{self.ratio:g}|s{self.seed}|{self.condition.label}|{readout}"


def sampler_label(sampler: SamplerConfig | None) -> str:
    """Short display name of a readout: ``softmax``, ``CP-8``, ``CP-8 analytic``, ``CL 10×8``, ``one-pass``."""
    if sampler is None:
        return "softmax"
    if sampler.sampler == "cp":
        return f"CP-{sampler.steps}" + (" analytic" if sampler.cp_update == "analytic" else "")
    if sampler.sampler == "cl":
        return f"CL {sampler.chains}×{sampler.steps}"
    return "one-pass"


def readout_fields(sampler: SamplerConfig | None) -> dict:
    """A row's fields naming its readout: sampler, cp_update, steps, chains (None where one does not apply)."""
    if sampler is None:
        return {"sampler": "softmax", "cp_update": None, "steps": None, "chains": None}
    return {"sampler": sampler.sampler, "cp_update": sampler.cp_update if sampler.sampler == "cp" else None,
            "steps": sampler.steps if sampler.sampler != "onepass" else None,
            "chains": sampler.chains if sampler.sampler == "cl" else None}


class Benchmark:
    """Trains the contenders and evaluates the grid of a preset into an output folder (resumable)."""

    def __init__(self, preset: BenchPreset, data: str, output: str | Path, device: str = "auto",
                 workers: int = 2, progress: bool | None = None, command: str | None = None,
                 dist: Dist = SINGLE_PROCESS):
        self.preset = preset
        self.command = command
        self.data = data
        # Under torchrun every training is data-parallel over the ranks and every evaluation shards its test
        # images over them; rank 0 alone writes rows, results, the report and the plots.
        self.dist = dist
        self.device = str(resolve_device(rank_device(device, dist)))
        self.workers = workers
        self.progress = progress if dist.is_main else False
        self.out = prepare_output_dir(output)
        self._check_preset()
        self.source = load_source(data)
        self.rows = JsonlLog(self.out / "rows.jsonl") if dist.is_main else None
        self._models: dict[Path, tuple[nn.Module, dict]] = {}
        self._noise_models: dict[Path, tuple[NoiseModel, float]] = {}  # the DC's, with its lambda, by folder
        self._started = time.perf_counter()
        self._manifest: dict = {"preset": _jsonable(preset.to_dict()), "data": data, "command": command}
        self._seconds_before = 0.0

    def _check_preset(self) -> None:
        p = self.preset
        for name in p.corruptions:
            for severity in p.severities:
                check_corruption(name, severity)
        if not 1 <= p.grid_seeds <= len(p.seeds):
            raise DiffclsError(f"grid_seeds must lie in 1..{len(p.seeds)} (the number of seeds), got {p.grid_seeds}")
        if p.hard_condition:
            check_corruption(*p.hard_condition)
        if any(not 0 < r < 1 for r in p.data_ratios):
            raise DiffclsError(f"data fractions must lie in (0, 1), got {p.data_ratios}")
        manifest = self.out / "bench.json"
        if manifest.is_file():
            old = json.loads(manifest.read_text())
            if (_comparable(old.get("preset", {})), old.get("data")) != (_jsonable(p.comparable()), self.data):
                raise DiffclsError(f"{self.out} holds a benchmark of another preset or data set "
                                   f"({old.get('preset', {}).get('name')} on {old.get('data')}); "
                                   f"choose another --output")

    # ------------------------------------------------------------------------------------------------ training

    def model_dir(self, contender: Contender, ratio: float, seed: int) -> Path:
        return self.out / "models" / f"{contender.key}-r{ratio:g}-s{seed}"

    def training_jobs(self) -> list[tuple[Contender, float, int]]:
        p = self.preset
        return [(c, r, s) for r in (1.0, *p.data_ratios) for s in p.seeds_for_ratio(r) for c in p.contenders
                if p.trains_with(c, s)]

    def train_all(self) -> None:
        jobs = self.training_jobs()
        for i, (contender, ratio, seed) in enumerate(jobs, 1):
            folder = self.model_dir(contender, ratio, seed)
            if _finished_epochs(folder) >= self.train_config(contender, ratio, seed).epochs and (
                    folder / CONFIG_NAME).is_file():
                continue
            self.log(f"[train {i}/{len(jobs)}] {contender.label} ({contender.model}), data {ratio:.0%}, seed {seed}")
            train(self.train_config(contender, ratio, seed), resume=(folder / STATE_NAME).is_file(),
                  progress=self.progress, dist=self.dist)
            self.save_clock()

    def train_config(self, contender: Contender, ratio: float, seed: int) -> TrainConfig:
        """One recipe for all: the preset's budget, batch, lr and warm-up; every fraction tiled to equal steps."""
        p = self.preset
        config = TrainConfig(data=self.data, method=contender.method, model=contender.model,
                             output=str(self.model_dir(contender, ratio, seed)), epochs=p.epochs,
                             batch_size=p.batch_size, lr=p.lr, warmup_epochs=p.warmup_epochs, data_ratio=ratio,
                             equal_steps=True, seed=seed, device=self.device, val_sampler=p.train_val_sampler)
        if contender.key == DC_KEY:
            dc = p.diffusion_classifier
            config.epochs = dc.epochs or p.epochs
            config.img_size, config.batch_size, config.lr, config.ema_decay = (dc.img_size, dc.batch_size, dc.lr,
                                                                               dc.ema_decay)
            config.val_images, config.val_steps = dc.val_images, 4
        return config

    # ---------------------------------------------------------------------------------------------- evaluation

    def tasks(self) -> list[Task]:
        """Every row of the grid, condition-major so that each corrupted test set is built once."""
        p = self.preset
        full_seeds = p.seeds_for_ratio(1.0)
        grid_seeds = full_seeds[:p.grid_seeds]
        tasks: list[Task] = []

        def add(condition: Condition, ratio: float, seeds, samplers_for=None) -> None:
            for seed in seeds:
                for contender in p.contenders:
                    if not p.trains_with(contender, seed):
                        continue
                    for sampler in (samplers_for or self.grid_samplers)(contender):
                        dc = p.diffusion_classifier if contender.key == DC_KEY else None
                        tasks.append(Task(contender, ratio, seed, condition, sampler, dc))

        add(Condition("clean"), 1.0, full_seeds)
        for ratio in p.data_ratios:
            add(Condition("data_ratio", data_ratio=ratio), ratio, p.seeds_for_ratio(ratio))
        for res in p.low_res:
            add(Condition("low_res", low_res=res), 1.0, grid_seeds)
        for name in p.corruptions:
            for severity in p.severities:
                add(Condition("corruption", corruption=name, severity=severity), 1.0, grid_seeds)
        sweep_conditions = [Condition("clean")]
        if p.hard_condition:
            sweep_conditions.append(Condition("corruption", corruption=p.hard_condition[0],
                                              severity=p.hard_condition[1]))
        for condition in sweep_conditions:
            add(condition, 1.0, full_seeds[:p.sweep_seeds], self.sweep_samplers)
        unique = {t.key: t for t in tasks}  # the sweep repeats the grid sampler and one-pass
        return list(unique.values())

    def grid_samplers(self, contender: Contender) -> list[SamplerConfig | None]:
        if contender.method != "didicm":
            return [None]
        return [self.preset.grid_sampler, SamplerConfig("onepass")]

    def sweep_samplers(self, contender: Contender) -> list[SamplerConfig | None]:
        if contender.key == DC_KEY:
            return []  # the NFE sweep is DiDiCM's; the DC meets the grid
        if contender.method != "didicm":
            return [None]
        p = self.preset
        samplers = [SamplerConfig("cp", steps=k, cp_update=u) for u in ("euler", "analytic") for k in p.cp_steps]
        samplers += [SamplerConfig("cl", steps=k, chains=n) for n, k in p.cl_runs]
        return samplers + [SamplerConfig("onepass")]

    def evaluate_all(self) -> None:
        tasks = self.tasks()
        left = self.dist.broadcast([t.key for t in tasks if t.key not in self.rows] if self.dist.is_main else None)
        todo = [t for t in tasks if t.key in set(left)]
        done = len(tasks) - len(todo)
        if done:
            self.log(f"resuming: {done} of {len(tasks)} rows already in {self.out / 'rows.jsonl'}")
        split_cache: tuple[Condition | None, Split | None] = (None, None)
        for i, task in enumerate(todo, done + 1):
            condition = task.condition
            if split_cache[0] != condition:
                split_cache = (condition, self.test_split(condition))
            row = self.evaluate(task, split_cache[1])
            if not self.dist.is_main:
                continue
            self.rows.append(row)
            self.save_clock()
            self.log(f"[{i}/{len(tasks)} {_clock(time.perf_counter() - self._started)}] {condition.label:<22} "
                     f"{task.contender.label} {row['readout']}, seed {task.seed}: "
                     f"top-1 {row['top1']:.3f} ({row['seconds']:.1f} s)")

    def test_split(self, condition: Condition) -> Split:
        split = select_split(self.source, "test", self.preset.eval_limit)
        if condition.kind == "corruption":
            split, _ = corrupt_split(split, self.source, condition.corruption, condition.severity,
                                     cache_dir=self.out / "cache", workers=self.workers, progress=self.progress,
                                     dist=self.dist)
        return split

    def load(self, contender: Contender, ratio: float, seed: int) -> tuple[nn.Module, dict]:
        folder = self.model_dir(contender, ratio, seed)
        if folder not in self._models:
            self._models[folder] = load_classifier(str(folder), self.device)
        return self._models[folder]

    def evaluate(self, task: Task, split: Split) -> dict:
        if task.dc is not None:
            return self.evaluate_dc(task, split)
        model, mconfig = self.load(task.contender, task.ratio, task.seed)
        transform = TransformConfig.from_dict(mconfig["transform"])
        transform.low_res = task.condition.low_res
        metrics, probs = evaluate_model(get_method(mconfig["method"]), model, split, transform, task.sampler,
                                        device=self.device,
                                        seed=0, batch_size=256, progress=self.progress, dist=self.dist)
        labels = torch.as_tensor(split.labels)
        c = task.contender
        return {
            "key": task.key, "contender": c.key, "label": c.label, "method": c.method, "model": c.model,
            "readout": sampler_label(task.sampler), **readout_fields(task.sampler),
            "nfe": metrics["nfe_per_image"], "seed": task.seed, **task.condition.fields(),
            **{k: round(metrics[k], 6) for k in ("top1", "top5", "nll", "ece")},
            "seconds": metrics["seconds"], "num_samples": metrics["num_samples"],
            "reliability": reliability_bins(probs, labels),
        }

    # ------------------------------------------------------------------------------------ diffusion classifier

    def dc_indices(self) -> tuple[np.ndarray, np.ndarray]:
        """(test subset, calibration images): disjoint stratified subsets of the clean test split, fixed by seed."""
        dc = self.preset.diffusion_classifier
        order = stratified_order(select_split(self.source, "test", self.preset.eval_limit).labels)
        return order[:dc.test_images], order[dc.test_images:dc.test_images + dc.calibration_images]

    def evaluate_dc(self, task: Task, split: Split) -> dict | None:
        """The Diffusion Classifier on the fixed test subset; per-image outcomes go to a resumable JSONL.
        Under torchrun the ranks share the images and rank 0 returns the row (the others None)."""
        dc, folder = task.dc, self.model_dir(task.contender, task.ratio, task.seed)
        cfg, model, temperature = self._dc_model(folder, dc)
        transform = TransformConfig.from_dict(asdict(model.transform))
        transform.low_res = task.condition.low_res
        name = f"{folder.name}-{task.condition.label.replace('/', '-')}-{dc.readout_id}.jsonl"
        log = JsonlLog(self.out / "dc" / name) if self.dist.is_main else None
        classified = classify_indices(cfg, model, ImageDataset(split, ImageTransform(transform)),
                                      self.dc_indices()[0], list(range(self.source.num_classes)), log,
                                      self.progress, self.dist)
        if classified is None:
            return None
        means, labels, seconds = classified
        probs = stagewise_probabilities(means, temperature).float()
        metrics = classification_metrics(probs, labels)
        c = task.contender
        return {
            "key": task.key, "contender": c.key, "label": c.label, "method": c.method, "model": c.model,
            "readout": dc.readout, "sampler": "diffusion-classifier", "cp_update": None, "steps": None,
            "chains": None, "nfe": dc.schedule.nfe(self.source.num_classes), "seed": task.seed,
            **task.condition.fields(),
            **{k: round(metrics[k], 6) for k in ("top1", "top5", "nll", "ece")},
            "seconds": round(seconds, 3), "num_samples": len(labels), "temperature": round(temperature, 6),
            "reliability": reliability_bins(probs, labels),
        }

    def _dc_model(self, folder: Path, dc: DCSettings) -> tuple[DCEvalConfig, NoiseModel, float]:
        """The scoring settings, the noise model of ``folder`` and its lambda (softmax(-lambda * error)), fitted
        once per model on the calibration images of the clean test split (their outcomes logged under ``dc/``)."""
        cfg = DCEvalConfig(data=self.data, checkpoint=str(folder), schedule=dc.schedule, device=self.device)
        if folder not in self._noise_models:
            model = load_noise_model(cfg, self.source.class_names)
            (self.out / "dc").mkdir(exist_ok=True)
            log = (JsonlLog(self.out / "dc" / f"{folder.name}-calibration-{dc.readout_id}.jsonl")
                   if self.dist.is_main else None)
            clean = ImageDataset(select_split(self.source, "test", self.preset.eval_limit),
                                 ImageTransform(model.transform))
            calibration = self.dc_indices()[1]
            classified = classify_indices(cfg, model, clean, calibration, list(range(self.source.num_classes)),
                                          log, self.progress, self.dist)
            temperature = None
            if classified is not None:  # rank 0 fits lambda and tells the others
                means, labels, _ = classified
                temperature = fit_temperature(means, labels) if len(calibration) >= 2 else 1.0
            self._noise_models[folder] = (model, self.dist.broadcast(temperature))
        model, temperature = self._noise_models[folder]
        return cfg, model, temperature

    # ------------------------------------------------------------------------------------------- trajectories

    def record_trajectories(self) -> dict:
        """CP (Euler) trajectories of p over the steps for the most and least confident clean test images."""
        path = self.out / "trajectories.json"
        if path.is_file():
            return json.loads(path.read_text())
        p = self.preset
        steps = max(p.cp_steps)
        seed = p.seeds[0]
        model, mconfig = self.load(CONTENDERS[2], 1.0, seed)
        split = select_split(self.source, "test", min(p.eval_limit or TRAJECTORY_POOL, TRAJECTORY_POOL))
        images = _transformed(split, TransformConfig.from_dict(mconfig["transform"])).to(self.device)
        trajectory: list[torch.Tensor] = []
        generator = torch.Generator(device=self.device).manual_seed(0)
        with torch.inference_mode():
            cp_sample(bind_image(model, images), len(images), model.num_classes, steps, generator=generator,
                      trajectory=trajectory)
        traj = torch.stack(trajectory, dim=1)  # [N, steps + 1, K]
        final = traj[:, -1]
        confidence = final.max(dim=1).values
        labels = torch.as_tensor(split.labels)
        correct = final.argmax(dim=1) == labels
        order = confidence.argsort()
        n = p.trajectory_images
        easy = [int(i) for i in order.flip(0) if correct[i]][:n]
        hard = [int(i) for i in order][:n]
        raw = split.images
        result = {"steps": steps, "seed": seed, "class_names": mconfig["class_names"],
                  "images": [{"index": i, "kind": kind, "label": int(labels[i]),
                              "probs": [[round(v, 5) for v in row] for row in traj[i].tolist()],
                              "pixels": _thumbnail(raw[i]) if isinstance(raw, np.ndarray) else None}
                             for kind, idx in (("easy", easy), ("hard", hard)) for i in idx]}
        write_json(path, result)
        return result

    # ---------------------------------------------------------------------------------------------------- all

    def run(self) -> dict:
        """Train, evaluate, record trajectories; write results, report and plots. Returns the output paths."""
        from diffcls.eval.report import summary_table, write_report

        old = json.loads((self.out / "bench.json").read_text()) if (self.out / "bench.json").is_file() else {}
        self._manifest = {**old, "preset": _jsonable(self.preset.to_dict()), "data": self.data,
                          "device": self.device,
                          # the latest command: a resumed run repeats the first, or adds the Diffusion Classifier
                          "command": self.command or old.get("command")}
        self._seconds_before = old.get("seconds", 0.0)
        self.save_clock()
        self.train_all()
        self.evaluate_all()
        if not self.dist.is_main:
            return {"report": None, "plots": []}
        trajectories = self.record_trajectories()
        rows = [self.rows.rows[t.key] for t in self.tasks()]  # rows of contenders no longer in the preset stay out
        self.write_results(rows)
        seconds = self.save_clock()
        paths = write_report(rows, trajectories, self.out, self.preset, self.data, self.training_curves(), seconds,
                             self._manifest["command"], self.corruption_set())
        print(summary_table(rows))
        return paths

    def save_clock(self) -> float:
        """Record the time spent so far (summed over resumed parts) in ``bench.json``; returns it."""
        seconds = self._seconds_before + time.perf_counter() - self._started
        if self.dist.is_main:
            write_json(self.out / "bench.json", {**self._manifest, "seconds": round(seconds, 1)})
        return seconds

    def training_curves(self) -> dict[str, list[dict]]:
        """metrics.csv of every full-data model, by folder name: the report's budget figure."""
        curves = {}
        for contender, ratio, seed in self.training_jobs():
            path = self.model_dir(contender, ratio, seed) / METRICS_NAME
            if ratio == 1.0 and path.is_file():
                lines = path.read_text().splitlines()
                header = lines[0].split(",")
                curves[path.parent.name] = [dict(zip(header, map(float, line.split(",")))) for line in lines[1:]]
        return curves

    def write_results(self, rows: list[dict]) -> None:
        """``results.json`` (every field) and ``results.csv`` (all but the key and the reliability bins)."""
        write_json(self.out / "results.json", rows)
        columns = [k for k in rows[0] if k not in ("reliability", "key")] if rows else []
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, columns, extrasaction="ignore", lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
        atomic_write(self.out / "results.csv", lambda f: f.write(buffer.getvalue().encode()))

    def corruption_set(self) -> str | None:
        """The corruption parameter set the grid used (chosen by image size), or None without corruptions."""
        return default_corruption_set(max(self.source.native_size)) if self.preset.corruptions else None

    def log(self, message: str) -> None:
        if self.dist.is_main:
            print(message, file=sys.stderr, flush=True)


def _comparable(preset: dict) -> dict:
    """A preset's fields less the Diffusion Classifier's, which can join (or leave) a finished benchmark, adding
    (or dropping) only its own rows."""
    return {k: v for k, v in preset.items() if k != "diffusion_classifier"}


def _jsonable(value):
    """The value as it reads back from JSON (tuples become lists), for comparing with a stored manifest."""
    return json.loads(json.dumps(value))


def _finished_epochs(folder: Path) -> int:
    path = folder / METRICS_NAME
    if not path.is_file():
        return 0
    lines = path.read_text().strip().splitlines()
    return int(float(lines[-1].split(",")[0])) if len(lines) > 1 else 0


def _thumbnail(image: np.ndarray) -> list:
    """``uint8[H, W, C]`` as nested lists for JSON: ``[H][W]`` for grayscale, ``[H][W][3]`` for colour."""
    return (image[..., 0] if image.shape[-1] == 1 else image).tolist()


def _transformed(split: Split, transform: TransformConfig) -> torch.Tensor:
    from diffcls.data import ImageDataset, ImageTransform

    dataset = ImageDataset(split, ImageTransform(transform))
    return torch.stack([dataset[i][0] for i in range(len(dataset))])


def _clock(seconds: float) -> str:
    minutes, secs = divmod(int(seconds), 60)
    return f"{minutes // 60}:{minutes % 60:02d}:{secs:02d}"


def run_benchmark(preset: str | BenchPreset, data: str | None, output: str | Path, device: str = "auto",
                  workers: int = 2, progress: bool | None = None, command: str | None = None,
                  diffusion_classifier: DCSettings | None = None, dist: Dist = SINGLE_PROCESS) -> dict:
    """Run (or resume) a benchmark preset on a data spec (default: mnist5k); see the module docstring.
    ``diffusion_classifier`` adds the Diffusion Classifier as a fourth contender.

    Returns ``{"report": Path, "plots": [Path, ...]}`` (``None`` and ``[]`` on ranks other than 0 under
    torchrun); prints the summary table.
    """
    if isinstance(preset, str):
        if preset not in PRESETS:
            raise DiffclsError(f"unknown preset {preset!r}; choose from {', '.join(PRESETS)}")
        preset = PRESETS[preset]
    if diffusion_classifier is not None:
        preset = dataclasses.replace(preset, diffusion_classifier=diffusion_classifier)
    return Benchmark(preset, data or "mnist5k", output, device, workers, progress, command, dist).run()
