"""The benchmark suite: BD-rate, results schema, resumability, baselines, metrics, perceptual loading."""

from __future__ import annotations

import copy
import json
import math
from pathlib import Path

import numpy as np
import pytest

from progvc.bench import bdrate, metrics, results
from progvc.bench.bdrate import BDRateError, bd_quality, bd_rate
from progvc.runtime.errors import ConfigError, WeightsError

from .helpers import smooth_clip

RATES = [0.05, 0.1, 0.2, 0.4]
PSNRS = [28.0, 31.0, 33.5, 35.0]


def _clip(t: int = 2, h: int = 64, w: int = 96) -> np.ndarray:
    """Smooth moving pattern, (T,H,W,3) uint8: compressible like natural video, not like noise."""
    yy, xx = np.mgrid[:h, :w].astype(np.float32)
    frames = [np.stack([128 + 100 * np.sin((xx + 2 * i) / 7) * np.cos(yy / 9),
                        128 + 90 * np.cos((xx - yy + 3 * i) / 11),
                        128 + 60 * np.sin(xx * yy / 400 + i / 3)], -1) for i in range(t)]
    return np.clip(frames, 0, 255).astype(np.uint8)


# -- BD-rate -----------------------------------------------------------------------------------
def test_bd_rate_twice_the_rate_is_plus_100_percent():
    assert bd_rate(RATES, PSNRS, [2 * r for r in RATES], PSNRS) == pytest.approx(100.0, abs=1e-9)
    assert bd_rate(RATES, PSNRS, [r / 2 for r in RATES], PSNRS) == pytest.approx(-50.0, abs=1e-9)


def test_bd_identical_curves_are_zero_and_bd_quality_measures_a_shift():
    assert bd_rate(RATES, PSNRS, RATES, PSNRS) == pytest.approx(0.0, abs=1e-12)
    assert bd_quality(RATES, PSNRS, RATES, PSNRS) == pytest.approx(0.0, abs=1e-12)
    assert bd_quality(RATES, PSNRS, RATES, [q + 1.0 for q in PSNRS]) == pytest.approx(1.0, abs=1e-12)


def test_bd_lower_is_better_metrics_keep_the_sign_convention():
    lpips = [0.5, 0.4, 0.3, 0.25]
    assert bd_rate(RATES, lpips, [2 * r for r in RATES], lpips, higher_is_better=False) == pytest.approx(100.0)
    better = [v - 0.01 for v in lpips]
    assert bd_quality(RATES, lpips, RATES, better, higher_is_better=False) == pytest.approx(0.01)


def test_bd_partial_overlap_integrates_the_common_range_only():
    # log-rate linear in quality, so PCHIP reproduces it exactly on any subset of the points; the
    # test curve covers only the top of the anchor's range, with twice the rate there: +100 %
    rates, quality = [0.05 * 2**k for k in range(5)], [28.0 + 3 * k for k in range(5)]
    assert bd_rate(rates, quality, [2 * r for r in rates[2:]], quality[2:]) == pytest.approx(100.0, abs=1e-9)


def test_bd_non_overlap_and_too_few_points_raise():
    with pytest.raises(BDRateError, match="do not overlap"):
        bd_rate(RATES, PSNRS, RATES, [q + 20 for q in PSNRS])
    with pytest.raises(BDRateError, match="at least 2"):
        bd_rate(RATES, PSNRS, [0.1], [30.0])
    with pytest.raises(BDRateError, match="positive"):
        bd_rate([0.0, 0.1], [30.0, 31.0], RATES, PSNRS)


def test_bd_dominated_points_are_dropped():
    # a point that costs more and looks worse does not bend the curve
    noisy_r, noisy_q = [*RATES, 0.3], [*PSNRS, 30.0]
    assert bd_rate(RATES, PSNRS, noisy_r, noisy_q) == pytest.approx(0.0, abs=1e-12)
    assert issubclass(bdrate.BDRateError, ValueError)


