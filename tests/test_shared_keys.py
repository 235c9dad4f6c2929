"""Shared-key signatures (Webhooks configuration API) and HTTP Basic on the kit's routes.

twilio-node 6.3's own signing code is the oracle: its ``getExpectedTwilioSignature`` signs,
its ``getSignatureAlgorithm`` parses the settings header, its ``validateRequest`` checks ours.
"""

from __future__ import annotations

import base64
import json
import logging
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from click.testing import CliRunner
from flask import Flask
from node_support import run_node
from werkzeug.serving import make_server

from webhook_kit import WebhookKit
from webhook_kit.cli import main
from webhook_kit.config import Settings
from webhook_kit.emulator import Emulator
from webhook_kit.errors import ConfigurationError
from webhook_kit.signature import (
    HMAC_SHA1,
    HMAC_SHA256,
    SETTINGS_HEADER,
    SignatureSettings,
    Verifier,
    body_sha256,
    compute_signature,
)
from webhook_kit.testing import TwilioTestClient, new_sid

# The classic vector (twilio-more.md §1.9).
URL = "https://mycompany.com/myapp.php?foo=1&bar=2"
PARAMS = {
    "CallSid": "CA1234567890ABCDE",
    "Caller": "+14158675309",
    "Digits": "1234",
    "From": "+14158675309",
    "To": "+18005551212",
}
BODY = b'{"property": "value", "boolean": true}'
TOKEN = "auth-token-not-used-with-shared-keys"
OLD = ("webhooks_sharedkey_01old0000000000000000000000", "old-secret")
NEW = ("webhooks_sharedkey_01new0000000000000000000000", "new-secret")

ORACLE = """
const webhooks = require("twilio/lib/webhooks/webhooks");
const input = JSON.parse(require("fs").readFileSync(0, "utf8"));
const out = {
  version: require("twilio/package.json").version,
  signatures: input.sign.map(c =>
    webhooks.getExpectedTwilioSignature(c.secret, c.url, c.params, c.algorithm)),
  algorithms: input.headers.map(h => webhooks.getSignatureAlgorithm(h)),
  valid: input.validate.map(c =>
    webhooks.validateRequest(c.secret, c.signature, c.url, c.params, c.algorithm)),
};
process.stdout.write(JSON.stringify(out));
"""


def oracle(
    sign: list[dict[str, Any]] = [],  # noqa: B006 - read only
    headers: list[str] = [],  # noqa: B006
    validate: list[dict[str, Any]] = [],  # noqa: B006
) -> dict[str, Any]:
    result: dict[str, Any] = run_node(
        ORACLE, {"sign": sign, "headers": headers, "validate": validate}
    )
    return result


class TestKnownAnswers:
    def test_sha256_vector(self) -> None:
        signature = compute_signature(URL, PARAMS, "12345", HMAC_SHA256)
        assert signature == "033hgUJA9M/hXIZsYjwkerEP/DBm35nEri5FhCYjA5s="
        json_url = f"https://mycompany.com/myapp.php?foo=1&bar=2&bodySHA256={body_sha256(BODY)}"
        assert compute_signature(json_url, None, "12345", HMAC_SHA256) == (
            "+UOCWf84gdgo/5Hpg4m5/EgKnJA2/TbOw5sPNVr3bPk="
        )
        assert compute_signature(URL, PARAMS, "12345", "hmac_sha1") == (
            "RSOYDt4T1cUTdK1PDd93/VVr8B8="
        )

    def test_unsupported_algorithm_raises(self) -> None:
        with pytest.raises(ValueError, match="unsupported signature algorithm 'HMAC_MD5'"):
            compute_signature(URL, PARAMS, "12345", "HMAC_MD5")


