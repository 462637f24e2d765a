"""Unsupervised extraction of uniform textures from natural images (MatSeg paper §3.2.1).

The image is cut into a grid of square cells (default 40 px). Every cell is described by 13 property channels:
R, G, B, their mean, and the Sobel gradients ``dx``, ``dy`` and ``|grad|`` of each colour channel. Two cells are
*similar* when, for every channel, ``1 - JS`` is at least ``sim_threshold`` (default 0.5), where ``JS`` is the
Jensen–Shannon distance (natural log) between the two cells' 10-bin density histograms taken over the pair's
combined value range. A square of cells is *uniform* when every pair of its cells is similar. From every cell the
largest uniform square starting there is grown; squares of at least ``min_cells`` x ``min_cells`` cells that are
not inside an earlier one are kept (scan order: columns, then rows), textureless ones are rejected (a quadrant
with standard deviation < 3.5, or < 6 and mean > 245), and with ``one_per_region`` only the largest square of
each connected uniform region (overlapping squares) is returned. The score of a texture is the lowest pair
similarity inside its square. Images whose shorter side exceeds ``max_image_size`` (2200) are analysed
shrunk and cropped at full resolution.

This follows the authors' ``Extract_Textures.py`` + ``Remove_Uniform_Regions.py`` (same histograms, distance,
thresholds and defaults: cell 40 px as their README advises for Open Images, 7 cells, threshold 0.5, shorter
side 2200 px, 100 regions). Pair similarities equal theirs to 1e-12; with ``reference_geometry=True,
one_per_region=False, reject_textureless=False`` the regions (position, size, score digits) are exactly theirs,
and with ``min_cells=6`` the published textures of the sample photos come out with the same names and crops
(up to JPEG re-encoding; the published set was made with 6-cell squares). Deliberate differences of the default mode:

* the crop is the square that was verified: the reference's row/column loops skip the corner cell's own row and
  column, so it verifies ``{corner} ∪ (x, x + r] x (y, y + r]`` and crops ``[x, x + r)``, one cell short; its
  acceptance rule also differs by one when the grid edge stops the growth (:func:`reference_regions`);
* ``one_per_region`` (on by default, as the paper describes "the largest square of a region") keeps one square
  per group of overlapping squares instead of every square not inside an earlier one (near-duplicates);
* the textureless filter (their separate ``Remove_Uniform_Regions.py``) runs inside the extractor;
* the work is vectorised: a pair's histograms are read from per-cell cumulative counts, many pairs are scored in
  one numpy call with early rejection channel by channel, and squares grow level by level (a square of side
  ``s + 1`` is uniform iff its four sub-squares of side ``s`` are and its pairs at Chebyshev distance ``s`` are
  similar), so each pair of cells is scored at most once.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np

from ..errors import MatSegInputError
from ..utils.licenses import UNKNOWN_LICENSE
from ..utils.logging import get_logger

logger = get_logger(__name__)

PathLike = Union[str, os.PathLike]

DEFAULT_CELL_SIZE = 40
DEFAULT_MIN_CELLS = 7
DEFAULT_SIM_THRESHOLD = 0.5
DEFAULT_MAX_IMAGE_SIZE = 2200
DEFAULT_MAX_TEXTURES = 100
NUM_BINS = 10

_Q_SHIFT = 1 << 21  # > max |grad|^2 of a 3x3 Sobel on uint8 (2 * 1020^2)
_CHUNK = 200_000  # pairs scored per numpy call


# ------------------------------------------------------------------------------------------------------------
# data model
# ------------------------------------------------------------------------------------------------------------
@dataclass
class Texture:
    """One extracted texture and its provenance (what the authors encode in the file name).

    Attributes:
        image: uint8 [S, S, 3] RGB crop at the source photo's full resolution.
        source_id: the source photo's id (file stem).
        index: the texture's number within its photo.
        score: lowest pair-of-cells similarity (1 - Jensen–Shannon distance) inside the square, in (0, 1].
        cell_size: grid cell size in pixels of the analysed image.
        box: ``(x, y, size)`` of the square in the source photo's pixels.
        license: the source photo's licence ("unknown" when not given).
    """

    image: np.ndarray
    source_id: str
    index: int
    score: float
    cell_size: int
    box: Tuple[int, int, int]
    license: str = UNKNOWN_LICENSE

    @property
    def file_name(self) -> str:
        """The authors' naming: ``<source>_<index>_Score_<4 digits>_TileSize<cell>_Texture.jpg``."""
        return texture_file_name(self.source_id, self.index, self.score, self.cell_size)


