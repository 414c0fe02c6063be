"""Rendering one block of the synthetic sample from its :class:`~workbench.synthetic.scene.Scene`.

Every voxel is a function of its global coordinates only: the renderer works on the block plus a halo
(blur and neighbour comparisons) taken from the same global fields, so a volume rendered in blocks is
bit-identical to one rendered whole.

The cell partition is the expensive part. It is computed tile by tile, a tile being the part of the
block inside one grid cell; each tile compares only the neurites of the 3 x 3 surrounding grid cells.
Distances are packed with the candidate index into int32 keys (distance in 1/32 pixel in the high
bits, candidate in the low 4 bits), so the nearest and second nearest neurite come from plain
``minimum``/``maximum`` ufuncs: about 3x faster than masked updates in numpy.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from workbench.synthetic import noise
from workbench.synthetic.classes import CLEFT, MEMBRANE, MITOCHONDRION, VESICLE
from workbench.synthetic.scene import Scene

#: Distance quantum of the packed keys (1/Q pixel).
Q = 32
TRUNCATE = 3.0

# stream tags of the noise fields
_WARP_Y, _WARP_X, _THICK, _LOW, _TEX, _GRAIN, _SHOT, _CELL, _DRIFT_G, _DRIFT_O = range(10)


def _radius(sigma: float) -> int:
    return int(TRUNCATE * sigma + 0.5)


def halo_xy(scene: Scene) -> int:
    """In-plane halo (pixels) a block needs for seamless blur and neighbour tests."""
    psf = scene.config.psf_sigma_nm / scene.px
    return _radius(psf) + 2


def render_block(scene: Scene, region):
    """Render ``region`` = ``(slice(z0, z1), slice(y0, y1), slice(x0, x1))``: sections ``[z0, z1)``, rows
    ``[y0, y1)``, columns ``[x0, x1)`` (plain ``(start, stop)`` pairs work too).

    Returns:
        ``(raw uint8, instances uint32, semantic uint8)``, each of shape ``(z1-z0, y1-y0, x1-x0)``.
    """
    (z0, z1), (y0, y1), (x0, x1) = ((r.start, r.stop) if isinstance(r, slice) else tuple(r) for r in region)
    shape = (z1 - z0, y1 - y0, x1 - x0)
    raw = np.empty(shape, np.uint8)
    inst = np.empty(shape, np.uint32)
    sem = np.empty(shape, np.uint8)
    shifts = scene.shifts if len(scene.shifts) else None
    za = z0
    while za < z1:  # runs of sections that share a misalignment shift
        zb = za + 1
        sh = (0, 0) if shifts is None else tuple(shifts[za])
        while zb < z1 and (shifts is None or tuple(shifts[zb]) == sh):
            zb += 1
        r, i, s = _render_run(scene, za, zb, y0, y1, x0, x1, sh)
        raw[za - z0 : zb - z0], inst[za - z0 : zb - z0], sem[za - z0 : zb - z0] = r, i, s
        za = zb
    return raw, inst, sem


def _keys(scene: Scene, tag: int) -> np.uint32:
    return noise.seed_hash(scene.seed, 0xC0DE00 + tag)


def _partition(scene: Scene, zz, ys, xs, U, V):
    """Nearest and second-nearest neurite ids and the wall measure ``f`` (pixels) on the region.

    ``zz, ys, xs`` are the global coordinates of the region (1D), ``U, V`` the warped (y, x) coordinates
    (3D, float32). ``f`` is the difference of the two smallest weighted distances: about twice the
    distance to the nearest cell wall.
    """
    C = scene.cell
    nz, ny, nx = U.shape
    gy = np.floor(ys / C).astype(np.int64) - scene.gy0
    gx = np.floor(xs / C).astype(np.int64) - scene.gx0
    ty0, ty1 = gy[0] - 1, gy[-1] + 2
    tx0, tx1 = gx[0] - 1, gx[-1] + 2
    iy = np.arange(ty0, ty1)[:, None, None]
    ix = np.arange(tx0, tx1)[None, :, None]
    s = scene.active_segment(iy, ix, zz[None, None, :])
    cy, cx, w, ids = scene.neurite_at(iy, ix, s, zz[None, None, :])
    cyq = (cy * Q).astype(np.float32)
    cxq = (cx * Q).astype(np.float32)
    woff = ((w - C) * Q).astype(np.float32)  # d - w + C stays positive: keys are non-negative
    id1 = np.empty((nz, ny, nx), np.uint32)
    id2 = np.empty((nz, ny, nx), np.uint32)
    f = np.empty((nz, ny, nx), np.float32)
    g = np.empty((nz, ny, nx), np.float32)
    ybreaks = np.flatnonzero(np.diff(gy)) + 1
    xbreaks = np.flatnonzero(np.diff(gx)) + 1
    yedges = np.concatenate([[0], ybreaks, [ny]])
    xedges = np.concatenate([[0], xbreaks, [nx]])
    zi = np.arange(nz)[:, None, None]
    offsets = [(dy, dx) for dy in (-1, 0, 1) for dx in (-1, 0, 1)]
    kidx = np.arange(9, dtype=np.int32)[:, None, None, None]
    one = np.int32(1)
    for a, b in zip(yedges[:-1], yedges[1:]):
        cyi = gy[a] - ty0
        u = U[:, a:b, :] * np.float32(Q)
        for c, d in zip(xedges[:-1], xedges[1:]):
            cxi = gx[c] - tx0
            jy = np.array([cyi + dy for dy, _ in offsets])
            jx = np.array([cxi + dx for _, dx in offsets])
            # all nine candidates at once: (9, z, y, x)
            t = u[None, :, :, c:d] - cyq[jy, jx][:, :, None, None]
            np.multiply(t, t, out=t)
            t2 = (V[:, a:b, c:d] * np.float32(Q))[None] - cxq[jy, jx][:, :, None, None]
            np.multiply(t2, t2, out=t2)
            np.add(t, t2, out=t)
            del t2
            np.sqrt(t, out=t)
            np.subtract(t, woff[jy, jx][:, :, None, None], out=t)
            key = t.astype(np.int32)
            del t
            np.left_shift(key, 4, out=key)
            np.bitwise_or(key, kidx, out=key)
            # keys are unique, so the next smallest is the minimum of (key - previous - 1) seen as
            # unsigned (everything at or below the previous one wraps around to a huge value)
            d1 = key.min(axis=0)
            d2 = (key - (d1 + one)).view(np.uint32).min(axis=0).view(np.int32) + (d1 + one)
            d3 = (key - (d2 + one)).view(np.uint32).min(axis=0).view(np.int32) + (d2 + one)
            del key
            table = ids[jy, jx]  # (9, z)
            id1[:, a:b, c:d] = table[d1 & 15, zi]
            id2[:, a:b, c:d] = table[d2 & 15, zi]
            np.right_shift(d1, 4, out=d1)
            np.right_shift(d2, 4, out=d2)
            np.right_shift(d3, 4, out=d3)
            np.subtract(d2, d1, out=d2)
            np.subtract(d3, d1, out=d3)
            np.multiply(d2, np.float32(1.0 / Q), out=f[:, a:b, c:d], casting="unsafe")
            np.multiply(d3, np.float32(1.0 / Q), out=g[:, a:b, c:d], casting="unsafe")
    return id1, id2, f, g


def _up_nearest(c: np.ndarray, off: tuple[int, int], n: tuple[int, int]) -> np.ndarray:
    """Each coarse sample to its 2 x 2 block of pixels; keep ``n`` pixels from offset ``off`` (y, x)."""
    nz, cy, cx = c.shape
    full = np.empty((nz, cy, 2, cx, 2), c.dtype)
    full[...] = c[:, :, None, :, None]
    full = full.reshape(nz, 2 * cy, 2 * cx)
    return full[:, off[0] : off[0] + n[0], off[1] : off[1] + n[1]]


def _up_linear_axis(c: np.ndarray, axis: int) -> np.ndarray:
    """Linear 2x upsampling along ``axis`` for samples at 2k + 0.5: pixel 2k gets 1/4 of sample k-1
    and 3/4 of k, pixel 2k+1 3/4 of k and 1/4 of k+1. Output covers samples 1..n-2 (pixels 2..2n-3)."""
    c = np.moveaxis(c, axis, -1)
    lo, mid, hi = c[..., :-2], c[..., 1:-1], c[..., 2:]
    out = np.empty((*mid.shape, 2), np.float32)
    a, b = np.float32(0.25), np.float32(0.75)
    np.multiply(lo, a, out=out[..., 0])
    out[..., 0] += mid * b
    np.multiply(mid, b, out=out[..., 1])
    out[..., 1] += hi * a
    return np.moveaxis(out.reshape(*mid.shape[:-1], 2 * mid.shape[-1]), -1, axis)


def _up_linear(c: np.ndarray, off: tuple[int, int], n: tuple[int, int]) -> np.ndarray:
    """Bilinear 2x upsampling in y and x of a coarse (z, y, x) array; ``off`` as in :func:`_up_nearest`."""
    t = _up_linear_axis(c, 1)
    t = _up_linear_axis(np.ascontiguousarray(t), 2)
    # the output starts at pixel 2 of the coarse grid's first block
    return np.ascontiguousarray(t[:, off[0] - 2 : off[0] - 2 + n[0], off[1] - 2 : off[1] - 2 + n[1]])


def _warp(scene: Scene, ys, xs, zf):
    """The coarse grid (twice as coarse in y and x, samples at 2k + 0.5, global alignment) and the warped
    (y, x) coordinates ``U, V`` on it: ``(kys, kxs, ycf, xcf, U, V)``."""
    C = scene.cell
    kys = np.arange(ys[0] // 2 - 1, ys[-1] // 2 + 2, dtype=np.int64)
    kxs = np.arange(xs[0] // 2 - 1, xs[-1] // 2 + 2, dtype=np.int64)
    ycf, xcf = 2.0 * kys + 0.5, 2.0 * kxs + 0.5
    amp = np.float32(0.14 * C)
    wsp = (12.0, 0.7 * C, 0.7 * C)
    U = noise.value_noise(_keys(scene, _WARP_Y), zf, ycf, xcf, wsp)
    U += noise.value_noise(_keys(scene, _WARP_Y + 100), zf, ycf, xcf, (6.0, 0.3 * C, 0.3 * C)) * np.float32(0.35)
    U *= amp
    U += ycf.astype(np.float32)[None, :, None]
    V = noise.value_noise(_keys(scene, _WARP_X), zf, ycf, xcf, wsp)
    V += noise.value_noise(_keys(scene, _WARP_X + 100), zf, ycf, xcf, (6.0, 0.3 * C, 0.3 * C)) * np.float32(0.35)
    V *= amp
    V += xcf.astype(np.float32)[None, None, :]
    return kys, kxs, ycf, xcf, U, V


def _coarse_fields(scene: Scene, zf, zc, kys, kxs, ycf, xcf, cid1, cf, cg):
    """Wall measure (in membrane thicknesses), shading, per-cell tone and speckle density on the coarse
    grid: all smooth or constant per cell. ``(cf, shade, tone, speckle)``."""
    inner = slice(1, -1)
    mem = np.float32(scene.membrane_px)
    # walls (f) and three-cell junctions (g) widen into dark triangles, rounding the cell corners
    cf = np.minimum(cf[inner], (cg[inner] - np.float32(1.2) * mem) * np.float32(0.6) + mem)
    del cg
    # slow variation (membrane thickness, shading), mottled texture and per-cell tone, all smooth or
    # constant per cell, so they are computed on the coarse grid too
    low = noise.value_noise(_keys(scene, _LOW), zf[inner], ycf, xcf, (6.0, 40.0, 40.0))
    thick = low * np.float32(0.2) + np.float32(1.0)
    thick *= mem
    cf /= thick  # wall measure in membrane thicknesses: < 1 is membrane
    del thick
    shade = noise.normal_grid(_keys(scene, _GRAIN), zc, kys, kxs)
    shade += low
    shade *= np.float32(12.0)
    del low
    tone = noise.hash32(cid1[inner] ^ _keys(scene, _CELL))
    tone >>= np.uint32(8)
    tone = tone.astype(np.float32)
    tone *= np.float32(1.0 / 16777216.0)
    speckle = (tone * np.float32(24.0)).astype(np.uint32)
    speckle += np.uint32(4)
    return cf, shade, tone, speckle


def _walls(id1, fn):
    """One-sided neighbour differences: every pair of touching voxels with different cells gets a wall.
    ``(a1, smear, boundary)``: the inner sections' ids, z-only walls, all walls."""
    zdiff = id1[1:-1] != id1[2:]
    a1 = id1[1:-1]
    xydiff = np.zeros(a1.shape, bool)
    xydiff[:, :, :-1] = a1[:, :, :-1] != a1[:, :, 1:]
    xydiff[:, :-1, :] |= a1[:, :-1, :] != a1[:, 1:, :]
    wall = fn < np.float32(1.0)
    smear = zdiff & ~wall & ~xydiff
    boundary = wall | xydiff | zdiff
    return a1, smear, boundary


