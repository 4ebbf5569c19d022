"""What the commands share: the one rule per option (help text and how the value is resolved).

Imports only the standard library and typer at module level, so ``--help`` stays fast;
torch and the stages are imported inside the functions that need them.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

import typer

from centerpoint_deploy.errors import BackendError

if TYPE_CHECKING:
    import torch

#: Typer settings of every command group: no Rich markup, so text in ``[...]`` is printed as written.
TYPER_SETTINGS: dict[str, Any] = {"no_args_is_help": True, "pretty_exceptions_enable": False,
                                  "add_completion": False, "rich_markup_mode": None}
#: Seed of ``--random-weights`` models, so smoke tests are reproducible.
RANDOM_WEIGHTS_SEED = 0
#: The preset the bundled demo checkpoint was trained with.
DEMO_CONFIG = "demo"

CONFIG_HELP = "Preset name (tiny, demo, j6gen2_base, j6gen2_base_amp), project .yaml or AWML/mmdet3d .py config."
DEVICE_HELP = "auto (cuda when available, else cpu), cpu, cuda or cuda:N."
CHECKPOINT_HELP = "mmdet3d/AWML checkpoint (default with --config demo: the bundled demo model)."
DEPLOY_DIR_HELP = "Exported ONNX/engines (from 'export' / 'build-engine') for onnxruntime and tensorrt."
BACKEND_HELP = ("pytorch (runs the checkpoint), onnxruntime or tensorrt (run --deploy-dir), "
                "or a variant '<backend>:<precision>[+flag...]' as in 'benchmark'.")
MAX_FRAMES_HELP = "Frames evaluated, spread evenly over the dataset (first and last included; default: all)."
METRIC_HELP = ("t4 (AWML: 121 m for every class, distance buckets), nuscenes (devkit cvpr_2019) "
               "or a metric-config .json.")
CLASS_RANGE_HELP = ("Evaluation range of every class, metres (default: the metric's ranges, each lowered to "
                    "the model's grid reach: 121 m for the 121 m models, 50 m for demo's +-51.2 m grid).")


def resolve_device(text: str) -> "torch.device":
    """``--device``: ``auto`` is CUDA when available, else CPU; the others must exist here.

    Imports torch; for a CUDA device the driver and the device's context start in a thread
    meanwhile (``cuda_warmup``), which has ended when this returns.

    Raises:
        BackendError: not a device string; BackendUnavailableError: CUDA asked for but absent.
    """
    from centerpoint_deploy.cuda_warmup import start_cuda_warmup

    warmup = start_cuda_warmup(text)
    try:
        from centerpoint_deploy.job.inputs import job_device

        return job_device(text)
    finally:
        if warmup is not None:
            warmup.join()


def resolve_checkpoint(checkpoint: Path | None, config: str, random_weights: bool, *, needed: bool) -> Path | None:
    """``--checkpoint`` / ``--random-weights``: the weights a command runs.

    ``needed`` says whether the command runs a checkpoint at all. Without either flag the
    ``demo`` config takes the bundled demo checkpoint (as ``deploy`` does); any other config
    must be given one.

    Raises:
        BackendError: weights given where none run, both given, or none for a non-demo config.
        CheckpointError: the file does not exist or is a folder.
    """
    from centerpoint_deploy.job.inputs import job_checkpoint

    if not needed:
        if checkpoint is not None or random_weights:
            raise BackendError("--checkpoint/--random-weights are for the pytorch backend, which is not requested; "
                               "onnxruntime and tensorrt run the files in --deploy-dir")
        return None
    if checkpoint is not None and random_weights:
        raise BackendError("pass either --checkpoint or --random-weights, not both")
    if random_weights:
        return None
    if checkpoint is None and config != DEMO_CONFIG:
        raise BackendError(f"no weights: pass --checkpoint PATH (or --random-weights for a smoke test); "
                           f"only --config {DEMO_CONFIG} has a bundled checkpoint")
    return job_checkpoint(checkpoint, config)


def runs_checkpoint(backend: str) -> bool:
    """Whether ``--backend`` value ``backend`` runs a checkpoint (PyTorch) rather than ``--deploy-dir``.

    Raises:
        BackendError: an unknown backend, with the list of known ones.
    """
    from centerpoint_deploy.variant import VariantSpec

    return VariantSpec.parse(backend).runs_checkpoint


def positive(value: float | None) -> float | None:
    """Option callback: a number > 0 (or not given)."""
    if value is not None and not value > 0:
        raise typer.BadParameter(f"{value:g} is not > 0")
    return value


def bounded(low: float, high: float | None = None) -> Callable[[Any], Any]:
    """Option callback: every given value in ``[low, high]`` (``high`` ``None``: no upper bound).

    The error names the value received and the range, e.g. ``-1 is not >= 1``, whatever the
    typer version (its own range messages differ between versions and omit the value).
    """
    allowed = f">= {low:g}" if high is None else f"in {low:g}..{high:g}"

    def check(value: Any) -> Any:
        for item in value if isinstance(value, (list, tuple)) else [value]:
            if item is not None and not (low <= item and (high is None or item <= high)):
                raise typer.BadParameter(f"{item:g} is not {allowed}")
        return value

    return check
