"""Progress of one encode or decode, one step per (frame, scale) the context model codes.

The finest scales dominate the time and a GOP of large frames can take minutes, so a bar per GOP
sits at 0% for too long; counting (frame, scale) steps moves it many times per GOP. The bar goes
to stderr (tqdm) and shows where the coder is (``GOP 2/5 frame 3 scale 7``); tokenizing a GOP
(the encoder's refinement) shows as ``tokenizing``. A file being encoded is read one GOP at a time,
so ``Codec.encode_with_stats`` counts its frames first (``video_io.count_frames``) to give the
total; a bar without one (None) counts steps and shows ``GOP 2``. A disabled bar costs nothing.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")


class Progress:
    """A bar over ``total`` (frame, scale) steps in ``n_gops`` GOPs (None: not known in advance);
    ``enabled=False`` draws nothing."""

    def __init__(self, enabled: bool, desc: str, total: int | None, n_gops: int | None) -> None:
        self._bar = None
        self._n_gops, self._gop = n_gops, 0
        if enabled:
            from tqdm import tqdm

            self._bar = tqdm(total=total, desc=desc, unit="step", leave=False, mininterval=0.5, dynamic_ncols=True)

    def gop(self, g: int, phase: str = "") -> None:
        """Say that GOP ``g`` (0-based) starts ``phase`` (e.g. "tokenizing")."""
        self._gop = g
        self._say(f"{self._where()} {phase}".rstrip())

    def counting(self, pick: Callable[[int, int, Any], T]) -> Callable[[int, int, Any], T]:
        """``pick(t, k, logits)`` that advances the bar by one step after each call."""
        if self._bar is None:
            return pick

        def counted(t: int, k: int, logits: Any) -> T:
            out = pick(t, k, logits)
            self._say(f"{self._where()} frame {t + 1} scale {k + 1}")
            self._bar.update(1)  # type: ignore[union-attr]
            return out

        return counted

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _where(self) -> str:
        return f"GOP {self._gop + 1}" + ("" if self._n_gops is None else f"/{self._n_gops}")

    def _say(self, text: str) -> None:
        if self._bar is not None:
            self._bar.set_postfix_str(text, refresh=False)


NO_PROGRESS = Progress(False, "", 0, 0)
"""A disabled bar, the default of the coding methods."""
