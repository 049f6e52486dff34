"""``diffcls eval`` with the Diffusion Classifier: ddpm checkpoints, diffusers folders, resume, temperature."""

from __future__ import annotations

import json

import pytest
import torch
from diffusers import DDPMScheduler

import diffcls.eval.diffusion_classifier as dc_eval
from diffcls.cli import main
from diffcls.data import load_source, stratified_order
from diffcls.methods import trainer
from diffcls.train.config import TrainConfig
from tiny_pipelines import write_ddpm_pipeline, write_dit_pipeline, write_stable_diffusion_pipeline


@pytest.fixture
def ddpm_checkpoint(tmp_path, npz_path):
    """An untrained (epochs=0) unet_tiny ddpm checkpoint for the 4-class blobs, 16 px."""
    out = tmp_path / "ddpm"
    trainer(
        TrainConfig(data=f"npz:{npz_path}", method="ddpm", model="unet_tiny", output=str(out), epochs=0, img_size=16),
        progress=False,
    ).fit()
    return out


def run_eval(*args) -> int:
    return main(["eval", *map(str, args)])


def test_eval_of_a_ddpm_checkpoint_writes_results_and_per_image_rows(tmp_path, npz_path, ddpm_checkpoint, capsys):
    results_file = tmp_path / "dc.json"
    assert (
        run_eval(
            "--checkpoint",
            ddpm_checkpoint,
            "--data",
            f"npz:{npz_path}",
            "--schedule",
            "flat-4",
            "--limit",
            6,
            "--results-file",
            results_file,
            "--save-probs",
            tmp_path / "p.npy",
        )
        == 0
    )
    results = json.loads(results_file.read_text())
    assert results["method"] == "diffusion-classifier" and results["num_samples"] == 6
    assert results["nfe_per_image"] == 4 * 4 and results["temperature"] == 1.0
    rows = [json.loads(line) for line in (tmp_path / "dc.images.jsonl").read_text().splitlines()]
    # --limit takes a fixed stratified subset (the test split may be sorted by class), rows in data-set order
    labels = load_source(f"npz:{npz_path}").test.labels
    assert rows[0]["key"] == "run" and [r["index"] for r in rows[1:]] == sorted(stratified_order(labels)[:6])
    assert len(set(labels[[r["index"] for r in rows[1:]]])) == 4  # every class of the 4 is in
    assert all(len(r["stage_means"]) == 1 and len(r["stage_means"][0]) == 4 for r in rows[1:])
    assert json.loads(capsys.readouterr().out.splitlines()[-1])["num_samples"] == 6


def test_killed_evaluation_resumes_without_redoing_or_duplicating(tmp_path, npz_path, ddpm_checkpoint, monkeypatch):
    common = [
        "--checkpoint",
        ddpm_checkpoint,
        "--data",
        f"npz:{npz_path}",
        "--n-samples",
        "2,6",
        "--to-keep",
        "2,1",
        "--limit",
        9,
    ]
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
    common = [
        "--checkpoint",
        ddpm_checkpoint,
        "--data",
        f"npz:{npz_path}",
        "--limit",
        2,
        "--per-image",
        tmp_path / "rows.jsonl",
        "--results-file",
        tmp_path / "r.json",
    ]
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


def test_pretrained_diffusers_folder(tmp_path, npz_path, capsys):
    folder = write_ddpm_pipeline(tmp_path / "pipe", num_class_embeds=4)  # written by diffusers itself
    assert (
        run_eval(
            "--pretrained",
            folder,
            "--data",
            f"npz:{npz_path}",
            "--schedule",
            "flat-2",
            "--limit",
            3,
            "--results-file",
            tmp_path / "r.json",
        )
        == 0
    )
    results = json.loads((tmp_path / "r.json").read_text())
    assert results["model_kind"] == "DDPMPipeline" and results["num_samples"] == 3

    unconditional = write_ddpm_pipeline(tmp_path / "uncond", num_class_embeds=None)
    too_few = write_ddpm_pipeline(tmp_path / "few", num_class_embeds=3)
    for bad, message in [
        (unconditional, "not class-conditional"),
        (too_few, "embeds only 3"),
        (tmp_path, "no model_index.json"),
    ]:
        assert run_eval("--pretrained", bad, "--data", f"npz:{npz_path}", "--results-file", tmp_path / "x.json") == 2
        assert message in capsys.readouterr().err


