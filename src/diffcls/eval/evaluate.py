"""``diffcls eval`` for classifiers: a checkpoint, a data spec and a sampler in; a results JSON (and probs) out."""

from __future__ import annotations

import io
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn

from diffcls.data import (
    DataSource,
    ImageDataset,
    ImageTransform,
    Split,
    TransformConfig,
    load_source,
    read_image_file,
    stratified_order,
    subset_split,
    training_splits,
)
from diffcls.data.corruptions import check_corruption, corrupt_images, default_corruption_set
from diffcls.didicm import SamplerConfig
from diffcls.errors import DiffclsError
from diffcls.inference.calibration import fit_probability_temperature, post_metrics
from diffcls.inference.metrics import classification_metrics, posterior_metrics
from diffcls.inference.ood import OOD_SCORES, all_ood_metrics
from diffcls.inference.predict import predict_dataset
from diffcls.methods import ClassifierMethod, get_method, load_classifier
from diffcls.runtime.distributed import SINGLE_PROCESS, Dist
from diffcls.runtime.io import atomic_write, prepare_output_dir, write_json


@dataclass
class EvalConfig:
    checkpoint: str
    data: str
    split: str = "test"
    sampler: SamplerConfig = field(default_factory=SamplerConfig)
    batch_size: int = 256
    low_res: int | None = None
    limit: int | None = None
    seed: int = 0
    device: str = "cpu"
    workers: int = 0
    corruption: str | None = None
    severity: int | None = None
    corruption_set: str | None = None  # None: "cifar" for images of at most 64 px, else "imagenet"
    cache_dir: str | None = None  # None: default_cache_dir()
    calibrate: bool = False  # fit a temperature on the checkpoint's validation split; report post_* metrics
    ood_data: str | None = None  # a data spec (its test split) or "noise": score OOD detection against it
    ood_score: str = "msp"  # the uncertainty score of ood_auroc / ood_aupr / ood_fpr95 (see diffcls.inference.ood)
    ood_limit: int | None = None  # OOD images: a fixed stratified subset (default: as many as the test images)


def default_cache_dir() -> Path:
    """Where corrupted test sets are cached: ``$DIFFCLS_CACHE`` or ``~/.cache/diffcls``, then ``corruptions/``."""
    root = os.environ.get("DIFFCLS_CACHE") or Path.home() / ".cache" / "diffcls"
    return Path(root) / "corruptions"


def check_output_paths(*paths: str | None) -> None:
    """Fail before any work when a results file could not be written afterwards."""
    for p in paths:
        if p:
            prepare_output_dir(Path(p).parent if str(Path(p).parent) else ".")


def select_split(
    source: DataSource, split: str, limit: int | None = None, *, train_limit: int | None = None, val_split: float = 0.0
) -> Split:
    """The ``test`` split, or the ``train``/``val`` images of a model trained with ``train_limit`` and
    ``val_split`` (see :func:`~diffcls.data.training_splits`); optionally only ``limit`` of its images: a fixed,
    stratified choice (:func:`~diffcls.data.datasets.stratified_order`), kept in data-set order."""
    if split not in ("train", "val", "test"):
        raise DiffclsError(f"--split must be train, val or test, got {split!r}")
    if split == "test":
        chosen = source.test
    else:
        train, val = training_splits(source.train, train_limit, val_split)
        if split == "val" and val is None:
            raise DiffclsError(
                "--split val: the checkpoint held out no validation images (it was trained with "
                "--val-split 0); use --split test"
            )
        chosen = train if split == "train" else val
    if limit is not None:
        if limit < 1:
            raise DiffclsError(f"--limit must be >= 1, got {limit}")
        chosen = subset_split(chosen, np.sort(stratified_order(chosen.labels)[:limit]))
    return chosen


def held_out_images(mconfig: dict) -> dict:
    """``train_limit`` and ``val_split`` of a checkpoint's ``config.json``: which training images it trained and
    validated on (a checkpoint from before validation splits validated on the test split)."""
    train = mconfig.get("train", {})
    return {"train_limit": train.get("train_limit"), "val_split": train.get("val_split", 0.0)}


def known_posterior(source: DataSource, split: Split, corruption: str | None, low_res: int | None):
    """The exact Bayes posterior float64[N, K] of ``split``'s images when the data set knows it (``gaussmix``) and
    the images are the generator's own (no corruption, no low-resolution view); else None."""
    if source.posterior is None or corruption is not None or low_res is not None or not split.in_memory:
        return None
    return torch.as_tensor(source.posterior(split.images))


