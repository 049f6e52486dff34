"""``diffcls eval`` for the Diffusion Classifier: a noise predictor, a data spec and a schedule in; results out.

Each image's outcome (label, prediction, per-stage mean errors) is appended to a JSONL file as soon as its batch is
done, so a killed evaluation resumes without redoing or duplicating images; the metrics are computed from that
file at the end. Probabilities are ``stagewise_probabilities(stage means, lambda)`` with lambda, the temperature,
fitted by NLL (``fit_temperature``) and stored in the model folder's ``calibration.json``.
"""

from __future__ import annotations

import functools
import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from diffcls.data import (
    ImageDataset,
    ImageTransform,
    Split,
    TransformConfig,
    load_source,
    stratified_order,
    subset_split,
)
from diffcls.didicm import SamplerConfig
from diffcls.errors import DiffclsError
from diffcls.eval.evaluate import (
    check_ood_score,
    check_top_k,
    corrupt_split,
    evaluate_model,
    held_out_images,
    known_posterior,
    ood_results,
    ood_split,
    prediction_rows,
    read_images,
    select_split,
)
from diffcls.generative import Schedule, classify, parse_schedule
from diffcls.generative.adaptive import hybrid_probabilities, pool_candidates, stagewise_probabilities
from diffcls.generative.calibration import fit_temperature
from diffcls.generative.pretrained import (
    TEXT_CONDITIONAL,
    NoiseModel,
    class_prompts,
    load_pretrained,
    pipeline_kind,
    read_prompt_csv,
)
from diffcls.generative.racing import classify_racing
from diffcls.generative.weighting import fit_timestep_weights, weighted_scores
from diffcls.inference.metrics import classification_metrics, posterior_metrics
from diffcls.methods import METHODS, get_method, load_classifier, method_of
from diffcls.models.noise_predictors import load_pipeline_unet, scores_all_classes
from diffcls.runtime.checkpoint import read_checkpoint_config
from diffcls.runtime.distributed import SINGLE_PROCESS, Dist
from diffcls.runtime.io import JsonlLog, write_json

CALIBRATION_NAME = "calibration.json"
IMAGES_PER_BATCH = 16  # images classified together; their rows are chunked into --batch-size network calls


def load_noise_model(cfg: DCEvalConfig, class_names: list[str]) -> NoiseModel:
    """A model trained with ``diffcls train --method ddpm`` (``--checkpoint``) or a diffusers folder
    (``--pretrained``); a text-conditional one gets its prompts from a CSV or the class names and a template."""
    if (cfg.checkpoint is None) == (cfg.pretrained is None):
        raise DiffclsError("give one of --checkpoint (a diffcls ddpm folder) and --pretrained (a diffusers folder)")
    if cfg.pretrained is not None:
        prompts = None
        if pipeline_kind(cfg.pretrained) in TEXT_CONDITIONAL:
            prompts = (
                read_prompt_csv(cfg.prompts_csv) if cfg.prompts_csv else class_prompts(class_names, cfg.prompt_template)
            )
        return load_pretrained(cfg.pretrained, cfg.device, prompts)
    method, config = method_of(cfg.checkpoint)
    if method.evaluation != "diffusion-classifier":
        raise DiffclsError(
            f"{cfg.checkpoint} holds a {config['method']!r} model; the Diffusion Classifier needs "
            f"one trained with {' or '.join(_noise_predictor_methods())} (or a diffusers folder "
            f"via --pretrained)"
        )
    model, scheduler = load_pipeline_unet(cfg.checkpoint, cfg.device)
    return NoiseModel(
        model,
        scheduler.alphas_cumprod,
        TransformConfig.from_dict(config["transform"]),
        Path(cfg.checkpoint),
        "checkpoint",
        model.num_classes,
        config.get("class_names"),
    )


def _noise_predictor_methods() -> list[str]:
    return [f"--method {m.name}" for m in METHODS.values() if m.evaluation == "diffusion-classifier"]


