from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from twilio.request_validator import RequestValidator
from werkzeug.datastructures import MultiDict

from webhook_kit.errors import BadRequestError
from webhook_kit.signature import (
    URLBuilder,
    Verifier,
    body_sha256,
    compute_signature,
    url_variants,
)

TOKEN = "12345"
URI = "https://mycompany.com/myapp.php?foo=1&bar=2"
PARAMS = {
    "CallSid": "CA1234567890ABCDE",
    "Digits": "1234",
    "From": "+14158675309",
    "To": "+18005551212",
    "Caller": "+14158675309",
}
BODY = b'{"property": "value", "boolean": true}'
BODY_HASH = "0a1ff7634d9ab3b95db5c9a2dfe9416e41502b283a80c7cf19632632f96e6620"
verifier = Verifier([TOKEN])


def verify(url: str, params: dict[str, str] | list[tuple[str, str]], signature: str) -> bool:
    pairs = list(params.items()) if isinstance(params, dict) else params
    return verifier.verify(url, pairs, signature)


class TestKnownAnswers:
    """Every vector of twilio-protocol.md §3.1-3.3 that Twilio's servers would produce."""

    def test_docs_worked_example(self) -> None:
        params = {
            "CallSid": "CA1234567890ABCDE",
            "Caller": "+14158675310",
            "Digits": "1234",
            "From": "+14158675310",
            "To": "+18005551212",
        }
        url = "https://example.com/myapp.php?foo=1&bar=2"
        assert compute_signature(url, params, "12345") == "L/OH5YylLD5NRKLltdqwSvS0BnU="
        assert verify(url, params, "L/OH5YylLD5NRKLltdqwSvS0BnU=")

    def test_python_default_vector(self) -> None:
        assert compute_signature(URI, PARAMS, TOKEN) == "RSOYDt4T1cUTdK1PDd93/VVr8B8="
        assert verify(URI, PARAMS, "RSOYDt4T1cUTdK1PDd93/VVr8B8=")

    @pytest.mark.parametrize(
        ("url", "signature"),
        [
            # signed without the port, received with :1234 (Twilio drops it for HTTPS)
            (URI.replace(".com", ".com:1234"), "RSOYDt4T1cUTdK1PDd93/VVr8B8="),
            # signed with :1234 and received with it (SMS keeps the port)
            (URI.replace(".com", ".com:1234"), "CYn1h0gLBdNxDGkKJg6hYohgeD8="),
            (
                URI.replace(".com", ".com:1234").replace("https", "http"),
                "Zmvh+3yNM1Phv2jhDCwEM3q5ebU=",
            ),
            # signed with the default port, received without it
            (URI, "kvajT1Ptam85bY51eRf/AJRuM3w="),
            (URI.replace("https", "http"), "0ZXoZLH/DfblKGATFgpif+LLRf4="),
        ],
    )
    def test_port_vectors(self, url: str, signature: str) -> None:
        assert verify(url, PARAMS, signature)

    def test_repeated_keys_sorted_and_deduplicated(self) -> None:
        params = MultiDict(
            [
                ("Sid", "CA123"),
                ("SidAccount", "AC123"),
                ("Digits", "5678"),
                ("Digits", "1234"),
                ("Digits", "1234"),
            ]
        )
        assert compute_signature(URI, params, TOKEN) == "IK+Dwps556ElfBT0I3Rgjkr1wJU="
        as_lists = {"Sid": "CA123", "SidAccount": "AC123", "Digits": ["5678", "1234", "1234"]}
        assert compute_signature(URI, as_lists, TOKEN) == "IK+Dwps556ElfBT0I3Rgjkr1wJU="
        assert verify(URI, list(params.items(multi=True)), "IK+Dwps556ElfBT0I3Rgjkr1wJU=")

    def test_array_parameter(self) -> None:
        params = {"MessagingBinding.Address": ["+1325xxxxxxx", "+1415xxxxxxx"]}
        assert compute_signature(URI, params, TOKEN) == "83O6e2vORAoJHUNzJjDWN1jz+BA="

    def test_json_body_hash(self) -> None:
        assert body_sha256(BODY) == BODY_HASH
        url = f"{URI}&bodySHA256={BODY_HASH}"
        assert compute_signature(url, None, TOKEN) == "a9nBmqA0ju/hNViExpshrM61xv4="
        assert verifier.verify(url, [], "a9nBmqA0ju/hNViExpshrM61xv4=", json_body=BODY)

    def test_json_body_with_only_the_hash_in_the_query(self) -> None:
        url = f"https://mycompany.com/myapp.php?bodySHA256={BODY_HASH}"
        assert verifier.verify(url, [], "y77kIzt2vzLz71DgmJGsen2scGs=", json_body=BODY)

    def test_empty_json_body_signed_with_the_default_port(self) -> None:
        empty = "44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a"
        assert body_sha256(b"{}") == empty
        url = f"{URI}&bodySHA256={empty}"
        assert verifier.verify(url, [], "Ldidvp12m26NI7eqEvxnEpkd9Hc=", json_body=b"{}")

    def test_json_body_that_does_not_match_its_hash(self) -> None:
        url = f"{URI}&bodySHA256={BODY_HASH}"
        assert not verifier.verify(url, [], "a9nBmqA0ju/hNViExpshrM61xv4=", json_body=b"{}")

    def test_json_body_without_body_hash_fails_closed(self) -> None:
        signature = compute_signature(URI, None, TOKEN)
        assert not verifier.verify(URI, [], signature, json_body=BODY)

    def test_apostrophe_signed_raw_arrives_escaped(self) -> None:
        # Twilio signs "It's" raw (twilio-node #1059); a proxy may forward %27.
        raw = URI + "&Body=It's+amazing"
        assert compute_signature(raw, PARAMS, TOKEN) == "dsq4Ehbj6cs+KdTkpF5sSSplOWw="
        assert verify(raw, PARAMS, "dsq4Ehbj6cs+KdTkpF5sSSplOWw=")
        assert verify(URI + "&Body=It%27s+amazing", PARAMS, "dsq4Ehbj6cs+KdTkpF5sSSplOWw=")

    def test_node_vector_with_escaped_apostrophe(self) -> None:
        escaped = URI + "&Body=It%27s+amazing"
        assert verify(escaped, PARAMS, "TfZzewPq8wqrGlMfyAud8+/IvJ0=")
        assert verify(URI + "&Body=It's+amazing", PARAMS, "TfZzewPq8wqrGlMfyAud8+/IvJ0=")

    # The userinfo vectors of twilio-node (CukzLTc1..., 2YRLlVAf..., ZQFR1PTI...) sign
    # "user:pass@" into the URL; Twilio drops userinfo before signing, so its servers never
    # produce them and they are deliberately not accepted here.


