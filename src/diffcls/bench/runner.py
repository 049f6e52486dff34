"""``diffcls bench``: train the contenders of a preset, evaluate its grid, write rows, report and plots.

The default contenders (:mod:`diffcls.bench.contenders`) are trained with one recipe and the same seeds, each for
its own budget (the preset's ``budgets``: where its validation curve flattens):

* ``standard`` — DiDiRN's *standard twin*: the same network without the label/noise conditioning, cross-entropy;
* ``plain``    — the paper's kind of baseline: a plain ResNet of the same widths (BatchNorm only);
* ``didicm``   — DiDiCM on the DiDiRN backbone, read out by the CP sampler (the library's step, and the
  reference's where a preset asks) and by the one-pass readout; ``didicm-late1`` its late-conditioned variant
  (``--with late1``);
* ``dc``       — optionally, the Diffusion Classifier (a DDPM; first seed, a fixed test subset);

so ``didicm − standard`` is what the diffusion adds and ``standard − plain`` what DiDiRN's architecture adds.
The grid (:mod:`diffcls.bench.grid`) gives one row per (contender, readout, training seed, condition).

Output folder::

    models/<contender>-<training>-s<seed>/ checkpoints (training: r1, r0.05, r0.05eq, r1-8px): reused when complete;
                                           with ``from_zoo``, copied from a zoo entry trained with the same options
    rows.jsonl                             one line per finished row: the resume log
    results.csv, results.json              all rows (written atomically)
    trajectories.json                      CP class-probability trajectories of a few easy and hard images
    report.md, plots/*.png                 see :mod:`diffcls.bench.report`
    cache/                                 corrupted test sets
    dc/                                    the Diffusion Classifier's per-image logs

It runs model by model: train one (unless complete), write its rows, then the next. A killed benchmark restarted
with the same command keeps its finished rows and trained checkpoints, and since a model's weights are needed only
until its rows are written, a copy without weights (:func:`copy_without_weights`) resumes too, training only the
models whose rows are missing.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import math
import shutil
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn as nn

from diffcls.bench.contenders import OPTIONAL_CONTENDERS, Contender, DCSettings, Measurement
from diffcls.bench.grid import PRESETS, BenchPreset, Condition, Job, Task, Training, comparable, jsonable
from diffcls.bench.report import write_report
from diffcls.bench.stats import RISK_COVERAGE_POINTS, Curve, Row
from diffcls.bench.tables import summary_table
from diffcls.data import ImageDataset, ImageTransform, Split, TransformConfig, load_source
from diffcls.data.corruptions import check_corruption, default_corruption_set
from diffcls.didicm import cp_sample
from diffcls.errors import DiffclsError
from diffcls.eval.evaluate import corrupt_split, ood_split, select_split
from diffcls.inference.calibration import POST_METRICS, scale_probabilities
from diffcls.inference.metrics import classification_metrics, reliability_bins, risk_coverage, topk_correct
from diffcls.inference.predict import bind_image
from diffcls.methods import load_classifier, train
from diffcls.runtime.checkpoint import CONFIG_NAME, METRICS_NAME, STATE_NAME
from diffcls.runtime.device import resolve_device
from diffcls.runtime.distributed import SINGLE_PROCESS, Dist, rank_device
from diffcls.runtime.io import JsonlLog, atomic_write, prepare_output_dir, write_json
from diffcls.runtime.lock import FOLDER_LOCK_NAME, exclusive
from diffcls.train.config import TrainConfig
from diffcls.train.supervised import fill_data_defaults
from diffcls.zoo.match import entry_trained_like, install_entry

TRAJECTORIES_NAME = "trajectories.json"
TRAJECTORY_POOL = 512  # test images among which the trajectory figure picks its easy and hard examples
# the metrics a row records, rounded to 6 digits
METRICS = ("top1", "top5", "nll", "brier", "ece", "ece_adaptive", "aurc", "augrc", "tie_rate")


# Data sets whose test split a benchmark on the key scores as out-of-distribution, besides uniform noise.
OOD_PARTNERS = {"mnist5k": ("fashion-mnist",), "fashion-mnist": ("mnist5k",)}

NOT_IN_CSV = (
    "key",
    "reliability",
    "post_reliability",
    "correct",
    "risk_coverage",
    "ood_msp_hist",
)  # per-bin and per-image fields: JSON only


def result_row(task: Task, m: Measurement) -> Row:
    """The results row of a task: who, how read out, under which condition, the metrics, and reliability bins."""
    c = task.contender
    metrics = classification_metrics(m.probs, m.labels)
    correct, decision = topk_correct(m.probs, m.labels), {}
    if m.prediction is not None:  # top-1 and the per-image outcomes are the method's decision, the argmax's beside
        correct = m.prediction.cpu() == m.labels.cpu()
        decision = {"top1_of_probabilities": round(metrics["top1"], 6)}
        metrics = {**metrics, "top1": correct.double().mean().item()}
    return {
        "key": task.key,
        "contender": c.key,
        "label": c.label,
        "method": c.method,
        "model": c.model,
        **c.readout_fields(task.readout),
        "nfe": m.nfe,
        "seed": task.seed,
        **task.condition.fields(),
        **{k: round(metrics[k], 6) for k in METRICS},
        "seconds": round(m.seconds, 3),
        "ms_per_image": round(1000 * m.seconds / max(len(m.labels), 1), 3),
        "num_samples": len(m.labels),
        **m.extra,
        **decision,
        **_temperature_scaled(m),
        "correct": "".join("1" if c else "0" for c in correct.tolist()),
        "risk_coverage": _risk_at_coverage(m.probs, m.labels),
        "reliability": reliability_bins(m.probs, m.labels),
    }


def _risk_at_coverage(probs: torch.Tensor, labels: torch.Tensor) -> list[float]:
    """The risk-coverage curve at coverage k / RISK_COVERAGE_POINTS, k = 1.. (the risk of the ⌈coverage · N⌉ most
    confident images)."""
    _, risk = risk_coverage(probs, labels)
    n = len(risk)
    return [
        round(risk[max(math.ceil(n * k / RISK_COVERAGE_POINTS) - 1, 0)].item(), 6)
        for k in range(1, RISK_COVERAGE_POINTS + 1)
    ]


def _temperature_scaled(m: Measurement) -> dict:
    """``temperature``, ``post_*`` metrics and ``post_reliability`` bins of the calibrated probabilities; {} when
    no temperature was fitted."""
    if m.temperature is None:
        return {}
    calibrated = m.calibrated if m.calibrated is not None else scale_probabilities(m.probs, m.temperature)
    metrics = classification_metrics(calibrated, m.labels)
    return {
        "temperature": round(m.temperature, 6),
        **{f"post_{k}": round(metrics[k], 6) for k in POST_METRICS},
        "post_reliability": reliability_bins(calibrated, m.labels),
    }


class Benchmark:
    """Trains the contenders and evaluates the grid of a preset into an output folder (resumable). Contenders
    evaluate through it: it holds the data, device, output folder, model folders and a cache of loaded models."""

    def __init__(
        self,
        preset: BenchPreset,
        data: str,
        output: str | Path,
        device: str = "auto",
        workers: int = 2,
        progress: bool | None = None,
        command: str | None = None,
        dist: Dist = SINGLE_PROCESS,
        from_zoo: bool = False,
    ):
        self.preset = preset
        self.from_zoo = from_zoo
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
        self._cache: dict[Any, Any] = {}  # loaded models (and what goes with them), by model folder
        self._started = time.perf_counter()
        self._manifest: dict = {"preset": jsonable(preset.to_dict()), "data": data, "command": command}
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
        if any(not 0 < r < 1 for r in p.data_ratios + p.equal_steps_ratios):
            raise DiffclsError(f"data fractions must lie in (0, 1), got {p.data_ratios + p.equal_steps_ratios}")
        if p.diffusion_classifier and not p.val_split:
            raise DiffclsError("the Diffusion Classifier fits its temperature on the validation split: val_split > 0")
        manifest = self.out / "bench.json"
        if manifest.is_file():
            old = json.loads(manifest.read_text())
            if (comparable(old.get("preset", {})), old.get("data")) != (p.comparable(), self.data):
                raise DiffclsError(
                    f"{self.out} holds a benchmark of another preset or data set "
                    f"({old.get('preset', {}).get('name')} on {old.get('data')}); "
                    f"choose another --output"
                )

    # ------------------------------------------------------------------------------------------------ training

    def model_dir(self, contender: Contender, training: Training, seed: int) -> Path:
        return self.out / "models" / f"{contender.key}-{training.tag}-s{seed}"

    def training_jobs(self) -> list[Job]:
        return self.preset.trainings()

    def trajectory_job(self) -> Job | None:
        """The model of the CP trajectory figure: the trajectory contender's first full-data model."""
        contender = self.preset.lineup.trajectory
        return None if contender is None else (contender, Training(), self.preset.seeds[0])

    def train_model(self, job: Job, number: int, total: int) -> None:
        """Train ``job``'s model into its folder unless it is there complete (or a zoo entry was trained like it)."""
        contender, training, seed = job
        folder = self.model_dir(contender, training, seed)
        config = contender.train_config(
            self.preset, training, seed, data=self.data, output=str(folder), device=self.device
        )
        if _finished_epochs(folder) >= config.epochs and (folder / CONFIG_NAME).is_file() and _has_weights(folder):
            return
        if self.from_zoo and self._install_from_zoo(folder, config):
            return
        self.log(f"[train {number}/{total}] {contender.label} ({contender.model}), {folder.name}")
        train(
            config,
            resume=(folder / STATE_NAME).is_file(),
            progress=self.progress,
            dist=self.dist,
            source=self.source,
        )
        self.save_clock()

    def _install_from_zoo(self, folder: Path, config: TrainConfig) -> bool:
        """Copy the zoo entry trained with exactly ``config``'s options into ``folder`` (its weights, config and
        training curve; never its training state); False when the zoo has none."""
        recorded = dataclasses.replace(config)  # the options as the training would record them
        fill_data_defaults(recorded, self.source)
        entry = entry_trained_like(dataclasses.asdict(recorded))
        if entry is None:
            return False
        if self.dist.is_main:
            self.log(f"[zoo] {folder.name}: zoo:{entry.name} was trained with these options; copied, not retrained")
            install_entry(entry, folder, output=str(folder))
        self.dist.barrier()  # under torchrun, the other ranks read the folder next
        return True

    # ---------------------------------------------------------------------------------------------- evaluation

    def tasks(self) -> list[Task]:
        return self.preset.tasks()

    def train_and_evaluate(self) -> None:
        """Model by model: train it (unless its rows are all there), evaluate its rows, record the trajectories
        if it is their model. A model is needed only until its rows are written, so a benchmark resumes from its
        rows, bench.json and the models' curves alone (a folder moved without its weights)."""
        tasks = self.tasks()
        left = self.dist.broadcast([t.key for t in tasks if t.key not in self.rows] if self.dist.is_main else None)
        left = set(left)
        if len(left) < len(tasks):
            self.log(f"resuming: {len(tasks) - len(left)} of {len(tasks)} rows already in {self.out / 'rows.jsonl'}")
        jobs = self.training_jobs()
        written = len(tasks) - len(left)
        todo_by_model: dict[Path, list[Task]] = {}  # by folder: contenders may compare by identity, not value
        for t in tasks:
            if t.key in left:
                todo_by_model.setdefault(self.model_dir(*t.job), []).append(t)
        trajectory_job = self.trajectory_job()
        trajectory_model = None if trajectory_job is None else self.model_dir(*trajectory_job)
        for number, job in enumerate(jobs, 1):
            folder = self.model_dir(*job)
            todo = todo_by_model.get(folder, [])
            trajectories = folder == trajectory_model and not (self.out / TRAJECTORIES_NAME).is_file()
            if not todo and not trajectories:
                continue
            self.train_model(job, number, len(jobs))
            written = self.evaluate_tasks(todo, written, len(tasks))
            if trajectories and self.dist.is_main:
                self.record_trajectories()

    def evaluate_tasks(self, tasks: list[Task], written: int, total: int) -> int:
        """Evaluate ``tasks`` (condition-major, so each corrupted test set is built once) and append their rows;
        returns the number of rows written so far."""
        split_cache: tuple[Condition | None, Split | None] = (None, None)
        for task in tasks:
            condition = task.condition
            if split_cache[0] != condition:
                split_cache = (condition, self.test_split(condition))
            row = self.evaluate(task, split_cache[1])
            written += 1
            if not self.dist.is_main:
                continue
            self.rows.append(row)
            self.save_clock()
            self.log(
                f"[{written}/{total} {_clock(time.perf_counter() - self._started)}] {condition.label:<22} "
                f"{task.contender.label} {row['readout']}, seed {task.seed}: "
                f"top-1 {row['top1']:.3f} ({row['seconds']:.1f} s)"
            )
        return written

    def evaluate(self, task: Task, split: Split) -> Row | None:
        """The row of ``task`` (None on torchrun ranks that do not hold it)."""
        measured = task.contender.evaluate(task, split, self)
        return None if measured is None else result_row(task, measured)

    def ood_splits(self) -> dict[str, Split]:
        """The out-of-distribution test sets of clean rows, as many images as the test split: uniform noise always,
        and the partner data set of :data:`OOD_PARTNERS` when it is installed (once per run)."""
        return self.cached("ood", self._load_ood_splits)

    def _load_ood_splits(self) -> dict[str, Split]:
        n = len(select_split(self.source, "test", self.preset.eval_limit))
        # The transform only matters for the pad-size check: the partners share their images' size.
        transform = TransformConfig(img_size=max(self.source.native_size), fit="resize")
        specs = ["noise"] + [p for p in OOD_PARTNERS.get(self.data, ()) if p != self.data]
        splits = {}
        for spec in specs:
            try:
                splits[spec] = ood_split(spec, self.source, n, transform)
            except DiffclsError as e:  # a partner that is not installed: noise alone
                self.log(f"no OOD rows against {spec}: {e}")
        return splits

    def test_split(self, condition: Condition) -> Split:
        split = select_split(self.source, "test", self.preset.eval_limit)
        if condition.kind == "corruption":
            split, _ = corrupt_split(
                split,
                self.source,
                condition.corruption,
                condition.severity,
                cache_dir=self.out / "cache",
                workers=self.workers,
                progress=self.progress,
                dist=self.dist,
            )
        return split

    def cached(self, key: Any, make: Callable[[], Any]) -> Any:
        """``make()``, once per key for the whole run (loaded models, fitted temperatures)."""
        if key not in self._cache:
            self._cache[key] = make()
        return self._cache[key]

    def load_classifier(self, folder: Path) -> tuple[nn.Module, dict]:
        """The trained classifier in ``folder`` and its config, loaded once."""
        return self.cached(folder, lambda: load_classifier(str(folder), self.device))

    # ------------------------------------------------------------------------------------------- trajectories

    def record_trajectories(self) -> dict:
        """CP (Euler) trajectories of p over the steps for the most and least confident clean test images of the
        trajectory contender's first full-data model ({} when no contender has that role)."""
        path = self.out / TRAJECTORIES_NAME
        if path.is_file():
            return json.loads(path.read_text())
        job = self.trajectory_job()
        if job is None:
            return {}
        p, (contender, training, seed) = self.preset, job
        steps = max(p.cp_steps)
        model, mconfig = self.load_classifier(self.model_dir(contender, training, seed))
        split = select_split(self.source, "test", min(p.eval_limit or TRAJECTORY_POOL, TRAJECTORY_POOL))
        images = _transformed(split, TransformConfig.from_dict(mconfig["transform"])).to(self.device)
        trajectory: list[torch.Tensor] = []
        generator = torch.Generator(device=self.device).manual_seed(0)
        with torch.inference_mode():
            cp_sample(
                bind_image(model, images),
                len(images),
                model.num_classes,
                steps,
                generator=generator,
                trajectory=trajectory,
            )
        traj = torch.stack(trajectory, dim=1)  # [N, steps + 1, K]
        final = traj[:, -1]
        labels = torch.as_tensor(split.labels)
        correct = final.argmax(dim=1) == labels
        order = final.max(dim=1).values.argsort()  # by confidence
        n = p.trajectory_images
        easy = [int(i) for i in order.flip(0) if correct[i]][:n]
        hard = [int(i) for i in order][:n]
        raw = split.images
        result = {
            "steps": steps,
            "seed": seed,
            "class_names": mconfig["class_names"],
            "images": [
                {
                    "index": i,
                    "kind": kind,
                    "label": int(labels[i]),
                    "probs": [[round(v, 5) for v in row] for row in traj[i].tolist()],
                    "pixels": _thumbnail(raw[i]) if isinstance(raw, np.ndarray) else None,
                }
                for kind, idx in (("easy", easy), ("hard", hard))
                for i in idx
            ],
        }
        write_json(path, result)
        return result

    # ---------------------------------------------------------------------------------------------------- all

    def run(self) -> dict:
        """Train, evaluate, record trajectories; write results, report and plots. Returns the output paths."""
        old = json.loads((self.out / "bench.json").read_text()) if (self.out / "bench.json").is_file() else {}
        self._manifest = {
            **old,
            "preset": jsonable(self.preset.to_dict()),
            "data": self.data,
            "device": self.device,
            # the latest command: a resumed run repeats the first, or adds the Diffusion Classifier
            "command": self.command or old.get("command"),
        }
        self._seconds_before = old.get("seconds", 0.0)
        self.save_clock()
        self.train_and_evaluate()
        if not self.dist.is_main:
            return {"report": None, "plots": []}
        trajectories = self.record_trajectories()
        rows = [self.rows.rows[t.key] for t in self.tasks()]  # rows of contenders no longer in the preset stay out
        self.write_results(rows)
        seconds = self.save_clock()
        paths = write_report(
            rows,
            trajectories,
            self.out,
            self.preset,
            self.data,
            self.training_curves(),
            seconds,
            self._manifest["command"],
            self.corruption_set(),
        )
        print(summary_table(rows, self.preset))
        return paths

    def save_clock(self) -> float:
        """Record the time spent so far (summed over resumed parts) in ``bench.json``; returns it."""
        seconds = self._seconds_before + time.perf_counter() - self._started
        if self.dist.is_main:
            write_json(self.out / "bench.json", {**self._manifest, "seconds": round(seconds, 1)})
        return seconds

    def training_curves(self) -> list[Curve]:
        """The per-epoch metrics of every trained model: the report's plateau table, cost table and figure."""
        folders = [(c, t, self.model_dir(c, t, s)) for c, t, s in self.training_jobs()]
        return [
            Curve(folder.name, c.key, rows, full_data=t == Training())
            for c, t, folder in folders
            if (rows := _epoch_rows(folder))
        ]

    def write_results(self, rows: list[Row]) -> None:
        """``results.json`` (every field) and ``results.csv`` (every field any row has, but the key, the reliability
        bins and the per-image outcomes)."""
        write_json(self.out / "results.json", rows)
        columns = [k for k in dict.fromkeys(k for r in rows for k in r) if k not in NOT_IN_CSV]
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


