"""Shared frame slots: a slot is written only by the position whose ticket it holds."""

from __future__ import annotations

import multiprocessing
import threading

import numpy as np
import pytest
import torch

from centerpoint_deploy.data.frame_slots import FrameSlots, FrameCancelled
from centerpoint_deploy.errors import DatasetError


def _slots(count: int = 2) -> FrameSlots:
    return FrameSlots(count, rows=4, width=3, context=multiprocessing.get_context())


def _write_later(slots: FrameSlots, position: int, value: float) -> tuple[threading.Thread, list[BaseException]]:
    errors: list[BaseException] = []

    def write() -> None:
        try:
            slots.write(position, np.full((2, 3), value, np.float32), None)
        except BaseException as exc:  # noqa: BLE001 - handed to the test
            errors.append(exc)

    thread = threading.Thread(target=write)
    thread.start()
    return thread, errors


def test_a_slot_waits_for_its_previous_frame_to_be_released() -> None:
    slots = _slots()
    slots.write(0, np.ones((3, 3), np.float32), None)
    slots.write(1, np.arange(6, dtype=np.float32).reshape(2, 3), [2, 1, 0])   # columns selected
    np.testing.assert_array_equal(slots.view(1, 2).numpy(), [[2, 1, 0], [5, 4, 3]])
    thread, errors = _write_later(slots, 2, 7.0)   # slot 0 again: frame 0 is still held
    thread.join(0.3)
    assert thread.is_alive()
    np.testing.assert_array_equal(slots.view(0, 3).numpy(), np.ones((3, 3)))
    slots.release([0])
    thread.join(5)
    assert not thread.is_alive() and not errors
    np.testing.assert_array_equal(slots.view(2, 2).numpy(), np.full((2, 3), 7.0))


def test_closing_wakes_a_waiting_reader() -> None:
    slots = _slots()
    thread, errors = _write_later(slots, 2, 1.0)
    thread.join(0.2)
    slots.close()
    thread.join(5)
    assert not thread.is_alive() and len(errors) == 1 and isinstance(errors[0], FrameCancelled)


def test_sizes_are_checked() -> None:
    slots = _slots()
    assert slots.fits(4) and not slots.fits(5)
    with pytest.raises(DatasetError, match=">= 1"):
        FrameSlots(0, 4, 3, multiprocessing.get_context())


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_slots_are_page_locked_in_place_until_closed() -> None:
    slots = _slots()
    assert slots.pin() and slots.points.is_pinned()
    slots.write(0, np.ones((3, 3), np.float32), None)
    on_device = slots.view(0, 3).to("cuda", non_blocking=True)
    torch.cuda.synchronize()
    assert on_device.cpu().eq(1).all()
    slots.close()
    assert not slots.points.is_pinned()
