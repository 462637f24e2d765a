"""The resumable, parallel texture-extraction run over a folder of photos (``matseg generate textures``).

:func:`extract_textures_folder` runs :func:`~matseg_hub.materials.textures.extract_textures` on every photo of a
folder, in a pool of worker processes, writes each texture as a JPEG named after its source, score and cell size,
records each finished photo (a rerun skips it), writes ``metadata.csv`` with a licence per texture, and a preview.
"""

from __future__ import annotations

import csv
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple, Union

import numpy as np

from ..errors import MatSegError, MatSegInputError
from ..utils.files import check_run_params
from ..utils.images import encode_image, image_grid, list_images
from ..utils.launchers import fault_point
from ..utils.licenses import license_for, load_license_map
from ..utils.logging import get_logger
from .textures import (DEFAULT_CELL_SIZE, DEFAULT_MAX_IMAGE_SIZE, DEFAULT_MAX_TEXTURES, DEFAULT_MIN_CELLS,
                       DEFAULT_SIM_THRESHOLD, extract_textures, validate_extraction_params)

logger = get_logger(__name__)

PathLike = Union[str, os.PathLike]

_DONE_DIR = ".done"
METADATA_FIELDS = ("file", "source_id", "source_file", "index", "score", "cell_size", "x", "y", "size", "license")


@dataclass
class ExtractionRunReport:
    """Summary of :func:`extract_textures_folder`."""

    num_images: int = 0
    num_processed: int = 0
    num_resumed: int = 0
    num_textures: int = 0
    no_texture: List[Tuple[str, str]] = field(default_factory=list)  # (file, reason)
    failed: List[Tuple[str, str]] = field(default_factory=list)  # (file, error)
    preview: Optional[Path] = None


def _extract_one(task: Tuple[str, str, str, Dict[str, Any]]) -> Dict[str, Any]:
    """Worker: one photo -> texture files (atomic) + its done record (written last)."""
    from ..utils.files import atomic_write_bytes, atomic_write_text
    from ..utils.images import read_image

    path, out_dir, license, params = task
    path_, out = Path(path), Path(out_dir)
    record: Dict[str, Any] = {"source_file": path_.name, "source_id": path_.stem, "license": license,
                              "textures": [], "reason": None, "error": None}
    try:
        image = read_image(path_)
        result = extract_textures(image, path_.stem, license=license, **params)
    except MatSegError as exc:  # not recorded as done: a rerun retries the photo (e.g. once the file is fixed)
        record["error"] = str(exc)
        return record
    record["reason"] = result.reason
    record["num_candidates"] = result.num_candidates
    record["num_textureless"] = result.num_textureless
    for t in result.textures:
        atomic_write_bytes(out / t.file_name, encode_image(t.image))
        record["textures"].append({"file": t.file_name, "index": t.index, "score": t.score,
                                   "cell_size": t.cell_size, "x": t.box[0], "y": t.box[1], "size": t.box[2]})
    atomic_write_text(out / _DONE_DIR / (path_.name + ".json"), json.dumps(record))
    return record


def _is_done(done_file: Path) -> bool:
    """A photo is done when its record exists and is not a failure (records of older versions could be)."""
    try:
        return not json.loads(done_file.read_text()).get("error")
    except (OSError, ValueError, AttributeError):
        return False


