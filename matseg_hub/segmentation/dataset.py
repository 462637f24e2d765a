"""Segmentation sets as Hub datasets: build one from a raw layout, load one from any source.

``build_segmentation_dataset(source, output, format=...)`` reads a raw folder (:mod:`.formats`: ``masks``,
``scenes``, ``labpics``, ``materialistic``) one image at a time and writes a Hub dataset repository (Parquet shards
under ``data/`` + a ``README.md`` card with YAML ``configs``) through :class:`~matseg_hub.hub.writer.DatasetRepoWriter`
(resumable, job arrays, output ownership). ``load_segmentation(data)`` yields
:class:`~matseg_hub.segmentation.item.SegmentationItem` from a raw folder, a built folder or a Hub dataset id: what
the IoU evaluation reads.

Row schema (``segmentation_features``): ``image_id`` (string), ``image`` (Image: the source file's bytes when it is
a JPEG/PNG without EXIF rotation, else a PNG), ``masks`` (list of Image: one 8-bit PNG per region, 255 inside, 0
outside), ``region_names`` (list of string), ``width``/``height`` (int32), ``license`` (string).
"""

from __future__ import annotations

import itertools
import os
from collections import Counter
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Mapping, Optional, Sequence, Union

import numpy as np

from ..citation import CITATION
from ..errors import MatSegFormatError, MatSegInputError, skip_or_raise
from ..hub.writer import (DatasetRepoWriter, dataset_card_yaml, is_built_dataset_folder, iter_job_items,
                          load_dataset_source, looks_like_repo_id, size_category)
from ..utils.images import decode_image, encode_mask_png
from ..utils.licenses import UNKNOWN_LICENSE
from ..utils.logging import get_logger, progress
from .formats import (FORMATS, detect_format, image_file_bytes, iter_segmentation_items, label_regions,
                      list_segmentation_items, segmentation_item_files)
from .item import SegmentationItem

logger = get_logger(__name__)

PathLike = Union[str, os.PathLike]
SPLIT = "test"
KIND = "build segmentation"

FIELD_DESCRIPTIONS = {
    "image_id": "the image's id in the source set (file stem, LabPics folder, or scene folder relative to the root)",
    "image": "the image (the source file's bytes when it was a JPEG or PNG without EXIF rotation, else a PNG)",
    "masks": "one binary mask per ground-truth region: 8-bit PNG, 255 inside, 0 outside, of the image's size",
    "region_names": "one name per mask (mask file stem, label value, LabPics class names, scene mask file)",
    "width": "image width in pixels",
    "height": "image height in pixels",
    "license": "licence of the row's image (`unknown` when the source recorded none)",
}


def segmentation_features():
    """The rows' :class:`datasets.Features` (declared once; used for writing and reading)."""
    from datasets import Features, Image, List, Value

    return Features({
        "image_id": Value("string"),
        "image": Image(),
        "masks": List(Image()),
        "region_names": List(Value("string")),
        "width": Value("int32"),
        "height": Value("int32"),
        "license": Value("string"),
    })


def segmentation_row(item: SegmentationItem) -> Dict[str, Any]:
    """A row of :func:`segmentation_features` for ``item`` (masks as deterministic 0/255 PNGs)."""
    image, _ = image_file_bytes(item)
    masks = np.asarray(item.masks, dtype=bool)
    h, w = item.image.shape[:2]
    names = list(item.region_names) if len(item.region_names) == len(masks) else [""] * len(masks)
    return {
        "image_id": item.image_id,
        "image": {"bytes": image, "path": None},
        "masks": [{"bytes": encode_mask_png(m.astype(np.uint8) * 255), "path": None} for m in masks],
        "region_names": [str(n) for n in names],
        "width": int(w),
        "height": int(h),
        "license": item.license or UNKNOWN_LICENSE,
    }


def _relative_message(message: str, root: Path) -> str:
    """``message`` without the local ``root`` prefix in the paths it names (for the public card)."""
    for prefix in sorted({str(root.resolve()), str(root), os.path.abspath(root)}, key=len, reverse=True):
        message = message.replace(prefix.rstrip(os.sep) + os.sep, "")
    return message


def _row_licenses(work_dir: Path) -> Counter:
    import pyarrow.parquet as pq

    counts: Counter = Counter()
    for path in sorted((work_dir / "data").glob(f"{SPLIT}-*.parquet")):
        counts.update(pq.read_table(path, columns=["license"]).column("license").to_pylist())
    return counts


