"""A synthetic LiDAR world written as T4 scenes: road, buildings, traffic, a spinning LiDAR.

``generate_dataset(out_dir, num_scenes, frames_per_scene, seed)`` is the entry point; the
modules are the sensor (:mod:`.lidar`), the world (:mod:`.world`), agent shapes (:mod:`.shapes`), ray casting
(:mod:`.raycast`), scene simulation (:mod:`.generate`) and the T4 writer (:mod:`.writer`).
"""

from centerpoint_deploy.data.synthetic.generate import SceneTiming, generate_dataset
from centerpoint_deploy.data.synthetic.lidar import LidarConfig
from centerpoint_deploy.data.synthetic.world import WorldConfig

__all__ = ["LidarConfig", "SceneTiming", "WorldConfig", "generate_dataset"]
