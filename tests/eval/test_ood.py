"""Out-of-distribution detection: the metrics by hand and against independent numpy, and ``diffcls eval
--ood-data`` read back against the probabilities it saves; bad OOD input as one-line errors."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from datafiles import write_image_folder
from diffcls.cli import main
from diffcls.inference.ood import ood_metrics, ood_scores


def test_ood_metrics_by_hand():
    m = ood_metrics(torch.tensor([0.1, 0.2, 0.3, 0.4]), torch.tensor([0.35, 0.5]))
    assert m["ood_auroc"] == pytest.approx(7 / 8)  # 7 of the 8 (OOD, ID) pairs are ordered right
    assert m["ood_aupr"] == pytest.approx(0.5 * 1 + 0.5 * 2 / 3)  # precision 1 at the first OOD, 2/3 at the second
    assert m["ood_fpr95"] == pytest.approx(0.5)  # the threshold accepting 95% of 4 ID images is 0.4


def numpy_ood(in_scores: np.ndarray, out_scores: np.ndarray) -> dict:
    """AUROC as the Mann-Whitney pair count (ties count half), AP as the mean precision at each OOD image (ties
    broken pessimistically never matter here: continuous scores), FPR at 95% TPR of the ID side."""
    pairs = (out_scores[:, None] > in_scores[None, :]).mean() + 0.5 * (out_scores[:, None] == in_scores[None, :]).mean()
    scores = np.concatenate([in_scores, out_scores])
    positive = np.concatenate([np.zeros(len(in_scores)), np.ones(len(out_scores))])
    order = np.argsort(-scores, kind="stable")
    hits = np.cumsum(positive[order])
    precision_at_hits = (hits / np.arange(1, len(scores) + 1))[positive[order] == 1]
    threshold = np.sort(in_scores)[int(np.ceil(0.95 * len(in_scores))) - 1]
    return {"ood_auroc": pairs, "ood_aupr": precision_at_hits.mean(), "ood_fpr95": (out_scores <= threshold).mean()}


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
        (["--ood-data", "noise", "--ood-score", "energy"], "unknown --ood-score 'energy'; choose from msp, entropy"),
        (["--ood-data", "noise", "--ood-limit", "0"], "--ood-limit must be >= 1, got 0"),
    ]
    for extra, message in cases:
        assert main([*common, *extra]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and message in err, err
    assert not results.exists()