@dataclass
class DCEvalConfig:
    data: str
    checkpoint: str | None = None
    pretrained: str | None = None
    split: str = "test"
    schedule: Schedule = field(default_factory=lambda: parse_schedule(preset="cifar10"))
    loss: str = "l2"
    batch_size: int = 256
    start: int = 0
    limit: int | None = None
    seed: int = 0
    device: str = "cpu"
    low_res: int | None = None
    corruption: str | None = None
    severity: int | None = None
    corruption_set: str | None = None
    cache_dir: str | None = None
    temperature: float | None = None  # None: the model's calibration.json, else 1
    fit_temperature: bool = False  # fit lambda on these images and store it with the model
    prompt_template: str = "a photo of a {}."  # text-conditional models: one prompt per class name
    prompts_csv: str | None = None  # or prompt,classname,classidx rows (several prompts per class allowed)
    ood_data: str | None = None  # a data spec (its test split) or "noise": score OOD detection against it
    ood_score: str = "msp"  # msp, entropy or lowest_error (NATIVE_OOD_SCORES)
    ood_limit: int | None = None  # OOD images (default: as many as the evaluated images)
    proposer: str | None = None  # a classifier folder: the hybrid readout scores only its top proposer_top_k
    proposer_top_k: int = 3
    proposer_sampler: SamplerConfig | None = None  # the proposer's readout (DiDiCM); None: its default
    early_stop: float | None = None  # per-image early stopping at this error rate (a flat schedule's M at most)
    early_stop_chunk: int = 5  # timesteps per look of the race
    timestep_weights: str | None = None  # a JSON file of fit_timestep_weights: the weighted mean over t ranks
    fit_timestep_weights: str | None = None  # fit weights (and lambda) on these images, write them to this file


NATIVE_OOD_SCORES = ("lowest_error",)  # the winning class's mean noise-prediction error over all its timesteps


def _last_scored_stage(stage_means: torch.Tensor) -> torch.Tensor:
    """float64[N, A]: each image's means at its last stage with a finite entry (the last stage, unless an early
    stopped race left the later ones empty), NaN replaced by +inf."""
    scored = (~stage_means.isnan()).any(-1)  # [N, S]
    last = stage_means.shape[1] - 1 - scored.flip(1).int().argmax(1)
    means = stage_means.double()[torch.arange(len(stage_means)), last]
    return torch.where(means.isnan(), torch.inf, means)


def lowest_last_stage(stage_means: torch.Tensor) -> torch.Tensor:
    """int64[N]: the candidate that survived elimination, the lowest mean error at the last stage of
    ``stage_means`` float[N, S, A] (the candidates eliminated earlier are NaN there)."""
    return _last_scored_stage(stage_means).argmin(dim=1)


def lowest_error(stage_means: torch.Tensor) -> torch.Tensor:
    """float64[N]: per image, the lowest mean error over the candidates alive at the last stage (so over all M
    timesteps, or all that an early-stopped race scored); an image no class reconstructs well is likely out of
    distribution. ``stage_means`` float[N, S, A]."""
    return _last_scored_stage(stage_means).min(dim=1).values


def ood_log_path(per_image_file: str | Path) -> Path:
    """The per-image JSONL of the OOD images of ``--ood-data``: the per-image file with ``.ood.jsonl``."""
    return Path(per_image_file).with_suffix(".ood.jsonl")


def run_key(cfg: DCEvalConfig, model: NoiseModel) -> dict:
    """What must match for per-image rows to be reused on resume."""
    return {
        "model": str(model.folder),
        "data": cfg.data,
        "split": cfg.split,
        "schedule": asdict(cfg.schedule),
        "loss": cfg.loss,
        "seed": cfg.seed,
        "low_res": cfg.low_res,
        "corruption": cfg.corruption,
        "severity": cfg.severity,
        "corruption_set": cfg.corruption_set,
        "prompts": model.prompts,
        "proposer": cfg.proposer,
        "proposer_top_k": cfg.proposer_top_k if cfg.proposer else None,
        "proposer_sampler": asdict(cfg.proposer_sampler) if cfg.proposer and cfg.proposer_sampler else None,
        "early_stop": cfg.early_stop,
        "early_stop_chunk": cfg.early_stop_chunk if cfg.early_stop else None,
        "timestep_weights": _weights(cfg)[0].tolist() if cfg.timestep_weights else None,
        "logs_errors": bool(cfg.fit_timestep_weights) or None,
    }


