from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from webhook_kit.encoding import (
    GSM7,
    UCS2,
    SegmentInfo,
    analyze,
    is_gsm7,
    segment_count,
    smart_encode,
)

# GSM 03.38 written independently of the module: code points, one table column per line
# (twilio-protocol.md 6.2), so a look-alike character typed into the module would be caught.
# fmt: off
REF_BASIC = frozenset([
    # column 0x00
    0x40, 0xA3, 0x24, 0xA5, 0xE8, 0xE9, 0xF9, 0xEC, 0xF2, 0xC7, 0x0A, 0xD8, 0xF8, 0x0D, 0xC5, 0xE5,
    # column 0x10; 0x1B is ESC, not a character
    0x394, 0x5F, 0x3A6, 0x393, 0x39B, 0x3A9, 0x3A0, 0x3A8, 0x3A3, 0x398, 0x39E,
    0xC6, 0xE6, 0xDF, 0xC9,
    0x20, 0x21, 0x22, 0x23, 0xA4, *range(0x25, 0x30),  # column 0x20
    *range(0x30, 0x40),  # column 0x30
    0xA1, *range(0x41, 0x50),  # column 0x40
    *range(0x50, 0x5B), 0xC4, 0xD6, 0xD1, 0xDC, 0xA7,  # column 0x50
    0xBF, *range(0x61, 0x70),  # column 0x60
    *range(0x70, 0x7B), 0xE4, 0xF6, 0xF1, 0xFC, 0xE0,  # column 0x70
])
# fmt: on
REF_EXTENSION = frozenset([0x0C, 0x5E, 0x7B, 0x7D, 0x5C, 0x5B, 0x7E, 0x5D, 0x7C, 0x20AC])
BASIC_CHARS = "".join(map(chr, sorted(REF_BASIC)))
EXTENSION_CHARS = "".join(map(chr, sorted(REF_EXTENSION)))
EMOJI = "\N{GRINNING FACE}"
C_CEDILLA = "\N{LATIN SMALL LETTER C WITH CEDILLA}"  # not GSM; only the capital is
LDQ, RDQ = "\N{LEFT DOUBLE QUOTATION MARK}", "\N{RIGHT DOUBLE QUOTATION MARK}"
LSQ, RSQ = "\N{LEFT SINGLE QUOTATION MARK}", "\N{RIGHT SINGLE QUOTATION MARK}"
BMP = [chr(code) for code in range(0x10000) if not 0xD800 <= code <= 0xDFFF]


def naive_is_gsm7(text: str) -> bool:
    return all(ord(c) in REF_BASIC or ord(c) in REF_EXTENSION for c in text)