def _temperature_scaled(measure, mconfig: dict, source: DataSource, probs, split: Split, posterior) -> dict:
    """``temperature`` fitted by NLL on the checkpoint's clean validation split (``measure``: the evaluation's own
    readout and seed; the model's own input resolution, whatever ``--low-res`` the test view has) and the test
    metrics at it (``post_*``); see :mod:`diffcls.inference.calibration`."""
    held_out = held_out_images(mconfig)
    if not held_out["val_split"]:
        raise DiffclsError(
            "--calibrate fits a temperature on the validation images the checkpoint held out, but it was trained "
            "with --val-split 0"
        )
    val = select_split(source, "val", **held_out)
    _, val_probs = measure(val, TransformConfig.from_dict(mconfig["transform"]), False)
    temperature = fit_probability_temperature(val_probs, torch.as_tensor(val.labels))
    return {"temperature": round(temperature, 6), "temperature_images": len(val.labels)} | post_metrics(
        probs, torch.as_tensor(split.labels), temperature, posterior
    )


def ood_split(spec: str, source: DataSource, n: int, transform: TransformConfig) -> Split:
    """``n`` out-of-distribution images for a model of ``source``: a fixed stratified subset of the test split of
    data spec ``spec``, or ``"noise"``: uniform uint8 noise shaped like ``source``'s test images (seed 0). Images
    the model cannot take (another channel count; too large to pad to its input) are a one-line error."""
    if spec == "noise":
        shape = (n, *source.test.images.shape[1:]) if source.test.in_memory else (n, *source.native_size, 3)
        images = np.random.default_rng(0).integers(0, 256, size=shape, dtype=np.uint8)
        return Split(images, np.zeros(n, dtype=np.int64))
    ood = load_source(spec)
    if ood.channels != source.channels:
        raise DiffclsError(
            f"--ood-data {spec} has {ood.channels}-channel images but the in-distribution data {source.name} has "
            f"{source.channels}; convert one of them first"
        )
    if transform.fit == "pad" and max(ood.native_size) > transform.img_size:
        raise DiffclsError(
            f"--ood-data {spec} has {ood.native_size[0]}×{ood.native_size[1]} images, larger than the model's "
            f"{transform.img_size}-px input that it pads to (--fit pad)"
        )
    return select_split(ood, "test", min(n, len(ood.test)))


def ood_results(
    in_probs: torch.Tensor,
    out_probs: torch.Tensor,
    score: str,
    spec: str,
    in_native: dict[str, torch.Tensor] | None = None,
    out_native: dict[str, torch.Tensor] | None = None,
) -> dict:
    """The results fields of OOD detection: ``ood_auroc``, ``ood_aupr``, ``ood_fpr95`` of ``score`` (a name of
    :data:`~diffcls.inference.ood.OOD_SCORES` or of the method's native scores, given per image as ``{name:
    float[N]}`` for the in-distribution and ``{name: float[M]}`` for the OOD images), which score and data, and
    every score's metrics under ``ood_by_score``."""
    by_score = all_ood_metrics(in_probs, out_probs, in_native, out_native)
    if score not in by_score:
        raise DiffclsError(f"unknown OOD score {score!r}; choose from {', '.join(by_score)}")
    return {**by_score[score], "ood_score": score, "ood_data": spec, "ood_num_samples": len(out_probs),
            "ood_by_score": by_score}  # fmt: skip


def check_ood_score(score: str, native: tuple[str, ...], readout: str) -> None:
    """Refuse an ``--ood-score`` the readout does not have (``native``: its method's own scores)."""
    known = (*OOD_SCORES, *native)
    if score not in known:
        raise DiffclsError(f"--ood-score {score!r} is not a score of {readout}; choose from {', '.join(known)}")


def corrupt_split(
    split: Split,
    source: DataSource,
    corruption: str,
    severity: int | None,
    corruption_set: str | None = None,
    cache_dir: str | Path | None = None,
    workers: int = 0,
    progress: bool | None = None,
    dist: Dist = SINGLE_PROCESS,
) -> tuple[Split, str]:
    """The split with every image corrupted (deterministically, cached); returns ``(split, corruption set used)``.

    Under torchrun rank 0 corrupts and caches the images first; the other ranks then read them from the cache.

    Corruptions act on the stored images, before the model's transform (fit to size, low-resolution view).
    """
    if severity is None:
        raise DiffclsError("--corruption needs --severity 1..5")
    chosen_set = corruption_set or default_corruption_set(max(source.native_size))
    check_corruption(corruption, severity, chosen_set)
    if not dist.is_main:
        dist.barrier()  # wait for rank 0 to fill the cache
    images = corrupt_images(
        split.images,
        corruption,
        severity,
        corruption_set=chosen_set,
        cache_dir=cache_dir if cache_dir is not None else default_cache_dir(),
        workers=workers,
        progress=progress if dist.is_main else False,
    )
    if dist.is_main:
        dist.barrier()
    return Split(images, split.labels), chosen_set


