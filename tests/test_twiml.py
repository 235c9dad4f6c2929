from __future__ import annotations

import logging
import threading
import xml.etree.ElementTree as ET
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from lxml import etree
from twilio.twiml import TwiMLException  # type: ignore[import-untyped]
from twilio.twiml import messaging_response as twilio  # type: ignore[import-untyped]

from webhook_kit import twiml
from webhook_kit.encoding import segment_count
from webhook_kit.errors import (
    BodyTooLongError,
    InvalidCallbackURLError,
    InvalidMethodError,
    RedirectNotLastError,
    TooManyMediaError,
    TwiMLError,
    TwiMLParseError,
    TwiMLTypeError,
)
from webhook_kit.twiml import (
    Body,
    BodyText,
    Media,
    Message,
    MessagingResponse,
    Problem,
    Redirect,
    lint,
    parse,
)

DECL = '<?xml version="1.0" encoding="UTF-8"?>'

# Characters XML 1.0 forbids (lone surrogates aside: twilio-python cannot even encode those).
FORBIDDEN = [chr(c) for c in [*range(0x09), 0x0B, 0x0C, *range(0x0E, 0x20)]]
FORBIDDEN += ["\ufffe", "\uffff"]
SURROGATES = ["\ud800", "\udbff", "\udc00", "\udfff"]


def tree(xml: str | bytes) -> tuple[Any, ...]:
    """A comparable form of a document: tag, attributes, text (None == ""), children, tail."""
    data = xml.encode() if isinstance(xml, str) else xml

    def walk(el: etree._Element) -> tuple[Any, ...]:
        return (el.tag, dict(el.attrib), el.text or "", [walk(c) for c in el], el.tail or "")

    return walk(etree.fromstring(data, etree.XMLParser(resolve_entities=False)))


# --- exact output ------------------------------------------------------------------------------


def test_empty_response() -> None:
    response = MessagingResponse()
    assert str(response) == DECL + "<Response/>"
    assert bytes(response) == response.to_bytes() == (DECL + "<Response/>").encode()
    assert response.to_xml(xml_declaration=False) == "<Response/>"
    assert response.to_bytes(xml_declaration=False) == b"<Response/>"
    assert response.verbs == response.messages == ()
    assert response.segments == 0


def test_one_message() -> None:
    response = MessagingResponse()
    message = response.message("Hello")
    assert isinstance(message, Message)
    assert str(response) == DECL + "<Response><Message>Hello</Message></Response>"
    twilio_response = twilio.MessagingResponse()
    twilio_response.message("Hello")
    assert str(response) == str(twilio_response)


def test_attributes_are_mapped_and_sorted_like_twilio() -> None:
    kwargs: dict[str, Any] = {
        "to": "+15551230000",
        "from_": "+15557650000",
        "action": "https://example.com/status",
        "method": "POST",
        "status_callback": "https://example.com/status",
        "provide_feedback": True,
        "max_price": 0.5,
        "smart_encoded": False,
    }
    response = MessagingResponse()
    message = response.message("Hi", **kwargs)
    expected = (
        '<Response><Message action="https://example.com/status" from="+15557650000" '
        'maxPrice="0.5" method="POST" provideFeedback="true" smartEncoded="false" '
        'statusCallback="https://example.com/status" to="+15551230000">Hi</Message></Response>'
    )
    assert str(response) == DECL + expected
    twilio_response = twilio.MessagingResponse()
    twilio_response.message("Hi", **kwargs)
    assert str(response) == str(twilio_response)
    assert list(message.attrs) == sorted(message.attrs)
    assert message.to == "+15551230000"
    assert message.from_ == "+15557650000"
    assert message.action == message.status_callback == "https://example.com/status"
    assert message.method == "POST"


def test_none_attributes_are_dropped() -> None:
    message = MessagingResponse().message("Hi", to=None, action=None, custom=None)
    assert message.attrs == {}
    assert message.to is message.from_ is message.method is None
    assert message.to_xml(xml_declaration=False) == "<Message>Hi</Message>"


def test_body_and_media() -> None:
    response = MessagingResponse()
    message = response.message("Look")
    assert isinstance(message.media("https://example.com/a.png"), Media)
    assert isinstance(message.body(" at this"), Body)
    message.media("https://example.com/b.png")
    assert str(response) == DECL + (
        "<Response><Message>Look<Media>https://example.com/a.png</Media><Body> at this</Body>"
        "<Media>https://example.com/b.png</Media></Message></Response>"
    )
    assert message.media_urls == ("https://example.com/a.png", "https://example.com/b.png")
    assert message.body == "Look at this"


def test_redirect_with_method() -> None:
    response = MessagingResponse()
    redirect = response.redirect("https://example.com/next", method="GET")
    assert isinstance(redirect, Redirect)
    assert str(response) == DECL + (
        '<Response><Redirect method="GET">https://example.com/next</Redirect></Response>'
    )
    assert (redirect.url, redirect.method) == ("https://example.com/next", "GET")
    assert Redirect("/relative").method is None


