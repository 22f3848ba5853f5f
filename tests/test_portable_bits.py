"""benchmarks.portable_bits: BD-rate of one progression results file against another."""

from __future__ import annotations

import copy

import pytest

from benchmarks.portable_bits import compare, table


def results(scale: float) -> dict:
    """One clip's sweep and cut-stream points, every rate times ``scale``."""
    sweep = [{"bpp": scale * r, "psnr_rgb": q, "ms_ssim": q / 40} for r, q in ((0.01, 16), (0.04, 19), (0.08, 21))]
    points = [{"n_scales": n, "fill": fill, "bpp": scale * 0.002 * 2 ** n, "psnr_rgb": 10 + n,
               "ms_ssim": (10 + n) / 40} for n in (5, 6, 7) for fill in ("none", "sample")] + \
             [{"n_scales": 8, "fill": "none", "bpp": scale * 0.6, "psnr_rgb": 19, "ms_ssim": 19 / 40}]
    return {"clips": {"a__clip__x": {"sweep": sweep, "points": points}}}


def test_the_same_curves_at_ten_percent_more_rate_are_plus_ten_percent():
    rows = compare(results(1.0), results(1.1))
    assert len(rows) == 1
    for key in ("sweep_psnr_rgb", "sweep_ms_ssim", "cut_psnr_rgb", "cut_ms_ssim"):
        assert rows[0][key] == pytest.approx(10.0)
    assert "| mean of 1 | +10.00%" in table(rows)


def test_only_clips_in_both_files_count_and_the_cut_takes_the_named_fill():
    anchor, test = results(1.0), results(1.0)
    anchor["clips"]["other__clip__y"] = copy.deepcopy(anchor["clips"]["a__clip__x"])
    for p in test["clips"]["a__clip__x"]["points"]:
        if p["fill"] == "none" and p["n_scales"] < 8:
            p["bpp"] *= 2  # only the fill the comparison does not read
    rows = compare(anchor, test)
    assert [r["clip"] for r in rows] == ["a__clip__x"]
    assert rows[0]["cut_psnr_rgb"] == pytest.approx(0.0, abs=1e-9)


def test_cut_quality_at_equal_rate_reads_the_truncated_points_only():
    """Cut points gain 1 dB per doubling of the rate, so 10% more rate for the same quality is
    log2(1.1) dB less at equal rate; n = K (whose rate differs) stays out of it."""
    import math

    from benchmarks.portable_bits import cut_quality, cut_table

    test = results(1.1)
    test["clips"]["a__clip__x"]["points"][-1]["bpp"] = 100.0  # n = K: ignored
    got = cut_quality(results(1.0), test)
    assert got["rows"][0]["psnr_rgb"] == pytest.approx(-math.log2(1.1), rel=1e-6)
    assert sorted(got["vmaf"]) == [5, 6, 7]
    assert "| mean of 1 | -0.14 |" in cut_table(got)
