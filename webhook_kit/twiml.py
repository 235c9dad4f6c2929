"""TwiML for Messaging, built straight onto an lxml tree.

A drop-in for twilio-python's messaging subset: change
``from twilio.twiml.messaging_response import MessagingResponse`` to
``from webhook_kit.twiml import MessagingResponse``. The web layer serialises a reply on every
request, so each verb and noun holds its lxml element and serialising is one ``tostring`` call
(twilio-python rebuilds an ElementTree on every ``str()``, about 4x slower).

Every refusal raises a :class:`~webhook_kit.errors.TwiMLError` subclass while the reply is built
(where twilio-python raises ``TwiMLException``, a ``TypeError`` only on ``str()``, or nothing):
a child or argument of the wrong type (:class:`~webhook_kit.errors.TwiMLTypeError`, also a
``TypeError``), and the mistakes Twilio would only report at run time: more than 10 ``<Media>``,
a body over 1600 characters, a ``method`` other than GET/POST, a verb after ``<Redirect>``, an
underscore in the host of an absolute ``action``/``statusCallback`` URL. :func:`parse` reads
TwiML back into these objects and :func:`lint` lists everything wrong with a document.

Every deliberate difference from twilio-python is listed once, in the migration note of the
docs' TwiML section (docs/guide/handlers.md), and checked by a test in ``tests/test_twiml.py``.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Iterator
from copy import copy
from dataclasses import dataclass
from typing import ClassVar, Final, TypeVar, cast
from urllib.parse import urlsplit

from lxml import etree

from .encoding import segment_count
from .errors import (
    BodyTooLongError,
    InvalidCallbackURLError,
    InvalidMethodError,
    RedirectNotLastError,
    TooManyMediaError,
    TwiMLError,
    TwiMLParseError,
    TwiMLTypeError,
)

__all__ = [
    "MAX_BODY_LENGTH",
    "MAX_MEDIA",
    "Body",
    "BodyText",
    "Media",
    "Message",
    "MessagingResponse",
    "Problem",
    "Redirect",
    "lint",
    "parse",
]

#: Most ``<Media>`` nouns one ``<Message>`` may carry.
MAX_MEDIA: Final = 10
#: Most characters of one message body (its text and all its ``<Body>`` nouns).
MAX_BODY_LENGTH: Final = 1600

_log = logging.getLogger(__name__)

_DECLARATION: Final = '<?xml version="1.0" encoding="UTF-8"?>'
_DECLARATION_BYTES: Final = _DECLARATION.encode()
_METHODS: Final = ("GET", "POST")
_CALLBACK_ATTRIBUTES: Final = ("action", "statusCallback")
_KNOWN_ATTRIBUTES: Final = {
    "Response": frozenset[str](),
    "Message": frozenset(("to", "from", "action", "method", "statusCallback")),
    "Redirect": frozenset(("method",)),
    "Body": frozenset[str](),
    "Media": frozenset[str](),
}
_AFTER_REDIRECT: Final = (
    "nothing may follow <Redirect>: Twilio never reaches the verbs after it; add them before it"
)

# XML 1.0 allows only these characters; lxml raises ValueError on any other.
_NOT_XML: Final = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")
_find_not_xml: Final = _NOT_XML.search
_removal_logged = threading.Event()

# Bound once: these run for every verb of every reply.
_Element: Final = etree.Element
# Copying an empty element costs less than half of building one (a new lxml document each).
_RESPONSE: Final = etree.Element("Response")
_SubElement: Final = etree.SubElement
_tostring: Final = etree.tostring
_new_str: Final = str.__new__

_N = TypeVar("_N", bound="_Node")


def _xml_text(text: str) -> str:
    """``text`` without the characters XML 1.0 forbids; cheap when there are none (the usual case).

    Printable ASCII is settled by two C-level string checks, anything else by one regex search.
    """
    if text.isascii() and text.isprintable():
        return text
    found = _find_not_xml(text)
    if found is None:
        return text
    cleaned, count = _NOT_XML.subn("", text)
    first = ord(found.group())
    if _removal_logged.is_set():
        _log.debug("removed %d character(s) XML 1.0 forbids (first U+%04X)", count, first)
    else:
        _removal_logged.set()
        _log.warning(
            "removed %d character(s) XML 1.0 forbids (first U+%04X) from TwiML text; Twilio "
            "could not parse them. Later removals are logged at DEBUG",
            count,
            first,
        )
    return cleaned


def _text(value: object, what: str) -> str:
    """``value`` as TwiML text: ``str`` only, where twilio-python would ``str()`` or drop it."""
    if not isinstance(value, str):
        raise _not_text(value, what)
    return _xml_text(value)


def _not_text(value: object, what: str) -> TwiMLTypeError:
    return TwiMLTypeError(f"{what} must be str, not {type(value).__name__}; convert it first")


def _attribute_name(key: str) -> str:
    """The XML name twilio-python gives keyword ``key``: ``from_`` → ``from``, ``a_b`` → ``aB``."""
    if "_" not in key:
        return key
    camel = "".join(part.title() for part in key.split("_"))
    return camel[:1].lower() + camel[1:]


def _attribute_value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return _xml_text(value if isinstance(value, str) else str(value))


def _method_problem(method: str) -> str | None:
    if method in _METHODS:
        return None
    return f"method={method!r} is not allowed: Twilio accepts only 'GET' or 'POST'"


def _callback_problem(name: str, url: str) -> str | None:
    if "_" not in url:
        return None
    try:
        host = urlsplit(url).hostname
    except ValueError:
        return f"{name}={url!r} is not a valid URL"
    if host is None or "_" not in host:
        return None
    return (
        f"{name}={url!r}: Twilio rejects an absolute URL whose host name contains '_'; "
        "use a host name without underscores or a relative URL"
    )


def _body_problem(length: int) -> str:
    return (
        f"the message body is {length} characters, Twilio accepts at most {MAX_BODY_LENGTH}; "
        "split it into several <Message> verbs"
    )


def _media_problem() -> str:
    return f"a <Message> carries at most {MAX_MEDIA} <Media>; send the rest in another <Message>"


def _checked(attrs: dict[str, object]) -> dict[str, str] | None:
    """XML attributes from ``attrs``: None dropped, values as text, sorted by name, checked."""
    attrib = {
        name: _attribute_value(attrs[name]) for name in sorted(attrs) if attrs[name] is not None
    }
    method = attrib.get("method")
    if method is not None:
        problem = _method_problem(method)
        if problem is not None:
            raise InvalidMethodError(problem)
    for name in _CALLBACK_ATTRIBUTES:
        url = attrib.get(name)
        if url is not None:
            problem = _callback_problem(name, url)
            if problem is not None:
                raise InvalidCallbackURLError(problem)
    return attrib or None


def _attrib(named: dict[str, object], extra: dict[str, object]) -> dict[str, str] | None:
    """XML attributes from ``named`` (XML names already) and ``**extra`` keywords."""
    for key, value in extra.items():
        name = _attribute_name(key)
        try:  # lxml's own name check, so a bad keyword cannot fail halfway into the tree
            _Element("_", {name: ""})
        except ValueError as exc:
            raise TwiMLError(f"keyword {key!r} gives {name!r}, not an XML attribute name") from exc
        named[name] = value
    return _checked(named)


def _body_text(body: str | None) -> str:
    if body is None:
        return ""
    if not isinstance(body, str):  # _text, inlined: this runs for every reply
        raise _not_text(body, "a message body")
    text = _xml_text(body)
    if len(text) > MAX_BODY_LENGTH:
        raise BodyTooLongError(_body_problem(len(text)))
    return text


def _not_a_verb(child: object) -> str:
    """Why ``child`` cannot go straight into ``<Response>``, and what to write instead."""
    if isinstance(child, str):
        return (
            "text directly inside <Response> is not messaging TwiML, message text goes inside a "
            "<Message>; write response.message(text) instead"
        )
    if isinstance(child, Body | Media):
        adder = "body" if isinstance(child, Body) else "media"
        return (
            f"<{child._el.tag}> must be inside a <Message>; write response.message().{adder}(...) "
            f"or response.append(Message().append({adder})) instead"
        )
    return (
        f"a <Response> takes Message or Redirect, not {type(child).__name__}; add them with "
        "response.message(...) and response.redirect(...)"
    )


def _not_a_noun(child: object) -> str:
    """Why ``child`` cannot go into ``<Message>``, and what to write instead."""
    if isinstance(child, str):
        return "a <Message> takes Body or Media, not str; write message.body(text) instead"
    if isinstance(child, Message | Redirect | MessagingResponse):
        return (
            f"a <Message> takes Body or Media, not {type(child).__name__}: verbs go directly "
            "inside <Response>; append it to the response instead"
        )
    return (
        f"a <Message> takes Body or Media, not {type(child).__name__}; add them with "
        "message.body(text) and message.media(url)"
    )


def _unattached(node: _Node) -> None:
    if node._el.getparent() is not None:
        raise TwiMLError(
            f"this <{node._el.tag}> already belongs to another element; build a new one instead"
        )


class _Node:
    """What every verb and noun shares: the lxml element it writes into."""

    __slots__ = ("_el",)

    _el: etree._Element

    def to_bytes(self, xml_declaration: bool = True) -> bytes:
        """UTF-8 XML, what the web layer sends; no str round trip."""
        xml = _tostring(self._el, encoding="UTF-8")
        return _DECLARATION_BYTES + xml if xml_declaration else xml

    def to_xml(self, xml_declaration: bool = True) -> str:
        """The XML as text, with twilio-python's declaration (double quotes) first by default."""
        xml = _tostring(self._el, encoding="unicode")
        return _DECLARATION + xml if xml_declaration else xml

    def __str__(self) -> str:
        return self.to_xml()

    def __bytes__(self) -> bytes:
        return self.to_bytes()

    def __enter__(self: _N) -> _N:
        """``with response.message() as m:`` as in twilio-python; it only scopes the name."""
        return self

    def __exit__(self, *exc_info: object) -> None:
        return None

    def __eq__(self, other: object) -> bool:
        """Same kind and same XML, so a parsed reply equals the one that was built."""
        if not isinstance(other, _Node) or type(other) is not type(self):
            return NotImplemented
        return _tostring(self._el) == _tostring(other._el)

    __hash__ = None  # type: ignore[assignment]  # equal by content and mutable

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.to_xml(xml_declaration=False)}>"


