"""Weights files: safetensors with the config in their metadata, checked against a manifest.

The shipped models live in this package's own folder (``progvc/weights/``) as package data, so a
wheel or any other install carries them; they are found through :mod:`importlib.resources`, and
``$PROGVC_WEIGHTS_DIR`` points the loader at another folder instead. The folder's
``manifest.json`` lists every model it serves::

    {"default": "NAME", "models": {"NAME": {"file": "NAME.safetensors", "sha256": "<hex>"}}}

The sha256 of the file is also the model's identity in every stream it writes (the stream header
carries it, and the decoder refuses streams made by other weights). Nothing here touches the
network and nothing is unpickled. ``python -m progvc.train.export`` adds a model to the folder.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
from importlib.resources import files
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..models.config import CodecConfig
from ..runtime.atomic import write_bytes_atomic
from ..runtime.errors import ConfigError, WeightsError

if TYPE_CHECKING:  # torch is imported by the functions that need it: peek_config runs without it
    from importlib.resources.abc import Traversable

    import torch

FORMAT = "progvc-weights/1"
ENV_DIR = "PROGVC_WEIGHTS_DIR"
_MAX_HEADER = 1 << 24  # bytes of safetensors JSON header peek_config reads at most
_RESTORE = "reinstall progvc, or restore the file from git in a checkout"


def weights_dir() -> Traversable:
    """The folder the loader reads: ``$PROGVC_WEIGHTS_DIR`` if set, else :func:`shipped_dir`."""
    env = os.environ.get(ENV_DIR)
    return Path(env) if env else files(__name__)


def shipped_dir() -> Path:
    """The package's own weights folder on disk (``progvc/weights/``), where ``export`` writes."""
    return Path(__file__).resolve().parent


def serialize(state: dict[str, torch.Tensor], config: CodecConfig, dtype: torch.dtype | None = None) -> bytes:
    """Canonical safetensors bytes of a model: the same state and config give the same bytes.

    ``dtype`` (e.g. float16 for shipping) converts floating-point tensors; the model loads them
    back into float32 parameters, so the stored values are exactly the ones that code.
    """
    from safetensors.torch import save

    def cast(v: torch.Tensor) -> torch.Tensor:
        return v.to(dtype) if dtype is not None and v.is_floating_point() else v

    tensors = {k: cast(v.detach().to("cpu")).contiguous() for k, v in sorted(state.items())}
    return _sorted_header(save(tensors, metadata={"format": FORMAT, "config": config.to_json()}))


def _sorted_header(data: bytes) -> bytes:
    """``data`` with its safetensors JSON header rewritten with sorted keys. safetensors writes the
    metadata in hash-map order, which changes from call to call, and with it the sha256 that is the
    model's identity in every stream."""
    n = int.from_bytes(data[:8], "little")
    header = json.dumps(json.loads(data[8:8 + n]), sort_keys=True, separators=(",", ":")).encode()
    header += b" " * (-len(header) % 8)  # keep the tensor data 8-byte aligned, as safetensors does
    return len(header).to_bytes(8, "little") + header + data[8 + n:]


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def save_weights(path: str | Path, state: dict[str, torch.Tensor], config: CodecConfig,
                 dtype: torch.dtype | None = None) -> str:
    """Write a weights file atomically; returns its sha256 (hex) for the manifest."""
    data = serialize(state, config, dtype)
    write_bytes_atomic(path, data)
    return sha256_hex(data)


def parse_weights(data: bytes, origin: str) -> tuple[CodecConfig, dict[str, torch.Tensor]]:
    """Config and tensors from safetensors bytes; ``origin`` names the file in errors."""
    from safetensors import SafetensorError
    from safetensors.torch import load

    try:
        tensors = load(data)
        header_len = int.from_bytes(data[:8], "little")
        meta = json.loads(data[8:8 + header_len]).get("__metadata__", {})
    except (SafetensorError, ValueError, OSError, UnicodeDecodeError) as exc:
        raise WeightsError(f"{origin} is not a readable safetensors file ({exc}); restore it from git") from exc
    return _config(meta, origin), tensors


def peek_config(name: str | None = None, *, path: str | Path | None = None) -> CodecConfig:
    """The config of a listed model (``name``; None: the default) or of the weights file at ``path``,
    read from the file's header alone: no tensor is loaded, no hash computed and torch is not
    imported, so a caller (the command line) can check options against the model before loading it.
    Raises WeightsError as loading would for a missing model or a file that is not progvc weights."""
    if path is None:
        directory = weights_dir()
        file = directory / _entry(load_manifest(directory), name, directory)["file"]
        origin = str(file)
    else:
        file, origin = Path(path), str(path)
    try:
        with file.open("rb") as f:
            n = int.from_bytes(f.read(8), "little")
            if not 2 <= n <= _MAX_HEADER:
                raise ValueError(f"header length {n} out of range")
            meta = json.loads(f.read(n)).get("__metadata__", {})
    except (OSError, ValueError, AttributeError, UnicodeDecodeError) as exc:
        hint = "check the path" if isinstance(exc, FileNotFoundError) else _RESTORE
        raise WeightsError(f"cannot read the config of weights file {origin} ({exc}); {hint}") from exc
    return _config(meta, origin)


