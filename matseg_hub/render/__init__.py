"""Rendering 3D scenes with Blender (``bpy``) in worker processes; the core never imports ``bpy``.

* :func:`generate_3d` — a resumable, parallel run of :func:`~matseg_hub.scene3d.sample_scene` scenes into the
  official layout (``matseg generate 3d``), with progress/ETA and a preview grid.
* :func:`render_scene` — one :class:`~matseg_hub.scene3d.Scene3D` into one scene folder.
* :class:`BlenderWorker` — a persistent Blender subprocess; :func:`prepare_job`, :func:`finish_scene`,
  :func:`scene_masks` — the steps around it.
* :func:`find_blender_python`, :func:`setup_blender_env`, :func:`install_instructions` — the separate ``bpy``
  environment (``bpy`` pins CPython 3.11 and numpy < 2).
* :func:`preview_grid`, :func:`mask_overlay` — look at what was rendered.
"""

from . import blender_env
from .blender_env import (BPY_VERSION, BlenderNotFoundError, check_blender_python, find_blender_python,
                          install_instructions, require_blender_python, setup_blender_env)
from .render3d import (BlenderWorker, GenerationReport, HiddenMaterialsError, SceneResult, WorkerError, finish_scene,
                       generate_3d, mask_overlay, pending_indices, prepare_job, preview_grid, read_render_output,
                       render_scene, scene_folder_name, scene_masks)

__all__ = [
    "BPY_VERSION", "BlenderNotFoundError", "BlenderWorker", "GenerationReport", "HiddenMaterialsError",
    "SceneResult", "WorkerError", "check_blender_python", "find_blender_python", "finish_scene", "generate_3d",
    "install_instructions", "mask_overlay", "pending_indices", "prepare_job", "preview_grid", "read_render_output",
    "render_scene", "require_blender_python", "scene_folder_name", "scene_masks", "setup_blender_env",
]