class _TextNoun(_Node):
    """A noun whose whole content is one text."""

    __slots__ = ()
    _tag: ClassVar[str]
    _what: ClassVar[str]  # how error messages name the text

    def __init__(self, text: str) -> None:
        text = _text(text, self._what)
        self._el = _Element(self._tag)
        if text:
            self._el.text = text


class Body(_TextNoun):
    """``<Body>``: message text; Twilio joins all of a message's text into one body."""

    __slots__ = ()
    _tag = "Body"
    _what = "<Body> text"

    @property
    def text(self) -> str:
        return self._el.text or ""


class Media(_TextNoun):
    """``<Media>``: the URL of one attachment."""

    __slots__ = ()
    _tag = "Media"
    _what = "a <Media> URL"

    @property
    def url(self) -> str:
        return self._el.text or ""


class BodyText(str):
    """A message's full text that can also be called to add a ``<Body>``.

    ``message.body`` reads as the text Twilio sends (the ``<Message>`` text and every ``<Body>``,
    concatenated), so ``reply.messages[0].body == "Echo: hi"`` holds, while
    ``message.body("more")`` still appends a ``<Body>`` as in twilio-python. The value is a
    snapshot: read ``message.body`` again after adding text.
    """

    _message: Message

    def __call__(self, text: str) -> Body:
        """Append ``<Body>text</Body>`` to the message."""
        return self._message._add_body(text)


