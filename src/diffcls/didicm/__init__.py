"""DiDiCM: discrete diffusion over class labels (arXiv 2511.20263).

Modules, one per concept (as SEDD): ``noise`` (schedules sigma(t)), ``process``
(uniform rate matrix, marginals, reverse steps), ``losses`` (score entropy and the
training objective), ``samplers`` (DiDiCM-CP, DiDiCM-CL, one-pass readout).
"""

from .losses import denoising_score_entropy, didicm_loss, soft_score_entropy
from .noise import NOISES, GeometricNoise, LogLinearNoise, Noise, get_noise
from .process import UniformProcess, mask_reference, sample_categorical
from .samplers import (
    CP_UPDATES,
    SAMPLERS,
    SamplerConfig,
    SamplerSpec,
    ScoreFn,
    cl_sample,
    cp_sample,
    get_sampler,
    nfe_per_image,
    onepass_readout,
    repeat_for_chains,
    time_grid,
)

__all__ = [
    "Noise",
    "LogLinearNoise",
    "GeometricNoise",
    "NOISES",
    "get_noise",
    "UniformProcess",
    "sample_categorical",
    "mask_reference",
    "denoising_score_entropy",
    "soft_score_entropy",
    "didicm_loss",
    "ScoreFn",
    "time_grid",
    "repeat_for_chains",
    "cp_sample",
    "CP_UPDATES",
    "cl_sample",
    "onepass_readout",
    "SAMPLERS",
    "SamplerConfig",
    "SamplerSpec",
    "get_sampler",
    "nfe_per_image",
]