# What a benchmark folder can do without: weights and training states (a model is needed only until its rows are
# written), corrupted test sets (rebuilt from the data on demand) and lock files.
HEAVY_SUFFIXES = (".safetensors", ".pt", ".bin")
NOT_CARRIED = ("cache", FOLDER_LOCK_NAME)


def copy_without_weights(out: str | Path, dest: str | Path) -> list[Path]:
    """Copy benchmark folder ``out`` to ``dest`` less its weights, training states, caches and locks: what its
    report and a resume need (bench.json, rows.jsonl, trajectories, each model's config and curves, per-image
    logs), a few MB. A resume in ``dest`` trains only the models whose rows are not all written. Returns the
    files copied."""
    out, dest = Path(out), Path(dest)
    if not (out / "bench.json").is_file():
        raise DiffclsError(f"{out} is not a benchmark folder (no bench.json)")
    if dest.exists() and any(dest.iterdir()):
        raise DiffclsError(f"{dest} is not empty; choose a new folder")

    def skipped(folder: str, names: list[str]) -> list[str]:
        return [n for n in names if n in NOT_CARRIED or n.endswith(HEAVY_SUFFIXES) or n.endswith(".lock")]

    shutil.copytree(out, dest, ignore=skipped, dirs_exist_ok=True)
    return sorted(p for p in dest.rglob("*") if p.is_file())