class Message(_Node):
    """``<Message>``: one reply message, its text, ``<Body>`` and ``<Media>`` nouns."""

    __slots__ = ("_length", "_media")

    _length: int
    _media: int

    def __init__(
        self,
        body: str | None = None,
        *,
        to: str | None = None,
        from_: str | None = None,
        action: str | None = None,
        method: str | None = None,
        status_callback: str | None = None,
        **extra: object,
    ) -> None:
        """A standalone message, for :meth:`MessagingResponse.append`."""
        attrib = _attrib(
            {
                "to": to,
                "from": from_,
                "action": action,
                "method": method,
                "statusCallback": status_callback,
            },
            extra,
        )
        text = _body_text(body)
        self._el = _Element("Message", attrib)
        if text:
            self._el.text = text
        self._length = len(text)
        self._media = 0

    @property
    def body(self) -> BodyText:
        """The full text; call it, ``message.body(text)``, to append a ``<Body>``."""
        # Built without a Python-level __new__: every ``message.body(...)`` call reads this first.
        text = _new_str(BodyText, self._text() if self._length else "")
        text._message = self
        return text

    def media(self, url: str) -> Media:
        """Append ``<Media>url</Media>``."""
        if self._media >= MAX_MEDIA:
            raise TooManyMediaError(_media_problem())
        if not (isinstance(url, str) and url.isascii() and url.isprintable()):  # _text, inlined
            url = _text(url, Media._what)
        el = _SubElement(self._el, "Media")
        if url:
            el.text = url
        self._media += 1
        noun = Media.__new__(Media)
        noun._el = el
        return noun

    def append(self, noun: Body | Media) -> Message:
        """Add a standalone ``Body``/``Media``; returns the message, as twilio-python does."""
        if isinstance(noun, Media):
            _unattached(noun)
            if self._media >= MAX_MEDIA:
                raise TooManyMediaError(_media_problem())
            self._media += 1
        elif isinstance(noun, Body):
            _unattached(noun)
            self._grow(len(noun.text))
        else:
            raise TwiMLTypeError(_not_a_noun(noun))
        self._el.append(noun._el)
        return self

    @property
    def media_urls(self) -> tuple[str, ...]:
        return tuple(child.text or "" for child in self._el if child.tag == "Media")

    @property
    def to(self) -> str | None:
        return self._el.get("to")

    @property
    def from_(self) -> str | None:
        return self._el.get("from")

    @property
    def action(self) -> str | None:
        return self._el.get("action")

    @property
    def method(self) -> str | None:
        return self._el.get("method")

    @property
    def status_callback(self) -> str | None:
        return self._el.get("statusCallback")

    @property
    def attrs(self) -> dict[str, str]:
        """XML attribute name → value, e.g. ``{"from": …, "statusCallback": …}``."""
        return {str(name): str(value) for name, value in self._el.attrib.items()}

    @property
    def segments(self) -> int:
        """SMS segments the body costs; 0 when there is no text (media only)."""
        return segment_count(self._text()) if self._length else 0

    def _text(self) -> str:
        head = self._el.text or ""
        if len(self._el) == 0:
            return head
        return head + "".join(child.text or "" for child in self._el if child.tag == "Body")

    def _grow(self, length: int) -> None:
        total = self._length + length
        if total > MAX_BODY_LENGTH:
            raise BodyTooLongError(_body_problem(total))
        self._length = total

    def _add_body(self, text: str) -> Body:
        if not (isinstance(text, str) and text.isascii() and text.isprintable()):  # _text, inlined
            text = _text(text, Body._what)
        self._grow(len(text))
        el = _SubElement(self._el, "Body")
        if text:
            el.text = text
        noun = Body.__new__(Body)
        noun._el = el
        return noun


