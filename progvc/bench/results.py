"""One results schema for progvc and every baseline, its validator, and a resumable store.

A results file (``results.json``) is strict JSON (no NaN: a metric that could not be computed is
``null``)::

    {"schema": "progvc-bench/1",
     "config": {"frames": 16, "downscale": 1, "gop": 8},          # optional; fixed for a file
     "notes": ["..."],                                             # optional
     "clips": [{"name": "foo.mp4", "path": "...", "frames": T, "width": W, "height": H, "fps": 25.0}],
     "runs": [{"codec": "progvc" | "x264" | "x265" | "svtav1" | "vp9",
               "settings": {...},        # what identifies the encoding (model, GOP, preset, ...)
               "clip": "foo.mp4", "frames": T, "width": W, "height": H,
               "notes": ["..."],         # optional
               "points": [{"bpp": 8*bytes/(T*H*W), "bytes": int,
                           "n_scales": int | null, "crf": int | null, "sample": bool | null,
                           "psnr_rgb": ..., "psnr_y": ..., "ms_ssim": ..., "vmaf": ...,
                           ["lpips", "dists", "fid_vgg", "kid_vgg": ...,]
                           "encode_s": float, "decode_s": float,
                           "estimated_bits": float | null}]}]}

progvc points carry ``n_scales`` and ``sample`` (``crf`` null); baseline points carry ``crf``
(``n_scales`` and ``sample`` null). ``estimated_bits`` is the entropy model's own estimate when the
codec reports one (progvc: the context model's -sum log2 p of the coded tokens of scales 1..n,
payload only, without header, index and checksums), next to the real ``bytes`` (STYLE.md habit 12).

:class:`ResultsStore` rewrites the file atomically (temporary file, fsync, ``os.replace``) after
every point, so an interrupted benchmark loses at most the point in flight, and a rerun skips every
point already present.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from ..runtime.atomic import write_text_atomic
from ..runtime.errors import ProgvcError

SCHEMA = "progvc-bench/1"
REQUIRED_METRICS = ("psnr_rgb", "psnr_y", "ms_ssim", "vmaf")
OPTIONAL_METRICS = ("lpips", "dists", "fid_vgg", "kid_vgg")
DESCRIPTIVE = ("detail",)  # reported beside the metrics, never a BD-rate axis (metrics.detail_ratio)
HIGHER_IS_BETTER = {"psnr_rgb": True, "psnr_y": True, "ms_ssim": True, "vmaf": True,
                    "lpips": False, "dists": False, "fid_vgg": False, "kid_vgg": False}
_POINT_KEYS = {"bpp", "bytes", "n_scales", "crf", "sample", "encode_s", "decode_s", "estimated_bits",
               *REQUIRED_METRICS}


class ResultsError(ProgvcError, ValueError):
    """A results document breaks the schema, or does not belong to the benchmark being resumed."""


def _is_int(x: Any) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def _is_num(x: Any) -> bool:
    return (isinstance(x, (int, float)) and not isinstance(x, bool)) and math.isfinite(x)


def point_key(point: dict[str, Any]) -> tuple[Any, Any, Any]:
    """What identifies a point within its run: ``(n_scales, crf, sample)``."""
    return point.get("n_scales"), point.get("crf"), point.get("sample")


def run_key(run: dict[str, Any]) -> str:
    """What identifies a run within a file: codec, clip and settings, as canonical JSON."""
    return json.dumps([run["codec"], run["clip"], run["settings"]], sort_keys=True)


def validate_point(p: Any, where: str, frames: int, width: int, height: int, progvc: bool) -> None:
    """Raise :class:`ResultsError` unless ``p`` is a valid point of a run of that size and codec."""
    if not isinstance(p, dict):
        raise ResultsError(f"{where}: a point must be an object")
    missing = _POINT_KEYS - p.keys()
    unknown = p.keys() - _POINT_KEYS - set(OPTIONAL_METRICS) - set(DESCRIPTIVE)
    if missing or unknown:
        raise ResultsError(f"{where}: missing keys {sorted(missing)}, unknown keys {sorted(unknown)}")
    if not _is_int(p["bytes"]) or p["bytes"] < 0 or not _is_num(p["bpp"]) or p["bpp"] < 0:
        raise ResultsError(f"{where}: bytes must be an integer and bpp a number, both >= 0")
    expect = 8.0 * p["bytes"] / (frames * width * height)
    if not math.isclose(p["bpp"], expect, rel_tol=1e-9, abs_tol=1e-12):
        raise ResultsError(f"{where}: bpp {p['bpp']} != 8*bytes/(T*H*W) = {expect}")
    for k in (*REQUIRED_METRICS, *OPTIONAL_METRICS, *DESCRIPTIVE, "estimated_bits"):
        if k in p and p[k] is not None and not _is_num(p[k]):
            raise ResultsError(f"{where}: {k} must be a finite number or null, got {p[k]!r}")
    for k in ("encode_s", "decode_s"):
        if not _is_num(p[k]) or p[k] < 0:
            raise ResultsError(f"{where}: {k} must be a number of seconds >= 0, got {p[k]!r}")
    if progvc:
        ok = _is_int(p["n_scales"]) and p["n_scales"] >= 1 and isinstance(p["sample"], bool) and p["crf"] is None
        what = "n_scales >= 1, sample true/false and crf null"
    else:
        ok = _is_int(p["crf"]) and p["n_scales"] is None and p["sample"] is None
        what = "an integer crf and n_scales, sample null"
    if not ok:
        raise ResultsError(f"{where}: a {'progvc' if progvc else 'baseline'} point needs {what}")


def _check_size(obj: dict[str, Any], where: str) -> None:
    for k in ("frames", "width", "height"):
        if not _is_int(obj.get(k)) or obj[k] < 1:
            raise ResultsError(f"{where}: {k} must be a positive integer, got {obj.get(k)!r}")


def validate(doc: Any) -> None:
    """Raise :class:`ResultsError` with the first violation of the schema in ``doc``."""
    if not isinstance(doc, dict) or doc.get("schema") != SCHEMA:
        raise ResultsError(f"not a {SCHEMA} document (the 'schema' key must be {SCHEMA!r})")
    unknown = doc.keys() - {"schema", "config", "notes", "clips", "runs"}
    if unknown or not isinstance(doc.get("clips"), list) or not isinstance(doc.get("runs"), list):
        raise ResultsError(f"a results document needs 'clips' and 'runs' lists (unknown keys {sorted(unknown)})")
    if not isinstance(doc.get("notes", []), list) or not isinstance(doc.get("config", {}), dict):
        raise ResultsError("'notes' must be a list of strings and 'config' an object")
    names = set()
    for i, c in enumerate(doc["clips"]):
        if not isinstance(c, dict) or not isinstance(c.get("name"), str):
            raise ResultsError(f"clips[{i}] must be an object with a 'name'")
        _check_size(c, f"clips[{i}]")
        names.add(c["name"])
    seen = set()
    for i, r in enumerate(doc["runs"]):
        where = f"runs[{i}]"
        if not isinstance(r, dict) or not isinstance(r.get("codec"), str) or not isinstance(r.get("settings"), dict):
            raise ResultsError(f"{where} must be an object with a 'codec' string and a 'settings' object")
        if r.get("clip") not in names:
            raise ResultsError(f"{where}: clip {r.get('clip')!r} is not listed in 'clips'")
        _check_size(r, where)
        if not isinstance(r.get("points"), list) or not isinstance(r.get("notes", []), list):
            raise ResultsError(f"{where}: 'points' (and 'notes') must be lists")
        if (key := run_key(r)) in seen:
            raise ResultsError(f"{where}: a second run of {r['codec']} on {r['clip']} with the same settings")
        seen.add(key)
        keys = set()
        for j, p in enumerate(r["points"]):
            validate_point(p, f"{where}.points[{j}]", r["frames"], r["width"], r["height"], r["codec"] == "progvc")
            if point_key(p) in keys:
                raise ResultsError(f"{where}.points[{j}]: duplicate operating point {point_key(p)}")
            keys.add(point_key(p))


def load(path: str | Path) -> dict[str, Any]:
    """Read and validate a results file."""
    try:
        doc = json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise ResultsError(f"cannot read {path} ({exc}); fix it or choose another --out folder") from exc
    validate(doc)
    return doc


def save(doc: dict[str, Any], path: str | Path) -> None:
    """Validate ``doc`` and write it atomically: temporary file in the same folder, then os.replace."""
    validate(doc)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(path, json.dumps(doc, indent=1, allow_nan=False) + "\n")


class ResultsStore:
    """A results document on disk that grows one point at a time and resumes where it stopped.

    ``config`` (frames, downscale, GOP) is fixed for a file: resuming with other values raises
    :class:`ResultsError`, since curves made under different conditions must not be mixed.
    """

    def __init__(self, path: str | Path, config: dict[str, Any] | None = None) -> None:
        self.path = Path(path)
        if self.path.exists():
            self.doc = load(self.path)
            old = self.doc.get("config")
            if config is not None and old is not None and old != config:
                raise ResultsError(
                    f"{self.path} was made with {old}, this run asks for {config}; "
                    "use the same options or another --out folder"
                )
        else:
            self.doc = {"schema": SCHEMA, "clips": [], "runs": []}
        if config is not None:
            self.doc["config"] = dict(config)

    def save(self) -> None:
        """Write the document atomically."""
        save(self.doc, self.path)

    def note(self, text: str, run: dict[str, Any] | None = None) -> None:
        """Add a note line to the file (or to ``run``) once; not saved until the next point."""
        notes = (run if run is not None else self.doc).setdefault("notes", [])
        if text not in notes:
            notes.append(text)

    def add_clip(self, info: dict[str, Any]) -> None:
        """Insert or replace the clip entry named ``info['name']``."""
        clips = [c for c in self.doc["clips"] if c["name"] != info["name"]]
        self.doc["clips"] = [*clips, dict(info)]

    def run(self, codec: str, clip: str, settings: dict[str, Any], frames: int, width: int,
            height: int) -> dict[str, Any]:
        """The run with that codec, clip and settings, created (empty) if absent."""
        new = {"codec": codec, "settings": json.loads(json.dumps(settings)), "clip": clip,
               "frames": frames, "width": width, "height": height, "points": []}
        for r in self.doc["runs"]:
            if run_key(r) == run_key(new):
                if (r["frames"], r["width"], r["height"]) != (frames, width, height):
                    raise ResultsError(f"{self.path}: {clip} changed size since it was benchmarked; "
                                       "use another --out folder")
                return r
        self.doc["runs"].append(new)
        return new

    @staticmethod
    def has_point(run: dict[str, Any], n_scales: int | None, crf: int | None, sample: bool | None) -> bool:
        """Whether ``run`` already holds the point ``(n_scales, crf, sample)``."""
        return (n_scales, crf, sample) in {point_key(p) for p in run["points"]}

    def add_point(self, run: dict[str, Any], point: dict[str, Any]) -> None:
        """Validate ``point``, append it to ``run`` and save the file atomically."""
        point = {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in point.items()}
        validate_point(point, f"{run['codec']} on {run['clip']}", run["frames"], run["width"], run["height"],
                       run["codec"] == "progvc")
        if self.has_point(run, *point_key(point)):
            raise ResultsError(f"{run['codec']} on {run['clip']}: point {point_key(point)} is already stored")
        run["points"].append(point)
        self.save()
