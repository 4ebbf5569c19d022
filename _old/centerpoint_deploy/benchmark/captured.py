"""Per-stage GPU time of the whole-pipeline CUDA graph (a ``pipeline_graph`` variant).

Timing the uncaptured stages of a graph variant would charge each stage with the Python time
of launching its kernels, which the replay does not pay. Here the pipeline is captured cut into
one graph per stage (:meth:`StaticPipeline.capture` with ``segments``), on one point buffer,
and the graphs are replayed in pipeline order with a CUDA event between consecutive ones: each
stage's figure is its kernels' time, and their sum is close to one whole-graph replay. The
``upload`` figure includes the host -> device copy into the buffer, and ``output`` the
device -> host copy of the packed result (into pinned memory).
"""

from __future__ import annotations

import torch
from torch import Tensor

from centerpoint_deploy.benchmark.timing import CudaClock, check_counts
from centerpoint_deploy.static_pipeline import StaticPipeline


def time_captured_stages(pipeline: StaticPipeline, points: Tensor, *, warmup: int,
                         iterations: int) -> dict[str, list[float]]:
    """Capture each stage of ``pipeline`` as a graph of its own and time the replays.

    Args:
        pipeline: a fixed-shape pipeline on CUDA with capturable backends (loaded here).
        points: ``Tensor[N, D]`` float32, one cloud on the host.
        warmup, iterations: untimed and timed passes over all stage graphs.

    Returns:
        ``{stage name: [seconds per iteration]}`` in pipeline order.
    """
    check_counts(warmup, iterations)
    buffer = pipeline.point_buffer([points])
    buffer.load([points])
    captured = pipeline.capture(buffer, segments=True)  # stage k's graph reads what stage k-1's writes
    packed = captured.result.packed
    host = torch.empty(packed.shape, dtype=packed.dtype, pin_memory=True)
    *body, (_, output) = captured.graphs

    clock = CudaClock(pipeline.device)
    samples: dict[str, list[float]] = {name: [] for name, _ in captured.graphs}
    for index in range(warmup + iterations):
        marks = [clock.mark()]
        buffer.load([points])  # counted in the first stage, upload
        for _, graph in body:
            graph.replay()
            marks.append(clock.mark())
        output.replay()
        host.copy_(packed, non_blocking=True)  # counted in the last stage, output
        marks.append(clock.mark())
        clock.synchronize()
        if index >= warmup:
            for position, name in enumerate(samples):
                samples[name].append(clock.seconds(marks[position], marks[position + 1]))
    return samples
