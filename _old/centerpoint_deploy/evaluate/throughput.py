"""How fast the dataset loop ran: frames/s, read vs. compute time, per rank and overall."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any, Sequence


@dataclass
class RankTiming:
    """The detection loop of one rank (seconds).

    Attributes:
        rank: the rank (0 for a single process).
        frames: frames this rank ran.
        workers: reader processes it used.
        wall: the loop from its first frame request to its last boxes.
        read: the readers' time reading and merging frames (summed over frames; it overlaps
            compute when there are workers).
        wait: time the loop waited for a frame that was not read yet.
        compute: backend name -> time in that detector (points to boxes on the host).
        startup: process start to the first frame request (imports, model load, GT load,
            cache check); None where the OS does not say when the process started.
    """

    rank: int
    frames: int
    workers: int
    wall: float = 0.0
    read: float = 0.0
    wait: float = 0.0
    compute: dict[str, float] = field(default_factory=dict)
    startup: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"rank": self.rank, "frames": self.frames, "workers": self.workers, "wall_s": self.wall,
                "read_s": self.read, "wait_s": self.wait, "compute_s": dict(self.compute), "startup_s": self.startup}


@dataclass
class Throughput:
    """The loop over all ranks: ``frames_per_s`` = frames / the slowest rank's wall time."""

    ranks: list[RankTiming]

    @property
    def frames(self) -> int:
        return sum(r.frames for r in self.ranks)

    @property
    def wall(self) -> float:
        return max((r.wall for r in self.ranks), default=0.0)

    @property
    def frames_per_s(self) -> float | None:
        return self.frames / self.wall if self.wall > 0 else None

    def backend_frames_per_s(self) -> dict[str, float | None]:
        """Backend -> frames / its compute time (on the rank where it took longest)."""
        names = list(dict.fromkeys(n for r in self.ranks for n in r.compute))
        out: dict[str, float | None] = {}
        for name in names:
            slowest = max(r.compute.get(name, 0.0) for r in self.ranks)
            out[name] = self.frames / slowest if slowest > 0 else None
        return out

    def to_dict(self) -> dict[str, Any]:
        return {"frames": self.frames, "ranks": len(self.ranks), "wall_s": self.wall,
                "frames_per_s": self.frames_per_s, "backend_frames_per_s": self.backend_frames_per_s(),
                "read_s": sum(r.read for r in self.ranks), "wait_s": sum(r.wait for r in self.ranks),
                "startup_s": self.ranks[0].startup if self.ranks else None,
                "per_rank": [r.to_dict() for r in self.ranks]}

    def markdown(self) -> list[str]:
        """A "Throughput" section: overall frames/s, then one row per rank."""
        if not self.frames:
            return ["## Throughput", "", "No backend ran (every prediction came from the cache).", ""]
        names = list(self.backend_frames_per_s())
        fps = self.frames_per_s
        startup = self.ranks[0].startup
        lines = ["## Throughput", "",
                 f"{self.frames} frames on {len(self.ranks)} rank(s) in {self.wall:.2f} s: "
                 f"**{_num(fps)} frames/s** ({', '.join(names)} each frame); start-up "
                 f"{'n/a' if startup is None else f'{startup:.2f} s'} (process start to the first frame).", "",
                 "| rank | frames | readers | wall s | read s | waited s | " +
                 " | ".join(f"{n} s" for n in names) + " |",
                 "|" + "---|" * (6 + len(names))]
        for r in self.ranks:
            lines.append(f"| {r.rank} | {r.frames} | {r.workers} | {r.wall:.2f} | {r.read:.2f} | {r.wait:.2f} | "
                         + " | ".join(f"{r.compute.get(n, 0.0):.2f}" for n in names) + " |")
        per_backend = ", ".join(f"{n} {_num(v)}" for n, v in self.backend_frames_per_s().items())
        lines += ["", f"Frames/s of each backend's own compute: {per_backend}. Read time is the readers' "
                  "(worker processes, overlapping compute); waited is what the loop spent waiting for them.", ""]
        return lines


def _num(value: float | None) -> str:
    """Three significant digits (0.0423, 12.3, 340)."""
    return "n/a" if value is None else f"{value:.3g}"


def process_age() -> float | None:
    """Seconds since this process started (Linux ``/proc``), None elsewhere."""
    try:
        with open("/proc/self/stat") as f:
            fields: Sequence[str] = f.read().rsplit(")", 1)[1].split()
        with open("/proc/uptime") as f:
            uptime = float(f.read().split()[0])
        return max(0.0, uptime - int(fields[19]) / os.sysconf("SC_CLK_TCK"))
    except (OSError, ValueError, IndexError):
        return None
