"""Representation-conditioned latent DiT and Diffusion Classifier Zero (arXiv 2505.06890, spec part A).

Its training phases are methods: :mod:`diffcls.methods.repcond`.

Modules, one concept each:

* ``dit``: a small DiT (adaLN-Zero on the timestep) with zero-initialised injection points for r;
* ``conditions``: what feeds them: the ViT encoder over the clean latent (pretraining), a label embedding
  (tuning) or nothing (the unconditional baseline); conditioning dropout to a null vector;
* ``codec``: pixel space or a local diffusers ``AutoencoderKL`` (posterior mean x scaling factor);
* ``model``: the denoiser with its condition, the eps-prediction objective, tuning initialisation, save/load;
* ``dc_zero``: Diffusion Classifier Zero (argmin_c ||z0 - z0_hat(c)||^2 at one t, shared noise), the t-sweep,
  multi-t aggregation, accuracy and F1;
* ``probe``: the linear probe on the frozen encoder's r;
* ``evaluate``: DC Zero, t-sweep, probe and leakage check over checkpoint folders.
"""

from .codec import Codec, IdentityCodec, VAECodec, create_codec
from .conditions import ENCODER_PRESETS, EncoderCondition, EncoderConfig, LabelCondition, encoder_config
from .dc_zero import (
    TSweep,
    classification_scores,
    dc_zero_errors,
    dc_zero_predict,
    sweep_from_errors,
    sweep_timesteps,
    t_sweep,
    timestep_noise,
)
from .dit import DIT_PRESETS, DiT, DiTConfig, dit_config
from .evaluate import evaluate_dc_zero, leakage_check, probe_encoder, run_t_sweep, sweep_temperature
from .model import (
    DenoisingObjective,
    LoadedCheckpoint,
    RepCondModel,
    build_model,
    load_checkpoint,
    load_model,
    model_spec,
    save_model,
    tuning_model,
)
from .probe import linear_probe, representation_statistics, representations

__all__ = [
    "DiT",
    "DiTConfig",
    "DIT_PRESETS",
    "dit_config",
    "EncoderCondition",
    "EncoderConfig",
    "ENCODER_PRESETS",
    "encoder_config",
    "LabelCondition",
    "Codec",
    "IdentityCodec",
    "VAECodec",
    "create_codec",
    "RepCondModel",
    "DenoisingObjective",
    "build_model",
    "model_spec",
    "tuning_model",
    "save_model",
    "load_model",
    "dc_zero_errors",
    "dc_zero_predict",
    "timestep_noise",
    "sweep_timesteps",
    "t_sweep",
    "sweep_from_errors",
    "TSweep",
    "classification_scores",
    "linear_probe",
    "representations",
    "representation_statistics",
    "evaluate_dc_zero",
    "run_t_sweep",
    "sweep_temperature",
    "probe_encoder",
    "leakage_check",
    "load_checkpoint",
    "LoadedCheckpoint",
]
