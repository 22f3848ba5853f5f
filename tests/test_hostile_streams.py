"""Hostile streams and weights (issue 6): bytes from the network must end in BitstreamError or a
correct result, fast, without large allocations; damaged weights files end in WeightsError.

The mutations live in :mod:`tests.fuzz.harness` (which also runs them for hours); here hypothesis
drives them with a bounded budget, so a failure shrinks to a small case. "Correct" means: the
container round-trips, and every decoded token passes its checksum and equals the encoder's token
wherever the chunks it depends on are untouched.
"""

from __future__ import annotations

import json
import resource
import struct
import time
import tracemalloc
from dataclasses import replace

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

import progvc
from progvc.codec.codec import Codec
from progvc.coding import entropy
from progvc.models.config import tiny_config
from progvc.runtime.errors import BitstreamError, ConfigError, WeightsError
from progvc.stream import format as bs
from progvc.weights import load_named, serialize
from tests.fuzz import harness as fz
from tests.helpers import random_weights, smooth_clip

FAST = settings(max_examples=200, deadline=1000, suppress_health_check=[HealthCheck.too_slow])
SYNTHETIC = fz.synthetic_streams()


class HypothesisDraws:
    """:class:`tests.fuzz.harness.Draws` backed by hypothesis, so failing cases shrink."""

    def __init__(self, data: st.DataObject) -> None:
        self.data = data

    def integer(self, lo: int, hi: int) -> int:
        return self.data.draw(st.integers(lo, hi))

    def blob(self, n: int) -> bytes:
        return self.data.draw(st.binary(min_size=n, max_size=n))


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """The one-second deadlines here are about the decoder, not the scheduler: on a shared 2-core
    machine torch's thread pool makes tiny decodes tens of times slower in wall time."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def refs(tiny_codec):
    return fz.make_references(tiny_codec)


def small_and_fast(call, max_bytes: int = 256 << 10, max_s: float = 1.0) -> BitstreamError:
    """Run ``call`` (which must raise BitstreamError) under tracemalloc; check time and peak memory."""
    tracemalloc.start()
    t0 = time.perf_counter()
    try:
        with pytest.raises(BitstreamError) as err:
            call()
    finally:
        elapsed, peak = time.perf_counter() - t0, tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    assert peak < max_bytes, f"peak allocation {peak} bytes"
    assert elapsed < max_s, f"took {elapsed:.2f} s"
    return err.value


# -- the container -----------------------------------------------------------------------------

@FAST
@given(data=st.data())
def test_container_survives_mutations(refs, data):
    mutated, expect = fz.mutate_container(HypothesisDraws(data), SYNTHETIC + [r.data for r in refs])
    fz.check_container(mutated, expect)


@FAST
@given(blob=st.binary(max_size=300), prefix=st.sampled_from([b"", b"PGVC", b"PGVC\x01", b"PGVC\x01\xff\xff"]))
def test_container_survives_random_bytes(blob, prefix):
    fz.check_container(prefix + blob)


@FAST
@given(fields=st.fixed_dictionaries({name: st.sampled_from([fz.VALID[name], *values])
                                     for name, values in fz.EXTREMES.items() if name in fz.VALID}),
       n_scales=st.sampled_from([3, *fz.EXTREMES["n_scales"]]), side=st.sampled_from([2, *fz.EXTREMES["side"]]),
       payload_words=st.integers(0, 3))
def test_header_fields_are_accepted_exactly_when_in_bounds(fields, n_scales, side, payload_words):
    """Headers laid out with struct (CRC recomputed): the bounds checks alone must decide."""
    f = dict(fz.VALID, **fields, grids=tuple((side if i == n_scales - 1 else i + 1, i + 1) for i in range(n_scales)))
    valid = fz.header_valid(f)
    head = fz.header_bytes(f)
    n_gops = -(-f["frames"] // f["gop"]) if f["gop"] else 0
    if valid and n_gops <= 64:
        fz.check_container(head + fz.gop_bytes([bytes(4 * payload_words)]) * n_gops, expect=True)
        h = bs.parse_header(head)
        assert (h.width, h.height, h.n_frames, h.gop_size, h.n_scales, h.coded_scales, h.seed) == (
            f["width"], f["height"], f["frames"], f["gop"], n_scales, f["coded"], f["seed"])
    elif valid:  # too many GOPs promised for the 30 bytes that follow
        assert bs.parse_header(head).n_gops == n_gops
        small_and_fast(lambda: bs.unpack(head + bytes(30)))
    else:
        small_and_fast(lambda: bs.parse_header(head))
        small_and_fast(lambda: bs.unpack(head + bytes(30)))
        fz.check_container(head + bytes(30), expect=False)


@pytest.mark.parametrize("body_len", [0, 1, 40, 65535])
def test_header_length_that_disagrees_with_the_body_is_refused(body_len):
    small_and_fast(lambda: bs.unpack(fz.header_bytes(fz.VALID, body_len=body_len) + bytes(30)))


def test_every_cut_of_a_real_stream_is_refused_or_a_prefix(refs, tiny_codec):
    data = refs[0].data
    boundaries = set()
    for cut in range(len(data)):
        fz.check_container(data[:cut], expect=False)  # whole-stream API: cut streams are refused
        try:
            part = bs.unpack(data[:cut], partial=True)
        except BitstreamError:
            continue
        boundaries.add(sum(len(c) for c in part.gops))
        for g, chunks in enumerate(part.gops):
            assert chunks == refs[0].stream.gops[g][:len(chunks)]
    assert len(boundaries) == sum(len(g) for g in refs[0].stream.gops)  # one prefix per chunk count
    # the decoder shows every prefix that holds a chunk (a few cuts, the decoder is slower than the parser)
    for cut in range(bs.header_size(data), len(data), 7):
        fz.check_decoder(tiny_codec, fz.RandomDraws(cut), data[:cut], refs[0], partial=True)


@FAST
@given(data=st.data())
def test_bit_flips_in_real_streams_are_detected(refs, data):
    base = data.draw(st.sampled_from([r.data for r in refs]))
    mutated = fz.flip(HypothesisDraws(data), base, data.draw(st.integers(1, 3)))
    fz.check_container(mutated, expect=mutated == base)


@pytest.mark.parametrize("case", ["frames", "frames-partial", "chunk-length", "chunk-count", "scales", "body-len"])
def test_sizes_past_the_end_fail_fast_without_allocating(case):
    """Claims of 8192x8192 x 2^20 frames, 4 GiB chunks or 255 scales with 30 bytes behind them."""
    huge = dict(fz.VALID, width=8192, height=8192, frames=1 << 20, gop=1)
    data = {
        "frames": fz.header_bytes(huge) + bytes(30),
        "frames-partial": fz.header_bytes(huge) + fz.gop_bytes([], n_chunks=1, lengths=[(1 << 32) - 1]),
        "chunk-length": fz.header_bytes(fz.VALID) + fz.gop_bytes([bytes(8)] * 3, lengths=[(1 << 32) - 1] * 3),
        "chunk-count": fz.header_bytes(fz.VALID) + fz.gop_bytes([bytes(4)] * 3, n_chunks=255),
        "scales": fz.header_bytes(dict(fz.VALID, grids=((8192, 8192),) * 255, coded=255)) + bytes(30),
        "body-len": fz.header_bytes(fz.VALID)[:5] + struct.pack("<H", 65535) + bytes(30),
    }[case]
    if case == "frames-partial":  # a prefix: accepted, holding no chunk, without reading past the end
        tracemalloc.start()
        part = bs.unpack(data, partial=True)
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        assert part.gops == () and not part.complete and peak < 64 << 10
    small_and_fast(lambda: bs.unpack(data))
    small_and_fast(lambda: progvc.info(data))
    small_and_fast(lambda: progvc.truncate(data, n_scales=1))


def test_huge_claims_fail_fast_in_the_decoder_too(tiny_codec):
    """Limits lifted, so that the container checks must catch these (tests/test_limits.py has the rest)."""
    h = tiny_codec.tokenizer.grids(8192, 8192)
    huge = dict(fz.VALID, name=b"progvc-tiny", sha=tiny_codec.weights_sha256, width=8192, height=8192,
                frames=1 << 20, gop=1, coded=4, grids=tuple(h))
    lifted = progvc.Limits.unlimited()
    for tail in (bytes(30), fz.gop_bytes([bytes(8)] * 4, lengths=[(1 << 32) - 1] * 4) * 2):
        data = fz.header_bytes(huge) + tail
        small_and_fast(lambda d=data: tiny_codec.decode(d, limits=lifted))
        small_and_fast(lambda d=data: tiny_codec.decode(d, partial=True, limits=lifted))
        small_and_fast(lambda d=data: tiny_codec.decode_tokens(d, limits=lifted))


def test_module_level_decode_refuses_garbage_and_unknown_models(weights_dir):
    with pytest.raises(BitstreamError):
        progvc.decode(b"PGVC\x01" + bytes(100), device="cpu")
    unknown = fz.header_bytes(dict(fz.VALID, name=b"progvc-nobody")) + fz.gop_bytes([b""]) * 3
    with pytest.raises(WeightsError, match="progvc-nobody"):
        progvc.decode(unknown, device="cpu")


def test_name_longer_than_the_format_allows_is_refused():
    small_and_fast(lambda: bs.parse_header(fz.header_bytes(dict(fz.VALID, name=b"x" * 65))))
    with pytest.raises(BitstreamError, match="model name"):
        bs.pack(replace(bs.unpack(SYNTHETIC[0]), header=replace(bs.unpack(SYNTHETIC[0]).header, model_name="x" * 65)))


@pytest.mark.parametrize("thing", ["clip.pvc", None, 3, ["PGVC"]])
def test_non_bytes_are_refused_with_a_hint(tiny_codec, thing):
    for call in (bs.unpack, progvc.info, lambda x: progvc.truncate(x, n_scales=1), bs.parse_header,
                 tiny_codec.decode, tiny_codec.decode_tokens):
        with pytest.raises(BitstreamError, match="bytes"):
            call(thing)


def test_any_bytes_like_object_is_a_stream():
    data = SYNTHETIC[0]
    for view in (bytearray(data), memoryview(data), np.frombuffer(data, np.uint8).reshape(1, -1)):
        assert progvc.info(view).total_bytes == len(data)
        assert bs.unpack(view) == bs.unpack(data)


# -- the decoder -------------------------------------------------------------------------------

@pytest.mark.slow
@settings(max_examples=200, deadline=1000, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_decoder_survives_mutated_streams(tiny_codec, refs, data):
    d = HypothesisDraws(data)
    made = fz.mutate_stream(d, refs)
    assume(made is not None)
    fz.check_decoder(tiny_codec, d, *made)


def repack(ref, header=None, **chunks) -> bytes:
    """``ref``'s stream with chunks replaced (``g0k1=Chunk``) re-packed: new chunk CRCs, old crc_tokens."""
    gops = [list(c) for c in ref.stream.gops]
    for key, chunk in chunks.items():
        gops[int(key[1])][int(key[3])] = chunk
    return bs.pack(bs.Stream(header or ref.stream.header, tuple(tuple(c) for c in gops)))


