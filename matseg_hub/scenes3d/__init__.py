"""Synthetic 3D scenes (paper §3, appendix B; SPEC §4).

* :mod:`.scene` — the plain-data scene model (objects, pattern-mapped materials, lights, camera) and its seeded
  sampler; no Blender needed.
* :mod:`.render` — rendering with Blender worker processes into the official scene-folder layout, resumable runs.
* :mod:`.blender_env` — finding or creating the Python that imports ``bpy`` (a separate virtual environment).
* ``blender_worker.py`` — the script that runs inside Blender's Python (it imports nothing from this package).

The rendering entry points are re-exported here:

* :func:`generate_3d` — a resumable, parallel run of :func:`~matseg_hub.scenes3d.scene.sample_scene` scenes into the
  official layout (``matseg generate 3d``), with progress/ETA and a preview grid.
* :func:`render_scene` — one :class:`~matseg_hub.scenes3d.scene.Scene3D` into one scene folder.
* :class:`BlenderWorker` — a persistent Blender subprocess; :func:`prepare_job`, :func:`finish_scene`,
  :func:`scene_masks` — the steps around it.
* :func:`find_blender_python`, :func:`setup_blender_env`, :func:`install_instructions` — the separate ``bpy``
  environment (``bpy`` pins CPython 3.11 and numpy < 2).
* :func:`preview_grid`, :func:`mask_overlay` — look at what was rendered.
"""

from . import blender_env
from .blender_env import (BPY_VERSION, BlenderNotFoundError, check_blender_python, find_blender_python,
                          install_instructions, require_blender_python, setup_blender_env)
from .render import (BlenderWorker, GenerationReport, HiddenMaterialsError, SceneResult, WorkerError, finish_scene,
                     generate_3d, mask_overlay, pending_indices, prepare_job, preview_grid, read_render_output,
                     render_scene, scene_folder_name, scene_masks)

__all__ = [
    "BPY_VERSION", "BlenderNotFoundError", "BlenderWorker", "GenerationReport", "HiddenMaterialsError",
    "SceneResult", "WorkerError", "check_blender_python", "find_blender_python", "finish_scene", "generate_3d",
    "install_instructions", "mask_overlay", "pending_indices", "prepare_job", "preview_grid", "read_render_output",
    "render_scene", "require_blender_python", "scene_folder_name", "scene_masks", "setup_blender_env",
]
