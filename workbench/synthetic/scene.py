"""The geometry of a synthetic sample: neurites, mitochondria, synapses and vesicles as small tables.

A :class:`Scene` is drawn once from ``(shape, seed, artifacts, config)`` with a seeded generator. It is
tiny compared with the volume (a few numbers per neurite segment), so every block renderer reads the
same tables and only looks at the objects near its block.

Units: y, x in pixels of the in-plane voxel size; z in sections.

Neurites run roughly along z (as in serial-section EM of neuropil). Each cell of a 2D grid holds one
neurite at a time; a neurite segment ends by shrinking (its additive weight drops) and the next one
grows in its place. The cross-sections form an additively weighted (Apollonius) Voronoi diagram of the
neurite centres, whose walls become membranes.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True)
class SampleConfig:
    """Physical parameters of the synthetic sample (lengths in nanometres).

    Attributes:
        voxel_size: (z, y, x) nm; sections are thick (anisotropic) as in serial-section EM.
        cell_spacing_nm: mean spacing of neurite centres in a section.
        segment_length_nm: median length of a neurite segment along z before it ends.
        membrane_nm: membrane thickness.
        mito_probability: chance that a neurite segment holds a mitochondrion.
        synapses_per_um: synapses per micrometre of neurite length.
        psf_sigma_nm: in-plane blur (point spread function) sigma.
        noise_gain: shot-noise gain (variance per grey value); read noise is ``read_noise`` grey values.
    """

    voxel_size: tuple[float, float, float] = (40.0, 8.0, 8.0)
    cell_spacing_nm: float = 240.0
    segment_length_nm: float = 5000.0
    membrane_nm: float = 17.0
    mito_probability: float = 0.4
    synapses_per_um: float = 0.12
    psf_sigma_nm: float = 5.0
    noise_gain: float = 1.2
    read_noise: float = 7.0


#: Weight penalty (in cell sizes) that makes an ending neurite vanish, and its ramp length (sections).
TAPER_PENALTY = 2.0
TAPER_SECTIONS = 6.0
#: How far (pixels) beyond a block the renderer looks (blur and neighbour halos).
XY_MARGIN = 16


@dataclass
class Scene:
    """All objects of one synthetic volume (see module docstring for units)."""

    shape: tuple[int, int, int]
    seed: int
    artifacts: bool
    config: SampleConfig
    cell: int  # grid cell size in pixels
    gy0: int  # grid index of the first cell row / column
    gx0: int
    ncy: int
    ncx: int
    nseg: int  # segments per grid cell
    seg: dict = field(default_factory=dict)  # arrays (ncy, ncx, nseg)
    mito: dict = field(default_factory=dict)  # flat arrays
    syn: dict = field(default_factory=dict)  # flat arrays
    missing: np.ndarray = field(default_factory=lambda: np.zeros(0, int))
    shifts: np.ndarray = field(default_factory=lambda: np.zeros((0, 2), int))

    # ------------------------------------------------------------------ neurites
    @property
    def px(self) -> float:
        return float(self.config.voxel_size[1])

    @property
    def z_ratio(self) -> float:
        """Section thickness in pixels."""
        return float(self.config.voxel_size[0]) / self.px

    @property
    def membrane_px(self) -> float:
        return self.config.membrane_nm / self.px

    def neurite_at(self, iy, ix, s, z):
        """Centre (y, x), weight and id of segment ``s`` of grid cell ``(iy, ix)`` at sections ``z``.

        All arguments broadcast together; returns float64 arrays ``cy, cx, w`` and int64 ``ids``.
        """
        g = self.seg
        idx = (iy, ix, s)
        z = np.asarray(z, dtype=np.float64)
        zs, ze = g["zs"][idx], g["ze"][idx]
        zm = 0.5 * (zs + ze)
        cy = g["y0"][idx] + g["ty"][idx] * (z - zm) + g["ay"][idx] * np.sin(g["fy"][idx] * z + g["py"][idx])
        cx = g["x0"][idx] + g["tx"][idx] * (z - zm) + g["ax"][idx] * np.sin(g["fx"][idx] * z + g["pxs"][idx])
        dist = np.minimum(z - zs, ze - z)
        ramp = np.clip(1.0 - dist / TAPER_SECTIONS, 0.0, 1.0) ** 2
        w = g["w0"][idx] - TAPER_PENALTY * self.cell * ramp
        ids = 1 + np.asarray(s) + self.nseg * (np.asarray(iy) * self.ncx + np.asarray(ix))
        return cy, cx, w, ids

    def active_segment(self, iy, ix, z):
        """Index of the segment of cell ``(iy, ix)`` alive at section ``z`` (arrays broadcast)."""
        iy, ix, z = np.broadcast_arrays(np.asarray(iy), np.asarray(ix), np.asarray(z, dtype=np.float64))
        lin = (iy * self.ncx + ix).ravel()
        span = self.seg["span"]
        keys = self.seg["flat_starts"]
        pos = np.searchsorted(keys, lin * span + z.ravel(), side="right") - 1
        return (pos - lin * self.nseg).reshape(iy.shape)

    def vesicles(self, j: int):
        """Vesicles of synapse ``j``: arrays ``z, y, x`` (centres) and ``r`` (radius, pixels)."""
        s = self.syn
        rng = np.random.default_rng([self.seed & 0xFFFFFFFF, 0x7E51C1, int(j)])
        n = int(s["nves"][j])
        cloud = float(s["cloud"][j])
        back = cloud + self.membrane_px
        ey, ex = float(s["ey"][j]), float(s["ex"][j])
        rho = np.sqrt(rng.random(n)) * cloud
        phi = rng.uniform(0, 2 * np.pi, n)
        vy = s["y"][j] - ey * back + rho * np.sin(phi)
        vx = s["x"][j] - ex * back + rho * np.cos(phi)
        vz = s["z"][j] + rng.uniform(-1, 1, n) * s["hz"][j] * 0.9
        vr = rng.uniform(1.9, 2.7, n)
        depth = (vy - s["y"][j]) * ey + (vx - s["x"][j]) * ex
        ok = depth < -(self.membrane_px + vr + 1.0)
        return vz[ok], vy[ok], vx[ok], vr[ok]

    def cell_range(self, lo: float, hi: float, origin: int, n: int) -> tuple[int, int]:
        """Grid indices (into the tables) of cells covering pixels ``[lo, hi)``, clipped to the table."""
        a = int(np.floor(lo / self.cell)) - origin
        b = int(np.floor((hi - 1) / self.cell)) - origin + 1
        return max(a, 0), min(b, n)


def _uniform(rng, lo, hi, size):
    return rng.uniform(lo, hi, size=size)


def build_scene(shape, seed: int = 0, artifacts: bool = False, config: SampleConfig | None = None) -> Scene:
    """Draw all objects of a ``shape`` = (Z, Y, X) volume from ``seed``."""
    cfg = config or SampleConfig()
    Z, Y, X = (int(s) for s in shape)
    rng = np.random.default_rng([int(seed) & 0xFFFFFFFF, 0x5A3D1E])
    px = float(cfg.voxel_size[1])
    C = max(8, int(round(cfg.cell_spacing_nm / px)))
    margin = XY_MARGIN + 2 * C + 8
    gy0 = int(np.floor(-margin / C))
    gx0 = gy0
    ncy = int(np.ceil((Y + margin) / C)) - gy0
    ncx = int(np.ceil((X + margin) / C)) - gx0
    zmargin = TAPER_SECTIONS + 4
    lmed = max(8.0, cfg.segment_length_nm / float(cfg.voxel_size[0]))
    lmin = max(2.5 * TAPER_SECTIONS, 0.3 * lmed)
    nseg = int(np.ceil((Z + 2 * zmargin) / lmin)) + 2
    shp = (ncy, ncx, nseg)

    lengths = np.clip(rng.lognormal(np.log(lmed), 0.6, size=shp), lmin, 6 * lmed)
    first = -zmargin - rng.uniform(0, 1, size=(ncy, ncx, 1)) * lengths[:, :, :1]
    zs = first + np.concatenate([np.zeros((ncy, ncx, 1)), np.cumsum(lengths, axis=2)[:, :, :-1]], axis=2)
    ze = zs + lengths
    gy = (np.arange(ncy) + gy0)[:, None, None]
    gx = (np.arange(ncx) + gx0)[None, :, None]
    drift = 0.12 * C
    seg = {
        "zs": zs,
        "ze": ze,
        "y0": (gy + _uniform(rng, 0.15, 0.85, shp)) * C,
        "x0": (gx + _uniform(rng, 0.15, 0.85, shp)) * C,
        "ty": _uniform(rng, -1, 1, shp) * drift / (0.5 * lengths),
        "tx": _uniform(rng, -1, 1, shp) * drift / (0.5 * lengths),
        "ay": _uniform(rng, 0, 0.07, shp) * C,
        "ax": _uniform(rng, 0, 0.07, shp) * C,
        "fy": 2 * np.pi / _uniform(rng, 30, 120, shp),
        "fx": 2 * np.pi / _uniform(rng, 30, 120, shp),
        "py": _uniform(rng, 0, 2 * np.pi, shp),
        "pxs": _uniform(rng, 0, 2 * np.pi, shp),
    }
    big = rng.random(shp) < 0.1
    seg["w0"] = np.where(big, _uniform(rng, 0.4, 0.6, shp), _uniform(rng, -0.25, 0.3, shp)) * C
    span = float(Z + 4 * zmargin + 6 * lmed * nseg + 10)
    lin = np.arange(ncy * ncx)[:, None]
    seg["span"] = span
    seg["flat_starts"] = (lin * span + zs.reshape(ncy * ncx, nseg)).ravel()
    # make the first segment of every cell start at -inf so searchsorted never falls before it
    seg["flat_starts"].reshape(ncy * ncx, nseg)[:, 0] = lin[:, 0] * span - 0.25 * span

    scene = Scene(
        shape=(Z, Y, X), seed=int(seed), artifacts=bool(artifacts), config=cfg,
        cell=C, gy0=gy0, gx0=gx0, ncy=ncy, ncx=ncx, nseg=nseg, seg=seg,
    )
    _add_mitochondria(scene, rng)
    _add_synapses(scene, rng)
    if artifacts:
        _add_artifacts(scene, rng)
    return scene


def _segment_index_grid(scene: Scene):
    iy, ix, s = np.meshgrid(np.arange(scene.ncy), np.arange(scene.ncx), np.arange(scene.nseg), indexing="ij")
    return iy.ravel(), ix.ravel(), s.ravel()


def _add_mitochondria(scene: Scene, rng: np.random.Generator) -> None:
    cfg, C = scene.config, scene.cell
    iy, ix, s = _segment_index_grid(scene)
    n = iy.size
    w0 = scene.seg["w0"][iy, ix, s]
    zs, ze = scene.seg["zs"][iy, ix, s], scene.seg["ze"][iy, ix, s]
    rc = 0.5 * C + w0  # rough radius of the neurite's cross-section
    prob = cfg.mito_probability * np.clip((rc / (0.5 * C)) ** 2, 0.2, 2.0)
    keep = rng.random(n) < prob
    r = np.clip(_uniform(rng, 0.3, 0.5, n) * rc, 6.0, 30.0)
    e = _uniform(rng, 1.0, 1.7, n)
    r = np.minimum(r, (rc - 4.0) / e)
    hz = rng.uniform(8, 35, n)
    hz = np.minimum(hz, 0.5 * (ze - zs) - TAPER_SECTIONS - 1)
    keep &= (r >= 4.0) & (hz >= 3.0)
    zc = zs + TAPER_SECTIONS + hz + rng.random(n) * np.maximum(0.0, ze - zs - 2 * (TAPER_SECTIONS + hz))
    off = rng.random(n) * np.maximum(0.0, rc - r * e - 4.0) * 0.6
    ang = rng.uniform(0, 2 * np.pi, n)
    theta = rng.uniform(0, np.pi, n)
    period = rng.uniform(4.5, 6.5, n)
    phase = rng.uniform(0, 2 * np.pi, n)
    k = np.flatnonzero(keep)
    scene.mito = {
        "iy": iy[k], "ix": ix[k], "s": s[k], "zc": zc[k], "hz": hz[k], "r": r[k], "e": e[k],
        "oy": (off * np.sin(ang))[k], "ox": (off * np.cos(ang))[k], "theta": theta[k],
        "period": period[k], "phase": phase[k],
    }


_NEIGHBOURS = np.array([(-1, -1), (-1, 0), (-1, 1), (0, -1), (0, 1), (1, -1), (1, 0), (1, 1)])


def _add_synapses(scene: Scene, rng: np.random.Generator) -> None:
    cfg = scene.config
    iy, ix, s = _segment_index_grid(scene)
    zs, ze = scene.seg["zs"][iy, ix, s], scene.seg["ze"][iy, ix, s]
    length_um = (ze - zs) * cfg.voxel_size[0] / 1000.0
    counts = rng.poisson(cfg.synapses_per_um * length_um)
    rep = np.repeat(np.arange(iy.size), counts)
    iy, ix, s, zs, ze = iy[rep], ix[rep], s[rep], zs[rep], ze[rep]
    n = rep.size
    guard = TAPER_SECTIONS + 6
    z = zs + guard + rng.random(n) * np.maximum(0.0, ze - zs - 2 * guard)
    nb = _NEIGHBOURS[rng.integers(0, 8, n)]
    jy, jx = iy + nb[:, 0], ix + nb[:, 1]
    radius = rng.uniform(12, 26, n)  # cleft half-length, pixels
    nves = rng.integers(50, 140, n)
    keep = (ze - zs > 2 * guard) & (jy >= 0) & (jy < scene.ncy) & (jx >= 0) & (jx < scene.ncx)
    jy, jx = np.clip(jy, 0, scene.ncy - 1), np.clip(jx, 0, scene.ncx - 1)
    t = scene.active_segment(jy, jx, z)
    cy1, cx1, w1, id1 = scene.neurite_at(iy, ix, s, z)
    cy2, cx2, w2, id2 = scene.neurite_at(jy, jx, t, z)
    d = np.hypot(cy2 - cy1, cx2 - cx1)
    a = 0.5 * (d + w1 - w2)  # where the weighted-Voronoi wall crosses the segment between the centres
    keep &= (w1 > scene.seg["w0"][iy, ix, s] - 1e-6) & (w2 > -0.2 * scene.cell) & (a > 6) & (a < d - 6)
    k = np.flatnonzero(keep)
    ey, ex = ((cy2 - cy1) / np.maximum(d, 1e-9))[k], ((cx2 - cx1) / np.maximum(d, 1e-9))[k]
    sy, sx = cy1[k] + a[k] * ey, cx1[k] + a[k] * ex
    radius, nves, z = radius[k], nves[k], z[k]
    hz = np.maximum(1.5, radius / scene.z_ratio * 1.2)
    scene.syn = {
        "z": z, "y": sy, "x": sx, "ey": ey, "ex": ex, "r": radius, "hz": hz,
        "pre": id1[k], "post": id2[k], "home_y": iy[k], "home_x": ix[k],
    }
    # vesicles fill the half of the presynaptic profile that faces the cleft; they are drawn per
    # synapse when rendered (see Scene.vesicles), so the tables stay small for huge volumes
    scene.syn["nves"] = nves
    scene.syn["cloud"] = np.minimum(0.6 * a[k], 1.2 * radius)


def _add_artifacts(scene: Scene, rng: np.random.Generator) -> None:
    Z = scene.shape[0]
    if Z >= 3:
        nmiss = max(1, int(round(Z / 60)))
        scene.missing = np.sort(rng.choice(np.arange(1, Z - 1), size=min(nmiss, Z - 2), replace=False))
    shifts = np.zeros((Z, 2), dtype=np.int64)
    if Z >= 2:
        nshift = max(1, int(round(Z / 40)))
        zsh = rng.choice(np.arange(1, Z), size=min(nshift, Z - 1), replace=False)
        mag = rng.integers(2, 7, size=(zsh.size, 2)) * rng.choice([-1, 1], size=(zsh.size, 2))
        shifts[zsh] = mag
    scene.shifts = shifts
