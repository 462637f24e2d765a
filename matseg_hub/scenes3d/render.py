"""Render :class:`~matseg_hub.scenes3d.scene.Scene3D` scenes with Blender worker processes, in the official layout.

* :func:`prepare_job` — resolve a scene's files for the worker: pattern maps rendered to 16-bit PNGs, textures
  turned into PBR maps (:func:`matseg_hub.materials.pbr.texture_to_pbr`), PBR folders' maps located.
* :class:`BlenderWorker` — one persistent ``blender_worker.py --serve`` subprocess (Blender starts once).
* :func:`finish_scene` — worker output (``rgb.png``, AOV ``passes.npz``, ``camera.json``) -> masks, occlusion check,
  scene folder written by :func:`matseg_hub.synthetic.layout.write_scene` (``Finished.txt`` last).
* :func:`render_scene` — one scene, start to end; :func:`generate_3d` — a resumable run over many scenes with a
  pool of workers, progress with ETA, and a preview grid (:func:`preview_grid`).

Parallel runs are safe: every job renders in its own private folder under ``<output>/.matseg-work/`` and scene
folders appear complete (temporary sibling renamed into place, ``Finished.txt`` last); finished scenes are
skipped on the next run and unfinished ones redone.
"""

from __future__ import annotations

import concurrent.futures as cf
import json
import os
import shutil
import socket
import subprocess
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Union

import numpy as np

from ..errors import MatSegError, MatSegFormatError, MatSegInputError
from ..utils.files import claim_output_folder, pid_alive
from ..utils.images import swap_rb
from ..utils.launchers import available_cpus
from ..utils.logging import get_logger, progress
from .blender_env import DONE_MARK, WORKER_SCRIPT, require_blender_python, worker_env

logger = get_logger(__name__)

PathLike = Union[str, os.PathLike]
WORK_DIR = ".matseg-work"
SCENE_FILE = "scene3d.json"
GENERATOR_NAME = "matseg_hub.render3d"  # the ``generator``/``source`` of rendered scenes
MIN_VISIBLE_FRACTION = 0.001  # a material needs this share of the image (at mask >= 0.5) to be kept
MIN_VISIBLE_MATERIALS = 2  # a scene with fewer visible materials teaches nothing: it is redrawn


class HiddenMaterialsError(MatSegError):
    """Fewer than ``MIN_VISIBLE_MATERIALS`` materials are visible (occluded, out of view, or a pattern that lands on
    nothing visible); the scene is redrawn."""


class WorkerError(MatSegError):
    """The Blender worker failed on a scene (its message and the scene are named)."""


def scene_folder_name(index: int) -> str:
    return f"{int(index):06d}"


# ---------------------------------------------------------------------------------------------------------------
# preparing a job
# ---------------------------------------------------------------------------------------------------------------
def _write_png(path: Path, array: np.ndarray) -> str:
    import cv2

    if array.ndim == 3:
        array = swap_rb(array)
    if not cv2.imwrite(str(path), array, [cv2.IMWRITE_PNG_COMPRESSION, 1]):
        raise MatSegError(f"cannot write {path}")
    return str(path)


def _unit16(a: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(np.asarray(a, np.float32) * 65535.0), 0, 65535).astype(np.uint16)


def _unit8(a: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(np.asarray(a, np.float32) * 255.0), 0, 255).astype(np.uint8)


def _texture_maps(mat: Dict[str, Any], folder: Path, tag: str, max_side: int = 512) -> Dict[str, str]:
    import cv2

    from ..materials.pbr import texture_to_pbr
    from .scene import load_source_image

    tex = load_source_image(mat["path"])
    h, w = tex.shape[:2]
    if max(h, w) > max_side:
        r = max_side / max(h, w)
        tex = cv2.resize(tex, (max(2, int(w * r)), max(2, int(h * r))), interpolation=cv2.INTER_AREA)
    pbr = texture_to_pbr(np.ascontiguousarray(tex), seed=int(mat["recipe_seed"]), source=mat["path"],
                         license=mat.get("licence") or "unknown")
    return {"albedo": _write_png(folder / f"{tag}_albedo.png", pbr.albedo),
            "roughness": _write_png(folder / f"{tag}_roughness.png", _unit8(pbr.roughness)),
            "metallic": _write_png(folder / f"{tag}_metallic.png", _unit8(pbr.metallic)),
            "height": _write_png(folder / f"{tag}_height.png", _unit8(pbr.height))}