class Redirect(_Node):
    """``<Redirect>``: continue with the TwiML at ``url``; nothing may follow it."""

    __slots__ = ()

    def __init__(self, url: str, method: str | None = None, **extra: object) -> None:
        attrib = _attrib({"method": method}, extra)
        url = _text(url, "a <Redirect> URL")
        self._el = _Element("Redirect", attrib)
        if url:
            self._el.text = url

    @property
    def url(self) -> str:
        return self._el.text or ""

    @property
    def method(self) -> str | None:
        return self._el.get("method")


class MessagingResponse(_Node):
    """``<Response>``: the verbs Twilio runs, top to bottom, to answer an incoming message."""

    __slots__ = ("_redirected", "_verbs")

    def __init__(self) -> None:
        self._el = copy(_RESPONSE)
        self._verbs: list[Message | Redirect] = []
        self._redirected = False

    def message(
        self,
        body: str | None = None,
        *,
        to: str | None = None,
        from_: str | None = None,
        action: str | None = None,
        method: str | None = None,
        status_callback: str | None = None,
        **extra: object,
    ) -> Message:
        """Append a ``<Message>`` and return it; attribute names as in twilio-python."""
        if self._redirected:
            raise RedirectNotLastError(_AFTER_REDIRECT)
        attrib = None
        if (  # the common reply has no attributes: skip building and sorting a dict
            to is not None
            or from_ is not None
            or action is not None
            or method is not None
            or status_callback is not None
            or extra
        ):
            attrib = _attrib(
                {
                    "to": to,
                    "from": from_,
                    "action": action,
                    "method": method,
                    "statusCallback": status_callback,
                },
                extra,
            )
        return self._add_message(attrib, body)

    def redirect(self, url: str, method: str | None = None, **extra: object) -> Redirect:
        """Append a ``<Redirect>`` and return it; no verb may be added after it."""
        if self._redirected:
            raise RedirectNotLastError(_AFTER_REDIRECT)
        return self._add_redirect(_attrib({"method": method}, extra), url)

    def append(self, verb: Message | Redirect) -> MessagingResponse:
        """Add a standalone ``Message``/``Redirect``; returns the response, like twilio-python."""
        if not isinstance(verb, Message | Redirect):
            raise TwiMLTypeError(_not_a_verb(verb))
        if self._redirected:
            raise RedirectNotLastError(_AFTER_REDIRECT)
        _unattached(verb)
        self._el.append(verb._el)
        self._verbs.append(verb)
        self._redirected = isinstance(verb, Redirect)
        return self

    @property
    def verbs(self) -> tuple[Message | Redirect, ...]:
        return tuple(self._verbs)

    @property
    def messages(self) -> tuple[Message, ...]:
        return tuple(verb for verb in self._verbs if isinstance(verb, Message))

    @property
    def segments(self) -> int:
        """SMS segments all message bodies cost together."""
        return sum(verb.segments for verb in self._verbs if type(verb) is Message)

    def _add_message(self, attrib: dict[str, str] | None, body: str | None) -> Message:
        text = _body_text(body)
        el = _SubElement(self._el, "Message", attrib)
        if text:
            el.text = text
        message = Message.__new__(Message)
        message._el = el
        message._length = len(text)
        message._media = 0
        self._verbs.append(message)
        return message

    def _add_redirect(self, attrib: dict[str, str] | None, url: str) -> Redirect:
        url = _text(url, "a <Redirect> URL")
        el = _SubElement(self._el, "Redirect", attrib)
        if url:
            el.text = url
        verb = Redirect.__new__(Redirect)
        verb._el = el
        self._verbs.append(verb)
        self._redirected = True
        return verb


