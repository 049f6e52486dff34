"""Report statistics on hand-made rows: per-seed means, paired gains and the seed-spread rule."""

from __future__ import annotations

import pytest

from diffcls.bench import summary_table
from diffcls.bench.stats import Series, condition_groups, gain, mean_std, per_seed
from diffcls.bench.tables import plateau_gain

TWIN = Series("standard", "softmax", "standard twin")
DIDICM = Series("didicm", "CP-8", "DiDiCM CP-8")


def row(contender, readout, seed, top1, kind="clean", **kw):
    default_condition = f"{kw['corruption']}/{kw['severity']}" if kind == "corruption" else kind
    base = {
        "contender": contender,
        "readout": readout,
        "seed": seed,
        "top1": top1,
        "kind": kind,
        "condition": kw.pop("condition", default_condition),
        "corruption": None,
        "family": None,
        "severity": 0,
        "data_ratio": 1.0,
        "low_res": None,
        "sampler": "softmax" if readout == "softmax" else "cp",
        "cp_update": None if readout == "softmax" else "euler",
    }
    return {**base, **kw}


def rows_for(twin_acc, didicm_acc, **kw):
    return [row("standard", "softmax", s, a, **kw) for s, a in enumerate(twin_acc)] + [
        row("didicm", "CP-8", s, a, **kw) for s, a in enumerate(didicm_acc)
    ]


def test_gain_is_paired_by_seed_and_flags_the_spread():
    rows = rows_for([0.90, 0.91, 0.92], [0.95, 0.97, 0.96])
    stat, beyond = gain(rows, TWIN, DIDICM, lambda r: True)
    assert stat[0] == pytest.approx(0.05) and stat[2] == 3 and beyond == "yes"
    overlapping = rows_for([0.90, 0.95, 0.92], [0.93, 0.91, 0.96])
    assert gain(overlapping, TWIN, DIDICM, lambda r: True)[1] == "no"
    assert gain(rows_for([0.9], [0.95]), TWIN, DIDICM, lambda r: True)[1] == "n/a"
    assert gain(rows_for([0.90, 0.91], [0.95, 0.97]), TWIN, DIDICM, lambda r: True)[1] == "n/a"  # < 3 seeds


def test_seeds_that_miss_conditions_do_not_enter_a_cell():
    # Seed 0 met fog and snow; seed 1 only fog (e.g. an NFE sweep on one hard condition): averaging seed 1 over
    # fog alone would mix two different means.
    rows = [
        row("standard", "softmax", 0, 0.8, kind="corruption", corruption="fog", family="weather", severity=5),
        row("standard", "softmax", 0, 0.4, kind="corruption", corruption="snow", family="weather", severity=5),
        row("standard", "softmax", 1, 0.9, kind="corruption", corruption="fog", family="weather", severity=5),
    ]
    assert per_seed(rows, TWIN, lambda r: r["severity"] == 5) == pytest.approx({0: 0.6})


def test_cells_average_conditions_within_a_seed_before_across_seeds():
    rows = [
        row("standard", "softmax", 0, 0.8, kind="corruption", corruption="fog", family="weather", severity=3),
        row("standard", "softmax", 0, 0.6, kind="corruption", corruption="snow", family="weather", severity=3),
        row("standard", "softmax", 1, 0.9, kind="corruption", corruption="fog", family="weather", severity=3),
        row("standard", "softmax", 1, 0.5, kind="corruption", corruption="snow", family="weather", severity=3),
    ]
    seeds = per_seed(rows, TWIN, lambda r: r["severity"] == 3)
    assert seeds == pytest.approx({0: 0.7, 1: 0.7})
    assert mean_std(seeds.values())[:2] == pytest.approx((0.7, 0.0))
    labels = [label for label, _ in condition_groups(rows)["family"]]
    assert labels == ["weather, severity 3", "weather, mean"]


def test_summary_table_lists_conditions_with_the_gain():
    rows = rows_for([0.9, 0.9, 0.9], [0.95, 0.96, 0.94]) + rows_for(
        [0.5, 0.6, 0.55], [0.7, 0.8, 0.75], kind="low_res", low_res=8, condition="low_res/8"
    )
    text = summary_table(rows)
    lines = text.splitlines()
    assert "Δ DiDiCM CP-8 − twin" in lines[0]
    assert lines[1].startswith("clean") and "+0.050 ± 0.010" in lines[1] and "yes" in lines[1]
    assert lines[2].startswith("train+test at 8 px") and "+0.200 ± 0.000" in lines[2] and "yes" in lines[2]


