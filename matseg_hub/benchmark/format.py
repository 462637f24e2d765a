"""The MatSeg benchmark's raw format (SPEC §2): reading, validation, relations, evaluation resizing, point discs.

Layout of a benchmark folder as published by the authors::

    <root>/images/<stem>.jpg                 full-resolution photo (EXIF orientation tags are common)
    <root>/data/<stem>/data.json             {"<group id>": {"pt_im": [[x, y, r], ...], "pt_pg": [...]}, ...}
    <root>/data/<stem>/data.pkl              the same as a pickle (read only with allow_pickle=True)
    <root>/data/<stem>/group_relations.txt   optional partial similarity between groups

``pt_im`` is in pixels of the photo *as displayed* (EXIF orientation applied). Everything here works on the
displayed frame.

What the reader accepts (anything else is a :class:`~matseg_hub.errors.MatSegFormatError` naming the file and the
field, and ``skip_bad`` leaves the photo out and reports it):

* ``x``, ``y``, ``radius`` are finite JSON numbers (not booleans, strings or ``NaN``/``Infinity``), with
  ``0 <= x < width``, ``0 <= y < height`` and ``0 < radius <=`` the photo's diagonal, in the displayed frame;
* each JSON object gives each key once (``json`` would silently keep the last), and two group ids may not name the
  same group (``"1"`` and ``"01"``);
* the photo has at most :data:`~matseg_hub.utils.images.MAX_IMAGE_PIXELS` pixels (150 million) and an EXIF
  orientation of 1-8 (or none).

At evaluation size a point's disc is drawn like ``cv2.circle`` draws it, clipped at the border: a point on the
photo's last column that rounds to ``x = W`` keeps the pixels of its disc inside; only a disc with no pixel left
is an error (naming the image and the point).

Example::

    from matseg_hub.benchmark.format import read_benchmark, builtin_benchmark_dir
    for item in read_benchmark(builtin_benchmark_dir()):
        ev = item.for_evaluation(max_size=700)     # resized image, rounded points, point groups
        print(item.image_id, ev.image.shape, ev.points.shape, ev.group_similarity)
"""

from __future__ import annotations

import io
import json
import math
import os
import re
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, Iterator, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np

from ..errors import MatSegFormatError, MatSegInputError, skip_or_raise
from ..utils.images import IMAGE_EXTENSIONS, decode_image, is_image_file, read_image_header
from ..utils.logging import get_logger

logger = get_logger(__name__)

PathLike = Union[str, os.PathLike]

RELATION_WEIGHTS = {"(": 0.3, "[": 0.6}
DEFAULT_MAX_SIZE = 700


# ----------------------------------------------------------------------------------------------------------------
# group relations
# ----------------------------------------------------------------------------------------------------------------
_RELATION_LINE = re.compile(r"^\s*([\(\[])\s*([^\(\)\[\]]*?)\s*([\)\]])\s*$")


