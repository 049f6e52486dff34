"""The denoiser with its condition, its training objective, tuning initialisation and save/load.

``RepCondModel(z_t float[B, C, S, S], t int64[B], cond, drop=None) -> eps_hat float[B, C, S, S]`` where ``cond``
is what the condition reads: the clean latent z0 float[B, C, S, S] (pretraining, ``EncoderCondition``), class
labels int64[B] (tuning, ``LabelCondition``; then the forward *is* the scoring ``EpsFn`` signature
``(x_t, t, class_labels)``), or ignored (``condition=None``, the unconditional baseline).

**Tuning initialisation** (:func:`tuning_model`). "Replace r with a class-label embedding through the same
injection points": the tuned model keeps the pretrained DiT **including its trained injection projections**
(they already map the r-space to the denoiser, and the label vectors are placed in that space), drops the encoder,
and gets ``nn.Embedding(K + 1, d_r)`` whose class rows start at the mean of the encoder's r over each class's
labelled images (``class_means``; random N(0, 1) when not given) and whose null row starts at the encoder's null
vector. So at the start of tuning, label c conditions the denoiser as an average image of class c did, and the
null label as a dropped r did. From an unconditional (plain) DiT the projections are new, at zero.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

from diffcls.data import TransformConfig
from diffcls.errors import DiffclsError, first_line
from diffcls.generative.scoring import add_noise
from diffcls.models.noise_predictors import create_scheduler
from diffcls.runtime.checkpoint import WEIGHTS_NAME, load_weights, read_checkpoint_config, save_weights

from .codec import Codec, create_codec
from .conditions import Condition, EncoderCondition, EncoderConfig, LabelCondition
from .dit import INJECTION_PREFIXES, DiT, DiTConfig

__all__ = [
    "RepCondModel",
    "DenoisingObjective",
    "build_model",
    "model_spec",
    "tuning_model",
    "save_model",
    "load_model",
    "LoadedCheckpoint",
    "load_checkpoint",
]


class RepCondModel(nn.Module):
    """A :class:`DiT` and the :class:`Condition` feeding its injection points (or None: unconditional)."""

    def __init__(self, dit: DiT, condition: Condition | None = None):
        super().__init__()
        if condition is not None and dit.config.d_r != condition.d_r:
            raise DiffclsError(f"the DiT injects r of width {dit.config.d_r}, the condition gives {condition.d_r}")
        self.dit = dit
        self.condition = condition

    @property
    def kind(self) -> str:
        """``encoder`` (rep-cond pretraining), ``label`` (tuned) or ``none`` (unconditional)."""
        return {EncoderCondition: "encoder", LabelCondition: "label", type(None): "none"}[type(self.condition)]

    def forward(
        self, z_t: torch.Tensor, t: torch.Tensor, cond: torch.Tensor | None = None, drop: torch.Tensor | None = None
    ) -> torch.Tensor:
        r = None if self.condition is None or cond is None else self.condition(cond, drop)
        return self.dit(z_t, t, r)


class DenoisingObjective:
    """eps-prediction MSE ``||eps - eps_theta(sqrt(abar_t) z0 + sqrt(1 - abar_t) eps, t, cond)||^2``, t ~ U{0..T-1},
    with the condition dropped (to its null vector) with probability ``cond_dropout`` per image.

    ``__call__(model, z0 float[B, C, S, S], labels int64[B] | None) -> {"loss": scalar, "drop": bool[B]}``; the
    encoder condition reads z0 itself, the label condition reads ``labels``.
    """

    def __init__(self, alphas_cumprod: torch.Tensor, cond_dropout: float = 0.1):
        if not 0.0 <= cond_dropout < 1.0:
            raise DiffclsError(f"the conditioning dropout must lie in [0, 1), got {cond_dropout}")
        self.alphas_cumprod = alphas_cumprod.float()
        self.cond_dropout = cond_dropout

    def __call__(self, model: RepCondModel, z0: torch.Tensor, labels: torch.Tensor | None = None) -> dict:
        t = torch.randint(len(self.alphas_cumprod), (len(z0),), device=z0.device)
        noise = torch.randn_like(z0)
        z_t = add_noise(z0, self.alphas_cumprod, t, noise)
        drop = torch.rand(len(z0), device=z0.device) < self.cond_dropout
        base = model.module if hasattr(model, "module") else model  # DDP-wrapped or not
        cond = {"encoder": z0, "label": labels, "none": None}[base.kind]
        return {"loss": F.mse_loss(model(z_t, t, cond, drop).float(), noise), "drop": drop}


def model_spec(model: RepCondModel) -> dict:
    """The JSON-able architecture of a model (``config.json["repcond"]["model"]``); :func:`build_model` inverts it."""
    spec: dict = {"dit": model.dit.config.to_dict(), "condition": {"kind": model.kind}}
    if isinstance(model.condition, EncoderCondition):
        spec["condition"]["encoder"] = model.condition.config.to_dict()
    elif isinstance(model.condition, LabelCondition):
        spec["condition"].update(num_classes=model.condition.num_classes, d_r=model.condition.d_r)
    return spec


def build_model(spec: dict) -> RepCondModel:
    """A freshly initialised model from :func:`model_spec`'s dict."""
    dit = DiT(DiTConfig(**spec["dit"]))
    cond = spec["condition"]
    if cond["kind"] == "encoder":
        return RepCondModel(dit, EncoderCondition(EncoderConfig(**cond["encoder"])))
    if cond["kind"] == "label":
        return RepCondModel(dit, LabelCondition(int(cond["num_classes"]), int(cond["d_r"])))
    if cond["kind"] == "none":
        return RepCondModel(dit)
    raise DiffclsError(f"unknown condition kind {cond['kind']!r}")


