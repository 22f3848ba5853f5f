"""Coding at a reduced size: ``encode(resize=f)`` codes each frame at ``1/f`` of its width and height,
and the decoder scales the pictures back up to the frame size (AV1's resize mode).

Why: the token pyramid of a frame spends its coarse scales on a picture that only its finest
scales complete, so at low rates a truncated stream is a heavy blur. The complete pyramid of a
frame half the size, scaled back up, is the better picture for the same bits at low rates on PSNR
and MS-SSIM, while VMAF prefers the full-size stream's sharper texture (benchmarks/README.md,
"Coding at a reduced size"). So ``encode(bpp=R)`` without ``resize`` codes the video to the budget
at full, half and a third of its size and keeps the stream that decodes closest to the source
(``Codec._encode_at_best_size``, ``progvc.coding.options.AUTO_RESIZE``).

::

    encode:  frames (T,H,W,3) ──pad to a multiple of f (edge pixels repeated)──► area average of f x f
             ──► (T, ceil(H/f), ceil(W/f), 3): the pictures the tokens describe (``progvc.stream.format.coded_size``)
    decode:  synthesised (T, ceil(H/f), ceil(W/f), 3) ──bicubic x f──► crop to (T,H,W,3)

Both run on the codec's device, one frame at a time (a frame's float copy is all they add). The
bicubic kernel is torch's (a = -0.75, ``align_corners=False``); its output is rounded and clamped to
uint8. A stream records ``f`` in its header (format version 5 on, flag bits 4-5).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def downsample(frames: torch.Tensor, factor: int) -> torch.Tensor:
    """(T,H,W,3) uint8 -> (T,ceil(H/f),ceil(W/f),3) uint8: the mean of each ``f x f`` block, rounded
    half up; a frame whose sides are not multiples of ``f`` is first padded with its edge pixels."""
    if factor == 1:
        return frames
    _, h, w, _ = frames.shape
    pad = (0, -w % factor, 0, -h % factor)
    out = []
    for frame in frames:
        x = frame.permute(2, 0, 1)[None].float()
        if any(pad):
            x = F.pad(x, pad, mode="replicate")
        out.append(torch.floor(F.avg_pool2d(x, factor) + 0.5).to(torch.uint8)[0].permute(1, 2, 0))
    return torch.stack(out)


def upsample(frames: torch.Tensor, factor: int, height: int, width: int) -> torch.Tensor:
    """(T,h,w,3) uint8 -> (T,height,width,3) uint8: bicubic by ``factor``, then cropped (``height``
    and ``width`` at most ``f*h`` and ``f*w``, the size :func:`downsample` started from)."""
    if factor == 1:
        return frames
    out = []
    for frame in frames:
        x = F.interpolate(frame.permute(2, 0, 1)[None].float(), scale_factor=factor, mode="bicubic",
                          align_corners=False)[..., :height, :width]
        out.append(x.round().clamp(0, 255).to(torch.uint8)[0].permute(1, 2, 0))
    return torch.stack(out)