def _epoch_rows(folder: Path) -> list[dict]:
    """A model folder's ``metrics.csv`` as rows of floats (an empty cell: NaN); [] before its first epoch."""
    path = folder / METRICS_NAME
    if not path.is_file():
        return []
    with open(path, newline="") as f:
        return [{k: float(v) if v else math.nan for k, v in row.items()} for row in csv.DictReader(f)]


def _finished_epochs(folder: Path) -> int:
    rows = _epoch_rows(folder)
    return int(rows[-1]["epoch"]) if rows else 0


def _has_weights(folder: Path) -> bool:
    """Whether a model folder holds weights (a copy without them keeps only the config and curves)."""
    return any(folder.rglob("*.safetensors"))


def _thumbnail(image: np.ndarray) -> list:
    """``uint8[H, W, C]`` as nested lists for JSON: ``[H][W]`` for grayscale, ``[H][W][3]`` for colour."""
    return (image[..., 0] if image.shape[-1] == 1 else image).tolist()


def _transformed(split: Split, transform: TransformConfig) -> torch.Tensor:
    dataset = ImageDataset(split, ImageTransform(transform))
    return torch.stack([dataset[i][0] for i in range(len(dataset))])


def _clock(seconds: float) -> str:
    minutes, secs = divmod(int(seconds), 60)
    return f"{minutes // 60}:{minutes % 60:02d}:{secs:02d}"