def test_nested_with_and_chaining() -> None:
    response = MessagingResponse()
    with response.message(to="+15551230000") as message:
        message.body("Hello")
        message.media("https://example.com/cat.gif")
    response.append(Message().append(Body("one"))).redirect("/more")
    assert str(response) == DECL + (
        '<Response><Message to="+15551230000"><Body>Hello</Body>'
        "<Media>https://example.com/cat.gif</Media></Message>"
        "<Message><Body>one</Body></Message><Redirect>/more</Redirect></Response>"
    )
    with MessagingResponse() as outer:
        assert isinstance(outer, MessagingResponse)


def test_append_standalone_verbs() -> None:
    response = MessagingResponse()
    message = Message("Hi", to="+15551230000")
    message.media("https://example.com/a.png")
    result = response.append(message).append(Redirect("https://example.com/next", "POST"))
    assert result is response
    assert str(response) == DECL + (
        '<Response><Message to="+15551230000">Hi<Media>https://example.com/a.png</Media>'
        '</Message><Redirect method="POST">https://example.com/next</Redirect></Response>'
    )
    assert response.verbs[0] is message
    assert [type(v) for v in response.verbs] == [Message, Redirect]


def test_message_append_standalone_nouns() -> None:
    message = Message()
    assert message.append(Body("Hi")).append(Media("https://example.com/a.png")) is message
    assert str(message) == DECL + (
        "<Message><Body>Hi</Body><Media>https://example.com/a.png</Media></Message>"
    )
    with pytest.raises(TwiMLTypeError, match="verbs go directly inside <Response>"):
        message.append(Message())  # type: ignore[arg-type]


def test_unicode_text_is_written_as_utf8() -> None:
    text = "Grüße 👋 日本語 \U0010ffff"
    response = MessagingResponse()
    response.message(text, to="+44 ✓")
    assert str(response) == DECL + f'<Response><Message to="+44 ✓">{text}</Message></Response>'
    assert response.to_bytes() == str(response).encode("utf-8")
    assert parse(response.to_bytes()).messages[0].body == text


def test_escaping_in_text_and_attributes() -> None:
    response = MessagingResponse()
    message = response.message('a < b > c & "d"', action='/cb?x="1"&y=<2>')
    message.media("https://example.com/?a=1&b=2")
    assert str(response) == DECL + (
        '<Response><Message action="/cb?x=&quot;1&quot;&amp;y=&lt;2&gt;">'
        'a &lt; b &gt; c &amp; "d"<Media>https://example.com/?a=1&amp;b=2</Media>'
        "</Message></Response>"
    )
    again = parse(str(response)).messages[0]
    assert again.body == 'a < b > c & "d"'
    assert again.action == '/cb?x="1"&y=<2>'


def test_empty_bodies_are_consistent() -> None:
    assert MessagingResponse().message("").to_xml(xml_declaration=False) == "<Message/>"
    assert Message().to_xml(xml_declaration=False) == "<Message/>"
    assert Body("").to_xml(xml_declaration=False) == "<Body/>"
    assert Media("").to_xml(xml_declaration=False) == "<Media/>"
    message = Message()
    message.body("")
    assert message.to_xml(xml_declaration=False) == "<Message><Body/></Message>"
    assert message.body == ""


def test_body_text_reads_as_str_and_appends_when_called() -> None:
    message = MessagingResponse().message("Echo: ")
    body = message.body
    assert isinstance(body, BodyText)
    assert isinstance(body, str)
    assert body == "Echo: "
    noun = message.body("hi")
    assert noun.text == "hi"
    assert message.body == "Echo: hi"
    assert body == "Echo: "  # a snapshot
    assert message.body.upper() == "ECHO: HI"


def test_accessors() -> None:
    response = MessagingResponse()
    first = response.message("a" * 161)
    second = response.message()
    second.media("https://example.com/only-media.png")
    third = response.message("Hola ☺")
    response.redirect("/next")
    assert response.messages == (first, second, third)
    assert len(response.verbs) == 4
    assert first.segments == segment_count("a" * 161) == 2
    assert second.segments == 0
    assert third.segments == segment_count("Hola ☺")
    assert response.segments == 2 + 0 + third.segments


def test_equality_and_repr() -> None:
    assert Message("hi", to="+1") == Message("hi", to="+1")
    assert Message("hi") != Message("hi", to="+1")
    assert Message("hi") != Body("hi")
    assert repr(Message("hi")) == "<Message <Message>hi</Message>>"
    with pytest.raises(TypeError):
        hash(Message())


# --- build-time checks -------------------------------------------------------------------------


def test_more_than_ten_media_raises() -> None:
    message = MessagingResponse().message()
    for i in range(10):
        message.media(f"https://example.com/{i}.png")
    with pytest.raises(TooManyMediaError, match="at most 10"):
        message.media("https://example.com/10.png")
    with pytest.raises(TooManyMediaError):
        message.append(Media("https://example.com/10.png"))
    assert len(message.media_urls) == 10