def test_bad_diffusion_classifier_options(tmp_path, npz_path, ddpm_checkpoint, capsys):
    base = ["--checkpoint", ddpm_checkpoint, "--data", f"npz:{npz_path}", "--results-file", tmp_path / "r.json"]
    for extra, message in [
        (["--schedule", "mnist"], "unknown schedule"),
        (["--n-samples", "10,5", "--to-keep", "2,1"], "increase"),
        (["--schedule", "cifar10", "--n-samples", "5"], "not both"),
        (["--start", "999"], "--start"),
    ]:
        assert run_eval(*base, *extra) == 2
        assert message in capsys.readouterr().err


def test_pretrained_dit_scores_latents_with_the_epsilon_half(tmp_path, npz_path):
    from diffusers import AutoencoderKL, DiTTransformer2DModel

    from diffcls.data import ImageDataset, ImageTransform, load_source
    from diffcls.generative.pretrained import load_pretrained

    folder = write_dit_pipeline(tmp_path / "dit")
    assert (
        run_eval(
            "--pretrained",
            folder,
            "--data",
            f"npz:{npz_path}",
            "--schedule",
            "flat-1",
            "--limit",
            2,
            "--results-file",
            tmp_path / "dit.json",
        )
        == 0
    )
    results = json.loads((tmp_path / "dit.json").read_text())
    assert results["model_kind"] == "DiTPipeline" and results["nfe_per_image"] == 4
    rows = [json.loads(line) for line in (tmp_path / "dit.images.jsonl").read_text().splitlines()[1:]]

    # Independent computation for the first image classified: VAE mean × scaling factor, t = 500 (flat-1), the
    # seed-0 noise bank.
    transformer = DiTTransformer2DModel.from_pretrained(folder / "transformer").eval()
    vae = AutoencoderKL.from_pretrained(folder / "vae").eval()
    model = load_pretrained(folder)
    image = ImageDataset(load_source(f"npz:{npz_path}").test, ImageTransform(model.transform))[rows[0]["index"]][0][
        None
    ]
    with torch.no_grad():
        x0 = vae.encode(image).latent_dist.mean * vae.config.scaling_factor
        noise = torch.randn(1, *x0.shape[1:], generator=torch.Generator().manual_seed(0))
        abar = DDPMScheduler(num_train_timesteps=1000).alphas_cumprod[500]
        x_t = abar.sqrt() * x0 + (1 - abar).sqrt() * noise
        expected = [
            (
                (noise - transformer(x_t, timestep=torch.tensor([500]), class_labels=torch.tensor([c])).sample[:, :4])
                ** 2
            )
            .mean()
            .item()
            for c in range(4)
        ]
    assert rows[0]["stage_means"][0] == pytest.approx(expected, rel=1e-4)


