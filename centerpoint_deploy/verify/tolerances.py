"""The one decision of how strictly a backend is judged: by the precision it computes in.

``verify`` and the main job (``deploy``) both ask :func:`judged_precision` which tolerance class
a variant falls in and :func:`verification_tolerances` for the tolerances of that class, so the
two can never disagree about the same deploy directory.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Mapping

from centerpoint_deploy.export.manifest import Manifest
from centerpoint_deploy.variant import VariantSpec
from centerpoint_deploy.verify.boxes import DEFAULT_BOX_TOLERANCES, BoxTolerance
from centerpoint_deploy.verify.compare import Tolerance, Tolerances, default_tolerances


#: Tolerance classes from strict to loose (:data:`~centerpoint_deploy.verify.compare.DEFAULT_TOLERANCES` keys).
CLASSES = ("fp32", "fp16", "bf16", "int8")

def run_precision(spec: VariantSpec, manifest: Manifest | None) -> str:
    """The precision ``spec`` computes in: a deploy directory's reduced ONNX graphs (``export --precision``)
    run in their precision whatever the variant; else the variant's own, and for ``tensorrt:engine``
    the engines' (a reduced one when they differ; ``fp32`` when the manifest lists none)."""
    if spec.backend == "pytorch" or manifest is None:
        return spec.precision
    if manifest.precision != "fp32":
        return manifest.precision
    if spec.precision != "engine":
        return spec.precision
    reduced = sorted({record.precision for record in manifest.engines.values()} - {"fp32"})
    return reduced[0] if reduced else "fp32"


def tolerance_class(precision: str) -> str:
    """The default tolerances a run precision is judged by: ``fp32`` for strict fp32, ``bf16`` for
    bf16 (8 significand bits), ``int8`` for INT8 (against the fake-quantized reference), ``fp16`` for
    any other reduced precision (tf32, fp16, best)."""
    return precision if precision in ("fp32", "bf16", "int8") else "fp16"


def judged_precision(specs: list[VariantSpec], manifest: Manifest | None) -> str:
    """The tolerance class of a set of candidates judged together: the loosest of theirs."""
    return max((tolerance_class(run_precision(spec, manifest)) for spec in specs), key=CLASSES.index, default="fp32")


def verification_tolerances(tolerance: str, *, atol: float | None = None, rtol: float | None = None,
                            overrides: Mapping[str, Tolerance] | None = None) -> tuple[Tolerances, BoxTolerance]:
    """Tensor and box tolerances of a tolerance class (the measured defaults of
    :data:`~centerpoint_deploy.verify.compare.DEFAULT_TOLERANCES` and
    :data:`~centerpoint_deploy.verify.boxes.DEFAULT_BOX_TOLERANCES`); ``atol``/``rtol`` replace
    the default, ``overrides`` set single outputs."""
    tolerances = default_tolerances(tolerance)
    if atol is not None or rtol is not None:
        base = tolerances.default
        tolerances = Tolerances(replace(base, atol=base.atol if atol is None else atol,
                                        rtol=base.rtol if rtol is None else rtol))
    return tolerances.with_overrides(dict(overrides or {})), \
        DEFAULT_BOX_TOLERANCES[tolerance]