# -- results schema ----------------------------------------------------------------------------
def _point(nbytes: int = 100, **kw) -> dict:
    p = {"bpp": 8 * nbytes / (2 * 64 * 96), "bytes": nbytes, "n_scales": None, "crf": 30, "sample": None,
         "psnr_rgb": 30.0, "psnr_y": 32.0, "ms_ssim": 0.95, "vmaf": None, "encode_s": 0.1, "decode_s": 0.01,
         "estimated_bits": None}
    p.update(kw)
    return p


def _doc() -> dict:
    return {"schema": results.SCHEMA, "clips": [{"name": "a", "frames": 2, "width": 96, "height": 64}],
            "runs": [{"codec": "x264", "settings": {"preset": "medium"}, "clip": "a", "frames": 2, "width": 96,
                      "height": 64, "points": [_point(), _point(200, crf=40)]},
                     {"codec": "progvc", "settings": {}, "clip": "a", "frames": 2, "width": 96, "height": 64,
                      "points": [_point(50, crf=None, n_scales=1, sample=True, lpips=0.3)]}]}


def test_validator_accepts_a_good_document():
    results.validate(_doc())
    results.validate(json.loads(json.dumps(_doc())))


@pytest.mark.parametrize("breakage", [
    lambda d: d.update(schema="progvc-bench/0"),
    lambda d: d["runs"][0]["points"][0].update(bpp=1.0),                       # bpp != 8*bytes/(THW)
    lambda d: d["runs"][0]["points"][0].update(n_scales=3),                    # baseline with n_scales
    lambda d: d["runs"][1]["points"][0].update(sample=None),                   # progvc without sample
    lambda d: d["runs"][0]["points"][0].update(psnr_rgb=float("nan")),         # NaN must be null
    lambda d: d["runs"][0]["points"][0].update(psnr=30.0),                     # unknown key
    lambda d: d["runs"][0]["points"][0].pop("vmaf"),                           # missing key
    lambda d: d["runs"][0]["points"][1].update(crf=30),                        # duplicate point
    lambda d: d["runs"][0].update(clip="b"),                                   # clip not listed
    lambda d: d["runs"].append(copy.deepcopy(d["runs"][0])),                   # duplicate run
    lambda d: d["runs"][0]["points"][0].update(bytes=True),                    # bool is not an int
])
def test_validator_rejects_bad_documents(breakage):
    doc = _doc()
    breakage(doc)
    with pytest.raises(results.ResultsError):
        results.validate(doc)


def test_store_saves_atomically_and_refuses_other_configs(tmp_path):
    path = tmp_path / "r.json"
    store = results.ResultsStore(path, {"frames": 2, "downscale": 1, "gop": 4})
    store.add_clip({"name": "a", "frames": 2, "width": 96, "height": 64})
    run = store.run("x264", "a", {"preset": "medium"}, 2, 96, 64)
    store.add_point(run, _point(vmaf=float("nan")))
    assert [p.name for p in tmp_path.iterdir()] == ["r.json"]  # no temporary file left behind
    doc = results.load(path)
    assert doc["runs"][0]["points"][0]["vmaf"] is None
    again = results.ResultsStore(path, {"frames": 2, "downscale": 1, "gop": 4})
    assert again.has_point(again.run("x264", "a", {"preset": "medium"}, 2, 96, 64), None, 30, None)
    with pytest.raises(results.ResultsError, match="another --out"):
        results.ResultsStore(path, {"frames": 16, "downscale": 1, "gop": 4})


# -- metrics -----------------------------------------------------------------------------------
def test_psnr_identical_is_capped_and_known_mse_is_exact():
    from progvc.bench import metrics

    ref = np.full((2, 32, 32, 3), 100, np.uint8)
    assert metrics.psnr(ref, ref) == metrics.PSNR_MAX_DB == 100.0
    dist = ref + 5  # MSE 25 exactly
    assert metrics.psnr(ref, dist) == pytest.approx(10 * math.log10(255**2 / 25), abs=1e-12)
    # BT.601 luma: Y(100) = round(16 + 219*100/255) = 102, Y(117) = round(116.48) = 116
    assert metrics.psnr_y(ref, ref + 17) == pytest.approx(10 * math.log10(255**2 / 14**2), abs=1e-12)


