"""The README and every page in docs/ say only what runs.

Every ```python block of README.md and docs/**/*.md runs as a standalone script in a fresh
subprocess, in a temporary working directory, offline (HTTP(S) proxies point at a closed
loopback port; only loopback is reached directly). A block that defines ``test_`` functions
is a test file a user would save: pytest runs it, and every test in it must pass. Blocks
whose first line is ``# file: NAME`` (any language) are the files of one small project: each
named python block runs with every other named block of its page saved beside it under its
NAME, so a page can show ``bot.py``, then ``pytest.ini`` and ``test_bot.py``. A block
without a name runs alone. Fragments that should not run are fenced ```text, ```pycon,
```sh or ```console.

The blocks run in parallel (one subprocess each); each is its own test, named file:line.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest
from server import free_port, wait_for_server

from webhook_kit.config import DEFAULTS, SERVER_KEYS

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
README_LIMIT = 300
FENCE = re.compile(r"^(`{3,})(\S*)")
FILE_MARKER = re.compile(r"^(?:#|;|//) file: (\S+)\s*$")
TEST_FUNCTION = re.compile(r"^def test_\w+\(", re.MULTILINE)
LINK = re.compile(r"(?<!!)\[[^\]]*\]\(([^)\s]+)\)")


@dataclass(frozen=True)
class Block:
    """One fenced code block: where it is, its language and text."""

    page: Path
    line: int
    language: str
    text: str

    @property
    def id(self) -> str:
        return f"{self.page.relative_to(ROOT)}:{self.line}"

    @property
    def file_name(self) -> str | None:
        """The NAME of a ``# file: NAME`` first line: the block is that file."""
        first = self.text.split("\n", 1)[0]
        match = FILE_MARKER.match(first)
        return match.group(1) if match else None

    @property
    def is_test_file(self) -> bool:
        return TEST_FUNCTION.search(self.text) is not None


def pages() -> list[Path]:
    found = [p for p in DOCS.rglob("*.md") if "_build" not in p.relative_to(DOCS).parts]
    return [ROOT / "README.md", *sorted(found)]


def fenced_blocks(page: Path) -> Iterator[Block]:
    """Each top-level fenced block of a markdown page (``{directive}`` fences excluded)."""
    lines = page.read_text(encoding="utf-8").splitlines()
    index = 0
    while index < len(lines):
        opening = FENCE.match(lines[index])
        if opening is None:
            index += 1
            continue
        fence, language = opening.groups()
        start = index + 1
        index = start
        while index < len(lines) and not lines[index].startswith(fence):
            index += 1
        yield Block(page, start, language, "\n".join(lines[start:index]) + "\n")
        index += 1


def python_blocks() -> list[Block]:
    return [b for page in pages() for b in fenced_blocks(page) if b.language == "python"]


def offline_environ() -> dict[str, str]:
    """The test's environment without Twilio or kit settings, and without a network route."""
    environ = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("TWILIO_", "WEBHOOK_KIT_", "PYTEST_"))
    }
    closed = "http://127.0.0.1:9"  # the discard port: nothing listens
    environ.update(
        HTTP_PROXY=closed,
        HTTPS_PROXY=closed,
        http_proxy=closed,
        https_proxy=closed,
        NO_PROXY="127.0.0.1,localhost,::1",
        no_proxy="127.0.0.1,localhost,::1",
        PYTHONDONTWRITEBYTECODE="1",
    )
    return environ


def run_block(block: Block) -> subprocess.CompletedProcess[str]:
    """Run one python block in a fresh directory (a named one beside its page's others)."""
    with tempfile.TemporaryDirectory(prefix="docs-example-") as directory:
        work = Path(directory)
        for other in fenced_blocks(block.page) if block.file_name else ():
            if other.file_name is not None and other.line != block.line:
                (work / other.file_name).write_text(other.text, encoding="utf-8")
        name = block.file_name or ("test_example.py" if block.is_test_file else "example.py")
        script = work / name
        script.write_text(block.text, encoding="utf-8")
        if block.is_test_file:
            command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", name]
        else:
            command = [sys.executable, name]
        return subprocess.run(
            command,
            cwd=work,
            env=offline_environ(),
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )


BLOCKS = python_blocks()


@pytest.fixture(scope="module")
def runs(
    request: pytest.FixtureRequest,
) -> Iterator[dict[str, Future[subprocess.CompletedProcess[str]]]]:
    """Every selected block started at once, a few at a time, so the whole file takes seconds."""
    selected = [
        item.callspec.params["block"]
        for item in request.session.items
        if isinstance(item, pytest.Function) and item.originalname == "test_example_runs"
    ]
    with ThreadPoolExecutor(max_workers=max(4, (os.cpu_count() or 1) * 4)) as pool:
        yield {block.id: pool.submit(run_block, block) for block in selected}