class TestFailsClosed:
    @pytest.mark.parametrize("signature", [None, "", "   ", "not base64!", "é" * 28])
    def test_missing_or_garbage_signature(self, signature: str | None) -> None:
        assert not verifier.verify(URI, list(PARAMS.items()), signature)

    def test_no_tokens_never_verifies(self) -> None:
        assert not Verifier([]).verify(URI, [], compute_signature(URI, None, TOKEN))

    def test_non_ascii_everywhere(self) -> None:
        url = "https://exämple.com/ñ?q=café"
        params = [("Bödy", "héllo 👋"), ("Émoji", "🎉")]
        signature = compute_signature(url, params, "tökén")
        assert Verifier(["tökén"]).verify(url, params, signature)
        assert not Verifier(["tökén"]).verify(url, params, signature[:-2] + "é=")

    def test_wrong_token(self) -> None:
        signature = compute_signature(URI, PARAMS, TOKEN)
        assert not Verifier(["54321"]).verify(URI, list(PARAMS.items()), signature)


class TestRotationAndSubaccounts:
    def test_any_configured_token(self) -> None:
        rotating = Verifier(["new-token", TOKEN])
        assert rotating.verify(URI, list(PARAMS.items()), "RSOYDt4T1cUTdK1PDd93/VVr8B8=")

    def test_token_loader_by_account_sid(self) -> None:
        calls: list[str] = []

        def load(account_sid: str) -> str | None:
            calls.append(account_sid)
            return "sub-token" if account_sid == "ACsub" else None

        subaccounts = Verifier(["main"], load)
        signature = compute_signature(URI, PARAMS, "sub-token")
        assert subaccounts.verify(URI, list(PARAMS.items()), signature, account_sid="ACsub")
        assert not subaccounts.verify(URI, list(PARAMS.items()), signature, account_sid="ACother")
        assert calls == ["ACsub", "ACother"]