def _pbr_folder_maps(path: str) -> Dict[str, str]:
    folder = Path(path)
    if not folder.is_dir():
        raise MatSegFormatError("PBR material folder not found", path=folder)
    names = {"albedo": ("OriginColor", "Color", "BaseColor", "Albedo"), "roughness": ("Roughness",),
             "metallic": ("Metallic",), "height": ("Height", "Displacement")}
    files = {p.stem.lower(): p for p in folder.iterdir() if p.is_file()
             and p.suffix.lower() in (".jpg", ".jpeg", ".png", ".tif", ".tiff", ".exr", ".bmp")}
    out = {}
    for key, stems in names.items():
        for stem in stems:
            if stem.lower() in files:
                out[key] = str(files[stem.lower()].resolve())
                break
    if "albedo" not in out:
        raise MatSegFormatError("no albedo map (OriginColor.jpg) in the PBR folder", path=folder)
    return out


def _resolve_material(mat: Dict[str, Any], folder: Path, tag: str) -> None:
    if mat["kind"] == "texture":
        mat["maps"] = _texture_maps(mat, folder, tag)
    elif mat["kind"] == "pbr":
        mat["maps"] = _pbr_folder_maps(mat["path"])
    else:
        mat["maps"] = {}


def prepare_job(scene, folder: PathLike, threads: int = 1) -> Path:
    """Write ``folder/job.json`` (and the files it names) for the Blender worker; return its path.

    Pattern maps are rendered from their recorded parameters (:func:`matseg_hub.scenes3d.scene.pattern_image`) to 16-bit
    PNGs; ``texture`` materials become PBR maps with their ``recipe_seed``; built-in photos used as environments
    are written as PNG. Everything is deterministic in the scene.
    """
    from .scene import load_source_image, pattern_image

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    data = scene.to_dict()
    for group in ("objects", "occluders"):
        for oi, (spec, obj) in enumerate(zip(data[group], getattr(scene, group))):
            if spec.get("path"):
                spec["path"] = str(Path(spec["path"]).resolve())
            for k, mat in enumerate(spec["layout"]["materials"]):
                _resolve_material(mat, folder, f"{group}{oi}_m{k}")
            for j, (pat, layer) in enumerate(zip(spec["layout"]["patterns"], obj.layout.patterns)):
                pat["map_file"] = _write_png(folder / f"{group}{oi}_pattern{j}.png", _unit16(pattern_image(layer)))
    _resolve_material(data["ground"]["material"], folder, "ground")
    env = data["environment"]
    if env["kind"] in ("image", "hdri") and env["path"]:
        if env["path"].startswith("skimage:"):
            env["path"] = _write_png(folder / "environment.png", load_source_image(env["path"]))
        else:
            env["path"] = str(Path(env["path"]).resolve())
    path = folder / "job.json"
    path.write_text(json.dumps({"scene": data, "threads": int(threads)}), encoding="utf-8")
    return path


# ---------------------------------------------------------------------------------------------------------------
# the worker process
# ---------------------------------------------------------------------------------------------------------------
class BlenderWorker:
    """A persistent Blender worker subprocess (``python blender_worker.py --serve``).

    ``render(job, out_dir)`` sends one job and waits for its result dict (timings); a crashed worker is restarted
    on the next call. Use as a context manager or call :meth:`close`.
    """

    def __init__(self, python: Optional[str] = None, log_file: Optional[PathLike] = None):
        self.python = require_blender_python(python)
        self.log_file = Path(log_file) if log_file else None
        self.proc: Optional[subprocess.Popen] = None

    def _start(self) -> None:
        log = open(self.log_file, "ab") if self.log_file else subprocess.DEVNULL
        try:
            self.proc = subprocess.Popen([self.python, str(WORKER_SCRIPT), "--serve"], stdin=subprocess.PIPE,
                                         stdout=subprocess.PIPE, stderr=log, text=True, bufsize=1,
                                         env=worker_env())
        finally:
            if log is not subprocess.DEVNULL:
                log.close()

    def render(self, job: PathLike, out_dir: PathLike) -> Dict[str, Any]:
        if self.proc is None or self.proc.poll() is not None:
            self._start()
        proc = self.proc
        try:
            proc.stdin.write(json.dumps({"job": str(job), "out": str(out_dir)}) + "\n")
            proc.stdin.flush()
        except (BrokenPipeError, OSError) as exc:
            self.close()
            raise WorkerError(f"the Blender worker died before taking {job}: {exc}") from None
        tail: List[str] = []
        for line in proc.stdout:
            if line.startswith(DONE_MARK):
                result = json.loads(line[len(DONE_MARK):])
                if not result.get("ok"):
                    logger.debug("worker traceback:\n%s", result.get("traceback", ""))
                    raise WorkerError(f"Blender failed on {job}: {result.get('error')}")
                return result
            tail = (tail + [line.rstrip()])[-5:]
        code = proc.wait()
        self.proc = None
        raise WorkerError(f"the Blender worker exited (code {code}) while rendering {job}; last output: "
                          f"{' | '.join(tail)}" + (f"; log: {self.log_file}" if self.log_file else ""))

    def close(self) -> None:
        proc, self.proc = self.proc, None
        if proc is None:
            return
        try:
            proc.stdin.close()
        except OSError:
            pass
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


