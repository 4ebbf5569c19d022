"""AWML's ``rot_y_axis_reference`` export option and its inverse.

With the option on, the exported head emits ``dim`` channels permuted ``[1, 0, 2]`` (w, l, h)
and ``rot`` as ``[-cos θ, -sin θ]`` so that Autoware, which decodes ``yaw = -atan2(rot[0],
rot[1]) - π/2`` with w from channel 0, recovers θ. Both changes are exact (a permutation and
negations), and applying the transform twice gives the maps back bit for bit: the inverse is
the same transform.
"""

from __future__ import annotations

import torch
from torch import Tensor

def _swap_reference(maps: dict[str, Tensor]) -> dict[str, Tensor]:
    """Swap l/w in ``dim`` and map ``rot = [a, b]`` to ``[-b, -a]``; other maps pass through."""
    out = dict(maps)
    dim = maps["dim"]
    out["dim"] = torch.cat([dim[:, 1:2], dim[:, 0:1], dim[:, 2:3]], dim=1)  # (w, l, h) <-> (l, w, h)
    rot = maps["rot"]
    out["rot"] = torch.cat([-rot[:, 1:2], -rot[:, 0:1]], dim=1)
    return out


def apply_rot_y_axis_reference(maps: dict[str, Tensor]) -> dict[str, Tensor]:
    """Plain mmdet3d task maps -> the y-axis-reference convention of an AWML export.

    Args:
        maps: one task's maps; ``dim [B, 3, h, w]`` as (l, w, h), ``rot [B, 2, h, w]`` as
            (sin θ, cos θ).

    Returns:
        A new dict with ``dim`` as (w, l, h) and ``rot`` as (-cos θ, -sin θ).
    """
    return _swap_reference(maps)


def undo_rot_y_axis_reference(maps: dict[str, Tensor]) -> dict[str, Tensor]:
    """Exact inverse of :func:`apply_rot_y_axis_reference` (``dim`` back to (l, w, h), ``rot`` to (sin, cos))."""
    return _swap_reference(maps)
