"""Position words → allowed cells: whole words only, per axis, conflicts left free."""

from __future__ import annotations

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from nemo_hf.mosaic import POSITION_WORDS, allowed_cells

VOCABULARY = {word for words in POSITION_WORDS.values() for word in words}
ALL = {2: [0, 1, 2, 3], 3: list(range(9))}
# Words that carry no absolute position, for building random sentences around one keyword.
FILLER = ["the", "man", "in", "a", "red", "shirt", "yellow", "laptop", "bright", "dog", "with", "hat", "two", "near"]


def column(grid: int, col: int) -> list[int]:
    return [r * grid + col for r in range(grid)]


def row(grid: int, r: int) -> list[int]:
    return [r * grid + c for c in range(grid)]


@pytest.mark.parametrize(
    ("sentence", "grid", "expected"),
    [
        ("man on the left", 2, [0, 2]),
        ("guy far left", 2, [0, 2]),
        ("leftmost zebra", 3, [0, 3, 6]),
        ("RIGHT side", 2, [1, 3]),
        ("rightmost cup", 3, [2, 5, 8]),
        ("top pizza", 2, [0, 1]),
        ("the shelf above", 3, [0, 1, 2]),
        ("upper half", 2, [0, 1]),
        ("bottom bowl", 2, [2, 3]),
        ("dog under the table", 2, [2, 3]),
        ("lower one", 3, [6, 7, 8]),
        ("cat beneath", 2, [2, 3]),
        ("top left", 2, [0]),
        ("top-left corner", 3, [0]),
        ("lower right", 2, [3]),
        ("bottom right", 3, [8]),
        ("left's shoulder", 2, [0, 2]),
        # Conflicts leave that axis free; the other axis still applies.
        ("left of the man on the right", 2, ALL[2]),
        ("top guy, left of the right one", 2, [0, 1]),
        ("above and below", 3, ALL[3]),
        # Middle words: 3×3 only, on every axis no other word fixes.
        ("middle", 3, [4]),
        ("the center one", 3, [4]),
        ("centre", 3, [4]),
        ("middle left", 3, [3]),
        ("top middle", 3, [1]),
        ("central top left", 3, [0]),
        ("middle, between left and right", 3, [4]),
        ("middle", 2, ALL[2]),
        ("middle left", 2, [0, 2]),
        # Substrings of other words never count.
        ("yellow laptop", 2, ALL[2]),
        ("bright lefty topping", 3, ALL[3]),
        ("flowers belowground? no: underwear, bottomless, uppercase, centered", 2, ALL[2]),
        ("", 3, ALL[3]),
    ],
)
def test_examples(sentence: str, grid: int, expected: list[int]) -> None:
    assert allowed_cells(sentence, grid) == expected


@given(
    grid=st.sampled_from([2, 3]),
    before=st.lists(st.sampled_from(FILLER), max_size=6),
    after=st.lists(st.sampled_from(FILLER), max_size=6),
    keyword=st.sampled_from(["left", "Left", "LEFT", "leftmost", "far left"]),
    repeat=st.integers(1, 3),
)
def test_left_only_gives_the_left_column(
    grid: int, before: list[str], after: list[str], keyword: str, repeat: int
) -> None:
    sentence = " ".join([*before, *[keyword] * repeat, *after])
    assert allowed_cells(sentence, grid) == column(grid, 0)


@given(
    grid=st.sampled_from([2, 3]),
    horizontal=st.sampled_from(sorted(POSITION_WORDS["left"] + POSITION_WORDS["right"])),
    vertical=st.sampled_from(sorted(POSITION_WORDS["top"] + POSITION_WORDS["bottom"])),
    filler=st.lists(st.sampled_from(FILLER), max_size=5),
)
def test_one_word_per_axis_gives_one_cell(grid: int, horizontal: str, vertical: str, filler: list[str]) -> None:
    col = 0 if horizontal in POSITION_WORDS["left"] else grid - 1
    r = 0 if vertical in POSITION_WORDS["top"] else grid - 1
    sentence = " ".join([vertical, *filler, horizontal])
    assert allowed_cells(sentence, grid) == sorted(set(column(grid, col)) & set(row(grid, r)))


letters = st.text(alphabet="abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_", max_size=6)


@given(
    grid=st.sampled_from([2, 3]),
    key=st.sampled_from(
        ["top", "low", "left", "right", "under", "upper", "bottom", "above", "below", "middle", "center"]
    ),
    prefix=letters,
    suffix=letters,
    filler=st.lists(st.sampled_from(FILLER), max_size=4),
)
def test_words_embedded_in_other_words_never_match(
    grid: int, key: str, prefix: str, suffix: str, filler: list[str]
) -> None:
    word = prefix + key + suffix
    assume(prefix or suffix)
    assume(word.lower() not in VOCABULARY)
    assert allowed_cells(" ".join([*filler, word, *filler]), grid) == ALL[grid]


@given(grid=st.sampled_from([2, 3]), text=st.text(max_size=40))
def test_result_is_a_sorted_nonempty_subset_of_cells(grid: int, text: str) -> None:
    cells = allowed_cells(text, grid)
    assert cells and cells == sorted(set(cells)) and set(cells) <= set(ALL[grid])


def test_bad_grid_is_refused() -> None:
    with pytest.raises(ValueError, match="grid must be one of"):
        allowed_cells("left", 4)


def test_every_position_word_the_synthetic_world_says_places_the_target() -> None:
    """"the lowest cyan triangle" went to any row: the synthetic expressions' superlatives and absolute positions
    were not all in the vocabulary, so mosaics contradicted their own sentences (found in the fair test's mosaics)."""
    from nemo_hf.data.meaning import COLUMNS, EXTREMES, ROWS

    for word in (*EXTREMES, *COLUMNS, *ROWS):
        if word != "middle":  # a 2x2 grid has no middle cell
            assert word in VOCABULARY, word
    assert allowed_cells("the lowest cyan triangle", 2) == [2, 3]
    assert allowed_cells("the highest star on the right", 2) == [1]