class TestTwilioNodeOracle:
    def test_its_signatures_verify_and_ours_match(self) -> None:
        json_url = f"{URL}&bodySHA256={body_sha256(BODY)}"
        cases = [
            {"secret": secret, "url": url, "params": params, "algorithm": algorithm}
            for secret in ("12345", "s3cr3t-ünïcode")
            for algorithm in (HMAC_SHA256, HMAC_SHA1)
            for url, params in ((URL, PARAMS), (json_url, {}), ("https://x.test/é?a=%27", {}))
        ]
        answer = oracle(sign=cases)
        major, minor = (int(part) for part in answer["version"].split(".")[:2])
        assert (major, minor) >= (6, 3), answer["version"]
        for case, theirs in zip(cases, answer["signatures"], strict=True):
            secret, url, algorithm = case["secret"], case["url"], case["algorithm"]
            params = case["params"] or None
            assert compute_signature(url, params, secret, algorithm) == theirs, case
            verifier = Verifier([TOKEN], shared_keys={"key1": secret})
            header = f"key=key1,algorithm={algorithm}"
            body = BODY if "bodySHA256" in url else None
            pairs = list(PARAMS.items()) if params else []
            assert verifier.verify(url, pairs, theirs, json_body=body, settings=header), case
        assert answer["signatures"][0] == "033hgUJA9M/hXIZsYjwkerEP/DBm35nEri5FhCYjA5s="

    def test_settings_header_parsed_as_twilio_node_does(self) -> None:
        headers = [
            "key=k1,algorithm=HMAC_SHA256",
            "algorithm=HMAC_SHA256,key=k1",
            " key = k1 , algorithm = hmac_sha256 ",
            "key=k1",
            "key=k1,algorithm=",
            "key=k1,algorithm=HMAC_SHA1",
            "key=k1,algorithm=HMAC_MD5",
            "key=k1,algorithm=HMAC_SHA256,algorithm=HMAC_SHA1",
            "key=k1,,algorithm=HMAC_SHA256,",
        ]
        theirs = oracle(headers=headers)["algorithms"]
        ours = [SignatureSettings.parse(header).algorithm for header in headers]
        assert ours == theirs
        assert {SignatureSettings.parse(header).key for header in headers} == {"k1"}

    def test_twilio_node_validates_what_we_sign(self) -> None:
        cases = [
            {
                "secret": "topsecret",
                "signature": compute_signature(URL, PARAMS, "topsecret", algorithm),
                "url": URL,
                "params": PARAMS,
                "algorithm": algorithm,
            }
            for algorithm in (HMAC_SHA256, HMAC_SHA1)
        ]
        forged = {**cases[0], "signature": compute_signature(URL, PARAMS, "other", HMAC_SHA256)}
        assert oracle(validate=[*cases, forged])["valid"] == [True, True, False]


# -- the kit ---------------------------------------------------------------------------------


def make_app(**config: Any) -> Flask:
    kit = WebhookKit()

    @kit.on_message()
    def echo(message: Any) -> str:
        return f"Echo: {message.body}"

    app = Flask(__name__)
    app.config.update({"WEBHOOK_KIT_AUTH_TOKEN": TOKEN, "WEBHOOK_KIT_STORE": "memory://", **config})
    kit.init_app(app)
    app.test_client_class = TwilioTestClient
    return app


def client(app: Flask, **options: Any) -> TwilioTestClient:
    made = app.test_client(**options)
    assert isinstance(made, TwilioTestClient)
    return made


@pytest.fixture
def app() -> Flask:
    return make_app(WEBHOOK_KIT_SHARED_KEYS=f"{OLD[0]}:{OLD[1]},{NEW[0]}:{NEW[1]}")


@pytest.mark.parametrize("algorithm", [HMAC_SHA256, HMAC_SHA1, "hmac_sha256"])
def test_shared_key_signatures_verify(app: Flask, algorithm: str) -> None:
    reply = client(app, shared_key=NEW, algorithm=algorithm).send_message("hi")
    assert reply.status_code == 200 and reply.texts == ["Echo: hi"]


def test_without_the_header_verification_is_unchanged(app: Flask) -> None:
    assert client(app).send_message("hi").texts == ["Echo: hi"]
    assert client(app, auth_token="wrong").send_message("hi").status_code == 403