# ---------------------------------------------------------------------------------------------------------------
# from worker output to a scene folder
# ---------------------------------------------------------------------------------------------------------------
def read_render_output(out_dir: PathLike) -> Dict[str, Any]:
    """The worker's files: ``rgb`` uint8 [H, W, 3], ``passes`` {name: float32 [H, W]}, ``camera`` dict, ``result``."""
    from ..utils.images import read_image

    out_dir = Path(out_dir)
    result_file = out_dir / "result.json"
    if not result_file.is_file():
        raise MatSegFormatError("no result.json: the render did not finish", path=out_dir)
    with np.load(out_dir / "passes.npz") as npz:
        passes = {k: np.asarray(npz[k], dtype=np.float32) for k in npz.files}
    return {"rgb": read_image(out_dir / "rgb.png"), "passes": passes,
            "camera": json.loads((out_dir / "camera.json").read_text(encoding="utf-8")),
            "result": json.loads(result_file.read_text(encoding="utf-8"))}


def scene_masks(scene, passes: Dict[str, np.ndarray], min_visible_fraction: float = MIN_VISIBLE_FRACTION):
    """Masks of the visible materials from the AOV passes.

    Returns ``(masks float32 [K, H, W], annotated float32 [H, W], materials)`` where ``materials`` lists, for every
    material of every annotated object with its own layout (:attr:`Scene3D.layout_owners`), its name, visible pixel count (mask >= 0.5) and whether it was kept.
    A material whose visible area is below ``min_visible_fraction`` of the image (hidden by occluders or out of
    view) is dropped and its pixels leave the annotated region.
    """
    annotated = np.clip(passes["annotated"], 0.0, 1.0)
    h, w = annotated.shape
    min_pixels = max(4, int(round(min_visible_fraction * h * w)))
    kept, info, dropped = [], [], np.zeros((h, w), np.float32)
    for oi, obj in enumerate(scene.layout_owners):
        for k, mat in enumerate(obj.layout.materials):
            m = np.clip(passes.get(f"m{oi}_{k}", np.zeros((h, w), np.float32)), 0.0, 1.0)
            visible = int(np.count_nonzero(m >= 0.5))
            keep = visible >= min_pixels
            info.append({"object": obj.name, "material": mat.name, "kind": mat.kind, "path": mat.path,
                         "visible_pixels": visible, "kept": keep, "mask": None})
            if keep:
                info[-1]["mask"] = len(kept)
                kept.append(m)
            else:
                dropped += m
    annotated = np.clip(annotated - dropped, 0.0, 1.0)
    masks = np.stack(kept) if kept else np.zeros((0, h, w), np.float32)
    return masks.astype(np.float32), annotated.astype(np.float32), info