def dataset_card(features, split_info: Dict[str, int], skipped: Sequence[Mapping[str, str]], *, format: str,
                 source_name: str, licenses: Counter, pretty_name: str) -> str:
    """The dataset card (``README.md``): YAML header (``configs``, ``dataset_info``), fields, licences, usage."""
    card_license = "cc0-1.0" if licenses and set(licenses) == {"cc0-1.0"} else "other"
    header = dataset_card_yaml(features, {SPLIT: split_info}, license=card_license, pretty_name=pretty_name,
                               task_categories=["image-segmentation"],
                               tags=["materials", "segmentation", "matseg", f"format-{format}"],
                               size_category=size_category(split_info["num_examples"]))
    fields = "\n".join(f"| `{k}` | {v} |" for k, v in FIELD_DESCRIPTIONS.items())
    lic_lines = "\n".join(f"- `{lic}`: {n}" for lic, n in sorted(licenses.items())) or "- (no rows)"
    skipped_text = ""
    if skipped:
        lines = "\n".join(f"- `{s['key']}`: {s['reason']}" for s in skipped)
        skipped_text = f"\n## Items left out when this copy was built\n\n{lines}\n"
    return f"""{header}
# {pretty_name}

A segmentation set for the point-prompted IoU evaluation of zero-shot material-state segmentation (MatSeg,
NeurIPS 2024 Datasets & Benchmarks): every row is an image with one binary mask per ground-truth region. Built with `matseg build segmentation --format {format}` from `{source_name}`;
**{split_info["num_examples"]}** images in the `{SPLIT}` split.

## Fields

| field | description |
| --- | --- |
{fields}

## Usage

```python
from datasets import load_dataset

ds = load_dataset("<this repo or folder>", split="{SPLIT}")
row = ds[0]
row["image"], row["masks"]          # PIL image, list of PIL masks (255 = inside)

from matseg_hub.segmentation.dataset import load_segmentation
for item in load_segmentation("<this repo or folder>"):   # SegmentationItem: image uint8 [H, W, 3], masks bool [R, H, W]
    ...
```

## Licence

Each row carries its image's licence in `license`; masks follow the source set's terms. Rows per licence:

{lic_lines}
{skipped_text}
## Citation

```bibtex
{CITATION}
```
"""


def build_segmentation_dataset(source: PathLike, output: PathLike, *, format: Optional[str] = None,
                               shard: Optional[int] = None, num_shards: Optional[int] = None, skip_bad: bool = False,
                               overwrite: bool = False, resume: bool = True,
                               max_shard_size: Union[int, str] = "500MB", row_group_size: int = 16,
                               pretty_name: Optional[str] = None,
                               on_skip: Optional[Callable[[str, str], None]] = None,
                               on_progress: Optional[Callable[[int, int], None]] = None) -> Optional[Path]:
    """Build a Hub dataset folder from a raw segmentation folder, streaming one image at a time.

    Args:
        source: the raw folder (see :mod:`matseg_hub.segmentation.formats`).
        output: the dataset folder to create (built in ``<output>.partial``, moved in place at the end); an existing
            folder must be empty or an earlier output of this builder (see ``overwrite``).
        format: one of ``masks``, ``scenes``, ``labpics``, ``materialistic``; ``None``: detected when unambiguous.
        shard, num_shards: this job's part of a job array (``--shard i --num-shards n``; default the whole set).
        skip_bad: report and leave out bad images (listed in the card, reported to ``on_skip(image_id, reason)``)
            instead of stopping at the first one.
        overwrite: rebuild over a finished output of this builder (replacing only the files it wrote).
        resume: continue an interrupted build from its closed shards whose inputs are unchanged.
        max_shard_size, row_group_size: Parquet shard size bound and rows per row group.
        on_progress: ``(done, total)`` after each image of this run.

    Returns:
        the finished folder, or ``None`` while other jobs of the array still run.

    Raises:
        MatSegFormatError: a bad image when ``skip_bad`` is False (naming the file; the output is left untouched),
            or nothing usable to build.
        MatSegOutputError: ``output`` is not empty and not this builder's, overlaps ``source``, is being built by
            another process, or cannot be written.
        MatSegInputError: another ``format`` than the interrupted run's (pass ``resume=False``).
    """
    source = Path(source)
    if not source.is_dir():
        raise MatSegInputError(f"--source {source} is not a folder: give a raw segmentation folder "
                               f"(formats: {', '.join(FORMATS)})")
    fmt = detect_format(source) if format is None else format
    shard_index, num_shards = int(shard or 0), int(1 if num_shards is None else num_shards)
    ids = list_segmentation_items(source, fmt)
    job_ids = list(iter_job_items(ids, shard_index, num_shards))
    from ..utils.files import files_fingerprint

    # the licence maps (formats._licenses) are an input of every row: a changed one redoes the rows on resume
    licence_files = [folder / name for folder in (source, source / "images") for name in ("licenses.json",
                                                                                          "metadata.csv")]
    inputs = [(i, files_fingerprint([*segmentation_item_files(source, i, fmt), *licence_files])) for i in job_ids]
    features = segmentation_features()
    name = pretty_name or f"{source.resolve().name} (segmentation)"
    with DatasetRepoWriter(output, features, split=SPLIT, max_shard_size=max_shard_size, row_group_size=row_group_size,
                           shard_index=shard_index, num_shards=num_shards, resume=resume, kind=KIND, sources=[source],
                           overwrite=overwrite, inputs=inputs, settings={"format": fmt}) as writer:
        todo = [i for i in job_ids if i not in writer.done_keys]

        def skipped(image_id: str, reason: str) -> None:
            writer.skip(image_id, _relative_message(reason, source))
            if on_skip is not None:
                on_skip(image_id, reason)

        items = iter_segmentation_items(source, fmt, todo, skip_bad=skip_bad, on_skip=skipped)
        done = 0
        for item in progress(items, total=len(todo), desc="building segmentation set", unit="img"):
            writer.write(segmentation_row(item), key=item.image_id)
            done += 1
            if on_progress is not None:
                on_progress(done, len(todo))
        writer.close_nonempty("no usable image with masks; nothing to build", source)
        work_dir = writer.work_dir
        return writer.finalize(lambda info, skip: dataset_card(features, info, skip, format=fmt,
                                                               source_name=source.resolve().name,
                                                               licenses=_row_licenses(work_dir), pretty_name=name))


