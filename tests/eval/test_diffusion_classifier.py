"""``diffcls eval`` with the Diffusion Classifier: ddpm checkpoints, diffusers folders, resume, temperature."""

from __future__ import annotations

import json

import pytest
import torch
from diffusers import DDPMPipeline, DDPMScheduler, UNet2DModel

import diffcls.eval.diffusion_classifier as dc_eval
from diffcls.cli import main
from diffcls.train.loop import Trainer, TrainConfig


@pytest.fixture
def ddpm_checkpoint(tmp_path, npz_path):
    """An untrained (epochs=0) unet_tiny ddpm checkpoint for the 4-class blobs, 16 px."""
    out = tmp_path / "ddpm"
    Trainer(TrainConfig(data=f"npz:{npz_path}", method="ddpm", model="unet_tiny", output=str(out), epochs=0,
                        img_size=16), progress=False).fit()
    return out


def run_eval(*args) -> int:
    return main(["eval", *map(str, args)])


def test_eval_of_a_ddpm_checkpoint_writes_results_and_per_image_rows(tmp_path, npz_path, ddpm_checkpoint, capsys):
    results_file = tmp_path / "dc.json"
    assert run_eval("--checkpoint", ddpm_checkpoint, "--data", f"npz:{npz_path}", "--schedule", "flat-4",
                    "--limit", 6, "--results-file", results_file, "--save-probs", tmp_path / "p.npy") == 0
    results = json.loads(results_file.read_text())
    assert results["method"] == "diffusion-classifier" and results["num_samples"] == 6
    assert results["nfe_per_image"] == 4 * 4 and results["temperature"] == 1.0
    rows = [json.loads(line) for line in (tmp_path / "dc.images.jsonl").read_text().splitlines()]
    assert rows[0]["key"] == "run" and [r["index"] for r in rows[1:]] == list(range(6))
    assert all(len(r["stage_means"]) == 1 and len(r["stage_means"][0]) == 4 for r in rows[1:])
    assert json.loads(capsys.readouterr().out.splitlines()[-1])["num_samples"] == 6


def test_killed_evaluation_resumes_without_redoing_or_duplicating(tmp_path, npz_path, ddpm_checkpoint, monkeypatch):
    common = ["--checkpoint", ddpm_checkpoint, "--data", f"npz:{npz_path}", "--n-samples", "2,6", "--to-keep",
              "2,1", "--limit", 9]
    monkeypatch.setattr(dc_eval, "IMAGES_PER_BATCH", 2)
    assert run_eval(*common, "--results-file", tmp_path / "straight.json") == 0

    calls, kill = [], [True]
    original = dc_eval.classify

    def killed_on_third_batch(*args, **kwargs):
        calls.append(len(args[1]))
        if kill[0] and len(calls) == 3:
            raise KeyboardInterrupt
        return original(*args, **kwargs)

    monkeypatch.setattr(dc_eval, "classify", killed_on_third_batch)
    assert run_eval(*common, "--results-file", tmp_path / "resumed.json") == 130  # interrupted
    calls.clear()
    kill[0] = False
    assert run_eval(*common, "--results-file", tmp_path / "resumed.json") == 0
    assert sum(calls) == 9 - 4  # only the images not yet done
    lines = (tmp_path / "resumed.images.jsonl").read_text().splitlines()
    assert len(lines) == 1 + 9
    straight = json.loads((tmp_path / "straight.json").read_text())
    resumed = json.loads((tmp_path / "resumed.json").read_text())
    for key in ("top1", "nll", "ece", "nfe_per_image"):
        assert resumed[key] == straight[key]
    assert straight["nfe_per_image"] == 4 * 2 + 2 * 4


def test_a_changed_run_refuses_the_old_per_image_file(tmp_path, npz_path, ddpm_checkpoint, capsys):
    common = ["--checkpoint", ddpm_checkpoint, "--data", f"npz:{npz_path}", "--limit", 2,
              "--per-image", tmp_path / "rows.jsonl", "--results-file", tmp_path / "r.json"]
    assert run_eval(*common, "--schedule", "flat-2") == 0
    assert run_eval(*common, "--schedule", "flat-3") == 2
    assert "another run" in capsys.readouterr().err


def test_fitted_temperature_is_stored_and_reused(tmp_path, npz_path, ddpm_checkpoint):
    common = ["--checkpoint", ddpm_checkpoint, "--data", f"npz:{npz_path}", "--schedule", "flat-3"]
    assert run_eval(*common, "--limit", 8, "--fit-temperature", "--results-file", tmp_path / "fit.json") == 0
    stored = json.loads((ddpm_checkpoint / "calibration.json").read_text())["temperature"]
    assert json.loads((tmp_path / "fit.json").read_text())["temperature"] == stored
    assert run_eval(*common, "--start", 8, "--limit", 4, "--results-file", tmp_path / "test.json") == 0
    results = json.loads((tmp_path / "test.json").read_text())
    assert results["temperature"] == stored and results["temperature_source"].endswith("calibration.json")
    assert results["num_samples"] == 4 and results["start"] == 8