def evaluate_model(
    method: ClassifierMethod,
    model: nn.Module,
    split: Split,
    transform: TransformConfig,
    sampler: SamplerConfig | None = None,
    *,
    device: str = "cpu",
    seed: int = 0,
    batch_size: int = 256,
    workers: int = 0,
    progress: bool | None = None,
    dist: Dist = SINGLE_PROCESS,
    scores_out: dict[str, torch.Tensor] | None = None,
) -> tuple[dict, torch.Tensor]:
    """Metrics of a loaded model read out by its method (with ``sampler`` where the method has samplers) on a
    split: ``classification_metrics`` plus NFE and timing; and probs ``[N, K]``. With ``scores_out`` (a dict),
    the method's native uncertainty scores ``{name: float64[N]}`` are put there.

    Under torchrun the split is sharded over the ranks by batches and every rank gets the gathered results.
    """
    dataset = ImageDataset(split, ImageTransform(transform))
    # Only a method with native scores is asked for them (a readout written without the flag keeps working).
    native = scores_out is not None and method.native_ood_scores(sampler)
    readout = method.readout(model, sampler, native_scores=True) if native else method.readout(model, sampler)
    tic = time.perf_counter()
    probs, labels = predict_dataset(
        readout,
        dataset,
        batch_size,
        device,
        seed=seed,
        workers=workers,
        progress=progress,
        dist=dist,
        scores_out=scores_out,
    )
    seconds = time.perf_counter() - tic
    results = {
        **classification_metrics(probs, labels),
        "nfe_per_image": method.nfe(sampler),
        "seconds": round(seconds, 3),
        "ms_per_image": round(1000 * seconds / max(len(labels), 1), 3),
        "images_per_second": round(len(labels) / max(seconds, 1e-9), 2),
    }
    return results, probs


def evaluate_classifier(
    cfg: EvalConfig, progress: bool | None = None, dist: Dist = SINGLE_PROCESS
) -> tuple[dict, torch.Tensor]:
    """Evaluate a trained classifier; returns (results dict of the design notes' keys, probs ``float32[N, K]``).

    Under torchrun the images are sharded over the ranks and every rank returns the gathered results.
    """
    if cfg.severity is not None and cfg.corruption is None:
        raise DiffclsError("--severity needs --corruption NAME")
    model, mconfig = load_classifier(cfg.checkpoint, cfg.device)
    method = get_method(mconfig["method"])
    source = load_source(cfg.data)
    if source.num_classes > mconfig["num_classes"]:
        raise DiffclsError(
            f"data {cfg.data} has {source.num_classes} classes but the checkpoint was trained on "
            f"{mconfig['num_classes']}"
        )
    split = select_split(source, cfg.split, cfg.limit, **held_out_images(mconfig))
    tconf = TransformConfig.from_dict(mconfig["transform"])
    if cfg.low_res is not None:
        tconf.low_res = cfg.low_res
    ood = None  # checked before any work
    if cfg.ood_data is not None:
        check_ood_score(cfg.ood_score, method.native_ood_scores(cfg.sampler), _readout_name(method, cfg.sampler))
        if cfg.ood_limit is not None and cfg.ood_limit < 1:
            raise DiffclsError(f"--ood-limit must be >= 1, got {cfg.ood_limit}")
        ood = ood_split(cfg.ood_data, source, cfg.ood_limit or len(split), tconf)
    corruption_set = None
    if cfg.corruption is not None:
        split, corruption_set = corrupt_split(
            split,
            source,
            cfg.corruption,
            cfg.severity,
            cfg.corruption_set,
            cfg.cache_dir,
            max(cfg.workers, 1),
            progress,
            dist,
        )

    def measure(images: Split, transform: TransformConfig, show_progress: bool | None = progress, scores=None):
        """``evaluate_model`` of this checkpoint and readout: (metrics, probs) of ``images`` (native scores put in
        ``scores``, a dict, when given)."""
        return evaluate_model(
            method, model, images, transform, cfg.sampler, device=cfg.device, seed=cfg.seed,
            batch_size=cfg.batch_size, workers=cfg.workers, progress=show_progress, dist=dist, scores_out=scores,
        )  # fmt: skip

    in_native, out_native = ({}, {}) if ood is not None else (None, None)
    metrics, probs = measure(split, tconf, scores=in_native)
    posterior = known_posterior(source, split, cfg.corruption, tconf.low_res)
    if posterior is not None:
        metrics.update(posterior_metrics(probs, torch.as_tensor(split.labels), posterior))
    if cfg.calibrate:
        metrics.update(_temperature_scaled(measure, mconfig, source, probs, split, posterior))
    ood_probs = None
    if ood is not None:
        _, ood_probs = measure(ood, tconf, scores=out_native)
        metrics.update(ood_results(probs, ood_probs, cfg.ood_score, cfg.ood_data, in_native, out_native))
    results = {
        **metrics,
        "method": method.name,
        "model": mconfig["model"],
        **method.readout_fields(cfg.sampler),
        "checkpoint": str(cfg.checkpoint),
        "data": cfg.data,
        "split": cfg.split,
        "corruption": cfg.corruption,
        "severity": cfg.severity or 0,
        "corruption_set": corruption_set,
        "low_res": tconf.low_res,
        "seed": cfg.seed,
        "processes": dist.world_size,
    }
    if ood_probs is not None:
        results["ood_probs"] = ood_probs  # popped by the caller, saved beside --save-probs
    return results, probs


