"""Progress moves once per (frame, scale) step and its total is exactly the steps coded."""

from __future__ import annotations

import progvc


class FakeBar:
    bars: list[FakeBar] = []

    def __init__(self, total, desc, **kwargs):
        self.total, self.desc, self.n, self.texts = total, desc, 0, []
        FakeBar.bars.append(self)

    def update(self, n):
        self.n += n

    def set_postfix_str(self, text, refresh=True):
        self.texts.append(text)

    def close(self):
        pass


def test_bars_count_every_frame_and_scale(tiny_codec, clip_factory, monkeypatch):
    import tqdm

    monkeypatch.setattr(tqdm, "tqdm", FakeBar)
    FakeBar.bars = []
    x = clip_factory(6, 16, 24)  # GOPs of 4 and 2 frames
    data = tiny_codec.encode(x, n_scales=3, gop_size=4, progress=True)
    tiny_codec.decode(data, fill="sample", progress=True, seed=1)  # 3 scales decoded, 1 sampled
    tiny_codec.decode(progvc.truncate(data, n_scales=2), fill="none", progress=True)
    tiny_codec.decode(data)  # no bar
    bars = [(b.desc, b.total, b.n) for b in FakeBar.bars]
    assert bars == [("encode", 18, 18), ("decode", 24, 24), ("decode", 12, 12)]
    assert "GOP 1/2 tokenizing" in FakeBar.bars[0].texts and "GOP 2/2 frame 2 scale 3" in FakeBar.bars[0].texts