def _cytoplasm(scene: Scene, tone, shade, speckle, fn, smear, zc, ys, xs, off, n):
    """The image before the microscope: per-cell tone, slow shading, fine grain with dark granules
    (the PSF blurs them) and membranes."""
    img = _up_nearest(tone, off, n)
    img *= np.float32(34.0)
    img += np.float32(138.0)
    img += _up_linear(shade, off, n)
    h = noise.hash_grid(_keys(scene, _TEX), zc, ys, xs)
    img += noise.normal_from_hash(h) * np.float32(30.0)
    # 0.4-2.7% of pixels, denser in some cells
    img -= ((h >> np.uint32(22)) < _up_nearest(speckle, off, n)) * np.float32(60.0)
    del h

    # membranes darken with a soft profile (wider and greyer where a wall is oblique to the section)
    prof = np.multiply(fn, fn)
    np.negative(prof, out=prof)
    np.exp(prof, out=prof)
    prof *= np.float32(140.0)
    img -= prof
    del prof
    img -= smear * np.float32(55.0)
    return img


def _microscope(scene: Scene, img, za: int, zb: int, y0: int, y1: int, x0: int, x1: int):
    """Blur, crop the halo, contrast drift, shot and read noise: the uint8 raw block."""
    cfg = scene.config
    H = halo_xy(scene)
    psf = cfg.psf_sigma_nm / scene.px
    img = ndimage.gaussian_filter(img, (0, psf, psf), truncate=TRUNCATE)
    crop = (slice(None), slice(H, -H), slice(H, -H))
    img = np.ascontiguousarray(img[crop])
    zo = np.arange(za, zb)
    yo = np.arange(y0, y1)
    xo = np.arange(x0, x1)
    if scene.artifacts:
        gain = 1.0 + 0.2 * noise.value_noise_1d(_keys(scene, _DRIFT_G), zo.astype(float), 25.0)
        off = 18.0 * noise.value_noise_1d(_keys(scene, _DRIFT_O), zo.astype(float), 25.0)
        img -= np.float32(128.0)
        img *= gain.astype(np.float32)[:, None, None]
        img += (128.0 + off).astype(np.float32)[:, None, None]
    sd = np.maximum(img, np.float32(0.0))
    sd *= np.float32(cfg.noise_gain)
    sd += np.float32(cfg.read_noise**2)
    np.sqrt(sd, out=sd)
    sd *= noise.normal_grid(_keys(scene, _SHOT), zo, yo, xo)
    img += sd
    del sd
    np.rint(img, out=img)
    np.clip(img, 0, 255, out=img)
    raw = img.astype(np.uint8)
    if scene.artifacts and len(scene.missing):
        raw[np.isin(zo, scene.missing)] = 0
    return raw


