"""Corruptions: both parameter sets, agreement with imagecorruptions, determinism, small images, splits and caching."""

from __future__ import annotations

import os
from pathlib import Path

import imagecorruptions
import numpy as np
import pytest
from PIL import Image

from diffcls.data import corruptions as C
from diffcls.errors import DiffclsError


def textured_image(h: int = 32, w: int = 32, seed: int = 0) -> np.ndarray:
    """uint8[h, w, 3]: colour gradients, two bright blobs and mild noise, so every corruption has something to do."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:h, :w] / max(h, w)
    img = np.stack([200 * xx, 200 * yy, 120 * (1 - xx) + 40], axis=-1)
    for cy, cx, r in ((0.3, 0.6, 0.15), (0.7, 0.3, 0.2)):
        img += 80 * (((yy - cy) ** 2 + (xx - cx) ** 2) < r**2)[..., None]
    img += rng.normal(0, 12, img.shape)
    return np.clip(img, 0, 255).astype(np.uint8)


IMG = textured_image()


def mean_abs_diff(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a.astype(np.float64) - b).mean())


# ------------------------------------------------------------------------------------------- names and rules


def test_names_families_and_parameter_table():
    assert C.CORRUPTION_NAMES == tuple(imagecorruptions.get_corruption_names("all"))
    assert set(C.CORRUPTION_FAMILIES) == set(C.CORRUPTION_NAMES)
    assert set(C.CORRUPTION_FAMILIES.values()) == set(C.FAMILY_NAMES)
    assert [C.CORRUPTION_FAMILIES[n] for n in ("speckle_noise", "gaussian_blur", "spatter", "saturate")] == [
        "noise",
        "blur",
        "weather",
        "digital",
    ]
    assert {n for n, f in C.CORRUPTION_FAMILIES.items() if f == "weather"} == {
        "snow",
        "frost",
        "fog",
        "brightness",
        "spatter",
    }
    assert set(C.CIFAR_PARAMS) == set(C.CORRUPTION_NAMES)
    assert all(len(levels) == 5 for levels in C.CIFAR_PARAMS.values())


def test_registry_is_the_source_of_the_name_and_family_tables():
    assert C.CORRUPTION_NAMES == tuple(C.CORRUPTIONS)
    assert C.FAMILY_NAMES == ("noise", "blur", "weather", "digital")
    for name, corruption in C.CORRUPTIONS.items():
        assert corruption.name == name and corruption.family in C.FAMILY_NAMES
        assert C.CORRUPTION_FAMILIES[name] == corruption.family and C.CIFAR_PARAMS[name] == corruption.cifar_params
    # the family table is grouped by family, as before the registry
    assert list(C.CORRUPTION_FAMILIES.values()) == sorted(C.CORRUPTION_FAMILIES.values(), key=C.FAMILY_NAMES.index)


def test_default_set_is_cifar_up_to_64_px():
    assert [C.default_corruption_set(s) for s in (28, 32, 64, 65, 224)] == ["cifar"] * 3 + ["imagenet"] * 2


def test_corruption_seed_is_stable_and_distinct():
    seed = C.corruption_seed("cifar10-test", "fog", 3, 7)
    assert seed == 482039504  # a fixed value: seeds must not change between runs or Python processes
    assert 0 <= seed < 2**32
    others = {C.corruption_seed("cifar10-test", "fog", 3, i) for i in range(8)}
    others |= {C.corruption_seed("other", "fog", 3, 7), C.corruption_seed("cifar10-test", "fog", 4, 7)}
    assert len(others) == 10


@pytest.mark.parametrize(
    ("name", "severity", "corruption_set", "hint"),
    [
        ("fogg", 3, "cifar", "gaussian_noise"),
        ("fog", 3, "mnist", "imagenet"),
        ("fog", 0, "cifar", "1..5"),
        ("fog", 6, "imagenet", "1..5"),
        ("fog", 2.0, "cifar", "1..5"),
        ("fog", True, "cifar", "1..5"),
    ],
)
def test_bad_choices_raise_helpful_errors(name, severity, corruption_set, hint):
    with pytest.raises(DiffclsError, match=hint) as info:
        C.check_corruption(name, severity, corruption_set)
    assert "\n" not in str(info.value)
    with pytest.raises(DiffclsError):
        C.corrupt_image(IMG, name, severity, corruption_set, 0)
    with pytest.raises(DiffclsError):
        C.corrupt_images(IMG[None], name, severity, corruption_set=corruption_set)


def test_bad_images_raise():
    with pytest.raises(DiffclsError, match="uint8"):
        C.corrupt_image(IMG.astype(np.float32), "fog", 1, "cifar", 0)
    with pytest.raises(DiffclsError, match="shape"):
        C.corrupt_image(np.zeros((32, 32, 4), np.uint8), "fog", 1, "cifar", 0)


# -------------------------------------------------------------------------------------------- single images


@pytest.mark.parametrize("corruption_set", C.CORRUPTION_SETS)
@pytest.mark.parametrize("name", C.CORRUPTION_NAMES)
def test_every_corruption_runs_and_changes_the_image(name, corruption_set):
    out = C.corrupt_image(IMG, name, 5, corruption_set, seed=11)
    assert out.dtype == np.uint8 and out.shape == IMG.shape
    assert mean_abs_diff(out, IMG) > 2


@pytest.mark.parametrize("name", ["gaussian_noise", "speckle_noise", "contrast", "gaussian_blur", "pixelate"])
def test_cifar_severities_grow_in_effect(name):
    effect = [mean_abs_diff(C.corrupt_image(IMG, name, s, "cifar", seed=3), IMG) for s in range(1, 6)]
    assert all(a < b for a, b in zip(effect, effect[1:])), effect


@pytest.mark.parametrize("name", ["gaussian_noise", "defocus_blur", "snow", "fog", "contrast"])
def test_cifar_is_milder_than_imagenet_at_equal_severity(name):
    cifar, imagenet = (mean_abs_diff(C.corrupt_image(IMG, name, 3, s, seed=5), IMG) for s in ("cifar", "imagenet"))
    assert cifar < imagenet


# CIFAR-10-C and ImageNet-C share these parameters: (name, cifar severity, imagenet severity, shared value).
SHARED_PARAMETERS = [
    ("gaussian_noise", 3, 1, 0.08),
    ("impulse_noise", 3, 1, 0.03),
    ("speckle_noise", 5, 2, 0.2),
    ("contrast", 3, 1, 0.4),
    ("contrast", 4, 2, 0.3),
    ("brightness", 2, 1, 0.1),
    ("brightness", 4, 2, 0.2),
    ("brightness", 5, 3, 0.3),
    ("gaussian_blur", 5, 1, 1),
    ("saturate", 1, 1, (0.3, 0)),
    ("saturate", 2, 2, (0.1, 0)),
]


@pytest.mark.parametrize(("name", "cifar_severity", "imagenet_severity", "value"), SHARED_PARAMETERS)
def test_shared_parameters_give_the_imagecorruptions_result(name, cifar_severity, imagenet_severity, value):
    assert C.CIFAR_PARAMS[name][cifar_severity - 1] == value
    seed = 1234
    ours = C.corrupt_image(IMG, name, cifar_severity, "cifar", seed)
    np.random.seed(seed)
    # imagecorruptions' impulse noise draws from the Generator it is given; hand it the seeded global stream
    kwargs = {"seed": np.random.Generator(np.random.get_bit_generator())} if name == "impulse_noise" else {}
    theirs = imagecorruptions.corrupt(IMG, severity=imagenet_severity, corruption_name=name, **kwargs)
    np.testing.assert_array_equal(ours, theirs)
    np.testing.assert_array_equal(C.corrupt_image(IMG, name, imagenet_severity, "imagenet", seed), theirs)
    assert mean_abs_diff(ours, IMG) > 0.5


def test_same_seed_same_image_other_seed_other_image():
    for corruption_set in C.CORRUPTION_SETS:
        for name in (
            "gaussian_noise",
            "impulse_noise",
            "glass_blur",
            "snow",
            "frost",
            "fog",
            "spatter",
            "elastic_transform",
        ):
            a = C.corrupt_image(IMG, name, 4, corruption_set, seed=21)
            np.testing.assert_array_equal(a, C.corrupt_image(IMG, name, 4, corruption_set, seed=21))
            assert (a != C.corrupt_image(IMG, name, 4, corruption_set, seed=22)).any(), (name, corruption_set)


def test_imagenet_set_leaves_the_global_rng_alone():
    np.random.seed(0)
    expected = np.random.rand()
    np.random.seed(0)
    C.corrupt_image(IMG, "gaussian_noise", 2, "imagenet", seed=99)
    assert np.random.rand() == expected


@pytest.mark.parametrize("corruption_set", C.CORRUPTION_SETS)
def test_small_grayscale_images_keep_their_shape(corruption_set):
    gray = textured_image(28, 28)[..., :1]
    for name in ("gaussian_noise", "zoom_blur", "frost", "glass_blur"):
        out = C.corrupt_image(gray, name, 5, corruption_set, seed=4)
        assert out.shape == (28, 28, 1) and out.dtype == np.uint8
        assert mean_abs_diff(out, gray) > 0.5
    flat = C.corrupt_image(gray[..., 0], "contrast", 2, corruption_set, seed=4)
    assert flat.shape == (28, 28)


def test_small_image_round_trip_is_faithful():
    # a smooth gradient survives the bicubic 28 -> 32 -> 28 round trip, so contrast must match its formula closely
    ramp = np.broadcast_to(np.linspace(20, 230, 28)[None, :, None], (28, 28, 1)).astype(np.uint8)
    out = C.corrupt_image(ramp, "contrast", 1, "cifar", seed=0)  # factor 0.75 around the mean
    mean = ramp.mean()
    expected = (ramp - mean) * 0.75 + mean
    assert np.abs(out - expected).max() <= 2


def test_non_square_images():
    img = textured_image(40, 48)
    for name in C.CORRUPTION_NAMES:
        out = C.corrupt_image(img, name, 5, "cifar", seed=1)
        assert out.shape == img.shape, name


# ------------------------------------------------------------------------------------------------ whole splits


SPLIT = np.stack([textured_image(seed=i) for i in range(5)] + [textured_image(seed=0)])  # last = first image


def test_corrupt_images_uses_one_seed_per_index():
    out = C.corrupt_images(SPLIT, "gaussian_noise", 3, corruption_set="cifar", progress=False, dataset_key="k")
    assert out.shape == SPLIT.shape and out.dtype == np.uint8
    for i in (0, 3):
        np.testing.assert_array_equal(
            out[i],
            C.corrupt_image(SPLIT[i], "gaussian_noise", 3, "cifar", C.corruption_seed("k", "gaussian_noise", 3, i)),
        )
    assert (out[0] != out[5]).any()  # same clean image, other index: other noise


def test_parallel_equals_serial():
    kwargs = dict(corruption_set="cifar", progress=False)
    serial = C.corrupt_images(SPLIT, "spatter", 2, workers=0, **kwargs)
    np.testing.assert_array_equal(serial, C.corrupt_images(SPLIT, "spatter", 2, workers=2, **kwargs))


def test_cache_is_written_atomically_and_reused(tmp_path, monkeypatch):
    first = C.corrupt_images(SPLIT, "fog", 4, corruption_set="cifar", cache_dir=tmp_path, progress=False)
    key = C.dataset_fingerprint(SPLIT)
    entry = tmp_path / f"v{C.CACHE_VERSION}" / key / "cifar" / "fog-4.npy"
    assert entry.is_file() and os.listdir(entry.parent) == ["fog-4.npy"]  # no temporary files left behind
    calls = []
    monkeypatch.setattr(C, "corrupt_image", lambda *a, **k: calls.append(a) or a[0])
    again = C.corrupt_images(SPLIT, "fog", 4, corruption_set="cifar", cache_dir=tmp_path, progress=False)
    assert calls == []
    np.testing.assert_array_equal(again, first)
    C.corrupt_images(SPLIT, "fog", 5, corruption_set="cifar", cache_dir=tmp_path, progress=False)
    assert len(calls) == len(SPLIT)  # another severity is another entry


def test_cache_entry_of_other_shape_is_refused(tmp_path):
    C.corrupt_images(SPLIT, "contrast", 1, corruption_set="cifar", cache_dir=tmp_path, dataset_key="d", progress=False)
    with pytest.raises(DiffclsError, match="reused"):
        C.corrupt_images(SPLIT[:2], "contrast", 1, corruption_set="cifar", cache_dir=tmp_path, dataset_key="d")


def test_file_split_gives_cached_pngs(tmp_path, monkeypatch):
    paths = []
    for i, size in enumerate(((32, 32), (24, 20), (40, 36))):
        path = tmp_path / "src" / f"img{i}.png"
        path.parent.mkdir(exist_ok=True)
        Image.fromarray(textured_image(*size, seed=i)).save(path)
        paths.append(str(path))
    cache = tmp_path / "cache"
    out = C.corrupt_images(
        paths,
        "gaussian_noise",
        5,
        corruption_set="cifar",
        cache_dir=cache,
        progress=False,
        workers=2,
        dataset_key="files",
    )
    folder = cache / f"v{C.CACHE_VERSION}" / "files" / "cifar" / "gaussian_noise-5"
    assert out == [str(folder / f"{i:06d}.png") for i in range(3)]
    assert sorted(os.listdir(folder.parent)) == ["gaussian_noise-5"]  # the temporary folder was renamed
    for path, size in zip(out, ((32, 32), (24, 20), (40, 36))):
        back = np.asarray(Image.open(path))
        assert back.shape == (*size, 3) and back.dtype == np.uint8
    expected = C.corrupt_image(
        textured_image(32, 32, seed=0), "gaussian_noise", 5, "cifar", C.corruption_seed("files", "gaussian_noise", 5, 0)
    )
    np.testing.assert_array_equal(np.asarray(Image.open(out[0])), expected)
    monkeypatch.setattr(C, "corrupt_image", lambda *a, **k: pytest.fail("recomputed a cached split"))
    assert (
        C.corrupt_images(paths, "gaussian_noise", 5, corruption_set="cifar", cache_dir=cache, dataset_key="files")
        == out
    )


def test_fingerprint_follows_content(tmp_path):
    other = SPLIT.copy()
    other[0, 0, 0, 0] ^= 1
    prints = {C.dataset_fingerprint(SPLIT), C.dataset_fingerprint(other), C.dataset_fingerprint(SPLIT[:, :16])}
    assert len(prints) == 3 and C.dataset_fingerprint(SPLIT.copy()) == C.dataset_fingerprint(SPLIT)
    path = Path(tmp_path / "a.png")
    Image.fromarray(IMG).save(path)
    before = C.dataset_fingerprint([str(path)])
    Image.fromarray(IMG[:16]).save(path)
    assert C.dataset_fingerprint([str(path)]) != before
    with pytest.raises(DiffclsError, match="missing"):
        C.dataset_fingerprint([str(tmp_path / "missing.png")])