def test_zero_shot_text_conditional_pipeline_scores_each_prompt(tmp_path, npz_path):
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextModel, CLIPTokenizer

    from diffcls.data import ImageDataset, ImageTransform, load_source
    from diffcls.generative.pretrained import load_pretrained

    folder = write_stable_diffusion_pipeline(tmp_path / "sd")
    assert (
        run_eval(
            "--pretrained",
            folder,
            "--data",
            f"npz:{npz_path}",
            "--schedule",
            "flat-1",
            "--limit",
            2,
            "--prompt-template",
            "a blurry photo of a {}.",
            "--results-file",
            tmp_path / "sd.json",
        )
        == 0
    )
    results = json.loads((tmp_path / "sd.json").read_text())
    assert results["model_kind"] == "StableDiffusionPipeline" and results["candidates"] == 4
    rows = [json.loads(line) for line in (tmp_path / "sd.images.jsonl").read_text().splitlines()]
    source = load_source(f"npz:{npz_path}")
    assert rows[0]["prompts"] == [f"a blurry photo of a {name}." for name in source.class_names]

    # Independent computation of the first image's error for the prompt of class 2 at t = 500 with the seed-0 noise.
    tokenizer = CLIPTokenizer.from_pretrained(folder / "tokenizer")
    text_encoder = CLIPTextModel.from_pretrained(folder / "text_encoder").eval()
    unet = UNet2DConditionModel.from_pretrained(folder / "unet").eval()
    vae = AutoencoderKL.from_pretrained(folder / "vae").eval()
    transform = load_pretrained(folder, prompts=[("x", 0)]).transform
    image = ImageDataset(source.test, ImageTransform(transform))[rows[1]["index"]][0][None]
    with torch.no_grad():
        ids = tokenizer(
            [f"a blurry photo of a {source.class_names[2]}."],
            padding="max_length",
            max_length=tokenizer.model_max_length,
            truncation=True,
            return_tensors="pt",
        ).input_ids
        x0 = vae.encode(image).latent_dist.mean * vae.config.scaling_factor
        noise = torch.randn(1, *x0.shape[1:], generator=torch.Generator().manual_seed(0))
        abar = DDPMScheduler(beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012).alphas_cumprod[500]
        x_t = abar.sqrt() * x0 + (1 - abar).sqrt() * noise
        eps = unet(x_t, torch.tensor([500]), encoder_hidden_states=text_encoder(ids)[0]).sample
    assert rows[1]["stage_means"][0][2] == pytest.approx(((noise - eps) ** 2).mean().item(), rel=1e-4)


def test_prompts_csv_pools_several_prompts_per_class(tmp_path, npz_path):
    folder = write_stable_diffusion_pipeline(tmp_path / "sd")
    prompts = tmp_path / "prompts.csv"
    prompts.write_text(
        "prompt,classname,classidx\na zero,zero,0\nthe digit zero,zero,0\na one,one,1\na two,two,2\na three,three,3\n"
    )
    assert (
        run_eval(
            "--pretrained",
            folder,
            "--data",
            f"npz:{npz_path}",
            "--schedule",
            "flat-2",
            "--limit",
            3,
            "--prompts",
            prompts,
            "--temperature",
            300,
            "--results-file",
            tmp_path / "r.json",
            "--save-probs",
            tmp_path / "p.npy",
        )
        == 0
    )
    results = json.loads((tmp_path / "r.json").read_text())
    assert results["candidates"] == 5 and results["nfe_per_image"] == 5 * 2
    import numpy as np

    probs = np.load(tmp_path / "p.npy")
    rows = [json.loads(line) for line in (tmp_path / "r.images.jsonl").read_text().splitlines()[1:]]
    means = torch.tensor([r["stage_means"][0] for r in rows], dtype=torch.float64)
    per_prompt = torch.softmax(-300 * means, 1)
    expected = torch.stack(
        [per_prompt[:, 0] + per_prompt[:, 1], per_prompt[:, 2], per_prompt[:, 3], per_prompt[:, 4]], 1
    )
    np.testing.assert_allclose(probs, expected.numpy(), rtol=1e-5, atol=1e-6)
    assert [r["prediction"] for r in rows] == expected.argmax(1).tolist()
    survived = np.mean([r["prediction"] == r["label"] for r in rows])
    assert results["top1"] == pytest.approx(survived)  # top-1 is the survivor's class

    bad = tmp_path / "bad.csv"
    bad.write_text("text,label\nhello,0\n")
    assert (
        run_eval(
            "--pretrained", folder, "--data", f"npz:{npz_path}", "--prompts", bad, "--results-file", tmp_path / "x.json"
        )
        == 2
    )