def parse_group_relations(text: str, group_ids: Sequence[str], path: Optional[PathLike] = None) -> np.ndarray:
    """Parse ``group_relations.txt`` into a dense similarity matrix.

    Each non-blank line lists group ids inside ``( )`` (similarity 0.3) or ``[ ]`` (0.6), comma separated; every
    pair on the line gets that similarity, both ways. Self-similarity is 1; unlisted pairs are 0.

    Args:
        text: the file's content.
        group_ids: the image's group ids, in the order of the matrix' rows.
        path: the file, named in errors.

    Returns:
        float64 [G, G] symmetric matrix, rows/columns in ``group_ids`` order.

    Raises:
        MatSegFormatError: a line with both or neither bracket kind, an unknown group id, a group listed twice
            on a line, or a pair given twice (on two lines); the error names the file and line.
    """
    index = {g: i for i, g in enumerate(group_ids)}
    sim = np.eye(len(group_ids), dtype=np.float64)
    seen: Dict[Tuple[int, int], int] = {}
    for lineno, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        where = f"line {lineno}"
        round_ = any(c in "()" for c in line)
        square = any(c in "[]" for c in line)
        if round_ == square:
            kind = "both bracket kinds" if round_ else "neither ( ) nor [ ]"
            raise MatSegFormatError(f"{line.strip()!r} has {kind}: write one relation per line, either (a,b,...) "
                                    f"for similarity 0.3 or [a,b,...] for 0.6", path=path, field=where)
        match = _RELATION_LINE.match(line)
        if match is None or {"(": ")", "[": "]"}[match.group(1)] != match.group(3):
            raise MatSegFormatError(f"{line.strip()!r} is not a relation: expected (a,b,...) or [a,b,...]",
                                    path=path, field=where)
        weight = RELATION_WEIGHTS[match.group(1)]
        members = [m.strip() for m in match.group(2).split(",") if m.strip()]
        if len(members) < 2:
            raise MatSegFormatError(f"{line.strip()!r} relates fewer than two groups", path=path, field=where)
        for m in members:
            if m not in index:
                raise MatSegFormatError(f"unknown group id {m!r}; the image's groups are {list(group_ids)}",
                                        path=path, field=where)
        if len(set(members)) != len(members):
            raise MatSegFormatError(f"{line.strip()!r} lists a group twice", path=path, field=where)
        for a_pos, a in enumerate(members):
            for b in members[a_pos + 1:]:
                i, j = sorted((index[a], index[b]))
                if (i, j) in seen:
                    raise MatSegFormatError(f"the pair ({group_ids[i]}, {group_ids[j]}) is already given on line "
                                            f"{seen[(i, j)]}; give each pair once", path=path, field=where)
                seen[(i, j)] = lineno
                sim[i, j] = sim[j, i] = weight
    return sim


# ----------------------------------------------------------------------------------------------------------------
# evaluation geometry
# ----------------------------------------------------------------------------------------------------------------
def evaluation_scale(height: int, width: int, max_size: Optional[int] = DEFAULT_MAX_SIZE) -> float:
    """The reference's ``rat``: ``max(H, W) / max_size`` when the longer side exceeds ``max_size``, else 1."""
    if max_size is not None and max_size <= 0:
        raise MatSegInputError(f"max_size must be a positive number of pixels (or None for full resolution), "
                               f"got {max_size}")
    if max_size is None or max(height, width) <= max_size:
        return 1.0
    return max(height, width) / max_size


def resize_for_evaluation(image: np.ndarray, points: np.ndarray, max_size: Optional[int] = DEFAULT_MAX_SIZE
                          ) -> Tuple[np.ndarray, np.ndarray, float]:
    """Resize like the reference evaluation and map the points into the resized frame.

    Images whose longer side exceeds ``max_size`` are resized with ``cv2.resize`` (bilinear) to
    ``int(W/rat) x int(H/rat)``, ``rat = max(H, W)/max_size``; points ``(x, y, radius)`` are divided by ``rat``
    and rounded half-to-even (``numpy.round``).

    Args:
        image: uint8 [H, W, C] (or [H, W]).
        points: float or int [N, 3] (x, y, radius) in ``image`` pixels.
        max_size: the longest side after resizing; ``None`` keeps the image as is.

    Returns:
        (resized image, int64 [N, 3] points, rat)

    Raises:
        MatSegInputError: a point that is not finite, has a negative radius or a value beyond
            :data:`matseg_hub.metrics.triplet.MAX_POINT_VALUE` after scaling.
    """
    import cv2

    points = np.asarray(points, dtype=np.float64).reshape(-1, 3)
    height, width = image.shape[:2]
    rat = evaluation_scale(height, width, max_size)
    if rat != 1.0:
        image = cv2.resize(image, (int(width / rat), int(height / rat)))
        points = points / rat
    return image, _rounded_points(points), rat


