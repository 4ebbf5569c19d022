"""Hand-built cases for compare_tensors and the tolerance helpers."""

import math

import pytest
import torch

from centerpoint_deploy.errors import VerificationError
from centerpoint_deploy.verify.compare import (
    DEFAULT_TOLERANCES, Tolerance, Tolerances, compare_tensors, default_tolerances, parse_tolerance_override)

TOL = Tolerance(atol=1e-4, rtol=1e-3)


def test_identical_tensors_pass_with_zero_error():
    x = torch.arange(24, dtype=torch.float32).reshape(1, 2, 3, 4)
    result = compare_tensors("heatmap", x, x.clone(), TOL)
    assert result and result.passed
    assert result.max_abs == 0.0 and result.mean_abs == 0.0 and result.share_over == 0.0
    assert result.cosine == pytest.approx(1.0)


def test_worst_element_is_the_one_furthest_over_its_allowance_not_the_largest_abs_diff():
    ref = torch.ones(1, 2, 3, 4, dtype=torch.float64)
    ref[0, 1, 2, 3] = 100.0
    test = ref.clone()
    test[0, 0, 1, 2] = 1.002  # |d| = 2e-3, allowed 1e-4 + 1e-3 * 1 = 1.1e-3 -> ratio 1.82
    test[0, 1, 2, 3] = 100.05  # |d| = 5e-2, allowed 1e-4 + 1e-3 * 100 = 0.1001 -> ratio 0.50
    result = compare_tensors("reg", ref, test, TOL)
    assert not result
    assert result.worst_index == (0, 0, 1, 2)
    assert result.worst_axes == ("batch", "channel", "row", "col")
    assert result.worst_location == "channel=0, row=1, col=2"
    assert result.worst_ref == 1.0 and result.worst_test == pytest.approx(1.002)
    assert result.max_abs == pytest.approx(0.05, rel=1e-5)
    assert result.share_over == pytest.approx(1 / 24)
    assert result.mean_abs == pytest.approx((2e-3 + 5e-2) / 24, rel=1e-5)
    assert result.max_rel == pytest.approx(2e-3, rel=1e-4)


def test_element_exactly_at_the_allowance_passes_and_just_over_fails():
    ref = torch.tensor([2.0], dtype=torch.float64)
    at = ref + (1e-4 + 1e-3 * 2.0)  # the rule is |d| <= atol + rtol*|ref|
    assert compare_tensors("x", ref, at, TOL)
    assert not compare_tensors("x", ref, ref + 2.2e-3, TOL)


def test_voxel_feature_tensor_reports_voxel_point_feature():
    ref = torch.zeros(5, 32, 11)
    test = ref.clone()
    test[3, 7, 10] = 1.0
    result = compare_tensors("input_features", ref, test, TOL)
    assert not result
    assert dict(zip(result.worst_axes, result.worst_index)) == {"voxel": 3, "point": 7, "feature": 10}
    assert result.to_dict()["worst"] == {"index": {"voxel": 3, "point": 7, "feature": 10}, "ref": 0.0, "test": 1.0}


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_non_finite_test_values_fail_even_if_everything_else_matches(bad):
    ref = torch.ones(2, 3)
    test = ref.clone()
    test[1, 2] = bad
    result = compare_tensors("dim", ref, test, Tolerance(atol=1e9, rtol=1e9))
    assert not result
    assert result.test_nonfinite == 1 and result.ref_nonfinite == 0
    assert "NaN/Inf" in result.reason
    assert result.max_abs == 0.0  # statistics over the finite elements


def test_non_finite_reference_fails():
    ref = torch.tensor([1.0, math.nan])
    assert not compare_tensors("x", ref, torch.tensor([1.0, 1.0]), TOL)


def test_shape_mismatch_fails_and_says_both_shapes():
    result = compare_tensors("heatmap", torch.zeros(1, 5, 4, 4), torch.zeros(1, 4, 4, 4), TOL)
    assert not result
    assert "[1, 5, 4, 4]" in result.reason and "[1, 4, 4, 4]" in result.reason


def test_dtype_mismatch_fails():
    result = compare_tensors("heatmap", torch.zeros(3), torch.zeros(3, dtype=torch.float16), TOL)
    assert not result and "dtype" in result.reason


def test_outlier_share_allows_that_many_elements_only():
    ref = torch.zeros(10)
    test = ref.clone()
    test[0] = 1.0
    assert compare_tensors("x", ref, test, Tolerance(1e-4, 1e-3, max_outlier_share=0.1))
    test[1] = 1.0
    assert not compare_tensors("x", ref, test, Tolerance(1e-4, 1e-3, max_outlier_share=0.1))


def test_cosine_similarity_of_orthogonal_and_zero_vectors():
    assert compare_tensors("x", torch.tensor([1.0, 0.0]), torch.tensor([0.0, 1.0]), TOL).cosine == pytest.approx(0.0)
    assert compare_tensors("x", torch.zeros(2), torch.zeros(2), TOL).cosine == 1.0
    assert compare_tensors("x", torch.zeros(2), torch.ones(2), TOL).cosine == 0.0


def test_tolerance_validation_and_overrides():
    with pytest.raises(VerificationError, match="atol"):
        Tolerance(atol=-1.0, rtol=0.0)
    with pytest.raises(VerificationError, match="max_outlier_share"):
        Tolerance(atol=0.0, rtol=0.0, max_outlier_share=2.0)
    with pytest.raises(VerificationError, match="fp8"):
        default_tolerances("fp8")
    tols: Tolerances = default_tolerances("fp32").with_overrides(dict([parse_tolerance_override("heatmap=1e-3,2e-2")]))
    assert tols.for_output("heatmap") == Tolerance(1e-3, 2e-2)
    assert tols.for_output("reg") == Tolerance(1e-4, 1e-3)
    assert default_tolerances("fp16").default == Tolerance(1e-2, 1e-2, max_outlier_share=1e-3, min_snr_db=50.0)
    for bad in ("heatmap", "heatmap=1e-3", "=1,2", "heatmap=a,b"):
        with pytest.raises(VerificationError, match="NAME=ATOL,RTOL"):
            parse_tolerance_override(bad)


def test_float_classes_loosen_from_fp32_to_fp16_to_bf16() -> None:
    """fp16 rounds to 11 significand bits and bf16 to 8: each class allows at least what the one before
    it allows, tensor by tensor and box by box (int8, judged against a fake-quantized reference, is
    apart)."""
    from centerpoint_deploy.verify.boxes import DEFAULT_BOX_TOLERANCES

    for strict, loose in (("fp32", "fp16"), ("fp16", "bf16")):
        a, b = DEFAULT_TOLERANCES[strict], DEFAULT_TOLERANCES[loose]
        assert b.atol >= a.atol and b.rtol >= a.rtol and b.max_outlier_share >= a.max_outlier_share
        assert (b.min_snr_db or 0.0) <= (a.min_snr_db or float("inf"))
        box_a, box_b = DEFAULT_BOX_TOLERANCES[strict].to_dict(), DEFAULT_BOX_TOLERANCES[loose].to_dict()
        assert all(box_b[name] >= value for name, value in box_a.items()), (strict, loose)
    assert DEFAULT_TOLERANCES["bf16"].atol == 8 * DEFAULT_TOLERANCES["fp16"].atol  # 2**(11 - 8)
