"""Requests take fair turns in the shared decode pool, and an image decodes only once the memory
budget holds what it will take."""

from __future__ import annotations

import asyncio
import io
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import tritonclient.grpc as triton
from PIL import Image

from serving.server.decode_turns import DecodeTurns
from serving.server.memory import MemoryBudget, MemoryBudgetError
from tests.serving.payloads import images_input
from tests.serving.servers import copy_bundle, running_server


class _Item:
    """A job that holds `nbytes` and finishes when the test lets it (`release`)."""

    def __init__(self, name: str, nbytes: int, log: list[str], gate: threading.Event | None = None) -> None:
        self.name, self.nbytes, self.log, self.gate = name, nbytes, log, gate

    def measure(self) -> int:
        return self.nbytes

    def finish(self) -> str:
        self.log.append(self.name)
        if self.gate is not None:
            assert self.gate.wait(10), f"{self.name} was never let through"
        return self.name

    def describe(self) -> str:
        return f"item {self.name}"


async def _until(condition: object, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while not condition():  # type: ignore[operator]
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.005)


def test_a_new_request_goes_before_the_rest_of_a_long_one() -> None:
    started: list[str] = []
    gate = threading.Event()

    async def scenario() -> None:
        with ThreadPoolExecutor(2) as pool:
            turns, memory = DecodeTurns(pool, 2), MemoryBudget(1 << 30)
            with memory.call():
                long = asyncio.create_task(
                    turns.run([_Item(f"long{i}", 0, started, gate) for i in range(6)], memory)
                )
                await _until(lambda: len(started) == 2)  # both threads busy with the long request
                short = asyncio.create_task(turns.run([_Item("short", 0, started)], memory))
                await asyncio.sleep(0.05)
                gate.set()
                assert await short == ["short"]
                assert await long == [f"long{i}" for i in range(6)]

    asyncio.run(scenario())
    assert started.index("short") == 2, started  # the first free thread was the new request's


def test_an_item_waits_for_room_that_running_decodes_give_back() -> None:
    started: list[str] = []
    gate = threading.Event()

    async def scenario() -> None:
        with ThreadPoolExecutor(4) as pool:
            turns, memory = DecodeTurns(pool, 4), MemoryBudget(100)
            with memory.call():
                first = asyncio.create_task(turns.run([_Item("a", 60, started, gate)], memory))
                await _until(lambda: started == ["a"])
                second = asyncio.create_task(turns.run([_Item("b", 60, started)], memory))
                await asyncio.sleep(0.1)
                assert started == ["a"] and memory.used == 60  # b waits: 60 + 60 > 100
                gate.set()
                assert await first == ["a"] and await second == ["b"]
                assert memory.used == 0 and memory.decoding == 0  # given back after each decode

    asyncio.run(scenario())


def test_an_item_is_refused_where_it_can_never_fit_or_nothing_running_makes_room() -> None:
    async def scenario() -> None:
        with ThreadPoolExecutor(2) as pool:
            turns, memory = DecodeTurns(pool, 2), MemoryBudget(100)
            with memory.call():
                memory.reserve(30)  # what this call sent
                never, _ = await turns.run([_Item("huge", 80, []), _Item("next", 1, [])], memory)
                assert isinstance(never, MemoryBudgetError)
                assert str(never).startswith("item 0: decoding it (item huge) holds 0.0 MiB, which can")
                with memory.call():  # another call holds the room, and no decode will give any back
                    memory.reserve(50)
                    (full,) = await turns.run([_Item("big", 40, [])], memory)
                assert isinstance(full, MemoryBudgetError) and "holds 0.0 of its 0 MiB" in str(full)
            assert memory.used == 0

    asyncio.run(scenario())


def test_a_cancelled_request_withdraws_what_has_not_started() -> None:
    started: list[str] = []
    gate = threading.Event()

    async def scenario() -> None:
        with ThreadPoolExecutor(1) as pool:
            turns, memory = DecodeTurns(pool, 1), MemoryBudget(1 << 30)
            with memory.call():
                task = asyncio.create_task(
                    turns.run([_Item(f"x{i}", 10, started, gate) for i in range(5)], memory)
                )
                await _until(lambda: started == ["x0"])
                task.cancel()
                with pytest.raises(asyncio.CancelledError):
                    await task
                gate.set()
                assert await turns.run([_Item("after", 10, started)], memory) == ["after"]
            assert memory.used == 0 and memory.decoding == 0

    asyncio.run(scenario())
    assert started == ["x0", "after"]


def _flat_png(side: int) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (side, side), (40, 200, 40)).save(buffer, "PNG")
    return buffer.getvalue()


def test_a_one_image_call_is_answered_promptly_behind_four_heavy_requests(
    bundle_path: Path, tmp_path: Path, jpegs: list[bytes]
) -> None:
    """Queued first come, first served, the JPEG waited for all 64 PNGs before it (seconds); in
    fair turns it waits for one running decode."""
    models = tmp_path / "models"
    copy_bundle(bundle_path, models)
    heavy = [_flat_png(2000)] * 16  # 4 megapixels each: ~0.1 s to decode and squish
    with running_server(models, decode_threads=4) as server:
        client = triton.InferenceServerClient(server.address)
        client.infer("tags", [images_input(jpegs[:1])])  # warm
        finished: list[float] = []

        def heavy_call() -> None:
            triton.InferenceServerClient(server.address).infer(
                "tags", [images_input(heavy)], client_timeout=120
            )
            finished.append(time.monotonic())

        with ThreadPoolExecutor(4) as pool:
            calls = [pool.submit(heavy_call) for _ in range(4)]
            time.sleep(1.0)  # the heavy requests' items fill the pool
            started = time.monotonic()
            client.infer("tags", [images_input(jpegs[:1])], client_timeout=60)
            answered = time.monotonic()
            [call.result() for call in calls]
    assert len(finished) == 4 and max(finished) > answered, "the heavy requests were over before the test"
    assert answered - started < 1.0, f"a one-JPEG call behind four heavy ones took {answered - started:.2f} s"