def _render_run(scene: Scene, za: int, zb: int, y0: int, y1: int, x0: int, x1: int, shift):
    H = halo_xy(scene)
    sy, sx = int(shift[0]), int(shift[1])
    zz = np.arange(za - 1, zb + 1, dtype=np.int64)  # one section of context on each side
    ys = np.arange(y0 - H, y1 + H, dtype=np.int64) + sy
    xs = np.arange(x0 - H, x1 + H, dtype=np.int64) + sx
    zf = zz.astype(np.float64)

    # The partition is computed on a grid twice as coarse in y and x (samples at 2k + 0.5, global
    # alignment), then the wall measure is interpolated bilinearly and the ids taken from the 2 x 2 block's
    # sample. Ids only change inside the membrane band, so this costs no visible detail and saves 4x.
    kys, kxs, ycf, xcf, U, V = _warp(scene, ys, xs, zf)
    cid1, cid2, cf, cg = _partition(scene, zz, ycf, xcf, U, V)
    del U, V
    off = (int(ys[0] - 2 * kys[0]), int(xs[0] - 2 * kxs[0]))
    n = (len(ys), len(xs))
    inner = slice(1, -1)
    zc = zz[inner]
    cf, shade, tone, speckle = _coarse_fields(scene, zf, zc, kys, kxs, ycf, xcf, cid1, cf, cg)
    del cg

    id1 = _up_nearest(cid1, off, n)
    id2 = _up_nearest(cid2[inner], off, n)
    del cid1, cid2
    fn = _up_linear(cf, off, n)
    del cf
    a1, smear, boundary = _walls(id1, fn)
    img = _cytoplasm(scene, tone, shade, speckle, fn, smear, zc, ys, xs, off, n)
    del shade, tone, speckle, smear

    sem = np.zeros(a1.shape, np.uint8)
    zs_ = zc  # global section index of each plane of the arrays
    _draw_mitochondria(scene, img, sem, a1, fn, zs_, ys, xs)
    _draw_synapses(scene, img, sem, a1, id2, fn, boundary, zs_, ys, xs)
    sem[boundary & (sem != CLEFT)] = MEMBRANE
    instances = np.where((sem == MEMBRANE) | (sem == CLEFT), np.uint32(0), a1)

    crop = (slice(None), slice(H, -H), slice(H, -H))
    return _microscope(scene, img, za, zb, y0, y1, x0, x1), instances[crop], sem[crop]