def _open_log(path: Path, key: dict) -> JsonlLog:
    log = JsonlLog(path)
    header = log.rows.get("run")
    if header is None:
        log.append({"key": "run", **key})
    elif {k: header.get(k) for k in key} != json.loads(json.dumps(key)):
        raise DiffclsError(
            f"{path} holds images of another run (model, data, schedule, loss, seed or condition "
            f"differ); delete it or pass another --per-image file"
        )
    return log


def _open_log_on_main(path: Path, key: dict, dist: Dist) -> JsonlLog | None:
    """Rank 0 opens (or checks) the per-image log; an error there is raised on every rank."""
    log, error = None, None
    if dist.is_main:
        try:
            log = _open_log(path, key)
        except DiffclsError as e:
            error = str(e)
    error = dist.broadcast(error)
    if error is not None:
        raise DiffclsError(error)
    return log


def _classify_batch(
    cfg: DCEvalConfig,
    model: NoiseModel,
    dataset: ImageDataset,
    batch: list[int],
    candidates: list[int],
    noise: torch.Tensor,
    proposals: dict[int, list[int]] | None = None,
) -> list[dict]:
    """The per-image rows (label, prediction, stage means per candidate, seconds) of one batch of images; with
    ``proposals`` (image index -> the candidates it starts with) only those are scored (the hybrid readout)."""
    tic = time.perf_counter()
    images, labels = zip(*(dataset[i] for i in batch))
    x0 = model.encode(torch.stack(images).to(cfg.device))
    if cfg.early_stop is not None:
        return _race_batch(cfg, model, x0, batch, labels, candidates, noise, tic, proposals)
    result = classify(
        model.eps_fn,
        x0,
        len(candidates),
        model.alphas_cumprod,
        cfg.schedule,
        noise,
        loss=cfg.loss,
        batch_size=cfg.batch_size,
        candidates=None if proposals is None else torch.tensor([proposals[i] for i in batch]),
    )
    seconds = (time.perf_counter() - tic) / len(batch)
    stage_means, prediction, extra = result.stage_means(), result.prediction, None
    if cfg.timestep_weights:  # flat schedule: rank by the weighted mean over t
        stage_means = weighted_scores(result.errors, _weights(cfg)[0])[:, None]
        prediction = stage_means[:, 0].argmin(1)
    if cfg.fit_timestep_weights:  # keep every timestep's errors for the fit
        extra = [{"errors": [[round(float(v), 8) for v in k] for k in e.tolist()]} for e in result.errors.cpu()]
    return _rows(batch, labels, [candidates[int(c)] for c in prediction], stage_means, seconds, extra=extra)


def _rows(batch, labels, predictions, stage_means: torch.Tensor, seconds: float, nfe=None, extra=None) -> list[dict]:
    """One per-image log row per image of ``batch``: label, prediction, stage means per candidate (None where
    not scored), seconds per image and, for an early-stopped race, the image's own NFE; ``extra``: one dict of
    further fields per image."""
    stage_means = stage_means.cpu()
    rows = []
    for i, (index, label) in enumerate(zip(batch, labels)):
        means = [[None if np.isnan(v) else round(float(v), 8) for v in stage] for stage in stage_means[i].tolist()]
        row = {"key": str(index), "index": index, "label": int(label), "prediction": predictions[i],
               "stage_means": means}  # fmt: skip
        if nfe is not None:
            row["nfe"] = int(nfe[i])
        rows.append({**row, **(extra[i] if extra else {}), "seconds": round(seconds, 4)})
    return rows


def _race_batch(cfg, model, x0, batch, labels, candidates, noise, tic, proposals=None) -> list[dict]:
    """:func:`_classify_batch` with per-image early stopping (:func:`~diffcls.generative.racing.classify_racing`):
    each row also records the image's own NFE; with ``proposals`` only the proposed classes race."""
    race = classify_racing(
        model.eps_fn, x0, len(candidates), model.alphas_cumprod, cfg.schedule.num_timesteps, noise,
        chunk=cfg.early_stop_chunk, alpha=cfg.early_stop, loss=cfg.loss, batch_size=cfg.batch_size,
        candidates=None if proposals is None else torch.tensor([proposals[i] for i in batch]),
    )  # fmt: skip
    seconds = (time.perf_counter() - tic) / len(batch)
    predictions = [candidates[int(c)] for c in race.prediction]
    return _rows(batch, labels, predictions, race.stage_means, seconds, race.nfe)