def test_v_prediction_output_is_converted_to_epsilon():
    from diffcls.generative.pretrained import TextConditionalNoisePredictor

    torch.manual_seed(0)
    alphas = DDPMScheduler().alphas_cumprod
    x0, eps, t = torch.randn(3, 4, 2, 2), torch.randn(3, 4, 2, 2), torch.tensor([10, 500, 990])
    abar = alphas[t].view(-1, 1, 1, 1)
    x_t = abar.sqrt() * x0 + (1 - abar).sqrt() * eps

    class VUnet(torch.nn.Module):  # returns the exact v = sqrt(abar) eps - sqrt(1 - abar) x0
        def forward(self, x, t, encoder_hidden_states):
            return type("Out", (), {"sample": abar.sqrt() * eps - (1 - abar).sqrt() * x0})()

    model = TextConditionalNoisePredictor(VUnet(), torch.zeros(2, 3, 5), alphas, "v_prediction")
    torch.testing.assert_close(model(x_t, t, torch.tensor([0, 1, 0])), eps, rtol=1e-4, atol=1e-5)


def test_split_val_classifies_the_images_the_checkpoint_held_out(tmp_path, npz_path, ddpm_checkpoint):
    """--split val reads the checkpoint's val_split of its training images (as for classifiers), and --split test
    the test split; per-image labels come from the right split."""
    from diffcls.data import load_source, training_splits

    val = training_splits(load_source(f"npz:{npz_path}").train, None, 0.1)[1]
    results = tmp_path / "val.json"
    common = ["--checkpoint", ddpm_checkpoint, "--data", f"npz:{npz_path}", "--n-samples", "2", "--to-keep", "1"]
    assert run_eval(*common, "--split", "val", "--results-file", results) == 0
    r = json.loads(results.read_text())
    assert r["num_samples"] == len(val.labels) == 8 and r["split"] == "val"
    rows = [json.loads(line) for line in results.with_suffix(".images.jsonl").read_text().splitlines()[1:]]
    assert sorted(row["label"] for row in rows) == sorted(val.labels.tolist())


def test_ood_detection_with_the_lowest_error_and_resume(tmp_path, npz_path, ddpm_checkpoint, capsys):
    """--ood-data noise: the OOD images get their own per-image log; ood_* of lowest_error is the min over classes
    of the logged last-stage means, msp agrees with the saved probabilities; a rerun redoes no image."""
    import numpy as np

    from independent import numpy_ood

    results, probs = tmp_path / "dc.json", tmp_path / "p.npy"
    args = ["--checkpoint", ddpm_checkpoint, "--data", f"npz:{npz_path}", "--n-samples", "2,4", "--to-keep", "2,1"]
    args += ["--limit", 8, "--results-file", results, "--save-probs", probs, "--ood-data", "noise"]
    assert run_eval(*args, "--ood-score", "lowest_error") == 0
    r = json.loads(results.read_text())
    assert r["ood_score"] == "lowest_error" and r["ood_num_samples"] == 8
    assert set(r["ood_by_score"]) == {"msp", "entropy", "lowest_error"}

    def lowest(path):
        rows = [json.loads(line) for line in path.read_text().splitlines()][1:]
        return np.array([min(v for v in row["stage_means"][-1] if v is not None) for row in rows])

    ood_log = tmp_path / "dc.images.ood.jsonl"
    for key, value in numpy_ood(lowest(tmp_path / "dc.images.jsonl"), lowest(ood_log)).items():
        assert r[key] == pytest.approx(value, abs=1e-6), key
    inside, outside = np.load(probs).astype(float), np.load(tmp_path / "p.ood.npy").astype(float)
    for key, value in numpy_ood(1 - inside.max(1), 1 - outside.max(1)).items():
        assert r["ood_by_score"]["msp"][key] == pytest.approx(value, abs=1e-6), key
    before = ood_log.read_text()
    assert json.loads(capsys.readouterr().out.splitlines()[-1])["ood_auroc"] == r["ood_auroc"]
    assert run_eval(*args) == 0  # resumed: every image read back, none classified again
    assert ood_log.read_text() == before
    assert json.loads(results.read_text())["ood_by_score"] == r["ood_by_score"]
    assert run_eval(*args, "--ood-score", "energy") == 2
    assert "not a score of the Diffusion Classifier; choose from msp, entropy, lowest_error" in capsys.readouterr().err