def _readout_name(method: ClassifierMethod, sampler: SamplerConfig | None) -> str:
    return f"{method.name} ({sampler.label})" if method.uses_sampler and sampler is not None else method.name


def write_results(results: dict, probs: torch.Tensor, results_file: str | None, probs_file: str | None) -> None:
    """The results JSON and, with ``probs_file``, the probabilities float32[N, K] as .npy (and those of the OOD
    images, ``results["ood_probs"]``, in :func:`ood_probs_path`)."""
    ood_probs = results.pop("ood_probs", None)
    if results_file:
        write_json(results_file, results)
    if probs_file:
        _save_npy(probs_file, probs)
        if ood_probs is not None:
            _save_npy(ood_probs_path(probs_file), ood_probs)


def ood_probs_path(probs_file: str | Path) -> Path:
    """Where ``--save-probs FILE`` puts the OOD images' probabilities: ``FILE`` with ``.ood.npy``."""
    return Path(probs_file).with_suffix(".ood.npy")


def _save_npy(path: str | Path, array: torch.Tensor) -> None:
    buffer = io.BytesIO()
    np.save(buffer, array.numpy().astype(np.float32))
    atomic_write(path, lambda f: f.write(buffer.getvalue()))


def predict_files(
    checkpoint: str,
    paths: list[str],
    top_k: int = 5,
    sampler: SamplerConfig | None = None,
    device: str = "cpu",
    seed: int = 0,
) -> list[dict]:
    """Top-k classes of image files with a classifier folder: ``[{"image", "prediction": {"class", "index"},
    "predictions": [{"class", "index", "probability"}, ...]}]`` (the prediction is the most probable class)."""
    check_top_k(top_k)
    model, mconfig = load_classifier(checkpoint, device)
    images = read_images(paths, TransformConfig.from_dict(mconfig["transform"]))
    generator = torch.Generator(device=device).manual_seed(seed)
    readout = get_method(mconfig["method"]).readout(model, sampler)
    with torch.inference_mode():
        probs = readout(images.to(device), generator).float().cpu()
    return prediction_rows(paths, probs, mconfig["class_names"], top_k)


def check_top_k(top_k: int) -> None:
    if top_k < 1:
        raise DiffclsError(f"--top-k must be >= 1, got {top_k}")


def read_images(paths: list[str], transform: TransformConfig) -> torch.Tensor:
    """Image files as the model's input, float32[N, C, H, W] (``transform``: its size, fit and normalisation)."""
    apply = ImageTransform(transform)
    return torch.stack([apply(torch.from_numpy(read_image_file(p)).permute(2, 0, 1)) for p in paths])


def prediction_rows(
    paths: list[str], probs: torch.Tensor, names: list[str], top_k: int, decisions: torch.Tensor | None = None
) -> list[dict]:
    """One row per image: its decision (``decisions`` int64[N]; None: the first of its top-k, ties broken as
    every top-1 of the library breaks them) and its top-k classes of ``probs`` float[N, K]."""
    top = probs.topk(min(top_k, probs.shape[1]), dim=1)
    decisions = top.indices[:, 0] if decisions is None else decisions
    return [
        {
            "image": path,
            "prediction": {"class": names[int(decision)], "index": int(decision)},
            "predictions": [
                {"class": names[i], "index": i, "probability": round(p, 6)}
                for p, i in zip(values.tolist(), indices.tolist())
            ],
        }
        for path, decision, values, indices in zip(paths, decisions, top.values, top.indices)
    ]