def _classify_missing(
    cfg: DCEvalConfig,
    model: NoiseModel,
    dataset: ImageDataset,
    indices: np.ndarray,
    candidates: list[int],
    log: JsonlLog | None,
    progress: bool | None,
    dist: Dist = SINGLE_PROCESS,
    proposals: dict[int, list[int]] | None = None,
) -> None:
    """Classify the images of ``indices`` not yet in ``log``, appending one row per image (stage means per
    candidate) as each batch finishes.

    Under torchrun only rank 0 holds the log: it tells the others which images are left, the ranks take turns
    over the batches of those, and after every round rank 0 appends the round's rows.
    """
    todo = dist.broadcast([int(i) for i in indices if str(int(i)) not in log] if dist.is_main else None)
    if not todo:
        return
    first = model.encode(dataset[todo[0]][0][None].to(cfg.device))
    noise = shared_noise(cfg.schedule, first.shape[1:], cfg.seed, cfg.device)
    batches = [todo[s : s + IMAGES_PER_BATCH] for s in range(0, len(todo), IMAGES_PER_BATCH)]
    hide = not dist.is_main or (None if progress is None else not progress)
    bar = tqdm(
        total=len(indices), initial=len(indices) - len(todo), unit="img", desc="diffusion classifier", disable=hide
    )
    for round_index in range(dist.rounds(len(batches))):
        j = round_index * dist.world_size + dist.rank
        rows = (
            _classify_batch(cfg, model, dataset, batches[j], candidates, noise, proposals) if j < len(batches) else []
        )
        for part in dist.all_gather(rows):
            for row in part:
                if log is not None:
                    log.append(row)
            bar.update(len(part))
    bar.close()


def shared_noise(schedule: Schedule, shape: torch.Size, seed: int, device: str) -> torch.Tensor:
    """The noise every image and class shares, float32[M, *shape] (``shape``: one encoded image's): one draw per
    timestep of the schedule's grid, the same for a seed whatever the images (eval and predict agree)."""
    return torch.randn(schedule.num_timesteps, *shape, generator=torch.Generator().manual_seed(seed)).to(device)


def classify_indices(
    cfg: DCEvalConfig,
    model: NoiseModel,
    dataset: ImageDataset,
    indices: np.ndarray,
    candidates: list[int],
    log: JsonlLog | None,
    progress: bool | None = None,
    dist: Dist = SINGLE_PROCESS,
    proposals: dict[int, list[int]] | None = None,
) -> tuple[torch.Tensor, torch.Tensor, float] | None:
    """Classify the images ``indices`` of ``dataset`` (those not yet in ``log``) and read every one back.

    Returns stage means float64[N, S, A] (NaN where a candidate was eliminated), labels int64[N] and the seconds
    spent on them (summed per image, over resumed parts too). Under torchrun the ranks share the work; rank 0
    holds the log (``log`` is None elsewhere) and returns the results, the other ranks return None.
    """
    with torch.inference_mode():
        _classify_missing(cfg, model, dataset, indices, candidates, log, progress, dist, proposals)
    if log is None:
        return None
    rows = [log.rows[str(int(i))] for i in indices]
    stage_means = torch.tensor(
        [[[np.nan if v is None else v for v in s] for s in r["stage_means"]] for r in rows], dtype=torch.float64
    )
    labels = torch.tensor([r["label"] for r in rows])
    return stage_means, labels, sum(r["seconds"] for r in rows)


