"""Reading TSPLIB 95 ``.tsp`` files with node coordinates, and their distance functions.

Supported ``EDGE_WEIGHT_TYPE``: ``EUC_2D``, ``CEIL_2D``, ``ATT`` and ``GEO`` (the coordinate types a
planar model can take). Distances follow the TSPLIB 95 definitions exactly, so tour lengths can be
compared with the published optima: ``nint`` rounding for EUC_2D, ceiling for CEIL_2D, the
pseudo-Euclidean ATT distance, and great-circle distances on the idealised sphere for GEO (coordinates
in DDD.MM degrees-and-minutes).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

SUPPORTED = ("EUC_2D", "CEIL_2D", "ATT", "GEO")


@dataclass(frozen=True)
class TSPInstance:
    name: str
    edge_weight_type: str
    coords: np.ndarray  # [n, 2] as in the file (x, y) or (latitude, longitude) for GEO
    comment: str = ""

    @property
    def dimension(self) -> int:
        return len(self.coords)

    def distances(self) -> np.ndarray:
        """``[n, n]`` integer-valued distances in the instance's own metric."""
        return distance_matrix(self.coords, self.edge_weight_type)

    def planar(self) -> np.ndarray:
        """Coordinates to feed a planar model: (x, y), or (longitude, latitude) in degrees for GEO."""
        if self.edge_weight_type == "GEO":
            return np.stack([_geo_radians(self.coords[:, 1]), _geo_radians(self.coords[:, 0])], 1) * 180 / math.pi
        return self.coords


def parse_tsp(text: str) -> TSPInstance:
    """Parse the text of a ``.tsp`` file; ``ValueError`` naming the problem for anything unsupported."""
    header: dict[str, str] = {}
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        line = lines[i].strip()
        i += 1
        if not line:
            continue
        if line.startswith("NODE_COORD_SECTION"):
            break
        if line.startswith("EOF"):
            break
        if ":" in line:
            key, value = line.split(":", 1)
            header[key.strip().upper()] = value.strip()
        elif line.endswith("_SECTION"):
            raise ValueError(f"{line} is not supported: only NODE_COORD_SECTION instances have coordinates")
    kind = header.get("TYPE", "TSP").split()[0].upper()
    if kind != "TSP":
        raise ValueError(f"TYPE must be TSP (symmetric), got {kind}")
    weight_type = header.get("EDGE_WEIGHT_TYPE", "").upper()
    if weight_type not in SUPPORTED:
        raise ValueError(
            f"EDGE_WEIGHT_TYPE must be one of {', '.join(SUPPORTED)} (a planar model needs coordinates), "
            f"got {weight_type or 'none'}"
        )
    try:
        dimension = int(header["DIMENSION"])
    except (KeyError, ValueError):
        raise ValueError("DIMENSION must be given as an integer") from None
    coords = np.full((dimension, 2), np.nan)
    seen = np.zeros(dimension, dtype=bool)
    for line in lines[i:]:
        line = line.strip()
        if not line:
            continue
        if line.startswith("EOF") or line.endswith("_SECTION"):
            break
        parts = line.split()
        if len(parts) < 3:
            raise ValueError(f"NODE_COORD_SECTION line {line!r} must read 'index x y'")
        try:
            index, x, y = int(parts[0]), float(parts[1]), float(parts[2])
        except ValueError:
            raise ValueError(f"NODE_COORD_SECTION line {line!r} must read 'index x y' with numbers") from None
        if not 1 <= index <= dimension:
            raise ValueError(f"node index {index} is outside 1..{dimension}")
        coords[index - 1] = (x, y)
        seen[index - 1] = True
    if not seen.all():
        missing = int(np.flatnonzero(~seen)[0]) + 1
        raise ValueError(f"NODE_COORD_SECTION lacks node {missing} of DIMENSION {dimension}")
    if not np.isfinite(coords).all():
        raise ValueError("coordinates must be finite numbers")
    return TSPInstance(header.get("NAME", "unnamed"), weight_type, coords, header.get("COMMENT", ""))


def read_tsp(path: str | Path) -> TSPInstance:
    return parse_tsp(Path(path).read_text())


def read_solutions(path: str | Path) -> dict[str, float]:
    """The ``name : length`` lines of TSPLIB's optimal/best-known tour lengths."""
    best = {}
    for line in Path(path).read_text().splitlines():
        if ":" in line:
            name, value = line.split(":", 1)
            try:
                best[name.strip()] = float(value.split()[0])
            except (ValueError, IndexError):
                continue
    return best


def _nint(x: np.ndarray) -> np.ndarray:
    return np.floor(x + 0.5)


def _geo_radians(x: np.ndarray) -> np.ndarray:
    """TSPLIB's DDD.MM → radians: degrees are the integer part, the fraction is minutes / 100."""
    pi = 3.141592  # TSPLIB's value, needed to reproduce its integer distances
    degrees = np.trunc(x)
    minutes = x - degrees
    return pi * (degrees + 5.0 * minutes / 3.0) / 180.0


def distance_matrix(coords: np.ndarray, weight_type: str) -> np.ndarray:
    """TSPLIB 95 distances for ``coords [n, 2]``."""
    if weight_type == "GEO":
        lat, lon = _geo_radians(coords[:, 0]), _geo_radians(coords[:, 1])
        q1 = np.cos(lon[:, None] - lon[None, :])
        q2 = np.cos(lat[:, None] - lat[None, :])
        q3 = np.cos(lat[:, None] + lat[None, :])
        arc = np.arccos(np.clip(0.5 * ((1.0 + q1) * q2 - (1.0 - q1) * q3), -1.0, 1.0))
        dist = np.trunc(6378.388 * arc + 1.0)
        np.fill_diagonal(dist, 0.0)
        return dist
    diff = coords[:, None, :] - coords[None, :, :]
    squared = (diff**2).sum(-1)
    if weight_type == "EUC_2D":
        return _nint(np.sqrt(squared))
    if weight_type == "CEIL_2D":
        return np.ceil(np.sqrt(squared))
    if weight_type == "ATT":
        r = np.sqrt(squared / 10.0)
        t = _nint(r)
        return np.where(t < r, t + 1, t)
    raise ValueError(f"EDGE_WEIGHT_TYPE {weight_type} is not supported")