def _rounded_points(points: np.ndarray) -> np.ndarray:
    """[N, 3] (x, y, radius) rounded half to even to int64, checked by the metric's rules (finite, radius >= 0,
    values within ``MAX_POINT_VALUE``)."""
    from ..metrics.triplet import _check_points

    return _check_points(points) if len(points) else np.zeros((0, 3), np.int64)


def point_disc_masks(points: np.ndarray, shape: Tuple[int, int]) -> np.ndarray:
    """One filled disc per point, drawn exactly like ``cv2.circle(mask, (x, y), r, 1, thickness=-1)``.

    Discs are clipped at the border as ``cv2.circle`` clips them: a disc partly outside keeps its pixels inside, one
    entirely outside is all False.

    Args:
        points: int [N, 3] (x, y, radius) in pixels of the mask (floats are rounded half to even); |x|, |y|,
            radius <= :data:`matseg_hub.metrics.triplet.MAX_POINT_VALUE`.
        shape: (H, W) of the masks.

    Returns:
        bool [N, H, W]. (For many points on large images prefer :func:`matseg_hub.metrics.triplet.point_descriptors`,
        which never materialises full-size masks.)
    """
    from ..metrics.triplet import _disc

    height, width = int(shape[0]), int(shape[1])
    pts = _rounded_points(np.asarray(points).reshape(-1, 3))
    masks = np.zeros((len(pts), height, width), dtype=bool)
    for mask, point in zip(masks, pts):
        y0, y1, x0, x1, disc = _disc(point, height, width)
        mask[y0:y1, x0:x1] = disc.astype(bool)
    return masks


# ----------------------------------------------------------------------------------------------------------------
# items
# ----------------------------------------------------------------------------------------------------------------
@dataclass
class EvaluationItem:
    """One benchmark image at evaluation resolution.

    Attributes:
        image_id: the photo's stem.
        image: uint8 [h, w, 3] RGB, resized so that the longer side is at most ``max_size``.
        points: int64 [N, 3] (x, y, radius) in ``image`` pixels, groups in ``group_ids`` order.
        point_groups: int64 [N], index into ``group_ids`` of each point.
        group_ids: the group ids (strings) in matrix order.
        group_similarity: float64 [G, G] ground-truth similarity between groups (identity without relations).
        scale: the reference's ``rat`` (1 when no resizing happened).
    """

    image_id: str
    image: np.ndarray
    points: np.ndarray
    point_groups: np.ndarray
    group_ids: List[str]
    group_similarity: np.ndarray
    scale: float
    has_relations: bool = False


