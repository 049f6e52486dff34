"""Linear probe on the frozen encoder's r (comparison row: how linearly separable is what pretraining learned).

Features r float[N, d_r] are standardised with the training set's mean and std, then a multinomial logistic
regression (scikit-learn, L-BFGS, L2 penalty ``C``) is fitted on the labelled training images.
"""

from __future__ import annotations

import numpy as np
import torch
from sklearn.linear_model import LogisticRegression
from torch.utils.data import Dataset

from diffcls.data import make_loader

from .codec import Codec
from .conditions import EncoderCondition
from .dc_zero import classification_scores

__all__ = ["encode_dataset", "representations", "linear_probe", "representation_statistics"]


@torch.no_grad()
def encode_dataset(
    codec: Codec, dataset: Dataset, batch_size: int = 128, device: str | torch.device = "cpu"
) -> tuple[torch.Tensor, torch.Tensor]:
    """All images of ``dataset`` through the codec: (z0 float[N, C, H, W], labels int64[N]), on ``device``."""
    codec = codec.to(device)
    latents, labels = [], []
    for images, y in make_loader(dataset, batch_size, shuffle=False):
        latents.append(codec.encode(images.to(device)))
        labels.append(y)
    return torch.cat(latents), torch.cat(labels).to(device)


@torch.no_grad()
def representations(encoder: EncoderCondition, z0: torch.Tensor, batch_size: int = 256) -> torch.Tensor:
    """r = encoder(z0) without dropout: float[N, d_r]."""
    was_training = encoder.training
    encoder.eval()
    r = torch.cat([encoder.represent(z0[i : i + batch_size]) for i in range(0, len(z0), batch_size)])
    encoder.train(was_training)
    return r


def linear_probe(
    train_features: torch.Tensor,
    train_labels: torch.Tensor,
    test_features: torch.Tensor,
    test_labels: torch.Tensor,
    num_classes: int,
    c: float = 1.0,
    max_iter: int = 1000,
) -> dict:
    """Fit on (float[N, D], int64[N]), score on the test pair: ``accuracy``, ``f1_macro`` (and ``f1_binary`` when
    K == 2), plus ``probs`` float32[M, K] for the test images."""
    x_train, x_test = train_features.double().cpu().numpy(), test_features.double().cpu().numpy()
    mean, std = x_train.mean(0), x_train.std(0) + 1e-8
    clf = LogisticRegression(C=c, max_iter=max_iter)
    clf.fit((x_train - mean) / std, train_labels.cpu().numpy())
    proba = clf.predict_proba((x_test - mean) / std)
    probs = np.zeros((len(x_test), num_classes))
    probs[:, clf.classes_] = proba  # classes missing from the training labels get probability 0
    probs_t = torch.from_numpy(probs).float()
    return {**classification_scores(probs_t.argmax(1), test_labels, num_classes), "probs": probs_t}


def representation_statistics(r: torch.Tensor, labels: torch.Tensor, num_classes: int) -> dict:
    """How much of the image r float[N, d] carries, in numbers that need no classifier.

    * ``norm``: mean |r|; ``spread``: the per-dimension standard deviation across images, averaged over dimensions
      (a constant r has 0);
    * ``class_mean_distance_min`` / ``_mean``: Euclidean distances between the K class means of r;
      ``random_code_distance``: sqrt(2 d), the typical distance between two N(0, I_d) codes (what tuning from
      random codes starts with);
    * ``between_within``: the variance of the class means around the overall mean over the mean within-class
      variance (summed over dimensions; 0 when r ignores the class).
    """
    r, labels = r.double().cpu(), labels.long().cpu()
    present = [c for c in range(num_classes) if (labels == c).any()]
    means = torch.stack([r[labels == c].mean(0) for c in present])
    distances = torch.cdist(means, means)[torch.triu_indices(len(present), len(present), 1).unbind()]
    within = torch.stack([r[labels == c].var(0, unbiased=False).sum() for c in present]).mean()
    between = (means - r.mean(0)).pow(2).sum(1).mean()
    return {
        "norm": r.norm(dim=1).mean().item(),
        "spread": r.std(0).mean().item(),
        "class_mean_distance_min": distances.min().item() if len(distances) else float("nan"),
        "class_mean_distance_mean": distances.mean().item() if len(distances) else float("nan"),
        "random_code_distance": (2 * r.shape[1]) ** 0.5,
        "between_within": (between / within.clamp_min(1e-30)).item(),
    }
