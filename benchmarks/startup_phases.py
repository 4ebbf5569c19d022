"""Where the ``evaluate`` command's start-up goes: process start -> its first frame, phase by phase::

    PYTHONPATH=$PWD python3 benchmarks/startup_phases.py [--no-cuda-warmup] --dataset DATA --config demo \
        --device cuda --no-plots --no-cache --max-frames 4 --out /tmp/startup

Runs ``centerpoint-deploy evaluate`` with the arguments given, in this fresh process, with the
functions it calls on the way to its first frame wrapped, and prints each one's first start and
last end before the first frame (none for ``evaluate_backends``, which runs it) in seconds since the process started (the clock of the report's ``startup_s``) and its
time inside. The functions of torch-free modules are wrapped first, the others once the command
has imported torch (in its device's resolution), so that the start-up runs in the command's own
order; phases overlap where one calls another (the detectors' build includes CUDA's start), and
the dataset is read by child processes between its opening's start and its hand-over.
``--no-cuda-warmup`` (this script's own flag, taken out before the command's) turns off the CUDA
warm-up thread (``cuda_warmup``), to compare.
"""

from __future__ import annotations

import importlib
import sys
import time

from centerpoint_deploy.evaluate.throughput import process_age  # light: no torch

#: The clock: seconds since the process started, read once, then advanced by ``perf_counter``.
_BASE = (process_age() or 0.0) - time.perf_counter()


def _now() -> float:
    return _BASE + time.perf_counter()


#: (module, attribute path, phase) in call order: the torch-free ones, wrapped before the command runs.
EARLY_PHASES = [
    ("centerpoint_deploy.cli.evaluate", "prepare_dir", "output folder checked"),
    ("centerpoint_deploy.config", "load_config", "model config loaded"),
    ("centerpoint_deploy.data", "DatasetOpening.__init__", "dataset opening started (children forked)"),
    ("centerpoint_deploy.cli.evaluate", "resolve_device", "device resolved (torch imported)"),
    ("centerpoint_deploy.cuda_warmup", "retain_primary_context", "  CUDA's context (the warm-up thread)"),
]
#: Those wrapped once the command has imported torch (its device resolved).
LATE_PHASES = [
    ("centerpoint_deploy.data", "DatasetOpening.result", "dataset handed over (the children's records)"),
    ("centerpoint_deploy.data.loader", "FrameLoader.start", "readers started (forked)"),
    ("centerpoint_deploy.cli.evaluate", "_build_detectors", "detectors built (checkpoint, CUDA)"),
    ("centerpoint_deploy.variant", "build_detector", "  the detector"),
    ("centerpoint_deploy.evaluate.runner", "fingerprint_files", "  the weights' fingerprint"),
    ("centerpoint_deploy.evaluate.runner", "evaluate_backends", "evaluate_backends"),
    ("centerpoint_deploy.evaluate.runner", "stamp_files", "  point files stamped"),
    ("centerpoint_deploy.evaluate.runner", "inputs_digest", "  inputs digested"),
    ("centerpoint_deploy.evaluate.runner", "default_views", "  views"),
    ("centerpoint_deploy.evaluate.runner", "prediction_cache_key", "  cache keys"),
    ("centerpoint_deploy.evaluate.runner", "ground_truth_boxes", "  ground truth boxes"),
    ("centerpoint_deploy.evaluate.runner", "save_boxes", "  ground truth written"),
]


class PhaseTimes:
    """First start, last end and time inside of each wrapped function."""

    def __init__(self) -> None:
        self.first: dict[str, float] = {}
        self.last: dict[str, float] = {}
        self.inside: dict[str, float] = {}
        self.first_frame: float | None = None

    def wrap(self, fn, phase: str):
        def timed(*args, **kwargs):
            if self.first_frame is not None:  # only the start-up is timed
                return fn(*args, **kwargs)
            begin = _now()
            self.first.setdefault(phase, begin)
            try:
                return fn(*args, **kwargs)
            finally:
                end = _now()
                if self.first_frame is None:  # returned before the first frame
                    self.last[phase] = end
                    self.inside[phase] = self.inside.get(phase, 0.0) + end - begin
        return timed

    def install(self, phases: list[tuple[str, str, str]]) -> None:
        for module_name, path, phase in phases:
            owner = importlib.import_module(module_name)
            *parents, attribute = path.split(".")
            for parent in parents:
                owner = getattr(owner, parent)
            setattr(owner, attribute, self.wrap(getattr(owner, attribute), phase))

    def install_all(self) -> None:
        """The early phases now, the late ones when the device is resolved (torch imported)."""
        self.install(EARLY_PHASES)
        evaluate = importlib.import_module("centerpoint_deploy.cli.evaluate")
        resolve = evaluate.resolve_device

        def resolve_then_install(*args, **kwargs):
            try:
                return resolve(*args, **kwargs)
            finally:
                self.install(LATE_PHASES)
                runner = importlib.import_module("centerpoint_deploy.evaluate.runner")
                run_detectors = runner._run_detectors

                def first_frame(*args, **kwargs):
                    self.first_frame = _now()
                    return run_detectors(*args, **kwargs)
                runner._run_detectors = first_frame
        evaluate.resolve_device = resolve_then_install

    def markdown(self, imported: float) -> str:
        rows = ["| phase | starts s | ends s | inside s |", "|---|---|---|---|",
                f"| the command line imported (typer, the light modules) | 0.00 | {imported:.2f} | {imported:.2f} |"]
        for _, _, phase in EARLY_PHASES + LATE_PHASES:
            if phase in self.first:
                ends, inside = (f"{self.last[phase]:.2f}", f"{self.inside[phase]:.2f}") if phase in self.last else ("", "")
                rows.append(f"| {phase} | {self.first[phase]:.2f} | {ends} | {inside} |")
        if self.first_frame is not None:
            rows.append(f"| **first frame asked for** | {self.first_frame:.2f} | | |")
        return "\n".join(rows)


def main() -> None:
    from centerpoint_deploy.cli.app import prepare_process, run

    imported = _now()
    phases = PhaseTimes()
    phases.install_all()
    arguments = sys.argv[1:]
    if "--no-cuda-warmup" in arguments:
        arguments.remove("--no-cuda-warmup")
        cuda_warmup = importlib.import_module("centerpoint_deploy.cuda_warmup")
        cuda_warmup.start_cuda_warmup = lambda device: None
    prepare_process()  # as the command line's entry point does
    status = run(["evaluate", *arguments])
    print(phases.markdown(imported))
    sys.exit(status)


if __name__ == "__main__":
    main()