@pytest.mark.parametrize(
    ("headers", "options", "logged"),
    [
        (
            {},
            {"shared_key": ("webhooks_sharedkey_unknown", "x")},
            "shared key 'webhooks_sharedkey_unknown' is not configured (WEBHOOK_KIT_SHARED_KEYS)",
        ),
        (
            {SETTINGS_HEADER: f"key={NEW[0]},algorithm=HMAC_SHA512"},
            {"shared_key": NEW},
            "unsupported signature algorithm 'HMAC_SHA512' (HMAC_SHA1 or HMAC_SHA256)",
        ),
        (
            {},
            {"shared_key": (NEW[0], "not-its-secret")},
            f"invalid signature for shared key '{NEW[0]}' (HMAC_SHA256)",
        ),
        (  # the auth token is not tried when the header names a key
            {SETTINGS_HEADER: f"key={NEW[0]},algorithm=HMAC_SHA1"},
            {},
            f"invalid signature for shared key '{NEW[0]}' (HMAC_SHA1)",
        ),
        (
            {SETTINGS_HEADER: "algorithm=HMAC_SHA256"},
            {"shared_key": NEW},
            "names no key=",
        ),
    ],
)
def test_refusals_are_403_with_the_reason_logged(
    app: Flask,
    caplog: pytest.LogCaptureFixture,
    headers: dict[str, str],
    options: dict[str, Any],
    logged: str,
) -> None:
    with caplog.at_level(logging.WARNING, logger="webhook_kit"):
        reply = client(app, **options).send_message("hi", headers=headers)
    assert reply.status_code == 403
    assert logged in caplog.text
    assert "Traceback" not in reply.response.get_data(as_text=True)


def test_rotation_two_keys_then_the_old_one_removed() -> None:
    both = make_app(WEBHOOK_KIT_SHARED_KEYS={OLD[0]: OLD[1], NEW[0]: NEW[1]})
    for key in (OLD, NEW):
        assert client(both, shared_key=key).send_message("x").status_code == 200
    rotated = make_app(WEBHOOK_KIT_SHARED_KEYS=[f"{NEW[0]}:{NEW[1]}"])
    assert client(rotated, shared_key=NEW).send_message("x").status_code == 200
    assert client(rotated, shared_key=OLD).send_message("x").status_code == 403


def test_shared_keys_alone_are_enough_to_start() -> None:
    app = Flask(__name__)
    app.config.update(WEBHOOK_KIT_SHARED_KEYS=f"{NEW[0]}:{NEW[1]}", WEBHOOK_KIT_STORE="memory://")
    WebhookKit(app)  # no auth token: every webhook of this account uses a shared key


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("just-a-secret", "WEBHOOK_KIT_SHARED_KEYS: item 1 is not KEY_ID:SECRET"),
        ("k1:s1,k2", "WEBHOOK_KIT_SHARED_KEYS: item 2 is not KEY_ID:SECRET"),
        ("k1:", "each KEY_ID:SECRET pair needs both parts"),
        (42, "must be a string of KEY_ID:SECRET pairs"),
    ],
)
def test_bad_shared_keys_config(value: object, message: str) -> None:
    with pytest.raises(ConfigurationError, match=message) as raised:
        Settings.from_config({"WEBHOOK_KIT_SHARED_KEYS": value}, {})
    assert "just-a-secret" not in str(raised.value)


def test_shared_keys_from_the_environment() -> None:
    from webhook_kit.standalone import config_from_environ

    config = config_from_environ({"WEBHOOK_KIT_SHARED_KEYS": "k1:s:with:colons, k2:s2"})
    settings = Settings.from_config(config, {})
    assert dict(settings.shared_keys) == {"k1": "s:with:colons", "k2": "s2"}


def test_log_only_lets_a_bad_shared_key_through(caplog: pytest.LogCaptureFixture) -> None:
    app = make_app(WEBHOOK_KIT_SHARED_KEYS=f"{NEW[0]}:{NEW[1]}", WEBHOOK_KIT_VALIDATE="log-only")
    with caplog.at_level(logging.WARNING, logger="webhook_kit"):
        reply = client(app, shared_key=OLD).send_message("hi")
    assert reply.status_code == 200
    assert f"log-only: would reject shared key '{OLD[0]}' is not configured" in caplog.text


# -- HTTP Basic ------------------------------------------------------------------------------

BASIC = "WEBHOOK_KIT_BASIC_AUTH"


@pytest.mark.parametrize("direct", [False, True])
def test_basic_auth_required_with_rotation_and_the_signature_still_checked(direct: bool) -> None:
    kit = WebhookKit()
    app = Flask(__name__)
    app.config.update(
        {
            "WEBHOOK_KIT_AUTH_TOKEN": TOKEN,
            "WEBHOOK_KIT_STORE": "memory://",
            BASIC: "twilio:old-pass,twilio:new-pass",
        }
    )
    kit.init_app(app, direct=direct)
    app.test_client_class = TwilioTestClient
    missing = client(app).send_status(new_sid())
    assert missing.status_code == 401
    assert missing.response.headers["WWW-Authenticate"].startswith('Basic realm="webhook_kit"')
    for wrong in (("twilio", "nope"), ("someone", "new-pass"), ("", "")):
        assert client(app, basic_auth=wrong).send_status(new_sid()).status_code == 401
    for good in (("twilio", "old-pass"), ("twilio", "new-pass")):
        assert client(app, basic_auth=good).send_status(new_sid()).status_code == 200
    forged = client(app, basic_auth=("twilio", "new-pass"), auth_token="forged")
    assert forged.send_status(new_sid()).status_code == 403
    bearer = client(app).send_status(new_sid(), headers={"Authorization": "Bearer abc"})
    assert bearer.status_code == 401


