"""The per-process machinery: services start once per process and again in each forked child,
resets run in every forked child, and everything started is stopped at exit."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable

from webhook_kit.process import Process


def _in_child(report: Callable[[], bytes]) -> bytes:
    """Fork; run ``report()`` (bytes) in the child and return what it wrote."""
    read, write = os.pipe()
    child = os.fork()
    if child == 0:  # pragma: no cover - the child reports through the pipe
        os.write(write, report())
        os._exit(0)
    os.close(write)
    try:
        return os.read(read, 64)
    finally:
        os.close(read)
        os.waitpid(child, 0)


def test_a_service_starts_once_per_process_and_again_in_a_forked_child() -> None:
    process = Process()
    calls: list[int] = []
    started = process.service(lambda: calls.append(os.getpid()))
    racers = [threading.Thread(target=started) for _ in range(8)]
    for racer in racers:
        racer.start()
    for racer in racers:
        racer.join()
    assert calls == [os.getpid()] and started.running

    def child() -> bytes:
        running_before = started.running
        started()
        started()
        return f"{running_before} {len(calls)}".encode()

    assert _in_child(child) == b"False 2"  # not inherited; the parent's call and the child's
    started()
    assert calls == [os.getpid()]


def test_resets_run_in_every_forked_child_only() -> None:
    process = Process()
    seen: list[str] = []
    process.at_fork(lambda: seen.append("first"))
    process.at_fork(lambda: seen.append("second"))
    assert _in_child(lambda: ",".join(seen).encode() + f" {process.forks}".encode()) == (
        b"first,second 1"
    )
    assert seen == [] and process.forks == 0


def test_stop_stops_what_this_process_started_latest_first() -> None:
    process = Process()
    events: list[str] = []
    first = process.service(lambda: events.append("start 1"), lambda: events.append("stop 1"))
    second = process.service(lambda: events.append("start 2"), lambda: events.append("stop 2"))
    process.service(lambda: events.append("start 3"), lambda: events.append("stop 3"))
    first()
    second()
    process.stop()
    assert events == ["start 1", "start 2", "stop 2", "stop 1"]  # the third never started
    assert not first.running
    first()  # asked again after a stop: it starts again
    assert events[-1] == "start 1"