def evaluate_diffusion_classifier(
    cfg: DCEvalConfig, per_image_file: str | Path, progress: bool | None = None, dist: Dist = SINGLE_PROCESS
) -> tuple[dict, torch.Tensor] | None:
    """Classify a split with a noise predictor; returns the results dict and probabilities float32[N, K].

    Under torchrun the images are shared among the ranks; rank 0 writes the per-image file and returns the
    results, the other ranks return None.
    """
    if cfg.severity is not None and cfg.corruption is None:
        raise DiffclsError("--severity needs --corruption NAME")
    source = load_source(cfg.data)
    model = load_noise_model(cfg, source.class_names)
    candidates = model.candidates(source.num_classes)
    if len(candidates) > model.num_class_embeds or max(candidates) >= source.num_classes:
        raise DiffclsError(
            f"data {cfg.data} has {source.num_classes} classes but the model embeds only {model.num_class_embeds}"
            if model.candidate_classes is None
            else f"a prompt's classidx is outside the data's {source.num_classes} classes"
        )
    # --split val/train: the images a diffcls checkpoint held out or trained on (a diffusers folder records none)
    held_out = held_out_images(method_of(cfg.checkpoint)[1]) if cfg.checkpoint else {}
    split = select_split(source, cfg.split, None, **held_out)
    indices = _indices(split.labels, cfg.start, cfg.limit)
    corruption_set = None
    if cfg.corruption is not None:
        split, corruption_set = corrupt_split(
            split, source, cfg.corruption, cfg.severity, cfg.corruption_set, cfg.cache_dir, 1, progress, dist
        )
    transform = TransformConfig.from_dict(asdict(model.transform))
    if cfg.low_res is not None:
        transform.low_res = cfg.low_res
    ood = None  # checked before any work
    if cfg.ood_data is not None:
        check_ood_score(cfg.ood_score, NATIVE_OOD_SCORES, "the Diffusion Classifier")
        if cfg.ood_limit is not None and cfg.ood_limit < 1:
            raise DiffclsError(f"--ood-limit must be >= 1, got {cfg.ood_limit}")
        ood = ood_split(cfg.ood_data, source, cfg.ood_limit or len(indices), transform)
    _check_cost_levers(cfg, model, len(candidates))
    proposer_probs, proposals, proposer_nfe = None, None, 0
    if cfg.proposer is not None:
        proposer_probs, proposer_nfe = _propose(cfg, subset_split(split, indices), source.num_classes, dist)
        top = proposer_probs.topk(cfg.proposer_top_k, dim=1).indices
        proposals = {int(i): row for i, row in zip(indices, top.tolist())}
    log = _open_log_on_main(Path(per_image_file), run_key(cfg, model), dist)
    dataset = ImageDataset(split, ImageTransform(transform))
    classified = classify_indices(cfg, model, dataset, indices, candidates, log, progress, dist, proposals)
    ood_classified = None
    if ood is not None:
        ood_classified = _classify_ood(cfg, model, ood, transform, candidates, per_image_file, progress, dist)
    if classified is None:
        return None
    stage_means, labels, seconds = classified
    nfe_fields = _nfe_fields(cfg, log, indices, len(candidates), proposer_nfe, scores_all_classes(model.eps_fn))
    pooling = torch.tensor(candidates) if model.candidate_classes is not None else None
    weights_fields = {}
    if cfg.fit_timestep_weights:
        stage_means, weights_fields = _fit_weights(cfg, log, indices, labels)
    elif cfg.timestep_weights:
        weights_fields = {"timestep_weights": cfg.timestep_weights}
    temperature, source_of_temperature = _temperature(cfg, model, stage_means, labels, pooling)

    def probabilities(means: torch.Tensor) -> torch.Tensor:
        return pool_candidates(stagewise_probabilities(means, temperature), pooling, source.num_classes).float()

    probs = probabilities(stage_means)
    hybrid = {}
    if proposer_probs is not None:  # the proposer keeps the mass of what it left out
        probs = hybrid_probabilities(proposer_probs, probs, top).float()
        hybrid = {
            "method": "hybrid",
            "proposer": cfg.proposer,
            "proposer_top_k": cfg.proposer_top_k,
            "proposer_top1": (proposer_probs.argmax(1) == labels).double().mean().item(),
            "proposer_recall": (top == labels[:, None]).any(1).double().mean().item(),
        }
    winners = torch.as_tensor(candidates)[lowest_last_stage(stage_means)]  # the classes that survived elimination
    posterior = known_posterior(source, subset_split(split, indices), cfg.corruption, transform.low_res)
    bayes = {} if posterior is None else posterior_metrics(probs, labels, posterior)
    if ood_classified is not None:
        ood_means = ood_classified[0]
        ood_probs = probabilities(ood_means)
        bayes.update(
            ood_results(probs, ood_probs, cfg.ood_score, cfg.ood_data,
                        {"lowest_error": lowest_error(stage_means)}, {"lowest_error": lowest_error(ood_means)}),
            ood_per_image_file=str(ood_log_path(per_image_file)),
        )  # fmt: skip
    metrics = classification_metrics(probs, labels)
    results = {
        **metrics,
        # top-1 is the survivor's class (the algorithm's decision), which the pooled or stagewise probabilities'
        # argmax can miss: several prompts of one class, or a survivor with a smaller share than a class
        # eliminated earlier
        "top1": (winners == labels).double().mean().item(),
        "top1_of_probabilities": metrics["top1"],
        **bayes,
        **nfe_fields,
        "seconds": round(seconds, 3),
        "seconds_per_image": round(seconds / max(len(labels), 1), 4),
        "ms_per_image": round(1000 * seconds / max(len(labels), 1), 3),
        "method": "diffusion-classifier",
        "model": str(model.folder),
        "model_kind": model.kind,
        "candidates": len(candidates),
        "schedule": {"n_samples": list(cfg.schedule.n_samples), "to_keep": list(cfg.schedule.to_keep)},
        "loss": cfg.loss,
        "temperature": temperature,
        "temperature_source": source_of_temperature,
        "data": cfg.data,
        "split": cfg.split,
        "start": cfg.start,
        "corruption": cfg.corruption,
        "severity": cfg.severity or 0,
        "corruption_set": corruption_set,
        "low_res": transform.low_res,
        "seed": cfg.seed,
        "processes": dist.world_size,
        "per_image_file": str(per_image_file),
        **hybrid,
        **weights_fields,
    }
    if ood_classified is not None:
        results["ood_probs"] = ood_probs  # popped by the caller, saved beside --save-probs
    return results, probs


