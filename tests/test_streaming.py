"""The progressive streaming decoder: any piece sizes, coarse-to-fine updates, bitwise equal to decode."""

from __future__ import annotations

import numpy as np
import pytest

import progvc
from progvc.codec.streaming import Decoder, GopUpdate
from progvc.coding.state import GopState
from progvc.stream import format as bs

from .helpers import check_updates, pieces


@pytest.fixture(scope="module")
def stream(tiny_codec):
    """6 frames in GOPs of 4 and 2, every scale of the tiny model."""
    from .helpers import smooth_clip

    return tiny_codec.encode(smooth_clip(6, 20, 28, seed=5), gop_size=4)


@pytest.mark.parametrize("fill", ["mean", "sample", "none"])
def test_random_pieces_decode_exactly(tiny_codec, stream, fill):
    dec = Decoder(tiny_codec, fill=fill, seed=9)
    updates = [u for piece in pieces(stream, seed=1, most=60) for u in dec.feed(piece)] + dec.close()
    assert dec.done and dec.bytes_received == len(stream)
    check_updates(tiny_codec, stream, updates, fill=fill, seed=9)


def test_cheap_previews_show_the_sent_scales_and_final_updates_fill(tiny_codec, stream):
    """preview_fill="none": a preview is the sent scales only and the GOP's final update is decode's
    default fill; a cut stream's final update, even one ended by close(), is filled, not its preview."""
    cut = progvc.truncate(stream, n_scales=2)
    updates = list(Decoder(tiny_codec, seed=5, preview_fill="none").run(cut[i:i + 1] for i in range(len(cut))))
    check_updates(tiny_codec, cut, updates, seed=5, preview_fill="none", every=True)
    first, last = updates[0], updates[1]
    assert (first.scales, first.final, last.scales, last.final) == (1, False, 2, True)
    assert not np.array_equal(last.frames, tiny_codec.decode(cut, fill="none")[:len(last.frames)])
    inside = len(stream) - len(bs.unpack(stream).gops[1][-1].payload) - 3  # inside GOP 2's last chunk
    dec = Decoder(tiny_codec, seed=5, preview_fill="none", partial=True)
    ended = dec.feed(stream[:inside]) + dec.close()
    assert [(u.scales, u.final) for u in ended][-2:] == [(3, False), (3, True)]
    assert np.array_equal(np.concatenate([u.frames for u in ended if u.final]),
                          tiny_codec.decode(stream[:inside], seed=5, partial=True))


def test_one_byte_pieces_emit_each_chunk_as_soon_as_it_is_complete(tiny_codec, clip_factory):
    data = tiny_codec.encode(clip_factory(3, 8, 12, seed=2), gop_size=2)
    dec = Decoder(tiny_codec, fill="none")
    updates, when = [], []
    for i in range(len(data)):
        got = dec.feed(data[i:i + 1])
        updates += got
        when += [i + 1] * len(got)
    assert dec.close() == []
    check_updates(tiny_codec, data, updates, fill="none", every=True)
    for u, n in zip(updates, when, strict=True):  # the byte that completed the chunk, not one later
        held = bs.unpack(data[:n], partial=True).gops
        assert len(held) == u.gop + 1 and len(held[u.gop]) == u.scales
        before = bs.unpack(data[:n - 1], partial=True).gops
        assert len(before) < u.gop + 1 or len(before[u.gop]) < u.scales


def test_scale_cap_previews_off_and_uneven_gops(tiny_codec, stream):
    dec = Decoder(tiny_codec, n_scales=2, seed=3)
    check_updates(tiny_codec, stream, list(dec.run(pieces(stream, 2, 100))), n_scales=2, seed=3)
    dec = Decoder(tiny_codec, previews=False, fill="none")
    finals = list(dec.run([stream]))
    assert [(u.gop, u.scales, u.final) for u in finals] == [(0, 4, True), (1, 4, True)]
    smallest = len(progvc.truncate(stream, n_scales=1))
    budgets = (progvc.truncate(stream, max_bytes=b) for b in range(smallest, len(stream)))
    uneven = next(d for d in budgets if len({len(chunks) for chunks in bs.unpack(d).gops}) > 1)
    check_updates(tiny_codec, uneven, list(Decoder(tiny_codec, seed=4).run(pieces(uneven, 3, 40))), seed=4)


