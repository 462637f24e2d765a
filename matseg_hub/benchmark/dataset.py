"""The MatSeg benchmark as a Hub dataset: features, builder, dataset card, preview, and loading any source.

``build_benchmark_dataset(raw_folder, output)`` turns the authors' raw layout into a Hub dataset repository
(Parquet shards under ``data/`` + ``README.md`` card + ``preview.jpg``). ``load_benchmark(source)`` iterates over
:class:`~matseg_hub.benchmark.format.BenchmarkItem` from a raw folder, a built dataset folder or a Hub dataset id.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable, Dict, Iterator, List, Optional, Union

import numpy as np

from .format import BenchmarkItem, iter_benchmark_items, list_benchmark_items
from ..citation import CITATION
from ..errors import MatSegFormatError, MatSegInputError
from ..hub.writer import (DatasetRepoWriter, dataset_card_yaml, is_built_dataset_folder, iter_job_items,
                          load_dataset_source, looks_like_repo_id, size_category)
from ..utils.logging import get_logger, progress

logger = get_logger(__name__)

PathLike = Union[str, os.PathLike]
SPLIT = "test"

# Group colours (RGB) for previews: distinct, readable on photos.
GROUP_COLOURS = [(230, 25, 75), (60, 180, 75), (255, 225, 25), (0, 130, 200), (245, 130, 48), (145, 30, 180),
                 (70, 240, 240), (240, 50, 230), (210, 245, 60), (250, 190, 212)]


def benchmark_features():
    """The rows' :class:`datasets.Features` (declared once; used for writing and reading)."""
    from datasets import Features, Image, List, Value

    point = {"x": Value("float64"), "y": Value("float64"), "radius": Value("float64")}
    return Features({
        "image": Image(),
        "image_id": Value("string"),
        "width": Value("int32"),
        "height": Value("int32"),
        "groups": List({"group_id": Value("string"), "points": List(point), "screen_points": List(point)}),
        "relations": Value("string"),
        "group_ids": List(Value("string")),
        "group_similarity": List(List(Value("float64"))),
        "orientation": Value("int32"),
        "license": Value("string"),
    })


FIELD_DESCRIPTIONS = {
    "image": "the photo, original encoded bytes (EXIF kept); `datasets` applies the EXIF orientation on decode, so "
             "the decoded image is in the frame of the points",
    "image_id": "the photo's file stem in the authors' release",
    "width": "width in pixels as displayed (after EXIF orientation)",
    "height": "height in pixels as displayed (after EXIF orientation)",
    "groups": "material-state groups: `group_id` and its `points` (`x`, `y`, `radius` in full-resolution displayed "
              "pixels; points of one group are in the same material state); `screen_points` is the annotation tool's "
              "screen frame (metadata only)",
    "relations": "the text of `group_relations.txt` as given (empty when absent): `(a,b)` = similarity 0.3, "
                 "`[a,b]` = 0.6",
    "group_ids": "group ids in the order of `group_similarity`'s rows and columns",
    "group_similarity": "dense ground-truth similarity between groups: 1 on the diagonal, 0.3 / 0.6 from the "
                        "relations, 0 otherwise",
    "orientation": "the photo's EXIF orientation tag (1 = none)",
    "license": "licence of the row (CC0 1.0)",
}


def preview_picture(item: BenchmarkItem, max_size: int = 700) -> bytes:
    """JPEG bytes of the photo (displayed frame, longer side ``max_size``) with its points drawn per group."""
    import cv2

    ev = item.for_evaluation(max_size=max_size)
    canvas = np.ascontiguousarray(ev.image[:, :, ::-1])  # BGR for cv2 drawing
    for (x, y, r), g in zip(ev.points, ev.point_groups):
        colour = GROUP_COLOURS[int(g) % len(GROUP_COLOURS)][::-1]
        cv2.circle(canvas, (int(x), int(y)), max(int(r), 2), colour, thickness=2, lineType=cv2.LINE_AA)
    y0 = 8
    for gi, gid in enumerate(ev.group_ids):
        colour = GROUP_COLOURS[gi % len(GROUP_COLOURS)][::-1]
        cv2.rectangle(canvas, (8, y0), (26, y0 + 18), colour, thickness=-1)
        cv2.putText(canvas, f"group {gid}", (32, y0 + 15), cv2.FONT_HERSHEY_SIMPLEX, 0.55, (255, 255, 255), 2, cv2.LINE_AA)
        y0 += 24
    ok, buf = cv2.imencode(".jpg", canvas, [cv2.IMWRITE_JPEG_QUALITY, 90])
    return buf.tobytes()


