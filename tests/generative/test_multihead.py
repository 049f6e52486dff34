"""The multi-head ε-network (one head per class, all classes in one pass): the same errors as scoring each class
on its own, one network evaluation per (image, timestep), a tiny one that learns, and the CLI end to end."""

from __future__ import annotations

import json

import pytest
import torch

from diffcls.cli import main
from diffcls.generative import classify, parse_schedule
from diffcls.generative.scoring import noise_prediction_errors, timestep_grid
from diffcls.methods.ddpm import DDPMObjective
from diffcls.models.noise_predictors import MultiHeadUNet, create_noise_predictor, load_pipeline_unet

ALPHAS = torch.cumprod(1 - torch.linspace(1e-4, 0.02, 1000), 0)


class RowCounter:
    """Counts the rows (network evaluations) that reach the UNet."""

    def __init__(self, model: MultiHeadUNet):
        self.rows = 0
        forward = model.unet.forward

        def counted(x, t, *args, **kwargs):
            self.rows += len(x)
            return forward(x, t, *args, **kwargs)

        model.unet.forward = counted


def per_class(model):
    """The same network behind the plain scoring signature (no all_class_heads): one evaluation per class."""
    return lambda x_t, t, labels: model(x_t, t, labels)


def test_one_pass_gives_each_classs_errors_at_a_kth_of_the_evaluations():
    torch.manual_seed(0)
    model = create_noise_predictor("unet_tiny_multihead", num_classes=4, img_size=8, in_chans=1).eval()
    assert isinstance(model, MultiHeadUNet) and model.num_classes == 4
    x0 = torch.rand(5, 1, 8, 8) * 2 - 1
    classes = torch.tensor([[0, 1, 2, 3], [3, 2, 1, 0], [1, 1, 2, 2], [0, 3, 0, 3], [2, 0, 1, 3]])
    timesteps = timestep_grid(6)
    noise = torch.randn(5, 6, 1, 8, 8)
    counter = RowCounter(model)
    fast = noise_prediction_errors(model, x0, classes, timesteps, noise, ALPHAS, batch_size=7)
    one_pass_rows, counter.rows = counter.rows, 0
    slow = noise_prediction_errors(per_class(model), x0, classes, timesteps, noise, ALPHAS, batch_size=7)
    assert fast.shape == (5, 4, 6)
    torch.testing.assert_close(fast, slow, rtol=1e-5, atol=1e-6)
    assert one_pass_rows == 5 * 6 and counter.rows == 5 * 6 * 4  # one evaluation per (image, t), not per class
    result = classify(model, x0, 4, ALPHAS, parse_schedule("2,6", "2,1"), torch.randn(6, 1, 8, 8))
    assert result.nfe == 6  # every timestep once, whatever is eliminated
    assert classify(per_class(model), x0, 4, ALPHAS, parse_schedule("2,6", "2,1"), torch.randn(6, 1, 8, 8)).nfe == 16


def test_a_tiny_multihead_network_learns_to_classify():
    """Three classes of flat images at grey levels -0.6, 0, 0.6: after training each head on its own class, the
    head of an image's class predicts its noise best."""
    torch.manual_seed(0)
    model = create_noise_predictor("unet_tiny_multihead", num_classes=3, img_size=8, in_chans=1)
    labels = torch.arange(24) % 3
    images = (labels.float() - 1).view(-1, 1, 1, 1) * 0.6 + 0.05 * torch.randn(24, 1, 8, 8)
    objective = DDPMObjective(3, ALPHAS)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    for _ in range(150):
        loss = objective(model, images, labels)
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    test_labels = torch.arange(30) % 3
    test = (test_labels.float() - 1).view(-1, 1, 1, 1) * 0.6 + 0.05 * torch.randn(30, 1, 8, 8)
    result = classify(model, test, 3, ALPHAS, parse_schedule(preset="flat-20"), torch.randn(20, 1, 8, 8))
    assert (result.prediction == test_labels).float().mean() >= 0.9


def test_cli_trains_saves_loads_and_evaluates_a_multihead_model(tmp_path, npz_path, capsys):
    out = tmp_path / "mh"
    common = ["--data", f"npz:{npz_path}", "--method", "ddpm", "--img-size", "16", "--output", str(out)]
    assert main(["train", *common, "--model", "unet_tiny_multihead", "--epochs", "1", "--val-images", "4"]) == 0
    model, _ = load_pipeline_unet(out)
    assert isinstance(model, MultiHeadUNet) and model.num_classes == 4 and model.unet.config.out_channels == 12
    results = tmp_path / "r.json"
    eval_args = ["eval", "--checkpoint", str(out), "--data", f"npz:{npz_path}", "--limit", "8"]
    assert main([*eval_args, "--schedule", "flat-6", "--results-file", str(results)]) == 0
    r = json.loads(results.read_text())
    assert r["nfe_per_image"] == 6 and r["num_samples"] == 8  # K = 4 classes for the cost of one
    capsys.readouterr()
    for extra in (["--schedule", "flat-6", "--early-stop", "0.05"], ["--proposer", str(out)]):
        code = main([*eval_args, *extra, "--results-file", str(tmp_path / "x.json")])
        err = capsys.readouterr().err
        assert code == 2 and "multi-head" in err and len(err.strip().splitlines()) == 1, err
    code = main(
        ["train", *common[:-1], str(tmp_path / "d"), "--model", "unet_tiny_multihead", "--label-dropout", "0.1"]
    )
    err = capsys.readouterr().err
    assert code == 2 and "null class" in err


@pytest.mark.parametrize("name", ["unet_tiny_multihead", "unet_small_multihead"])
def test_multihead_presets_keep_the_widths_of_their_base(name):
    base = create_noise_predictor(name.removesuffix("_multihead"), num_classes=10, img_size=16)
    multi = create_noise_predictor(name, num_classes=10, img_size=16)
    assert multi.unet.config.block_out_channels == base.unet.config.block_out_channels
    assert multi.unet.config.out_channels == 30 and multi.unet.config.num_class_embeds is None