class TestURLBuilder:
    def environ(self, **extra: str) -> dict[str, str]:
        environ = {
            "wsgi.url_scheme": "http",
            "HTTP_HOST": "10.0.0.5:8000",
            "SERVER_NAME": "10.0.0.5",
            "SERVER_PORT": "8000",
            "REMOTE_ADDR": "10.0.0.1",
            "PATH_INFO": "/twilio/messages",
            "QUERY_STRING": "x=a%20b",
            "RAW_URI": "/twilio/messages?x=a%20b",
        }
        environ.update(extra)
        return environ

    @pytest.mark.parametrize("host", ["[", "[::1", "::1]", "a b", "host:80x", "a/b"])
    @pytest.mark.parametrize("header", ["HTTP_HOST", "HTTP_X_FORWARDED_HOST"])
    def test_a_host_that_is_no_authority_is_a_bad_request(self, host: str, header: str) -> None:
        with pytest.raises(BadRequestError, match="not a valid host"):
            URLBuilder(proxy_hops=1)(self.environ(**{header: host}))

    @pytest.mark.parametrize("host", ["[::1]:8000", "[::1]", "example.com", "10.0.0.5:80"])
    def test_valid_hosts_pass(self, host: str) -> None:
        assert URLBuilder()(self.environ(HTTP_HOST=host)).startswith(f"http://{host}/")

    def test_direct(self) -> None:
        assert URLBuilder()(self.environ()) == "http://10.0.0.5:8000/twilio/messages?x=a%20b"

    def test_raw_query_keeps_percent_escapes(self) -> None:
        environ = self.environ(RAW_URI="/sms?name=William+O'hara&y=caf%C3%A9&z=@:")
        assert URLBuilder()(environ).endswith("/sms?name=William+O'hara&y=caf%C3%A9&z=@:")

    def test_without_raw_uri_the_path_is_reescaped(self) -> None:
        environ = self.environ(RAW_URI="", PATH_INFO="/caf\xc3\xa9", QUERY_STRING="y=caf%C3%A9")
        assert URLBuilder()(environ) == "http://10.0.0.5:8000/caf%C3%A9?y=caf%C3%A9"

    def test_a_raw_uri_without_the_query_gets_it_back(self) -> None:
        """werkzeug's test client given ``query_string=`` sets RAW_URI to the path alone."""
        environ = self.environ(RAW_URI="/twilio/status", QUERY_STRING="c=tok%2Ben")
        assert URLBuilder()(environ) == "http://10.0.0.5:8000/twilio/status?c=tok%2Ben"

    def test_absolute_form_request_target(self) -> None:
        environ = self.environ(RAW_URI="http://10.0.0.5:8000/twilio/messages?x=1")
        assert URLBuilder()(environ) == "http://10.0.0.5:8000/twilio/messages?x=1"

    def test_public_url_wins(self) -> None:
        build = URLBuilder("https://public.example.com/bot/#rc=2", proxy_hops=1)
        assert build(self.environ()) == "https://public.example.com/bot/twilio/messages?x=a%20b"

    def test_forwarded_headers_ignored_without_hops(self) -> None:
        environ = self.environ(
            HTTP_X_FORWARDED_PROTO="https", HTTP_X_FORWARDED_HOST="public.example.com"
        )
        assert URLBuilder(proxy_hops=0)(environ).startswith("http://10.0.0.5:8000/")

    def test_forwarded_headers_trusted_for_the_configured_hops(self) -> None:
        environ = self.environ(
            HTTP_X_FORWARDED_PROTO="http, https",
            HTTP_X_FORWARDED_HOST="evil.example, public.example.com",
        )
        assert URLBuilder(proxy_hops=1)(environ) == (
            "https://public.example.com/twilio/messages?x=a%20b"
        )
        assert URLBuilder(proxy_hops=2)(environ).startswith("http://evil.example/")
        assert URLBuilder(proxy_hops=3)(environ).startswith("http://10.0.0.5:8000/")
        assert environ["HTTP_HOST"] == "10.0.0.5:8000"  # the request itself is untouched


class TestURLVariants:
    def test_first_variant_is_the_url_itself(self) -> None:
        assert next(url_variants("https://x.com/a")) == "https://x.com/a"

    @pytest.mark.parametrize(
        ("url", "expected"),
        [
            ("https://x.com/a", ["https://x.com/a", "https://x.com:443/a"]),
            ("http://x.com:80/a", ["http://x.com:80/a", "http://x.com/a"]),
            ("http://[::1]:8080/a", ["http://[::1]:8080/a", "http://[::1]/a"]),
            ("http://[::1]/a", ["http://[::1]/a", "http://[::1]:80/a"]),
        ],
    )
    def test_port_spellings(self, url: str, expected: list[str]) -> None:
        assert list(url_variants(url)) == expected