@dataclass(frozen=True, slots=True)
class Problem:
    """One thing wrong with a TwiML document; ``line`` is None when the parser cannot tell."""

    line: int | None
    message: str

    def __str__(self) -> str:
        return self.message if self.line is None else f"line {self.line}: {self.message}"


# A review finding: where, what, and the error parse() raises for it (None: lint only).
_Finding = tuple[int | None, str, type[TwiMLError] | None]


def parse(text: str | bytes) -> MessagingResponse:
    """Read a TwiML document back into a :class:`MessagingResponse`.

    Raises :class:`~webhook_kit.errors.TwiMLParseError` (with the line) for XML that is not
    well-formed or is not messaging TwiML, and the builder's own error for a broken limit.
    Attributes webhook_kit does not know are kept, as ``message(**extra)`` writes them.
    """
    root, errors = _read(text)
    if root is None or errors:
        raise TwiMLParseError(str(Problem(*errors[0])))
    for where, what, error in _review(root):
        if error is not None:
            raise error(str(Problem(where, what)))
    response = MessagingResponse()
    for verb in root:
        attrib = _checked({str(name): value for name, value in verb.attrib.items()})
        if verb.tag == "Redirect":
            response._add_redirect(attrib, verb.text or "")
            continue
        message = response._add_message(attrib, verb.text)
        for noun in verb:
            if noun.tag == "Body":
                message._add_body(noun.text or "")
            else:
                message.media(noun.text or "")
    return response