def run_benchmark(
    preset: str | BenchPreset,
    data: str | None,
    output: str | Path,
    device: str = "auto",
    workers: int = 2,
    progress: bool | None = None,
    command: str | None = None,
    diffusion_classifier: DCSettings | None = None,
    dist: Dist = SINGLE_PROCESS,
    extra_contenders: tuple[str, ...] = (),
    budgets: dict[str, int] | None = None,
    from_zoo: bool = False,
    **overrides,
) -> dict:
    """Run (or resume) a benchmark preset on a data spec (default: mnist5k); see the module docstring.
    ``diffusion_classifier`` adds the Diffusion Classifier to the preset's contenders, ``extra_contenders`` the
    named :data:`~diffcls.bench.contenders.OPTIONAL_CONTENDERS`; ``budgets`` ({contender key: epochs}) replace
    the preset's budgets of those contenders; ``from_zoo`` starts every model that a zoo entry was trained like
    (same options, seed and data) from that entry; ``overrides`` replace preset fields (e.g. ``train_limit``,
    ``eval_limit``; None leaves a field as it is).

    Returns ``{"report": Path, "plots": [Path, ...]}`` (``None`` and ``[]`` on ranks other than 0 under
    torchrun); prints the summary table.
    """
    if isinstance(preset, str):
        if preset not in PRESETS:
            raise DiffclsError(f"unknown preset {preset!r}; choose from {', '.join(PRESETS)}")
        preset = PRESETS[preset]
    if diffusion_classifier is not None:
        preset = dataclasses.replace(preset, diffusion_classifier=diffusion_classifier)
    unknown = [name for name in extra_contenders if name not in OPTIONAL_CONTENDERS]
    if unknown:
        raise DiffclsError(f"unknown contender {unknown[0]!r}; choose from {', '.join(OPTIONAL_CONTENDERS)}")
    added = tuple(OPTIONAL_CONTENDERS[name] for name in dict.fromkeys(extra_contenders))
    overrides = {k: v for k, v in overrides.items() if v is not None}
    preset = dataclasses.replace(preset, contenders=preset.contenders + added, **overrides)
    if budgets:
        keys = {c.key for c in preset.lineup}
        unknown = sorted(set(budgets) - keys)
        if unknown:
            raise DiffclsError(
                f"--budget: no contender {unknown[0]!r} in this benchmark; keys: {', '.join(sorted(keys))}"
            )
        preset = dataclasses.replace(preset, budgets=tuple({**dict(preset.budgets), **budgets}.items()))
    with exclusive(folders=[output], dist=dist):  # one benchmark per folder (rows.jsonl has one writer)
        bench = Benchmark(preset, data or "mnist5k", output, device, workers, progress, command, dist, from_zoo)
        return bench.run()
