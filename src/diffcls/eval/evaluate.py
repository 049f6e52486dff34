"""``diffcls eval`` for classifiers: a checkpoint, a data spec and a sampler in; a results JSON (and probs) out."""

from __future__ import annotations

import io
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from diffcls.data import (ImageDataset, ImageTransform, TransformConfig, load_source, make_loader, read_image_file,
                          subset_split)
from diffcls.errors import DiffclsError
from diffcls.eval.metrics import classification_metrics
from diffcls.eval.predict import SamplerConfig, predict_loader, predict_proba
from diffcls.models.factory import load_classifier
from diffcls.train.checkpoint import atomic_write, prepare_output_dir, write_json


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


def check_output_paths(*paths: str | None) -> None:
    """Fail before any work when a results file could not be written afterwards."""
    for p in paths:
        if p:
            prepare_output_dir(Path(p).parent if str(Path(p).parent) else ".")


def evaluate_classifier(cfg: EvalConfig, progress: bool | None = None) -> tuple[dict, torch.Tensor]:
    """Evaluate a trained classifier; returns (results dict of the design notes' keys, probs ``float32[N, K]``)."""
    model, mconfig = load_classifier(cfg.checkpoint, cfg.device)
    method = mconfig["method"]
    source = load_source(cfg.data)
    if source.num_classes > mconfig["num_classes"]:
        raise DiffclsError(f"data {cfg.data} has {source.num_classes} classes but the checkpoint was trained on "
                           f"{mconfig['num_classes']}")
    if cfg.split not in ("train", "test"):
        raise DiffclsError(f"--split must be train or test, got {cfg.split!r}")
    split = getattr(source, cfg.split)
    if cfg.limit is not None:
        if cfg.limit < 1:
            raise DiffclsError(f"--limit must be >= 1, got {cfg.limit}")
        split = subset_split(split, np.arange(min(cfg.limit, len(split))))
    tconf = TransformConfig.from_dict(mconfig["transform"])
    if cfg.low_res is not None:
        tconf.low_res = cfg.low_res
    dataset = ImageDataset(split, ImageTransform(tconf))
    loader = make_loader(dataset, cfg.batch_size, shuffle=False, workers=cfg.workers)
    tic = time.perf_counter()
    probs, labels = predict_loader(model, method, loader, cfg.sampler, cfg.device, seed=cfg.seed,
                                   progress=progress)
    seconds = time.perf_counter() - tic
    results = {
        **classification_metrics(probs, labels),
        "nfe_per_image": cfg.sampler.nfe(method),
        "seconds": round(seconds, 3),
        "images_per_second": round(len(labels) / max(seconds, 1e-9), 2),
        "method": method,
        "model": mconfig["model"],
        **cfg.sampler.to_dict(method),
        "checkpoint": str(cfg.checkpoint),
        "data": cfg.data,
        "split": cfg.split,
        "corruption": None,
        "severity": 0,
        "low_res": tconf.low_res,
        "seed": cfg.seed,
    }
    return results, probs


def write_results(results: dict, probs: torch.Tensor, results_file: str | None, probs_file: str | None) -> None:
    if results_file:
        write_json(results_file, results)
    if probs_file:
        buffer = io.BytesIO()
        np.save(buffer, probs.numpy().astype(np.float32))
        atomic_write(probs_file, lambda f: f.write(buffer.getvalue()))


def predict_files(checkpoint: str, paths: list[str], top_k: int = 5, sampler: SamplerConfig | None = None,
                  device: str = "cpu", seed: int = 0) -> list[dict]:
    """Top-k classes of image files: ``[{"image", "predictions": [{"class", "index", "probability"}, ...]}]``."""
    if top_k < 1:
        raise DiffclsError(f"--top-k must be >= 1, got {top_k}")
    model, mconfig = load_classifier(checkpoint, device)
    transform = ImageTransform(TransformConfig.from_dict(mconfig["transform"]))
    images = torch.stack([transform(torch.from_numpy(read_image_file(p)).permute(2, 0, 1)) for p in paths])
    generator = torch.Generator(device=device).manual_seed(seed)
    model.eval()
    probs = predict_proba(model, mconfig["method"], images.to(device), sampler, generator).cpu()
    names = mconfig["class_names"]
    top = probs.topk(min(top_k, probs.shape[1]), dim=1)
    return [{"image": path,
             "predictions": [{"class": names[i], "index": i, "probability": round(p, 6)}
                             for p, i in zip(values.tolist(), indices.tolist())]}
            for path, values, indices in zip(paths, top.values, top.indices)]