def test_sequence_metrics_identical_frames_and_small_frame_notes():
    from progvc.bench.metrics import SequenceMetrics

    ref = _clip(2, 64, 96)
    m = SequenceMetrics(ref)
    s = m(ref.copy())
    assert s["psnr_rgb"] == s["psnr_y"] == 100.0
    assert s["ms_ssim"] == pytest.approx(1.0, abs=1e-6)
    assert 0.0 <= s["vmaf"] <= 100.0
    assert any("3 of 5 levels" in n for n in m.notes)
    tiny = SequenceMetrics(_clip(2, 16, 16))
    assert tiny(_clip(2, 16, 16))["vmaf"] is None
    assert any(n.startswith("vmaf: NaN") for n in tiny.notes)


def test_detail_ratio_is_one_for_the_source_below_for_a_blur_above_for_noise():
    rng = np.random.default_rng(0)
    ref = rng.integers(0, 256, (2, 32, 40, 3)).astype(np.uint8)
    blur = ((ref.astype(np.float32) + np.roll(ref, 1, 1) + np.roll(ref, 1, 2) + np.roll(ref, (1, 1), (1, 2))) / 4)
    noisy = np.clip(ref + rng.normal(0, 40, ref.shape), 0, 255)
    assert metrics.detail_ratio(ref, ref) == pytest.approx(1.0)
    assert metrics.detail_ratio(ref, blur.round().astype(np.uint8)) < 0.7
    smooth = np.full_like(ref, 128) + np.arange(40, dtype=np.uint8)[None, None, :, None]
    assert metrics.detail_ratio(smooth, noisy.astype(np.uint8)) > 10
    assert math.isnan(metrics.detail_ratio(np.full_like(ref, 7), ref))
    scores = metrics.SequenceMetrics(ref)(ref)
    assert scores["detail"] == pytest.approx(1.0)


def test_ms_ssim_five_levels_is_pytorch_msssim_and_vmaf_split_equals_one_call():
    import torch
    from pytorch_msssim import ms_ssim as reference_ms_ssim
    from vmaf_torch import VMAF

    from progvc.bench import metrics

    rng = np.random.default_rng(0)
    ref = rng.integers(0, 256, (2, 176, 176, 3), dtype=np.uint8)
    dist = np.clip(ref.astype(int) + rng.integers(-20, 21, ref.shape), 0, 255).astype(np.uint8)
    x, y = (torch.from_numpy(a).permute(0, 3, 1, 2).float() for a in (ref, dist))
    expect = reference_ms_ssim(x, y, data_range=255, size_average=False).mean().item()
    assert metrics.ms_ssim(ref, dist) == pytest.approx(expect, abs=1e-6)
    ref, dist = _clip(10, 48, 64), _clip(10, 48, 64)[::-1].copy()  # 10 frames: more than one chunk
    ry, dy = (torch.from_numpy(metrics.rgb_to_y(a)).unsqueeze(1) for a in (ref, dist))
    with torch.no_grad():
        whole = VMAF(clip_score=True).eval()(ry, dy).mean().item()
    assert metrics.vmaf(ref, dist) == pytest.approx(whole, abs=1e-4)


# -- perceptual --------------------------------------------------------------------------------
def test_perceptual_weights_load_from_a_random_safetensors_file(tmp_path, monkeypatch):
    from progvc.bench import perceptual

    path = perceptual.save_random_weights(tmp_path / "vgg.safetensors")
    monkeypatch.setenv(perceptual.ENV_VAR, str(path))
    models = perceptual.load_perceptual(None)  # found through the environment variable
    assert models is not None and models.names == ("lpips", "dists", "fid_vgg", "kid_vgg")
    ref = _clip(2, 32, 32)
    models.set_reference(ref)
    same, other = models.score(ref.copy()), models.score(255 - ref)
    assert same["lpips"] == pytest.approx(0.0, abs=1e-6) and same["dists"] == pytest.approx(0.0, abs=1e-5)
    assert other["lpips"] > 0 and other["dists"] > 0 and other["fid_vgg"] >= 0