def tuning_model(
    pretrained: RepCondModel,
    num_classes: int,
    class_means: torch.Tensor | None = None,
    d_r: int = 64,
    reset_injection: bool = False,
    seed: int = 0,
) -> RepCondModel:
    """The label-conditioned model to fine-tune from ``pretrained`` (see the module docstring).

    Args:
        pretrained: a rep-cond model (encoder condition) or an unconditional one (plain DiT).
        num_classes: K.
        class_means: float[K, d_r], the starting class vectors (e.g. the mean r per class); None: N(0, 1) codes
            drawn from their own generator seeded with ``seed``, so every tuning arm of one seed starts from the
            same codes whatever its pretrained model consumed of the global RNG (the fair-protocol "same start").
        d_r: the width of the label vectors when ``pretrained`` has no injection points.
        reset_injection: zero the trained injection projections, so a rep-cond DiT is tuned as its trunk alone,
            exactly as a plain DiT is (a diagnosis arm: what the projections and the trunk each bring).
        seed: the seed of the random codes.
    """
    config = pretrained.dit.config
    if config.d_r is None:  # a plain DiT: add zero-initialised injection points
        dit = DiT(DiTConfig(**{**config.to_dict(), "d_r": d_r}))
        missing, unexpected = dit.load_state_dict(pretrained.dit.state_dict(), strict=False)
        assert not unexpected and all(k.startswith(INJECTION_PREFIXES) for k in missing), (missing, unexpected)
    else:
        dit = copy.deepcopy(pretrained.dit)
        if reset_injection:
            with torch.no_grad():
                for name, param in dit.named_parameters():
                    if name.startswith(INJECTION_PREFIXES):
                        param.zero_()
    condition = LabelCondition(num_classes, dit.config.d_r)
    with torch.no_grad():
        if class_means is not None:
            condition.embedding.weight[:num_classes] = class_means.to(condition.embedding.weight)
        else:
            codes = torch.randn(num_classes, dit.config.d_r, generator=torch.Generator().manual_seed(seed))
            condition.embedding.weight[:num_classes] = codes
        null = pretrained.condition.null if pretrained.condition is not None else torch.zeros(dit.config.d_r)
        condition.embedding.weight[num_classes] = null.detach()
    return RepCondModel(dit, condition).to(next(pretrained.parameters()).device)


def rescale_codes(codes: torch.Tensor) -> torch.Tensor:
    """Class codes float[K, d_r] moved away from their centre until their spread matches N(0, 1) codes': centre +
    (codes − centre) / RMS(codes − centre), so the codes keep their directions but lie as far apart as random
    ones (the class-mean r lie about 0.06 apart, random codes about 11 at d_r = 64)."""
    centre = codes.mean(0, keepdim=True)
    spread = (codes - centre).pow(2).mean().sqrt().clamp_min(1e-12)
    return centre + (codes - centre) / spread


def save_model(model: RepCondModel, folder: str | Path, metadata: dict[str, str] | None = None) -> None:
    """Write the weights as ``folder/model.safetensors`` (atomically). The config is the caller's (it adds the
    data, transform and codec): put :func:`model_spec` under ``config.json["repcond"]["model"]``."""
    save_weights(Path(folder) / WEIGHTS_NAME, model.state_dict(), metadata=metadata)


def load_model(folder: str | Path, spec: dict, device: str | torch.device = "cpu") -> RepCondModel:
    """The model described by ``spec`` with the weights of ``folder/model.safetensors``, in eval mode."""
    model = build_model(spec)
    path = Path(folder) / WEIGHTS_NAME
    if not path.is_file():
        raise DiffclsError(f"{folder} holds no {WEIGHTS_NAME}")
    state = load_weights(path)
    try:
        model.load_state_dict(state)
    except RuntimeError as e:
        raise DiffclsError(f"the weights in {path} do not fit its config: {first_line(e)}") from None
    return model.to(device).eval()


@dataclass
class LoadedCheckpoint:
    """A trained folder, ready to use: ``model`` (eval mode), ``codec``, ``transform``, ``alphas_cumprod``."""

    model: RepCondModel
    codec: Codec
    transform: TransformConfig
    alphas_cumprod: torch.Tensor
    config: dict


def load_checkpoint(folder: str | Path, device: str | torch.device = "cpu") -> LoadedCheckpoint:
    """Any repcond folder (pretrained, unconditional or tuned): one whose ``config.json`` has a ``repcond`` block."""
    config = read_checkpoint_config(folder)
    if "repcond" not in config:
        raise DiffclsError(f"{folder} is not a repcond checkpoint (method {config.get('method')!r})")
    rc = config["repcond"]
    model = load_model(folder, rc["model"], device)
    codec = create_codec(rc["codec"]).to(device)
    alphas = create_scheduler(int(rc.get("num_train_timesteps", 1000))).alphas_cumprod
    return LoadedCheckpoint(model, codec, TransformConfig.from_dict(config["transform"]), alphas, config)
