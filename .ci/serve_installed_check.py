"""Talk to the server the README's serve-installed block started (see serve_installed.sh)."""

import http.client
import sys
import time
from pathlib import Path
from urllib.parse import urlencode

from webhook_kit.signature import compute_signature
from webhook_kit.testing import inbound_sms

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from server import wait_for_server  # the tests' helper, found through the line above

port, log = int(sys.argv[1]), sys.argv[2]
TOKEN = "your_auth_token"  # the README's command


def post(body: str) -> tuple[int, str]:
    fields = inbound_sms(body)
    url = f"http://127.0.0.1:{port}/twilio/messages"
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        connection.request(
            "POST",
            "/twilio/messages",
            urlencode(fields),
            {
                "Content-Type": "application/x-www-form-urlencoded",
                "X-Twilio-Signature": compute_signature(url, fields, TOKEN),
            },
        )
        response = connection.getresponse()
        return response.status, response.read().decode()
    finally:
        connection.close()


def fail(message: str) -> None:
    with open(log) as file:
        sys.exit(f"{message}\n--- server log ---\n{file.read()}")


try:
    wait_for_server(port, name="the README's server ($PORT)", path="/healthz")
except RuntimeError as error:
    fail(str(error))

status, body = post("hello")
if status != 200 or "Echo: hello" not in body:
    fail(f"a signed message got {status}: {body!r}")

started = time.monotonic()
try:
    status, body = post("SLOW")
except (http.client.HTTPException, OSError):
    status = 0  # the worker was killed: the connection closed without an answer
waited = time.monotonic() - started
if status == 200 or not 13 <= waited < 18:
    fail(f"a 20 s handler answered {status} after {waited:.1f} s: not cut at the 14 s timeout")

with open(log) as file:
    text = file.read()
TYPO = "WEBHOOK_KIT_STOR is not a webhook_kit setting and is ignored: did you mean"
for expected in ("store       sqlite:///", f"{TYPO} WEBHOOK_KIT_STORE?", "WORKER TIMEOUT"):
    if expected not in text:
        fail(f"the server log does not say {expected!r}")
print(f"serve-installed: answered, a 20 s handler cut after {waited:.1f} s, banner and typo ok")