def lint(text: str | bytes) -> list[Problem]:
    """Every problem in a TwiML document, in document order; an empty list means it is fine."""
    root, errors = _read(text)
    problems = [Problem(line, message) for line, message in errors]
    if root is not None:
        problems.extend(Problem(line, message) for line, message, _ in _review(root))
    return problems


def _read(text: str | bytes) -> tuple[etree._Element | None, list[tuple[int | None, str]]]:
    """Parse with entities unresolved, no DTD and no network: TwiML comes from files and HTTP."""
    if isinstance(text, str):
        try:
            data = text.encode()
        except UnicodeEncodeError as exc:
            return None, [(None, f"not well-formed XML: lone surrogate at index {exc.start}")]
        encoding: str | None = "UTF-8"  # the text is decoded already; ignore its declaration
    elif isinstance(text, bytes):
        data, encoding = text, None
    else:
        raise TwiMLTypeError(f"a TwiML document is str or bytes, not {type(text).__name__}")
    parser = etree.XMLParser(
        encoding=encoding,
        resolve_entities=False,
        load_dtd=False,
        no_network=True,
        huge_tree=False,
        remove_comments=True,
        remove_pis=True,
    )
    try:
        root = etree.fromstring(data, parser)
    except etree.XMLSyntaxError as exc:
        errors: list[tuple[int | None, str]] = [
            (entry.line or None, f"not well-formed XML: {entry.message}")
            for entry in parser.error_log
            if entry.level >= etree.ErrorLevels.ERROR
        ]
        return None, errors or [(exc.lineno or None, f"not well-formed XML: {exc.msg}")]
    if root.getroottree().docinfo.internalDTD is not None:
        return root, [(1, "a DOCTYPE is not allowed in TwiML; remove it")]
    return root, []


def _review(root: etree._Element) -> Iterator[_Finding]:
    """Everything wrong below ``root``; shared by :func:`parse` (first error) and :func:`lint`."""
    if root.tag != "Response":
        yield (
            _line(root),
            f"the root element is <{root.tag}>; TwiML for Messaging needs <Response>",
            TwiMLParseError,
        )
    yield from _attribute_findings(root, "Response")
    if _has_text(root.text):
        yield _line(root), _stray_text("<Response>"), TwiMLParseError
    redirect_line: int | None = None
    for verb in root:
        tag = verb.tag
        if not isinstance(tag, str):  # an unresolved entity; its DOCTYPE is reported already
            continue
        if redirect_line is not None:
            yield (
                _line(verb),
                f"<{tag}> after the <Redirect> on line {redirect_line} is never reached; "
                "move it before the <Redirect>",
                RedirectNotLastError,
            )
        if tag == "Message":
            yield from _message_findings(verb)
        elif tag == "Redirect":
            redirect_line = _line(verb)
            yield from _attribute_findings(verb, tag)
            for child in verb:
                yield _line(child), _nested(child, tag), TwiMLParseError
        elif tag in ("Body", "Media"):
            yield _line(verb), f"<{tag}> must be inside a <Message>", TwiMLParseError
        else:
            yield _line(verb), _unknown(tag, "verb", ("Message", "Redirect")), TwiMLParseError
        if _has_text(verb.tail):
            yield _line(verb), _stray_text(f"<Response> after <{tag}>"), TwiMLParseError