def extract_textures_folder(input_dir: PathLike, output_dir: PathLike, *, cell_size: int = DEFAULT_CELL_SIZE,
                            min_cells: int = DEFAULT_MIN_CELLS, sim_threshold: float = DEFAULT_SIM_THRESHOLD,
                            max_image_size: Optional[int] = DEFAULT_MAX_IMAGE_SIZE,
                            max_textures: int = DEFAULT_MAX_TEXTURES, one_per_region: bool = True,
                            reject_textureless: bool = True, reference_geometry: bool = False, workers: int = 1,
                            preview: Optional[PathLike] = None,
                            shard_index: int = 0, num_shards: int = 1, show_progress: Optional[bool] = None
                            ) -> ExtractionRunReport:
    """Extract the textures of every photo of a folder into a texture folder; resumable and parallel.

    Output (``output_dir``): the textures as ``<source>_<i>_Score_<s>_TileSize<c>_Texture.jpg`` (the authors'
    naming), ``metadata.csv`` (one row per texture: file, source id and file, index, score, cell size, box,
    licence; rewritten from every finished photo at the end of each run or job), ``.done/<photo>.json`` per finished
    photo (written after its textures, so a rerun skips exactly the finished photos) and ``.matseg_run.json`` (the
    extraction parameters, :func:`check_run_params`). Photos with no texture are done (their reason is recorded);
    unreadable photos are reported in :attr:`ExtractionRunReport.failed`, never fatal, and not recorded as done, so
    a rerun retries them. Results do not depend on ``workers``.

    Raises:
        MatSegInputError: before any work, for a parameter out of range (:func:`validate_extraction_params`), bad
            shard arguments, or an output folder started with other extraction parameters.

    Args:
        input_dir: folder of photos; an optional ``licenses.json``/``metadata.csv`` in it gives each photo's
            licence (see :func:`load_license_map`), carried into every texture; otherwise ``"unknown"``.
        output_dir: the texture folder to fill.
        workers: processes (``multiprocessing``); 1 runs in this process.
        preview: write a grid picture of (up to 36) textures there (PNG/JPEG by extension).
        shard_index, num_shards: process every ``num_shards``-th photo from ``shard_index`` (a job array).
        other arguments: see :func:`extract_textures`.
    """
    from ..hub.writer import check_job, iter_job_items
    from ..utils.files import atomic_write_bytes
    from ..utils.logging import progress

    validate_extraction_params(cell_size=cell_size, min_cells=min_cells, sim_threshold=sim_threshold,
                               max_image_size=max_image_size, max_textures=max_textures)
    check_job(shard_index, num_shards)
    if workers < 1:
        raise MatSegInputError(f"workers must be >= 1, got {workers}")
    input_dir, output_dir = Path(input_dir), Path(output_dir)
    photos = list(iter_job_items(list_images(input_dir), shard_index, num_shards))
    licenses = load_license_map(input_dir)
    params = dict(cell_size=cell_size, min_cells=min_cells, sim_threshold=sim_threshold,
                  max_image_size=max_image_size, max_textures=max_textures, one_per_region=one_per_region,
                  reject_textureless=reject_textureless, reference_geometry=reference_geometry)
    check_run_params(output_dir, "textures", params)
    (output_dir / _DONE_DIR).mkdir(parents=True, exist_ok=True)
    report = ExtractionRunReport(num_images=len(photos))
    todo = [p for p in photos if not _is_done(output_dir / _DONE_DIR / (p.name + ".json"))]
    report.num_resumed = len(photos) - len(todo)
    if report.num_resumed:
        logger.info("resuming: %d of %d photos already done", report.num_resumed, len(photos))
    tasks = [(str(p), str(output_dir), license_for(p.name, licenses), params) for p in todo]
    bar_kw = dict(total=len(tasks), desc="extracting textures", unit="img",
                  disable=None if show_progress is None else not show_progress)
    if workers > 1 and len(tasks) > 1:
        from ..utils.workers import worker_pool

        with worker_pool(min(workers, len(tasks)), start_method="spawn") as pool:
            for rec in progress(pool.imap_unordered(_extract_one, tasks), **bar_kw):
                fault_point()  # test-only fault injection (matseg_hub.utils.launchers); a no-op otherwise
                report.num_processed += 1
                if rec.get("error"):
                    report.failed.append((rec["source_file"], rec["error"]))
    else:
        for task in progress(tasks, **bar_kw):
            rec = _extract_one(task)
            fault_point()  # test-only fault injection (matseg_hub.utils.launchers); a no-op otherwise
            report.num_processed += 1
            if rec.get("error"):
                report.failed.append((rec["source_file"], rec["error"]))
    report.failed.sort()
    # metadata.csv from every finished photo of the output folder (this job's, earlier runs', other jobs'), so the
    # job that finishes last writes the complete table; the report counts this job's photos
    mine = {p.name for p in photos}
    rows: List[Dict[str, Any]] = []
    for done in sorted((output_dir / _DONE_DIR).glob("*.json")):
        try:
            rec = json.loads(done.read_text())
        except (OSError, ValueError):  # a record being replaced by another job right now
            continue
        if rec.get("error"):  # a failure recorded by an older version: retried by the next run, not a result
            continue
        if rec["source_file"] in mine:
            if not rec["textures"]:
                report.no_texture.append((rec["source_file"], rec.get("reason") or "no texture"))
            report.num_textures += len(rec["textures"])
        for t in rec["textures"]:
            rows.append({"file": t["file"], "source_id": rec["source_id"], "source_file": rec["source_file"],
                         "index": t["index"], "score": f"{t['score']:.6f}", "cell_size": t["cell_size"],
                         "x": t["x"], "y": t["y"], "size": t["size"], "license": rec["license"]})
    _write_metadata_csv(output_dir / "metadata.csv", rows)
    for f, reason in report.no_texture:
        logger.info("no texture in %s: %s", f, reason)
    for f, err in report.failed:
        logger.warning("could not read %s: %s", f, err)
    if preview is not None:
        ims, labels = [], []
        from ..utils.images import read_image

        for r in sorted(rows, key=lambda r: r["file"])[:36]:
            try:
                ims.append(read_image(output_dir / r["file"]))
            except MatSegError:
                continue
            labels.append(f"{float(r['score']):.2f}")
        grid = image_grid(ims, labels=labels) if ims else np.full((64, 64, 3), 255, np.uint8)
        ext = Path(preview).suffix.lower() or ".png"
        atomic_write_bytes(preview, encode_image(grid, ".png" if ext not in (".jpg", ".jpeg") else ".jpg"))
        report.preview = Path(preview)
    return report


def _write_metadata_csv(path: Path, rows: List[Dict[str, Any]]) -> None:
    """Write ``metadata.csv`` (one row per texture, sorted by file name) atomically."""
    import io

    from ..utils.files import atomic_write_text

    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(METADATA_FIELDS), extrasaction="ignore")
    writer.writeheader()
    writer.writerows(sorted(rows, key=lambda r: r["file"]))
    atomic_write_text(path, buf.getvalue())
