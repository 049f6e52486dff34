"""Supervised training from a data spec to a checkpoint folder: a classifier (standard or DiDiCM) or a
class-conditional noise predictor for the Diffusion Classifier (ddpm, saved as a diffusers DDPMPipeline folder).

Reproducibility: every epoch reseeds Python, numpy and torch from (seed, epoch) and shuffles with its own
generator, so epoch e is the same computation whether the run started at epoch 0 or resumed at e. Checkpoints
are written at the end of each epoch; ``resume=True`` continues from the last one and ends with the same
weights as an uninterrupted run.

Under ``torchrun`` the model is wrapped in DistributedDataParallel, each rank reads its share of the epoch's
permutation (``--batch-size`` per rank), losses are summed and validation gathered over ranks, and rank 0 alone
writes the checkpoint folder (see :mod:`diffcls.train.distributed`).
"""

from __future__ import annotations

import math
import random
import sys
import time
from contextlib import nullcontext
from dataclasses import asdict, dataclass, fields

import numpy as np
import torch
import torch.nn as nn
from timm.data import Mixup
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DistributedSampler
from timm.optim import create_optimizer_v2
from timm.scheduler import create_scheduler_v2
from timm.utils import ModelEmaV3
from tqdm import tqdm  # not tqdm.auto: its asyncio bar calls iter() at once, starting idle loader workers

import diffcls
from diffcls.data import (ImageDataset, ImageTransform, TransformConfig, data_ratio_indices, load_source, make_loader,
                          stratified_order, subset_split)
from diffcls.errors import DiffclsError
from diffcls.eval.metrics import topk_accuracy
from diffcls.eval.predict import SamplerConfig, predict_dataset
from diffcls.generative import classify, parse_schedule
from diffcls.models.factory import create_classifier
from diffcls.models.noise_predictors import create_noise_predictor, create_scheduler, save_pipeline
from diffcls.train.checkpoint import (CONFIG_NAME, METRICS_COLUMNS, METRICS_NAME, STATE_NAME, WEIGHTS_NAME, MetricsLog,
                                      load_training_state, prepare_output_dir, read_saved_train_config,
                                      save_training_state, save_weights, write_json)
from diffcls.train import distributed
from diffcls.train.distributed import Dist, rank_device
from diffcls.train.objectives import create_objective

DEFAULT_LR = {"sgd": 0.1, "adamw": 2e-3, "lamb": 2e-3}
SCHEDULERS = {"cosine": "cosine", "step": "step", "const": "constant"}  # --sched name -> timm's name