def test_payload_bit_flips_with_recomputed_crcs_are_refused(tiny_codec, refs):
    ref = refs[0]
    chunk = ref.stream.gops[0][-1]
    outcomes = []
    for i in range(0, 8 * len(chunk.payload), 11):
        payload = bytearray(chunk.payload)
        payload[i // 8] ^= 1 << i % 8
        bad = repack(ref, g0k3=replace(chunk, payload=bytes(payload)))
        outcomes.append(fz.check_decoder(tiny_codec, fz.RandomDraws(i), bad, ref))  # refused, or exact tokens
    assert outcomes.count("rejected") > len(outcomes) // 2, outcomes


def test_chunks_swapped_between_gops_and_scales_are_refused(tiny_codec, refs):
    ref = refs[0]
    g0, g1 = ref.stream.gops
    for k in range(1, 4):
        with pytest.raises(BitstreamError, match="checksum"):
            tiny_codec.decode_tokens(repack(ref, **{f"g0k{k}": g1[k], f"g1k{k}": g0[k]}))
        with pytest.raises(BitstreamError, match="checksum|32-bit words"):
            tiny_codec.decode_tokens(repack(ref, **{f"g0k{k}": g0[k - 1], f"g0k{k - 1}": g0[k]}))


def test_chunks_from_another_stream_are_refused(tiny_codec, refs):
    a, b = refs[0], refs[1]
    # the two clips may share a coarse scale's chunk byte for byte: splicing that one changes nothing
    foreign = [k for k in range(1, 4) if a.stream.gops[0][k] != b.stream.gops[0][k]]
    assert len(foreign) >= 2, "the reference clips should differ at most scales"
    for k in foreign:
        with pytest.raises(BitstreamError, match="scale [234] of GOP 1 decoded"):
            tiny_codec.decode_tokens(repack(a, **{f"g0k{k}": b.stream.gops[0][k]}))


def test_wrong_model_hash_and_foreign_grids_are_refused_before_decoding(tiny_codec, refs, monkeypatch):
    ref = refs[0]
    h = ref.stream.header
    monkeypatch.setattr("progvc.coding.gop.GopState", None)  # nothing may be set up for these
    other_hash = repack(ref, replace(h, weights_sha256=bytes(32)))
    for call in (tiny_codec.decode, tiny_codec.decode_tokens):
        with pytest.raises(BitstreamError, match="weights 000000000000.*from_pretrained"):
            call(other_hash)
        for grids in (tuple((r + 1, c) for r, c in h.grids), h.grids[:3], h.grids + ((4, 4),)):
            bad = fz.header_bytes(dict(fz.VALID, name=h.model_name.encode(), sha=h.weights_sha256, width=h.width,
                                       height=h.height, frames=h.n_frames, gop=h.gop_size, coded=1, grids=grids))
            with pytest.raises(BitstreamError, match="scale schedule"):
                call(bad + fz.gop_bytes([b""]) * h.n_gops)


def huge_tiny_stream(codec) -> bytes:
    """Well-formed 70 KB: 2^20 frames of 8192x8192 in 4096 GOPs of 256, grids matching ``codec``."""
    f = dict(fz.VALID, name=codec.config.name.encode(), sha=codec.weights_sha256, width=8192, height=8192,
             frames=1 << 20, gop=256, coded=1, grids=tuple(codec.tokenizer.grids(8192, 8192)))
    return fz.header_bytes(f) + fz.gop_bytes([b""]) * 4096


def test_decoder_refuses_an_output_it_cannot_hold_before_allocating(tiny_codec, monkeypatch):
    try:
        np.empty((1 << 20, 8192, 8192, 3), np.uint8)  # 192 TiB
        pytest.skip("this system overcommits memory without limit")
    except MemoryError:
        pass
    monkeypatch.setattr("progvc.coding.gop.GopState", None)  # no GOP may be set up
    data = huge_tiny_stream(tiny_codec)
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB; tracemalloc counts the refused request
    t0 = time.perf_counter()
    with pytest.raises(BitstreamError, match=r"GiB.*iter_decode"):  # limits lifted: the allocation fails
        tiny_codec.decode(data, limits=progvc.Limits.unlimited())
    assert time.perf_counter() - t0 < 1.0
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss < 64 << 10


def test_allocation_failures_while_decoding_become_bitstream_errors(tiny_codec, refs, monkeypatch):
    def oom(*args, **kwargs):
        raise RuntimeError("[enforce fail at alloc_cpu.cpp:127] DefaultCPUAllocator: can't allocate memory: "
                           "you tried to allocate 34359738368 bytes")

    monkeypatch.setattr("progvc.coding.gop.GopState", oom)
    for call in (tiny_codec.decode, tiny_codec.decode_tokens):
        with pytest.raises(BitstreamError, match="more memory"):
            call(refs[0].data)


@pytest.mark.parametrize("seed", [-1, 2.5, "7", 1 << 64, True])
def test_decode_refuses_bad_seeds_with_config_error(tiny_codec, refs, seed):
    with pytest.raises(ConfigError, match="seed"):
        tiny_codec.decode(refs[0].data, seed=seed)


def test_probability_drift_on_the_decoder_is_refused_not_garbage(tiny_codec, refs, monkeypatch):
    """What decoding on another kind of device looks like: logits a hair off before quantising."""
    real = entropy.probability_table
    gen = torch.Generator().manual_seed(0)
    monkeypatch.setattr("progvc.coding.gop.probability_table",
                        lambda logits, temperature=1.0: real(logits + 1e-4 * torch.randn(logits.shape, generator=gen),
                                                             temperature))
    for ref in refs:
        with pytest.raises(BitstreamError, match="another kind of device"):
            tiny_codec.decode_tokens(ref.data)


def test_slightly_different_weights_on_the_decoder_are_refused_not_garbage():
    encoder = Codec.from_config(tiny_config(), seed=0, device="cpu")
    decoder = Codec.from_config(tiny_config(), seed=0, device="cpu")
    with torch.no_grad():
        decoder.context.head.weight.mul_(1 + 1e-3)  # same identity (hash), logits 0.1% off
    data = encoder.encode(smooth_clip(3, 16, 16, seed=7))
    with pytest.raises(BitstreamError, match="another kind of device"):
        decoder.decode(data)


def encode_decode_with_threads(codec, x, encode_threads: int, decode_threads: int):
    """(tokens the encoder saw, tokens decoded) with torch using the given CPU thread counts."""
    try:
        torch.set_num_threads(encode_threads)
        data = codec.encode(x)
        sent = codec.decode_tokens(data)
        torch.set_num_threads(decode_threads)
        return sent, codec.decode_tokens(data)
    finally:
        torch.set_num_threads(1)


def test_thread_count_mismatch_is_refused_not_garbage(tiny_codec):
    x = smooth_clip(3, 48, 64, seed=9)
    for threads in ((2, 1), (1, 2)):
        try:
            sent, got = encode_decode_with_threads(tiny_codec, x, *threads)
        except BitstreamError as exc:
            assert "another kind of device" in str(exc)
        else:
            assert all(torch.equal(a, b) for ga, gb in zip(sent, got, strict=True) for a, b in zip(ga, gb, strict=True))


@pytest.mark.parametrize("threads", [(2, 1), (1, 2)])
def test_thread_count_does_not_change_the_tokens(tiny_codec, threads):
    sent, got = encode_decode_with_threads(tiny_codec, smooth_clip(3, 48, 64, seed=9), *threads)
    assert all(torch.equal(a, b) for ga, gb in zip(sent, got, strict=True) for a, b in zip(ga, gb, strict=True))


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_cpu_cross_decode():
    """A stream made on one kind of device decodes exactly on the other, or is refused by name."""
    cpu = Codec.from_config(tiny_config(), seed=0, device="cpu")
    gpu = Codec.from_config(tiny_config(), seed=0, device="cuda")
    assert cpu.weights_sha256 == gpu.weights_sha256
    x = smooth_clip(5, 48, 64, seed=8)
    for encoder, decoder in ((gpu, cpu), (cpu, gpu)):
        data = encoder.encode(x)
        sent = encoder.decode_tokens(data)
        try:
            got = decoder.decode_tokens(data)
        except BitstreamError as exc:
            assert "another kind of device" in str(exc)
            continue
        assert all(torch.equal(a, b) for ga, gb in zip(sent, got, strict=True) for a, b in zip(ga, gb, strict=True))


# -- weights files (what tests/test_weights.py does not cover) -----------------------------------

def test_a_model_has_one_identity():
    """The weights hash names the model in every stream, so the same weights must give the same
    bytes on every call (safetensors writes its metadata in hash-map order; serialize sorts it)."""
    cfg = tiny_config()
    state = random_weights(cfg)
    assert len({serialize(state, cfg) for _ in range(16)}) == 1
    assert len({Codec.from_config(cfg, seed=0, device="cpu").weights_sha256 for _ in range(4)}) == 1


@pytest.mark.parametrize("manifest", [
    "{not json", "[]", '"x"', '{"models": []}', b"\xff\xfe\x00",
    '{"default": "tiny-shipped", "models": {"tiny-shipped": "tiny.safetensors"}}',
    '{"default": "tiny-shipped", "models": {"tiny-shipped": {"file": "tiny.safetensors"}}}',
    '{"default": "tiny-shipped", "models": {"tiny-shipped": {"file": 5, "sha256": "00"}}}',
    '{"default": ["tiny-shipped"], "models": {}}',
])
def test_corrupt_manifest_is_refused_by_name(weights_dir, manifest):
    path = weights_dir / "manifest.json"
    path.write_bytes(manifest if isinstance(manifest, bytes) else manifest.encode())
    with pytest.raises(WeightsError, match="manifest.json is not a valid weights manifest"):
        load_named()


def test_manifest_that_is_a_directory_is_refused(weights_dir):
    (weights_dir / "manifest.json").unlink()
    (weights_dir / "manifest.json").mkdir()
    with pytest.raises(WeightsError, match="manifest"):
        load_named()


def test_manifest_entry_pointing_to_a_missing_file_is_refused(weights_dir):
    manifest = json.loads((weights_dir / "manifest.json").read_text())
    manifest["models"]["tiny-shipped"]["file"] = "gone.safetensors"
    (weights_dir / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(WeightsError, match="gone.safetensors"):
        Codec.from_pretrained(device="cpu")


def config_json(**changes) -> str:
    raw = json.loads(tiny_config(name="tiny-shipped").to_json())
    for path, value in changes.items():
        part, _, key = path.rpartition("__")
        (raw[part] if part else raw)[key] = value
    return json.dumps(raw)


@pytest.mark.parametrize("config", [
    "{corrupt", '"a string"', "null", "[]", config_json(context__heads=0), config_json(tokenizer__n_scales=2.5),
    config_json(tokenizer__channels=[]), config_json(context__mlp_ratio=-1.0), config_json(name=5),
    config_json(context__temporal_window=1.5), config_json(tokenizer__latent_channels=-1),
    config_json(tokenizer__channels=[16, "32"]),
])
def test_weights_file_with_a_corrupt_config_is_refused(tmp_path, config):
    from safetensors.torch import save

    state = {k: v.contiguous() for k, v in random_weights(tiny_config(name="tiny-shipped")).items()}
    path = tmp_path / "bad.safetensors"
    path.write_bytes(save(state, metadata={"format": "progvc-weights/1", "config": config}))
    with pytest.raises(WeightsError, match="bad.safetensors"):
        Codec.from_file(path)


def test_weights_file_that_does_not_exist_is_refused(tmp_path):
    with pytest.raises(WeightsError, match="nope.safetensors"):
        Codec.from_file(tmp_path / "nope.safetensors")
