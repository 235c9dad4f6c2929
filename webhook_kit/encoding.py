"""SMS encoding and segment arithmetic, so a reply's cost is known before Twilio bills it.

Twilio sends a body as GSM-7 when every character is in the GSM 03.38 basic or extension
table, otherwise as UCS-2; concatenated messages lose room to the User Data Header.
:func:`segment_count` runs on the request hot path, so its common case stays in C
(``str.isascii``, ``bytes.translate``); :func:`analyze` adds the detail a CLI or log needs.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable
from contextlib import suppress
from dataclasses import dataclass
from string import ascii_uppercase
from typing import Final

GSM7: Final = "GSM-7"
UCS2: Final = "UCS-2"

# One segment carries 140 octets: 160 septets or 70 UTF-16 code units. A concatenated segment
# gives up room to the User Data Header; toll-free US/CA traffic gives up one unit more.
_GSM7_SINGLE: Final = 160
_GSM7_MULTI: Final = 153
_GSM7_MULTI_TOLL_FREE: Final = 152
_UCS2_SINGLE: Final = 70
_UCS2_MULTI: Final = 67
_UCS2_MULTI_TOLL_FREE: Final = 66

# GSM 03.38 basic table in code order, 16 codes per line, so it can be audited against the spec.
_GSM7_BASIC_TABLE: Final = (
    "@£$¥èéùìòÇ\nØø\rÅå"  # 0x00-0x0F
    "Δ_ΦΓΛΩΠΨΣΘΞ\x1bÆæßÉ"  # 0x10-0x1F
    " !\"#¤%&'()*+,-./"  # 0x20-0x2F
    "0123456789:;<=>?"  # 0x30-0x3F
    "¡ABCDEFGHIJKLMNO"  # 0x40-0x4F
    "PQRSTUVWXYZÄÖÑÜ§"  # 0x50-0x5F
    "¿abcdefghijklmno"  # 0x60-0x6F
    "pqrstuvwxyzäöñüà"  # 0x70-0x7F
)
# 0x1B is the escape into the extension table, not a character a text can contain.
_GSM7_BASIC: Final = frozenset(_GSM7_BASIC_TABLE) - {"\x1b"}
# Sent as ESC + code, so each costs two septets.
_GSM7_EXTENSION_CHARS: Final = "\f^{}\\[~]|\N{EURO SIGN}"
_GSM7: Final = _GSM7_BASIC | frozenset(_GSM7_EXTENSION_CHARS)

# The ASCII fast path deletes known bytes and looks at what is left.
_ASCII_BASIC: Final = bytes(sorted(ord(char) for char in _GSM7_BASIC if char.isascii()))
_ASCII_EXTENSION: Final = _GSM7_EXTENSION_CHARS.encode("ascii", "ignore")
_EXTENSION_RE: Final = re.compile(f"[{re.escape(_GSM7_EXTENSION_CHARS)}]")
# Characters outside the BMP: a surrogate pair in UTF-16.
_ASTRAL_RE: Final = re.compile("[\U00010000-\U0010ffff]")


@dataclass(frozen=True, slots=True)
class SegmentInfo:
    """How Twilio will split one message body, and why it chose the encoding it did."""

    encoding: str  # GSM7 or UCS2
    units: int  # septets (extension characters count two) or UTF-16 code units
    segments: int
    segment_sizes: tuple[int, ...]  # units in each segment, in order
    per_segment: int  # capacity that applied: the single-segment limit, or the multi-part one
    unicode_chars: tuple[str, ...]  # distinct characters that forced UCS-2, first seen first


@dataclass(frozen=True, slots=True)
class SmartEncoding:
    """A text after Twilio Smart Encoding, with both costs so the saving can be shown."""

    text: str
    replacements: tuple[tuple[str, str], ...]
    before: SegmentInfo
    after: SegmentInfo


def is_gsm7(text: str) -> bool:
    """True when Twilio can send ``text`` as GSM-7; one other character forces UCS-2."""
    return _GSM7.issuperset(text)


def _measure(text: str) -> tuple[bool, int]:
    """Return (GSM-7?, units) for a whole text; the ASCII branch avoids any per-char Python."""
    if text.isascii():
        rest = text.encode("ascii").translate(None, _ASCII_BASIC)
        if not rest:
            return True, len(text)
        if rest.translate(None, _ASCII_EXTENSION):
            return False, len(text)
        return True, len(text) + len(rest)
    if _GSM7.issuperset(text):
        return True, len(text) + len(_EXTENSION_RE.findall(text))
    # surrogatepass: a lone surrogate in a str still costs one UTF-16 unit rather than raising.
    return False, len(text.encode("utf-16-le", "surrogatepass")) // 2


def _multi_capacity(gsm: bool, toll_free: bool) -> int:
    if gsm:
        return _GSM7_MULTI_TOLL_FREE if toll_free else _GSM7_MULTI
    return _UCS2_MULTI_TOLL_FREE if toll_free else _UCS2_MULTI


def _pair_test(text: str, gsm: bool) -> Callable[[int], bool]:
    """Tell whether a two-unit character (escape or surrogate pair) begins at a unit offset."""
    if gsm:
        # Spelling each extension character as ESC + char makes the string index by septet;
        # str.replace keeps this in C even for texts full of brackets.
        septets = text
        for char in _GSM7_EXTENSION_CHARS:
            septets = septets.replace(char, "\x1b" + char)
        return lambda unit: septets[unit] == "\x1b"
    # Astral characters are rare (emoji), so listing them is cheap. The n-th one starts n units
    # after its index, one extra unit per surrogate pair before it.
    return frozenset(m.start() + n for n, m in enumerate(_ASTRAL_RE.finditer(text))).__contains__


def _fill(units: int, capacity: int, pair_at: Callable[[int], bool]) -> tuple[int, ...]:
    """Split ``units`` into full segments, ending one unit early where a pair would straddle.

    Handsets cannot reassemble an escape pair or a surrogate pair cut across two segments,
    so such a character moves whole into the next segment.
    """
    sizes: list[int] = []
    start = 0
    while start < units:
        end = min(start + capacity, units)
        if end < units and pair_at(end - 1):
            end -= 1
        sizes.append(end - start)
        start = end
    return tuple(sizes)


def segment_count(text: str, *, toll_free: bool = False) -> int:
    """Number of segments Twilio will bill for ``text``; same answer as :func:`analyze`, faster."""
    gsm, units = _measure(text)
    if units <= (_GSM7_SINGLE if gsm else _UCS2_SINGLE):
        return 1
    capacity = _multi_capacity(gsm, toll_free)
    if units == len(text):  # every character is one unit, so no pair can straddle a boundary
        return -(-units // capacity)
    return len(_fill(units, capacity, _pair_test(text, gsm)))


def analyze(text: str, *, toll_free: bool = False) -> SegmentInfo:
    """Encoding, cost and segment layout of ``text`` as Twilio will send it.

    ``toll_free`` selects the smaller multi-segment capacity of US/CA toll-free senders.
    Empty text is one segment of zero units, so callers need no special case for it.
    """
    gsm, units = _measure(text)
    single = _GSM7_SINGLE if gsm else _UCS2_SINGLE
    sizes: tuple[int, ...]
    if units <= single:
        per_segment, sizes = single, (units,)
    else:
        per_segment = _multi_capacity(gsm, toll_free)
        sizes = _fill(units, per_segment, _pair_test(text, gsm))
    return SegmentInfo(
        encoding=GSM7 if gsm else UCS2,
        units=units,
        segments=len(sizes),
        segment_sizes=sizes,
        per_segment=per_segment,
        unicode_chars=() if gsm else tuple(sorted(set(text) - _GSM7, key=text.index)),
    )


# Smart Encoding replacements (twilio-protocol.md 6.4), grouped by the GSM-7 text they become.
# Named escapes keep look-alike characters unambiguous in review.
_SMART_GROUPS: Final[tuple[tuple[str, str], ...]] = (
    # Curly, low-9 and angle double quotes, double primes and their ornaments.
    (
        '"',
        "\N{LEFT-POINTING DOUBLE ANGLE QUOTATION MARK}"
        "\N{RIGHT-POINTING DOUBLE ANGLE QUOTATION MARK}"
        "\N{LEFT DOUBLE QUOTATION MARK}"
        "\N{RIGHT DOUBLE QUOTATION MARK}"
        "\N{DOUBLE LOW-9 QUOTATION MARK}"
        "\N{DOUBLE HIGH-REVERSED-9 QUOTATION MARK}"
        "\N{MODIFIER LETTER DOUBLE PRIME}"
        "\N{MODIFIER LETTER DOUBLE APOSTROPHE}"
        "\N{HEAVY DOUBLE TURNED COMMA QUOTATION MARK ORNAMENT}"
        "\N{HEAVY DOUBLE COMMA QUOTATION MARK ORNAMENT}"
        "\N{REVERSED DOUBLE PRIME QUOTATION MARK}"
        "\N{DOUBLE PRIME QUOTATION MARK}",
    ),
    # Curly single quotes, apostrophe-like modifiers, accents used as apostrophes, backtick.
    (
        "'",
        "\N{LEFT SINGLE QUOTATION MARK}"
        "\N{RIGHT SINGLE QUOTATION MARK}"
        "\N{SINGLE HIGH-REVERSED-9 QUOTATION MARK}"
        "\N{MODIFIER LETTER TURNED COMMA}"
        "\N{MODIFIER LETTER VERTICAL LINE}"
        "\N{MODIFIER LETTER APOSTROPHE}"
        "\N{MODIFIER LETTER REVERSED COMMA}"
        "\N{MODIFIER LETTER PRIME}"
        "\N{ACUTE ACCENT}"
        "\N{MODIFIER LETTER ACUTE ACCENT}"
        "\N{GRAVE ACCENT}"
        "\N{MODIFIER LETTER GRAVE ACCENT}"
        "\N{HEAVY SINGLE TURNED COMMA QUOTATION MARK ORNAMENT}"
        "\N{HEAVY SINGLE COMMA QUOTATION MARK ORNAMENT}"
        "\N{COMBINING COMMA ABOVE}"
        "\N{COMBINING REVERSED COMMA ABOVE}"
        "\N{PRESENTATION FORM FOR VERTICAL COMMA}"
        "\N{PRESENTATION FORM FOR VERTICAL IDEOGRAPHIC COMMA}",
    ),
    # Dashes, hyphens and bullets.
    (
        "-",
        "\N{HYPHEN}"
        "\N{EN DASH}"
        "\N{EM DASH}"
        "\N{HORIZONTAL BAR}"
        "\N{BULLET}"
        "\N{HYPHEN BULLET}"
        "\N{HORIZONTAL SCAN LINE-7}"
        "\N{HORIZONTAL SCAN LINE-9}",
    ),
    # Slashes and division signs.
    (
        "/",
        "\N{DIVISION SIGN}"
        "\N{FRACTION SLASH}"
        "\N{DIVISION SLASH}"
        "\N{BIG SOLIDUS}"
        "\N{COMBINING SHORT SOLIDUS OVERLAY}"
        "\N{COMBINING LONG SOLIDUS OVERLAY}",
    ),
    (
        "\\",
        "\N{REVERSE SOLIDUS OPERATOR}\N{BIG REVERSE SOLIDUS}\N{COMBINING REVERSE SOLIDUS OVERLAY}",
    ),
    ("_", "\N{COMBINING LOW LINE}\N{DOUBLE LOW LINE}"),
    # Vertical bars and bar-shaped glyph pieces.
    (
        "|",
        "\N{DIVIDES}"
        "\N{COMBINING LONG VERTICAL LINE OVERLAY}"
        "\N{COMBINING SHORT VERTICAL LINE OVERLAY}"
        "\N{LEFT VERTICAL BOX LINE}"
        "\N{RIGHT VERTICAL BOX LINE}"
        "\N{VERTICAL LINE EXTENSION}"
        "\N{LEFT PARENTHESIS EXTENSION}"
        "\N{RIGHT PARENTHESIS EXTENSION}",
    ),
    # Single angle quotes and bracket ornaments, each toward the side it points.
    (
        "<",
        "\N{SINGLE LEFT-POINTING ANGLE QUOTATION MARK}"
        "\N{MEDIUM LEFT-POINTING ANGLE BRACKET ORNAMENT}"
        "\N{HEAVY LEFT-POINTING ANGLE QUOTATION MARK ORNAMENT}"
        "\N{HEAVY LEFT-POINTING ANGLE BRACKET ORNAMENT}",
    ),
    (
        ">",
        "\N{SINGLE RIGHT-POINTING ANGLE QUOTATION MARK}"
        "\N{MEDIUM RIGHT-POINTING ANGLE BRACKET ORNAMENT}"
        "\N{HEAVY RIGHT-POINTING ANGLE QUOTATION MARK ORNAMENT}"
        "\N{HEAVY RIGHT-POINTING ANGLE BRACKET ORNAMENT}",
    ),
    ("(", "\N{MEDIUM LEFT PARENTHESIS ORNAMENT}\N{MEDIUM FLATTENED LEFT PARENTHESIS ORNAMENT}"),
    (")", "\N{MEDIUM RIGHT PARENTHESIS ORNAMENT}\N{MEDIUM FLATTENED RIGHT PARENTHESIS ORNAMENT}"),
    ("{", "\N{MEDIUM LEFT CURLY BRACKET ORNAMENT}"),
    ("}", "\N{MEDIUM RIGHT CURLY BRACKET ORNAMENT}"),
    (",", "\N{IDEOGRAPHIC COMMA}"),
    # Spaces of other widths and the Unicode line/paragraph separators become one space.
    (
        " ",
        "\N{NO-BREAK SPACE}"
        + "".join(map(chr, range(0x2000, 0x200B)))  # EN QUAD .. HAIR SPACE
        + "\N{NARROW NO-BREAK SPACE}\N{MEDIUM MATHEMATICAL SPACE}\N{IDEOGRAPHIC SPACE}"
        + "\N{LINE SEPARATOR}\N{PARAGRAPH SEPARATOR}",
    ),
    # Invisible characters are dropped.
    ("", "\N{ZERO WIDTH SPACE}\N{ZERO WIDTH NO-BREAK SPACE}\N{WORD JOINER}\x00\x03"),
)

# Replacements longer than one character.
_SMART_EXPANSIONS: Final = {
    "\N{VULGAR FRACTION ONE QUARTER}": "1/4",
    "\N{VULGAR FRACTION ONE HALF}": "1/2",
    "\N{VULGAR FRACTION THREE QUARTERS}": "3/4",
    "\N{HORIZONTAL ELLIPSIS}": "...",
    "\N{DOUBLE EXCLAMATION MARK}": "!!",
    "\t": " " * 7,
}


def _build_smart_table() -> dict[str, str]:
    """Combine the listed groups with the variants that Unicode data can compute."""
    table = {char: target for target, chars in _SMART_GROUPS for char in chars}
    table |= _SMART_EXPANSIONS
    # Fullwidth ASCII (U+FF01-FF5E) and small form variants (U+FE50-FE6B) fold to their plain
    # form under NFKC; that form goes through the table again (fullwidth ` -> ` -> ') and is
    # kept only if it is GSM-7 (small tortoise-shell brackets are not).
    for code in (*range(0xFF01, 0xFF5F), *range(0xFE50, 0xFE6C)):
        folded = "".join(table.get(c, c) for c in unicodedata.normalize("NFKC", chr(code)))
        if _GSM7.issuperset(folded):
            table.setdefault(chr(code), folded)
    # Small-capital Latin letters (there is no small capital X) become capitals.
    for letter in ascii_uppercase:
        with suppress(KeyError):
            table.setdefault(unicodedata.lookup(f"LATIN LETTER SMALL CAPITAL {letter}"), letter)
    return table


_SMART: Final = _build_smart_table()
_SMART_TRANSLATION: Final = str.maketrans(_SMART)


def smart_encode(text: str, *, toll_free: bool = False) -> SmartEncoding:
    """Apply Twilio Smart Encoding so a reply can be checked or pre-converted before sending.

    Only characters outside GSM-7 are replaced, so GSM-7 text comes back unchanged. The
    replacements apply even when another character (an emoji) keeps the text in UCS-2.
    """
    before = analyze(text, toll_free=toll_free)
    replacements = tuple((c, _SMART[c]) for c in before.unicode_chars if c in _SMART)
    if not replacements:
        return SmartEncoding(text=text, replacements=(), before=before, after=before)
    encoded = text.translate(_SMART_TRANSLATION)
    return SmartEncoding(
        text=encoded,
        replacements=replacements,
        before=before,
        after=analyze(encoded, toll_free=toll_free),
    )
