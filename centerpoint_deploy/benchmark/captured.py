"""Per-stage GPU time of the whole-pipeline CUDA graph (``Detector(graph=True)``).

Timing the uncaptured stages of a graph variant would charge each stage with the Python time
of launching its kernels, which the replay does not pay. Here every stage of
:meth:`Detector.captured_stages` is captured as a graph of its own, on the same point buffer,
and the graphs are replayed in pipeline order with a CUDA event between consecutive ones: each
stage's figure is its kernels' time, and their sum is close to one whole-graph replay. The
``upload`` figure includes the host -> device copy into the buffer, and ``output`` the
device -> host copy of the packed result (into pinned memory).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from centerpoint_deploy.benchmark.timing import CudaClock, check_counts
from centerpoint_deploy.detector import Detector


def time_captured_stages(detector: Detector, points: Tensor, *, warmup: int, iterations: int,
                         eager_runs: int = 3) -> dict[str, list[float]]:
    """Capture each stage of ``detector``'s graph alone and time the replays.

    Args:
        detector: a ``graph=True`` detector (loaded here).
        points: ``Tensor[N, D]`` float32, one cloud on the host.
        warmup, iterations: untimed and timed passes over all stage graphs.
        eager_runs: runs of the whole body before capturing (cuDNN plans, compilation, pools).

    Returns:
        ``{stage name: [seconds per iteration]}`` in pipeline order.
    """
    check_counts(warmup, iterations)
    stages = detector.captured_stages()
    device = detector.device
    buffer = detector.point_buffer([points])
    buffer.load([points])
    side = torch.cuda.Stream(device)
    side.wait_stream(torch.cuda.current_stream(device))
    with torch.cuda.stream(side):
        for _ in range(eager_runs):
            eager: dict[str, Any] = {"clouds": buffer.clouds, "capturing": True}
            for _, stage in stages:
                stage(eager)
    torch.cuda.current_stream(device).wait_stream(side)

    state: dict[str, Any] = {"clouds": buffer.clouds, "capturing": True}
    graphs = []
    for name, stage in stages:  # stage k's graph reads the tensors stage k-1's graph writes
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            stage(state)
        graphs.append((name, graph))
    host = torch.empty(state["packed"].shape, dtype=state["packed"].dtype, pin_memory=True)
    *body, (_, output) = graphs

    clock = CudaClock(device)
    samples: dict[str, list[float]] = {name: [] for name, _ in stages}
    for index in range(warmup + iterations):
        marks = [clock.mark()]
        buffer.load([points])  # counted in the first stage, upload
        for _, graph in body:
            graph.replay()
            marks.append(clock.mark())
        output.replay()
        host.copy_(state["packed"], non_blocking=True)  # counted in the last stage, output
        marks.append(clock.mark())
        clock.synchronize()
        if index >= warmup:
            for position, name in enumerate(samples):
                samples[name].append(clock.seconds(marks[position], marks[position + 1]))
    return samples

