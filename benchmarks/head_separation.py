"""How far a noise predictor's error for the true class sits below its errors for the other classes.

    .venv/bin/python benchmarks/head_separation.py zoo:mnist5k-ddpm zoo:mnist5k-ddpm-multihead [--images 200]

For each model, on the first ``--images`` of the validation split's stratified order (the images the model held
out of training), at 10 evenly spaced timesteps with one shared noise bank, it prints per timestep band:

* the mean error with the true class, and with the other classes;
* the *gap*: (mean other − true) / mean true, the relative margin that the Diffusion Classifier's ranking reads;
* how often the true class has the lowest error at a single (t, ε) (chance is 1/K);

so a model whose classes all give the same error (no gap; a multi-head network whose heads share everything but
their last convolution, say) is told apart from one whose gap exists but is swamped by noise.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

from diffcls.cli import model_folder
from diffcls.data import ImageDataset, ImageTransform, TransformConfig, load_source
from diffcls.data.datasets import stratified_order
from diffcls.eval.evaluate import held_out_images, select_split
from diffcls.generative.scoring import noise_prediction_errors, timestep_grid
from diffcls.models.noise_predictors import load_pipeline_unet


def separation(folder: str, images: int, seed: int = 0) -> list[dict]:
    config = json.loads((Path(folder) / "config.json").read_text())
    source = load_source(config["data"])
    split = select_split(source, "val", None, **held_out_images(config))
    chosen = np.sort(stratified_order(split.labels)[:images])
    dataset = ImageDataset(split, ImageTransform(TransformConfig.from_dict(config["transform"])))
    x0 = torch.stack([dataset[int(i)][0] for i in chosen])
    labels = torch.as_tensor(split.labels[chosen])
    model, scheduler = load_pipeline_unet(folder)
    k = source.num_classes
    timesteps = timestep_grid(10)
    noise = torch.randn(len(timesteps), *x0.shape[1:], generator=torch.Generator().manual_seed(seed))
    classes = torch.arange(k).expand(len(x0), -1)
    errors = noise_prediction_errors(
        model, x0, classes, timesteps, noise[None].expand(len(x0), -1, -1, -1, -1), scheduler.alphas_cumprod
    )  # [N, K, J]
    rows = []
    true = errors[torch.arange(len(x0)), labels]  # [N, J]
    other = (errors.sum(1) - true) / (k - 1)
    wins = (errors.argmin(1) == labels[:, None]).float()  # [N, J]
    for j, t in enumerate(timesteps.tolist()):
        rows.append(
            {
                "t": t,
                "true": true[:, j].mean().item(),
                "other": other[:, j].mean().item(),
                "gap": ((other[:, j] - true[:, j]) / true[:, j]).mean().item(),
                "true_lowest": wins[:, j].mean().item(),
            }
        )
    rows.append({"t": "all", "top1_mean_over_t": (errors.mean(2).argmin(1) == labels).float().mean().item()})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("models", nargs="+", type=model_folder, help="ddpm folders or zoo:NAME")
    parser.add_argument("--images", type=int, default=200)
    args = parser.parse_args()
    for folder in args.models:
        rows = separation(folder, args.images)
        print(f"\n{folder}\n| t | error, true class | error, other classes | gap | true class lowest |")
        print("|---|---|---|---|---|")
        for r in rows[:-1]:
            print(f"| {r['t']} | {r['true']:.4f} | {r['other']:.4f} | {r['gap']:+.3f} | {r['true_lowest']:.2f} |")
        print(f"top-1 of the mean error over the 10 timesteps: {rows[-1]['top1_mean_over_t']:.3f}")


if __name__ == "__main__":
    main()