def _check_cost_levers(cfg: DCEvalConfig, model: NoiseModel, num_candidates: int) -> None:
    """Refuse combinations of the cost levers (proposer, early stopping, timestep weights) that do not apply."""
    flat = len(cfg.schedule.n_samples) == 1
    if scores_all_classes(model.eps_fn) and (cfg.proposer is not None or cfg.early_stop is not None):
        raise DiffclsError(
            "a multi-head UNet scores every class in one pass: --proposer and --early-stop, which save per-class "
            "evaluations, do not apply"
        )
    if (cfg.timestep_weights or cfg.fit_timestep_weights) and (
        not flat or cfg.early_stop is not None or model.candidate_classes is not None
    ):
        raise DiffclsError("timestep weights apply to a flat schedule (--schedule flat-M), one prompt per class")
    if cfg.timestep_weights and (m := len(_weights(cfg)[0])) != cfg.schedule.num_timesteps:
        raise DiffclsError(f"{cfg.timestep_weights} weighs {m} timesteps; use --schedule flat-{m}")
    if cfg.early_stop is not None and not flat:
        raise DiffclsError("--early-stop races the classes on a flat schedule (--schedule flat-M)")
    if cfg.proposer is not None:
        if model.candidate_classes is not None:
            raise DiffclsError("--proposer needs one candidate per class (not several --prompts per class)")
        lowest = 1 if cfg.early_stop is None else 2  # a race needs two classes
        if not lowest <= cfg.proposer_top_k <= num_candidates:
            raise DiffclsError(
                f"--proposer-top-k must lie in {lowest}..{num_candidates}"
                + (" with --early-stop" if cfg.early_stop is not None else "")
                + f", got {cfg.proposer_top_k}"
            )


