"""Circle NMS on BEV box centres with mmdet3d's semantics, batched and loop-free per box.

mmdet3d's ``circle_nms`` walks the boxes in descending score order, keeps a box unless an
earlier kept box lies within ``min_radius`` of it (the *squared* centre distance is compared
with ``min_radius`` as given), then keeps the first ``post_max_size``. Written as an equation
on the sorted boxes, ``keep[i] = valid[i] and not any(keep[j] and close[j, i] for j < i)``;
its solution is unique and is reached by iterating the equation from ``keep = valid``:
after ``t`` rounds the first ``t`` entries are final, and a round that changes nothing means
every entry is. Suppression chains are short in practice, so few rounds run.
:func:`circle_nms_fixed_rounds` runs a fixed number of rounds without reading anything on the
host and reports, per batch item, whether the fixed point was reached.
"""

from __future__ import annotations

import torch
from torch import Tensor

from centerpoint_deploy.errors import ConfigError


def circle_nms(centers: Tensor, scores: Tensor, valid: Tensor, min_radius: float, post_max_size: int) -> Tensor:
    """Greedy circle NMS per batch item.

    Args:
        centers: ``Tensor[B, K, 2]`` BEV box centres ``(x, y)`` in metres.
        scores: ``Tensor[B, K]``; higher first, ties by lower index.
        valid: ``Tensor[B, K]`` bool; invalid boxes neither survive nor suppress.
        min_radius: suppress when ``dx**2 + dy**2 <= min_radius`` (m², mmdet3d semantics).
        post_max_size: most boxes kept per batch item.

    Returns:
        ``Tensor[B, K]`` bool, the boxes kept, indexed like the input. Iterates until nothing
        changes (on a GPU each round reads one flag on the host).
    """
    return _circle_nms(centers, scores, valid, min_radius, post_max_size, rounds=None)[0]


def circle_nms_fixed_rounds(centers: Tensor, scores: Tensor, valid: Tensor, min_radius: float, post_max_size: int,
                            rounds: int) -> tuple[Tensor, Tensor]:
    """:func:`circle_nms` with exactly ``rounds`` rounds and no host synchronisation.

    Returns:
        ``(keep, converged)``: ``keep`` as :func:`circle_nms` returns it, and ``converged``
        ``Tensor[B]`` bool, true where one more round changes nothing, i.e. where ``keep`` is
        the exact greedy result (the fixed point is unique). Where it is false, run
        :func:`circle_nms`.
    """
    if rounds < 1:
        raise ConfigError(f"NMS rounds = {rounds} is invalid: must be >= 1")
    return _circle_nms(centers, scores, valid, min_radius, post_max_size, rounds=rounds)


def _circle_nms(centers: Tensor, scores: Tensor, valid: Tensor, min_radius: float, post_max_size: int,
                rounds: int | None) -> tuple[Tensor, Tensor]:
    """Shared body: ``rounds=None`` iterates to the fixed point, else runs ``rounds`` rounds."""
    batch, count = scores.shape
    if count == 0:
        return valid.clone(), torch.ones(batch, dtype=torch.bool, device=valid.device)
    ranked = torch.where(valid, scores, torch.full_like(scores, -torch.inf))
    order = torch.argsort(ranked, dim=1, descending=True, stable=True)  # [B, K]
    xy = torch.gather(centers, 1, order.unsqueeze(2).expand(-1, -1, 2))  # [B, K, 2] sorted
    alive = torch.gather(valid, 1, order)  # [B, K] sorted
    dx = xy[:, :, None, 0] - xy[:, None, :, 0]  # [B, K, K]
    dy = xy[:, :, None, 1] - xy[:, None, :, 1]
    earlier = torch.ones(count, count, dtype=torch.bool, device=scores.device).triu(diagonal=1)  # j < i
    close = (dx * dx + dy * dy <= min_radius) & earlier  # [B, j, i]
    keep, converged = greedy_suppression(close, alive, rounds)
    keep = keep & (torch.cumsum(keep.to(torch.int64), dim=1) <= post_max_size)
    return torch.zeros_like(keep).scatter(1, order, keep), converged


def greedy_suppression(close: Tensor, alive: Tensor, rounds: int | None) -> tuple[Tensor, Tensor]:
    """Greedy suppression in rank order: ``keep[i] = alive[i] and not any(keep[j] and close[j, i])``.

    Args:
        close: ``Tensor[B, K, K]`` bool, ``[b, j, i]`` true where an earlier box ``j < i`` would
            suppress box ``i`` (entries with ``j >= i`` must be false).
        alive: ``Tensor[B, K]`` bool; boxes that are not alive neither survive nor suppress.
        rounds: ``None`` iterates to the fixed point (each round reads one flag on the host);
            else exactly ``rounds`` rounds, nothing read on the host.

    Returns:
        ``(keep [B, K] bool, converged [B] bool)``: ``converged`` true where one more round changes
        nothing, i.e. where ``keep`` is the exact greedy result (always true with ``rounds=None``).
    """
    close = close & alive[:, :, None]

    def step(keep: Tensor) -> Tensor:
        return alive & ~(close & keep[:, :, None]).any(dim=1)  # [B, K]

    keep = alive
    if rounds is None:
        for _ in range(alive.shape[1]):
            updated = step(keep)
            if torch.equal(updated, keep):
                break
            keep = updated
        return keep, torch.ones(alive.shape[0], dtype=torch.bool, device=alive.device)
    for _ in range(rounds):
        keep = step(keep)
    return keep, (step(keep) == keep).all(dim=1)
