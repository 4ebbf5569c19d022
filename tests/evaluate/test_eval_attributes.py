import numpy as np
import torch

from centerpoint_deploy.evaluate.attributes import attributes_from_velocity
from centerpoint_deploy.evaluate.data_classes import SampleBoxes
from centerpoint_deploy.structures import Detections


def test_rule_by_class_and_speed() -> None:
    names = np.array(["car", "car", "bus", "bus", "bicycle", "bicycle", "pedestrian", "pedestrian", "barrier"])
    vel = np.array([[1.0, 0], [0.1, 0.1], [3, 0], [0, 0], [0, 0.5], [0, 0], [1, 1], [0.2, 0], [5, 0]])
    assert attributes_from_velocity(names, vel).tolist() == [
        "vehicle.moving", "vehicle.parked", "vehicle.moving", "vehicle.stopped",
        "cycle.with_rider", "cycle.without_rider", "pedestrian.moving", "pedestrian.standing", "",
    ]


def test_predictions_carry_attributes() -> None:
    boxes = torch.zeros(2, 9)
    boxes[:, 3:6] = 1.0
    boxes[0, 7] = 2.0  # moving truck; the second (index 1, car) is parked
    det = Detections(boxes, torch.tensor([0.9, 0.8]), torch.tensor([1, 0]))
    sample = SampleBoxes.from_detections(det, ("car", "truck"))
    assert sample.attributes.tolist() == ["vehicle.moving", "vehicle.parked"]
    empty = SampleBoxes.from_detections(Detections.empty(), ("car",))
    assert empty.attributes.shape == (0,)