def finish_scene(scene, render_dir: PathLike, folder: PathLike, *,
                 min_visible_fraction: float = MIN_VISIBLE_FRACTION, min_materials: int = MIN_VISIBLE_MATERIALS,
                 extra_metadata: Optional[Dict] = None) -> Path:
    """Write the official scene folder from the worker's output (see :func:`scene_masks`).

    Files: ``RGB__RGB.jpg``, ``maskNNN.png`` (visible materials, in scene order), ``ObjectMaskOcluded.png``,
    ``CameraParameters.json``, ``scene3d.json`` (the scene, to re-render it), ``scene_metadata.json`` (seed, index,
    attempt, per-material visibility, licences) and ``Finished.txt`` last. Every file depends only on the scene
    (no wall-clock timings: :func:`render_scene` returns them), so the same seed gives the same bytes.

    Raises:
        HiddenMaterialsError: when fewer than ``min_materials`` materials are visible (nothing is written).
    """
    from ..synthetic.layout import CAMERA_FILE, SyntheticScene, write_scene

    out = read_render_output(render_dir)
    masks, annotated, materials = scene_masks(scene, out["passes"], min_visible_fraction)
    if masks.shape[0] < max(1, int(min_materials)):
        raise HiddenMaterialsError(f"scene {scene.index} (attempt {scene.attempt}): {masks.shape[0]} material(s) "
                                   f"visible of {len(materials)}, fewer than {max(1, int(min_materials))}")
    if out["rgb"].shape[:2] != annotated.shape:
        raise MatSegFormatError(f"RGB is {out['rgb'].shape[:2]} but the passes are {annotated.shape}", path=render_dir)
    meta = {"generator": GENERATOR_NAME, "renderer": f"Blender {out['result'].get('blender')} Cycles (CPU)",
            "seed": scene.seed, "index": scene.index, "attempt": scene.attempt, "scene_file": SCENE_FILE,
            "num_materials": int(masks.shape[0]), "materials": materials,
            "dropped_materials": sum(not m["kept"] for m in materials),
            "licences": scene.asset_licenses(),
            "render": {"width": scene.render.width, "height": scene.render.height, "samples": scene.render.samples,
                       "denoise": scene.render.denoise}}
    meta.update(extra_metadata or {})
    synthetic = SyntheticScene(rgb=out["rgb"], masks=masks, annotated=annotated, metadata=meta)
    return write_scene(folder, synthetic, extra_files={
        CAMERA_FILE: json.dumps(out["camera"], indent=1).encode("utf-8"),
        SCENE_FILE: scene.to_json().encode("utf-8")})


# ---------------------------------------------------------------------------------------------------------------
# runs
# ---------------------------------------------------------------------------------------------------------------
@dataclass
class SceneResult:
    index: int
    folder: Optional[str]
    attempt: int = 0
    timings: Dict[str, float] = field(default_factory=dict)
    error: Optional[str] = None


def render_scene(scene, folder: PathLike, *, worker: Optional[BlenderWorker] = None, work_dir: Optional[PathLike] = None,
                 threads: Optional[int] = None, keep_work: bool = False,
                 min_visible_fraction: float = MIN_VISIBLE_FRACTION, min_materials: int = MIN_VISIBLE_MATERIALS,
                 extra_metadata: Optional[Dict] = None) -> Dict[str, float]:
    """Render one scene into ``folder`` (official layout); returns timings in seconds
    (``sample_s`` is added by callers, ``prepare_s``, ``build_s``, ``render_s``, ``write_s``, ``finish_s``).
    Timings are not written into ``folder`` (its files are deterministic); :func:`generate_3d` reports them in
    :attr:`GenerationReport.rendered` and logs them at debug level.

    ``work_dir``: a private temporary folder (default: a new one beside ``folder``), removed afterwards unless
    ``keep_work``. A ``worker`` is started (and closed) when none is given. ``min_materials`` and
    ``extra_metadata`` go to :func:`finish_scene` (which raises :class:`HiddenMaterialsError`).
    """
    folder = Path(folder)
    own_worker = worker is None
    worker = worker or BlenderWorker()
    tmp = Path(work_dir) if work_dir else folder.parent / WORK_DIR / f"{folder.name}.{uuid.uuid4().hex[:8]}"
    try:
        t0 = time.perf_counter()
        job = prepare_job(scene, tmp / "job", threads=threads or available_cpus())
        t1 = time.perf_counter()
        result = worker.render(job, tmp / "render")
        t2 = time.perf_counter()
        timings = {"prepare_s": t1 - t0, **result.get("timings", {}), "worker_s": t2 - t1}
        finish_scene(scene, tmp / "render", folder, min_visible_fraction=min_visible_fraction,
                     min_materials=min_materials, extra_metadata=extra_metadata)
        timings["finish_s"] = time.perf_counter() - t2
        return timings
    finally:
        if own_worker:
            worker.close()
        if not keep_work:
            shutil.rmtree(tmp, ignore_errors=True)


@dataclass
class GenerationReport:
    output: str
    rendered: List[SceneResult]
    skipped: List[int]
    failed: List[SceneResult]
    seconds: float
    preview: Optional[str] = None

    def summary(self) -> str:
        n = len(self.rendered)
        per = (sum(sum(v for k, v in r.timings.items() if k in ("sample_s", "prepare_s", "worker_s", "finish_s"))
                   for r in self.rendered) / n) if n else 0.0
        return (f"{n} scene(s) rendered, {len(self.skipped)} already finished, {len(self.failed)} failed, "
                f"{self.seconds:.1f} s wall, {per:.2f} s per scene per worker -> {self.output}")