# --- property tests against twilio-python's RequestValidator -----------------------------

keys = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), min_size=1, max_size=12)
values = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=30)
query_pieces = st.sampled_from(["a+b", "%27", "'", "%C3%A9", "x=1", "y=a%20b", "@:", "%2B1"])


@st.composite
def url_pair(draw: st.DrawFn) -> tuple[str, str]:
    """Two spellings of one URL that differ at most in the port."""
    scheme = draw(st.sampled_from(["http", "https"]))
    host = draw(st.sampled_from(["example.com", "public.example.com", "127.0.0.1"]))
    ports = st.sampled_from(["", ":80", ":443", ":8443", ":1234"])
    path = draw(st.sampled_from(["/twilio/messages", "/sms", "/a/b/", "/"]))
    pieces = draw(st.lists(query_pieces, max_size=4))
    query = "?" + "&".join(f"q{i}={piece}" for i, piece in enumerate(pieces)) if pieces else ""
    first, second = draw(ports), draw(ports)
    return f"{scheme}://{host}{first}{path}{query}", f"{scheme}://{host}{second}{path}{query}"


def urls() -> st.SearchStrategy[str]:
    return url_pair().map(lambda pair: pair[0])


pairs_strategy = st.lists(st.tuples(keys, values), max_size=20)


def multidict(pairs: list[tuple[str, str]]) -> MultiDict[str, str]:
    return MultiDict(pairs)


@settings(max_examples=300)
@given(urls(), pairs_strategy, st.sampled_from([TOKEN, "tökén", "x" * 32]))
def test_compute_agrees_with_twilio_python(
    url: str, pairs: list[tuple[str, str]], token: str
) -> None:
    oracle = RequestValidator(token)
    assert compute_signature(url, pairs, token) == oracle.compute_signature(url, multidict(pairs))


@settings(max_examples=300)
@given(url_pair(), pairs_strategy)
def test_verify_agrees_with_twilio_python_on_port_spellings(
    spellings: tuple[str, str], pairs: list[tuple[str, str]]
) -> None:
    # Twilio signed one spelling of the URL; the app sees another spelling of the same URL.
    signed_url, received_url = spellings
    signature = compute_signature(signed_url, pairs, TOKEN)
    oracle = RequestValidator(TOKEN).validate(received_url, multidict(pairs), signature)
    ours = Verifier([TOKEN]).verify(received_url, pairs, signature)
    if "'" in received_url or "%27" in received_url:
        assert ours or not oracle  # ours also accepts the other apostrophe spelling
    else:
        assert ours == oracle


@settings(max_examples=200)
@given(urls(), pairs_strategy)
def test_verify_accepts_what_twilio_python_signs(url: str, pairs: list[tuple[str, str]]) -> None:
    signature = RequestValidator(TOKEN).compute_signature(url, multidict(pairs))
    assert Verifier([TOKEN]).verify(url, pairs, signature)


def mutations(text: str) -> list[str]:
    """Every string one character away: replaced, deleted or inserted."""
    alphabet = "aZ09+/=:%'é"
    out = set()
    for i in range(len(text) + 1):
        for char in alphabet:
            out.add(text[:i] + char + text[i:])
        if i < len(text):
            out.add(text[:i] + text[i + 1 :])
            for char in alphabet:
                out.add(text[:i] + char + text[i + 1 :])
    out.discard(text)
    return sorted(out)


@settings(max_examples=25, deadline=None)
@given(urls(), st.lists(st.tuples(keys, values), min_size=1, max_size=6))
def test_every_one_character_mutation_is_rejected(url: str, pairs: list[tuple[str, str]]) -> None:
    signature = compute_signature(url, pairs, TOKEN)
    check = Verifier([TOKEN])
    assert check.verify(url, pairs, signature)
    for mutated in mutations(signature):
        assert not check.verify(url, pairs, mutated)
    name, value = pairs[0]
    for mutated in mutations(value):
        changed = [(name, mutated), *pairs[1:]]
        if sorted(set(changed)) == sorted(set(pairs)):
            continue  # e.g. mutated into a duplicate of another pair: the same signed string
        assert not check.verify(url, changed, signature)
    for mutated in mutations(url):
        if mutated in set(url_variants(url)):
            continue  # another spelling of the same URL (port, apostrophe), not a new URL
        assert not check.verify(mutated, pairs, signature), mutated


def test_url_variants_of_an_unparsable_url_is_the_url_itself() -> None:
    assert list(url_variants("http://[::1/x")) == ["http://[::1/x"]
