"""A spinning multi-beam LiDAR: ray layout, mounting, and returns -> points.

Each scan fires every beam at every azimuth column at once: the motion of the ego and of
the objects during the 0.1 s sweep is ignored (no rolling-shutter skew).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from centerpoint_deploy.data.geometry import make_transform, yaw_to_quaternion
from centerpoint_deploy.errors import DatasetError


@dataclass(frozen=True)
class LidarConfig:
    """Sensor model.

    Attributes:
        beams: vertical channels.
        columns: azimuth steps per revolution (1800 = 0.2 deg).
        min_elevation_deg, max_elevation_deg: lowest / highest beam (deg, + is up).
        horizon_packing: >= 1; beam elevations are ``lo * s**p`` below and ``hi * s**p`` above
            the horizon for evenly spaced ``s`` in [0, 1], so larger values pack beams near 0 deg.
        max_range, min_range: returns outside [min_range, max_range] (m) are dropped.
        rate_hz: revolutions per second; sweeps are ``1 / rate_hz`` apart.
        mount_translation: sensor origin in the ego frame (m); the ego frame sits on the ground.
        mount_yaw_deg: sensor heading in the ego frame (deg, about +z).
        range_noise_std: Gaussian range noise (m) of a strong return.
        beam_elevation_std_deg: per-beam elevation calibration error (deg, Gaussian): each scene's
            sensor fires its beams this far off their nominal elevations.
        beam_range_bias_std: per-beam range offset (m, Gaussian), constant over a scene.
        dark_range_noise_std: extra range noise std (m) of the weakest returns (see ``darkness``).
        dropout: probability that a strong return is lost.
        dark_dropout: extra loss probability of the weakest returns.
        dark_threshold: returns weaker than this (reflectivity x incidence factor, 0..255 scale)
            are "dark": ``darkness = clip(1 - strength / dark_threshold, 0, 1)`` scales the extras.
        ghost_rate: share of rays that return a spurious point (dust, multipath) at a random
            range before their first hit (anywhere up to ``max_range`` for rays that hit nothing).
        intensity_noise: relative (multiplicative) Gaussian intensity noise.
        channel: T4 sensor channel name.
    """

    beams: int = 64
    columns: int = 1800
    min_elevation_deg: float = -25.0
    max_elevation_deg: float = 15.0
    horizon_packing: float = 1.6
    max_range: float = 120.0
    min_range: float = 1.0
    rate_hz: float = 10.0
    mount_translation: tuple[float, float, float] = (0.9, 0.0, 1.9)
    mount_yaw_deg: float = 0.0
    range_noise_std: float = 0.03
    beam_elevation_std_deg: float = 0.05
    beam_range_bias_std: float = 0.02
    dark_range_noise_std: float = 0.04
    dropout: float = 0.07
    dark_dropout: float = 0.2
    dark_threshold: float = 25.0
    ghost_rate: float = 0.002
    intensity_noise: float = 0.1
    channel: str = "LIDAR_CONCAT"

    def __post_init__(self) -> None:
        checks = (
            (self.beams >= 2, ("beams",), "must be >= 2"),
            (self.columns >= 8, ("columns",), "must be >= 8"),
            (-90 < self.min_elevation_deg < 0 < self.max_elevation_deg < 90,
             ("min_elevation_deg", "max_elevation_deg"), "need -90 < min < 0 < max < 90"),
            (self.horizon_packing >= 1, ("horizon_packing",), "must be >= 1"),
            (0 <= self.min_range < self.max_range, ("min_range", "max_range"), "need 0 <= min_range < max_range"),
            (self.rate_hz > 0, ("rate_hz",), "must be > 0"),
            (len(self.mount_translation) == 3 and self.mount_translation[2] > 0, ("mount_translation",),
             "3 values, z (height above ground) > 0"),
            (self.range_noise_std >= 0 and self.dark_range_noise_std >= 0,
             ("range_noise_std", "dark_range_noise_std"), "must be >= 0"),
            (self.beam_elevation_std_deg >= 0 and self.beam_range_bias_std >= 0,
             ("beam_elevation_std_deg", "beam_range_bias_std"), "must be >= 0"),
            (0 <= self.dropout and 0 <= self.dark_dropout and self.dropout + self.dark_dropout < 1,
             ("dropout", "dark_dropout"), "need both >= 0 and dropout + dark_dropout < 1"),
            (self.dark_threshold > 0, ("dark_threshold",), "must be > 0"),
            (0 <= self.ghost_rate < 1, ("ghost_rate",), "must lie in [0, 1)"),
            (self.intensity_noise >= 0, ("intensity_noise",), "must be >= 0"),
        )
        for ok, names, allowed in checks:
            if not ok:
                got = ", ".join(f"{n}={getattr(self, n)!r}" for n in names)
                raise DatasetError(f"LidarConfig {got} is invalid: {allowed}")

    @property
    def mount_height(self) -> float:
        """Sensor height above the ground (m)."""
        return float(self.mount_translation[2])

    @property
    def lidar2ego(self) -> np.ndarray:
        """4x4 sensor -> ego calibration."""
        return make_transform(yaw_to_quaternion(np.deg2rad(self.mount_yaw_deg)), self.mount_translation)

    def elevations(self) -> np.ndarray:
        """``[beams]`` beam elevations (rad), ascending, denser near the horizon."""
        below = round(self.beams * -self.min_elevation_deg / (self.max_elevation_deg - self.min_elevation_deg))
        below = min(max(below, 1), self.beams - 1)
        above = self.beams - below
        s_below = np.linspace(1.0, 1.0 / below, below)  # excludes 0: the horizon beam belongs above
        s_above = np.linspace(0.0, 1.0, above)
        degrees = np.concatenate([self.min_elevation_deg * s_below ** self.horizon_packing,
                                  self.max_elevation_deg * s_above ** self.horizon_packing])
        return np.deg2rad(degrees)

    def beam_errors(self, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """One unit's calibration errors: ``(elevations [beams] rad ascending, range_bias [beams] m)``,
        the nominal elevations moved by ``N(0, beam_elevation_std_deg)`` (then sorted: beams are
        just labels) and a range offset ``N(0, beam_range_bias_std)`` per beam."""
        offsets = np.deg2rad(rng.normal(0.0, self.beam_elevation_std_deg, self.beams))
        return np.sort(self.elevations() + offsets), rng.normal(0.0, self.beam_range_bias_std, self.beams)

    def azimuths(self) -> np.ndarray:
        """``[columns]`` azimuths (rad) in [0, 2 pi), column 0 along +x, counter-clockwise."""
        return np.arange(self.columns) * (2 * np.pi / self.columns)

    def ray_directions(self, elevations: np.ndarray | None = None) -> np.ndarray:
        """``[beams, columns, 3]`` unit ray directions in the sensor frame, for the nominal
        elevations or the given ``elevations [beams]`` (rad)."""
        el = (self.elevations() if elevations is None else elevations)[:, None]
        az = self.azimuths()[None, :]
        return np.stack(np.broadcast_arrays(np.cos(el) * np.cos(az), np.cos(el) * np.sin(az), np.sin(el)), axis=-1)


def returns_to_points(config: LidarConfig, directions: np.ndarray, ranges: np.ndarray, reflectivity: np.ndarray,
                      cos_incidence: np.ndarray, rng: np.random.Generator,
                      range_bias: np.ndarray | float = 0.0) -> np.ndarray:
    """Turn first-hit ranges into noisy points with intensities.

    A share ``ghost_rate`` of the rays is replaced by a spurious return (uniform range between
    ``min_range`` and the first hit, reflectivity 10-60 seen head-on). Each return's strength is
    ``reflectivity * (0.35 + 0.65 cos)``; its darkness ``clip(1 - strength / dark_threshold, 0, 1)``
    raises its loss probability to ``dropout + dark_dropout * darkness`` and its range noise std
    to ``range_noise_std + dark_range_noise_std * darkness``.

    Args:
        directions: ``[R, 3]`` unit ray directions, sensor frame.
        ranges: ``[R]`` first-hit distance (m), inf for no hit.
        reflectivity: ``[R]`` surface reflectivity of the hit (0..255 scale).
        cos_incidence: ``[R]`` |cos| of the angle between ray and surface normal.
        rng: randomness for ghosts, dropout and noise.
        range_bias: ``[R]`` (or scalar) systematic range offset (m) of each ray's beam.

    Returns:
        ``points [N, 5]`` float32: x, y, z, intensity 0..255, 0 (the kept returns in ray order). Intensity is
        ``strength * (1 - 0.4 range / max_range) * (1 + N(0, intensity_noise)) + N(0, 1.5)``, rounded.
    """
    count = ranges.shape[0]
    ghost = np.flatnonzero(rng.random(count) < config.ghost_rate)
    ranges, reflectivity, cos_incidence = ranges.copy(), reflectivity.copy(), cos_incidence.copy()
    ceiling = np.minimum(ranges[ghost], config.max_range)
    ranges[ghost] = config.min_range + rng.random(ghost.shape[0]) * (ceiling - config.min_range)
    reflectivity[ghost] = rng.uniform(10.0, 60.0, ghost.shape[0])
    cos_incidence[ghost] = 1.0

    strength = reflectivity * (0.35 + 0.65 * cos_incidence)
    darkness = np.clip(1.0 - strength / config.dark_threshold, 0.0, 1.0)
    kept = np.isfinite(ranges) & (ranges >= config.min_range) & (ranges <= config.max_range)
    kept &= rng.random(count) >= config.dropout + config.dark_dropout * darkness
    noise_std = config.range_noise_std + config.dark_range_noise_std * darkness[kept]
    noisy = (ranges + range_bias)[kept] + rng.standard_normal(noise_std.shape[0]) * noise_std
    falloff = 1.0 - 0.4 * ranges[kept] / config.max_range
    intensity = strength[kept] * falloff * (1.0 + rng.normal(0.0, config.intensity_noise, falloff.shape[0]))
    intensity = np.clip(np.round(intensity + rng.normal(0.0, 1.5, intensity.shape[0])), 0, 255)
    points = np.zeros((noisy.shape[0], 5), dtype=np.float32)
    points[:, :3] = directions[kept] * noisy[:, None]
    points[:, 3] = intensity
    return points