@dataclass
class ExtractionResult:
    """What :func:`extract_textures` found in one image.

    Attributes:
        source_id: the photo's id.
        textures: the kept textures (possibly empty).
        reason: why nothing was kept (``None`` when ``textures`` is not empty).
        num_candidates: uniform squares found before the textureless filter and the region grouping.
        num_textureless: candidates rejected as textureless.
        grid: ``(rows, columns)`` of the cell grid.
    """

    source_id: str
    textures: List[Texture] = field(default_factory=list)
    reason: Optional[str] = None
    num_candidates: int = 0
    num_textureless: int = 0
    grid: Tuple[int, int] = (0, 0)


def texture_file_name(source_id: str, index: int, score: float, cell_size: int) -> str:
    """``<source>_<index>_Score_<4 digits>_TileSize<cell>_Texture.jpg`` (score digits truncated, like the authors)."""
    digits = f"{min(9999, int(float(score) * 10000 + 1e-9)):04d}"
    return f"{source_id}_{index}_Score_{digits}_TileSize{int(cell_size)}_Texture.jpg"


_NAME_RE = re.compile(r"^(?P<prefix>.+?)_Score_(?P<score>\d+)_?TileSize(?P<cell>\d+)(?:_Texture)?$")


def parse_texture_file_name(name: str) -> Dict[str, Any]:
    """Provenance from a texture file name in the authors' naming.

    ``"0a5d2c29a13d083e_14_Score_5942_TileSize40_Texture.jpg"`` -> ``{"source_id": "0a5d2c29a13d083e",
    "index": 14, "score": 0.5942, "cell_size": 40}``. Names the authors wrote without the ``_`` before the index
    keep the whole prefix as ``source_id`` with ``index`` -1; names in another form give only ``source_id`` (the
    stem), with ``score`` NaN and ``cell_size``/``index`` -1.
    """
    stem = Path(name).stem
    match = _NAME_RE.match(stem)
    if not match:
        return {"source_id": stem, "index": -1, "score": float("nan"), "cell_size": -1}
    prefix = match.group("prefix")
    head, _, tail = prefix.rpartition("_")
    if head and tail.isdigit():
        source_id, index = head, int(tail)
    else:
        source_id, index = prefix, -1
    score = float("0." + match.group("score")) if len(match.group("score")) <= 4 else int(match.group("score")) / 1e4
    return {"source_id": source_id, "index": index, "score": score, "cell_size": int(match.group("cell"))}


