"""``python -m bench.sending [--quick]``: kit.send beside the bare twilio client, same run.

Both send the same messages to the emulator (a ``webhook-kit emulator`` subprocess on a
manual clock, so no status callback competes for the CPU) through the official client with
one connection pool. The kit also writes the ledger row before the API call and links it to
the SID after (SQLite store, as the default). The two alternate send by send (bare, kit,
kit, bare, ...), so both see the same machine; each round reports both rates, and the ratio
is the median of the rounds' ratios. The last line is machine-readable.
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

if __package__ in (None, ""):  # python bench/sending.py: import the package, not the folder
    sys.path[0] = str(Path(__file__).resolve().parent.parent)

from twilio.rest import Client

from webhook_kit.emulator.throughput import UNQUEUED
from webhook_kit.sending import Sender
from webhook_kit.stores import open_store

ACCOUNT, TOKEN = "AC" + "be7c" * 8, "bench-token"
STATUS_URL = "https://bot.example.com/twilio/status"
TO, FROM = "+14155550100", "+15005550006"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="2 rounds of 200 sends (~10 s)")
    parser.add_argument("--rounds", type=int, help="rounds per client (default 6, quick 2)")
    parser.add_argument("--sends", type=int, help="sends per round (default 1000, quick 200)")
    args = parser.parse_args(argv)
    rounds = args.rounds or (2 if args.quick else 6)
    sends = args.sends or (200 if args.quick else 1000)
    with tempfile.TemporaryDirectory() as scratch, _emulator() as url:
        bare = Client(ACCOUNT, TOKEN)
        bare.api.base_url = url
        config = {
            "WEBHOOK_KIT_ACCOUNT_SID": ACCOUNT,
            "WEBHOOK_KIT_AUTH_TOKEN": TOKEN,
            "WEBHOOK_KIT_TWILIO_BASE_URL": url,
        }
        store = open_store(f"sqlite:///{scratch}/ledger.db")
        sender = Sender.from_config(config, store, status_url=STATUS_URL)

        def with_client(index: int) -> object:
            return bare.messages.create(
                to=TO, from_=FROM, body=f"Order {index} shipped", status_callback=STATUS_URL
            )

        def with_kit(index: int) -> object:
            return sender.send(TO, f"Order {index} shipped", from_=FROM, ref=f"order-{index}")

        _interleaved(with_client, with_kit, 50)  # warm up both paths and the connections
        pairs = []
        for number in range(rounds):
            pair = _interleaved(with_client, with_kit, sends)
            pairs.append(pair)
            print(f"round {number + 1}: bare client {pair[0]:.0f}/s, kit.send {pair[1]:.0f}/s")
    client_rate = statistics.median(pair[0] for pair in pairs)
    kit_rate = statistics.median(pair[1] for pair in pairs)
    ratio = statistics.median(kit / bare for bare, kit in pairs)
    print(f"| client | sends/s |\n| --- | ---: |\n| bare twilio client | {client_rate:.0f} |")
    print(f"| kit.send (SQLite ledger) | {kit_rate:.0f} |")
    print(f"kit_send_vs_client={ratio:.2f}")
    return 0


def _interleaved(
    first: Callable[[int], object], second: Callable[[int], object], count: int
) -> tuple[float, float]:
    """Sends per second of each, alternating which goes first in each pair."""
    spent = [0.0, 0.0]
    for index in range(count):
        order = ((0, first), (1, second)) if index % 2 == 0 else ((1, second), (0, first))
        for slot, send in order:
            start = time.perf_counter()
            send(index)
            spent[slot] += time.perf_counter() - start
    return count / spent[0], count / spent[1]


class _emulator:
    """A ``webhook-kit emulator`` subprocess on a free port with a manual clock."""

    def __enter__(self) -> str:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        env = {**os.environ, "TWILIO_ACCOUNT_SID": ACCOUNT, "TWILIO_AUTH_TOKEN": TOKEN}
        command = [
            sys.executable,
            "-m",
            "webhook_kit.cli",
            "emulator",
            "--clock",
            "manual",
            *UNQUEUED,
        ]
        self.process = subprocess.Popen(
            [*command, "--port", str(port)],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(url + "/_emulator/health", timeout=1):
                    return url
            except OSError:
                time.sleep(0.05)
        self.process.terminate()
        raise SystemExit("the emulator did not start within 30 s")

    def __exit__(self, *exc_info: object) -> None:
        self.process.terminate()
        self.process.wait(timeout=15)


if __name__ == "__main__":
    raise SystemExit(main())