def test_basic_auth_config_errors_name_the_key() -> None:
    with pytest.raises(ConfigurationError, match="WEBHOOK_KIT_BASIC_AUTH: item 1 is not"):
        Settings.from_config({BASIC: "no-colon"}, {})


# -- the CLI ---------------------------------------------------------------------------------


@pytest.fixture
def served() -> Iterator[str]:
    app = make_app(WEBHOOK_KIT_SHARED_KEYS=f"{NEW[0]}:{NEW[1]}")
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02})
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}/twilio"
    server.shutdown()
    thread.join(timeout=5)


@pytest.mark.parametrize("algorithm", ["HMAC_SHA256", "hmac_sha1"])
def test_cli_simulate_signs_with_a_shared_key(served: str, algorithm: str) -> None:
    runner = CliRunner()
    shared = ["--shared-key", f"{NEW[0]}:{NEW[1]}", "--algorithm", algorithm]
    result = runner.invoke(
        main, ["simulate", "message", "--url", f"{served}/messages", "--body", "hey", *shared]
    )
    assert result.exit_code == 0 and result.output == "200 OK\nMessage: Echo: hey\n", result.output
    sid = new_sid()
    status = ["simulate", "status", "--url", f"{served}/status", "--sid", sid, *shared]
    assert runner.invoke(main, status).exit_code == 0
    event = ["simulate", "event", "--url", f"{served}/events", "--sid", sid, *shared]
    result = runner.invoke(main, event)
    assert result.exit_code == 0, result.output
    wrong = ["--shared-key", f"{OLD[0]}:{OLD[1]}"]
    result = runner.invoke(main, ["simulate", "message", "--url", f"{served}/messages", *wrong])
    assert result.exit_code == 1 and result.output.lower().startswith("403 forbidden\nshared key")
    result = runner.invoke(main, ["simulate", "message", "--shared-key", "no-colon"])
    assert result.exit_code == 1 and result.output == "error: --shared-key must be KEY_ID:SECRET\n"


# -- the emulator ----------------------------------------------------------------------------