def _config(meta: Any, origin: str) -> CodecConfig:
    """The checked config in a safetensors file's ``__metadata__``; ``origin`` names the file."""
    if not isinstance(meta, dict) or meta.get("format") != FORMAT or "config" not in meta:
        raise WeightsError(f"{origin} has no progvc config in its metadata; it is not a progvc weights file")
    try:
        config = CodecConfig.from_json(meta["config"])
        _check_config(config)
    except ConfigError as exc:
        raise WeightsError(f"{origin}: {exc}") from exc
    except (AttributeError, ArithmeticError) as exc:  # a config that is not a JSON object, heads = 0, ...
        raise WeightsError(f"{origin}: not a valid progvc config ({exc}); rebuild the weights file") from exc
    return config


_ZERO_OK = frozenset({"temporal_window", "local_from", "synthesis_extra_blocks",
                      "analysis_extra_blocks"})  # integers for which 0 is "none"


def _check_config(config: CodecConfig) -> None:
    """Refuse values no model can be built from, so a damaged weights file raises WeightsError here
    rather than an error from inside torch: every field keeps the type of its default, sizes are
    >= 1 (``_ZERO_OK`` fields >= 0), floats are finite and >= 0, flags are booleans."""
    for part in (config, config.tokenizer, config.context):
        for f in dataclasses.fields(part):
            value = getattr(part, f.name)
            default = f.default if f.default is not dataclasses.MISSING else f.default_factory()  # type: ignore[misc]
            if dataclasses.is_dataclass(default) or isinstance(default, str):
                continue  # checked as its own part / by CodecConfig itself
            items = value if isinstance(default, tuple) and isinstance(value, tuple) and value else (value,)
            for v in items:
                if isinstance(default, bool):
                    ok = isinstance(v, bool)
                elif isinstance(default, float):
                    ok = isinstance(v, (int, float)) and not isinstance(v, bool) and 0 <= v < math.inf
                else:
                    ok = isinstance(v, int) and not isinstance(v, bool) and v >= (f.name not in _ZERO_OK)
                if not ok:
                    raise ConfigError(f"config field {f.name}={value!r} is not a valid value; rebuild the weights file")


def load_manifest(directory: Traversable) -> dict:
    """The manifest of a weights folder, its shape checked (WeightsError naming the file if not)."""
    path = directory / "manifest.json"
    try:
        manifest = json.loads(path.read_text())
        _check_manifest(manifest)
        return manifest
    except FileNotFoundError as exc:
        where = f"{ENV_DIR}={os.environ[ENV_DIR]!r}: " if os.environ.get(ENV_DIR) else ""
        raise WeightsError(f"{where}no weights manifest at {path}; reinstall progvc (its wheel carries the "
                           f"shipped models) or point {ENV_DIR} at a folder with a manifest.json") from exc
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise WeightsError(f"{path} is not a valid weights manifest ({exc}); {_RESTORE}") from exc


def _check_manifest(manifest: object) -> None:
    """The manifest's shape (see the module docstring); raises ValueError naming what is wrong."""
    if not isinstance(manifest, dict) or not isinstance(manifest.get("models"), dict):
        raise ValueError("expected an object with a 'models' object")
    if not isinstance(manifest.get("default", ""), str):
        raise ValueError("'default' is not a model name")
    for name, entry in manifest["models"].items():
        if not (isinstance(entry, dict) and isinstance(entry.get("file"), str) and entry["file"]
                and isinstance(entry.get("sha256"), str)):
            raise ValueError(f"model {name!r} needs a 'file' and a 'sha256' string")


def load_named(name: str | None = None, directory: Traversable | None = None
               ) -> tuple[CodecConfig, dict[str, torch.Tensor], bytes]:
    """Load a model listed in the manifest, checking its sha256. Returns (config, tensors, sha256)."""
    directory = directory or weights_dir()
    manifest = load_manifest(directory)
    name = name or manifest.get("default")
    entry = _entry(manifest, name, directory)
    path = directory / entry["file"]
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise WeightsError(f"cannot read weights file {path} ({exc}); {_RESTORE}") from exc
    digest = sha256_hex(data)
    if digest != entry["sha256"]:
        raise WeightsError(f"{path} does not match its manifest hash (sha256 {digest[:16]}…, expected "
                           f"{entry['sha256'][:16]}…): the file was modified or truncated; {_RESTORE}")
    config, tensors = parse_weights(data, str(path))
    if config.name != name:
        raise WeightsError(f"{path} holds model {config.name!r}, but the manifest lists it as {name!r}")
    return config, tensors, bytes.fromhex(digest)


def _entry(manifest: dict, name: str | None, directory: Traversable) -> dict:
    """The manifest entry of ``name`` (None: the default), or WeightsError listing the known names."""
    name = name or manifest.get("default")
    entry = manifest["models"].get(name) if name else None
    if entry is None:
        known = ", ".join(sorted(manifest["models"])) or "none"
        raise WeightsError(f"no model named {name!r} in {directory / 'manifest.json'} (known: {known}); the "
                           "package keeps its default model and the one before it: a stream of an older model "
                           "decodes with the progvc release that shipped it (CHANGELOG.md), or point "
                           "PROGVC_WEIGHTS_DIR at a folder holding that model")
    return entry
