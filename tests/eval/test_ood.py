"""Out-of-distribution detection: the metrics by hand and against independent numpy, and ``diffcls eval
--ood-data`` read back against the probabilities it saves; bad OOD input as one-line errors."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from datafiles import write_image_folder
from diffcls.cli import main
from diffcls.didicm import SamplerConfig
from diffcls.didicm.samplers import cl_sample, cp_sample, trajectory_wander
from diffcls.inference.ood import ood_metrics, ood_scores
from diffcls.inference.predict import bind_image, sample_proba
from independent import numpy_ood


def test_ood_metrics_by_hand():
    m = ood_metrics(torch.tensor([0.1, 0.2, 0.3, 0.4]), torch.tensor([0.35, 0.5]))
    assert m["ood_auroc"] == pytest.approx(7 / 8)  # 7 of the 8 (OOD, ID) pairs are ordered right
    assert m["ood_aupr"] == pytest.approx(0.5 * 1 + 0.5 * 2 / 3)  # precision 1 at the first OOD, 2/3 at the second
    assert m["ood_fpr95"] == pytest.approx(0.5)  # the threshold accepting 95% of 4 ID images is 0.4


def test_ood_metrics_against_numpy_on_random_scores():
    rng = np.random.default_rng(0)
    inside, outside = rng.normal(0, 1, 301), rng.normal(0.8, 1.3, 157)
    ours = ood_metrics(torch.as_tensor(inside), torch.as_tensor(outside))
    for key, value in numpy_ood(inside, outside).items():
        assert ours[key] == pytest.approx(value, abs=1e-12), key


def test_scores_msp_and_entropy():
    probs = torch.tensor([[1.0, 0.0], [0.5, 0.5]])
    assert ood_scores(probs, "msp").tolist() == [0.0, 0.5]
    assert ood_scores(probs, "entropy").tolist() == pytest.approx([0.0, np.log(2)])


@pytest.fixture(scope="module")
def digits_model(tmp_path_factory):
    out = tmp_path_factory.mktemp("ood") / "std"
    args = ["train", "--data", "digits", "--method", "standard", "--model", "didirn_small", "--img-size", "16"]
    assert main([*args, "--epochs", "2", "--lr", "4e-3", "--fit", "pad", "--output", str(out)]) == 0
    return out


def test_eval_with_ood_data_agrees_with_the_saved_probabilities(digits_model, tmp_path, capsys):
    results, probs_file = tmp_path / "r.json", tmp_path / "p.npy"
    common = ["eval", "--checkpoint", str(digits_model), "--data", "digits", "--results-file", str(results)]
    assert main([*common, "--save-probs", str(probs_file), "--ood-data", "noise", "--ood-score", "entropy"]) == 0
    r = json.loads(results.read_text())
    inside, outside = np.load(probs_file).astype(float), np.load(tmp_path / "p.ood.npy").astype(float)
    assert r["ood_score"] == "entropy" and r["ood_data"] == "noise" and r["ood_num_samples"] == len(inside)

    def entropy(p):
        return -(p * np.log(np.maximum(p, 1e-300))).sum(1)

    for key, value in numpy_ood(entropy(inside), entropy(outside)).items():
        assert r[key] == pytest.approx(value, abs=1e-6), key
    for key, value in numpy_ood(1 - inside.max(1), 1 - outside.max(1)).items():
        assert r["ood_by_score"]["msp"][key] == pytest.approx(value, abs=1e-6), key
    assert r["ood_auroc"] > 0.5  # uniform noise is easy to tell from digits, even for a 2-epoch model
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["ood_auroc"] == r["ood_auroc"]


def test_bad_ood_input_is_one_line(digits_model, tmp_path, capsys):
    from datafiles import blob_images

    results = tmp_path / "r.json"
    common = ["eval", "--checkpoint", str(digits_model), "--data", "digits", "--results-file", str(results)]
    rgb = write_image_folder(tmp_path / "rgb")
    x, y = blob_images(3, 2, 20, 1)
    np.savez(tmp_path / "big.npz", x_train=x[..., 0], y_train=y, x_test=x[..., 0], y_test=y)
    cases = [
        (["--ood-data", f"folder:{rgb}"], "has 3-channel images but the in-distribution data digits has 1"),
        (["--ood-data", f"npz:{tmp_path / 'big.npz'}"], "has 20×20 images, larger than the model's 16-px input"),
        (
            ["--ood-data", "noise", "--ood-score", "wander"],
            "--ood-score 'wander' is not a score of standard; choose from msp, entropy, energy",
        ),
        (["--ood-data", "noise", "--ood-limit", "0"], "--ood-limit must be >= 1, got 0"),
        (["--noise-draws", "2"], "--noise-draws applies to Diffusion Classifier Zero"),
    ]
    for extra, message in cases:
        assert main([*common, *extra]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and message in err, err
    assert not results.exists()


def test_trajectory_wander_by_hand():
    """Straight to an answer: 0. Mass to class 1 and then to class 0: path 0.5 + 1.0, distance covered 0.5."""
    straight = [torch.tensor([[0.5, 0.5]]), torch.tensor([[0.2, 0.8]]), torch.tensor([[0.0, 1.0]])]
    detour = [torch.tensor([[0.5, 0.5]]), torch.tensor([[0.0, 1.0]]), torch.tensor([[1.0, 0.0]])]
    assert trajectory_wander(straight).tolist() == pytest.approx([0.0])
    assert trajectory_wander(detour).tolist() == pytest.approx([1.0])


def numpy_wander(trajectory: list[torch.Tensor]) -> np.ndarray:
    path = np.stack([t.double().numpy() for t in trajectory])
    steps = sum(0.5 * np.abs(path[i + 1] - path[i]).sum(-1) for i in range(len(path) - 1))
    return steps - 0.5 * np.abs(path[-1] - path[0]).sum(-1)


@pytest.mark.parametrize("config", [SamplerConfig("cp", steps=4), SamplerConfig("cl", steps=3, chains=5)])
def test_didicm_readout_returns_the_wander_of_its_own_trajectory(config):
    """sample_proba's native score is the wander of the trajectory the sampler walked (the same draws), for CP and
    for CL (whose batch is split into parts)."""
    from diffcls.models.factory import create_timm_model

    torch.manual_seed(0)
    model = create_timm_model("didirn_small", 4, 3, conditional=True).eval()
    images = torch.randn(6, 3, 16, 16)
    probs, scores = sample_proba(model, images, config, torch.Generator().manual_seed(3), native_scores=True)
    assert set(scores) == {"wander"} and scores["wander"].shape == (6,)
    generator, expected = torch.Generator().manual_seed(3), []
    for part in images.split(max(1, 6 // config.spec.rows_per_image(config))):
        trajectory = []
        fn = cp_sample if config.sampler == "cp" else cl_sample
        fn(
            bind_image(model, part),
            len(part),
            4,
            generator=generator,
            trajectory=trajectory,
            **config.spec.kwargs(config),
        )
        expected.append(numpy_wander(trajectory))
    assert scores["wander"].numpy() == pytest.approx(np.concatenate(expected), abs=1e-6)
    assert torch.equal(probs, sample_proba(model, images, config, torch.Generator().manual_seed(3)))


def test_standard_energy_score_in_eval(digits_model, tmp_path):
    """--ood-score energy: the OOD metrics of -logsumexp of the logits, computed here from the network itself."""
    from diffcls.data import ImageDataset, ImageTransform, TransformConfig, load_source
    from diffcls.eval.evaluate import ood_split, select_split
    from diffcls.methods import load_classifier

    results = tmp_path / "r.json"
    args = ["--checkpoint", str(digits_model), "--data", "digits", "--results-file", str(results), "--limit", "100"]
    assert main(["eval", *args, "--ood-data", "noise", "--ood-score", "energy"]) == 0
    r = json.loads(results.read_text())
    model, config = load_classifier(digits_model)
    transform = TransformConfig.from_dict(config["transform"])
    source = load_source("digits")

    def energy(split):
        images = torch.stack([image for image, _ in ImageDataset(split, ImageTransform(transform))])
        with torch.no_grad():
            return -torch.logsumexp(model(images).double(), dim=1).numpy()

    inside = energy(select_split(source, "test", 100, train_limit=None, val_split=config["train"]["val_split"]))
    outside = energy(ood_split("noise", source, 100, transform))
    assert r["ood_score"] == "energy" and set(r["ood_by_score"]) == {"msp", "entropy", "energy"}
    for key, value in numpy_ood(inside, outside).items():
        assert r[key] == pytest.approx(value, abs=1e-6), key