# ----------------------------------------------------------------------------------------------------------------
# loading from any source
# ----------------------------------------------------------------------------------------------------------------
def _encoded(value: Any, what: str, source: str) -> bytes:
    """Bytes of an ``Image(decode=False)`` value (``{"bytes", "path"}``), a PIL image or raw bytes."""
    if isinstance(value, (bytes, bytearray)):
        return bytes(value)
    if isinstance(value, dict):
        if value.get("bytes"):
            return value["bytes"]
        if value.get("path"):
            try:
                return Path(value["path"]).read_bytes()
            except OSError as exc:
                raise MatSegFormatError(f"cannot read the {what} file ({exc})", path=value["path"]) from None
    if hasattr(value, "save"):  # a PIL image
        import io

        buf = io.BytesIO()
        value.save(buf, format="PNG")
        return buf.getvalue()
    raise MatSegFormatError(f"the {what} is empty or not an image", path=source)


def _row_mask(value: Any, what: str, source: str) -> np.ndarray:
    """A row's mask image -> its pixels as stored (2-D: the gray values; colour: per-pixel any-channel)."""
    import io

    from PIL import Image, UnidentifiedImageError

    if isinstance(value, (list, np.ndarray)):  # an Array2D / nested-list column: the pixels themselves
        arr = np.asarray(value)
        if arr.ndim != 2:
            raise MatSegFormatError(f"the {what} is an array of shape {arr.shape}; expected [H, W]", path=source)
        return arr
    data = _encoded(value, what, source)
    try:
        with Image.open(io.BytesIO(data)) as im:
            arr = np.asarray(im)
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise MatSegFormatError(f"the {what} is corrupt ({exc})", path=source) from None
    if arr.ndim == 3:
        if arr.shape[2] >= 3 and np.array_equal(arr[:, :, 0], arr[:, :, 1]) and np.array_equal(arr[:, :, 0],
                                                                                                arr[:, :, 2]):
            return arr[:, :, 0]
        return np.any(arr[:, :, :3] != 0, axis=2).astype(np.uint8)
    return arr