def naive_sizes(text: str, toll_free: bool) -> tuple[int, ...]:
    """Character-by-character model of how a handset packs segments."""
    gsm = naive_is_gsm7(text)
    if gsm:
        costs = [2 if ord(c) in REF_EXTENSION else 1 for c in text]
        single, multi = 160, 152 if toll_free else 153
    else:
        costs = [len(c.encode("utf-16-le", "surrogatepass")) // 2 for c in text]
        single, multi = 70, 66 if toll_free else 67
    if sum(costs) <= single:
        return (sum(costs),)
    sizes, used = [], 0
    for cost in costs:
        if used + cost > multi:
            sizes.append(used)
            used = 0
        used += cost
    sizes.append(used)
    return tuple(sizes)


# --- worked examples -------------------------------------------------------------------------


def test_161_gsm_chars_are_two_segments_of_153_and_8() -> None:
    assert analyze("a" * 161) == SegmentInfo(
        encoding=GSM7,
        units=161,
        segments=2,
        segment_sizes=(153, 8),
        per_segment=153,
        unicode_chars=(),
    )


def test_160_gsm_chars_fit_one_segment() -> None:
    info = analyze("a" * 160)
    assert (info.segments, info.segment_sizes, info.per_segment) == (1, (160,), 160)


def test_one_emoji_forces_ucs2_and_is_reported() -> None:
    info = analyze(f"Thanks {EMOJI}")
    assert info.encoding == UCS2
    assert info.units == 9  # the emoji is a surrogate pair
    assert info.unicode_chars == (EMOJI,)


def test_unicode_chars_are_distinct_in_first_appearance_order() -> None:
    text = f"{C_CEDILLA}a va {EMOJI} {C_CEDILLA}a \N{THUMBS UP SIGN} {EMOJI}"
    assert analyze(text).unicode_chars == (C_CEDILLA, EMOJI, "\N{THUMBS UP SIGN}")


@pytest.mark.parametrize("char", ["\N{EURO SIGN}", "[", "]", "{", "}", "~", "^", "|", "\\", "\f"])
def test_extension_chars_cost_two_septets(char: str) -> None:
    assert is_gsm7(char)
    info = analyze(f"a{char}b")
    assert (info.encoding, info.units) == (GSM7, 4)


@pytest.mark.parametrize(
    "char",
    [
        "\N{LATIN SMALL LETTER E WITH ACUTE}",
        "\N{LATIN SMALL LETTER A WITH DIAERESIS}",
        "\N{LATIN CAPITAL LETTER C WITH CEDILLA}",
        "@",
        "\N{POUND SIGN}",
        "\n",
        "\r",
    ],
)
def test_basic_chars_are_gsm_and_cost_one_septet(char: str) -> None:
    assert is_gsm7(char)
    assert analyze(char).units == 1


@pytest.mark.parametrize("char", ["`", C_CEDILLA, LDQ, RDQ, LSQ, RSQ, "\t", "\x1b"])
def test_non_gsm_chars(char: str) -> None:
    assert not is_gsm7(char)
    assert analyze(f"plain {char}").encoding == UCS2


def test_empty_text_is_one_segment_of_zero_units() -> None:
    assert analyze("") == SegmentInfo(GSM7, 0, 1, (0,), 160, ())
    assert segment_count("") == 1


def test_lone_surrogate_counts_one_utf16_unit() -> None:
    info = analyze("a\ud800")
    assert (info.encoding, info.units) == (UCS2, 2)


def test_gsm_set_matches_the_reference_table_exactly() -> None:
    assert {ord(c) for c in BMP if is_gsm7(c)} == REF_BASIC | REF_EXTENSION
    assert not is_gsm7(EMOJI)


# --- boundaries ------------------------------------------------------------------------------

ONE_UNIT = C_CEDILLA  # a one-unit UCS-2 character


@pytest.mark.parametrize(
    ("text", "toll_free", "encoding", "per_segment", "sizes"),
    [
        (ONE_UNIT * 70, False, UCS2, 70, (70,)),
        (ONE_UNIT * 71, False, UCS2, 67, (67, 4)),
        (ONE_UNIT * 134, False, UCS2, 67, (67, 67)),
        (ONE_UNIT * 135, False, UCS2, 67, (67, 67, 1)),
        ("a" * 306, False, GSM7, 153, (153, 153)),
        ("a" * 307, False, GSM7, 153, (153, 153, 1)),
        # Toll-free: single-segment limits unchanged, multi-segment capacity one smaller.
        ("a" * 160, True, GSM7, 160, (160,)),
        ("a" * 161, True, GSM7, 152, (152, 9)),
        ("a" * 304, True, GSM7, 152, (152, 152)),
        ("a" * 305, True, GSM7, 152, (152, 152, 1)),
        (ONE_UNIT * 70, True, UCS2, 70, (70,)),
        (ONE_UNIT * 71, True, UCS2, 66, (66, 5)),
        (ONE_UNIT * 132, True, UCS2, 66, (66, 66)),
        (ONE_UNIT * 133, True, UCS2, 66, (66, 66, 1)),
        # Extension chars right at the single-segment limit.
        ("{" * 80, False, GSM7, 160, (160,)),
        ("{" * 80 + "a", False, GSM7, 153, (152, 9)),
        (EMOJI * 35, False, UCS2, 70, (70,)),
    ],
)
def test_segment_boundaries(
    text: str, toll_free: bool, encoding: str, per_segment: int, sizes: tuple[int, ...]
) -> None:
    info = analyze(text, toll_free=toll_free)
    assert (info.encoding, info.per_segment, info.segment_sizes) == (encoding, per_segment, sizes)
    assert (info.segments, info.units) == (len(sizes), sum(sizes))
    assert segment_count(text, toll_free=toll_free) == len(sizes)


def test_escape_pair_moves_whole_to_next_segment() -> None:
    # 152 septets then a two-septet euro: it would straddle 153, so segment one ends at 152.
    text = "a" * 152 + "\N{EURO SIGN}" + "a" * 152
    info = analyze(text)
    assert info.units == 306  # would fit two full segments if pairs could split
    assert info.segment_sizes == (152, 153, 1)
    assert segment_count(text) == 3


def test_escape_pair_straddle_with_toll_free() -> None:
    text = "a" * 151 + "[" + "a" * 10
    assert analyze(text, toll_free=True).segment_sizes == (151, 12)
    assert analyze(text).segment_sizes == (153, 10)


def test_surrogate_pair_moves_whole_to_next_segment() -> None:
    text = "a" * 66 + EMOJI + "a" * 66
    info = analyze(text)
    assert info.units == 134
    assert info.segment_sizes == (66, 67, 1)
    assert segment_count(text) == 3


def test_surrogate_pair_straddle_with_toll_free() -> None:
    text = "a" * 65 + EMOJI + "a" * 10
    assert analyze(text, toll_free=True).segment_sizes == (65, 12)


# --- smart encoding --------------------------------------------------------------------------


def test_smart_quotes_become_gsm_and_save_a_segment() -> None:
    text = f"{LDQ}Hello{RDQ} {LSQ}world{RSQ} " + "x" * 60
    result = smart_encode(text)
    assert result.text == "\"Hello\" 'world' " + "x" * 60
    assert result.replacements == ((LDQ, '"'), (RDQ, '"'), (LSQ, "'"), (RSQ, "'"))
    assert (result.before.encoding, result.before.segments) == (UCS2, 2)
    assert (result.after.encoding, result.after.segments) == (GSM7, 1)


def test_gsm_text_is_unchanged() -> None:
    text = "Price: 5\N{EURO SIGN} [ok] {x} ~ ^ | \\ \N{LATIN SMALL LETTER E WITH ACUTE}"
    result = smart_encode(text)
    assert result.text == text
    assert result.replacements == ()
    assert result.before == result.after == analyze(text)


def test_replacements_are_distinct_in_first_appearance_order() -> None:
    result = smart_encode(f"{RDQ}a{LDQ}\N{EM DASH}{RDQ}")
    assert result.replacements == ((RDQ, '"'), (LDQ, '"'), ("\N{EM DASH}", "-"))


def test_replacements_apply_even_if_text_stays_ucs2() -> None:
    result = smart_encode(f"{LDQ}hi{RDQ} {EMOJI}")
    assert result.text == f'"hi" {EMOJI}'
    assert result.after.encoding == UCS2
    assert result.after.unicode_chars == (EMOJI,)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "\N{LEFT-POINTING DOUBLE ANGLE QUOTATION MARK}a"
            "\N{RIGHT-POINTING DOUBLE ANGLE QUOTATION MARK}",
            '"a"',
        ),
        ("\N{DOUBLE LOW-9 QUOTATION MARK}a\N{MODIFIER LETTER DOUBLE PRIME}", '"a"'),
        ("it\N{MODIFIER LETTER APOSTROPHE}s \N{ACUTE ACCENT}`", "it's ''"),
        (
            "\N{SINGLE LEFT-POINTING ANGLE QUOTATION MARK}a"
            "\N{SINGLE RIGHT-POINTING ANGLE QUOTATION MARK}",
            "<a>",
        ),
        ("a\N{EN DASH}b\N{EM DASH}c\N{BULLET}d\N{HYPHEN}e", "a-b-c-d-e"),
        (
            "\N{VULGAR FRACTION ONE QUARTER}\N{VULGAR FRACTION ONE HALF}"
            "\N{VULGAR FRACTION THREE QUARTERS}",
            "1/41/23/4",
        ),
        ("6\N{DIVISION SIGN}3\N{FRACTION SLASH}", "6/3/"),
        ("wait\N{HORIZONTAL ELLIPSIS}", "wait..."),
        ("no\N{DOUBLE EXCLAMATION MARK}", "no!!"),
        ("a\N{IDEOGRAPHIC COMMA}b", "a,b"),
        ("a\u00a0b\u2009c\u200ad\u3000e\u202ff\u2028g", "a b c d e f g"),
        ("a\u200bb\ufeffc\u2060d\x00e", "abcde"),
        ("a\tb", "a" + " " * 7 + "b"),
        (
            "\N{FULLWIDTH LATIN CAPITAL LETTER A}\N{FULLWIDTH LATIN SMALL LETTER Z}"
            "\N{FULLWIDTH DIGIT SEVEN}\N{FULLWIDTH EXCLAMATION MARK}"
            "\N{FULLWIDTH CIRCUMFLEX ACCENT}\N{FULLWIDTH GRAVE ACCENT}",
            "Az7!^'",
        ),
        ("\N{SMALL QUESTION MARK}\N{SMALL EM DASH}\N{SMALL IDEOGRAPHIC COMMA}", "?-,"),
        ("\N{LATIN LETTER SMALL CAPITAL R}\N{LATIN LETTER SMALL CAPITAL F}", "RF"),
        ("\N{MEDIUM LEFT PARENTHESIS ORNAMENT}x\N{MEDIUM RIGHT CURLY BRACKET ORNAMENT}", "(x}"),
    ],
)
def test_smart_replacements(text: str, expected: str) -> None:
    result = smart_encode(text)
    assert result.text == expected
    assert result.after.encoding == GSM7


