"""One training leg on a lent GPU: packed here, run there in one call, joined here.

Issue 30's next leg is the autoencoder's capacity, trained on far more pixels than two CPU cores
see in a session. A GPU is lent through the device tool (about 15 minutes in all, at most 10 a
call; 64 MiB of working tree travels, at most 8 files of 16 MiB come back), on a machine with
PyTorch and OpenCV but no PyAV, no pytorch-msssim and no package registry. The training cache
(``progvc.train.data``, 1.5 GB of raw frames) does not travel as it is, so a leg is three steps::

    # here: the cache as H.264 4:4:4 clips (crf 14: about 43 dB against the cache, 25-30 MB for the
    # 28 train clips) beside their run files, and pytorch_msssim's pure-Python package
    python -m progvc.train.device_leg pack --cache /work/ckpt/cache_train --to .device_leg
    # there, as the device tool's command (carry [".device_leg"]; $OUT is the tool's):
    PYTHONPATH=.device_leg/site python3 -m progvc.train.device_leg run --data .device_leg --out $OUT \\
        --tokenizer-minutes 5 --tokenizer-args "--batch 32 --crop 256 --workers 8 ..." \\
        --context-minutes 2 --context-args "--batch 16 --gop 4 --crop 128 ..."
    # here: join what came back (the tool's files_at), checking every part's sha256
    python -m progvc.train.device_leg join FILES_AT --to /work/ckpt/gpu_leg1

``run`` decodes the clips back into a cache (OpenCV there, PyAV here: they decode these files to
the same bytes), trains the tokenizer (``progvc.train.tokenizer_stage``) and then, if asked, the
context model on its tokens (``progvc.train.context_stage``, warm-started from the shipped default
made float again), each bounded by wall time with its cosine following the time spent
(``--lr-by-time``). Each result leaves as parts of at most 15 MiB with a sha256, beside
``leg.json`` (timings, the runs' logs, and the error of a phase that failed: a failed context
phase still returns the tokenizer; it is written after each phase, so a call cut short during the
context phase still brings back the tokenizer and its account). Optimiser state does not come
back; a next leg warm-starts from the weights (``--init-from``). ``join`` writes
``tokenizer.safetensors`` and, with a context phase, ``model.safetensors`` (both float;
``python -m progvc.train.portable`` converts the latter).
"""

from __future__ import annotations

import argparse
import json
import shlex
import shutil
import time
import traceback
from collections.abc import Callable
from pathlib import Path

import numpy as np

from ..runtime.atomic import atomic_path
from ..runtime.errors import ConfigError
from ..weights import sha256_hex

MANIFEST = "manifest.json"
SUMMARY = "leg.json"
PART_BYTES = 15 << 20  # under the device tool's 16 MiB per returned file
RETURN_FILES = 6  # parts in all: with leg.json and a log, the tool's 8 returned files
RETURN_BYTES = 60 << 20  # parts in all, under the tool's 64 MiB returned
_CARRY_MIB = 64  # what travels in one call, the repository included


def encode_clip(frames: np.ndarray, path: Path, crf: int) -> None:
    """Write (T,H,W,3) uint8 ``frames`` as H.264 4:4:4 (edge-padded to even sides) at ``crf``."""
    import av

    t, h, w, _ = frames.shape
    pad = ((0, 0), (0, h % 2), (0, w % 2), (0, 0))
    with atomic_path(path) as tmp, av.open(str(tmp), "w", format="mp4") as out:
        stream = out.add_stream("libx264", rate=25)
        stream.width, stream.height, stream.pix_fmt = w + w % 2, h + h % 2, "yuv444p"
        stream.options = {"crf": str(crf), "preset": "medium"}
        for frame in frames:
            picture = av.VideoFrame.from_ndarray(np.ascontiguousarray(np.pad(frame, pad[1:], mode="edge")),
                                                 format="rgb24")
            out.mux(stream.encode(picture))
        out.mux(stream.encode(None))