# ------------------------------------------------------------------------------------------------------------
# per-cell statistics and vectorised pair similarity
# ------------------------------------------------------------------------------------------------------------
class CellStatistics:
    """Per-cell value distributions of the 13 property channels of an RGB image, for fast pair histograms.

    Every channel holds integers ("codes") mapped to the reference's float64 values by a monotone function
    (identity for R, G, B and the Sobel gradients; ``k / 3`` for the mean (``k = R + G + B``); ``sqrt(k)`` for the
    gradient magnitude (``k = dx^2 + dy^2``)), so ``#{v < edge}`` in a cell is an exact look-up: per-cell cumulative
    counts for the 10 small-range channels, per-cell sorted codes + ``searchsorted`` for the 3 magnitude channels.

    Args:
        image: uint8 [H, W, 3] RGB.
        cell_size: cell side in pixels; the grid is ``floor(H / c) x floor(W / c)`` cells from the top-left.
    """

    NUM_CHANNELS = 13

    def __init__(self, image: np.ndarray, cell_size: int):
        image = np.asarray(image)
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise MatSegInputError(f"expected a uint8 [H, W, 3] image, got {image.dtype} {image.shape}")
        if cell_size < 2:
            raise MatSegInputError(f"cell_size must be at least 2 pixels, got {cell_size}")
        self.cell_size = c = int(cell_size)
        self.rows, self.cols = image.shape[0] // c, image.shape[1] // c
        self.num_cells = self.rows * self.cols
        self.n = c * c
        self._channels: List[Optional[_Channel]] = [None] * self.NUM_CHANNELS
        if self.num_cells == 0:
            return
        self._image = image
        self._cell_img = self._cells(image)  # uint8 [num_cells, 3, c*c], one transposed copy
        self._sobel: Optional[Tuple[np.ndarray, np.ndarray]] = None

    def _cells(self, a: np.ndarray) -> np.ndarray:
        """[H, W, 3] -> [num_cells, 3, c*c] (row-major cells, each channel's pixels contiguous), same dtype."""
        c = self.cell_size
        a = a[: self.rows * c, : self.cols * c]
        return np.ascontiguousarray(a.reshape(self.rows, c, self.cols, c, 3).transpose(0, 2, 4, 1, 3)) \
            .reshape(self.num_cells, 3, self.n)

    def channel(self, k: int) -> "_Channel":
        """Channel ``k`` (0-2 R, G, B; 3 mean; 4-6 dx; 7-9 dy; 10-12 |grad|), built on first use: pairs that an
        earlier channel already tells apart never need the later ones."""
        ch = self._channels[k]
        if ch is not None:
            return ch
        import cv2

        if k >= 4 and self._sobel is None:
            # exact integers, the same values as the reference's CV_64F Sobel
            self._sobel = (self._cells(cv2.Sobel(self._image, cv2.CV_16S, 1, 0)),
                           self._cells(cv2.Sobel(self._image, cv2.CV_16S, 0, 1)))
        if k < 3:
            ch = _TableChannel(self._cell_img[:, k], third=False)
        elif k == 3:
            ch = _TableChannel(self._cell_img.sum(1, dtype=np.int16), third=True)
        elif k < 10:
            ch = _TableChannel(self._sobel[(k - 4) // 3][:, (k - 4) % 3], third=False)
        else:
            ch = _SortedChannel(self._sobel[0][:, k - 10], self._sobel[1][:, k - 10])
        self._channels[k] = ch
        return ch

    def pair_similarity(self, i: np.ndarray, j: np.ndarray, threshold: Optional[float] = None) -> np.ndarray:
        """Similarity of cell pairs: min over channels of ``1 - JS distance`` of their 10-bin histograms.

        Args:
            i, j: int [P] cell indices (row-major: ``row * cols + col``).
            threshold: when given, channels stop being evaluated for a pair once it falls below ``threshold``
                (its value is then some channel's similarity, < threshold, not necessarily the minimum).

        Returns:
            float64 [P].
        """
        i = np.asarray(i, dtype=np.int64)
        j = np.asarray(j, dtype=np.int64)
        if i.size > _CHUNK:  # bound the temporaries (~1 KB per pair)
            return np.concatenate([self.pair_similarity(i[k:k + _CHUNK], j[k:k + _CHUNK], threshold)
                                   for k in range(0, i.size, _CHUNK)])
        sims = np.full(i.shape, np.inf)
        live = np.arange(i.size)
        for k in range(self.NUM_CHANNELS if self.num_cells else 0):
            if live.size == 0:
                break
            s = _channel_similarity(self.channel(k), i[live], j[live], self.n)
            sims[live] = np.minimum(sims[live], s)
            if threshold is not None:
                live = live[sims[live] >= threshold]
        return sims


class _Channel:
    lo: np.ndarray  # float64 [C] per-cell min value
    hi: np.ndarray  # float64 [C] per-cell max value

    def codes_below(self, e: np.ndarray) -> np.ndarray:  # largest code k with value(k) < e
        raise NotImplementedError

    def count_le(self, cell: np.ndarray, k: np.ndarray) -> np.ndarray:  # #{codes <= k} in each cell
        raise NotImplementedError


class _TableChannel(_Channel):
    """Integer codes with a small range per cell: value = code (R, G, B, Sobel dx/dy) or code / 3 (the mean)."""

    def __init__(self, codes: np.ndarray, third: bool):
        self.third = third
        kmin = codes.min(axis=1).astype(np.int64)
        kmax = codes.max(axis=1).astype(np.int64)
        width = kmax - kmin + 1
        self.kmin, self.width = kmin, width
        self.offset = np.concatenate([[0], np.cumsum(width)[:-1]]).astype(np.int64)
        total = int(width.sum())
        counts = np.empty(total, np.int64)
        step = 1024
        for g0 in range(0, codes.shape[0], step):  # chunked: small temporaries
            g1 = min(codes.shape[0], g0 + step)
            base = int(self.offset[g0])
            end = int(self.offset[g1]) if g1 < codes.shape[0] else total
            idx = codes[g0:g1] + (self.offset[g0:g1] - kmin[g0:g1] - base)[:, None]
            counts[base:end] = np.bincount(idx.ravel(), minlength=end - base)
        self.cum = np.concatenate([[0], np.cumsum(counts)]).astype(np.int32)  # cum[off + t + 1] = #{code <= kmin+t}
        scale = 3.0 if third else 1.0
        self.lo, self.hi = kmin / scale, kmax / scale

    def codes_below(self, e: np.ndarray) -> np.ndarray:
        if not self.third:
            return np.ceil(e).astype(np.int64) - 1  # integer values: v < e  <=>  v <= ceil(e) - 1
        k = np.floor(e * 3.0).astype(np.int64) + 1  # the exact answer is within +-1 of floor(3e)
        for _ in range(3):
            k = np.where(k / 3.0 < e, k, k - 1)
        return k

    def count_le(self, cell: np.ndarray, k: np.ndarray) -> np.ndarray:
        t = np.clip(k - self.kmin[cell], -1, self.width[cell] - 1)
        off = self.offset[cell]
        return self.cum[off + t + 1] - self.cum[off]


class _SortedChannel(_Channel):
    """Gradient magnitude: value = sqrt(code), code = dx^2 + dy^2 < 2^21. Per-cell sorted codes, kept as int32
    keys ``local_cell * 2^21 + code`` in groups of 1023 cells (sorted within a group), counted with
    ``searchsorted``."""

    GROUP = (1 << 31) // _Q_SHIFT - 1

    def __init__(self, dx: np.ndarray, dy: np.ndarray):
        num, self.n = dx.shape
        self.keys = np.empty(num * self.n, np.int32)
        self.lo = np.empty(num)
        self.hi = np.empty(num)
        for g0 in range(0, num, self.GROUP):  # chunked: small temporaries
            g1 = min(num, g0 + self.GROUP)
            a = dx[g0:g1].astype(np.int32)
            b = dy[g0:g1].astype(np.int32)
            a *= a
            b *= b
            a += b
            a.sort(axis=1)
            self.lo[g0:g1] = np.sqrt(a[:, 0].astype(np.float64))
            self.hi[g0:g1] = np.sqrt(a[:, -1].astype(np.float64))
            a += (np.arange(g1 - g0, dtype=np.int32) * np.int32(_Q_SHIFT))[:, None]
            self.keys[g0 * self.n:g1 * self.n] = a.ravel()

    def codes_below(self, e: np.ndarray) -> np.ndarray:
        e = np.maximum(e, 0.0)
        k = np.floor(e * e).astype(np.int64) + 1
        for _ in range(3):
            k = np.where(np.sqrt(np.maximum(k, 0).astype(np.float64)) < e, k, k - 1)
        return k

    def count_le(self, cell: np.ndarray, k: np.ndarray) -> np.ndarray:
        k = np.clip(k, -1, _Q_SHIFT - 1)
        group, local = np.divmod(cell, self.GROUP)
        query = (local * _Q_SHIFT + k).astype(np.int32)
        out = np.empty(query.shape, np.int64)
        for g in np.unique(group):
            sel = group == g if self.keys.size > self.GROUP * self.n else slice(None)
            part = self.keys[g * self.GROUP * self.n:(g + 1) * self.GROUP * self.n]
            out[sel] = np.searchsorted(part, query[sel], side="right") - local[sel] * self.n
        return out


def _channel_similarity(ch: _Channel, i: np.ndarray, j: np.ndarray, n: int) -> np.ndarray:
    """``1 - scipy.spatial.distance.jensenshannon`` of ``np.histogram(.., bins=10, range=(lo, hi), density=True)``
    of two cells, for many pairs at once (float64 [P])."""
    lo = np.minimum(ch.lo[i], ch.lo[j])
    hi = np.maximum(ch.hi[i], ch.hi[j])
    same = lo == hi
    lo = np.where(same, lo - 0.5, lo)
    hi = np.where(same, hi + 0.5, hi)
    step = (hi - lo) / float(NUM_BINS)  # np.linspace(lo, hi, 11): k * step + lo, last edge = hi
    ks = np.arange(1, NUM_BINS, dtype=np.float64)
    inner = ks[None, :] * step[:, None] + lo[:, None]  # [P, 9]
    edges = np.concatenate([lo[:, None], inner, hi[:, None]], axis=1)
    widths = np.diff(edges, axis=1)
    kb = ch.codes_below(inner)  # [P, 9]
    hists = []
    for cell in (i, j):
        below = ch.count_le(np.broadcast_to(cell[:, None], kb.shape), kb)  # #{v < edge_k}, k = 1..9
        cum = np.concatenate([np.zeros((cell.size, 1), np.int64), below, np.full((cell.size, 1), n)], axis=1)
        counts = np.diff(cum, axis=1).astype(np.float64)
        dens = counts / widths / float(n)  # numpy's density=True
        hists.append(dens / dens.sum(axis=1, keepdims=True))  # jensenshannon's normalisation
    p, q = hists
    m = (p + q) / 2.0
    with np.errstate(divide="ignore", invalid="ignore"):
        left = np.where(p > 0, p * np.log(p / m), 0.0)
        right = np.where(q > 0, q * np.log(q / m), 0.0)
    js = left.sum(axis=1) + right.sum(axis=1)
    return 1.0 - np.sqrt(np.maximum(js / 2.0, 0.0))


# ------------------------------------------------------------------------------------------------------------
# uniform squares
# ------------------------------------------------------------------------------------------------------------
def find_uniform_squares(stats: CellStatistics, sim_threshold: float = DEFAULT_SIM_THRESHOLD,
                         max_side: Optional[int] = None) -> Tuple[np.ndarray, np.ndarray]:
    """For every cell, the largest uniform square of cells having it as top-left corner.

    A square is uniform when every pair of its cells has :meth:`CellStatistics.pair_similarity` >=
    ``sim_threshold`` (the authors' criterion: all pairs, not only neighbours, so a region cannot drift).

    Returns:
        side: int32 [rows, cols], the side in cells (>= 1);
        score: float64 [rows, cols], the lowest pair similarity inside that square (``inf`` for side 1).
    """
    rows, cols = stats.rows, stats.cols
    side = np.ones((rows, cols), np.int32)
    score = np.full((rows, cols), np.inf)
    if rows == 0 or cols == 0:
        return side, score
    ok = np.ones((rows, cols), bool)
    msim = np.full((rows, cols), np.inf)
    limit = min(rows, cols) if max_side is None else min(rows, cols, int(max_side))
    for s in range(1, limit):
        h, w = rows - s, cols - s
        cand = ok[:h, :w] & ok[:h, 1:w + 1] & ok[1:h + 1, :w] & ok[1:h + 1, 1:w + 1]
        ys, xs = np.nonzero(cand)
        if ys.size == 0:
            break
        sub = np.minimum(np.minimum(msim[ys, xs], msim[ys, xs + 1]), np.minimum(msim[ys + 1, xs], msim[ys + 1, xs + 1]))
        # pairs at Chebyshev distance s inside the (s+1)-square: first/last column, first/last row
        t = np.arange(s + 1)
        ta, tb = np.meshgrid(t, t, indexing="ij")
        ta, tb = ta.ravel(), tb.ravel()
        off_a = np.concatenate([ta * cols, ta])
        off_b = np.concatenate([s + tb * cols, s * cols + tb])
        base = (ys * cols + xs).astype(np.int64)
        a = base[:, None] + off_a[None, :]
        b = base[:, None] + off_b[None, :]
        lo, hi = np.minimum(a, b), np.maximum(a, b)
        keys = lo * stats.num_cells + hi
        uniq, inv = np.unique(keys.ravel(), return_inverse=True)
        sims_u = stats.pair_similarity(uniq // stats.num_cells, uniq % stats.num_cells, threshold=sim_threshold)
        sims = sims_u[inv].reshape(keys.shape)
        good = (sims >= sim_threshold).all(axis=1)
        new_ok = np.zeros_like(ok)
        new_msim = np.full_like(msim, np.inf)
        gy, gx = ys[good], xs[good]
        new_ok[gy, gx] = True
        new_msim[gy, gx] = np.minimum(sub[good], sims[good].min(axis=1))
        side[gy, gx] = s + 1
        score[gy, gx] = new_msim[gy, gx]
        ok, msim = new_ok, new_msim
        if not good.any():
            break
    return side, score


def reference_regions(stats: CellStatistics, side: np.ndarray, min_cells: int, sim_threshold: float,
                      max_regions: int = DEFAULT_MAX_TEXTURES) -> List[Tuple[int, int, int, float]]:
    """The regions the authors' ``get_box_sim_maps`` returns, computed from :func:`find_uniform_squares`.

    The reference grows, from corner cell ``(x, y)``, the set ``{(x, y)} ∪ (x, x + r] x (y, y + r]`` (its row and
    column loops skip the corner's own row and column) while all its pairs are similar, and reports the crop
    ``[x, x + R)`` of ``R`` cells (``R`` the last size that passed) when ``R >= min_cells`` after a failed step, or
    ``R > min_cells`` when the grid edge stopped the growth. Corners with ``x <= cols - min_cells`` and
    ``y <= rows - min_cells`` are scanned column by column; a region inside an earlier one is dropped; the scan
    stops once more than ``max_regions`` were found.

    Returns:
        ``(x, y, R, score)`` in cells, in the reference's order; ``score`` is the lowest pair similarity of the set.
    """
    rows, cols = stats.rows, stats.cols
    xs, ys = np.meshgrid(np.arange(max(0, cols - min_cells + 1)), np.arange(max(0, rows - min_cells + 1)))
    xs, ys = xs.ravel(), ys.ravel()
    max_r = np.minimum(cols - xs, rows - ys) - 1
    reach = np.zeros(xs.size, np.int64)  # last size that passed
    broke = np.zeros(xs.size, bool)
    alive = np.nonzero(max_r >= 1)[0]
    r = 0
    while alive.size:
        r += 1
        x, y = xs[alive], ys[alive]
        block_ok = side[y + 1, x + 1] >= r
        # the corner against the ring of cells at Chebyshev distance r inside (x, x + r] x (y, y + r]
        t = np.arange(1, r + 1)
        ring_dx = np.concatenate([t, np.full(r - 1, r)])
        ring_dy = np.concatenate([np.full(r, r), np.arange(1, r)])
        corner = (y * cols + x).astype(np.int64)
        other = corner[:, None] + (ring_dy * cols + ring_dx)[None, :]
        keys = np.minimum(corner[:, None], other) * stats.num_cells + np.maximum(corner[:, None], other)
        check = block_ok
        if block_ok.any():
            uniq, inv = np.unique(keys[block_ok].ravel(), return_inverse=True)
            sims = stats.pair_similarity(uniq // stats.num_cells, uniq % stats.num_cells, sim_threshold)[inv]
            check = block_ok.copy()
            check[block_ok] = (sims.reshape(-1, other.shape[1]) >= sim_threshold).all(axis=1)
        reach[alive[check]] = r
        broke[alive[~check]] = True
        alive = alive[check & (r < max_r[alive])]
    order = np.lexsort((ys, xs))  # x outer, y inner
    regions: List[Tuple[int, int, int, float]] = []
    for k in order:
        big = reach[k]
        if not (big > min_cells or (broke[k] and big >= min_cells)):
            continue
        x, y = int(xs[k]), int(ys[k])
        if any(px <= x and py <= y and px + ps >= x + big and py + ps >= y + big for px, py, ps, _ in regions):
            continue
        regions.append((x, y, int(big), 0.0))
        if len(regions) > max_regions:
            break
    # scores: lowest similarity over all pairs of each region's verified set (pairs shared by regions scored once)
    keys, sizes = [], []
    for x, y, big, _ in regions:
        bx, by = np.meshgrid(np.arange(x + 1, x + big + 1), np.arange(y + 1, y + big + 1))
        cells = np.concatenate([[y * cols + x], (by * cols + bx).ravel()]).astype(np.int64)
        a, b = np.triu_indices(cells.size, 1)
        lo, hi = np.minimum(cells[a], cells[b]), np.maximum(cells[a], cells[b])
        keys.append(lo * stats.num_cells + hi)
        sizes.append(a.size)
    scored = []
    if regions:
        uniq, inv = np.unique(np.concatenate(keys), return_inverse=True)
        sims = stats.pair_similarity(uniq // stats.num_cells, uniq % stats.num_cells)[inv]
        for (x, y, big, _), part in zip(regions, np.split(sims, np.cumsum(sizes)[:-1])):
            scored.append((x, y, big, float(part.min())))
    return scored


def is_textureless(crop: np.ndarray, min_std: float = 3.5, bright_std: float = 6.0, bright_mean: float = 245.0) -> bool:
    """The authors' filter of flat regions: some quadrant has std < 3.5, or std < 6 and mean > 245 (uint8 RGB)."""
    h, w = crop.shape[0] // 2, crop.shape[1] // 2
    if h == 0 or w == 0:
        return True
    for dx in range(2):
        for dy in range(2):
            q = crop[dy * h: dy * h + h, dx * w: dx * w + w]
            std = float(q.std())
            if std < min_std or (std < bright_std and float(q.mean()) > bright_mean):
                return True
    return False


def validate_extraction_params(*, cell_size: int = DEFAULT_CELL_SIZE, min_cells: int = DEFAULT_MIN_CELLS,
                               sim_threshold: float = DEFAULT_SIM_THRESHOLD,
                               max_image_size: Optional[int] = DEFAULT_MAX_IMAGE_SIZE,
                               max_textures: int = DEFAULT_MAX_TEXTURES) -> None:
    """Raise :class:`MatSegInputError` naming the first extraction parameter out of range (see
    :func:`extract_textures`); called before any photo is read, so a bad option fails the run at once."""
    if int(cell_size) != cell_size or cell_size < 2:
        raise MatSegInputError(f"cell_size must be an integer of at least 2 pixels, got {cell_size}")
    if int(min_cells) != min_cells or min_cells < 1:
        raise MatSegInputError(f"min_cells must be an integer >= 1, got {min_cells}")
    if not 0.0 <= float(sim_threshold) <= 1.0:
        raise MatSegInputError(f"sim_threshold must be in [0, 1] (a similarity, 1 - JS distance), got {sim_threshold}")
    if max_image_size is not None and (int(max_image_size) != max_image_size or max_image_size < cell_size):
        raise MatSegInputError(f"max_image_size must be None or an integer >= cell_size ({cell_size}), "
                               f"got {max_image_size}")
    if int(max_textures) != max_textures or max_textures < 1:
        raise MatSegInputError(f"max_textures must be an integer >= 1, got {max_textures}")


def extract_textures(image: np.ndarray, source_id: str = "image", *, cell_size: int = DEFAULT_CELL_SIZE,
                     min_cells: int = DEFAULT_MIN_CELLS, sim_threshold: float = DEFAULT_SIM_THRESHOLD,
                     max_image_size: Optional[int] = DEFAULT_MAX_IMAGE_SIZE, max_textures: int = DEFAULT_MAX_TEXTURES,
                     one_per_region: bool = True, reject_textureless: bool = True,
                     reference_geometry: bool = False, license: str = UNKNOWN_LICENSE) -> ExtractionResult:
    """Find the uniform textures of one image.

    Args:
        image: uint8 [H, W, 3] RGB (use :func:`matseg_hub.utils.images.read_image` for files: grayscale, alpha and
            16-bit images are converted there).
        source_id: the photo's id, carried into every texture.
        cell_size: grid cell side in pixels of the analysed image (40 suits Open Images, 75 SA-1B photos).
        min_cells: minimum square side in cells (reference ``min_tiles2map``).
        sim_threshold: minimum pair similarity (``1 - JS distance``) for cells to count as the same texture.
        max_image_size: analyse images whose *shorter* side exceeds this shrunk to it (``None``: never);
            crops are taken from the full-resolution image.
        max_textures: stop after this many squares (reference ``max_regions_per_img``).
        one_per_region: keep only the largest square (then the best score) of each group of overlapping squares.
        reject_textureless: drop flat squares (:func:`is_textureless`).
        reference_geometry: reproduce the authors' cell sets, crops, acceptance rule and region order exactly
            (:func:`reference_regions`), e.g. to compare with their output; the default crops the verified square.
        license: the photo's licence, carried into every texture.

    Returns:
        :class:`ExtractionResult`; ``reason`` says why no texture was kept (too small, no uniform region, only
        textureless ones). This is not an error.
    """
    import cv2

    image = np.asarray(image)
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise MatSegInputError(f"extract_textures expects a uint8 [H, W, 3] RGB image, got {image.dtype} "
                               f"{image.shape}; read files with matseg_hub.utils.images.read_image")
    validate_extraction_params(cell_size=cell_size, min_cells=min_cells, sim_threshold=sim_threshold,
                               max_image_size=max_image_size, max_textures=max_textures)
    ratio = 1.0
    work = image
    if max_image_size is not None and min(image.shape[:2]) > max_image_size:
        ratio = max_image_size / min(image.shape[:2])
        work = cv2.resize(image, (int(image.shape[1] * ratio), int(image.shape[0] * ratio)))
    stats = CellStatistics(work, cell_size)
    result = ExtractionResult(source_id, grid=(stats.rows, stats.cols))
    if stats.rows < min_cells or stats.cols < min_cells:
        result.reason = (f"image too small: {work.shape[1]}x{work.shape[0]} px gives a {stats.cols}x{stats.rows} "
                         f"grid of {cell_size}-px cells, fewer than {min_cells}x{min_cells}")
        return result
    side, score = find_uniform_squares(stats, sim_threshold)
    squares: List[Tuple[int, int, int, float]] = []  # (x, y, side, score) in cells, reference scan order
    for x in range(stats.cols - min_cells + 1) if not reference_geometry else ():
        for y in range(stats.rows - min_cells + 1):
            s = int(side[y, x])
            if s < min_cells:
                continue
            if any(px <= x and py <= y and px + ps >= x + s and py + ps >= y + s for px, py, ps, _ in squares):
                continue
            squares.append((x, y, s, float(score[y, x])))
            if len(squares) >= max_textures:
                break
        if len(squares) >= max_textures:
            break
    if reference_geometry:
        squares = reference_regions(stats, side, min_cells, sim_threshold, max_textures)
    result.num_candidates = len(squares)
    if not squares:
        result.reason = f"no uniform region of at least {min_cells}x{min_cells} cells"
        return result
    crops = []
    for x, y, s, sc in squares:
        x0, y0, size = x * cell_size, y * cell_size, s * cell_size
        if ratio != 1.0:
            x0, y0, size = int(x0 / ratio), int(y0 / ratio), int(size / ratio)
        crop = image[y0:y0 + size, x0:x0 + size]
        if reject_textureless and is_textureless(crop):
            result.num_textureless += 1
            continue
        crops.append(((x, y, s, sc), (x0, y0, size), crop))
    if not crops:
        result.reason = f"only textureless uniform regions ({result.num_textureless})"
        return result
    if one_per_region:
        crops = [crops[k] for k in _largest_per_overlap_group([c[0] for c in crops])]
    for index, ((_, _, _, sc), box, crop) in enumerate(crops):
        result.textures.append(Texture(np.ascontiguousarray(crop), source_id, index, sc, int(cell_size),
                                       tuple(int(v) for v in box), license))
    return result


def _largest_per_overlap_group(squares: Sequence[Tuple[int, int, int, float]]) -> List[int]:
    """Indices of the largest square (then the best score, then the first) of each group of overlapping squares."""
    n = len(squares)
    parent = list(range(n))

    def find(a: int) -> int:
        while parent[a] != a:
            parent[a] = parent[parent[a]]
            a = parent[a]
        return a

    for a in range(n):
        xa, ya, sa, _ = squares[a]
        for b in range(a + 1, n):
            xb, yb, sb, _ = squares[b]
            if xa < xb + sb and xb < xa + sa and ya < yb + sb and yb < ya + sa:
                parent[find(a)] = find(b)
    best: Dict[int, int] = {}
    for k in range(n):
        r = find(k)
        if r not in best or (squares[k][2], squares[k][3]) > (squares[best[r]][2], squares[best[r]][3]):
            best[r] = k
    return sorted(best.values())