def test_summary_table_names_both_protocols_of_each_difficulty():
    rows = (
        rows_for([0.9] * 3, [0.95] * 3)
        + rows_for([0.5] * 3, [0.6] * 3, kind="low_res_shift", low_res=8, condition="low_res_shift/8")
        + rows_for([0.7] * 3, [0.6] * 3, kind="data_ratio", data_ratio=0.05, condition="data_ratio/0.05")
        + rows_for([0.8] * 3, [0.85] * 3, kind="data_ratio_eq", data_ratio=0.05, condition="data_ratio_eq/0.05")
    )
    firsts = [line.split("  ")[0] for line in summary_table(rows).splitlines()[1:]]
    assert firsts == ["clean", "data 5%", "data (equal steps) 5%", "test-only view 8 px"]


def test_plateau_gain_compares_the_last_quarter_with_the_best_before():
    assert plateau_gain([0.5, 0.9, 0.95, 0.96]) == pytest.approx(0.01)  # still climbing
    assert plateau_gain([0.5, 0.9, 0.95, 0.96, 0.96, 0.961, 0.959, 0.962]) == pytest.approx(0.001)  # flat
    assert plateau_gain([0.5, 0.9, 0.95, 0.96, 0.96, 0.95, 0.94, 0.93]) < 0  # a best epoch earlier than the tail
    assert plateau_gain([0.5, 0.9, 0.95]) is None


def _rows_with_outcomes(base: str, new: str, seed: int = 0, condition: str = "clean") -> list[dict]:
    return [
        {"contender": c, "readout": "r", "seed": seed, "condition": condition, "kind": "clean", "correct": outcomes}
        for c, outcomes in (("a", base), ("b", new))
    ]


def test_bootstrap_interval_of_a_gain():
    """A gain that is the same on every image has a zero-width interval; a gain of +0.1 on 400 images (40 images
    better, none worse) has the paired bootstrap's interval around 0.1 of width ≈ 2 × 1.96 × sd / √n."""
    from diffcls.bench.stats import Series, bootstrap_gain

    a, b = Series("a", "r", "a"), Series("b", "r", "b")
    always = _rows_with_outcomes("0" * 50, "1" * 50)
    assert bootstrap_gain(always, a, b, lambda r: True) == (1.0, 1.0)
    rows = _rows_with_outcomes("0" * 40 + "1" * 360, "1" * 400)
    low, high = bootstrap_gain(rows, a, b, lambda r: True)
    half_width = 1.96 * (0.1 * 0.9) ** 0.5 / 400**0.5
    assert low < 0.1 < high and abs((high - low) / 2 - half_width) < 0.25 * half_width
    # Seeds average: a second seed with no gain halves the gain and narrows the interval by √2.
    rows += _rows_with_outcomes("1" * 400, "1" * 400, seed=1)
    low2, high2 = bootstrap_gain(rows, a, b, lambda r: True)
    assert low2 < 0.05 < high2 and (high2 - low2) < (high - low) * 0.6
    # A loss: the new model is wrong on 30 images the base gets right and right on 10 it gets wrong (Δ = −0.05);
    # the interval lies around −0.05, and swapping the models mirrors it exactly (same resamples).
    base, worse = "1" * 30 + "0" * 10 + "1" * 360, "0" * 30 + "1" * 10 + "1" * 360
    low, high = bootstrap_gain(_rows_with_outcomes(base, worse), a, b, lambda r: True)
    assert -0.1 < low < -0.05 < high < 0
    assert bootstrap_gain(_rows_with_outcomes(worse, base), a, b, lambda r: True) == pytest.approx((-high, -low))
    # Rows without per-image outcomes (older versions) give no interval.
    assert bootstrap_gain([{**r, "correct": None} for r in rows], a, b, lambda r: True) is None


def test_relative_corruption_error_by_hand():
    """Two corruptions at two severities: CE_c = Σ_s E / Σ_s E_plain, averaged over corruptions and seeds."""
    from diffcls.bench.stats import Series, relative_corruption_error

    def row(contender, corruption, severity, top1, seed=0):
        condition = f"{corruption}/{severity}"
        return {"contender": contender, "readout": "softmax", "seed": seed, "kind": "corruption",
                "corruption": corruption, "severity": severity, "condition": condition, "top1": top1}  # fmt: skip

    rows = [
        row("plain", "fog", 1, 0.8), row("plain", "fog", 5, 0.4),
        row("plain", "snow", 1, 0.9), row("plain", "snow", 5, 0.5),
        row("twin", "fog", 1, 0.9), row("twin", "fog", 5, 0.7), row("twin", "snow", 1, 0.9),
        row("twin", "snow", 5, 0.8), row("twin", "snow", 5, 0.6, seed=1),
    ]  # fmt: skip
    twin, plain = Series("twin", "softmax", "twin"), Series("plain", "softmax", "plain")
    fog = (0.1 + 0.3) / (0.2 + 0.6)
    snow = (0.1 + 0.3) / (0.1 + 0.5)  # severity 5: the two seeds' errors 0.2 and 0.4 averaged
    assert relative_corruption_error(rows, twin, plain) == pytest.approx((fog + snow) / 2)
    assert relative_corruption_error(rows, plain, plain) == pytest.approx(1.0)