def decode_clip(path: Path) -> np.ndarray:
    """Every frame of a packed clip, (T,H',W',3) uint8 RGB, by OpenCV where it is installed (the
    lent machine), else PyAV (both decode these files to the same bytes)."""
    try:
        import cv2
    except ImportError:
        import av

        with av.open(str(path)) as f:
            return np.stack([fr.to_ndarray(format="rgb24") for fr in f.decode(video=0)])
    cap = cv2.VideoCapture(str(path))
    frames = []
    while True:
        ok, bgr = cap.read()
        if not ok:
            break
        frames.append(bgr[:, :, ::-1])
    cap.release()
    return np.stack(frames) if frames else np.zeros((0, 1, 1, 3), np.uint8)


def pack(cache: Path, to: Path, crf: int = 14, budget_mib: float = 30.0) -> dict:
    """Pack every clip of training cache ``cache`` into folder ``to`` with ``MANIFEST``; copies
    pytorch_msssim to ``to/site``. Refuses (ConfigError) when the clips exceed ``budget_mib``:
    the repository travels in the same 64 MiB."""
    import pytorch_msssim

    names = sorted(p.name[: -len(".npy")] for p in cache.glob("*.npy"))
    if not names:
        raise ConfigError(f"no cached clips (*.npy) in {cache}: build one with progvc.train.data.build_cache")
    to.mkdir(parents=True, exist_ok=True)
    clips = []
    for name in names:
        frames = np.load(cache / f"{name}.npy", mmap_mode="r")
        encode_clip(frames, to / f"{name}.mp4", crf)
        runs = (cache / f"{name}.json").is_file()  # a clip without one is a single run
        if runs:
            shutil.copyfile(cache / f"{name}.json", to / f"{name}.json")
        t, h, w = frames.shape[:3]
        clips.append({"name": name, "frames": t, "height": h, "width": w, "runs": runs,
                      "sha256": sha256_hex((to / f"{name}.mp4").read_bytes())})
    total = sum((to / f"{c['name']}.mp4").stat().st_size for c in clips) / 2**20
    if total > budget_mib:
        raise ConfigError(f"the packed clips take {total:.1f} MiB, over the {budget_mib} MiB budget "
                          f"(the repository travels in the same {_CARRY_MIB}): pack with a higher --crf")
    site = to / "site" / "pytorch_msssim"
    shutil.rmtree(site, ignore_errors=True)
    shutil.copytree(Path(pytorch_msssim.__file__).parent, site, ignore=shutil.ignore_patterns("__pycache__"))
    manifest = {"crf": crf, "mib": round(total, 2), "clips": clips}
    (to / MANIFEST).write_text(json.dumps(manifest, indent=1))
    return manifest


def _unpack_one(args: tuple[Path, Path, dict]) -> str:
    data, cache, clip = args
    mp4 = data / f"{clip['name']}.mp4"
    if sha256_hex(mp4.read_bytes()) != clip["sha256"]:
        raise ConfigError(f"{mp4} does not match its sha256 in {MANIFEST}: pack again")
    frames = decode_clip(mp4)[:, : clip["height"], : clip["width"]]
    if frames.shape != (clip["frames"], clip["height"], clip["width"], 3):
        raise ConfigError(f"{mp4} decoded to {frames.shape}, expected {clip['frames']} frames of "
                          f"{clip['width']}x{clip['height']}")
    with atomic_path(cache / f"{clip['name']}.npy") as tmp, open(tmp, "wb") as f:
        np.save(f, np.ascontiguousarray(frames))
    if clip["runs"]:
        shutil.copyfile(data / f"{clip['name']}.json", cache / f"{clip['name']}.json")
    return clip["name"]


def unpack(data: Path, cache: Path, workers: int = 1) -> list[str]:
    """Decode a packed folder back into a training cache; returns the clip names. Each file is
    checked against its sha256 and its frame count and size against ``MANIFEST``."""
    manifest = json.loads((data / MANIFEST).read_text())
    cache.mkdir(parents=True, exist_ok=True)
    jobs = [(data, cache, clip) for clip in manifest["clips"]]
    if workers <= 1:
        return [_unpack_one(j) for j in jobs]
    from multiprocessing import get_context

    with get_context("spawn").Pool(workers) as pool:
        return pool.map(_unpack_one, jobs)