def dataset_card(features, split_info: Dict[str, int], skipped: List[Dict[str, str]], pretty_name: str = "MatSeg",
                 has_preview: bool = True) -> str:
    """The dataset card (``README.md``): YAML header, description, fields, usage, citation."""
    header = dataset_card_yaml(
        features, {SPLIT: split_info}, license="cc0-1.0", pretty_name=pretty_name,
        task_categories=["image-segmentation"], tags=["materials", "material-states", "zero-shot", "benchmark",
                                                       "point-annotations", "matseg"],
        size_category=size_category(split_info["num_examples"]))
    fields = "\n".join(f"| `{k}` | {v} |" for k, v in FIELD_DESCRIPTIONS.items())
    skipped_text = ""
    if skipped:
        lines = "\n".join(f"- `{s['key']}`: {s['reason']}" for s in skipped)
        skipped_text = f"\n## Items left out when this copy was built\n\n{lines}\n"
    preview = "![A photo with its points drawn per material-state group](preview.jpg)\n\n" if has_preview else ""
    return f"""{header}
# {pretty_name}: zero-shot material-state segmentation benchmark

{preview}Real photos of materials in many states (wet/dry soil, rust, infected leaves, foam, minerals, cooking
states, ...) annotated with points: points in the same **group** are in the same material state, and
`group_relations` give **partial similarity** between groups. The score is **triplet accuracy**: for an anchor
point, is a point of the same state more similar to it than a point of another state?

This copy has **{split_info["num_examples"]}** annotated photos in the `{SPLIT}` split, stored as Parquet shards
(the original JPEG bytes; EXIF orientation is applied when `datasets` decodes them).

## Fields

| field | description |
| --- | --- |
{fields}

## Usage

```python
from datasets import load_dataset

ds = load_dataset("<this repo or folder>", split="{SPLIT}")            # or streaming=True
row = ds[0]
row["image"]                 # PIL image, upright; points are in its pixels
row["groups"][0]["points"]   # [{{"x": ..., "y": ..., "radius": ...}}, ...]
```

Score a model with the triplet-accuracy metric (`pip install matseg-hub`):

```python
import evaluate
metric = evaluate.load("<namespace>/triplet_accuracy")   # the metric Space, or the folder metrics/triplet_accuracy
```

or from the command line: `matseg evaluate --data <this repo or folder> --model rgb`.

Evaluation resizes photos so that the longer side is 700 px (`cv2.resize`, bilinear) and rounds point
coordinates half-to-even, as the authors' evaluation does (`matseg_hub.benchmark.format.resize_for_evaluation`).

## Licence

CC0 1.0 (public domain), every row.
{skipped_text}
## Citation

```bibtex
{CITATION}
```
"""


def benchmark_item_fingerprints(source: PathLike, image_ids: List[str]) -> List[tuple]:
    """``(image_id, fingerprint)`` of each item: names, sizes and times of its photo and annotation files."""
    from ..utils.files import files_fingerprint

    source = Path(source)
    photos: Dict[str, List[Path]] = {}
    if (source / "images").is_dir():
        for path in (source / "images").iterdir():
            photos.setdefault(path.stem, []).append(path)
    return [(i, files_fingerprint([source / "data" / i, *photos.get(i, [])])) for i in image_ids]


