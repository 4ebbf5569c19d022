"""Element-wise comparison of one output tensor of two backends.

An element passes when ``|test - ref| <= atol + rtol * |ref|`` (the ``numpy.isclose`` rule,
asymmetric: the reference's magnitude scales the allowance). A comparison passes when
shapes and dtypes agree, neither side holds NaN/Inf, and no more than
``Tolerance.max_outlier_share`` of the elements break the rule (0 by default: every element
must pass).

Default tolerances and why (``docs/verification.md`` has the measurements):

- ``fp32``: ``atol=1e-4, rtol=1e-3``. ONNX Runtime CPU vs PyTorch CPU on the tiny and demo
  models differ by at most a few 1e-6 on head outputs whose magnitudes are O(1..10)
  (different conv algorithms and summation order); 1e-4 absolute is ~30x that headroom and
  still ~1000x below the smallest change that moves a box (a 0.1 mm centre offset needs a
  ``reg`` change of 1e-4 / voxel size). A real bug (wrong weight, wrong BN eps, a transposed
  channel) gives differences of 1e-2 and more.
- ``fp16``: ``atol=1e-2, rtol=1e-2``. Half precision rounds every activation to 11
  significant bits (unit round-off 4.9e-4); through ~20 layers of conv + BN + ReLU the
  error grows to a few 1e-3 relative, so 1e-2 keeps a 2-5x margin while a broken layer
  still shows as a 1e-1-scale difference.
- ``int8``: SNR only (no element-share bound), at least 12 dB end to end. An INT8 Q/DQ graph
  is compared with the PyTorch fake-quant model built from its own activation scales
  (:mod:`.fake_quant`), not with fp32: both quantize the same tensors, but where PyTorch's and
  ONNX Runtime's float sums (1e-6 apart) put a value on either side of a rounding boundary, one
  element moves by a quantization step and the next layers spread it over their receptive
  field, compounding through every INT8 layer (demo model: 23.5 dB with 22 INT8 layers, 15.3 dB
  with 28). The sharp check is each INT8 layer alone on the ONNX node's own input
  (:data:`INT8_LAYER_TOLERANCE`, :mod:`.layerwise`): correct layers agree to 67-157 dB, a weight
  scale off by 1 % gives 38 dB and one doubled -2 dB, where bisection finds it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Mapping

import numpy as np
import torch
from torch import Tensor

from centerpoint_deploy.errors import VerificationError

#: Axis names used to report the worst element, by tensor rank.
_AXIS_NAMES: dict[int, tuple[str, ...]] = {
    1: ("index",),
    2: ("row", "col"),
    3: ("voxel", "point", "feature"),
    4: ("batch", "channel", "row", "col"),
}


@dataclass(frozen=True)
class Tolerance:
    """Allowed difference for one output: an element fails when ``|d| > atol + rtol * |ref|``.

    Attributes:
        atol: absolute tolerance, in the tensor's units (>= 0).
        rtol: relative tolerance, a fraction of ``|ref|`` (>= 0).
        max_outlier_share: share of elements (0..1) allowed to fail before the output fails;
            0 means every element must be within tolerance.
        min_snr_db: when set, the output also fails below this signal-to-noise ratio
            ``10 log10(sum ref^2 / sum (test - ref)^2)`` (a whole-tensor judgement for
            reduced precision, where single elements may legitimately move).
    """

    atol: float
    rtol: float
    max_outlier_share: float = 0.0
    min_snr_db: float | None = None

    def __post_init__(self) -> None:
        for name in ("atol", "rtol"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
                raise VerificationError(f"tolerance {name} = {value!r} is invalid: a finite number >= 0")
        if not 0.0 <= self.max_outlier_share <= 1.0:
            raise VerificationError(
                f"tolerance max_outlier_share = {self.max_outlier_share!r} is invalid: a fraction in [0, 1]")

    def to_dict(self) -> dict[str, float | None]:
        return {"atol": self.atol, "rtol": self.rtol, "max_outlier_share": self.max_outlier_share,
                "min_snr_db": self.min_snr_db}


#: Default tolerance per precision (see the module docstring for the reasoning).
#: fp16 and int8 are set from what the demo model's exports give on the deploy job's 20
#: validation frames (docs/precision.md, "Tolerances, measured"), with a margin. fp16 against
#: PyTorch fp32: worst share over 1e-2 + 1e-2 |ref| 0.042 % (vel), min SNR 58.1 dB. int8 against
#: the fake-quantized reference, end to end: rounding ties compound through the INT8 layers to
#: 53 % of the vel elements over at a min SNR of 23.5 dB (rot) with 22 layers and 15.3 dB with 28
#: (the 88 % plan the mAP-driven scan chooses), so INT8 outputs are judged by SNR only, against a
#: floor below that; what catches a wrong scale is each INT8 layer run alone (:data:`INT8_LAYER_TOLERANCE`).
DEFAULT_TOLERANCES: dict[str, Tolerance] = {
    "fp32": Tolerance(atol=1e-4, rtol=1e-3),
    "fp16": Tolerance(atol=1e-2, rtol=1e-2, max_outlier_share=1e-3, min_snr_db=50.0),
    # bf16 rounds to 8 significand bits, fp16 to 11: errors 8 times fp16's (atol, rtol), 18 dB less SNR
    # (32 dB, rounded down to 30). Measured on the CPU (demo model, 20 frames, docs/precision.md): SNR
    # 33.5 dB at worst (the head's rot; heatmap 52.8), share over 0.08 + 0.08 |ref| at most 0.55 % (vel)
    "bf16": Tolerance(atol=8e-2, rtol=8e-2, max_outlier_share=1e-2, min_snr_db=30.0),
    "int8": Tolerance(atol=1e-2, rtol=1e-2, max_outlier_share=1.0, min_snr_db=12.0),
}

#: Each INT8 layer alone on its ONNX node's own input (:mod:`.layerwise`): the demo export's
#: layers agree to 67.8-156.7 dB; a weight scale off by 1 % gives about 40 dB, one off by 2x
#: about 0 dB.
INT8_LAYER_TOLERANCE = Tolerance(atol=1e-2, rtol=1e-2, max_outlier_share=1.0, min_snr_db=40.0)


@dataclass(frozen=True)
class Tolerances:
    """A default tolerance plus per-output overrides (keys are output names, e.g. ``"heatmap"``)."""

    default: Tolerance
    per_output: Mapping[str, Tolerance] = field(default_factory=dict)

    def for_output(self, name: str) -> Tolerance:
        return self.per_output.get(name, self.default)

    def with_overrides(self, overrides: Mapping[str, Tolerance]) -> "Tolerances":
        return Tolerances(self.default, {**self.per_output, **overrides})

    def to_dict(self) -> dict[str, Any]:
        return {"default": self.default.to_dict(), "per_output": {k: v.to_dict() for k, v in self.per_output.items()}}


def default_tolerances(precision: str) -> Tolerances:
    """The strict defaults for ``precision`` (a :data:`DEFAULT_TOLERANCES` key), no overrides."""
    if precision not in DEFAULT_TOLERANCES:
        raise VerificationError(f"precision {precision!r} is unknown; allowed: {', '.join(DEFAULT_TOLERANCES)}")
    return Tolerances(DEFAULT_TOLERANCES[precision])


def parse_tolerance_override(text: str) -> tuple[str, Tolerance]:
    """Parse ``"name=atol,rtol"`` (e.g. ``"heatmap=1e-3,1e-2"``) into ``(name, Tolerance)``."""
    name, sep, values = text.partition("=")
    parts = values.split(",")
    if not sep or not name.strip() or len(parts) != 2:
        raise VerificationError(f"tolerance override {text!r} is malformed; expected NAME=ATOL,RTOL e.g. heatmap=1e-3,1e-2")
    try:
        atol, rtol = float(parts[0]), float(parts[1])
    except ValueError as exc:
        raise VerificationError(f"tolerance override {text!r} has a non-numeric value; expected NAME=ATOL,RTOL") from exc
    return name.strip(), Tolerance(atol, rtol)


@dataclass
class TensorComparison:
    """Result of comparing one tensor; truthy when it passed.

    Statistics are over the elements finite on both sides, in float64. ``worst_index`` is the
    element with the largest ``|d| / (atol + rtol * |ref|)`` (the one furthest over, or
    closest to, its allowance); ``worst_axes`` names its axes, e.g. ``(batch, channel, row,
    col)`` for a ``[B, C, H, W]`` map or ``(voxel, point, feature)`` for ``[V, P, F]``.
    """

    name: str
    passed: bool
    reason: str
    tolerance: Tolerance
    ref_shape: tuple[int, ...]
    test_shape: tuple[int, ...]
    ref_dtype: str
    test_dtype: str
    max_abs: float = math.nan
    mean_abs: float = math.nan
    max_rel: float = math.nan
    share_over: float = math.nan
    cosine: float = math.nan
    snr_db: float = math.nan
    worst_index: tuple[int, ...] | None = None
    worst_axes: tuple[str, ...] = ()
    worst_ref: float = math.nan
    worst_test: float = math.nan
    ref_nonfinite: int = 0
    test_nonfinite: int = 0

    def __bool__(self) -> bool:
        return self.passed

    @property
    def worst_location(self) -> str:
        """E.g. ``"channel=2, row=10, col=31"`` (batch omitted when the batch is 1)."""
        if self.worst_index is None:
            return "-"
        pairs = zip(self.worst_axes, self.worst_index)
        return ", ".join(f"{a}={i}" for a, i in pairs if not (a == "batch" and self.ref_shape[0] == 1))

    def to_dict(self) -> dict[str, Any]:
        def num(x: float) -> float | None:
            return None if math.isnan(x) else x

        return {
            "name": self.name, "passed": self.passed, "reason": self.reason,
            "tolerance": self.tolerance.to_dict(),
            "ref_shape": list(self.ref_shape), "test_shape": list(self.test_shape),
            "ref_dtype": self.ref_dtype, "test_dtype": self.test_dtype,
            "max_abs": num(self.max_abs), "mean_abs": num(self.mean_abs), "max_rel": num(self.max_rel),
            "share_over": num(self.share_over), "cosine": num(self.cosine),
            "snr_db": None if math.isnan(self.snr_db) else (self.snr_db if math.isfinite(self.snr_db) else str(self.snr_db)),
            "worst": None if self.worst_index is None else {
                "index": dict(zip(self.worst_axes, self.worst_index)),
                "ref": num(self.worst_ref), "test": num(self.worst_test)},
            "ref_nonfinite": self.ref_nonfinite, "test_nonfinite": self.test_nonfinite,
        }


def _axis_names(rank: int) -> tuple[str, ...]:
    return _AXIS_NAMES.get(rank, tuple(f"dim{i}" for i in range(rank)))


def _cosine(a: np.ndarray, b: np.ndarray) -> float:
    """Cosine similarity of two flat float64 vectors; 1 when both are zero, 0 when one is."""
    # Plain reductions, not BLAS dot/norm: BLAS threads cost more than they save at these sizes.
    na, nb = math.sqrt(float((a * a).sum())), math.sqrt(float((b * b).sum()))
    if na == 0.0 and nb == 0.0:
        return 1.0
    if na == 0.0 or nb == 0.0:
        return 0.0
    return float((a * b).sum() / (na * nb))


def _snr_db(ref: np.ndarray, test: np.ndarray) -> float:
    """``10 log10(sum ref^2 / sum (test - ref)^2)``; inf when equal, -inf when ``ref`` is all zero and ``test`` is not."""
    noise = float(np.square(test - ref).sum())
    signal = float(np.square(ref).sum())
    if noise == 0.0:
        return math.inf
    return 10.0 * math.log10(signal / noise) if signal > 0 else -math.inf


def _flat_float64(tensor: Tensor) -> np.ndarray:
    """``tensor`` as a flat float64 numpy array on the CPU (numpy casts; torch's CPU casts are slower)."""
    cpu = tensor.detach().cpu()
    if cpu.dtype == torch.bfloat16:  # numpy has no bfloat16
        cpu = cpu.float()
    return cpu.numpy().astype(np.float64).reshape(-1)


def compare_tensors(name: str, ref: Tensor, test: Tensor, tol: Tolerance,
                    axis_names: tuple[str, ...] | None = None) -> TensorComparison:
    """Compare ``test`` with the reference ``ref`` element by element.

    Args:
        name: output name shown in reports (e.g. ``"heatmap"``).
        ref: reference tensor (any shape, any device; PyTorch's output).
        test: tensor under test, expected to have ``ref``'s shape and dtype.
        tol: the allowance (see :class:`Tolerance`).
        axis_names: names of the axes for the worst-element report; by default
            ``(batch, channel, row, col)`` for rank 4, ``(voxel, point, feature)`` for rank 3.

    Returns:
        A :class:`TensorComparison`; shape or dtype mismatch and NaN/Inf on either side fail.
    """
    ref_shape, test_shape = tuple(ref.shape), tuple(test.shape)
    result = TensorComparison(name, False, "", tol, ref_shape, test_shape, str(ref.dtype), str(test.dtype))
    if ref_shape != test_shape:
        result.reason = f"shape mismatch: reference {list(ref_shape)}, test {list(test_shape)}"
        return result
    if ref.dtype != test.dtype:
        result.reason = f"dtype mismatch: reference {ref.dtype}, test {test.dtype}"
        return result
    # numpy float64 on the CPU: one pass per statistic, no thread start-up per small op.
    r, t = _flat_float64(ref), _flat_float64(test)
    finite = np.isfinite(r) & np.isfinite(t)
    result.ref_nonfinite = int((~np.isfinite(r)).sum())
    result.test_nonfinite = int((~np.isfinite(t)).sum())
    if r.size == 0:
        result.passed, result.reason, result.share_over = True, "empty tensors", 0.0
        return result
    if finite.any():
        # Non-finite elements are zeroed and masked out of every statistic.
        rf, tf = np.where(finite, r, 0.0), np.where(finite, t, 0.0)
        diff = np.abs(tf - rf)
        ref_abs = np.abs(rf)
        allowed = tol.atol + tol.rtol * ref_abs
        result.max_abs = float(diff.max())
        result.mean_abs = float(diff.sum() / finite.sum())
        significant = finite & (ref_abs > tol.atol)  # relative error is meaningless where |ref| ~ 0
        result.max_rel = float(np.max(diff[significant] / ref_abs[significant])) if significant.any() else 0.0
        result.share_over = float(((diff > allowed) & finite).sum()) / r.size
        result.cosine = _cosine(rf, tf)
        result.snr_db = _snr_db(rf, tf)
        ratio = np.where(finite, diff / np.maximum(allowed, np.finfo(np.float64).tiny), -1.0)  # > 1: over
        flat_worst = int(np.argmax(ratio))
        result.worst_index = tuple(int(i) for i in np.unravel_index(flat_worst, ref_shape))
        result.worst_axes = axis_names if axis_names is not None else _axis_names(len(ref_shape))
        result.worst_ref, result.worst_test = float(r[flat_worst]), float(t[flat_worst])
    if result.ref_nonfinite or result.test_nonfinite:
        result.reason = (f"non-finite values: reference has {result.ref_nonfinite}, "
                         f"test has {result.test_nonfinite} NaN/Inf element(s)")
        return result
    allowed_share = tol.max_outlier_share
    if result.share_over > allowed_share:
        result.reason = (f"{result.share_over:.3%} of elements exceed atol {tol.atol:g} + rtol {tol.rtol:g} * |ref|"
                         f" (allowed {allowed_share:.3%}); worst at {result.worst_location}: "
                         f"ref {result.worst_ref:.6g}, test {result.worst_test:.6g}")
        return result
    if tol.min_snr_db is not None and not result.snr_db >= tol.min_snr_db:
        result.reason = f"SNR {result.snr_db:.1f} dB is below {tol.min_snr_db:g} dB (cosine {result.cosine:.6f})"
        return result
    result.passed = True
    result.reason = f"within atol {tol.atol:g} + rtol {tol.rtol:g} * |ref| (max abs diff {result.max_abs:.3g})"
    return result