def test_body_over_1600_characters_raises() -> None:
    assert len(MessagingResponse().message("a" * 1600).body) == 1600
    with pytest.raises(BodyTooLongError, match=r"1601 characters.*1600"):
        MessagingResponse().message("a" * 1601)
    with pytest.raises(BodyTooLongError):
        Message("a" * 1601)
    message = Message("a" * 1000)
    message.body("b" * 600)
    with pytest.raises(BodyTooLongError):
        message.body("c")
    with pytest.raises(BodyTooLongError):
        message.append(Body("c"))
    assert len(message.body) == 1600


@pytest.mark.parametrize("method", ["PUT", "get", "post", "", "DELETE"])
def test_invalid_method_raises(method: str) -> None:
    response = MessagingResponse()
    with pytest.raises(InvalidMethodError, match="'GET' or 'POST'"):
        response.message("hi", method=method)
    with pytest.raises(InvalidMethodError):
        response.redirect("/next", method=method)
    with pytest.raises(InvalidMethodError):
        Message("hi", method=method)
    with pytest.raises(InvalidMethodError):
        Redirect("/next", method=method)
    assert str(response) == DECL + "<Response/>"
    assert response.verbs == ()


@pytest.mark.parametrize(
    "add",
    [
        lambda r: r.message("late"),
        lambda r: r.redirect("/again"),
        lambda r: r.append(Message("late")),
        lambda r: r.append(Redirect("/again")),
    ],
)
def test_verbs_after_redirect_raise(add: Any) -> None:
    response = MessagingResponse()
    response.message("first")
    response.redirect("/next")
    with pytest.raises(RedirectNotLastError, match="before"):
        add(response)
    assert len(response.verbs) == 2


def test_append_redirect_then_message_raises() -> None:
    response = MessagingResponse().append(Redirect("/next"))
    with pytest.raises(RedirectNotLastError):
        response.message("late")


@pytest.mark.parametrize(
    ("name", "url"),
    [
        ("action", "https://my_host.example.com/status"),
        ("status_callback", "http://example_com/status"),
        ("status_callback", "https://user@bad_host.example.com:8443/x"),
        ("action", "//bad_host/status"),
    ],
)
def test_underscore_in_callback_host_raises(name: str, url: str) -> None:
    with pytest.raises(InvalidCallbackURLError, match="underscore"):
        MessagingResponse().message("hi", **{name: url})
    with pytest.raises(InvalidCallbackURLError):
        Message("hi", **{name: url})


@pytest.mark.parametrize(
    "url",
    [
        "/status_callback",
        "status_callback?x_y=1",
        "https://example.com/status_callback?x_y=1#a_b",
        "https://user_name@example.com/status",
    ],
)
def test_underscore_outside_the_host_is_fine(url: str) -> None:
    message = MessagingResponse().message("hi", action=url, status_callback=url)
    assert message.action == message.status_callback == url


def test_verbs_and_nouns_belong_to_one_parent() -> None:
    message = Message("hi")
    response = MessagingResponse().append(message)
    with pytest.raises(TwiMLError, match="already belongs"):
        MessagingResponse().append(message)
    with pytest.raises(TwiMLError, match="already belongs"):
        response.append(response.messages[0])
    media = Media("https://example.com/a.png")
    Message().append(media)
    with pytest.raises(TwiMLError, match="already belongs"):
        Message().append(media)
    with pytest.raises(TwiMLTypeError):
        response.append(Body("x"))  # type: ignore[arg-type]


def test_invalid_attribute_name_is_a_twiml_error() -> None:
    response = MessagingResponse()
    for key in ["bad name", "_1st", "a:b"]:
        with pytest.raises(TwiMLError, match="not an XML attribute name"):
            response.message("hi", **{key: "x"})
        with pytest.raises(TwiMLError):
            Redirect("/next", **{key: "x"})
    assert str(response) == DECL + "<Response/>"


# --- characters XML 1.0 forbids ----------------------------------------------------------------


@pytest.mark.parametrize("char", FORBIDDEN + SURROGATES)
def test_forbidden_characters_are_removed(char: str) -> None:
    response = MessagingResponse()
    message = response.message(f"a{char}b", to=f"+1{char}555", custom=f"x{char}")
    message.body(f"c{char}")
    message.media(f"https://example.com/{char}d.png")
    response.redirect(f"/next{char}")
    data = response.to_bytes()
    ET.fromstring(data)  # expat: a strict XML 1.0 parser
    etree.fromstring(data)
    assert message.body == "abc"
    assert message.to == "+1555"
    assert message.attrs["custom"] == "x"
    assert message.media_urls == ("https://example.com/d.png",)
    assert response.verbs[1].to_xml(xml_declaration=False) == "<Redirect>/next</Redirect>"
    assert str(Body(char)) == DECL + "<Body/>"


def test_allowed_characters_are_kept() -> None:
    text = "\t\n\r \x7f\x85\ud7ff\ue000\ufffd\U00010000\U0010ffff"
    response = MessagingResponse()
    response.message(text, to=text)
    again = parse(response.to_bytes()).messages[0]
    assert again.body == text
    assert again.to == text