@dataclass
class BenchmarkItem:
    """One annotated photo of the benchmark, in its displayed frame (EXIF orientation applied).

    Attributes:
        image_id: the photo's stem (``images/<image_id>.jpg``).
        image_bytes: the original encoded file, untouched (EXIF kept).
        width, height: displayed size in pixels.
        groups: group id -> float64 [n, 3] points (x, y, radius) in full-resolution displayed pixels.
        screen_points: group id -> float64 [n, 3] ``pt_pg`` (annotation tool's screen frame; metadata only).
        relations: the text of ``group_relations.txt`` as given ("" when the file is absent).
        group_similarity: float64 [G, G] in ``group_ids`` order.
        orientation: the photo's EXIF orientation tag (1 when absent).
    """

    image_id: str
    image_bytes: bytes
    width: int
    height: int
    groups: Dict[str, np.ndarray]
    screen_points: Dict[str, np.ndarray] = field(default_factory=dict)
    relations: str = ""
    group_similarity: Optional[np.ndarray] = None
    orientation: int = 1
    image_file: Optional[str] = None

    def __post_init__(self):
        if self.group_similarity is None:
            self.group_similarity = np.eye(len(self.groups))

    @property
    def group_ids(self) -> List[str]:
        return list(self.groups)

    def image(self) -> np.ndarray:
        """Decoded photo, uint8 [height, width, 3] RGB, as displayed."""
        return decode_image(self.image_bytes, self.image_file or self.image_id)

    def points(self) -> Tuple[np.ndarray, np.ndarray]:
        """All points, float64 [N, 3] (x, y, radius), and int64 [N] group index (into :attr:`group_ids`)."""
        pts = [self.groups[g] for g in self.group_ids]
        groups = [np.full(len(p), i, dtype=np.int64) for i, p in enumerate(pts)]
        if not pts:
            return np.zeros((0, 3)), np.zeros(0, dtype=np.int64)
        return np.concatenate(pts).astype(np.float64), np.concatenate(groups)

    def for_evaluation(self, max_size: Optional[int] = DEFAULT_MAX_SIZE, image: Optional[np.ndarray] = None
                       ) -> EvaluationItem:
        """The image resized like the reference evaluation, with rounded points (:func:`resize_for_evaluation`).

        Raises:
            MatSegFormatError: a point outside the photo or with a radius out of ``(0, diagonal]`` (items from a
                Hub dataset were not read by :func:`read_benchmark_item`), or a point whose disc has no pixel
                inside the resized image; names the image and the point (``<group>.pt_im[<i>]``).
        """
        from ..metrics.triplet import discs_outside_map

        source = self.image_file or self.image_id
        for gid, pts in self.groups.items():  # items from a Hub dataset were not read by this package's reader
            _check_points_in_photo(np.asarray(pts, dtype=np.float64).reshape(-1, 3), self.width, self.height,
                                   self.orientation, source, f"{gid}.pt_im")
        full = self.image() if image is None else image
        points, point_groups = self.points()
        resized, rounded, rat = resize_for_evaluation(full, points, max_size)
        outside = discs_outside_map(rounded, *resized.shape[:2]) if len(rounded) else []
        if len(outside):
            i = int(outside[0])
            gid = self.group_ids[int(point_groups[i])]
            j = i - int(np.flatnonzero(point_groups == point_groups[i])[0])
            raise MatSegFormatError(f"point {j} (x={points[i, 0]:g}, y={points[i, 1]:g}, radius={points[i, 2]:g}) of "
                                    f"image {self.image_id!r} becomes {rounded[i].tolist()} at evaluation size "
                                    f"{resized.shape[1]}x{resized.shape[0]}, a disc with no pixel inside the image; "
                                    f"give it a larger radius or move it inside", path=source, field=f"{gid}.pt_im[{j}]")
        return EvaluationItem(self.image_id, resized, rounded, point_groups, self.group_ids,
                              np.asarray(self.group_similarity, dtype=np.float64), rat, bool(self.relations.strip()))

    # -- Hub rows ---------------------------------------------------------------------------------------------
    def to_row(self) -> dict:
        """A row of the Hub dataset (see :data:`matseg_hub.benchmark.dataset.FEATURES`)."""
        def pts(a):
            return [{"x": float(x), "y": float(y), "radius": float(r)} for x, y, r in np.asarray(a).reshape(-1, 3)]

        return {
            "image": {"bytes": self.image_bytes, "path": self.image_file or f"{self.image_id}.jpg"},
            "image_id": self.image_id,
            "width": self.width,
            "height": self.height,
            "groups": [{"group_id": g, "points": pts(p), "screen_points": pts(self.screen_points.get(g, np.zeros((0, 3))))}
                       for g, p in self.groups.items()],
            "relations": self.relations,
            "group_ids": self.group_ids,
            "group_similarity": np.asarray(self.group_similarity, dtype=np.float64).tolist(),
            "orientation": self.orientation,
            "license": "cc0-1.0",
        }

    @classmethod
    def from_row(cls, row: Mapping) -> "BenchmarkItem":
        """Inverse of :meth:`to_row`. ``row["image"]`` may be the stored ``{"bytes", "path"}`` dict (load the
        dataset with ``.cast_column("image", Image(decode=False))``) or a decoded PIL image."""
        image = row["image"]
        if isinstance(image, Mapping):
            data, name = image.get("bytes"), image.get("path")
            if data is None and name:
                data = Path(name).read_bytes()
        else:  # a decoded PIL image (already oriented): re-encode losslessly
            buf = io.BytesIO()
            image.save(buf, format="PNG")
            data, name = buf.getvalue(), f"{row['image_id']}.png"
        groups, screen = {}, {}
        for g in row["groups"]:
            groups[g["group_id"]] = np.array([[p["x"], p["y"], p["radius"]] for p in g["points"]], dtype=np.float64)
            screen[g["group_id"]] = np.array([[p["x"], p["y"], p["radius"]] for p in g.get("screen_points") or []],
                                             dtype=np.float64).reshape(-1, 3)
        return cls(image_id=row["image_id"], image_bytes=data, width=int(row["width"]), height=int(row["height"]),
                   groups=groups, screen_points=screen, relations=row.get("relations") or "",
                   group_similarity=np.asarray(row["group_similarity"], dtype=np.float64),
                   orientation=int(row.get("orientation") or 1), image_file=name)