def build_benchmark_dataset(source: PathLike, output: PathLike, *, max_shard_size: Union[int, str] = "500MB",
                            skip_bad: bool = False, allow_pickle: bool = False, shard_index: int = 0,
                            num_shards: int = 1, resume: bool = True, overwrite: bool = False,
                            pretty_name: str = "MatSeg",
                            on_progress: Optional[Callable[[int, int], None]] = None) -> Optional[Path]:
    """Build a Hub dataset folder from a raw benchmark folder, streaming one photo at a time.

    Args:
        source: raw benchmark folder (``images/``, ``data/``).
        output: the dataset folder to create (built in ``<output>.partial``, moved in place at the end). An
            existing folder must be empty or an earlier output of this builder (see ``overwrite``).
        max_shard_size: Parquet shard size bound (bytes or ``"500MB"``).
        skip_bad: report and leave out bad items (listed in the card) instead of stopping at the first one.
        allow_pickle: read ``data.pkl`` where ``data.json`` is absent (pickles can run code: trusted data only).
        shard_index, num_shards: this job's part of a job array (``--shard i --num-shards n``).
        resume: continue an interrupted build from its closed shards (those whose photos and annotations are
            unchanged since; the others are redone).
        overwrite: rebuild over a finished output of this builder (replacing only the files it wrote).

    Returns:
        the finished folder, or ``None`` if other jobs of the array are still running.

    Raises:
        MatSegFormatError: a bad item when ``skip_bad`` is False (the output folder is left untouched).
        MatSegOutputError: ``output`` is not empty and not this builder's output, overlaps ``source``, is being
            built by another process, or cannot be written.
    """
    source = Path(source)
    ids = list_benchmark_items(source)
    job_ids = list(iter_job_items(ids, shard_index, num_shards))
    features = benchmark_features()
    with DatasetRepoWriter(output, features, split=SPLIT, max_shard_size=max_shard_size, row_group_size=16,
                           shard_index=shard_index, num_shards=num_shards, resume=resume, kind="build benchmark",
                           sources=[source], overwrite=overwrite,
                           inputs=benchmark_item_fingerprints(source, job_ids)) as writer:
        todo = [i for i in job_ids if i not in writer.done_keys]
        items = iter_benchmark_items(source, todo, allow_pickle=allow_pickle, skip_bad=skip_bad, on_skip=writer.skip)
        for n, item in enumerate(progress(items, total=len(todo), desc="building benchmark", unit="img")):
            writer.write(item.to_row(), key=item.image_id)
            if on_progress is not None:
                on_progress(n + 1, len(todo))
        writer.close_nonempty("no usable annotated photo; nothing to build", source)

        def preview() -> Dict[str, bytes]:  # from the whole source, so any split or resume draws the same one
            first = next(iter_benchmark_items(source, ids, allow_pickle=allow_pickle, skip_bad=True), None)
            return {"preview.jpg": preview_picture(first)} if first is not None else {}

        return writer.finalize(lambda info, skipped: dataset_card(features, info, skipped, pretty_name=pretty_name,
                                                                  has_preview=True), extra_files=preview)


# ----------------------------------------------------------------------------------------------------------------
# loading from any source
# ----------------------------------------------------------------------------------------------------------------
def is_raw_benchmark_folder(path: PathLike) -> bool:
    path = Path(path)
    return (path / "data").is_dir() and (path / "images").is_dir()


def _not_a_benchmark_folder(path: Path) -> MatSegFormatError:
    hint = ""
    children = [c for c in sorted(path.iterdir()) if c.is_dir() and (is_raw_benchmark_folder(c)
                                                                        or is_built_dataset_folder(c))]
    if children:
        hint = f"; did you mean {children[0]}?"
    elif path.name in ("images", "data") and is_raw_benchmark_folder(path.parent):
        hint = f"; did you mean {path.parent}?"
    return MatSegFormatError("not a MatSeg benchmark: expected a raw folder (images/<stem>.jpg + data/<stem>/"
                             "data.json) or a built dataset folder (README.md + data/*.parquet)" + hint, path=path)


def load_benchmark(source: Optional[PathLike] = None, *, split: str = SPLIT, allow_pickle: bool = False,
                   streaming: bool = True, skip_bad: bool = False,
                   on_skip: Optional[Callable[[str, str], None]] = None) -> Iterator[BenchmarkItem]:
    """Iterate over benchmark photos from any source, one at a time.

    Args:
        source: a raw benchmark folder (``images/`` + ``data/``), a built dataset folder (Parquet + card), or a
            Hub dataset id (``"<namespace>/matseg"``). ``None``: the built-in sample.
        split: the dataset split (built folders and Hub ids).
        streaming: stream built/Hub datasets instead of preparing an Arrow cache.
        skip_bad: in a raw folder, leave out items that fail validation instead of raising; each is reported
            to ``on_skip(image_id, reason)`` and logged.

    Yields:
        :class:`~matseg_hub.benchmark.format.BenchmarkItem`, images as their original encoded bytes.

    Raises:
        MatSegInputError: a path that does not exist, or a dataset that cannot be loaded.
        MatSegFormatError: a folder that is not a benchmark, or a bad item (unless ``skip_bad``).
    """
    from .format import builtin_benchmark_dir

    if source is None:
        source = builtin_benchmark_dir()
    path = Path(source)
    if path.exists():
        if not path.is_dir():
            raise MatSegInputError(f"{path} is a file; expected a benchmark folder, a dataset folder or a Hub id")
        if is_raw_benchmark_folder(path):
            yield from iter_benchmark_items(path, allow_pickle=allow_pickle, skip_bad=skip_bad, on_skip=on_skip)
            return
        if not is_built_dataset_folder(path):
            raise _not_a_benchmark_folder(path)
    elif not looks_like_repo_id(str(source)):
        raise MatSegInputError(f"{source} does not exist: give a raw benchmark folder, a built dataset folder or a "
                               f"Hub dataset id such as 'namespace/matseg'")
    ds = load_dataset_source(source, ("image", "image_id", "groups", "group_similarity"), split=split,
                             streaming=streaming, what="MatSeg benchmark dataset")
    for row in ds:
        yield BenchmarkItem.from_row(row)
