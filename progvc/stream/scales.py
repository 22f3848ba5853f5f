"""The scale schedule: which token grid each of the K scales uses for a given latent grid.

The long side ``L = max(h, w)`` of scale k follows the geometric progression ``L**(k/(K-1))``,
rounded and then pushed to be strictly increasing while room remains (for L=16, K=10 this gives
1,2,3,4,5,6,7,9,12,16, close to VAR's hand-picked 1,2,3,4,5,6,8,10,13,16). The short side
follows the aspect ratio. The last grid is always the full latent grid. Latents with fewer
than K cells along the long side repeat grids (a 1x1 latent has K scales of 1x1), which
residual VQ handles naturally: each repeat refines the remaining residual.
"""

from __future__ import annotations

import math


def scale_grids(h: int, w: int, n_scales: int) -> list[tuple[int, int]]:
    """Return ``n_scales`` (rows, cols) grids from coarse to fine for an ``h x w`` latent."""
    if h < 1 or w < 1 or n_scales < 1:
        raise ValueError(f"bad latent grid {h}x{w} or scale count {n_scales}")
    big = max(h, w)
    sides: list[int] = []
    for k in range(n_scales):
        geo = big ** (k / (n_scales - 1)) if n_scales > 1 else big
        side = max(1, math.floor(geo + 0.5))
        if sides:  # strictly increasing while the remaining scales still fit below `big`
            side = max(side, min(sides[-1] + 1, big - (n_scales - 1 - k)))
        sides.append(min(side, big))
    sides[-1] = big
    return [(max(1, math.floor(h * s / big + 0.5)), max(1, math.floor(w * s / big + 0.5))) for s in sides]


def tokens_per_scale(h: int, w: int, n_scales: int) -> list[int]:
    """Number of tokens of each scale for one frame."""
    return [a * b for a, b in scale_grids(h, w, n_scales)]


def missing_octaves(grids: list[tuple[int, int]], n_sent: int) -> float:
    """How much of the pyramid a decoder lacks when only the first ``n_sent`` scales arrived:
    ``log2(long side of the finest grid / long side of grid n_sent)``, 0.0 for a full stream."""
    if not 1 <= n_sent <= len(grids):
        raise ValueError(f"n_sent={n_sent} outside 1..{len(grids)}")
    return math.log2(max(grids[-1]) / max(grids[n_sent - 1]))


def prefix_terms(n_scales: int) -> tuple[tuple[int, ...], int]:
    """What prefix-aware refinement optimises for a pyramid of ``n_scales``: the prefixes whose
    pictures its loss counts (K-4, K-2 and K-1 scales, those of at least one) and the first scale
    that is still chosen on the ordinary latent (K-2: the two finest scales correct what the
    prefix-refined coarse scales leave, so the full picture keeps its quality).

    See ``progvc.coding.gop.GopEncoder.latent``.
    """
    prefixes = tuple(n for n in (n_scales - 4, n_scales - 2, n_scales - 1) if n >= 1)
    return prefixes, max(1, n_scales - 2)
