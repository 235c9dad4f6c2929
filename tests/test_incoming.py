"""The form parser of the request path against the standard library's encoder."""

from __future__ import annotations

from urllib.parse import quote, urlencode

import pytest
from hypothesis import given
from hypothesis import strategies as st

from webhook_kit.errors import BadRequestError
from webhook_kit.incoming import parse_form

TEXT = st.text(st.characters(exclude_categories=("Cs",)), max_size=20)


@given(st.lists(st.tuples(TEXT.filter(bool), TEXT), max_size=12))
def test_a_form_reads_back_the_pairs_it_encodes(pairs: list[tuple[str, str]]) -> None:
    assert parse_form(urlencode(pairs)) == pairs  # '+' for spaces, as Twilio sends them


@given(st.lists(st.tuples(TEXT.filter(bool), TEXT), max_size=12))
def test_percent_encoded_spaces_read_the_same(pairs: list[tuple[str, str]]) -> None:
    form = "&".join(f"{quote(n, safe='')}={quote(v, safe='')}" for n, v in pairs)
    assert parse_form(form) == pairs


@pytest.mark.parametrize("form", ["Body=%FF", "Body=%E2%82", "%C3=x", "Body=%C3%28"])
def test_invalid_utf8_after_decoding_is_a_400(form: str) -> None:
    with pytest.raises(BadRequestError, match="UTF-8"):
        parse_form(form)


def test_stray_percent_signs_stay_literal() -> None:
    assert parse_form("Body=100%&To=%2B1%zz") == [("Body", "100%"), ("To", "+1%zz")]