def webhooks_api(emulator: Emulator, method: str, path: str, body: Any = None) -> Any:
    """Call the emulator's Webhooks API as twilio-node would: JSON, Basic auth."""
    import urllib.error
    import urllib.request

    auth = base64.b64encode(f"{emulator.account_sid}:{emulator.auth_token}".encode()).decode()
    request = urllib.request.Request(
        emulator.url + "/v1/Webhooks/" + path,
        data=None if body is None else json.dumps(body).encode(),
        headers={"Authorization": f"Basic {auth}", "Content-Type": "application/json"},
        method=method,
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            text = response.read()
            return response.status, json.loads(text) if text else None
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def test_emulator_signs_with_a_rule_and_rotates_without_refusals() -> None:
    with Emulator(clock="manual") as emulator:
        app = make_app()
        emulator.mount("http://bot.test", app)
        number = "+15005550006"
        emulator.add_number(number, sms_url="http://bot.test/twilio/messages")
        handset = emulator.handset("+14155550100")
        status, old = webhooks_api(emulator, "POST", "SharedKeys", {"friendlyName": "old"})
        assert status == 201 and old["id"].startswith("webhooks_sharedkey_") and old["secret"]
        _, new = webhooks_api(emulator, "POST", "SharedKeys", {"friendlyName": "new"})
        settings = []
        for key, algorithm in ((old, "HMAC_SHA1"), (new, "HMAC_SHA256")):
            status, setting = webhooks_api(
                emulator,
                "POST",
                "Settings",
                {
                    "auth": {"source": "INLINE", "value": {"scheme": "none"}},
                    "signature": {
                        "type": "sharedKey", "sharedKeyId": key["id"], "algorithm": algorithm,
                    },
                },
            )  # fmt: skip
            assert status == 201, setting
            settings.append(setting["id"])
        rule = {"matchType": "PREFIX_MATCH", "prefix": "http://bot.test/twilio/"}
        status, created = webhooks_api(
            emulator, "POST", "Rules",
            {**rule, "settings": [{"settingId": settings[0], "percentage": 100}]},
        )  # fmt: skip
        assert status == 202 and created["operation"]["status"] == "COMPLETED"
        # The app knows neither key yet: refused, with the reason.
        assert handset.send(number, "a").deliveries[0].response.status == 403
        app = make_app(WEBHOOK_KIT_SHARED_KEYS={old["id"]: old["secret"]})
        emulator.mount("http://bot.test", app)
        sent = handset.send(number, "b").deliveries[0]
        assert sent.response is not None and sent.response.status == 200
        # Rotation: the app takes both keys, the rule splits traffic, then moves to the new key.
        app = make_app(WEBHOOK_KIT_SHARED_KEYS={old["id"]: old["secret"], new["id"]: new["secret"]})
        emulator.mount("http://bot.test", app)
        status, problem = webhooks_api(
            emulator, "POST", "Rules", {**rule, "settings": [{"settingId": settings[1]}]}
        )
        assert status == 409 and problem["code"] == 59103 and problem["title"]
        assert webhooks_api(emulator, "DELETE", f"Rules/{created['rule']['id']}")[0] == 204
        split = [{"settingId": s, "percentage": 50} for s in settings]
        assert webhooks_api(emulator, "POST", "Rules", {**rule, "settings": split})[0] == 202
        statuses = [handset.send(number, f"m{i}").deliveries[0].response.status for i in range(20)]
        assert statuses == [200] * 20
        app = make_app(WEBHOOK_KIT_SHARED_KEYS={new["id"]: new["secret"]})
        emulator.mount("http://bot.test", app)
        results = {handset.send(number, f"n{i}").deliveries[0].response.status for i in range(20)}
        assert results == {200, 403}  # old-key traffic is refused once the old key is gone
        # A key still used by a Setting cannot be deleted.
        status, problem = webhooks_api(emulator, "DELETE", f"SharedKeys/{old['id']}")
        assert status == 409 and problem["code"] == 59100
        status, listed = webhooks_api(emulator, "GET", "SharedKeys")
        assert status == 200 and listed["meta"]["key"] == "sharedKeys"
        assert all("secret" not in key for key in listed["sharedKeys"])


def test_emulator_validation_errors_are_problem_documents() -> None:
    with Emulator(clock="manual") as emulator:
        for path, body in (
            ("Settings", {"signature": {"type": "sharedKey"}}),
            ("Settings", {"auth": {"source": "INLINE"}, "signature": {"sharedKeyId": "nope",
                                                                      "algorithm": "HMAC_SHA1"}}),
            ("Rules", {"matchType": "PREFIX_MATCH", "prefix": "http://x.test/no-slash"}),
            ("Rules", {"matchType": "WHATEVER"}),
            ("SharedKeys", ["not", "an", "object"]),
        ):  # fmt: skip
            status, problem = webhooks_api(emulator, "POST", path, body)
            assert status == 400 and problem["code"] == 59000, (path, problem)
            assert set(problem) == {"type", "title", "status", "detail", "code"}


def test_emulator_sends_url_credentials_as_basic_and_signs_without_them() -> None:
    with Emulator(clock="manual") as emulator:
        app = make_app(**{BASIC: "twilio:p%40ss", "WEBHOOK_KIT_AUTH_TOKEN": emulator.auth_token})
        emulator.mount("http://bot.test", app)
        number = "+15005550006"
        emulator.add_number(number, sms_url="http://twilio:p%2540ss@bot.test/twilio/messages")
        exchange = emulator.handset("+14155550100").send(number, "hi")
        delivery = exchange.deliveries[0]
        assert delivery.url == "http://bot.test/twilio/messages"
        assert delivery.response is not None and delivery.response.status == 200
        assert [reply.body for reply in exchange.replies] == ["Echo: hi"]
        emulator.add_number(number, sms_url="http://twilio:wrong@bot.test/twilio/messages")
        assert (
            emulator.handset("+14155550100").send(number, "x").deliveries[0].response.status == 401
        )