@pytest.mark.parametrize("block", BLOCKS, ids=[block.id for block in BLOCKS])
def test_example_runs(
    block: Block, runs: dict[str, Future[subprocess.CompletedProcess[str]]]
) -> None:
    result = runs[block.id].result()
    output = result.stdout + result.stderr
    assert result.returncode == 0, f"{block.id} failed:\n{output}"
    if block.is_test_file:
        summary = result.stdout.strip().splitlines()[-1]
        tests = len(TEST_FUNCTION.findall(block.text))
        passed = re.match(rf"^{tests} passed(, \d+ warnings?)? in ", summary)
        assert passed, f"{block.id}: {summary}"


def test_readme_is_a_landing_page() -> None:
    lines = (ROOT / "README.md").read_text(encoding="utf-8").splitlines()
    assert len(lines) <= README_LIMIT, f"README.md has {len(lines)} lines (at most {README_LIMIT})"


def slug(heading: str) -> str:
    """The anchor GitHub and MyST (``myst_heading_anchors``) give a heading."""
    text = re.sub(r"[`*]", "", heading.strip().lower())
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def anchors(page: Path) -> set[str]:
    """The heading anchors of a markdown page (headings inside code blocks are not)."""
    text = page.read_text(encoding="utf-8")
    for block in fenced_blocks(page):
        text = text.replace(block.text, "")
    return {slug(match) for match in re.findall(r"^#{1,6} (.+)$", text, re.MULTILINE)}


def relative_links() -> list[tuple[Path, str]]:
    found = []
    for page in pages():
        text = page.read_text(encoding="utf-8")
        for block in fenced_blocks(page):
            text = text.replace(block.text, "")
        for target in LINK.findall(text):
            if not re.match(r"^[a-z][a-z0-9+.-]*:", target):  # http:, mailto:, ...
                found.append((page, target))
    return found


LINKS = relative_links()


@pytest.mark.parametrize(
    ("page", "target"), LINKS, ids=[f"{page.relative_to(ROOT)}->{target}" for page, target in LINKS]
)
def test_relative_link_resolves(page: Path, target: str) -> None:
    path, _, anchor = target.partition("#")
    destination = (page.parent / path).resolve() if path else page
    assert destination.exists(), f"{page.relative_to(ROOT)} links to missing {path}"
    if anchor and destination.suffix == ".md":
        assert anchor in anchors(destination), f"{target}: no heading #{anchor} there"


def test_every_setting_is_documented() -> None:
    """Each key of ``webhook_kit.config`` (the one declaration of the names) is on the page."""
    page = (DOCS / "configuration.md").read_text(encoding="utf-8")
    missing = [key for key in [*DEFAULTS, *SERVER_KEYS] if f"`{key}`" not in page]
    assert not missing, f"docs/configuration.md does not mention {missing}"


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-c", "from webhook_kit.cli import main; main()", *args]


def test_the_emulator_walkthrough_shows_what_the_shell_shows(tmp_path: Path) -> None:
    """The three terminals of docs/guide/emulator.md, run: the command and the reply it shows."""
    page = (DOCS / "guide" / "emulator.md").read_text(encoding="utf-8")
    walkthrough = re.search(
        r"^\$ \.venv/bin/webhook-kit (emulator send .+)\n((?:[^$`\n].*\n)+)", page, re.MULTILINE
    )
    assert walkthrough is not None, "the walkthrough shows no `emulator send` and its output"
    command, shown = shlex.split(walkthrough.group(1)), walkthrough.group(2)
    emulator_port, app_port = free_port(), free_port()
    environ = {
        **offline_environ(),
        "TWILIO_ACCOUNT_SID": "AC" + "1" * 32,
        "TWILIO_AUTH_TOKEN": "2" * 32,
        "WEBHOOK_KIT_TWILIO_BASE_URL": f"http://127.0.0.1:{emulator_port}",
        "WEBHOOK_KIT_PUBLIC_URL": f"http://127.0.0.1:{app_port}",
        "WEBHOOK_KIT_STORE": f"sqlite:///{tmp_path / 'webhook_kit.db'}",
    }
    number = f"+15017250604=http://127.0.0.1:{app_port}/twilio/messages"
    servers = [
        subprocess.Popen(
            _cli("emulator", "--port", str(emulator_port), "--number", number),
            env=environ,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        ),
        subprocess.Popen(  # in the checkout: the echo bot of examples/
            _cli("serve", "--port", str(app_port)),
            cwd=ROOT,
            env=environ,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        ),
    ]
    try:
        for port, server in zip((emulator_port, app_port), servers, strict=True):
            wait_for_server(port, server)
        url = f"http://127.0.0.1:{emulator_port}"
        sent = subprocess.run(
            _cli(*command, "--url", url),
            env=environ,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    finally:
        for server in servers:
            server.terminate()
            server.wait(timeout=10)
    assert sent.returncode == 0, sent.stdout + sent.stderr
    sid = re.compile(r"SM[0-9a-f]{32}")
    assert sid.sub("SM…", sent.stdout) == sid.sub("SM…", shown)