def test_top1_is_the_survivor_even_where_pooled_probabilities_disagree():
    """Two prompts of class 0 that each lose to class 1's prompt still pool to more probability than class 1: the
    decision (and top-1) is the survivor's class, the pooled argmax is not."""
    from diffcls.generative.adaptive import pool_candidates, stagewise_probabilities

    means = torch.tensor([[[0.10, 0.11, 0.09]]], dtype=torch.float64)  # one image, one stage, prompts of 0, 0, 1
    candidates = torch.tensor([0, 0, 1])
    pooled = pool_candidates(stagewise_probabilities(means, 10.0), candidates, 2)
    assert pooled.argmax(1).item() == 0 and candidates[dc_eval.lowest_last_stage(means)].item() == 1
    eliminated = torch.tensor([[[0.30, 0.10, 0.20], [float("nan"), 0.50, 0.40]]], dtype=torch.float64)
    assert dc_eval.lowest_last_stage(eliminated).item() == 2  # prompt 0 is out after stage 1


def test_hybrid_readout_scores_the_proposers_top_k(tmp_path, npz_path, ddpm_checkpoint, capsys):
    """--proposer: the classes scored per image are the proposer's top-k (read from its own saved
    probabilities on the same images), NFE = schedule.nfe(k) + 1, the probabilities are the proposer's outside
    and its top-k mass split by the Diffusion Classifier inside, and top-1 is the survivor's."""
    import numpy as np

    from diffcls.generative.adaptive import hybrid_probabilities

    data = f"npz:{npz_path}"
    proposer = tmp_path / "twin"
    assert main(["train", "--data", data, "--method", "standard", "--model", "didirn_small", "--img-size", "12",
                 "--epochs", "1", "--output", str(proposer)]) == 0  # fmt: skip
    assert run_eval("--checkpoint", proposer, "--data", data, "--limit", 8, "--results-file", tmp_path / "p.json",
                    "--save-probs", tmp_path / "proposer.npy") == 0  # fmt: skip
    proposer_probs = torch.as_tensor(np.load(tmp_path / "proposer.npy"))
    args = ["--checkpoint", ddpm_checkpoint, "--data", data, "--schedule", "flat-3", "--limit", 8]
    args += ["--proposer", proposer, "--proposer-top-k", 2, "--results-file", tmp_path / "h.json"]
    assert run_eval(*args, "--save-probs", tmp_path / "h.npy") == 0
    r = json.loads((tmp_path / "h.json").read_text())
    assert r["method"] == "hybrid" and r["proposer_top_k"] == 2 and r["nfe_per_image"] == 2 * 3 + 1
    rows = [json.loads(line) for line in (tmp_path / "h.images.jsonl").read_text().splitlines()[1:]]
    top = proposer_probs.topk(2, dim=1).indices
    for row, proposed in zip(rows, top.tolist()):
        scored = {c for c, v in enumerate(row["stage_means"][0]) if v is not None}
        assert scored == set(proposed) and row["prediction"] in proposed
    means = torch.tensor([[[np.nan if v is None else v for v in r["stage_means"][0]]] for r in rows])
    dc = torch.softmax(-means[:, 0].nan_to_num(float("inf")), 1)  # lambda = 1, one stage
    expected = hybrid_probabilities(proposer_probs, dc, top)
    np.testing.assert_allclose(np.load(tmp_path / "h.npy"), expected.numpy(), rtol=1e-5, atol=1e-6)
    assert r["top1"] == pytest.approx(np.mean([row["prediction"] == row["label"] for row in rows]))
    labels = torch.tensor([row["label"] for row in rows])
    assert r["proposer_recall"] == pytest.approx((top == labels[:, None]).any(1).double().mean().item())
    assert run_eval(*args[:-2], "--proposer-top-k", 9, "--results-file", tmp_path / "x.json") == 2
    assert "--proposer-top-k must lie in 1..4, got 9" in capsys.readouterr().err


