"""Classification with generative diffusion models: the Diffusion Classifier (arXiv 2303.16203).

Modules: ``scoring`` (per-class noise-prediction errors with shared noise and timesteps), ``adaptive``
(successive elimination of classes on nested timestep grids, stage-wise probabilities).
"""

from .adaptive import SCHEDULES, DCResult, Schedule, classify, nested_order, parse_schedule
from .scoring import LOSSES, EpsFn, add_noise, noise_prediction_errors, per_sample_error, timestep_grid

__all__ = [
    "EpsFn",
    "LOSSES",
    "add_noise",
    "timestep_grid",
    "per_sample_error",
    "noise_prediction_errors",
    "Schedule",
    "SCHEDULES",
    "parse_schedule",
    "nested_order",
    "DCResult",
    "classify",
]
