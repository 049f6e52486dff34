"""Training a class-conditional noise predictor (--method ddpm) into a diffusers DDPMPipeline folder."""

from __future__ import annotations

import json

import pytest
import torch
from diffusers import DDPMPipeline

from diffcls.errors import DiffclsError
from diffcls.methods import trainer
from diffcls.methods.ddpm import DDPMObjective
from diffcls.models.noise_predictors import create_noise_predictor, load_pipeline_unet
from diffcls.train.config import TrainConfig


def ddpm_config(tmp_path, npz_path, **kw) -> TrainConfig:
    base = dict(
        data=f"npz:{npz_path}",
        method="ddpm",
        model="unet_tiny",
        output=str(tmp_path / "ddpm"),
        epochs=2,
        batch_size=16,
        img_size=16,
        warmup_epochs=0,
        val_steps=2,
        val_images=8,
        augment="none",
    )
    return TrainConfig(**{**base, **kw})


def test_ddpm_training_writes_a_pipeline_that_diffusers_loads(tmp_path, npz_path):
    trainer(ddpm_config(tmp_path, npz_path), progress=False).fit()
    out = tmp_path / "ddpm"
    assert json.loads((out / "model_index.json").read_text())["_class_name"] == "DDPMPipeline"
    assert (out / "unet" / "diffusion_pytorch_model.safetensors").is_file()
    pipe = DDPMPipeline.from_pretrained(out)  # diffusers itself
    assert pipe.unet.config.num_class_embeds == 5 and pipe.scheduler.config.prediction_type == "epsilon"
    model, scheduler = load_pipeline_unet(out)
    assert model.num_classes == 4 and model.null_class == 4
    torch.testing.assert_close(scheduler.alphas_cumprod, pipe.scheduler.alphas_cumprod)
    config = json.loads((out / "config.json").read_text())
    assert config["method"] == "ddpm" and config["num_classes"] == 4
    rows = (out / "metrics.csv").read_text().splitlines()
    assert len(rows) == 3 and 0.0 <= float(rows[-1].split(",")[3]) <= 1.0


def test_ddpm_loss_decreases_on_a_fixed_batch():
    torch.manual_seed(0)
    model = create_noise_predictor("unet_tiny", num_classes=3, img_size=8, in_chans=1)
    objective = DDPMObjective(3, torch.cumprod(1 - torch.linspace(1e-4, 0.02, 1000), 0))
    images, labels = torch.rand(12, 1, 8, 8) * 2 - 1, torch.arange(12) % 3
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    losses = []
    for step in range(60):
        torch.manual_seed(step % 4)  # a small fixed set of (t, noise) draws the model can fit
        loss = objective(model, images, labels)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert sum(losses[-8:]) / 8 < 0.6 * sum(losses[:8]) / 8


def test_label_dropout_feeds_the_null_class():
    seen = []

    def model(x_t, t, labels):
        seen.append(labels.clone())
        return torch.zeros_like(x_t, requires_grad=True)

    objective = DDPMObjective(3, torch.linspace(0.99, 0.01, 1000), label_dropout=0.5)
    torch.manual_seed(0)
    objective(model, torch.zeros(400, 1, 2, 2), torch.zeros(400, dtype=torch.long))
    dropped = (seen[0] == 3).float().mean().item()
    assert 0.4 < dropped < 0.6 and set(seen[0].tolist()) == {0, 3}


@pytest.mark.parametrize(
    "options, message",
    [
        (dict(mixup=0.2), "hard labels"),
        (dict(label_dropout=1.0), "label-dropout"),
        (dict(model="resnet18"), "unknown noise predictor"),
        (dict(img_size=15), "multiple of 2"),
    ],
)
def test_bad_ddpm_options(tmp_path, npz_path, options, message):
    with pytest.raises(DiffclsError, match=message):
        trainer(ddpm_config(tmp_path, npz_path, **options), progress=False)