def write_diffusers_pipeline(folder, num_class_embeds):
    torch.manual_seed(0)
    unet = UNet2DModel(sample_size=16, in_channels=3, out_channels=3, block_out_channels=(8, 16), layers_per_block=1,
                       norm_num_groups=4, down_block_types=("DownBlock2D", "DownBlock2D"),
                       up_block_types=("UpBlock2D", "UpBlock2D"), num_class_embeds=num_class_embeds)
    DDPMPipeline(unet=unet, scheduler=DDPMScheduler(num_train_timesteps=1000)).save_pretrained(folder)
    return folder


def test_pretrained_diffusers_folder(tmp_path, npz_path, capsys):
    folder = write_diffusers_pipeline(tmp_path / "pipe", num_class_embeds=4)  # written by diffusers itself
    assert run_eval("--pretrained", folder, "--data", f"npz:{npz_path}", "--schedule", "flat-2", "--limit", 3,
                    "--results-file", tmp_path / "r.json") == 0
    results = json.loads((tmp_path / "r.json").read_text())
    assert results["model_kind"] == "DDPMPipeline" and results["num_samples"] == 3

    unconditional = write_diffusers_pipeline(tmp_path / "uncond", num_class_embeds=None)
    too_few = write_diffusers_pipeline(tmp_path / "few", num_class_embeds=3)
    for bad, message in [(unconditional, "not class-conditional"), (too_few, "embeds only 3"),
                         (tmp_path, "no model_index.json")]:
        assert run_eval("--pretrained", bad, "--data", f"npz:{npz_path}", "--results-file", tmp_path / "x.json") == 2
        assert message in capsys.readouterr().err


def test_bad_diffusion_classifier_options(tmp_path, npz_path, ddpm_checkpoint, capsys):
    base = ["--checkpoint", ddpm_checkpoint, "--data", f"npz:{npz_path}", "--results-file", tmp_path / "r.json"]
    for extra, message in [(["--schedule", "mnist"], "unknown schedule"),
                           (["--n-samples", "10,5", "--to-keep", "2,1"], "increase"),
                           (["--schedule", "cifar10", "--n-samples", "5"], "not both"),
                           (["--start", "999"], "--start")]:
        assert run_eval(*base, *extra) == 2
        assert message in capsys.readouterr().err


def write_dit_pipeline(folder, num_classes=4):
    """A tiny latent DiTPipeline (DiT + AutoencoderKL, 8 px images -> 4×4×4 latents), saved by diffusers."""
    from diffusers import AutoencoderKL, DiTPipeline, DiTTransformer2DModel

    torch.manual_seed(0)
    transformer = DiTTransformer2DModel(num_attention_heads=2, attention_head_dim=8, in_channels=4, out_channels=8,
                                        num_layers=1, sample_size=4, patch_size=2, num_embeds_ada_norm=num_classes)
    vae = AutoencoderKL(block_out_channels=(8, 8), down_block_types=("DownEncoderBlock2D",) * 2,
                        up_block_types=("UpDecoderBlock2D",) * 2, latent_channels=4, norm_num_groups=4,
                        sample_size=8)
    DiTPipeline(transformer=transformer, vae=vae, scheduler=DDPMScheduler(num_train_timesteps=1000)).save_pretrained(
        folder)
    return folder


def test_pretrained_dit_scores_latents_with_the_epsilon_half(tmp_path, npz_path):
    from diffusers import AutoencoderKL, DiTTransformer2DModel

    from diffcls.data import ImageDataset, ImageTransform, load_source
    from diffcls.generative.pretrained import load_pretrained

    folder = write_dit_pipeline(tmp_path / "dit")
    assert run_eval("--pretrained", folder, "--data", f"npz:{npz_path}", "--schedule", "flat-1", "--limit", 2,
                    "--results-file", tmp_path / "dit.json") == 0
    results = json.loads((tmp_path / "dit.json").read_text())
    assert results["model_kind"] == "DiTPipeline" and results["nfe_per_image"] == 4
    rows = [json.loads(line) for line in (tmp_path / "dit.images.jsonl").read_text().splitlines()[1:]]

    # Independent computation for image 0: VAE mean × scaling factor, t = 500 (flat-1), the seed-0 noise bank.
    transformer = DiTTransformer2DModel.from_pretrained(folder / "transformer").eval()
    vae = AutoencoderKL.from_pretrained(folder / "vae").eval()
    model = load_pretrained(folder)
    image = ImageDataset(load_source(f"npz:{npz_path}").test, ImageTransform(model.transform))[0][0][None]
    with torch.no_grad():
        x0 = vae.encode(image).latent_dist.mean * vae.config.scaling_factor
        noise = torch.randn(1, *x0.shape[1:], generator=torch.Generator().manual_seed(0))
        abar = DDPMScheduler(num_train_timesteps=1000).alphas_cumprod[500]
        x_t = abar.sqrt() * x0 + (1 - abar).sqrt() * noise
        expected = [((noise - transformer(x_t, timestep=torch.tensor([500]), class_labels=torch.tensor([c])).sample[:, :4])
                     ** 2).mean().item() for c in range(4)]
    assert rows[0]["stage_means"][0] == pytest.approx(expected, rel=1e-4)
