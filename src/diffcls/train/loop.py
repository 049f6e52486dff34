"""The method-agnostic training loop: data, optimisation, checkpoints, resume and torchrun for any method.

:class:`Trainer` knows no method. A method's trainer (in :mod:`diffcls.methods`) subclasses it and provides the
network and objective (:meth:`Trainer._build_model`), the validation columns (:meth:`Trainer.validate`) and the
weights it exports (:meth:`Trainer.save_model`).

Reproducibility: every epoch reseeds Python, numpy and torch from (seed, epoch) and shuffles with its own
generator, so epoch e is the same computation whether the run started at epoch 0 or resumed at e. Checkpoints
are written at the end of each epoch; ``resume=True`` continues from the last one and ends with the same
weights as an uninterrupted run.

Under ``torchrun`` the model is wrapped in DistributedDataParallel, each rank reads its share of the epoch's
permutation (``--batch-size`` per rank), losses are summed and validation gathered over ranks, and rank 0 alone
writes the checkpoint folder (see :mod:`diffcls.runtime.distributed`).
"""

from __future__ import annotations

import math
import random
import sys
import time
from contextlib import nullcontext
from dataclasses import asdict

import numpy as np
import torch
import torch.nn as nn
from timm.data import Mixup
from timm.optim import create_optimizer_v2
from timm.scheduler import create_scheduler_v2
from timm.utils import ModelEmaV3
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DistributedSampler, Sampler
from tqdm import tqdm  # not tqdm.auto: its asyncio bar calls iter() at once, starting idle loader workers

import diffcls
from diffcls.data import DataSource, make_loader
from diffcls.errors import DiffclsError
from diffcls.runtime import distributed
from diffcls.runtime.checkpoint import (
    CONFIG_NAME,
    METRICS_COLUMNS,
    METRICS_NAME,
    STATE_NAME,
    load_training_state,
    read_saved_train_config,
    save_training_state,
)
from diffcls.runtime.device import resolve_device, seed_everything
from diffcls.runtime.distributed import Dist, rank_device
from diffcls.runtime.io import MetricsLog, prepare_output_dir, write_json
from diffcls.train.config import DEFAULT_LR, SCHEDULERS