# ----------------------------------------------------------------------------------------------------------------
# reading the raw layout
# ----------------------------------------------------------------------------------------------------------------
def _find_image(root: Path, stem: str) -> Path:
    for ext in (e for lower in IMAGE_EXTENSIONS for e in (lower, lower.upper())):
        candidate = root / "images" / f"{stem}{ext}"
        if candidate.is_file():
            return candidate
    raise MatSegFormatError(f"no image for annotation {stem!r}: expected images/{stem}.jpg (or .png); add the photo "
                            f"or remove data/{stem}", path=root / "images" / f"{stem}.jpg")


def _check_image(data: bytes, path: Path) -> Tuple[int, int, int]:
    """Validate the encoded photo (header: pixel limit and EXIF orientation, see
    :func:`~matseg_hub.utils.images.read_image_header`; then the full stream, decoded at 1/8 scale); return
    (width, height, orientation) in the displayed frame."""
    from PIL import Image, UnidentifiedImageError

    width, height, orientation = read_image_header(data, str(path))
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # the header check set the limit
            with Image.open(io.BytesIO(data)) as im:
                im.draft("RGB", (max(1, im.size[0] // 8), max(1, im.size[1] // 8)))
                im.load()
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise MatSegFormatError(f"corrupt or unreadable image ({exc}); replace the file or rebuild with --skip-bad",
                                path=path) from None
    return width, height, orientation


_POINT_FIELDS = ("x", "y", "radius")


def _parse_points(value, path: Path, field: str) -> np.ndarray:
    """``[[x, y, radius], ...]`` -> float64 [N, 3]. Every value must be a finite JSON number (int or float; not a
    boolean, a string or null) that a float64 holds; numpy arrays of numbers (from a pickle) are accepted too."""
    if isinstance(value, np.ndarray) and value.dtype.kind in "iuf":
        value = value.tolist()
    if not isinstance(value, (list, tuple)):
        raise MatSegFormatError(f"expected a list of [x, y, radius] numbers, got {type(value).__name__}", path=path,
                                field=field)
    out = np.zeros((len(value), 3), dtype=np.float64)
    for i, point in enumerate(value):
        if isinstance(point, np.ndarray) and point.dtype.kind in "iuf":
            point = point.tolist()
        if not isinstance(point, (list, tuple)) or len(point) != 3:
            got = f"{len(point)} values" if isinstance(point, (list, tuple)) else type(point).__name__
            raise MatSegFormatError(f"expected a list of [x, y, radius] numbers; point {i} has {got}", path=path,
                                    field=field)
        for j, v in enumerate(point):
            out[i, j] = _point_number(v, path, f"{field}[{i}]", _POINT_FIELDS[j])
    return out


def _point_number(v, path: Path, field: str, name: str) -> float:
    if isinstance(v, (bool, np.bool_)) or not isinstance(v, (int, float, np.integer, np.floating)):
        shown = "a boolean" if isinstance(v, (bool, np.bool_)) else f"{type(v).__name__} {str(v)[:40]!r}"
        raise MatSegFormatError(f"{name} is {shown}, not a number", path=path, field=field)
    try:
        number = float(v)
    except OverflowError:
        raise MatSegFormatError(f"{name} is an integer of about {int(v.bit_length() * 0.30103) + 1} digits, too large "
                                f"for a pixel coordinate", path=path, field=field) from None
    if not math.isfinite(number):
        raise MatSegFormatError(f"{name} is {number}, not a finite number", path=path, field=field)
    return number


def _read_text(path: Path) -> str:
    """UTF-8 text (a byte-order mark, common in files saved on Windows, is ignored)."""
    try:
        return path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        raise MatSegFormatError(f"not UTF-8 text (byte {exc.start}); re-save the file as UTF-8", path=path) from None


class _DuplicateKey(Exception):
    pass


def _unique_keys(pairs):
    """``json`` ``object_pairs_hook``: a key given twice in one object is an error (``json`` keeps the last)."""
    out = {}
    for key, value in pairs:
        if key in out:
            raise _DuplicateKey(key)
        out[key] = value
    return out


def _load_annotation(folder: Path, allow_pickle: bool) -> Tuple[dict, Path]:
    json_path = folder / "data.json"
    if json_path.is_file():
        try:
            return json.loads(_read_text(json_path), object_pairs_hook=_unique_keys), json_path
        except json.JSONDecodeError as exc:
            raise MatSegFormatError(f"malformed JSON ({exc.msg} at line {exc.lineno} column {exc.colno}); fix the file",
                                    path=json_path) from None
        except _DuplicateKey as exc:
            raise MatSegFormatError(f"the key {str(exc.args[0])[:80]!r} is given twice in one JSON object (a JSON "
                                    f"reader would silently keep only the last); merge or rename them",
                                    path=json_path, field=str(exc.args[0])[:80]) from None
        except RecursionError:
            raise MatSegFormatError("JSON nested too deeply to be an annotation; fix the file", path=json_path) from None
        except ValueError as exc:  # e.g. an integer of more than 4300 digits (Python's int-from-text limit)
            raise MatSegFormatError(f"unreadable JSON ({str(exc)[:120]}); fix the file", path=json_path) from None
    pkl_path = folder / "data.pkl"
    if pkl_path.is_file():
        if not allow_pickle:
            raise MatSegFormatError("only data.pkl is present; pickles from third parties can run code when loaded, "
                                    "so they are read only with allow_pickle=True (CLI: --allow-pickle)", path=pkl_path)
        import pickle

        try:
            with open(pkl_path, "rb") as fh:
                return pickle.load(fh), pkl_path  # noqa: S301 - explicit opt-in
        except RecursionError:
            raise MatSegFormatError("pickle nested too deeply to be an annotation; fix the file",
                                    path=pkl_path) from None
        except (pickle.UnpicklingError, EOFError) as exc:
            raise MatSegFormatError(f"unreadable pickle ({exc}); fix the file or provide data.json",
                                    path=pkl_path) from None
    raise MatSegFormatError("annotation missing: expected data.json (or data.pkl with allow_pickle=True)", path=json_path)


def _check_group_ids(annotation: Mapping, path: Path) -> None:
    """Group ids that name the same group ("1", "01", " 1"; 1 and "1" in a pickle) are an error naming both."""
    seen: Dict[object, object] = {}
    for gid in annotation:
        key = _group_sort_key(gid)
        if key in seen:
            raise MatSegFormatError(f"groups {str(seen[key])[:40]!r} and {str(gid)[:40]!r} are the same group id "
                                    f"written two ways; merge them under one id", path=path, field=str(gid)[:80])
        seen[key] = gid


def read_benchmark_item(root: PathLike, image_id: str, allow_pickle: bool = False) -> BenchmarkItem:
    """Read and validate one annotated photo ``images/<image_id>.*`` + ``data/<image_id>/``.

    Raises:
        MatSegFormatError: missing image or annotation, malformed or too deeply nested JSON, a key given twice,
            two ids for one group, a group with no points, a value that is not a finite number, points outside the
            displayed image, a radius <= 0 or beyond the photo's diagonal, bad relations, a corrupt image, one of
            more than ``MAX_IMAGE_PIXELS`` pixels or with an EXIF orientation outside 1-8. The error names the
            file and field.
    """
    root = Path(root)
    folder = root / "data" / image_id
    if not folder.is_dir():
        raise MatSegFormatError(f"no annotation folder for {image_id!r}", path=folder)
    image_path = _find_image(root, image_id)
    annotation, ann_path = _load_annotation(folder, allow_pickle)
    if not isinstance(annotation, dict) or not annotation:
        raise MatSegFormatError("expected an object {group id: {'pt_im': [[x, y, r], ...]}} with at least one group",
                                path=ann_path)
    data = image_path.read_bytes()
    width, height, orientation = _check_image(data, image_path)
    groups: Dict[str, np.ndarray] = {}
    screen: Dict[str, np.ndarray] = {}
    _check_group_ids(annotation, ann_path)
    for gid in sorted(annotation, key=_group_sort_key):
        entry = annotation[gid]
        field_name = f"{gid}.pt_im"
        if not isinstance(entry, dict) or "pt_im" not in entry:
            raise MatSegFormatError("group has no 'pt_im' list of points", path=ann_path, field=str(gid))
        pts = _parse_points(entry["pt_im"], ann_path, field_name)
        if len(pts) == 0:
            raise MatSegFormatError("group has no points; remove the group or annotate it", path=ann_path,
                                    field=field_name)
        _check_points_in_photo(pts, width, height, orientation, ann_path, field_name)
        groups[str(gid)] = pts
        if "pt_pg" in entry:
            screen[str(gid)] = _parse_points(entry["pt_pg"], ann_path, f"{gid}.pt_pg")
    relations_path = folder / "group_relations.txt"
    relations = _read_text(relations_path) if relations_path.is_file() else ""
    similarity = parse_group_relations(relations, list(groups), path=relations_path)
    return BenchmarkItem(image_id=image_id, image_bytes=data, width=width, height=height, groups=groups,
                         screen_points=screen, relations=relations, group_similarity=similarity,
                         orientation=orientation, image_file=image_path.name)


def _check_points_in_photo(pts: np.ndarray, width: int, height: int, orientation: int, path, field: str) -> None:
    """The rules for one group's points (float64 [n, 3] x, y, radius) in a ``width x height`` displayed photo:
    finite; ``0 <= x < width`` and ``0 <= y < height``; ``0 < radius <=`` the photo's diagonal (a disc that large
    already covers the whole photo from any point; larger values are mistakes, and 1e12 would overflow drawing)."""
    diagonal = math.hypot(width, height)
    checks = (
        (~np.isfinite(pts).all(1), lambda i: f"point {i} = {pts[i].tolist()} is not finite"),
        (pts[:, 2] <= 0, lambda i: f"point {i} has radius {pts[i, 2]:g} <= 0"),
        (pts[:, 2] > diagonal, lambda i: f"point {i} has radius {pts[i, 2]:g}, more than the diagonal of the "
                                         f"{width}x{height} photo ({diagonal:.1f} px); a radius is at most the diagonal"),
        ((pts[:, 0] < 0) | (pts[:, 0] >= width) | (pts[:, 1] < 0) | (pts[:, 1] >= height),
         lambda i: f"point {i} at (x={pts[i, 0]:g}, y={pts[i, 1]:g}) is outside the image as displayed ({width}x"
                   f"{height} after EXIF orientation {orientation}); points must be in the displayed frame"),
    )
    for bad, message in checks:
        hits = np.flatnonzero(bad)
        if hits.size:
            i = int(hits[0])
            raise MatSegFormatError(message(i), path=path, field=f"{field}[{i}]")


def _group_sort_key(gid) -> Tuple[int, object]:
    """Numeric ids in numeric order, then the others; ids that differ only by leading zeros or spaces are equal."""
    s = str(gid).strip()
    return (0, int(s)) if s.isascii() and s.isdigit() else (1, s)


def list_benchmark_items(root: PathLike) -> List[str]:
    """The image ids of a benchmark folder (sub-folders of ``data/``), sorted."""
    root = Path(root)
    if not (root / "data").is_dir():
        raise MatSegFormatError("not a MatSeg benchmark folder: expected data/<stem>/data.json and images/<stem>.jpg",
                                path=root)
    ids = sorted(p.name for p in (root / "data").iterdir() if p.is_dir() and not p.name.startswith("."))
    if (root / "images").is_dir():
        annotated = set(ids)
        orphans = [p.name for p in (root / "images").iterdir() if is_image_file(p) and p.stem not in annotated]
        if orphans:
            logger.warning("%d images in %s have no annotation and are ignored (e.g. %s)", len(orphans),
                           root / "images", orphans[0])
    return ids


def iter_benchmark_items(root: PathLike, image_ids: Optional[Sequence[str]] = None, *, allow_pickle: bool = False,
                         skip_bad: bool = False, on_skip=None) -> Iterator[BenchmarkItem]:
    """Read photos of a benchmark folder one at a time (memory stays flat).

    Args:
        image_ids: which photos, in this order (default: all, sorted).
        skip_bad: leave out items that fail validation instead of raising; each is logged and reported to
            ``on_skip(image_id, reason)``.
    """
    for image_id in list_benchmark_items(root) if image_ids is None else image_ids:
        try:
            item = read_benchmark_item(root, image_id, allow_pickle=allow_pickle)
        except MatSegFormatError as exc:
            skip_or_raise(exc, image_id, skip_bad=skip_bad, on_skip=on_skip, logger=logger)
            continue
        yield item


def read_benchmark(root: PathLike, allow_pickle: bool = False) -> Iterator[BenchmarkItem]:
    """Iterate over every annotated photo of a benchmark folder (one at a time: memory stays flat)."""
    return iter_benchmark_items(root, allow_pickle=allow_pickle)


def write_benchmark_item(root: PathLike, image_id: str, image: bytes, groups: Mapping[str, Sequence[Sequence[float]]],
                         relations: Optional[str] = None, image_ext: str = ".jpg") -> None:
    """Write one annotated photo in the raw layout (atomically: the image, then ``data.json`` last).

    Args:
        image: the encoded photo (points must be in its displayed frame).
        groups: group id -> ``[[x, y, radius], ...]`` (``pt_im``); or group id -> ``{"pt_im": ..., "pt_pg": ...}``.
        relations: text of ``group_relations.txt`` (omitted when None).
    """
    from ..utils.files import atomic_write_bytes, atomic_write_text

    root = Path(root)
    annotation = {str(g): (v if isinstance(v, Mapping) else {"pt_im": [list(p) for p in v]}) for g, v in groups.items()}
    atomic_write_bytes(root / "images" / f"{image_id}{image_ext}", image)
    if relations is not None:
        atomic_write_text(root / "data" / image_id / "group_relations.txt", relations)
    atomic_write_text(root / "data" / image_id / "data.json", json.dumps(annotation))


def builtin_benchmark_dir() -> Path:
    """The benchmark sample that ships inside the package: one CC0 photo (sugar-coated candy, two material
    states), reduced to 700 px on its longer side, its annotation rescaled (the reference's rounding)."""
    return Path(__file__).resolve().parents[1] / "resources" / "benchmark_sample"