@dataclass
class TrainConfig:
    """All options of ``diffcls train``; stored under ``"train"`` in the checkpoint's ``config.json``."""

    data: str
    method: str
    model: str
    output: str
    epochs: int = 10
    batch_size: int = 128
    lr: float | None = None
    opt: str = "adamw"
    weight_decay: float = 0.05
    sched: str = "cosine"
    warmup_epochs: int = 1
    min_lr: float = 1e-6
    smoothing: float = 0.0
    mixup: float = 0.0
    cutmix: float = 0.0
    clip_grad: float | None = None
    ema_decay: float | None = None
    amp: bool = False
    data_ratio: float = 1.0
    equal_steps: bool = False
    img_size: int | None = None
    fit: str = "auto"
    low_res: int | None = None
    augment: str | None = None
    seed: int = 0
    workers: int = 0
    device: str = "auto"
    noise: str = "loglinear"
    sampling_eps: float = 1e-5
    val_sampler: str = "cp"
    val_steps: int = 8
    label_dropout: float = 0.0
    val_images: int = 200  # ddpm: validation classifies only the first N test images (a Diffusion Classifier is slow)

    @classmethod
    def from_dict(cls, d: dict) -> "TrainConfig":
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})

    def validate(self) -> None:
        checks = [
            (self.epochs >= 0, f"--epochs must be >= 0, got {self.epochs}"),
            (self.batch_size >= 1, f"--batch-size must be >= 1, got {self.batch_size}"),
            (self.lr is None or self.lr > 0, f"--lr must be > 0, got {self.lr}"),
            (0.0 <= self.smoothing < 1.0, f"--smoothing must lie in [0, 1), got {self.smoothing}"),
            (self.mixup >= 0 and self.cutmix >= 0, "--mixup and --cutmix must be >= 0"),
            (self.img_size is None or self.img_size >= 8, f"--img-size must be >= 8, got {self.img_size}"),
            (self.low_res is None or self.low_res >= 1, f"--low-res must be >= 1, got {self.low_res}"),
            (self.ema_decay is None or 0 < self.ema_decay < 1, "--ema-decay must lie in (0, 1)"),
            (self.opt in DEFAULT_LR, f"unknown optimiser {self.opt!r}; choose from {', '.join(DEFAULT_LR)}"),
            (self.sched in SCHEDULERS, f"unknown scheduler {self.sched!r}; choose cosine, step or const"),
            (self.device in ("auto", "cpu") or self.device.startswith("cuda"), f"unknown device {self.device!r}"),
            (0.0 <= self.label_dropout < 1.0, f"--label-dropout must lie in [0, 1), got {self.label_dropout}"),
            (self.method != "ddpm" or not (self.smoothing or self.mixup or self.cutmix),
             "--method ddpm trains on hard labels: drop --smoothing, --mixup and --cutmix"),
            (self.val_steps >= 1, f"--val-steps must be >= 1, got {self.val_steps}"),
        ]
        for ok, message in checks:
            if not ok:
                raise DiffclsError(message)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise DiffclsError(f"--device {name} requested but CUDA is not available")
    return torch.device(name)


def default_augment(data_spec: str) -> str:
    """Digits must not be flipped; photographs get RandomResizedCrop at ImageNet scale."""
    kind = data_spec.partition(":")[0]
    return {"mnist5k": "crop", "digits": "crop", "cifar10": "crop-flip", "folder": "rrc-flip"}.get(kind, "crop")