def _overlap(lo, hi, a, b):
    return max(lo, a), min(hi, b)


def _draw_mitochondria(scene: Scene, img, sem, a1, fn, zs_, ys, xs) -> None:
    m = scene.mito
    if not len(m.get("zc", ())):
        return
    C = scene.cell
    gy_lo = (ys[0] // C) - scene.gy0 - 2  # a mitochondrion stays within about one cell of its home
    gy_hi = (ys[-1] // C) - scene.gy0 + 2
    gx_lo = (xs[0] // C) - scene.gx0 - 2
    gx_hi = (xs[-1] // C) - scene.gx0 + 2
    z_lo, z_hi = zs_[0], zs_[-1]
    sel = np.flatnonzero(
        (m["iy"] >= gy_lo) & (m["iy"] <= gy_hi) & (m["ix"] >= gx_lo) & (m["ix"] <= gx_hi)
        & (m["zc"] + m["hz"] >= z_lo) & (m["zc"] - m["hz"] <= z_hi)
    )
    for j in sel:
        za, zb = _overlap(0, len(zs_), int(np.ceil(m["zc"][j] - m["hz"][j])) - zs_[0],
                          int(np.floor(m["zc"][j] + m["hz"][j])) - zs_[0] + 1)
        if za >= zb:
            continue
        z = zs_[za:zb].astype(np.float64)
        cy, cx, _, host = scene.neurite_at(m["iy"][j], m["ix"][j], m["s"][j], z)
        cy = cy + m["oy"][j]
        cx = cx + m["ox"][j]
        u = np.abs(z - m["zc"][j]) / m["hz"][j]
        taper = np.sqrt(np.clip(1.0 - u**6, 0.0, 1.0))
        ra = m["r"][j] * m["e"][j] * taper  # long semi-axis
        rb = np.maximum(m["r"][j] * taper, 1e-3)
        rmax = float(ra.max()) + 2
        ya = max(0, int(np.floor(cy.min() - rmax)) - ys[0])
        yb = min(len(ys), int(np.ceil(cy.max() + rmax)) - ys[0] + 1)
        xa = max(0, int(np.floor(cx.min() - rmax)) - xs[0])
        xb = min(len(xs), int(np.ceil(cx.max() + rmax)) - xs[0] + 1)
        if ya >= yb or xa >= xb:
            continue
        dy = (ys[ya:yb][None, :, None] - cy[:, None, None]).astype(np.float32)
        dx = (xs[xa:xb][None, None, :] - cx[:, None, None]).astype(np.float32)
        ct, st = np.float32(np.cos(m["theta"][j])), np.float32(np.sin(m["theta"][j]))
        along = dy * ct + dx * st
        across = dx * ct - dy * st
        ra3 = np.maximum(ra, 1e-3).astype(np.float32)[:, None, None]
        rb3 = rb.astype(np.float32)[:, None, None]
        rho = np.sqrt((along / ra3) ** 2 + (across / rb3) ** 2)
        reg = (slice(za, zb), slice(ya, yb), slice(xa, xb))
        inside = (rho < 1) & (a1[reg] == np.uint32(np.ravel(host)[0])) & (fn[reg] >= np.float32(1.6))
        if not inside.any():
            continue
        rim = rho > 1 - np.float32(2.2) / rb3
        cristae = np.cos(np.float32(2 * np.pi / m["period"][j]) * along + np.float32(m["phase"][j]))
        cristae = np.clip((cristae - np.float32(0.2)) / np.float32(0.8), 0, 1) * (rho < 1 - np.float32(3.0) / rb3)
        val = img[reg] * np.float32(0.6) - np.float32(35.0) * rim + np.float32(60.0) * cristae
        img[reg] = np.where(inside, val, img[reg])
        sem[reg][inside] = MITOCHONDRION


def _draw_synapses(scene: Scene, img, sem, a1, id2, fn, boundary, zs_, ys, xs) -> None:
    s = scene.syn
    if not len(s.get("z", ())):
        return
    ylo, yhi, xlo, xhi = ys[0], ys[-1], xs[0], xs[-1]
    # the cleft and the vesicle cloud behind it
    reach = np.maximum(2 * s["cloud"] + 2 * scene.membrane_px + 8, s["r"] + 10)
    sel = np.flatnonzero(
        (s["z"] + s["hz"] + 2 >= zs_[0]) & (s["z"] - s["hz"] - 2 <= zs_[-1])
        & (s["y"] + reach >= ylo) & (s["y"] - reach <= yhi) & (s["x"] + reach >= xlo) & (s["x"] - reach <= xhi)
    )
    if not sel.size:
        return
    tsyn, tpsd = np.float32(2.0), np.float32(4.5)  # in membrane thicknesses
    zr = scene.z_ratio
    for j in sel:
        za, zb = _overlap(0, len(zs_), int(np.ceil(s["z"][j] - s["hz"][j])) - zs_[0],
                          int(np.floor(s["z"][j] + s["hz"][j])) - zs_[0] + 1)
        R = float(s["r"][j])
        pre, post = np.uint32(s["pre"][j]), np.uint32(s["post"][j])
        if za < zb:
            z = zs_[za:zb].astype(np.float64)
            rz = R * np.sqrt(np.clip(1 - ((z - s["z"][j]) / s["hz"][j]) ** 2, 0, 1))
            ya = max(0, int(np.floor(s["y"][j] - R - 8)) - ylo)
            yb = min(len(ys), int(np.ceil(s["y"][j] + R + 8)) - ylo + 1)
            xa = max(0, int(np.floor(s["x"][j] - R - 8)) - xlo)
            xb = min(len(xs), int(np.ceil(s["x"][j] + R + 8)) - xlo + 1)
            if ya < yb and xa < xb:
                reg = (slice(za, zb), slice(ya, yb), slice(xa, xb))
                dy = (ys[ya:yb] - s["y"][j]).astype(np.float32)[None, :, None]
                dx = (xs[xa:xb] - s["x"][j]).astype(np.float32)[None, None, :]
                near = (dy * dy + dx * dx) < (rz.astype(np.float32) ** 2)[:, None, None]
                b1, b2, ff = a1[reg], id2[reg], fn[reg]
                pair = ((b1 == pre) & (b2 == post)) | ((b1 == post) & (b2 == pre))
                cleft = near & pair & (ff < tsyn)
                psd = near & (b1 == post) & (b2 == pre) & (ff < tpsd) & ~cleft
                img[reg] -= cleft * np.float32(55.0) + psd * (np.float32(75.0) * (1 - ff / tpsd))
                sem[reg][cleft] = CLEFT
        # vesicles of this synapse: small dark-rimmed circles in the presynaptic neurite. A section
        # shows everything within its thickness, so a vesicle appears in every section it overlaps.
        vz, vy, vx, vr = scene.vesicles(j)
        if not vz.size:
            continue
        ext = float(vr.max()) + 1
        ya = max(0, int(np.floor(vy.min() - ext)) - ylo)
        yb = min(len(ys), int(np.ceil(vy.max() + ext)) - ylo + 1)
        xa = max(0, int(np.floor(vx.min() - ext)) - xlo)
        xb = min(len(xs), int(np.ceil(vx.max() + ext)) - xlo + 1)
        if ya >= yb or xa >= xb:
            continue
        gy = ys[ya:yb].astype(np.float32)[None, :, None]
        gx = xs[xa:xb].astype(np.float32)[None, None, :]
        for zi in range(max(0, int(np.floor(vz.min() - 1)) - zs_[0]), min(len(zs_), int(np.ceil(vz.max() + 1)) - zs_[0] + 1)):
            dzp = np.maximum(0.0, np.abs(zs_[zi] - vz) - 0.5) * zr
            rr = np.sqrt(np.maximum(vr * vr - dzp * dzp, 0.0))
            vis = rr >= 0.9
            if not vis.any():
                continue
            cy_ = vy[vis].astype(np.float32)[:, None, None]
            cx_ = vx[vis].astype(np.float32)[:, None, None]
            dist = np.sqrt((gy - cy_) ** 2 + (gx - cx_) ** 2) - rr[vis].astype(np.float32)[:, None, None]
            e = dist.min(axis=0)  # signed distance to the nearest vesicle's edge
            reg = (zi, slice(ya, yb), slice(xa, xb))
            inside = (e < 0) & (a1[reg] == pre) & ~boundary[reg] & (fn[reg] >= np.float32(1.25))
            inside &= sem[reg] != MITOCHONDRION
            ring = inside & (e > np.float32(-1.4))
            img[reg] += ring * np.float32(-85.0) + (inside & ~ring) * np.float32(30.0)
            sem[reg][inside] = VESICLE
