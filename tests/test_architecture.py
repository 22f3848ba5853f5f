"""The package's layout is part of its design: each subpackage is a layer, and a layer imports only
the layers beneath it (never one above, never a peer), so that the folders show the architecture::

    cli, train          the command and the training stages
    bench               rate-quality benchmarks against conventional codecs
    codec               Codec, the streaming Decoder, rate control, resource limits
    weights             shipped models, loaded with their checksum
    coding              tokens <-> bytes, one GOP at a time (entropy coding, RD choice, fill)
    models, video       the neural networks; frames in and out (peers: neither imports the other)
    stream              every byte of a stream (no torch)
    runtime             errors, devices, determinism, memory budgets, progress, atomic files
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "progvc"
LAYER = {"runtime": 0, "stream": 1, "models": 2, "video": 2, "coding": 3, "weights": 4, "codec": 5, "bench": 6,
         "train": 7, "cli": 7}


def _imported(path: Path) -> list[tuple[int, list[str]]]:
    """(line, progvc-relative module path) of every progvc module ``path`` imports."""
    base = list(path.relative_to(PACKAGE).parts[:-1])
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.level:
            target = base[: len(base) - node.level + 1] + (node.module.split(".") if node.module else [])
            found += [(node.lineno, target + ([a.name] if not node.module else [])) for a in node.names]
        elif isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "progvc":
            found.append((node.lineno, node.module.split(".")[1:]))
        elif isinstance(node, ast.Import):
            found += [(node.lineno, a.name.split(".")[1:]) for a in node.names if a.name.split(".")[0] == "progvc"]
    return found


def test_top_level_has_at_most_twelve_entries():
    entries = [p.name for p in PACKAGE.iterdir() if p.name != "__pycache__"]
    assert len(entries) <= 12, sorted(entries)
    assert set(LAYER) <= set(entries)


def test_no_layer_imports_a_layer_above_or_beside_it():
    upward = []
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE).parts
        if len(parts) == 1:  # progvc/__init__.py: the public facade sits on top of everything
            continue
        for line, target in _imported(path):
            if target == ["__version__"]:  # the version string; progvc/__init__ is always loaded first
                continue
            layer = target[0] if target and target[0] in LAYER else None
            if layer != parts[0] and (layer is None or LAYER[layer] >= LAYER[parts[0]]):
                upward.append(f"{'/'.join(parts)}:{line} imports progvc.{'.'.join(target)}")
    assert not upward, "\n".join(upward)


def test_functions_fit_on_a_screen():
    """No function of the library is longer than 50 lines (training and benchmark drivers aside)."""
    long = []
    for path in sorted(PACKAGE.rglob("*.py")):
        if path.relative_to(PACKAGE).parts[0] in ("train", "bench"):
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.end_lineno - node.lineno >= 50:
                long.append(f"{path.relative_to(PACKAGE)}:{node.lineno} {node.name}: "
                            f"{node.end_lineno - node.lineno + 1} lines")
    assert not long, "\n".join(long)