def test_early_stopping_eval_counts_each_images_nfe_and_resumes(tmp_path, npz_path, ddpm_checkpoint, capsys):
    """--early-stop: each row records its own NFE (at most K M, a multiple of the chunk's cost), the results give
    their mean; the survivor is the row's prediction; a rerun classifies nothing again."""
    data = f"npz:{npz_path}"
    args = ["--checkpoint", ddpm_checkpoint, "--data", data, "--schedule", "flat-12", "--limit", 6]
    args += ["--early-stop", 0.2, "--early-stop-chunk", 3, "--results-file", tmp_path / "e.json"]
    assert run_eval(*args) == 0
    r = json.loads((tmp_path / "e.json").read_text())
    rows = [json.loads(line) for line in (tmp_path / "e.images.jsonl").read_text().splitlines()[1:]]
    assert all(4 * 3 <= row["nfe"] <= 4 * 12 for row in rows)  # one look of all 4 classes at least
    assert r["nfe_per_image"] == pytest.approx(sum(row["nfe"] for row in rows) / 6) and r["nfe_per_image_max"] == 48
    assert r["top1"] == pytest.approx(sum(row["prediction"] == row["label"] for row in rows) / 6)
    before = (tmp_path / "e.images.jsonl").read_text()
    assert run_eval(*args) == 0 and (tmp_path / "e.images.jsonl").read_text() == before
    assert run_eval(*args[:6], "--schedule", "cifar10", "--early-stop", 0.1, "--results-file", tmp_path / "x.json") == 2
    assert "--early-stop races the classes on a flat schedule" in capsys.readouterr().err


def test_hybrid_with_early_stopping_races_the_proposed_classes(tmp_path, npz_path, ddpm_checkpoint, capsys):
    """--proposer with --early-stop: each image races only the proposer's top-k; NFE per image = its own race's
    count + the proposer's 1, at most k M + 1; probabilities sum to 1; top-k 1 is refused (a race needs two)."""
    import numpy as np

    data = f"npz:{npz_path}"
    proposer = tmp_path / "twin"
    assert main(["train", "--data", data, "--method", "standard", "--model", "didirn_small", "--img-size", "12",
                 "--epochs", "1", "--output", str(proposer)]) == 0  # fmt: skip
    args = ["--checkpoint", ddpm_checkpoint, "--data", data, "--schedule", "flat-12", "--limit", 6]
    args += ["--proposer", proposer, "--early-stop", 0.2, "--early-stop-chunk", 3]
    assert run_eval(*args, "--proposer-top-k", 2, "--results-file", tmp_path / "h.json", "--save-probs",
                    tmp_path / "h.npy") == 0  # fmt: skip
    r = json.loads((tmp_path / "h.json").read_text())
    rows = [json.loads(line) for line in (tmp_path / "h.images.jsonl").read_text().splitlines()[1:]]
    for row in rows:
        scored = {c for stage in row["stage_means"] for c, v in enumerate(stage) if v is not None}
        assert len(scored) == 2 and row["prediction"] in scored and 2 * 3 <= row["nfe"] <= 2 * 12
    assert r["method"] == "hybrid" and r["nfe_per_image_max"] == 2 * 12 + 1
    assert r["nfe_per_image"] == pytest.approx(sum(row["nfe"] + 1 for row in rows) / 6)
    np.testing.assert_allclose(np.load(tmp_path / "h.npy").sum(1), 1.0, rtol=1e-5)
    assert run_eval(*args, "--proposer-top-k", 1, "--results-file", tmp_path / "x.json") == 2
    assert "--proposer-top-k must lie in 2..4 with --early-stop, got 1" in capsys.readouterr().err