def _clean_stale_work(root: Path) -> None:
    """Remove work folders of runs on this host whose process is gone (killed runs)."""
    work = root / WORK_DIR
    if not work.is_dir():
        return
    host = socket.gethostname()
    for d in work.iterdir():
        parts = d.name.split("-")
        if len(parts) >= 3 and "-".join(parts[:-2]) == host and parts[-2].isdigit() and not pid_alive(int(parts[-2])):
            shutil.rmtree(d, ignore_errors=True)


def pending_indices(output: PathLike, indices: Sequence[int]) -> List[int]:
    """The indices whose scene folder is not finished (``Finished.txt`` missing)."""
    from ..synthetic.layout import is_complete_scene

    return [i for i in indices if not is_complete_scene(Path(output) / scene_folder_name(i))]


def generate_3d(output: PathLike, num: int, seed: int = 0, *, start: int = 0, assets=None, config=None,
                workers: int = 1, threads: Optional[int] = None, blender_python: Optional[str] = None,
                shard: int = 0, num_shards: int = 1, max_attempts: int = 5, preview: bool = True,
                min_visible_fraction: float = MIN_VISIBLE_FRACTION, show_progress: Optional[bool] = None,
                sources: Sequence[Optional[PathLike]] = ()) -> GenerationReport:
    """Render scenes ``start .. start + num - 1`` (those of shard ``shard`` of ``num_shards``) into
    ``output/<index:06d>/``; resumable.

    Each scene is :func:`~matseg_hub.scenes3d.scene.sample_scene` ``(seed, index, assets, config, attempt)``; when fewer
    than two of its materials are visible it is redrawn with the next ``attempt`` (up to ``max_attempts``; the
    scene's metadata lists the redrawn attempts under ``redraws``, and a scene still hidden after them fails).
    Finished scenes are skipped, unfinished ones redone. ``workers`` Blender processes run at once with ``threads``
    CPU threads each (default: the CPUs this process may use / workers; under a launcher, the CPUs its task
    reserved: :func:`~matseg_hub.utils.launchers.available_cpus`). Progress (with ETA) goes to stderr; a preview
    grid is written to ``output/preview.jpg`` when ``preview``. ``output`` must be new, empty or an earlier output
    of this command (:func:`~matseg_hub.utils.files.claim_output_folder`), and apart from the asset folders in
    ``sources``.

    Returns a :class:`GenerationReport` (failed scenes are listed there, not raised).
    """
    from ..hub.writer import check_job
    from .scene import Scene3DConfig, default_assets, sample_scene

    if num < 0 or start < 0:
        raise MatSegInputError(f"num and start must be >= 0, got {num}, {start}")
    check_job(shard, num_shards)
    if workers < 1:
        raise MatSegInputError(f"workers must be >= 1, got {workers}")
    python = require_blender_python(blender_python)
    assets = assets or default_assets()
    config = config or Scene3DConfig()
    output = claim_output_folder(output, "generate 3d", sources=sources)
    _clean_stale_work(output)
    indices = [i for i in range(start, start + num) if i % num_shards == shard]
    todo = pending_indices(output, indices)
    skipped = sorted(set(indices) - set(todo))
    if skipped:
        logger.info("%d scene(s) already finished in %s; rendering %d", len(skipped), output, len(todo))
    threads = threads or max(1, available_cpus() // workers)
    run_dir = output / WORK_DIR / f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    run_dir.mkdir(parents=True, exist_ok=True)
    local = threading.local()
    all_workers: List[BlenderWorker] = []
    lock = threading.Lock()

    def get_worker() -> BlenderWorker:
        if not hasattr(local, "worker"):
            local.worker = BlenderWorker(python, log_file=run_dir / f"worker-{threading.get_ident()}.log")
            with lock:
                all_workers.append(local.worker)
        return local.worker

    def task(index: int) -> SceneResult:
        worker = get_worker()
        error = None
        redraws: List[Dict[str, Any]] = []  # recorded in the scene's metadata (deterministic: no timings)
        attempt, crashes = 0, 0
        while attempt < max_attempts:
            try:
                t0 = time.perf_counter()
                scene = sample_scene(seed, index, assets, config, attempt=attempt)
                t_sample = time.perf_counter() - t0
                timings = render_scene(scene, output / scene_folder_name(index), worker=worker,
                                       work_dir=run_dir / f"{index}.{attempt}.{crashes}", threads=threads,
                                       min_visible_fraction=min_visible_fraction,
                                       extra_metadata={"redraws": list(redraws)})
                timings["sample_s"] = t_sample
                return SceneResult(index, str(output / scene_folder_name(index)), attempt, timings)
            except HiddenMaterialsError as exc:
                error = str(exc)
                redraws.append({"attempt": attempt, "reason": str(exc)})
                logger.info("%s; redrawing", exc)
                attempt += 1
            except WorkerError as exc:
                # one retry of the same draw after a crash (the worker restarts), so a crash never changes the
                # scene a seed and index make; a second crash gives up on this scene
                error = str(exc)
                logger.warning("%s", exc)
                crashes += 1
                if crashes > 1:
                    break
            except (MatSegError, OSError) as exc:  # a bad asset or a full disk: this scene fails, the run goes on
                error = f"{type(exc).__name__}: {exc}"
                break
        return SceneResult(index, None, attempt, error=error)

    t_start = time.perf_counter()
    rendered, failed = [], []
    pool = cf.ThreadPoolExecutor(max_workers=workers, thread_name_prefix="blender")
    try:
        futures = [pool.submit(task, i) for i in todo]
        for fut in progress(cf.as_completed(futures), total=len(futures), desc="3D scenes", unit="scene",
                            disable=None if show_progress is None else not show_progress):
            res = fut.result()
            (rendered if res.error is None else failed).append(res)
            if res.error is None:
                logger.debug("scene %d timings: %s", res.index, json.dumps(res.timings, sort_keys=True))
            if res.error:
                logger.error("scene %d failed: %s", res.index, res.error)
    finally:
        pool.shutdown(wait=False, cancel_futures=True)  # on an error or Ctrl-C: start no new scene
        for w in list(all_workers):
            w.close()
        pool.shutdown(wait=True)
        if failed:
            logger.error("%d scene(s) failed; worker logs kept in %s", len(failed), run_dir)
        else:
            shutil.rmtree(run_dir, ignore_errors=True)
            try:
                (output / WORK_DIR).rmdir()
            except OSError:
                pass
    report = GenerationReport(str(output), sorted(rendered, key=lambda r: r.index), skipped,
                              sorted(failed, key=lambda r: r.index), time.perf_counter() - t_start)
    if preview:
        try:
            report.preview = str(preview_grid(output, output / "preview.jpg"))
        except MatSegError as exc:
            logger.warning("no preview grid: %s", exc)
    return report


# ---------------------------------------------------------------------------------------------------------------
# preview
# ---------------------------------------------------------------------------------------------------------------
def mask_overlay(rgb: np.ndarray, masks: np.ndarray, annotated: np.ndarray) -> np.ndarray:
    """uint8 [H, W, 3]: each material's soft mask in its colour (the palette of
    :func:`matseg_hub.synthetic.layout.colorize_masks`); outside the annotated region the image, dimmed."""
    from ..synthetic.layout import colorize_masks

    painted = colorize_masks(masks).astype(np.float32)
    ann = annotated[:, :, None]
    out = painted * ann + rgb.astype(np.float32) * 0.35 * (1 - ann)
    return np.clip(out, 0, 255).astype(np.uint8)


def preview_grid(root: PathLike, path: PathLike, max_scenes: int = 12, tile: int = 192, columns: int = 3) -> Path:
    """Write a grid picture (JPEG or PNG, by the suffix of ``path``) of up to ``max_scenes`` finished scenes under
    ``root``, drawn by :func:`matseg_hub.synthetic.layout.preview_grid` (image | coloured masks | annotated region, the
    same picture as for 2D scenes). Returns ``path``."""
    from ..synthetic.layout import iter_scene_folders, read_scene
    from ..synthetic.layout import preview_grid as scene_grid
    from ..utils.images import encode_image
    from ..utils.files import atomic_write_bytes

    scenes = []
    for folder in iter_scene_folders(root):
        if len(scenes) >= max_scenes:
            break
        scenes.append(read_scene(folder))
    if not scenes:
        raise MatSegError(f"no finished scene under {root}")
    grid = scene_grid(scenes, tile=tile, columns=max(1, min(columns, len(scenes))))
    ext = Path(path).suffix.lower()
    return atomic_write_bytes(path, encode_image(grid, ".png" if ext == ".png" else ".jpg", quality=90))