def test_perceptual_refuses_bad_files_and_skips_without_weights(tmp_path, monkeypatch):
    from safetensors.torch import save_file

    from progvc.bench import perceptual

    monkeypatch.delenv(perceptual.ENV_VAR, raising=False)
    assert perceptual.load_perceptual(None) is None
    assert "--perceptual-weights" in perceptual.SKIP_NOTE
    with pytest.raises(WeightsError, match="do not exist"):
        perceptual.load_perceptual(tmp_path / "missing.safetensors")
    import torch

    save_file({"lpips.lin0.weight": torch.zeros(1, 64, 1, 1)}, str(tmp_path / "heads.safetensors"))
    with pytest.raises(WeightsError, match="VGG16 layout"):
        perceptual.load_perceptual(tmp_path / "heads.safetensors")
    (tmp_path / "junk.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(WeightsError, match="not a readable"):
        perceptual.load_perceptual(tmp_path / "junk.safetensors")


# -- baselines ---------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["x264", "x265", "svtav1", "vp9"])
def test_baseline_two_frame_round_trip_with_fixed_gop(name):
    from progvc.bench import baselines

    if missing := baselines.missing_codecs(name):
        pytest.skip(f"PyAV's FFmpeg lacks {missing}")
    frames = _clip(5, 64, 96)
    res = baselines.encode_decode(frames[:2], name, 30, gop=4)
    assert res.frames.shape == (2, 64, 96, 3) and res.frames.dtype == np.uint8 and res.nbytes > 0
    assert np.mean(np.abs(res.frames.astype(int) - frames[:2])) < 12
    assert res.keyframes == (0,)
    assert baselines.encode_decode(frames, name, 30, gop=2).keyframes == (0, 2, 4)  # no scene-cut keys
    odd = baselines.encode_decode(frames[:2, :33, :47].copy(), name, 30, gop=4)  # padded, then cropped
    assert odd.padded and odd.frames.shape == (2, 33, 47, 3)


def test_baseline_options_are_checked():
    from progvc.bench import baselines

    with pytest.raises(ConfigError, match="CRF"):
        baselines.get_baseline("x264").options(60, 8)
    with pytest.raises(ConfigError, match="unknown codec"):
        baselines.get_baseline("h266")
    assert baselines._strip_h264_sei(b"\x00\x00\x00\x01\x67ab\x00\x00\x01\x06sei\x00\x00\x01\x65x") == \
        b"\x00\x00\x00\x01\x67ab\x00\x00\x01\x65x"


# -- the driver --------------------------------------------------------------------------------
@pytest.fixture
def clips_dir(tmp_path) -> Path:
    from progvc.video.io import write_video

    folder = tmp_path / "clips"
    folder.mkdir()
    write_video(folder / "pattern.mkv", _clip(3, 64, 96), 25)
    return folder


@pytest.mark.slow
def test_run_benchmark_resumes_without_recomputing(clips_dir, tmp_path, monkeypatch):
    from progvc.bench import baselines, rd

    calls = []
    real = baselines.encode_decode
    monkeypatch.setattr(baselines, "encode_decode", lambda *a, **k: calls.append(a[2]) or real(*a, **k))
    kw = dict(frames=2, codecs=("x264",), crfs={"x264": [30, 40]}, gop=4, progress=False)
    out = rd.run_benchmark(clips_dir, tmp_path / "out", **kw)
    assert calls == [30, 40]
    first = json.loads(out.read_text())
    rd.run_benchmark(clips_dir, tmp_path / "out", **{**kw, "crfs": {"x264": [30, 40, 45]}})
    assert calls == [30, 40, 45]  # only the new point was computed
    doc = results.load(out)
    assert doc["runs"][0]["points"][:2] == first["runs"][0]["points"]
    assert any("skipped, no backbone weights" in n for n in doc["notes"])
    assert (tmp_path / "out" / "summary.md").exists() and (tmp_path / "out" / "plots" / "pattern.mkv.png").exists()


@pytest.mark.slow
def test_main_with_perceptual_weights_report_only_and_errors(clips_dir, tmp_path, capsys):
    from progvc.bench import perceptual, rd

    out = tmp_path / "out"
    weights = perceptual.save_random_weights(tmp_path / "vgg.safetensors")
    assert rd.main([str(clips_dir), "--out", str(out), "--frames", "2", "--codecs", "x264",
                    "--crf", "x264=30,40", "--gop", "4", "--no-progress", "--perceptual-weights", str(weights)]) == 0
    (out / "summary.md").unlink()
    assert rd.main(["--out", str(out), "--report-only"]) == 0
    summary = (out / "summary.md").read_text()
    assert "| x264 | crf 30 |" in summary and "| lpips | dists | fid_vgg | kid_vgg |" in summary
    assert "no backbone weights" not in summary
    assert rd.main([str(tmp_path / "nowhere"), "--out", str(out), "--codecs", "x264"]) == 1
    assert "neither a video file nor a folder" in capsys.readouterr().err
    assert rd.main([str(clips_dir), "--out", str(out), "--codecs", "x264", "--crf", "x264"]) == 1
    assert rd.main([str(clips_dir), "--out", str(out), "--codecs", "x264", "--crf", "x265=30"]) == 1
    assert "not among the benchmarked baselines" in capsys.readouterr().err


def test_downscale_area_averages_blocks():
    from progvc.video.downscale import downscale_area

    frames = np.arange(2 * 4 * 6 * 3, dtype=np.uint8).reshape(2, 4, 6, 3)
    small = downscale_area(frames, 2)
    assert small.shape == (2, 2, 3, 3)
    assert small[0, 0, 0, 0] == 11  # mean of 0, 3, 18, 21 is 10.5, rounded half up


@pytest.mark.slow
def test_progvc_tiny_model_through_run_benchmark(clips_dir, tmp_path):
    pytest.importorskip("progvc.codec.codec")
    import progvc
    from progvc.bench import rd
    from progvc.models.config import tiny_config

    out = rd.run_benchmark(clips_dir, tmp_path / "out", frames=2, codecs=("progvc", "x264"),
                           crfs={"x264": [35]}, progress=False,
                           codec_factory=lambda: progvc.Codec.from_config(tiny_config()))
    doc = results.load(out)
    run = next(r for r in doc["runs"] if r["codec"] == "progvc")
    k = tiny_config().tokenizer.n_scales
    assert len(run["points"]) == 2 * k and run["settings"]["gop"] == tiny_config().gop_size
    by_n = {p["n_scales"]: p["bytes"] for p in run["points"]}
    assert [by_n[n] for n in range(1, k + 1)] == sorted(by_n.values())  # truncation only drops bytes
    assert all(p["estimated_bits"] is not None for p in run["points"])
    summary = (tmp_path / "out" / "summary.md").read_text()
    assert "| progvc-nosample | x264 |" in summary


def test_speed_helpers_measure_workloads():
    speed = pytest.importorskip("benchmarks.speed")
    encode, decode = speed.range_coder_workloads(16, n_symbols=3000, rows=500)
    assert encode() == decode() == 3000
    assert speed.items_per_second(encode, warmup=1, runs=2) > 0
    assert speed.peak_memory_mb(lambda: np.ones(4_000_000), "cpu") >= 0
    row = {"device": "cpu", "size": "cif", "frames": 4, "encode_fps": 1.0, "decode_fps": 2.0,
           "encode_fps_by_preset": {"fast": 1.5, "medium": 1.0, "slow": 0.5},
           "decode_sampled_fps": 3.0, "encode_peak_mb": 10.0, "decode_peak_mb": 9.0, "context_tokens_per_s": 1e3,
           "range_encode_symbols_per_s": 1e6, "range_decode_symbols_per_s": 1e6}
    assert speed.markdown([row]).splitlines()[-1].startswith("| cpu | cif | 4 | 1.50 / 1.00 / 0.50 | 2.00 |")


def test_gop_length_report_measures_bits_and_psnr_at_equal_rate(tmp_path):
    from benchmarks.gop_length import report

    # GOP 8: 2 dB per octave from (0.02, 20) to (0.04, 22); GOP 24: (0.01, 19) to (0.04, 22.5), 1.75 dB
    # per octave. Where both reach (0.02..0.04) GOP 24 is 0.75 dB above at 0.02 and 0.5 dB at 0.04,
    # linearly in log-rate: +0.625 dB on average. A clip with one quality has no curve: n/a.
    rows = [dict(clip="c", q=45, gop=8, bpp=0.02, psnr_rgb=20.0),
            dict(clip="c", q=60, gop=8, bpp=0.04, psnr_rgb=22.0),
            dict(clip="c", q=45, gop=24, bpp=0.01, psnr_rgb=19.0),
            dict(clip="c", q=60, gop=24, bpp=0.04, psnr_rgb=22.5),
            dict(clip="d", q=45, gop=8, bpp=0.02, psnr_rgb=20.0),
            dict(clip="d", q=45, gop=24, bpp=0.03, psnr_rgb=20.0)]
    path = tmp_path / "gop.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    table = report(path)
    assert "| c | 24 | -50%, +0% | +0.63 dB |" in table
    assert "| d | 24 | +50% | n/a |" in table
    assert table.endswith("| mean | 24 | +0% | +0.63 dB (1) |")  # bits over every point, BD over clips with a curve


def test_gop_length_report_gives_bd_rate_against_an_anchor_at_each_gop(tmp_path):
    from benchmarks.gop_length import report

    # The anchor's curve is the same at both GOPs and reaches progvc's GOP-8 quality with half the
    # bits (progvc: +100%); progvc's GOP-24 points cost half its GOP-8 bits, on the anchor's curve
    # (0%). MS-SSIM follows PSNR / 100.
    ours = [(45, 8, 0.04, 20.0), (60, 8, 0.08, 22.0), (45, 24, 0.02, 20.0), (60, 24, 0.04, 22.0)]
    theirs = [(c, g, b, q) for g in (8, 24) for c, (b, q) in
              zip((37, 32, 27), ((0.02, 20.0), (0.04, 22.0), (0.08, 24.0)), strict=True)]
    rows = ([dict(clip="c", q=q, gop=g, bpp=b, psnr_rgb=p, ms_ssim=p / 100) for q, g, b, p in ours]
            + [dict(clip="c", codec="x265", crf=c, gop=g, bpp=b, psnr_rgb=p, ms_ssim=p / 100)
               for c, g, b, p in theirs])
    path = tmp_path / "gop.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    table = report(path)
    assert "| c | 24 | -50%, -50% |" in table  # the anchor rows stay out of the GOP table
    assert "| c | +100% / +100% | +0% / +0% |" in table
    assert table.endswith("| mean (clips) | +100% / +100% (1) | +0% / +0% (1) |")


def test_progression_report_compares_each_n_at_the_same_n_and_at_the_anchors_rate():
    from benchmarks.progression import _per_scale_count

    def point(n, bpp, psnr, fill="none"):
        return {"n_scales": n, "fill": fill, "bpp": bpp, "psnr_rgb": psnr, "ms_ssim": psnr / 100, "vmaf": 0.0}

    # ours: n = 5, 6, 7 (7 = every scale) at 0.01, 0.02, 0.04 bpp and 20, 22, 24 dB, 2 dB per octave;
    # the anchor: n = 5, 6 at 0.02 and 0.08 bpp, 19 and 21 dB. At the same n ours has half and a quarter
    # of its bits for +1 dB; at the anchor's n = 5 rate ours is 22 dB (+3), at its n = 6 rate out of reach
    # of the stream but not of the sweep, whose 0.04 .. 0.16 bpp curve is at 26 dB there (+5 dB).
    clips = {"c": {"points": [point(5, 0.01, 20.0), point(6, 0.02, 22.0), point(7, 0.04, 24.0)],
                   "sweep": [point(7, 0.04, 24.0), point(7, 0.16, 28.0)]}}
    anchor = {"runs": [{"codec": "progvc", "clip": "c", "points": [
        {**point(5, 0.02, 19.0), "sample": False}, {**point(6, 0.08, 21.0), "sample": False}]}]}
    table = "\n".join(_per_scale_count(clips, anchor, ["none"], range(5, 7)))
    same, plus3 = "+1.00 / +0.010 / +0.00", "+3.00 / +0.030 / +0.00 (1)"
    assert f"| fill=none | 5 | 50% | {same} | {plus3} | {plus3} |" in table
    assert f"| fill=none | 6 | 25% | {same} | n/a | +5.00 / +0.050 / +0.00 (1) |" in table


def test_progression_report_names_the_largest_grid_excess_and_its_clip():
    from benchmarks.progression import _grid_rows

    def point(n, grid, fill="none"):
        return {"n_scales": n, "fill": fill, "grid_excess": grid}

    clips = {"src__a__1": {"points": [point(5, 0.10), point(6, -0.02)], "sweep": [point(6, 0.01)]},
             "src__b__1": {"points": [point(5, 0.04), point(6, 0.05)], "sweep": [point(6, 0.2)]}}
    table = "\n".join(_grid_rows(clips, [("m fill=none", lambda c: c["points"])], range(5, 7)))
    assert "| m fill=none | +0.100 (a) | +0.050 (b) |" in table
    assert "largest grid excess: +0.200 (b)" in table
    del clips["src__b__1"]["sweep"][0]["grid_excess"]  # an older results file: no table
    assert _grid_rows(clips, [("m fill=none", lambda c: c["points"])], range(5, 7)) == []


def test_decode_pair_takes_turns_and_reports_each_pairs_ratio():
    """Structure only (timing never decides a test): both models decode in A B B A turns, every pair
    gives one ratio, and the medians are what the seconds say."""
    pair = pytest.importorskip("benchmarks.decode_pair")
    import torch

    torch.manual_seed(0)  # the random models' weights
    r = pair.measure(["random-tiny", "random-tiny"], "cif", frames=1, rounds=2)
    assert [len(s) for s in r["seconds"]] == [4, 4] and len(r["ratios_b_over_a"]) == 4
    assert r["ratios_b_over_a"][0] == r["seconds"][1][0] / r["seconds"][0][0]
    assert r["median_fps"][0] == pytest.approx(1 / np.median(r["seconds"][0]))
    assert 0 <= r["pairs_where_b_is_faster"] <= 4
    assert r["machine"]["capability"] == torch.backends.cpu.get_cpu_capability() and r["machine"]["cpu"]


def switch_at_each_call(obj, method: str, switch: str) -> list[bool]:
    """Wrap ``obj.method`` so that each call appends the value of the tokenizer's precision switch
    ``switch`` (on the CPU) at that moment to the returned list."""
    import torch

    from progvc.models import tokenizer

    seen, original = [], getattr(obj, method)

    def spy(*args, **kwargs):
        seen.append(getattr(tokenizer, switch)(torch.device("cpu")))
        return original(*args, **kwargs)

    setattr(obj, method, spy)
    return seen


def test_refine_precision_encodes_both_ways_in_turns_and_restores_the_switch():
    """Structure only: each quality is encoded in float32 and in bfloat16 (in that order), every point
    has its numbers, the BD-rates come from those points, and the library's switch is restored."""
    bench = pytest.importorskip("benchmarks.refine_precision")
    import torch

    from progvc.models import tokenizer

    torch.manual_seed(0)
    codec = bench.load_codec("random-tiny", "cpu")
    switch = tokenizer.search_in_bfloat16
    frames = smooth_clip(2, 32, 48, seed=3)
    calls = switch_at_each_call(codec.tokenizer, "refine_latent", "search_in_bfloat16")
    r = bench.measure_clip(codec, frames, [20, 60, 100], "medium", gop=2)
    assert tokenizer.search_in_bfloat16 is switch
    assert calls == [False, True] * 3
    assert [[p["quality"] for p in r["points"][k]] for k in bench.PRECISIONS] == [[20, 60, 100]] * 2
    assert all(p["seconds"] > 0 and p["bpp"] > 0 and 0 < p["ms_ssim"] <= 1 for k in bench.PRECISIONS
               for p in r["points"][k])
    assert r["seconds_ratio"] == pytest.approx(sum(p["seconds"] for p in r["points"]["bfloat16"])
                                               / sum(p["seconds"] for p in r["points"]["float32"]))


def test_find_clips_keeps_the_videos_whose_names_hold_a_part_of_only(tmp_path):
    from progvc.bench.rd import find_clips

    for name in ("src__cars__1.mp4", "src__boats__2.y4m", ".src__cars__3.mp4", "notes.txt"):
        (tmp_path / name).write_bytes(b"")
    every = [tmp_path / "src__boats__2.y4m", tmp_path / "src__cars__1.mp4"]
    assert find_clips(tmp_path) == find_clips(tmp_path, "") == find_clips(tmp_path, "cars,,boats") == every
    assert find_clips(tmp_path, "cars") == [tmp_path / "src__cars__1.mp4"]
    assert find_clips(tmp_path, "planes") == []


def test_synthesis_cost_times_each_width_against_the_first(tmp_path):
    """Structure only: one row per candidate, in order, its parameters counted and its time measured."""
    bench = pytest.importorskip("benchmarks.synthesis_cost")
    out = tmp_path / "cost.json"
    assert bench.main(["--widths", "8,8,16,16;8,16,32,48", "--size", "48x32", "--runs", "1", "--threads", "1",
                       "--out", str(out)]) == 0
    rows = json.loads(out.read_text())["rows"]
    assert [r["channels"] for r in rows] == [[8, 8, 16, 16], [8, 16, 32, 48]]
    assert rows[0]["g_s_vs_first"] == 1.0 and rows[1]["g_s_params"] > rows[0]["g_s_params"]
    assert all(r["g_s_seconds"] > 0 and r["g_s_bfloat16_seconds"] > 0 and r["g_a_seconds"] > 0 for r in rows)


def test_decode_precision_decodes_each_stream_both_ways_and_restores_the_switch():
    """Structure only: the full stream and its cut, each decoded in float32 and bfloat16 (A B B A),
    their pictures compared, and the library's switch restored."""
    bench = pytest.importorskip("benchmarks.decode_precision")
    import torch

    from progvc.models import tokenizer

    torch.manual_seed(0)
    codec = bench.load_codec("random-tiny", "cpu")
    switch = tokenizer.synthesis_in_bfloat16
    seen = switch_at_each_call(codec.tokenizer, "synthesise", "synthesis_in_bfloat16")
    r = bench.measure_clip(codec, smooth_clip(2, 32, 48, seed=3), 60, "fast", gop=2, cut=2)
    assert tokenizer.synthesis_in_bfloat16 is switch
    assert set(r) == {"full", "cut_2"} and seen[:4] == [False, True, True, False]
    for row in r.values():
        assert all(row[p]["seconds"] > 0 and 0 < row[p]["ms_ssim"] <= 1 for p in bench.PRECISIONS)
        assert row["seconds_ratio"] == pytest.approx(row["bfloat16"]["seconds"] / row["float32"]["seconds"])
        assert row["max_diff"] >= 0 and row["mean_diff"] <= row["max_diff"]
    assert "mean of 1" in bench.report({"clip": r})


def test_kernel_builds_decode_one_stream_to_the_same_frames_under_each_build(monkeypatch):
    """Builds of the C kernels (here the baseline and -march=native ones) and the tensor path decode
    the pinned tiny portable model's stream to the installed build's frames, narrow blocks forced."""
    builds = pytest.importorskip("benchmarks.kernel_builds")
    from progvc.models import exact_native

    from .test_golden import GOLDEN
    from .test_portable_native import compiler_here

    if exact_native.library() is None or not compiler_here():
        pytest.skip("the C kernels are not built here, or no C compiler")
    monkeypatch.setattr(builds, "TARGETS", {t: builds.TARGETS[t] for t in ("x86-64", "native")})
    monkeypatch.setitem(builds.SIZES, "small", (96, 64))
    r = builds.measure(str(GOLDEN / "tiny-portable.safetensors"), "small", frames=2, blocking="narrow")
    names = [row["build"] for row in r["builds"]]
    assert names[0] == "installed" and names[-1] == "tensor path" and "native" in names
    assert all(row.get("same_frames") for row in r["builds"]), r["builds"]