def test_every_fullwidth_ascii_char_maps_to_its_ascii_counterpart() -> None:
    for code in range(0xFF01, 0xFF5F):
        ascii_char = chr(code - 0xFEE0)
        expected = "'" if ascii_char == "`" else ascii_char  # backtick itself is not GSM
        assert smart_encode(chr(code)).text == expected


def test_smart_encoding_of_every_bmp_char_is_gsm_or_untouched() -> None:
    for char in BMP:
        result = smart_encode(char)
        if is_gsm7(char) or not result.replacements:
            assert (result.text, result.replacements) == (char, ())
        else:
            assert result.replacements == ((char, result.text),)
            assert is_gsm7(result.text)


# --- properties ------------------------------------------------------------------------------

ALPHABET = st.one_of(
    st.sampled_from(BASIC_CHARS),
    st.sampled_from(EXTENSION_CHARS),
    st.sampled_from([EMOJI, C_CEDILLA, LDQ, "\t", "\N{CJK UNIFIED IDEOGRAPH-4E2D}"]),
    st.characters(),
)
GSM_ALPHABET = st.sampled_from(BASIC_CHARS + EXTENSION_CHARS)


def repeated(alphabet: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    """Long texts built from a repeated chunk, to land near segment boundaries."""
    return st.builds(
        lambda chunk, times, tail: chunk * times + tail,
        st.text(alphabet, min_size=1, max_size=6),
        st.integers(1, 120),
        st.text(alphabet, max_size=12),
    )


TEXTS = st.one_of(
    st.text(ALPHABET, max_size=400),
    st.text(GSM_ALPHABET, max_size=400),
    repeated(ALPHABET),
    repeated(GSM_ALPHABET),
)


@given(TEXTS, st.booleans())
def test_segment_count_matches_analyze(text: str, toll_free: bool) -> None:
    assert segment_count(text, toll_free=toll_free) == analyze(text, toll_free=toll_free).segments


@given(TEXTS, st.booleans())
def test_layout_is_consistent(text: str, toll_free: bool) -> None:
    info = analyze(text, toll_free=toll_free)
    assert sum(info.segment_sizes) == info.units
    assert len(info.segment_sizes) == info.segments
    assert all(size <= info.per_segment for size in info.segment_sizes)
    assert (info.unicode_chars == ()) == (info.encoding == GSM7)


@given(TEXTS, st.booleans())
def test_layout_matches_naive_model(text: str, toll_free: bool) -> None:
    assert analyze(text, toll_free=toll_free).segment_sizes == naive_sizes(text, toll_free)


@given(st.text(st.sampled_from(BASIC_CHARS), max_size=400))
def test_basic_only_text_costs_one_septet_per_char(text: str) -> None:
    info = analyze(text)
    assert (info.encoding, info.units) == (GSM7, len(text))


@given(TEXTS)
def test_is_gsm7_matches_naive_reference(text: str) -> None:
    assert is_gsm7(text) == naive_is_gsm7(text)
    assert (analyze(text).encoding == GSM7) == naive_is_gsm7(text)


@given(TEXTS, ALPHABET, st.integers(min_value=0), st.booleans())
def test_adding_a_char_never_lowers_the_count(
    text: str, char: str, position: int, toll_free: bool
) -> None:
    position %= len(text) + 1
    longer = text[:position] + char + text[position:]
    if analyze(text).encoding == analyze(longer).encoding:
        before = segment_count(text, toll_free=toll_free)
        assert segment_count(longer, toll_free=toll_free) >= before
