"""PerProcess: a process's threads start once in it, and once more in each forked child."""

from __future__ import annotations

import os
import threading

from webhook_kit.process import PerProcess


def test_starts_once_per_process_and_again_in_a_forked_child() -> None:
    calls: list[int] = []
    started = PerProcess(lambda: calls.append(os.getpid()))
    racers = [threading.Thread(target=started) for _ in range(8)]
    for racer in racers:
        racer.start()
    for racer in racers:
        racer.join()
    assert calls == [os.getpid()]
    read, write = os.pipe()
    child = os.fork()
    if child == 0:  # pragma: no cover - the child reports through the pipe
        started()
        started()
        os.write(write, str(len(calls)).encode())
        os._exit(0)
    os.close(write)
    assert os.read(read, 16) == b"2"  # the parent's call and the child's one
    os.close(read)
    os.waitpid(child, 0)
    started()
    assert calls == [os.getpid()]
