"""The index flow's own waits watch the stop request (issue 23): the store's optimize, which the
engine cannot interrupt and which takes minutes on a large collection, is left on its thread."""

from __future__ import annotations

import threading
import time

import pytest

from sparsehybrid.pipelines.flows import StoppedWhileOptimizing, _optimize
from sparsehybrid.pipelines.runtime import StopRequest


class SlowOptimizingSink:
    """The part of an IndexSink ``_optimize`` uses: an optimize that runs until released."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.optimized = threading.Event()

    def optimize(self) -> None:
        self.release.wait(30)
        self.optimized.set()


def test_a_stop_during_the_optimize_does_not_wait_for_it():
    sink, stop = SlowOptimizingSink(), StopRequest()
    threading.Timer(0.2, stop.event.set).start()
    t0 = time.monotonic()
    try:
        with pytest.raises(StoppedWhileOptimizing, match="every document is written"):
            _optimize(sink, stop)  # type: ignore[arg-type]
        assert time.monotonic() - t0 < 5  # was the optimize's whole duration (here 30 s)
        assert not sink.optimized.is_set()
    finally:
        sink.release.set()


def test_without_a_stop_the_optimize_is_waited_for_and_its_error_raised():
    class Failing:
        def optimize(self) -> None:
            raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        _optimize(Failing(), StopRequest())  # type: ignore[arg-type]
    sink = SlowOptimizingSink()
    sink.release.set()
    _optimize(sink, StopRequest())  # type: ignore[arg-type]
    assert sink.optimized.is_set()