class Trainer:
    """One training run: data, model, optimiser, scheduler and checkpoint folder, built from a TrainConfig.

    Subclasses (e.g. :class:`diffcls.repcond.train.RepCondTrainer`) override ``_build_data``, ``_build_model``,
    ``loss_on_batch``, ``validate``, ``model_config`` and ``export``, and keep the loop, checkpoints, resume and
    torchrun handling.
    """

    RESUME_KEYS = ("data", "method", "model", "epochs", "batch_size", "seed", "data_ratio", "equal_steps", "opt",
                   "img_size")  # options a --resume must repeat
    METRICS_COLUMNS = METRICS_COLUMNS

    def __init__(self, config: TrainConfig, progress: bool | None = None, dist: Dist | None = None):
        config.validate()
        self.config = config
        self.dist = dist or distributed.current()
        self.progress = progress if self.dist.is_main else False
        self.device = resolve_device(rank_device(config.device, self.dist))
        self.out = prepare_output_dir(config.output)
        self._build_data()
        self._build_model()

    # ------------------------------------------------------------------------------------------------ building

    def _build_data(self) -> None:
        c = self.config
        self.source = source = load_source(c.data)
        c.img_size = c.img_size or source.default_img_size
        c.augment = c.augment or default_augment(c.data)
        self.transform = TransformConfig(img_size=c.img_size, fit=c.fit, low_res=c.low_res)
        train_split = source.train
        if c.data_ratio < 1.0:
            keep = data_ratio_indices(train_split.labels, c.data_ratio)
            if c.equal_steps:
                # Tile the subset to the full split's length: every data fraction gets the same number of
                # optimisation steps (the same budget), and only the variety of images shrinks.
                keep = np.resize(keep, len(train_split))
            train_split = subset_split(train_split, keep)
        self.train_set = ImageDataset(train_split, ImageTransform(self.transform, c.augment))
        self.val_set = ImageDataset(source.test, ImageTransform(self.transform))

    @property
    def steps_per_epoch(self) -> int:
        per_rank = math.ceil(len(self.train_set) / self.dist.world_size)  # DistributedSampler pads the last share
        batch = self.config.batch_size
        return max(1, per_rank // batch if self._drop_last else math.ceil(per_rank / batch))

    @property
    def _drop_last(self) -> bool:
        # timm's Mixup mixes a batch with its flip and needs an even batch size.
        return self.config.mixup > 0 or self.config.cutmix > 0

    def _build_model(self) -> None:
        """The network and objective of ``config.method``, then the optimisation around them."""
        c, k = self.config, self.source.num_classes
        seed_everything(c.seed)
        if c.method == "ddpm":
            self.noise_scheduler = create_scheduler()
            self.model = create_noise_predictor(c.model, k, c.img_size).to(self.device)
            self.objective = create_objective("ddpm", k, alphas_cumprod=self.noise_scheduler.alphas_cumprod,
                                              label_dropout=c.label_dropout)
        else:
            self.model = create_classifier(c.method, c.model, k).to(self.device)
            self.objective = create_objective(c.method, k, c.smoothing,
                                              **({"noise": c.noise, "sampling_eps": c.sampling_eps}
                                                 if c.method == "didicm" else {}))
        # --batch-size is per process (as in timm); the default lr scales with the global batch.
        self._build_optimisation(c.lr or DEFAULT_LR[c.opt] * c.batch_size * self.dist.world_size / 256)

    def _build_optimisation(self, lr: float) -> None:
        """Optimiser, per-step schedule, EMA, the DDP wrapper under torchrun, mixup and autocast for ``self.model``."""
        c = self.config
        self.optimizer = create_optimizer_v2(self.model, opt=c.opt, lr=lr, weight_decay=c.weight_decay)
        self.scheduler, _ = create_scheduler_v2(self.optimizer, sched=SCHEDULERS[c.sched], num_epochs=max(c.epochs, 1),
                                                warmup_epochs=min(c.warmup_epochs, max(c.epochs - 1, 0)),
                                                min_lr=c.min_lr, warmup_lr=lr * 0.01, step_on_epochs=False,
                                                updates_per_epoch=self.steps_per_epoch)
        self.ema = ModelEmaV3(self.model, decay=c.ema_decay) if c.ema_decay else None
        # The module the objective calls: DDP averages gradients over ranks in backward. Checkpoints, EMA and
        # validation use the plain module underneath.
        self.train_model = self.model
        if self.dist.enabled:
            self.train_model = DistributedDataParallel(
                self.model, device_ids=[self.device.index] if self.device.type == "cuda" else None)
        self.mixup = (Mixup(mixup_alpha=c.mixup, cutmix_alpha=c.cutmix, label_smoothing=c.smoothing,
                            num_classes=self.source.num_classes) if self._drop_last else None)
        self.autocast = (torch.autocast("cuda", dtype=torch.bfloat16) if c.amp and self.device.type == "cuda"
                         else nullcontext())

    # -------------------------------------------------------------------------------------------- checkpoints

    def model_config(self) -> dict:
        """The checkpoint's ``config.json``: what eval/predict need to rebuild the model and its transform."""
        c = self.config
        return {
            "diffcls_version": diffcls.__version__,
            "method": c.method,
            "model": c.model,
            "num_classes": self.source.num_classes,
            "class_names": self.source.class_names,
            "data": c.data,
            "transform": self.transform.to_dict(),
            "train": asdict(c),
        }

    def save(self, epoch: int, metrics: MetricsLog, row: dict) -> None:
        """End-of-epoch checkpoint: state first, then exported weights and config, then the metrics row.
        Rank 0 writes; the other ranks wait for it, so a resume never reads a checkpoint being written."""
        if not self.dist.is_main:
            self.dist.barrier()
            return
        rng = {"torch": torch.get_rng_state(), "numpy": torch.from_numpy(np.random.get_state()[1].astype(np.int64)),
               "python": torch.tensor(random.getstate()[1], dtype=torch.int64)}
        state = {
            "epoch": epoch + 1,
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "rng": rng,
        }
        if self.ema is not None:
            state["ema"] = self.ema.module.state_dict()
        save_training_state(self.out / STATE_NAME, state)
        self.export(epoch + 1)
        metrics.append(row)
        self.dist.barrier()

    def export(self, epoch: int) -> None:
        """The weights to evaluate (EMA when on) and config.json; a ddpm model as a DDPMPipeline folder."""
        model = self.ema.module if self.ema is not None else self.model
        if self.config.method == "ddpm":
            save_pipeline(model, self.noise_scheduler, self.out)
        else:
            save_weights(self.out / WEIGHTS_NAME, model.state_dict(), metadata={"epoch": str(epoch)})
        write_json(self.out / CONFIG_NAME, self.model_config())

    def restore(self) -> int:
        """Load the training state of an earlier run into this trainer; returns the epoch to start from."""
        path = self.out / STATE_NAME
        if not path.is_file():
            raise DiffclsError(f"--resume: no {STATE_NAME} in {self.out} (nothing to resume)")
        old = read_saved_train_config(self.out)
        if old:
            for key in self.RESUME_KEYS:
                if key in old and old[key] != getattr(self.config, key):
                    raise DiffclsError(f"--resume: {key} was {old[key]!r} in {self.out}, now {getattr(self.config, key)!r}")
        state = load_training_state(path)
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        if self.ema is not None and "ema" in state:
            self.ema.module.load_state_dict(state["ema"])
        return int(state["epoch"])

    # -------------------------------------------------------------------------------------------------- loops

    def train_one_epoch(self, epoch: int) -> float:
        """One pass over the training set; returns the mean loss over all ranks' images."""
        c = self.config
        # Each rank draws its own augmentations and noise; rank 0 draws what a single process draws.
        seed_everything(c.seed * 100_003 + epoch + 1_000_003 * self.dist.rank)
        # One sampler for one process or many: rank r takes every world_size-th image of a permutation seeded
        # by (seed, epoch), so the union of the ranks' batches j is a single process's batch j at world_size x
        # the batch size.
        sampler = DistributedSampler(self.train_set, num_replicas=self.dist.world_size, rank=self.dist.rank,
                                     shuffle=True, seed=c.seed * 100_003, drop_last=False)
        sampler.set_epoch(epoch)
        loader = make_loader(self.train_set, c.batch_size, shuffle=True, workers=c.workers, sampler=sampler,
                             drop_last=self._drop_last)
        self.train_model.train()
        total, count = 0.0, 0
        bar = tqdm(loader, desc=f"epoch {epoch + 1}/{c.epochs}", disable=None if self.progress is None
                   else not self.progress, leave=False)
        for step, (images, labels) in enumerate(bar):
            images, labels = images.to(self.device), labels.to(self.device)
            target = labels
            if self.mixup is not None:
                images, target = self.mixup(images, labels)
            with self.autocast:
                loss = self.loss_on_batch(images, target)
            if not torch.isfinite(loss):
                raise DiffclsError(f"training diverged: loss is {loss.item()} at epoch {epoch + 1}, step {step}; "
                                   f"try a lower --lr or --clip-grad")
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if c.clip_grad:
                nn.utils.clip_grad_norm_(self.model.parameters(), c.clip_grad)
            self.optimizer.step()
            num_updates = epoch * self.steps_per_epoch + step + 1
            self.scheduler.step_update(num_updates)
            if self.ema is not None:
                self.ema.update(self.model, step=num_updates)
            total += loss.item() * len(images)
            count += len(images)
            bar.set_postfix(loss=f"{total / count:.4f}")
        total, count = self.dist.all_reduce_sum([total, count])
        return total / max(count, 1)

    def loss_on_batch(self, images: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """The scalar training loss of a batch (images on the device; labels or soft targets)."""
        return self.objective(self.train_model, images, target)

    def validate(self) -> dict:
        """The validation columns of the epoch's metrics row: ``{"val_top1": ...}``."""
        c = self.config
        model = self.ema.module if self.ema is not None else self.model
        if c.method == "ddpm":
            return {"val_top1": self.validate_diffusion_classifier(model)}
        sampler = SamplerConfig(sampler=c.val_sampler, steps=c.val_steps)
        probs, labels = predict_dataset(model, c.method, self.val_set, max(c.batch_size, 256), sampler, self.device,
                                        seed=c.seed, workers=c.workers, desc="validate", progress=self.progress,
                                        dist=self.dist)
        return {"val_top1": topk_accuracy(probs, labels, 1)}

    @torch.no_grad()
    def validate_diffusion_classifier(self, model: nn.Module) -> float:
        """Top-1 of a flat Diffusion Classifier (``val_steps`` timesteps, one seeded noise bank) on ``val_images``
        test images (a fixed stratified subset: test splits may be sorted by class)."""
        c = self.config
        model.eval()
        chosen = np.sort(stratified_order(self.source.test.labels)[:c.val_images])
        count = len(chosen)
        images, labels = zip(*(self.val_set[int(i)] for i in chosen))
        x0, labels = torch.stack(images).to(self.device), torch.as_tensor(labels)
        noise = torch.randn(c.val_steps, *x0.shape[1:], generator=torch.Generator().manual_seed(c.seed))
        correct = 0
        for _, start in self.dist.shard_batches(range(0, count, 32)):  # ranks split the images
            result = classify(model, x0[start:start + 32], self.source.num_classes,
                              self.noise_scheduler.alphas_cumprod, parse_schedule(str(c.val_steps)),
                              noise.to(self.device), batch_size=max(c.batch_size, 256))
            correct += (result.prediction.cpu() == labels[start:start + 32]).sum().item()
        return self.dist.all_reduce_sum([correct])[0] / max(count, 1)

    def fit(self, resume: bool = False) -> dict:
        """Train to ``config.epochs``; returns the last metrics row (empty if there was nothing to do)."""
        c = self.config
        start = self.restore() if resume else 0
        metrics = MetricsLog(self.out / METRICS_NAME, self.METRICS_COLUMNS)
        metrics.load(up_to_epoch=start + 1 if resume else 1)
        row: dict = {}
        for epoch in range(start, c.epochs):
            tic = time.perf_counter()
            loss = self.train_one_epoch(epoch)
            validation = {k: round(v, 6) for k, v in self.validate().items()}
            row = {"epoch": epoch + 1, "train_loss": round(loss, 6), "lr": self.optimizer.param_groups[0]["lr"],
                   **validation, "seconds": round(time.perf_counter() - tic, 2)}
            self.save(epoch, metrics, row)
            if self.dist.is_main:
                shown = "  ".join(f"{k} {v:.4f}" for k, v in validation.items())
                print(f"epoch {epoch + 1}/{c.epochs}  loss {loss:.4f}  {shown}  ({row['seconds']:.1f} s)",
                      file=sys.stderr, flush=True)
        if (c.epochs == 0 or start >= c.epochs) and self.dist.is_main:
            if not (self.out / CONFIG_NAME).is_file():
                self.export(0)
        return row


def train(config: TrainConfig, resume: bool = False, progress: bool | None = None,
          dist: Dist | None = None) -> dict:
    """Train a classifier as configured; see :class:`Trainer`."""
    return Trainer(config, progress=progress, dist=dist).fit(resume=resume)