def _classify_ood(cfg, model, ood: Split, transform, candidates, per_image_file, progress, dist):
    """Classify the OOD images into their own per-image log (:func:`ood_log_path`); ``classify_indices``'s
    return."""
    key = {**run_key(cfg, model), "split": "test", "corruption": None, "severity": None, "ood_data": cfg.ood_data}
    log = _open_log_on_main(ood_log_path(per_image_file), key, dist)
    dataset = ImageDataset(ood, ImageTransform(transform))
    return classify_indices(cfg, model, dataset, np.arange(len(ood.labels)), candidates, log, progress, dist)


def _nfe_fields(
    cfg: DCEvalConfig, log: JsonlLog, indices, num_candidates: int, proposer_nfe: int, one_pass: bool = False
) -> dict:
    """``nfe_per_image``: the schedule's count (one per timestep for a multi-head network, ``one_pass``), the
    hybrid's (its top-K plus the proposer), or an early-stopped race's mean over the images (plus the proposer's,
    with its bound ``nfe_per_image_max``)."""
    scored = num_candidates if cfg.proposer is None else cfg.proposer_top_k
    full = cfg.schedule.nfe(scored, one_pass) + proposer_nfe
    if cfg.early_stop is None:
        return {"nfe_per_image": full}
    raced = [log.rows[str(int(i))]["nfe"] + proposer_nfe for i in indices]  # each image's own count
    return {"nfe_per_image": sum(raced) / len(raced), "nfe_per_image_max": full, "early_stop": cfg.early_stop,
            "early_stop_chunk": cfg.early_stop_chunk}  # fmt: skip


def _propose(cfg: DCEvalConfig, images: Split, num_classes: int, dist: Dist) -> tuple[torch.Tensor, int]:
    """The proposer's probabilities float32[N, K] of ``images`` (its own transform, the same --low-res view) and
    its NFE per image."""
    model, mconfig = load_classifier(cfg.proposer, cfg.device)
    if mconfig["num_classes"] != num_classes:
        raise DiffclsError(f"the proposer {cfg.proposer} has {mconfig['num_classes']} classes, the data {num_classes}")
    method = get_method(mconfig["method"])
    transform = TransformConfig.from_dict(mconfig["transform"])
    transform.low_res = cfg.low_res
    _, probs = evaluate_model(
        method, model, images, transform, cfg.proposer_sampler, device=cfg.device, seed=cfg.seed, progress=False,
        dist=dist,
    )  # fmt: skip
    return probs, method.nfe(cfg.proposer_sampler)


def _weights_file(path: str) -> tuple[torch.Tensor, float]:
    """(weights float64[M], lambda) of a timestep-weights JSON, read once per version of the file (every batch
    of images asks for them)."""
    try:
        version = Path(path).stat().st_mtime_ns
    except OSError as e:
        raise DiffclsError(f"cannot read timestep weights from {path}: {e.strerror or e}") from None
    return _read_weights(str(path), version)


@functools.lru_cache(maxsize=8)
def _read_weights(path: str, version: int) -> tuple[torch.Tensor, float]:
    try:
        data = json.loads(Path(path).read_text())
        return torch.tensor(data["weights"], dtype=torch.float64), float(data["temperature"])
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise DiffclsError(f"cannot read timestep weights from {path}: {e}") from None


def _weights(cfg: DCEvalConfig) -> tuple[torch.Tensor, float]:
    return _weights_file(cfg.timestep_weights)


def _fit_weights(cfg: DCEvalConfig, log: JsonlLog, indices: np.ndarray, labels: torch.Tensor):
    """Fit timestep weights and lambda on the logged per-timestep errors, write them to
    ``cfg.fit_timestep_weights``; returns the weighted stage means float64[N, 1, K] and the results fields."""
    errors = torch.tensor([log.rows[str(int(i))]["errors"] for i in indices], dtype=torch.float64)
    weights, lam = fit_timestep_weights(errors, labels)
    write_json(
        cfg.fit_timestep_weights,
        {"weights": weights.tolist(), "temperature": lam, "num_timesteps": len(weights), "data": cfg.data,
         "split": cfg.split, "start": cfg.start, "num_images": len(labels), "loss": cfg.loss, "seed": cfg.seed},
    )  # fmt: skip
    fields = {"timestep_weights": cfg.fit_timestep_weights, "uniform_top1": _top1(errors.mean(-1), labels)}
    return weighted_scores(errors, weights)[:, None], fields