def test_removal_is_logged_once_then_at_debug(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(twiml, "_removal_logged", threading.Event())
    caplog.set_level(logging.DEBUG, logger="webhook_kit.twiml")
    response = MessagingResponse()
    response.message("clean text")
    assert caplog.records == []
    response.message("bell\x07")
    response.message("nul\x00\x00", to="\x01")
    records = [r for r in caplog.records if r.name == "webhook_kit.twiml"]
    assert [r.levelno for r in records] == [logging.WARNING, logging.DEBUG, logging.DEBUG]
    assert "U+0007" in records[0].getMessage()
    assert "bell" not in records[0].getMessage()  # message text may be personal data


# --- parse -------------------------------------------------------------------------------------


def sample_response(**extra: object) -> MessagingResponse:
    response = MessagingResponse()
    first = response.message(
        "Hello & <welcome>",
        to="+15551230000",
        from_="+15557650000",
        status_callback="https://example.com/s",
        action="https://example.com/s",
        method="GET",
        **extra,
    )
    first.body(" more")
    first.media("https://example.com/a.png")
    response.message()
    third = response.message()
    third.media("https://example.com/b.png")
    response.redirect("https://example.com/next", method="POST")
    return response


@pytest.mark.parametrize("form", [str, bytes])
def test_parse_round_trip(form: Any) -> None:
    response = sample_response(custom_flag=True)
    again = parse(form(response))
    assert again.verbs == response.verbs
    assert again.to_bytes() == response.to_bytes()
    for new, old in zip(again.messages, response.messages, strict=True):
        assert new.body == old.body
        assert new.media_urls == old.media_urls
        assert new.attrs == old.attrs
    redirect = again.verbs[-1]
    assert isinstance(redirect, Redirect)
    assert (redirect.url, redirect.method) == ("https://example.com/next", "POST")
    assert again.messages[0].attrs["customFlag"] == "true"


def test_parse_pretty_printed_document_with_comments() -> None:
    document = b"""<?xml version="1.0" encoding="UTF-8"?>
<!-- reply for the demo -->
<Response>
  <Message to="+15551230000"><Body>Hi</Body>
    <Media>https://example.com/a.png</Media>
  </Message>
  <?processing instruction?>
  <Redirect>/next</Redirect>
</Response>
"""
    response = parse(document)
    assert response.messages[0].body == "Hi"
    assert response.messages[0].media_urls == ("https://example.com/a.png",)
    assert isinstance(response.verbs[1], Redirect)


def test_parse_honours_the_declared_encoding_of_bytes() -> None:
    document = (
        '<?xml version="1.0" encoding="ISO-8859-1"?><Response><Message>Grüße</Message></Response>'
    )
    assert parse(document.encode("latin-1")).messages[0].body == "Grüße"
    assert parse(document).messages[0].body == "Grüße"  # str: already decoded


@pytest.mark.parametrize(
    ("document", "match"),
    [
        ("", "not well-formed"),
        ("<Response><Message>hi</Response>", "line 1: not well-formed"),
        ("<Response>\n<Message>\nhi</Mesage>\n</Response>", "line 3: not well-formed"),
        ("<Respons/>", "root element is <Respons>"),
        ("<response/>", "needs <Response>"),
        ("<Response>\n<Foo/></Response>", "line 2: unknown verb <Foo>"),
        ("<Response><Media>x</Media></Response>", "inside a <Message>"),
        ("<Response>hello</Response>", "text directly inside <Response>"),
        ("<Response a='1'/>", "takes no attributes"),
        ("<Response><Message><Media a='1'/></Message></Response>", "takes no attributes"),
        ("<Response><Message><Media/>tail</Message></Response>", "text after <Media>"),
        ('<!DOCTYPE Response [<!ENTITY e "x">]><Response/>', "DOCTYPE"),
        ("\ud800", "lone surrogate"),
    ],
)
def test_parse_errors(document: str, match: str) -> None:
    with pytest.raises(TwiMLParseError, match=match):
        parse(document)


def test_parse_resolves_no_external_entities(tmp_path: Any) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("TOP-SECRET")
    document = (
        f'<?xml version="1.0"?><!DOCTYPE Response [<!ENTITY x SYSTEM "file://{secret}">]>'
        "<Response><Message>&x;</Message></Response>"
    )
    with pytest.raises(TwiMLParseError, match="DOCTYPE") as error:
        parse(document)
    assert "TOP-SECRET" not in str(error.value)
    assert all("TOP-SECRET" not in p.message for p in lint(document))


def test_parse_survives_entity_expansion_bombs() -> None:
    lol = "".join(f'<!ENTITY l{i} "{f"&l{i - 1};" * 10}">' for i in range(1, 10))
    document = (
        f'<!DOCTYPE Response [<!ENTITY l0 "lol">{lol}]><Response><Message>&l9;</Message></Response>'
    )
    with pytest.raises(TwiMLParseError):  # libxml2's amplification limit or the DOCTYPE check
        parse(document)


@pytest.mark.parametrize(
    ("document", "error"),
    [
        ("<Response><Message>" + "<Media/>" * 11 + "</Message></Response>", TooManyMediaError),
        ("<Response><Message>" + "a" * 1601 + "</Message></Response>", BodyTooLongError),
        ("<Response><Message method='PUT'/></Response>", InvalidMethodError),
        ("<Response><Redirect/><Message/></Response>", RedirectNotLastError),
        ("<Response><Message action='https://a_b.com/'/></Response>", InvalidCallbackURLError),
    ],
)
def test_parse_raises_the_builders_error_with_the_line(document: str, error: Any) -> None:
    with pytest.raises(error, match=r"^line 1: "):
        parse(document)


# --- lint --------------------------------------------------------------------------------------


def only(problems: list[Problem], text: str) -> Problem:
    assert len(problems) == 1, problems
    assert text in problems[0].message, problems
    return problems[0]


def test_lint_not_well_formed() -> None:
    problem = only(lint("<Response>\n<Message>hi</Message>\n<Message>"), "not well-formed")
    assert problem.line == 3


def test_lint_root_not_response() -> None:
    assert only(lint("<Reply/>"), "root element is <Reply>").line == 1


def test_lint_unknown_verb_is_case_sensitive() -> None:
    only(lint("<Response><message>hi</message></Response>"), "case-sensitive, use <Message>")
    only(lint("<Response><Say>hi</Say></Response>"), "unknown verb <Say>")


def test_lint_unknown_noun() -> None:
    only(lint("<Response><Message><Image/></Message></Response>"), "unknown noun <Image>")
    only(lint("<Response><Message><media/></Message></Response>"), "use <Media>")


@pytest.mark.parametrize("noun", ["Media", "Body"])
def test_lint_noun_outside_message(noun: str) -> None:
    only(lint(f"<Response><{noun}>x</{noun}></Response>"), f"<{noun}> must be inside a <Message>")


def test_lint_anything_inside_redirect() -> None:
    problems = lint("<Response><Redirect>/x<Message/><Body/></Redirect></Response>")
    assert [p.message for p in problems] == [
        "<Message> nested in <Redirect>: nothing may be nested inside <Redirect>",
        "<Body> nested in <Redirect>: nothing may be nested inside <Redirect>",
    ]


@pytest.mark.parametrize("verb", ["Message", "Redirect"])
def test_lint_verb_nested_in_message(verb: str) -> None:
    only(lint(f"<Response><Message><{verb}/></Message></Response>"), "nested in <Message>")


def test_lint_anything_inside_a_noun() -> None:
    only(lint("<Response><Message><Body><Media/></Body></Message></Response>"), "inside <Body>")


@pytest.mark.parametrize(
    ("document", "text"),
    [
        ("<Response><Message Method='GET'/></Response>", "did you mean 'method'?"),
        ("<Response><Message status_callback='/s'/></Response>", "'statusCallback'?"),
        ("<Response><Message foo='1'/></Response>", "unknown attribute 'foo'"),
        ("<Response><Redirect action='/x'>/y</Redirect></Response>", "Twilio knows method"),
        ("<Response version='1'/>", "<Response> takes no attributes"),
        ("<Response><Message><Body lang='en'/></Message></Response>", "<Body> takes no"),
    ],
)
def test_lint_unknown_attribute(document: str, text: str) -> None:
    only(lint(document), text)


@pytest.mark.parametrize(
    "document",
    ["<Response>hello<Message/></Response>", "<Response><Message/>hello</Response>"],
)
def test_lint_text_directly_inside_response(document: str) -> None:
    only(lint(document), "text directly inside <Response>")


def test_lint_text_after_a_noun() -> None:
    only(lint("<Response><Message><Body>a</Body>b</Message></Response>"), "text after <Body>")


def test_lint_verbs_after_redirect() -> None:
    problems = lint("<Response>\n<Redirect>/a</Redirect>\n<Message/>\n<Redirect/>\n</Response>")
    tail = "after the <Redirect> on line 2 is never reached; move it before the <Redirect>"
    assert [(p.line, p.message) for p in problems] == [
        (3, f"<Message> {tail}"),
        (4, f"<Redirect> {tail}"),
    ]


def test_lint_too_many_media() -> None:
    media = "".join(f"<Media>https://example.com/{i}</Media>\n" for i in range(12))
    problem = only(lint(f"<Response><Message>\n{media}</Message></Response>"), "at most 10 <Media>")
    assert problem.line == 12  # the eleventh, reported once
    assert lint(f"<Response><Message>{'<Media/>' * 10}</Message></Response>") == []


def test_lint_body_too_long() -> None:
    body = "a" * 800
    document = f"<Response><Message>{body}<Body>{body}</Body><Body>b</Body></Message></Response>"
    only(lint(document), "1601 characters")
    assert lint(document.replace("<Body>b</Body>", "")) == []


@pytest.mark.parametrize(
    "document",
    [
        "<Response><Message method='put'/></Response>",
        "<Response><Redirect method='GETS'/></Response>",
    ],
)
def test_lint_invalid_method(document: str) -> None:
    only(lint(document), "'GET' or 'POST'")


@pytest.mark.parametrize("name", ["action", "statusCallback"])
def test_lint_underscore_host_in_callback(name: str) -> None:
    only(lint(f"<Response><Message {name}='https://a_b.example.com/x'/></Response>"), "'_'")
    assert lint(f"<Response><Message {name}='/a_b'/></Response>") == []


def test_lint_doctype() -> None:
    only(lint("<!DOCTYPE Response><Response/>"), "DOCTYPE")


def test_lint_reports_every_problem_in_order() -> None:
    document = """<Response>
<message/>
<Message method="PUT" colour="red">
<Media/><Redirect/>
</Message>
<Redirect>/next</Redirect>
<Message/>
</Response>"""
    problems = lint(document)
    assert [p.line for p in problems] == [2, 3, 3, 4, 7]
    assert "<message>" in problems[0].message
    assert "colour" in problems[1].message
    assert "'PUT'" in problems[2].message
    assert "<Redirect> nested in <Message>" in problems[3].message
    assert "never reached" in problems[4].message
    assert str(problems[0]).startswith("line 2: unknown verb <message>")
    assert str(Problem(None, "x")) == "x"


def test_lint_accepts_valid_documents() -> None:
    assert lint(str(sample_response())) == []
    assert lint(sample_response().to_bytes()) == []
    assert lint(DECL + "<Response/>") == []
    assert lint("<Response>\n  <Message>hi</Message>\n</Response>\n") == []
    response = twilio.MessagingResponse()
    message = response.message("Hi", to="+1555", from_="+1666", action="/a", method="GET")
    message.body("more")
    message.media("https://example.com/a.png")
    response.message("")
    response.redirect("https://example.com/next", method="POST")
    assert lint(str(response)) == []
    assert lint(str(twilio.MessagingResponse())) == []


# --- comparison with twilio-python ---------------------------------------------------------------

# XML 1.0 characters minus the documented differences: forbidden characters and "\r".
xml_chars = st.characters(
    exclude_categories=["Cs"],
    exclude_characters=[*FORBIDDEN, "\r"],
)
texts = st.text(xml_chars, max_size=40)
urls = st.one_of(
    st.builds(
        "https://{}.example.com/{}".format,
        st.from_regex(r"[a-z][a-z0-9-]{0,10}", fullmatch=True),
        texts,
    ),
    texts.filter(lambda url: "_" not in url),
)
NAMED = {"to", "from", "from_", "action", "method", "status_callback", "statusCallback", "body"}
extra_names = st.from_regex(r"[a-z][a-z0-9]{0,6}(_[a-z0-9]{1,6}){0,2}", fullmatch=True).filter(
    lambda name: name not in NAMED and twiml._attribute_name(name) not in NAMED
)
attributes = st.fixed_dictionaries(
    {},
    optional={
        "to": texts,
        "from_": texts,
        "action": urls,
        "method": st.sampled_from(["GET", "POST"]),
        "status_callback": urls,
    },
)
nouns = st.lists(st.tuples(st.sampled_from(["body", "media"]), texts), max_size=12).filter(
    lambda items: sum(kind == "media" for kind, _ in items) <= 10
)
messages = st.tuples(
    st.one_of(st.none(), texts),
    attributes,
    st.one_of(st.none(), st.tuples(extra_names, st.one_of(texts, st.booleans(), st.integers()))),
    nouns,
)
responses = st.tuples(
    st.lists(messages, max_size=3),
    st.one_of(st.none(), st.tuples(texts, st.sampled_from([None, "GET", "POST"]))),
)


def build(library: Any, spec: Any) -> Any:
    message_specs, redirect = spec
    response = library.MessagingResponse()
    for body, attrs, extra, noun_specs in message_specs:
        kwargs = dict(attrs)
        if extra is not None:
            kwargs[extra[0]] = extra[1]
        message = response.message(body, **kwargs)
        for kind, text in noun_specs:
            message.body(text) if kind == "body" else message.media(text)
    if redirect is not None:
        response.redirect(redirect[0], method=redirect[1])
    return response


@given(responses)
def test_same_document_as_twilio_python(spec: Any) -> None:
    ours = build(twiml, spec)
    theirs = build(twilio, spec)
    expected = str(theirs)
    assert tree(ours.to_bytes()) == tree(expected)
    assert tree(str(ours)) == tree(expected)
    problems = lint(expected)
    assert all("unknown attribute" in p.message for p in problems)  # from the extra keyword
    assert len(problems) == sum(extra is not None for _, _, extra, _ in spec[0])
    again = parse(ours.to_bytes())
    assert again.to_bytes() == ours.to_bytes()
    assert [m.body for m in again.messages] == [m.body for m in ours.messages]


@given(texts, st.sampled_from(FORBIDDEN))
def test_difference_forbidden_characters_are_removed(text: str, char: str) -> None:
    dirty = text[: len(text) // 2] + char + text[len(text) // 2 :]
    theirs = twilio.MessagingResponse()
    theirs.message(dirty)
    with pytest.raises(etree.XMLSyntaxError):
        etree.fromstring(str(theirs).encode())  # twilio-python writes invalid XML
    ours = MessagingResponse()
    ours.message(dirty)
    ET.fromstring(ours.to_bytes())
    assert parse(ours.to_bytes()).messages[0].body == text


@pytest.mark.parametrize("char", SURROGATES)
def test_difference_lone_surrogates_are_removed(char: str) -> None:
    theirs = twilio.MessagingResponse()
    theirs.message(f"a{char}b")
    assert f"a&#{ord(char)};b" in str(theirs)
    with pytest.raises(etree.XMLSyntaxError):
        etree.fromstring(str(theirs).encode())
    ours = MessagingResponse()
    ours.message(f"a{char}b")
    assert ours.messages[0].body == "ab"


@given(st.text(st.sampled_from("ab\r\n"), max_size=20))
def test_difference_carriage_returns_are_kept(text: str) -> None:
    theirs = twilio.MessagingResponse()
    theirs.message(text)
    ours = MessagingResponse()
    ours.message(text)
    normalised = text.replace("\r\n", "\n").replace("\r", "\n")
    assert tree(str(theirs))[3][0][2] == normalised  # what Twilio's parser reads
    assert parse(ours.to_bytes()).messages[0].body == text


def test_difference_empty_elements_are_written_without_a_space() -> None:
    theirs = twilio.MessagingResponse()
    theirs.message("")
    assert str(theirs) == DECL + "<Response><Message /></Response>"
    ours = MessagingResponse()
    ours.message("")
    assert str(ours) == DECL + "<Response><Message/></Response>"
    assert tree(str(ours)) == tree(str(theirs))


def test_difference_twilio_python_sends_what_twilio_rejects() -> None:
    theirs = twilio.MessagingResponse()
    message = theirs.message("a" * 1601, method="PUT", action="https://a_b.example.com/")
    for i in range(11):
        message.media(f"https://example.com/{i}")
    theirs.redirect("/next")
    theirs.message("unreachable")
    problems = lint(str(theirs))
    assert len(problems) == 5
    found = " ".join(p.message for p in problems)
    for text in ["1601 characters", "'PUT'", "'_'", "at most 10", "never reached"]:
        assert text in found
    with pytest.raises(BodyTooLongError):
        Message("a" * 1601)
    with pytest.raises(InvalidMethodError):
        Message(method="PUT")
    with pytest.raises(InvalidCallbackURLError):
        Message(action="https://a_b.example.com/")


def test_difference_attribute_arguments_are_keyword_only() -> None:
    theirs = twilio.MessagingResponse()
    theirs.message("hi", "+15551230000")
    assert 'to="+15551230000"' in str(theirs)
    with pytest.raises(TypeError):
        MessagingResponse().message("hi", "+15551230000")  # type: ignore[call-arg]


def test_difference_a_verb_is_appended_once() -> None:
    theirs = twilio.MessagingResponse()
    message = twilio.Message("hi")
    theirs.append(message).append(message)
    assert str(theirs).count("<Message>") == 2
    ours = MessagingResponse()
    again = Message("hi")
    with pytest.raises(TwiMLError):
        ours.append(again).append(again)


# --- twilio-python's documented messaging examples, through both builders ---------------------
# Each example is written once against the names both modules share (MessagingResponse, Message,
# Body, Media, Redirect): the cases of twilio-python's unit suite for messaging TwiML and the
# Python samples of Twilio's <Message>, <Redirect>, <Body> and <Media> pages.


def unit_response(lib: Any) -> Any:
    r = lib.MessagingResponse()
    r.message("Hello")
    r.redirect(url="example.com")
    return r


def unit_response_chain(lib: Any) -> Any:
    with lib.MessagingResponse() as r:
        r.message("Hello")
        r.redirect(url="example.com")
    return r


def unit_nested_verbs(lib: Any) -> Any:
    with lib.MessagingResponse() as r, r.message("Hello") as m:
        m.media("example.com")
    return r


def docs_reply(lib: Any) -> Any:
    response = lib.MessagingResponse()
    response.message("Store Location: 123 Easy St.")
    return response


def docs_action_and_method(lib: Any) -> Any:
    response = lib.MessagingResponse()
    response.message("Store Location: 123 Easy St.", action="/SmsHandler.php", method="POST")
    return response


def docs_to_from_and_status_callback(lib: Any) -> Any:
    response = lib.MessagingResponse()
    response.message(
        "Your order has shipped.",
        to="+15558675310",
        from_="+15017122661",
        status_callback="https://example.com/MessageStatus",
    )
    return response


def docs_media_with_body(lib: Any) -> Any:
    response = lib.MessagingResponse()
    message = lib.Message()
    message.body("Store Location: 123 Easy St.")
    message.media("https://demo.twilio.com/owl.png")
    response.append(message)
    return response


def docs_standalone_nouns(lib: Any) -> Any:
    response = lib.MessagingResponse()
    message = lib.Message()
    message.append(lib.Body("Hello Jenny"))
    message.append(lib.Media("https://demo.twilio.com/owl.png"))
    response.append(message)
    return response


def docs_two_messages(lib: Any) -> Any:
    response = lib.MessagingResponse()
    response.message("This is message 1 of 2.")
    response.message("This is message 2 of 2.")
    return response


def docs_redirect_absolute(lib: Any) -> Any:
    response = lib.MessagingResponse()
    response.redirect("http://www.example.com/nextInstructions")
    return response


def docs_redirect_relative(lib: Any) -> Any:
    response = lib.MessagingResponse()
    response.redirect("../nextInstructions", method="POST")
    return response


def docs_message_then_redirect(lib: Any) -> Any:
    response = lib.MessagingResponse()
    response.message("Hello World!").media("https://demo.twilio.com/owl.png")
    response.append(lib.Redirect("https://demo.twilio.com/welcome/sms/", method="GET"))
    return response


def docs_escaped_text(lib: Any) -> Any:
    response = lib.MessagingResponse()
    response.message('Tom & Jerry <3 "quotes"', to="+1 (555) 123-4567")
    return response


def unit_empty_response(lib: Any) -> Any:
    return lib.MessagingResponse()


DOCUMENTED_EXAMPLES = [
    unit_empty_response,
    unit_response,
    unit_response_chain,
    unit_nested_verbs,
    docs_reply,
    docs_action_and_method,
    docs_to_from_and_status_callback,
    docs_media_with_body,
    docs_standalone_nouns,
    docs_two_messages,
    docs_redirect_absolute,
    docs_redirect_relative,
    docs_message_then_redirect,
    docs_escaped_text,
]


@pytest.mark.parametrize("example", DOCUMENTED_EXAMPLES, ids=lambda f: f.__name__)
def test_documented_example_gives_the_same_xml(example: Any) -> None:
    theirs = str(example(twilio))
    ours = example(twiml)
    # The one difference in these documents: an empty element is written without the space.
    assert str(ours) == theirs.replace(" />", "/>")
    assert ours.to_bytes() == theirs.replace(" />", "/>").encode()
    assert lint(theirs) == []


def after_redirect() -> None:
    response = MessagingResponse()
    response.redirect("/next")
    response.message("unreachable")


def test_difference_every_refusal_is_a_twiml_error() -> None:
    with pytest.raises(TwiMLException):
        twilio.MessagingResponse().append(12345)
    late = twilio.MessagingResponse()
    late.message(12345)  # accepted, and only str() fails
    with pytest.raises(TypeError, match="cannot serialize"):
        str(late)
    assert str(twilio.Message(0)) == DECL + "<Message />"
    wrong_types = [
        (lambda: MessagingResponse().append(12345), "int"),
        (lambda: Message().append(12345), "int"),
        (lambda: MessagingResponse().message(12345), "int"),
        (lambda: MessagingResponse().message(0), "int"),
        (lambda: Message().media(None), "NoneType"),
        (lambda: Message().body(b"bytes"), "bytes"),
        (lambda: MessagingResponse().redirect(42), "int"),
        (lambda: Body(1.5), "float"),
        (lambda: Media(None), "NoneType"),
        (lambda: Redirect(["/next"]), "list"),
        (lambda: parse(12345), "int"),
    ]
    for refusal, type_name in wrong_types:
        with pytest.raises(TwiMLTypeError, match=f"not {type_name}($|[;:])") as caught:
            refusal()
        assert isinstance(caught.value, TypeError)  # ported ``except TypeError`` still works
    for limit, error in [
        (lambda: Message("a" * 1601), BodyTooLongError),
        (lambda: Message(method="PUT"), InvalidMethodError),
        (after_redirect, RedirectNotLastError),
    ]:
        with pytest.raises(error):
            limit()
        assert issubclass(error, TwiMLError) and issubclass(error, ValueError)


@pytest.mark.parametrize(
    ("noun", "instead"),
    [
        (None, "write response.message(text) instead"),
        ("Body", "response.message().body(...) or response.append(Message().append(body))"),
        ("Media", "response.message().media(...) or response.append(Message().append(media))"),
    ],
    ids=["text", "body", "media"],
)
def test_difference_text_and_nouns_go_inside_a_message(noun: str | None, instead: str) -> None:
    def child(lib: Any) -> Any:
        return "No tags!" if noun is None else getattr(lib, noun)("hey.jpg")

    theirs = twilio.MessagingResponse()
    theirs.append(child(twilio))
    assert lint(str(theirs)) != []  # twilio-python writes what messaging TwiML does not allow
    ours = MessagingResponse()
    with pytest.raises(TwiMLTypeError) as caught:
        ours.append(child(twiml))
    assert instead in str(caught.value)
    assert str(ours) == DECL + "<Response/>"