def test_a_feed_shows_only_the_most_scales_it_completes(tiny_codec, stream):
    """Previews that a later chunk of the same feed supersedes are not made (nor paid for)."""
    k = tiny_codec.n_scales
    assert [(u.gop, u.scales, u.final) for u in Decoder(tiny_codec, fill="none").feed(stream)] == \
        [(0, k, True), (1, k, True)]
    inside = len(stream) - len(bs.unpack(stream).gops[1][-1].payload) - 3  # inside GOP 2's last chunk
    dec = Decoder(tiny_codec, fill="none")
    assert [(u.gop, u.scales, u.final) for u in dec.feed(stream[:inside])] == [(0, k, True), (1, k - 1, False)]
    assert [(u.gop, u.scales, u.final) for u in dec.feed(stream[inside:])] == [(1, k, True)]


def test_coded_scales_are_decoded_once(tiny_codec, stream, monkeypatch):
    """The GOP's state is kept between chunks: no scale is range-decoded twice."""
    calls = []
    original = GopState.logits
    monkeypatch.setattr(GopState, "logits", lambda self, t, k: calls.append((t, k)) or original(self, t, k))
    list(Decoder(tiny_codec, fill="none").run(pieces(stream, 4, 30)))
    assert len(calls) == 6 * tiny_codec.n_scales and len(set(calls)) == 4 * tiny_codec.n_scales


def test_cut_stream_raises_on_close_unless_partial(tiny_codec, stream):
    stream_of = bs.unpack(stream)
    cut = len(stream) - len(stream_of.gops[1][-1].payload) - 3  # inside the last chunk of GOP 2
    dec = Decoder(tiny_codec, seed=2)
    dec.feed(stream[:cut])
    with pytest.raises(progvc.BitstreamError, match="partial=True"):
        dec.close()
    dec = Decoder(tiny_codec, seed=2, partial=True)
    updates = dec.feed(stream[:cut]) + dec.close()
    assert [(u.gop, u.scales, u.final) for u in updates][-2:] == [(1, 3, False), (1, 3, True)]
    final = np.concatenate([u.frames for u in updates if u.final])
    assert np.array_equal(final, tiny_codec.decode(stream[:cut], seed=2, partial=True))
    with pytest.raises(progvc.BitstreamError, match="after close"):
        dec.feed(b"x")


def test_corrupt_bytes_raise(tiny_codec, stream):
    with pytest.raises(progvc.BitstreamError, match="not a progvc stream"):
        Decoder(tiny_codec).feed(b"PGX")
    bad = bytearray(stream)
    bad[-20] ^= 1
    dec = Decoder(tiny_codec, fill="none")
    with pytest.raises(progvc.BitstreamError, match="checksum"):
        for piece in pieces(bytes(bad), 5, 50):
            dec.feed(piece)
    with pytest.raises(progvc.BitstreamError, match="unexpected bytes"):
        Decoder(tiny_codec, fill="none", previews=False).feed(stream + b"\0")


def test_stream_of_other_weights_is_refused_at_the_header(stream):
    from progvc.codec.codec import Codec
    from progvc.models.config import tiny_config

    other = Codec.from_config(tiny_config(name="other"), device="cpu")
    with pytest.raises(progvc.BitstreamError, match="other"):
        Decoder(other).feed(stream[:200])


def test_bad_options(tiny_codec):
    for bad in ({"seed": -1}, {"seed": 1.5}, {"n_scales": 0}, {"n_scales": 99}, {"preview_fill": "blur"}):
        with pytest.raises(progvc.ConfigError):
            Decoder(tiny_codec, **bad)


def test_exported_lazily():
    assert progvc.Decoder is Decoder and progvc.GopUpdate is GopUpdate
    assert "Decoder" in progvc.__all__ and "GopUpdate" in progvc.__all__
