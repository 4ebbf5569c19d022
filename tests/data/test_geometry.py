import numpy as np

from centerpoint_deploy.data.geometry import (
    count_points_in_boxes, invert_transform, make_transform, matrix_yaw, points_in_boxes, quaternion_to_matrix,
    transform_points, yaw_to_quaternion,
)


def test_quaternion_of_quarter_turn_about_z():
    q = [np.cos(np.pi / 4), 0.0, 0.0, np.sin(np.pi / 4)]
    np.testing.assert_allclose(quaternion_to_matrix(q), [[0, -1, 0], [1, 0, 0], [0, 0, 1]], atol=1e-12)
    np.testing.assert_allclose(yaw_to_quaternion(np.pi / 2), q)
    assert np.isclose(matrix_yaw(quaternion_to_matrix(q)), np.pi / 2)


def test_transform_and_inverse():
    t = make_transform(yaw_to_quaternion(np.pi / 2), [1.0, 2.0, 3.0])
    np.testing.assert_allclose(transform_points(t, [[1.0, 0.0, 0.0]]), [[1.0, 3.0, 3.0]], atol=1e-12)
    np.testing.assert_allclose(invert_transform(t) @ t, np.eye(4), atol=1e-12)


def test_points_in_oriented_box_hand_cases():
    # box 4 x 2 x 2 centred at (10, 0, 1), turned 90 deg: spans x 9..11, y -2..2, z 0..2
    box = np.array([[10.0, 0.0, 1.0, 4.0, 2.0, 2.0, np.pi / 2]])
    pts = np.array([[10.0, 1.9, 1.0], [10.9, 0.0, 1.0], [11.1, 0.0, 1.0], [10.0, 2.1, 1.0], [10.0, 0.0, 2.1]])
    np.testing.assert_array_equal(points_in_boxes(pts, box)[:, 0], [True, True, False, False, False])
    np.testing.assert_array_equal(count_points_in_boxes(pts, box, margin=0.15, chunk=2), [5])
