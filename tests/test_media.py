"""Media downloads: credentials only to Twilio's hosts, never across a redirect to another host.

Two local HTTP servers stand in for a Twilio media host (127.0.0.1, trusted by the test's
Sender) and another host (localhost): the download must never hand the second one the
account's credentials.
"""

from __future__ import annotations

import base64
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from twilio.rest import Client

from webhook_kit import InboundMedia, MessageStatus
from webhook_kit.emulator import Emulator
from webhook_kit.errors import MediaError, MediaHostError, MediaTooLargeError, MediaTypeError
from webhook_kit.sending import Sender
from webhook_kit.stores import open_store

ACCOUNT, TOKEN = "AC" + "1" * 32, "media-token"
PICTURE = b"\xff\xd8\xff\xe0" + b"jpeg" * 5000
MEDIA_PATH = f"/2010-04-01/Accounts/{ACCOUNT}/Messages/MM{'2' * 32}/Media/ME{'3' * 32}"


class Host:
    """A loopback HTTP server that records the Authorization header of every request."""

    def __init__(self, name: str) -> None:
        self.seen: list[tuple[str, str | None]] = []
        self.redirect_to: str | None = None
        host = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                host.seen.append((self.path, self.headers.get("Authorization")))
                if self.path == "/redirect" and host.redirect_to:
                    self.send_response(302)
                    self.send_header("Location", host.redirect_to)
                    self.end_headers()
                    return
                kind = "text/plain" if self.path.endswith("/text") else "image/jpeg"
                self.send_response(200)
                self.send_header("Content-Type", kind)
                if not self.path.endswith("/unsized"):
                    self.send_header("Content-Length", str(len(PICTURE)))
                self.end_headers()
                self.wfile.write(PICTURE)

            def log_message(self, *args: object) -> None:
                return None

        Handler.protocol_version = "HTTP/1.0"
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.base = f"http://{name}:{self.server.server_port}"
        self.thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def hosts() -> Iterator[tuple[Host, Host]]:
    twilio_like, other = Host("127.0.0.1"), Host("localhost")
    yield twilio_like, other
    twilio_like.close()
    other.close()


@pytest.fixture
def sender(hosts: tuple[Host, Host]) -> Sender:
    return Sender(
        open_store("memory://"),
        Client(ACCOUNT, TOKEN),
        media_origins=[hosts[0].base],  # stands in for https://api.twilio.com
    )


AUTH = "Basic " + base64.b64encode(f"{ACCOUNT}:{TOKEN}".encode()).decode()


def test_download_from_a_twilio_host_with_credentials(
    hosts: tuple[Host, Host], sender: Sender, tmp_path: Path
) -> None:
    twilio_like, _ = hosts
    path = sender.download(InboundMedia(twilio_like.base + MEDIA_PATH, "image/jpeg"), tmp_path)
    assert path == tmp_path / f"ME{'3' * 32}" and path.read_bytes() == PICTURE
    assert twilio_like.seen == [(MEDIA_PATH, AUTH)]


def test_a_non_twilio_host_is_refused(
    hosts: tuple[Host, Host], sender: Sender, tmp_path: Path
) -> None:
    _, other = hosts
    with pytest.raises(MediaHostError, match="refusing to send Twilio credentials"):
        sender.download(InboundMedia(other.base + MEDIA_PATH, "image/jpeg"), tmp_path / "x.jpg")
    with pytest.raises(MediaHostError):
        sender.download("https://api.twilio.com.evil.example/x", tmp_path / "x.jpg")
    assert other.seen == [] and not (tmp_path / "x.jpg").exists()


def test_a_redirect_to_another_host_is_followed_without_credentials(
    hosts: tuple[Host, Host], sender: Sender, tmp_path: Path
) -> None:
    twilio_like, other = hosts
    twilio_like.redirect_to = other.base + "/signed-storage-url"
    path = sender.download(twilio_like.base + "/redirect", tmp_path / "photo.jpg")
    assert path.read_bytes() == PICTURE
    assert twilio_like.seen == [("/redirect", AUTH)]
    assert other.seen == [("/signed-storage-url", None)]  # the credentials stayed home


def test_content_type_must_match_what_the_message_declared(
    hosts: tuple[Host, Host], sender: Sender, tmp_path: Path
) -> None:
    media = InboundMedia(hosts[0].base + "/media/text", "image/jpeg")
    with pytest.raises(MediaTypeError, match="text/plain"):
        sender.download(media, tmp_path / "x.jpg")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("path", ["/media/sized", "/media/unsized"])
def test_size_cap(hosts: tuple[Host, Host], sender: Sender, tmp_path: Path, path: str) -> None:
    with pytest.raises(MediaTooLargeError):
        sender.download(hosts[0].base + path, tmp_path / "x.jpg", max_bytes=1000)
    assert list(tmp_path.iterdir()) == []  # no partial file left behind


def test_errors_are_media_errors(hosts: tuple[Host, Host], tmp_path: Path) -> None:
    unreachable = Sender(
        open_store("memory://"), Client(ACCOUNT, TOKEN), media_origins=["http://127.0.0.1:1"]
    )
    with pytest.raises(MediaError, match="could not download"):
        unreachable.download("http://127.0.0.1:1/x", tmp_path / "x")
    with pytest.raises(MediaError, match="not a Twilio media URL"):
        unreachable.delete_media("https://api.twilio.com/elsewhere")


def test_delete_media_on_the_emulator() -> None:
    with Emulator(clock="manual") as emulator:
        sender = Sender(
            open_store("memory://"), emulator.client(), status_url="http://x/s", secret_key="k"
        )
        sent = sender.send(
            "+14155550100", "pic", from_="+15005550006", media_url="https://e.com/a.png"
        )
        assert sent.status is MessageStatus.QUEUED
        emulator.advance(5)
        (media,) = emulator.client().messages(sent.sid).media.list()
        url = f"https://api.twilio.com{media.uri}"
        sender.delete_media(url)
        assert emulator.client().messages(sent.sid).media.list() == []
