"""Circle NMS on BEV box centres with mmdet3d's semantics, batched and loop-free per box.

mmdet3d's ``circle_nms`` walks the boxes in descending score order, keeps a box unless an
earlier kept box lies within ``min_radius`` of it (the *squared* centre distance is compared
with ``min_radius`` as given), then keeps the first ``post_max_size``. Written as an equation
on the sorted boxes, ``keep[i] = valid[i] and not any(keep[j] and close[j, i] for j < i)``;
its solution is unique and is reached by iterating the equation from ``keep = valid``:
after ``t`` rounds the first ``t`` entries are final, and a round that changes nothing means
every entry is. Suppression chains are short in practice, so few rounds run.
"""

from __future__ import annotations

import torch
from torch import Tensor


def circle_nms(centers: Tensor, scores: Tensor, valid: Tensor, min_radius: float, post_max_size: int) -> Tensor:
    """Greedy circle NMS per batch item.

    Args:
        centers: ``Tensor[B, K, 2]`` BEV box centres ``(x, y)`` in metres.
        scores: ``Tensor[B, K]``; higher first, ties by lower index.
        valid: ``Tensor[B, K]`` bool; invalid boxes neither survive nor suppress.
        min_radius: suppress when ``dx**2 + dy**2 <= min_radius`` (m², mmdet3d semantics).
        post_max_size: most boxes kept per batch item.

    Returns:
        ``Tensor[B, K]`` bool, the boxes kept, indexed like the input.
    """
    batch, count = scores.shape
    if count == 0:
        return valid.clone()
    ranked = torch.where(valid, scores, torch.full_like(scores, -torch.inf))
    order = torch.argsort(ranked, dim=1, descending=True, stable=True)  # [B, K]
    xy = torch.gather(centers, 1, order.unsqueeze(2).expand(-1, -1, 2))  # [B, K, 2] sorted
    alive = torch.gather(valid, 1, order)  # [B, K] sorted
    dx = xy[:, :, None, 0] - xy[:, None, :, 0]  # [B, K, K]
    dy = xy[:, :, None, 1] - xy[:, None, :, 1]
    earlier = torch.ones(count, count, dtype=torch.bool, device=scores.device).triu(diagonal=1)  # j < i
    close = (dx * dx + dy * dy <= min_radius) & earlier & alive[:, :, None]  # [B, j, i]

    keep = alive
    for _ in range(count):
        suppressed = (close & keep[:, :, None]).any(dim=1)  # [B, K]
        updated = alive & ~suppressed
        if torch.equal(updated, keep):
            break
        keep = updated
    keep = keep & (torch.cumsum(keep.to(torch.int64), dim=1) <= post_max_size)
    return torch.zeros_like(keep).scatter(1, order, keep)