class Trainer:
    """One training run: data, model, optimiser, scheduler and checkpoint folder, built from a method's config.

    Subclasses provide ``_build_model`` (set ``self.model`` and ``self.objective``, then call
    ``_build_optimisation``), ``validate`` and ``save_model``; they may override ``_build_data``,
    ``loss_on_batch`` and ``model_config``. The loop, checkpoints, resume and torchrun handling stay here.
    """

    RESUME_KEYS: tuple[str, ...] = ()  # options a --resume must repeat
    METRICS_COLUMNS = METRICS_COLUMNS

    def __init__(
        self, config, progress: bool | None = None, dist: Dist | None = None, source: DataSource | None = None
    ):
        """``source``: the data of ``config.data`` when the caller has loaded it already (a benchmark trains many
        models on one data set); None: loaded here."""
        self.config = config
        self.validate_config()
        self.source = source
        self.dist = dist or distributed.current()
        self.progress = progress if self.dist.is_main else False
        self.device = resolve_device(rank_device(config.device, self.dist))
        self.out = prepare_output_dir(config.output)
        self._build_data()
        self._build_model()

    def validate_config(self) -> None:
        """Check the options before anything is written (a :class:`DiffclsError` names the bad flag)."""
        self.config.validate()

    # ------------------------------------------------------------------------------------------------ building

    def _build_data(self) -> None:
        """Set ``self.source``, ``self.transform``, ``self.train_set`` and ``self.val_set``."""
        raise NotImplementedError

    @property
    def steps_per_epoch(self) -> int:
        per_rank = math.ceil(len(self.train_set) / self.dist.world_size)  # DistributedSampler pads the last share
        batch = self.config.batch_size
        return max(1, per_rank // batch if self._drop_last else math.ceil(per_rank / batch))

    @property
    def _drop_last(self) -> bool:
        """Whether an epoch drops its last, smaller batch (timm's Mixup needs an even batch size)."""
        return False

    def _build_mixup(self) -> Mixup | None:
        """timm's Mixup for the batches, or None."""
        return None

    def _build_model(self) -> None:
        """Set ``self.model`` (on ``self.device``) and ``self.objective``, then call ``_build_optimisation``."""
        raise NotImplementedError

    def default_lr(self) -> float:
        """--lr when not given: per optimiser, scaled with the global batch (``--batch-size`` is per process,
        as in timm)."""
        c = self.config
        return c.lr or DEFAULT_LR[c.opt] * c.batch_size * self.dist.world_size / 256

    def _build_optimisation(self, lr: float) -> None:
        """Optimiser, per-step schedule, EMA, the DDP wrapper under torchrun, mixup and autocast for ``self.model``."""
        c = self.config
        self.optimizer = create_optimizer_v2(self.model, opt=c.opt, lr=lr, weight_decay=c.weight_decay)
        self.scheduler, _ = create_scheduler_v2(
            self.optimizer,
            sched=SCHEDULERS[c.sched],
            num_epochs=max(c.epochs, 1),
            warmup_epochs=min(c.warmup_epochs, max(c.epochs - 1, 0)),
            min_lr=c.min_lr,
            warmup_lr=lr * 0.01,
            step_on_epochs=False,
            updates_per_epoch=self.steps_per_epoch,
        )
        self.ema = ModelEmaV3(self.model, decay=c.ema_decay) if c.ema_decay else None
        # The module the objective calls: DDP averages gradients over ranks in backward. Checkpoints, EMA and
        # validation use the plain module underneath.
        self.train_model = self.model
        if self.dist.enabled:
            self.train_model = DistributedDataParallel(
                self.model, device_ids=[self.device.index] if self.device.type == "cuda" else None
            )
        self.mixup = self._build_mixup()
        self.autocast = (
            torch.autocast("cuda", dtype=torch.bfloat16) if c.amp and self.device.type == "cuda" else nullcontext()
        )

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
        rng = {
            "torch": torch.get_rng_state(),
            "numpy": torch.from_numpy(np.random.get_state()[1].astype(np.int64)),
            "python": torch.tensor(random.getstate()[1], dtype=torch.int64),
        }
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

    @property
    def eval_model(self) -> nn.Module:
        """The weights to validate and export: the EMA's when on."""
        return self.ema.module if self.ema is not None else self.model

    def export(self, epoch: int) -> None:
        """The weights to evaluate and config.json."""
        self.save_model(self.eval_model, epoch)
        write_json(self.out / CONFIG_NAME, self.model_config())

    def save_model(self, model: nn.Module, epoch: int) -> None:
        """Write ``model``'s weights into ``self.out`` in the method's checkpoint layout."""
        raise NotImplementedError

    def restore(self) -> int:
        """Load the training state of an earlier run into this trainer; returns the epoch to start from."""
        path = self.out / STATE_NAME
        if not path.is_file():
            raise DiffclsError(f"--resume: no {STATE_NAME} in {self.out} (nothing to resume)")
        old = read_saved_train_config(self.out)
        if old:
            for key in self.RESUME_KEYS:
                if key in old and old[key] != getattr(self.config, key):
                    raise DiffclsError(
                        f"--resume: {key} was {old[key]!r} in {self.out}, now {getattr(self.config, key)!r}"
                    )
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
        sampler = self.train_sampler(epoch)
        loader = make_loader(
            self.train_set, c.batch_size, shuffle=True, workers=c.workers, sampler=sampler, drop_last=self._drop_last
        )
        self.train_model.train()
        total, count = 0.0, 0
        bar = tqdm(
            loader,
            desc=f"epoch {epoch + 1}/{c.epochs}",
            disable=None if self.progress is None else not self.progress,
            leave=False,
        )
        for step, (images, labels) in enumerate(bar):
            images, labels = images.to(self.device), labels.to(self.device)
            target = labels
            if self.mixup is not None:
                images, target = self.mixup(images, labels)
            with self.autocast:
                loss = self.loss_on_batch(images, target)
            if not torch.isfinite(loss):
                raise DiffclsError(
                    f"training diverged: loss is {loss.item()} at epoch {epoch + 1}, step {step}; "
                    f"try a lower --lr or --clip-grad"
                )
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

    def train_sampler(self, epoch: int) -> Sampler:
        """The order of an epoch's training images on this rank.

        One sampler for one process or many: rank r takes every world_size-th image of a permutation seeded by
        (seed, epoch), so the union of the ranks' batches j is a single process's batch j at world_size x the
        batch size.
        """
        sampler = DistributedSampler(
            self.train_set,
            num_replicas=self.dist.world_size,
            rank=self.dist.rank,
            shuffle=True,
            seed=self.config.seed * 100_003,
            drop_last=False,
        )
        sampler.set_epoch(epoch)
        return sampler

    def loss_on_batch(self, images: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """The scalar training loss of a batch (images on the device; labels or soft targets)."""
        return self.objective(self.train_model, images, target)

    def validate(self) -> dict:
        """The validation columns of the epoch's metrics row, e.g. ``{"val_top1": ...}``."""
        raise NotImplementedError

    def validation_due(self, epoch: int) -> bool:
        """Whether epoch ``epoch`` (0-based) validates and writes the checkpoint: every ``val_every``-th and the
        last. Skipping the others changes no weight: every epoch seeds its own randomness (:meth:`train_one_epoch`)."""
        return (epoch + 1) % self.config.val_every == 0 or epoch + 1 == self.config.epochs

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
            due = self.validation_due(epoch)
            validation = {k: round(v, 6) for k, v in self.validate().items()} if due else {}
            row = {
                "epoch": epoch + 1,
                "train_loss": round(loss, 6),
                "lr": self.optimizer.param_groups[0]["lr"],
                **validation,
                "seconds": round(time.perf_counter() - tic, 2),
            }
            if due:
                self.save(epoch, metrics, row)
            elif self.dist.is_main:
                metrics.append(row)  # a resume drops it with the epochs past the last checkpoint
            if self.dist.is_main:
                shown = "  ".join(f"{k} {v:.4f}" for k, v in validation.items())
                print(
                    f"epoch {epoch + 1}/{c.epochs}  loss {loss:.4f}  {shown}  ({row['seconds']:.1f} s)",
                    file=sys.stderr,
                    flush=True,
                )
        if (c.epochs == 0 or start >= c.epochs) and self.dist.is_main:
            if not (self.out / CONFIG_NAME).is_file():
                self.export(0)
        return row
