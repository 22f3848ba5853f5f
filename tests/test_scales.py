from hypothesis import given
from hypothesis import strategies as st

from progvc.stream.scales import prefix_terms, scale_grids


def test_var_like_schedule_for_square_latent():
    assert [r for r, _ in scale_grids(16, 16, 10)] == [1, 2, 3, 4, 5, 6, 7, 9, 12, 16]


@given(st.integers(1, 300), st.integers(1, 300), st.integers(1, 16))
def test_grids_grow_from_one_cell_to_the_full_latent(h, w, k):
    grids = scale_grids(h, w, k)
    assert len(grids) == k
    assert grids[-1] == (h, w)
    if k > 1:
        assert grids[0] == (1, 1) or max(h, w) < k
    for (r0, c0), (r1, c1) in zip(grids, grids[1:], strict=False):
        assert r1 >= r0 and c1 >= c0 and 1 <= r0 <= h and 1 <= c0 <= w
    if max(h, w) >= k:  # long side strictly increases when there is room
        sides = [max(g) if h == w else (g[0] if h > w else g[1]) for g in grids]
        assert all(b > a for a, b in zip(sides, sides[1:], strict=False))


def test_prefix_terms_aim_at_the_prefixes_a_stream_is_cut_to_and_keep_the_finest_scales():
    assert prefix_terms(10) == ((6, 8, 9), 8)
    assert prefix_terms(4) == ((2, 3), 2)
    assert prefix_terms(1) == ((), 1)
