"""twilio-node against the emulator's Messaging Services, Content templates, WhatsApp window
and sender queue: the same flows as the twilio-python tests, from the second official client.
Skipped with the reason where node or npm is missing, unless WEBHOOK_KIT_REQUIRE_SERVICES=1.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from emulator_support import Receiver
from test_emulator_node import node

from webhook_kit.emulator import Emulator

HANDSET = "+14155550199"
BUSINESS, USER = "whatsapp:+14155238886", "whatsapp:+15558675310"


@pytest.fixture(scope="module")
def running() -> Iterator[Emulator]:
    """With the sender queues: a burst drains at the long code's rate."""
    with Emulator(clock="manual") as emulator:
        yield emulator


def test_service_pool_and_send(emulator: Emulator, app: Receiver) -> None:
    result = node(
        emulator,
        """
  const service = await client.messaging.v1.services.create({
    friendlyName: "Node", statusCallback: input.callback });
  const number = await client.incomingPhoneNumbers.create({ phoneNumber: "+14155550100" });
  await client.messaging.v1.services(service.sid).phoneNumbers.create({
    phoneNumberSid: number.sid });
  const pool = await client.messaging.v1.services(service.sid).phoneNumbers.list();
  const sent = await client.messages.create({
    to: input.handset, messagingServiceSid: service.sid, body: "hi" });
  const unknown = await attempt(() => client.messages.create({
    to: input.handset, messagingServiceSid: "MG" + "0".repeat(32), body: "x" }));
  console.log(JSON.stringify({ service: service.sid, sticky: service.stickySender,
    pool: pool.map((n) => n.phoneNumber), sent: sent.sid, status: sent.status, unknown }));
""",
        callback=app.base + "/status",
        handset=HANDSET,
    )
    assert result["sticky"] is True and result["pool"] == ["+14155550100"]
    assert result["status"] == "accepted" and result["unknown"]["error"]["code"] == 21705
    emulator.advance(5)
    record = emulator.message(result["sent"])
    assert record is not None and record.from_ == "+14155550100"
    assert app.forms("/status")[-1]["MessageStatus"] == "delivered"  # the service's callback


def test_whatsapp_window_and_template(emulator: Emulator) -> None:
    result = node(
        emulator,
        """
  const template = await client.content.v1.contents.create({
    friendly_name: "ship", language: "en", variables: { "1": "your order" },
    types: { "twilio/text": { body: "{{1}} has shipped" } } });
  const free = await client.messages.create({ to: input.user, from: input.business,
    body: "free form" });
  const templated = await client.messages.create({ to: input.user, from: input.business,
    contentSid: template.sid, contentVariables: JSON.stringify({ "1": "Order 7" }) });
  const listed = await client.content.v1.contents.list();
  console.log(JSON.stringify({ template: template.sid, free: free.sid, body: templated.body,
    templated: templated.sid, listed: listed.map((c) => c.sid) }));
""",
        user=USER,
        business=BUSINESS,
    )
    assert result["body"] == "Order 7 has shipped" and result["listed"] == [result["template"]]
    emulator.advance(5)
    free, templated = emulator.message(result["free"]), emulator.message(result["templated"])
    assert free is not None and (free.status, free.error_code) == ("failed", 63016)
    assert templated is not None and templated.status == "read"


def test_a_burst_drains_at_the_long_codes_rate(emulator: Emulator) -> None:
    result = node(
        emulator,
        """
  const sids = [];
  for (let n = 0; n < 5; n++) {
    sids.push((await client.messages.create({
      to: input.handset, from: "+15017122661", body: "burst " + n })).sid);
  }
  console.log(JSON.stringify({ sids }));
""",
        handset=HANDSET,
    )
    emulator.advance(2.5)
    statuses = [emulator.message(sid).status for sid in result["sids"]]  # type: ignore[union-attr]
    assert statuses.count("queued") == 2 and statuses[0] == "delivered"
