"""twilio-node, a second official client, against the emulator over real HTTP.

The same flows as the twilio-python tests: provision and configure a number (which the
emulator then posts to), give feedback, read media bytes through the 307 to the media host,
hit each paging error, and reach every product domain on the one port. Skipped with the
reason where node or npm is missing, unless ``WEBHOOK_KIT_REQUIRE_SERVICES=1``.
"""

from __future__ import annotations

import base64
from typing import Any

from emulator_support import Receiver
from flask import Flask
from node_support import run_node

from webhook_kit.emulator import Attachment, Emulator

HANDSET = "+15558675310"
NUMBER = "+15017122661"
PICTURE = b"GIF89a" + b"\x00" * 500

#: Points every domain at the emulator with a RequestClient that swaps the origin, as
#: docs/guide/emulator.md shows; `api` is also pointed the simple way (baseUrl).
PRELUDE = """
const twilio = require("twilio");
const read = () => JSON.parse(require("fs").readFileSync(0, "utf8"));
class EmulatorRequestClient extends twilio.RequestClient {
  constructor(base) { super(); this.base = new URL(base); }
  request(opts) {
    const url = new URL(opts.uri);
    url.protocol = this.base.protocol; url.host = this.base.host;
    return super.request({ ...opts, uri: url.toString() });
  }
}
const failure = (error) => ({ status: error.status, code: error.code, message: error.message });
const attempt = async (call) => { try { return { ok: await call() }; }
                                  catch (error) { return { error: failure(error) }; } };
"""


def node(emulator: Emulator, body: str, **payload: Any) -> Any:
    script = (
        PRELUDE
        + """
(async () => {
  const input = read();
  const client = twilio(input.sid, input.token, {
    httpClient: new EmulatorRequestClient(input.url) });
"""
        + body
        + """
})().catch((error) => { console.error(error); process.exit(1); });
"""
    )
    return run_node(
        script,
        {"url": emulator.url, "sid": emulator.account_sid, "token": emulator.auth_token, **payload},
    )


def test_numbers_feedback_and_paging(emulator: Emulator, app: Receiver) -> None:
    emulator.reset()
    result = node(
        emulator,
        """
  const created = await client.incomingPhoneNumbers.create({
    phoneNumber: input.number, smsUrl: input.sms, friendlyName: "Node" });
  const updated = await client.incomingPhoneNumbers(created.sid).update({
    smsFallbackUrl: input.sms + "/fallback" });
  const listed = await client.incomingPhoneNumbers.list({ phoneNumber: input.number });
  const message = await client.messages.create({
    to: input.handset, from: input.number, body: "code 42", provideFeedback: true });
  const feedback = await client.messages(message.sid).feedback.create({ outcome: "confirmed" });
  const missingToken = await attempt(() => client.messages.page({ pageNumber: 1 }));
  const tooLarge = await attempt(() => client.messages.page({ pageSize: 1001 }));
  const badToken = await attempt(() => client.incomingPhoneNumbers.page({
    pageToken: "PA" + "0".repeat(34) }));
  const services = await attempt(() => client.messaging.v1.services.list());
  const contents = await attempt(() => client.content.v1.contents.list());
  const sinks = await attempt(() => client.events.v1.sinks.list());
  console.log(JSON.stringify({ created, updated, listed: listed.map((n) => n.sid),
    feedback: feedback.outcome, message: message.sid, missingToken, tooLarge, badToken,
    services, contents, sinks }));
""",
        number=NUMBER,
        sms=app.base + "/sms",
        handset=HANDSET,
    )
    created = result["created"]
    assert created["sid"].startswith("PN") and created["smsUrl"] == app.base + "/sms"
    assert result["updated"]["smsFallbackUrl"] == app.base + "/sms/fallback"
    assert result["updated"]["friendlyName"] == "Node" and result["listed"] == [created["sid"]]
    assert result["feedback"] == "confirmed"
    assert emulator.message(result["message"]).feedback == "confirmed"  # type: ignore[union-attr]
    assert result["missingToken"]["error"]["code"] == 20001
    assert result["missingToken"]["error"]["status"] == 400
    assert result["tooLarge"]["error"]["code"] == 20007
    assert result["badToken"]["error"]["code"] == 21481
    # messaging, content and events reached the emulator's one port too
    assert result["services"] == {"ok": []} and result["contents"] == {"ok": []}
    assert result["sinks"] == {"ok": []}
    emulator.handset(HANDSET).send(NUMBER, "to the number node configured")
    assert [f["Body"] for f in app.forms("/sms")] == ["to the number node configured"]


def test_media_bytes_through_the_redirect(emulator: Emulator) -> None:
    emulator.reset()
    emulator.add_number(NUMBER, sms_url="https://bot.test/sms")
    emulator.mount("https://bot.test", Flask("bot"))
    exchange = emulator.handset(HANDSET).send(
        NUMBER, "gif", media=[Attachment(PICTURE, "image/gif")]
    )
    [media] = emulator.state.media(exchange.inbound.sid)
    result = node(
        emulator,
        """
  const listed = await client.messages(input.message).media.list();
  // twilio-node does not follow redirects: take the Location, fetch it without credentials
  const hop = await client.request({ method: "get", uri: input.media });
  const location = hop.headers.location;
  const bytes = await fetch(location);
  const content = Buffer.from(await bytes.arrayBuffer());
  const auth = "Basic " + Buffer.from(input.sid + ":" + input.token).toString("base64");
  const leaked = await fetch(location, { headers: { Authorization: auth } });
  console.log(JSON.stringify({ listed: listed.map((m) => m.contentType), hop: hop.statusCode,
    location, status: bytes.status, type: bytes.headers.get("content-type"),
    content: content.toString("base64"), leaked: leaked.status }));
""",
        message=exchange.inbound.sid,
        media=emulator.media_url(exchange.inbound.sid, media.sid),
    )
    assert result["listed"] == ["image/gif"]
    assert result["hop"] == 307 and result["location"].startswith(emulator.media_base)
    assert result["status"] == 200 and result["type"] == "image/gif"
    assert base64.b64decode(result["content"]) == PICTURE
    assert result["leaked"] == 400  # the media host refuses credentials, as S3 does
