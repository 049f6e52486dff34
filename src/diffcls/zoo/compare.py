"""How close a re-measured or retrained zoo entry is to its record: metrics within stated tolerances, weights
tensor by tensor."""

from __future__ import annotations

import math
from pathlib import Path

from diffcls.errors import DiffclsError
from diffcls.models.noise_predictors import PIPELINE_WEIGHTS_NAME
from diffcls.runtime.checkpoint import WEIGHTS_NAME, load_weights

# Metrics compared by `diffcls zoo verify`, with the largest difference counted as agreement. Evaluation on a CPU
# is deterministic, so on the machine that built the zoo they agree exactly; another CPU (other SIMD kernels, other
# thread counts) may sum in another order, which may move a borderline image across the decision boundary.
TOLERANCES = {"top1": None, "nll": 0.005, "brier": 0.005, "ece": 0.005}  # None: one image either way
DIFFUSERS_WEIGHTS = Path("unet") / PIPELINE_WEIGHTS_NAME  # a ddpm model's DDPMPipeline layout


def metric_differences(recorded: dict, measured: dict) -> list[dict]:
    """``[{"metric", "recorded", "measured", "difference", "tolerance", "agrees"}]`` for every metric of
    :data:`TOLERANCES` the record holds; top-1 agrees within one image of ``recorded["images"]``."""
    rows = []
    for name, tolerance in TOLERANCES.items():
        if name not in recorded:
            continue
        if name not in measured:
            raise DiffclsError(f"the evaluation wrote no {name!r} (results keys: {', '.join(sorted(measured))})")
        if tolerance is None:
            tolerance = 1.0 / recorded["images"] + 1e-9
        difference = abs(float(measured[name]) - float(recorded[name]))
        rows.append(
            {
                "metric": name,
                "recorded": recorded[name],
                "measured": measured[name],
                "difference": difference,
                "tolerance": tolerance,
                "agrees": difference <= tolerance or (math.isnan(recorded[name]) and math.isnan(measured[name])),
            }
        )
    return rows


def weights_file(folder: str | Path) -> Path:
    """The weights of a checkpoint folder: ``model.safetensors``, or a ddpm model's diffusers UNet file."""
    folder = Path(folder)
    for candidate in (folder / WEIGHTS_NAME, folder / DIFFUSERS_WEIGHTS):
        if candidate.is_file():
            return candidate
    raise DiffclsError(f"{folder} holds no {WEIGHTS_NAME} or {DIFFUSERS_WEIGHTS}")


def weight_differences(a: str | Path, b: str | Path) -> dict:
    """The largest absolute difference between the weights of two checkpoint folders, over every tensor, and how
    many tensors are bit-for-bit equal: ``{"tensors", "identical", "max_abs_difference"}``."""
    wa, wb = load_weights(weights_file(a)), load_weights(weights_file(b))
    if wa.keys() != wb.keys():
        raise DiffclsError(f"{a} and {b} hold different tensors ({len(wa)} and {len(wb)} names)")
    identical, largest = 0, 0.0
    for name, x in wa.items():
        y = wb[name]
        if x.shape != y.shape:
            raise DiffclsError(f"tensor {name} has shape {tuple(x.shape)} in {a} and {tuple(y.shape)} in {b}")
        identical += bool(x.dtype == y.dtype and x.equal(y))
        if x.is_floating_point():
            largest = max(largest, (x.double() - y.double()).abs().max().item() if x.numel() else 0.0)
    return {"tensors": len(wa), "identical": identical, "max_abs_difference": largest}


NOT_PARAMETERS = ("running_mean", "running_var", "num_batches_tracked")  # BatchNorm statistics


def parameter_count(folder: str | Path) -> int:
    """Learned parameters in a checkpoint folder's weights (BatchNorm statistics excluded)."""
    weights = load_weights(weights_file(folder))
    return sum(t.numel() for name, t in weights.items() if not name.endswith(NOT_PARAMETERS))
