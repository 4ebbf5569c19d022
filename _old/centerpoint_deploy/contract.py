"""The Autoware / AWML deployment contract: file names, tensor names and output order.

See ``shared/reference/centerpoint-contract.md`` §2. Autoware binds tensors by position,
so the order of :data:`HEAD_OUTPUTS` is part of the contract, not a convenience.
"""

from __future__ import annotations

ENCODER_FILE = "pts_voxel_encoder.onnx"
HEAD_FILE = "pts_backbone_neck_head.onnx"

ENCODER_INPUT = "input_features"  # float32 [num_voxels, 32, F], dynamic axes 0 and 1
ENCODER_OUTPUT = "pillar_features"  # float32 [num_voxels, 1, 32], dynamic axis 0
HEAD_INPUT = "spatial_features"  # float32 [B, 32, H, W], dynamic axes 0, 2, 3
HEAD_OUTPUTS = ("heatmap", "reg", "height", "dim", "rot", "vel")  # each [B, C, h, w]

#: Names of the decorated per-point features, by F (contract §2 table).
FEATURE_NAMES: dict[int, tuple[str, ...]] = {
    9: ("x", "y", "z", "time_lag", "x-xmean", "y-ymean", "z-zmean", "x-xc", "y-yc"),
    10: ("x", "y", "z", "time_lag", "x-xmean", "y-ymean", "z-zmean", "x-xc", "y-yc", "z-zc"),
    11: ("x", "y", "z", "intensity", "time_lag", "x-xmean", "y-ymean", "z-zmean", "x-xc", "y-yc", "z-zc"),
}


def head_output_names(num_tasks: int) -> tuple[str, ...]:
    """Output names of the backbone-neck-head graph.

    One task (the Autoware case) gives exactly :data:`HEAD_OUTPUTS`; a multi-task model
    repeats the six maps per task with a ``_<task>`` suffix, task by task.
    """
    if num_tasks == 1:
        return HEAD_OUTPUTS
    return tuple(f"{name}_{t}" for t in range(num_tasks) for name in HEAD_OUTPUTS)


def split_tasks(outputs: dict, num_tasks: int) -> list[dict]:
    """Regroup a flat ``{output name: tensor}`` mapping into one ``{map name: tensor}`` per task."""
    names = head_output_names(num_tasks)
    return [
        {base: outputs[names[t * len(HEAD_OUTPUTS) + i]] for i, base in enumerate(HEAD_OUTPUTS)}
        for t in range(num_tasks)
    ]