def test_timestep_weights_fitted_then_used_rank_by_the_weighted_mean(tmp_path, npz_path, ddpm_checkpoint, capsys):
    """--fit-timestep-weights logs each image's per-t errors, fits and writes the weights; --timestep-weights then
    ranks the same images by mean_t w_t e_k(t) (the same shared noise, so the same errors)."""
    from diffcls.generative.weighting import weighted_scores

    data = f"npz:{npz_path}"
    base = ["--checkpoint", ddpm_checkpoint, "--data", data, "--schedule", "flat-6", "--limit", 8]
    weights_file = tmp_path / "w.json"
    assert run_eval(*base, "--fit-timestep-weights", weights_file, "--results-file", tmp_path / "fit.json") == 0
    fitted = json.loads(weights_file.read_text())
    assert len(fitted["weights"]) == 6 and fitted["temperature"] > 0 and fitted["num_images"] == 8
    rows = [json.loads(line) for line in (tmp_path / "fit.images.jsonl").read_text().splitlines()[1:]]
    errors = torch.tensor([r["errors"] for r in rows], dtype=torch.float64)  # [8, 4, 6]
    assert errors.shape == (8, 4, 6)
    assert run_eval(*base, "--timestep-weights", weights_file, "--results-file", tmp_path / "use.json") == 0
    used = [json.loads(line) for line in (tmp_path / "use.images.jsonl").read_text().splitlines()[1:]]
    expected = weighted_scores(errors, torch.tensor(fitted["weights"]))
    got = torch.tensor([r["stage_means"][0] for r in used], dtype=torch.float64)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-7)
    assert [r["prediction"] for r in used] == expected.argmin(1).tolist()
    r = json.loads((tmp_path / "use.json").read_text())
    assert r["temperature"] == pytest.approx(fitted["temperature"]) and r["timestep_weights"] == str(weights_file)
    assert run_eval(*base[:4], "--schedule", "flat-5", "--timestep-weights", weights_file,
                    "--results-file", tmp_path / "x.json") == 2  # fmt: skip
    assert "weighs 6 timesteps; use --schedule flat-6" in capsys.readouterr().err


def test_predict_with_a_ddpm_folder_gives_evals_decisions_and_probabilities(tmp_path, npz_path, ddpm_checkpoint,
                                                                            capsys):  # fmt: skip
    """diffcls predict on PNGs of the test images with a ddpm folder: the same shared noise as eval, so every
    image gets eval's survivor and probabilities (an adaptive schedule, where the two can differ); the text output
    names the survivor where it is not the most probable class."""
    import numpy as np
    from PIL import Image

    data = np.load(npz_path)
    paths = []
    for i, image in enumerate(data["x_test"][:8]):
        paths.append(str(tmp_path / f"{i}.png"))
        Image.fromarray(image).save(paths[-1])
    schedule = ["--n-samples", "2,4", "--to-keep", "2,1"]
    assert run_eval("--checkpoint", ddpm_checkpoint, "--data", f"npz:{npz_path}", *schedule, "--results-file",
                    tmp_path / "e.json", "--save-probs", tmp_path / "e.npy") == 0  # fmt: skip
    capsys.readouterr()
    rows = [json.loads(line) for line in (tmp_path / "e.images.jsonl").read_text().splitlines()[1:]]
    order = [row["index"] for row in rows]
    eval_probs = np.load(tmp_path / "e.npy")
    assert main(["predict", "--checkpoint", str(ddpm_checkpoint), *schedule, "--top-k", "4", "--json", *paths]) == 0
    predicted = json.loads(capsys.readouterr().out)
    for i, got in enumerate(predicted):
        row = rows[order.index(i)]
        assert got["prediction"]["index"] == row["prediction"]
        probs = np.zeros(4)
        for entry in got["predictions"]:
            probs[entry["index"]] = entry["probability"]
        np.testing.assert_allclose(probs, eval_probs[order.index(i)], atol=2e-6)
    assert main(["predict", "--checkpoint", str(ddpm_checkpoint), *schedule, *paths]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 8 and all(line.startswith(path + ": ") for line, path in zip(lines, paths))
    for line, got in zip(lines, predicted):
        assert ("(decision: " in line) == (got["prediction"]["index"] != got["predictions"][0]["index"])
