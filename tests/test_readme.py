"""README.md's ```python blocks run as written, so the documentation cannot rot.

Conventions for the README's authors:

- Every ```python block (also ```py) runs on its own, in a fresh namespace, with a temporary
  working directory that holds ``clip.mp4``: 8 frames of the built-in sample at 128x96, so
  ``progvc.encode("clip.mp4")`` works as written. Files a block writes land there.
- A block that needs the shipped weights (it calls ``progvc.encode``/``progvc.decode``,
  ``from_pretrained``, or the HTML comment ``<!-- readme-test: weights -->`` stands on the line
  before its fence) is marked ``weights`` and skipped while ``progvc/weights/manifest.json`` is absent.
- ``<!-- readme-test: skip -->`` on the line before a fence skips that block (a GPU-only or
  pseudo-code snippet); say why in the comment.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"
_FENCE = re.compile(r"^(\s*)```(?:python|py|python3)\s*$")
_NEEDS_WEIGHTS = re.compile(r"progvc\.(?:encode|decode)\(|from_pretrained\(|readme-test:\s*weights")


def python_blocks(text: str) -> list[tuple[int, str, str]]:
    """(line number of the fence, the line before it, dedented code) of every ```python block."""
    lines = text.splitlines()
    blocks, i = [], 0
    while i < len(lines):
        match = _FENCE.match(lines[i])
        if not match:
            i += 1
            continue
        indent, start = len(match.group(1)), i
        before = next((lines[j] for j in range(i - 1, -1, -1) if lines[j].strip()), "")
        body = []
        i += 1
        while i < len(lines) and lines[i].strip() != "```":
            body.append(lines[i][indent:] if not indent or lines[i][:indent].isspace() else lines[i].lstrip())
            i += 1
        blocks.append((start + 1, before, "\n".join(body) + "\n"))
        i += 1
    return blocks


def _shipped_weights() -> bool:
    from progvc.weights import weights_dir

    return (weights_dir() / "manifest.json").is_file()


def _cases() -> list:
    blocks = python_blocks(README.read_text()) if README.is_file() else []
    if not blocks:
        return [pytest.param(None, marks=pytest.mark.skip(reason="README.md has no ```python block yet; "
                                                          "see test_readme_has_python_blocks"))]
    cases = []
    for line, before, code in blocks:
        marks = []
        if "readme-test: skip" in before:
            marks.append(pytest.mark.skip(reason=f"README.md:{line} is marked <!-- readme-test: skip -->"))
        elif _NEEDS_WEIGHTS.search(code) or "readme-test: weights" in before:
            reason = "needs the shipped weights (progvc/weights/manifest.json)"
            marks += [pytest.mark.weights, pytest.mark.slow, pytest.mark.skipif(not _shipped_weights(), reason=reason)]
        cases.append(pytest.param((line, code), marks=marks, id=f"README.md:{line}"))
    return cases


def test_readme_has_python_blocks():
    assert README.is_file(), f"{README} is missing: write the README (its ```python blocks are run by this file)"
    assert python_blocks(README.read_text()), (
        "README.md has no ```python block: add at least one runnable example (see tests/test_readme.py)")


@pytest.fixture(scope="module")
def sample_mp4(tmp_path_factory) -> Path:
    from progvc.video.io import write_video
    from progvc.video.samples import sample_clip

    path = tmp_path_factory.mktemp("readme") / "clip.mp4"
    clip = sample_clip(8, height=96, width=128)
    write_video(path, clip.frames, clip.fps)
    return path


@pytest.mark.parametrize("block", _cases())
def test_readme_block_runs(block, sample_mp4, tmp_path, monkeypatch):
    line, code = block
    (tmp_path / "clip.mp4").write_bytes(sample_mp4.read_bytes())
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MPLBACKEND", "Agg")
    exec(compile(code, f"README.md:{line}", "exec"), {"__name__": "__readme__"})


def test_block_parser():
    text = ("intro\n<!-- readme-test: skip -->\n```python\nx = 1\n```\n```bash\nls\n```\n"
            "- item\n\n  ```py\n  if x:\n      y = 2\n  ```\n")
    assert python_blocks(text) == [(3, "<!-- readme-test: skip -->", "x = 1\n"), (11, "- item", "if x:\n    y = 2\n")]


def test_first_command_block_is_install_and_quickstart_then_tests():
    """The README opens with exactly two commands: install + quickstart, then the tests."""
    text = README.read_text()
    start = text.index("```\n") + 4
    lines = text[start:text.index("```", start)].strip().splitlines()
    assert len(lines) == 2 and "pip install" in lines[0] and "examples/quickstart.py" in lines[0], lines
    assert lines[1].startswith("python -m pytest"), lines


def test_the_changelog_opens_with_the_package_version():
    import progvc

    first = next(line for line in (README.parent / "CHANGELOG.md").read_text().splitlines() if line.startswith("## "))
    assert first == f"## {progvc.__version__}", (first, progvc.__version__)


def test_the_readme_is_a_front_door():
    lines = len(README.read_text().splitlines())
    assert lines <= 160, f"{lines} lines: measurements go to benchmarks/README.md, history to CHANGELOG.md"