def item_from_row(row: Mapping[str, Any], index: int = 0, source: str = "<row>") -> SegmentationItem:
    """A Hub row -> :class:`SegmentationItem`.

    ``masks`` (a list of binary masks: nonzero = inside) or ``mask`` (one label map: every nonzero value a region);
    ``image_id``, ``region_names`` and ``license`` when present (else the row index, the label values / ``""``,
    ``"unknown"``).

    Raises:
        MatSegFormatError: no mask, a mask of another size than the image, an empty mask, an unreadable image.
    """
    image_id = str(row.get("image_id") if row.get("image_id") is not None else index)
    where = f"{source} [row {image_id}]"
    image = decode_image(_encoded(row.get("image"), "image", where), where)
    shape = image.shape[:2]
    names: List[str]
    if row.get("masks") is not None:
        masks = []
        for k, value in enumerate(row["masks"]):
            m = _row_mask(value, f"mask {k}", where) != 0
            if m.shape != shape:
                raise MatSegFormatError(f"mask {k} is {m.shape[1]}x{m.shape[0]} but the image is {shape[1]}x{shape[0]}",
                                        path=where, field="masks")
            if not m.any():
                raise MatSegFormatError(f"mask {k} is empty", path=where, field="masks")
            masks.append(m)
        if not masks:
            raise MatSegFormatError("the row has no mask", path=where, field="masks")
        stack = np.stack(masks)
        names = [str(n) for n in (row.get("region_names") or [""] * len(masks))]
    elif row.get("mask") is not None:
        labels = _row_mask(row["mask"], "mask", where)
        if labels.shape != shape:
            raise MatSegFormatError(f"mask is {labels.shape[1]}x{labels.shape[0]} but the image is "
                                    f"{shape[1]}x{shape[0]}", path=where, field="mask")
        stack, values = label_regions(labels)
        if not values:
            raise MatSegFormatError("the label mask is empty (all 0)", path=where, field="mask")
        names = [str(v.item() if hasattr(v, "item") else v) for v in values]
    else:
        raise MatSegFormatError("the row has neither 'masks' nor 'mask'", path=where)
    if len(names) != len(stack):
        names = [""] * len(stack)
    return SegmentationItem(image_id=image_id, image=image, masks=stack, region_names=names,
                            license=str(row.get("license") or UNKNOWN_LICENSE), source=where)


def _iter_dataset(data: PathLike, split: str, skip_bad: bool, on_skip) -> Iterator[SegmentationItem]:
    from datasets import Image, List as DList

    ds = load_dataset_source(data, ("image",), split=split, streaming=True, what="segmentation dataset")
    columns = set(ds.features or {})
    if not {"mask", "masks"} & columns:
        raise MatSegFormatError("not a segmentation dataset: it has no 'masks' or 'mask' column", path=str(data))
    feature = (ds.features or {}).get("masks")
    if isinstance(feature, DList) and isinstance(feature.feature, Image):
        ds = ds.cast_column("masks", DList(Image(decode=False)))
    for index, row in enumerate(ds):
        try:
            item = item_from_row(row, index, source=str(data))
        except MatSegFormatError as exc:
            key = str(row.get("image_id") if row.get("image_id") is not None else index)
            skip_or_raise(exc, key, skip_bad=skip_bad, on_skip=on_skip, logger=logger)
            continue
        yield item


def load_segmentation(data: PathLike, *, format: Optional[str] = None, split: str = SPLIT, skip_bad: bool = False,
                      on_skip: Optional[Callable[[str, str], None]] = None,
                      limit: Optional[int] = None) -> Iterator[SegmentationItem]:
    """Iterate over a segmentation set from any source, one image at a time.

    Args:
        data: a raw folder (:mod:`.formats`; ``format`` or detected when unambiguous), a built dataset folder
            (Parquet + card), or a Hub dataset id whose rows have ``image`` and ``masks`` (list of binary masks) or
            ``mask`` (one label map: each nonzero value a region).
        format: the raw layout (``masks``, ``scenes``, ``labpics``, ``materialistic``); ignored for datasets.
        split: the dataset split (built folders and Hub ids).
        skip_bad: leave out bad images instead of raising; each is reported to ``on_skip(image_id, reason)``.
        limit: stop after this many items.

    Yields:
        :class:`SegmentationItem`: ``image`` uint8 [H, W, 3], ``masks`` bool [R, H, W] (R >= 1, none empty).

    Raises:
        MatSegInputError: a path that does not exist, or a dataset that cannot be loaded.
        MatSegFormatError: a folder that is no segmentation set, or a bad image (unless ``skip_bad``).
    """
    if limit is not None and limit < 0:
        raise MatSegInputError(f"limit must be >= 0, got {limit}")
    path = Path(data)
    if path.exists():
        if not path.is_dir():
            raise MatSegInputError(f"{path} is a file; expected a segmentation folder, a built dataset folder or a "
                                   "Hub dataset id")
        if is_built_dataset_folder(path) and format is None:
            items = _iter_dataset(path, split, skip_bad, on_skip)
        else:
            items = iter_segmentation_items(path, format, skip_bad=skip_bad, on_skip=on_skip)
    elif looks_like_repo_id(str(data)):
        items = _iter_dataset(str(data), split, skip_bad, on_skip)
    else:
        raise MatSegInputError(f"{data} does not exist: give a segmentation folder, a built dataset folder or a Hub "
                               "dataset id such as 'namespace/name'")
    yield from (items if limit is None else itertools.islice(items, limit))