def _top1(scores: torch.Tensor, labels: torch.Tensor) -> float:
    return (scores.argmin(1) == labels).double().mean().item()


def _indices(labels: np.ndarray, start: int, limit: int | None) -> np.ndarray:
    """Positions ``start .. start + limit`` of the split's fixed stratified order (as ``--limit`` for classifiers),
    so ``--limit 200`` fits on 20 images of each class and ``--start 200`` tests on the others."""
    total = len(labels)
    if start < 0 or start >= total:
        raise DiffclsError(f"--start must lie in 0..{total - 1}, got {start}")
    if limit is not None and limit < 1:
        raise DiffclsError(f"--limit must be >= 1, got {limit}")
    return np.sort(stratified_order(labels)[start : None if limit is None else start + limit])  # data-set order


def _temperature(
    cfg: DCEvalConfig, model: NoiseModel, stage_means: torch.Tensor, labels: torch.Tensor, pooling: torch.Tensor | None
) -> tuple[float, str]:
    """lambda: fitted here (and stored), given, read from the model folder, or 1 (uncalibrated)."""
    if cfg.fit_temperature:
        calibration = model.folder / CALIBRATION_NAME
        # images whose class was never scored (a hybrid's proposer left it out) say nothing about lambda
        scored = ~stage_means[torch.arange(len(labels)), 0, labels].isnan() if pooling is None else slice(None)
        value = fit_temperature(stage_means[scored], labels[scored], pooling)
        write_json(
            calibration,
            {
                "temperature": value,
                "data": cfg.data,
                "split": cfg.split,
                "start": cfg.start,
                "num_images": len(labels),
                "loss": cfg.loss,
                "schedule": asdict(cfg.schedule),
            },
        )
        return value, f"fitted on these {len(labels)} images, stored in {calibration}"
    if cfg.temperature is not None:
        return cfg.temperature, "--temperature"
    if cfg.timestep_weights or cfg.fit_timestep_weights:
        path = cfg.timestep_weights or cfg.fit_timestep_weights
        return _weights_file(path)[1], f"fitted with the timestep weights of {path}"
    return stored_temperature(model)


def stored_temperature(model: NoiseModel) -> tuple[float, str]:
    """lambda from the model folder's calibration.json, else 1 (uncalibrated), and where it came from."""
    calibration = model.folder / CALIBRATION_NAME
    if calibration.is_file():
        return float(json.loads(calibration.read_text())["temperature"]), str(calibration)
    return 1.0, "none (uncalibrated: fit one with --fit-temperature on held-out images)"


def predict_files_with_noise_model(
    checkpoint: str,
    paths: list[str],
    top_k: int = 5,
    schedule: Schedule | None = None,
    device: str = "cpu",
    seed: int = 0,
    batch_size: int = 256,
) -> list[dict]:
    """``diffcls predict`` with a ddpm folder: the Diffusion Classifier on image files, rows as
    :func:`~diffcls.eval.evaluate.predict_files` gives them; the prediction is the class that survives elimination,
    the probabilities softmax(-lambda * error) stage-wise with the folder's lambda. The shared noise is ``diffcls
    eval``'s for the same seed and schedule, so an image gets the decision eval gives it."""
    check_top_k(top_k)
    schedule = schedule or parse_schedule(preset="cifar10")
    cfg = DCEvalConfig(data="", checkpoint=checkpoint, schedule=schedule, device=device, seed=seed)
    model = load_noise_model(cfg, [])
    names = read_checkpoint_config(checkpoint)["class_names"]  # the embeddings may hold a null label too
    num_classes = len(names)
    x0 = model.encode(read_images(paths, model.transform).to(device))
    noise = shared_noise(schedule, x0.shape[1:], seed, device)
    with torch.inference_mode():
        result = classify(model.eps_fn, x0, num_classes, model.alphas_cumprod, schedule, noise, batch_size=batch_size)
    probs = stagewise_probabilities(result.stage_means(), stored_temperature(model)[0]).float().cpu()
    return prediction_rows(paths, probs, names, top_k, result.prediction.cpu())