def _message_findings(message: etree._Element) -> Iterator[_Finding]:
    yield from _attribute_findings(message, "Message")
    length = len(message.text or "")
    media = 0
    for noun in message:
        tag = noun.tag
        if not isinstance(tag, str):
            continue
        if tag in ("Body", "Media"):
            yield from _attribute_findings(noun, tag)
            for child in noun:
                yield _line(child), _nested(child, tag), TwiMLParseError
            if tag == "Body":
                length += len(noun.text or "")
            else:
                media += 1
                if media == MAX_MEDIA + 1:
                    yield _line(noun), _media_problem(), TooManyMediaError
        elif tag in ("Message", "Redirect"):
            yield (
                _line(noun),
                f"verb <{tag}> nested in <Message>: verbs go directly inside <Response>",
                TwiMLParseError,
            )
        else:
            yield _line(noun), _unknown(tag, "noun", ("Body", "Media")), TwiMLParseError
        if _has_text(noun.tail):
            yield (
                _line(noun),
                f"text after <{tag}> inside <Message>: put the text first or in a <Body>",
                TwiMLParseError,
            )
    if length > MAX_BODY_LENGTH:
        yield _line(message), _body_problem(length), BodyTooLongError


def _attribute_findings(el: etree._Element, tag: str) -> Iterator[_Finding]:
    known = _KNOWN_ATTRIBUTES[tag]
    # The builder writes unknown attributes on verbs (``**extra``), so parse keeps those.
    error = None if known else TwiMLParseError
    for raw in el.attrib:
        name = str(raw)
        if name not in known:
            yield _line(el), _unknown_attribute(name, tag, known), error
    method = el.get("method")
    if method is not None:
        problem = _method_problem(method)
        if problem is not None:
            yield _line(el), f"<{tag}> {problem}", InvalidMethodError
    for name in _CALLBACK_ATTRIBUTES:
        url = el.get(name)
        if url is not None:
            problem = _callback_problem(name, url)
            if problem is not None:
                yield _line(el), f"<{tag}> {problem}", InvalidCallbackURLError


def _line(el: etree._Element) -> int | None:
    return cast("int | None", el.sourceline)  # lxml-stubs leave sourceline untyped


def _has_text(text: str | None) -> bool:
    return bool(text and not text.isspace())


def _stray_text(where: str) -> str:
    return f"text directly inside {where}; message text goes inside a <Message>"


def _nested(child: etree._Element, tag: str) -> str:
    return f"<{child.tag}> nested in <{tag}>: nothing may be nested inside <{tag}>"


def _unknown(tag: str, kind: str, allowed: tuple[str, ...]) -> str:
    for name in allowed:
        if tag.lower() == name.lower():
            return f"unknown {kind} <{tag}>: TwiML names are case-sensitive, use <{name}>"
    return f"unknown {kind} <{tag}>: allowed here are " + ", ".join(f"<{n}>" for n in allowed)


def _unknown_attribute(name: str, tag: str, known: frozenset[str]) -> str:
    if not known:
        return f"<{tag}> takes no attributes, found {name!r}"
    for candidate in sorted(known):
        if candidate.lower() in (name.lower(), _attribute_name(name).lower()):
            return f"unknown attribute {name!r} on <{tag}>: did you mean {candidate!r}?"
    return f"unknown attribute {name!r} on <{tag}>: Twilio knows " + ", ".join(sorted(known))