def split(path: Path, out: Path) -> dict:
    """Copy ``path`` into ``out`` as parts of at most ``PART_BYTES``; returns its sha256 and parts.
    Refused (ConfigError) when the parts already in ``out`` and these would pass ``RETURN_FILES``
    or ``RETURN_BYTES``: what the device tool does not bring back is lost."""
    data = path.read_bytes()
    n = max(1, -(-len(data) // PART_BYTES))
    held = list(out.glob("*.part*"))
    if len(held) + n > RETURN_FILES or sum(p.stat().st_size for p in held) + len(data) > RETURN_BYTES:
        raise ConfigError(f"{path} ({len(data) >> 20} MiB) and the {len(held)} parts before it are more than "
                          f"the device tool brings back ({RETURN_FILES} parts, {RETURN_BYTES >> 20} MiB)")
    parts = []
    for i in range(n):
        part = out / f"{path.stem}.part{i}"
        part.write_bytes(data[i * PART_BYTES : (i + 1) * PART_BYTES])
        parts.append(part.name)
    return {"sha256": sha256_hex(data), "parts": parts}


def join_parts(files: Path, entry: dict) -> bytes:
    """The bytes of one split file from its parts in ``files``, checked against its sha256."""
    data = b"".join((files / p).read_bytes() for p in entry["parts"])
    if sha256_hex(data) != entry["sha256"]:
        raise ConfigError(f"the parts {entry['parts']} in {files} do not join to their sha256: fetch them again")
    return data


def _phase(name: str, train: object, make_argv: Callable[[], list[str]], result: str, out: Path) -> dict:
    """Run one training stage (``train(parse_args(make_argv()))``), split its ``result`` file into
    ``out``, and report its flags, wall time, log and parts; an error is reported, not raised."""
    from . import common

    t0, report = time.time(), {"phase": name}
    try:
        report["argv"] = argv = make_argv()
        cfg = train.parse_args(argv)  # type: ignore[attr-defined]
        run_dir = train.train(cfg)  # type: ignore[attr-defined]
        log = Path(run_dir) / "metrics.jsonl"  # absent when the run ended before its first log line
        report["log"] = [json.loads(line) for line in log.read_text().splitlines()] if log.is_file() else []
        report["file"] = split(_only(Path(run_dir) / result, name), out)
    except Exception:  # noqa: BLE001 - the leg's other results must still come back
        report["error"] = traceback.format_exc()
    finally:
        common.teardown()
    report["seconds"] = round(time.time() - t0, 1)
    return report


def _only(path: Path, part: str) -> Path:
    """``path`` itself for the tokenizer; for the context phase a file of its ``context.*`` tensors
    alone (the tokenizer came back once already; ``join`` puts the two together)."""
    if part == "tokenizer":
        return path
    from ..weights import parse_weights, save_weights

    config, state = parse_weights(path.read_bytes(), str(path))
    save_weights(path.with_name("context.safetensors"), {k: v for k, v in state.items() if k.startswith("context.")},
                 config)
    return path.with_name("context.safetensors")


def _stage_args(given: str, minutes: float, forced: list[str]) -> list[str]:
    """A stage's flags: the user's, a step count no wall-time run reaches unless given, and the
    leg's own (last, so they win)."""
    argv = shlex.split(given)
    steps = [] if "--steps" in argv else ["--steps", str(10**9)]
    return argv + steps + forced + ["--max-minutes", str(minutes), "--lr-by-time", "true"]


def _float_init(path: Path, work: Path) -> Path:
    """``path`` itself if it holds a float context model, else a float copy of the portable one."""
    from ..weights import parse_weights, save_weights
    from .portable import float_state

    config, _ = parse_weights(path.read_bytes(), str(path))
    if not config.context.portable:
        return path
    state, config = float_state(path)
    save_weights(work / "context_init.safetensors", state, config)
    return work / "context_init.safetensors"


def run(args: argparse.Namespace) -> dict:
    """The leg: unpack, train the tokenizer, then (``--context-minutes`` > 0) the context model."""
    import torch

    from . import context_stage, tokenizer_stage

    t0, out, work = time.time(), Path(args.out), Path(args.work)
    out.mkdir(parents=True, exist_ok=True)
    cache, device = work / "cache", ["--device", args.device]
    summary: dict = {"clips": unpack(Path(args.data), cache, args.workers), "torch": torch.__version__,
                     "device": torch.cuda.get_device_name() if args.device.startswith("cuda") else args.device}
    summary["unpack_seconds"] = round(time.time() - t0, 1)
    tok = _phase("tokenizer", tokenizer_stage, lambda: _stage_args(
        args.tokenizer_args, args.tokenizer_minutes, ["--cache", str(cache), "--out", str(work / "tok"), *device]),
        "tokenizer.safetensors", out)
    summary["phases"] = [tok]
    (out / SUMMARY).write_text(json.dumps(summary, indent=1))  # what came back so far, should the call be cut
    if args.context_minutes > 0 and "file" in tok:
        summary["phases"].append(_phase("context", context_stage, lambda: _stage_args(
            args.context_args, args.context_minutes,
            ["--tokenizer", str(work / "tok" / "tokenizer.safetensors"), "--cache", str(cache), "--out",
             str(work / "ctx"), "--init-from", str(_float_init(Path(args.context_init), work)), *device]),
            "model.safetensors", out))
    summary["seconds"] = round(time.time() - t0, 1)
    (out / SUMMARY).write_text(json.dumps(summary, indent=1))
    return summary


def join(files: Path, to: Path) -> list[Path]:
    """Write the weights a leg brought back (folder ``files``) into folder ``to``: the tokenizer's
    ``tokenizer.safetensors`` and, after a context phase, the whole model ``model.safetensors`` (that
    tokenizer and the context model, with the context phase's config); returns their paths."""
    from ..weights import parse_weights, save_weights

    summary = json.loads((files / SUMMARY).read_text())
    to.mkdir(parents=True, exist_ok=True)
    loaded = {}
    for phase in summary["phases"]:
        if "file" not in phase:
            print(f"the {phase['phase']} phase failed on the device:\n{phase.get('error', '')}")
            continue
        loaded[phase["phase"]] = parse_weights(join_parts(files, phase["file"]), phase["phase"])
    written = []
    if "tokenizer" in loaded:
        written.append(to / "tokenizer.safetensors")
        save_weights(written[-1], loaded["tokenizer"][1], loaded["tokenizer"][0])
    if "tokenizer" in loaded and "context" in loaded:
        config, context = loaded["context"]
        tokenizer = {k: v for k, v in loaded["tokenizer"][1].items() if k.startswith("tokenizer.")}
        written.append(to / "model.safetensors")
        save_weights(written[-1], {**tokenizer, **context}, config)
    return written


def main(argv: list[str] | None = None) -> int:
    from ..weights import load_manifest, shipped_dir

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)
    a = sub.add_parser("pack", help="here: the training cache as clips that travel")
    a.add_argument("--cache", type=Path, required=True)
    a.add_argument("--to", type=Path, default=Path(".device_leg"))
    a.add_argument("--crf", type=int, default=14)
    a.add_argument("--budget-mib", type=float, default=30.0)
    r = sub.add_parser("run", help="there: unpack, train, split the results into --out")
    r.add_argument("--data", default=".device_leg")
    r.add_argument("--out", required=True)
    r.add_argument("--work", default="/tmp/progvc_leg")
    r.add_argument("--device", default="cuda")
    r.add_argument("--workers", type=int, default=8, help="processes that decode the clips")
    r.add_argument("--tokenizer-minutes", type=float, default=5.0)
    r.add_argument("--tokenizer-args", default="", help="tokenizer_stage flags, as one string")
    r.add_argument("--context-minutes", type=float, default=0.0)
    r.add_argument("--context-args", default="", help="context_stage flags, as one string")
    default = shipped_dir() / f"{load_manifest(shipped_dir())['default']}.safetensors"
    r.add_argument("--context-init", default=str(default), help="warm start of the context model")
    j = sub.add_parser("join", help="here: the weights from the parts that came back")
    j.add_argument("files", type=Path)
    j.add_argument("--to", type=Path, required=True)
    args = p.parse_args(argv)
    if args.command == "pack":
        m = pack(args.cache, args.to, args.crf, args.budget_mib)
        print(f"{len(m['clips'])} clips, {m['mib']} MiB at crf {m['crf']} in {args.to}")
    elif args.command == "run":
        s = run(args)
        for phase in s["phases"]:
            print(phase["phase"], phase["seconds"], "s", "failed:\n" + phase["error"] if "error" in phase else "ok")
    else:
        for path in join(args.files, args.to):
            print(path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
