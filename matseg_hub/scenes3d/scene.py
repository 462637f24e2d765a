"""3D scenes as plain data (MatSeg paper §3 and appendix B, SPEC §4 "3D scenes").

The scene model is plain Python: no ``bpy`` import anywhere in this module. A :class:`Scene3D` holds everything
the renderer needs — objects and their material layout, PBR materials, environment, ground, occluders, camera
and render settings — and serialises to JSON, so a scene can be inspected without Blender and re-rendered
exactly (``Scene3D.from_json(scene.to_json()) == scene``).

Material layout (how several materials share one surface): material 0 is the base; pattern ``j`` (a pattern map from
a natural image, :mod:`matseg_hub.synthetic.patterns`, reproducible from its recorded :class:`~matseg_hub.synthetic.patterns.
PatternParams`) lays material ``j + 1`` over the materials before it. With ``p_j`` the soft pattern value at a
surface point, the weight of material ``k`` is::

    w_0 = prod_{j >= 0} (1 - p_j)          w_k = p_{k-1} * prod_{j >= k} (1 - p_j)   (k >= 1)

so the weights sum to 1 everywhere, and the soft mask of material ``k`` is ``w_k`` at the visible surface
point of each pixel (the renderer writes it as an AOV pass in the same render as the RGB). An annotated object
with ``layout_from`` set wears the layout of an earlier object (one material node tree in world coordinates over
all of them: the authors' merged "main object"), so a material spans several objects and has one mask.

:func:`sample_scene` draws a scene deterministically from :func:`scene_rng` ``(seed, index, attempt)`` (the
``"scene3d"`` stream of :mod:`matseg_hub.utils.seeds`: never the numbers of a 2D scene of the same seed and index);
:class:`SceneAssets` lists what it draws from (natural images for patterns, textures, PBR folders, HDRIs,
glTF objects), with :func:`default_assets` built from scikit-image's bundled photos so that it runs with no data.

The default distribution (``Scene3DConfig()``, preset ``"paper"``, as in 2D) is the one of the authors' Blender script
(``main.py``, ``ObjectsHandling.py``, ``MaterialMapping.py``, ``SetScene.py`` of
``sagieppel/MatSeg-Synthethic-Dataset-Generation-Script``), in its units (a single main object is 40–60 long):

* main objects: one of size 40–60 at the origin with probability 0.5; else 1–6 of size 10–60 in the box
  [-20, 20]² x [-2, 10] (0.25); else 1–11 of size 10–30 in [-30, 30]² x [-5, 15] (0.25). Quirk matched: the code
  draws ``rand() < 0.5`` twice (0.5 / 0.25 / 0.25, not thirds). Each object's bounding-box centre is lifted by
  ``size / 2 * rand()`` (objects may sink into the ground), ``size`` is the longest side before rotation, and the
  rotation is the code's: three of the four quaternion components set to ``rand() * 2 pi`` (glTF objects import in
  quaternion mode), the fourth left 0. The main objects are merged into one object in the code and wear one
  multiphase material: here the first one owns the layout and the others set ``layout_from``.
* materials per scene (phases of the node graph of ``CreateMultiphaseMaterialGraph``): 2–8 uniform with
  probability 0.85, else 2 (so P(2) = 0.27, mean 4.55). Every phase split is a thresholded natural-image map: hard
  (one threshold) with probability 0.75, else soft; projected in generated / object / UV coordinates (a third each),
  scale 10^U(-1, 0.2). Materials: PBR (a folder, or a texture made PBR) 80 %, a plain BSDF colour 20 %.
* scattered (unannotated) objects, with probability 0.2: 1–8 of them, sizes U(Mn, Mx) with Mn = 20 * U(0.2, 1) and
  Mx = 20 * U(1, 5) drawn once a scene, anywhere in [-Px/2, Px/2] x [-Py/2, Py/2] x [-1, 3] (Px, Py = 20 * U(2, 6))
  but farther from the origin than their size (the code's ``AvoidRad=0`` rejection loop), lifted and rotated
  like the main objects.
* ground plane with probability 0.25, 80–240 on a side, a PBR material (the code's ``rand() < 10.9`` makes it
  always PBR); background: an HDRI always (strength 1 or U(1, 2.5), half and half; random turn about the vertical).
* camera: 50 mm lens on a 36 mm sensor at distance R = U(40, 100), angle from the vertical
  A = (1 - 1.1 rand() rand()) * 3.14 / 2, at (0, R sin A + U(-10, 10), R cos A + U(0, 20)), Euler XYZ rotation
  (A, (0.5 rand() - 0.5 rand()) rand(), 3.14159), exactly as ``RandomlySetCameraPos``.

Departures, on purpose:

* a scene keeps only materials visible on at least 0.1 % of the rendered image, and a scene with fewer than two
  visible materials is redrawn with the next ``attempt`` (:func:`matseg_hub.scenes3d.render.generate_3d`; the
  redraws are listed in the scene's metadata). The authors' code writes every phase's mask, seen or not.
* without glTF objects we use Blender primitives, half of them subdivided and displaced (shapes, not only spheres);
  with ``assets.objects``, glTF meshes half of the time (``gltf_prob``).
* scattered objects get one sampled material (the code keeps the material of the loaded file); the extra light
  (the code: point/spot lights, 15 %) is a sun lamp with the same probability; without HDRIs the environment is a
  natural photo, else Blender's sky; the HDRI is kept upright (the code's world node graph lives in its ``.blend``);
  texture maps of the materials are box-projected in object coordinates (the code: camera projection 70 %).
* phase maps are laid one over the other (the weights above, each with occupancy about 1 / (j + 2) so every
  material keeps a similar share) instead of the code's binary tree of splits (also about equal shares).

Measured (``python bench/_fidelity3d.py``: 20 renders of seed 0 at 256 px on the shared assets, and 500 sampled
scenes): the sampler follows the code's law (one main object 53.6 % vs 56.4 %, 2+ objects 57.8 % vs 54.8 %,
scattered 19.4 % vs 20 %, materials mean 4.41 vs 4.55); every render keeps 2+ visible materials (the authors'
twelve released scenes: 2 with one). The annotated share of the image is larger than in their released scenes
(53 % vs 23 %): primitives and our two glTF objects fill their bounding boxes, ShapeNet meshes do not — give a
folder of such meshes (``assets.objects``) to come closer. Their released ``CameraParameters.json`` match the
camera above (x = 0, distance 42–92, rotation z 3.14).

The distribution of generator version 2 (each object its own 2–5 materials, 1–6 objects set apart on the ground,
1–8 occluders, ground 85 %) stays available as ``Scene3DConfig.from_preset("spread")``, and one object with 0–3
occluders (version 1) as ``from_preset("single")``.

Example::

    scene = sample_scene(seed=0, index=3)
    text = scene.to_json()                       # inspect, store, re-render later
    assert Scene3D.from_json(text) == scene
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import typing
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np

from ..errors import MatSegFormatError, MatSegInputError
from ..utils.builtin_photos import SKIMAGE_LICENSES, SKIMAGE_PHOTOS, SKIMAGE_PREFIX
from ..utils.images import IMAGE_EXTENSIONS

PathLike = Union[str, os.PathLike]

SCENE_VERSION = 1  # the JSON format (a scene file of this version renders the same whatever sampled it)
GENERATOR = "matseg_hub.scene3d"
# what sample_scene draws for a (seed, index, attempt): 2: seeds carry the stream's id word, 1-6 objects and 1-8
# occluders, pattern maps that reach their occupancy; 3: the authors' distribution by default (main objects sharing
# one layout, 2-8 materials a scene, scattered objects 20 %, ground 25 %, their camera), version 2 as preset "spread"
GENERATOR_VERSION = 3
#: meshes the renderer builds itself (Blender primitives; any of them can be subdivided and displaced)
PRIMITIVES: Tuple[str, ...] = ("sphere", "icosphere", "cube", "cylinder", "cone", "torus", "monkey")
#: texture coordinates a pattern map or a material texture can be projected with
COORDINATES: Tuple[str, ...] = ("object", "generated", "uv")
MATERIAL_KINDS: Tuple[str, ...] = ("uniform", "texture", "pbr")
ANCHORS: Tuple[str, ...] = ("bottom", "centre")
ENVIRONMENT_KINDS: Tuple[str, ...] = ("sky", "hdri", "image", "colour")

Vec3 = Tuple[float, float, float]


# ---------------------------------------------------------------------------------------------------------------
# The data model
# ---------------------------------------------------------------------------------------------------------------
@dataclass
class MaterialSpec:
    """The description of one material in a scene (realised as a PBR material when the scene is rendered).

    ``kind``: ``"uniform"`` (``base_color``, ``roughness``, ``metallic``), ``"texture"`` (an RGB texture turned
    into a PBR material by :func:`matseg_hub.materials.pbr.texture_to_pbr` with ``recipe_seed`` when the scene is
    rendered) or ``"pbr"`` (a folder in the authors' layout: ``OriginColor``, ``Roughness``, ``Metallic``,
    ``Height``, ``Normal`` images). Colours are linear RGB in [0, 1]. ``scale``: texture repetitions per object
    size; ``rotation``: degrees. ``emission``: emission strength of the base colour (0 = none; flat-shaded test
    scenes use it).
    """

    name: str
    kind: str = "uniform"
    base_color: Vec3 = (0.8, 0.8, 0.8)
    roughness: float = 0.5
    metallic: float = 0.0
    path: Optional[str] = None
    recipe_seed: int = 0
    scale: float = 1.0
    rotation: float = 0.0
    normal_strength: float = 1.0
    emission: float = 0.0
    licence: str = ""


@dataclass
class PatternLayer:
    """A pattern map on a surface: ``source`` (image path or ``skimage:<name>``), ``params`` (a
    :class:`~matseg_hub.synthetic.patterns.PatternParams` as a dict: the map is ``render_pattern(image, params)``), and its
    projection: ``coordinates`` (``object``, ``generated`` or ``uv``) box-projected with ``blend``, then
    ``scale`` (repetitions per object size), ``rotation`` (XYZ degrees) and ``offset``."""

    source: str
    params: Dict[str, Any]
    coordinates: str = "object"
    scale: float = 1.0
    rotation: Vec3 = (0.0, 0.0, 0.0)
    offset: Vec3 = (0.0, 0.0, 0.0)
    blend: float = 0.2
    licence: str = ""


@dataclass
class MaterialLayout:
    """``materials[0]`` is the base; ``patterns[j]`` lays ``materials[j + 1]`` over the ones before it.

    ``extent``: the length (scene units) that the ``scale`` of the materials and of ``object``-coordinate patterns
    refers to (default: the object's ``size``; a layout worn by several objects spans the group)."""

    materials: List[MaterialSpec]
    patterns: List[PatternLayer] = field(default_factory=list)
    extent: Optional[float] = None


@dataclass
class SceneObject:
    """A mesh: ``shape`` is a primitive name (:data:`PRIMITIVES`) or ``"gltf"`` with ``path``.

    ``location`` is where the centre of the bottom of the object's bounding box goes; ``size`` its longest side
    (scene units); ``rotation`` XYZ degrees; ``subdivision`` levels and ``displacement`` (fraction of ``size``,
    a cloud-noise displacement of scale ``displacement_scale`` seeded by ``noise_seed``). ``annotated`` objects get
    per-material masks; the others (occluders) are unannotated.

    ``anchor``: ``"bottom"`` (above) or ``"centre"``: the authors' placement — ``size`` is the longest side before
    rotation, and the centre of the bounding box goes to ``location``. ``layout_from``: the name of an earlier
    annotated object whose layout (and masks) this one wears; its own ``layout`` is then empty.
    """

    name: str
    shape: str
    layout: MaterialLayout
    path: Optional[str] = None
    location: Vec3 = (0.0, 0.0, 0.0)
    rotation: Vec3 = (0.0, 0.0, 0.0)
    size: float = 1.0
    subdivision: int = 0
    displacement: float = 0.0
    displacement_scale: float = 0.5
    noise_seed: int = 0
    smooth: bool = True
    annotated: bool = True
    licence: str = ""
    anchor: str = "bottom"
    layout_from: Optional[str] = None


@dataclass
class Environment:
    """World lighting: ``sky`` (Blender's physical sky with a sun at ``sun_elevation``/``sun_rotation`` degrees),
    ``hdri`` (an equirectangular ``.hdr``/``.exr`` at ``path``), ``image`` (a natural photo used as the
    environment) or ``colour``. ``strength`` scales it; ``rotation`` turns it about the vertical (degrees);
    ``sun``: strength of an extra sun lamp (0 = none) for crisp shadows."""

    kind: str = "sky"
    path: Optional[str] = None
    strength: float = 1.0
    rotation: float = 0.0
    sun_elevation: float = 45.0
    sun_rotation: float = 0.0
    colour: Vec3 = (0.8, 0.8, 0.8)
    sun: float = 0.0
    licence: str = ""


@dataclass
class Ground:
    enabled: bool = True
    material: MaterialSpec = field(default_factory=lambda: MaterialSpec(name="ground"))
    size: float = 40.0


@dataclass
class Camera:
    """A perspective camera at ``location`` looking at ``target`` (Z up), ``lens`` mm on a ``sensor_width`` mm
    sensor (horizontal fit). ``rotation`` (XYZ Euler degrees, Blender's convention), when set, orients the camera
    instead (the authors' cameras); ``target`` is then a point on its line of sight."""

    location: Vec3 = (0.0, -4.0, 2.0)
    target: Vec3 = (0.0, 0.0, 0.5)
    lens: float = 50.0
    sensor_width: float = 36.0
    rotation: Optional[Vec3] = None


@dataclass
class RenderSettings:
    """Cycles settings: ``samples`` per pixel (adaptive down to ``adaptive_threshold``), OpenImageDenoise on the
    RGB when ``denoise`` (masks are never denoised), ``max_bounces`` light bounces, ``seed`` of the sampler."""

    width: int = 512
    height: int = 512
    samples: int = 12  # with denoising: <= 5 s per 512² scene on 2 CPU cores; raise it on GPUs
    denoise: bool = True
    max_bounces: int = 4
    adaptive_threshold: float = 0.05
    seed: int = 0
    view_transform: str = "AgX"
    pattern_resolution: int = 512


@dataclass
class Scene3D:
    """A complete 3D scene. ``seed``/``index``/``attempt`` say where it came from (:func:`sample_scene`)."""

    objects: List[SceneObject]
    camera: Camera = field(default_factory=Camera)
    environment: Environment = field(default_factory=Environment)
    ground: Ground = field(default_factory=Ground)
    occluders: List[SceneObject] = field(default_factory=list)
    render: RenderSettings = field(default_factory=RenderSettings)
    seed: int = 0
    index: int = 0
    attempt: int = 0
    version: int = SCENE_VERSION
    generator: str = GENERATOR
    generator_version: Optional[int] = None  # GENERATOR_VERSION of sample_scene (None: not made by it)

    # -- serialisation ---------------------------------------------------------------------------------------
    def to_dict(self) -> Dict[str, Any]:
        """A JSON-serialisable dict (tuples become lists); :meth:`from_dict` reverses it."""
        return json.loads(json.dumps(dataclasses.asdict(self)))

    def to_json(self, indent: Optional[int] = 1) -> str:
        return json.dumps(self.to_dict(), indent=indent, sort_keys=True)

    @classmethod
    def from_dict(cls, data: Dict[str, Any], path: Optional[PathLike] = None) -> "Scene3D":
        """Build and validate a scene from a dict.

        Raises:
            MatSegFormatError: a missing/unknown field or a value of the wrong type, naming the field
                (``objects[0].layout.materials[1].kind``) and ``path`` when given.
        """
        scene = _from_data(cls, data, "", path)
        scene.validate(path)
        return scene

    @classmethod
    def from_json(cls, text: str, path: Optional[PathLike] = None) -> "Scene3D":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise MatSegFormatError(f"invalid scene JSON ({exc})", path=path) from None
        return cls.from_dict(data, path)

    def save(self, path: PathLike) -> Path:
        from ..utils.files import atomic_write_text

        return atomic_write_text(path, self.to_json())

    @classmethod
    def load(cls, path: PathLike) -> "Scene3D":
        path = Path(path)
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise MatSegFormatError("scene file not found", path=path) from None
        return cls.from_json(text, path)

    # -- checks ----------------------------------------------------------------------------------------------
    def validate(self, path: Optional[PathLike] = None) -> "Scene3D":
        """Check values (not only types); raise :class:`MatSegFormatError` naming the field."""

        def bad(field_name: str, message: str):
            raise MatSegFormatError(message, path=path, field=field_name)

        if self.version != SCENE_VERSION:
            bad("version", f"scene version {self.version} is not supported (expected {SCENE_VERSION})")
        if not self.objects:
            bad("objects", "a scene needs at least one object")
        if not any(o.annotated for o in self.objects):
            bad("objects", "a scene needs at least one annotated object")
        owners = set()
        for group, objs in (("objects", self.objects), ("occluders", self.occluders)):
            for i, obj in enumerate(objs):
                where = f"{group}[{i}]"
                if obj.anchor not in ANCHORS:
                    bad(f"{where}.anchor", f"unknown anchor {obj.anchor!r}; expected one of {ANCHORS}")
                if obj.layout_from is not None:
                    if group != "objects" or not obj.annotated:
                        bad(f"{where}.layout_from", "only annotated objects can wear another object's layout")
                    if obj.layout_from not in owners:
                        bad(f"{where}.layout_from", f"{obj.layout_from!r} is not an earlier annotated object with "
                            "its own layout")
                    if obj.layout.materials or obj.layout.patterns:
                        bad(f"{where}.layout", "an object with layout_from has an empty layout of its own")
                elif group == "objects" and obj.annotated:
                    owners.add(obj.name)
                if obj.shape not in PRIMITIVES + ("gltf",):
                    bad(f"{where}.shape", f"unknown shape {obj.shape!r}; expected one of {PRIMITIVES + ('gltf',)}")
                if obj.shape == "gltf" and not obj.path:
                    bad(f"{where}.path", "a glTF object needs a path")
                if not obj.size > 0:
                    bad(f"{where}.size", f"size must be > 0, got {obj.size}")
                if not 0 <= obj.subdivision <= 6:
                    bad(f"{where}.subdivision", f"subdivision must be in 0..6, got {obj.subdivision}")
                mats, pats = obj.layout.materials, obj.layout.patterns
                if obj.layout.extent is not None and not obj.layout.extent > 0:
                    bad(f"{where}.layout.extent", f"extent must be > 0, got {obj.layout.extent}")
                if obj.layout_from is not None:
                    continue
                if not 1 <= len(mats) <= 8:
                    bad(f"{where}.layout.materials", f"1 to 8 materials per object, got {len(mats)}")
                if len(pats) != len(mats) - 1:
                    bad(f"{where}.layout.patterns", f"{len(mats)} materials need {len(mats) - 1} patterns, "
                        f"got {len(pats)}")
                for k, mat in enumerate(mats):
                    _check_material(mat, f"{where}.layout.materials[{k}]", bad)
                for j, pat in enumerate(pats):
                    if pat.coordinates not in COORDINATES:
                        bad(f"{where}.layout.patterns[{j}].coordinates",
                            f"unknown coordinates {pat.coordinates!r}; expected one of {COORDINATES}")
                    for key in ("height", "width", "property", "t_lo", "t_hi"):
                        if key not in pat.params:
                            bad(f"{where}.layout.patterns[{j}].params", f"pattern parameters lack {key!r}")
        _check_material(self.ground.material, "ground.material", bad)
        env = self.environment
        if env.kind not in ENVIRONMENT_KINDS:
            bad("environment.kind", f"unknown environment {env.kind!r}; expected one of {ENVIRONMENT_KINDS}")
        if env.kind in ("hdri", "image") and not env.path:
            bad("environment.path", f"a {env.kind!r} environment needs a path")
        r = self.render
        if not (8 <= r.width <= 8192 and 8 <= r.height <= 8192):
            bad("render.width", f"resolution must be 8..8192 pixels, got {r.width}x{r.height}")
        if r.samples < 1:
            bad("render.samples", f"samples must be >= 1, got {r.samples}")
        if not self.camera.lens > 0:
            bad("camera.lens", f"lens must be > 0 mm, got {self.camera.lens}")
        if np.allclose(self.camera.location, self.camera.target):
            bad("camera.target", "the camera target equals its location")
        return self

    # -- inspection ------------------------------------------------------------------------------------------
    @property
    def annotated_objects(self) -> List[SceneObject]:
        return [o for o in self.objects if o.annotated]

    @property
    def layout_owners(self) -> List[SceneObject]:
        """The annotated objects with a layout of their own (mask ``m<o>_<k>``: ``o`` indexes this list)."""
        return [o for o in self.objects if o.annotated and o.layout_from is None]

    @property
    def num_materials(self) -> int:
        """Number of masks the scene has before occlusion is taken into account."""
        return sum(len(o.layout.materials) for o in self.layout_owners)

    def material_names(self) -> List[str]:
        """``"<object>/<material>"`` for every mask, in mask order."""
        return [f"{o.name}/{m.name}" for o in self.layout_owners for m in o.layout.materials]

    def asset_licenses(self) -> Dict[str, str]:
        """Every file or built-in asset the scene uses -> its licence (empty when unknown)."""
        out: Dict[str, str] = {}
        for obj in self.objects + self.occluders:
            if obj.path:
                out[obj.path] = obj.licence
            for mat in obj.layout.materials:
                if mat.path:
                    out[mat.path] = mat.licence
            for pat in obj.layout.patterns:
                out[pat.source] = pat.licence
        if self.ground.enabled and self.ground.material.path:
            out[self.ground.material.path] = self.ground.material.licence
        if self.environment.path:
            out[self.environment.path] = self.environment.licence
        return out


def _check_material(mat: MaterialSpec, where: str, bad) -> None:
    if mat.kind not in MATERIAL_KINDS:
        bad(f"{where}.kind", f"unknown material kind {mat.kind!r}; expected one of {MATERIAL_KINDS}")
    if mat.kind in ("texture", "pbr") and not mat.path:
        bad(f"{where}.path", f"a {mat.kind!r} material needs a path")
    if len(mat.base_color) != 3 or not all(0.0 <= c <= 1.0 for c in mat.base_color):
        bad(f"{where}.base_color", f"base_color must be 3 values in [0, 1], got {mat.base_color}")
    for name in ("roughness", "metallic"):
        v = getattr(mat, name)
        if not 0.0 <= v <= 1.0:
            bad(f"{where}.{name}", f"{name} must be in [0, 1], got {v}")


def _from_data(tp, value, where: str, path):
    """Convert JSON data to the annotated type ``tp`` (dataclasses, lists, tuples, Optional, scalars)."""
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)

    def bad(message):
        raise MatSegFormatError(message, path=path, field=where or "<root>")

    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            bad(f"expected an object for {tp.__name__}, got {type(value).__name__}")
        hints = typing.get_type_hints(tp)
        names = {f.name for f in dataclasses.fields(tp)}
        unknown = sorted(set(value) - names)
        if unknown:
            raise MatSegFormatError(f"unknown field(s) {unknown} in {tp.__name__}", path=path,
                                    field=f"{where}.{unknown[0]}" if where else unknown[0])
        kwargs = {}
        for f in dataclasses.fields(tp):
            sub = f"{where}.{f.name}" if where else f.name
            if f.name in value:
                kwargs[f.name] = _from_data(hints[f.name], value[f.name], sub, path)
            elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                raise MatSegFormatError(f"missing required field {f.name!r}", path=path, field=sub)
        return tp(**kwargs)
    if origin is Union:  # Optional[X]
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        return _from_data(inner[0], value, where, path)
    if origin in (list, List):
        if not isinstance(value, list):
            bad(f"expected a list, got {type(value).__name__}")
        return [_from_data(args[0], v, f"{where}[{i}]", path) for i, v in enumerate(value)]
    if origin in (tuple, Tuple):
        if not isinstance(value, (list, tuple)) or len(value) != len(args):
            bad(f"expected a list of {len(args)} numbers, got {value!r}")
        return tuple(_from_data(a, v, f"{where}[{i}]", path) for i, (a, v) in enumerate(zip(args, value)))
    if origin in (dict, Dict):
        if not isinstance(value, dict):
            bad(f"expected an object, got {type(value).__name__}")
        return dict(value)
    if tp is bool:
        if not isinstance(value, bool):
            bad(f"expected true/false, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            bad(f"expected an integer, got {value!r}")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            bad(f"expected a finite number, got {value!r}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            bad(f"expected a string, got {value!r}")
        return value
    if tp is Any:
        return value
    bad(f"cannot read a value of type {tp}")  # pragma: no cover


# ---------------------------------------------------------------------------------------------------------------
# Assets
# ---------------------------------------------------------------------------------------------------------------
@dataclass
class SceneAssets:
    """What :func:`sample_scene` draws from. Paths are strings; ``skimage:<name>`` names a scikit-image photo.

    ``licenses`` maps a path (or a folder prefix) to its licence; it is recorded in every scene that uses it.
    """

    pattern_sources: List[str] = field(default_factory=list)
    textures: List[str] = field(default_factory=list)
    pbr_folders: List[str] = field(default_factory=list)
    hdris: List[str] = field(default_factory=list)
    environment_images: List[str] = field(default_factory=list)
    objects: List[str] = field(default_factory=list)
    licenses: Dict[str, str] = field(default_factory=dict)

    def license_of(self, path: str) -> str:
        if path.startswith(SKIMAGE_PREFIX):
            return "scikit-image sample data: " + SKIMAGE_LICENSES.get(path[len(SKIMAGE_PREFIX):], "unknown")
        best = ""
        for key, lic in self.licenses.items():
            if path == key or path.startswith(key.rstrip("/") + "/"):
                if len(key) > len(best):
                    best = key
        return self.licenses.get(best, "") if best else ""

    def __post_init__(self):
        if not self.pattern_sources:
            raise MatSegInputError("SceneAssets needs at least one pattern source (natural image)")


def default_assets() -> SceneAssets:
    """Built-in assets: scikit-image's bundled photos as pattern sources and textures, primitives only,
    Blender's sky (no HDRI, no glTF). Runs with no data folder and no download."""
    photos = [SKIMAGE_PREFIX + n for n in SKIMAGE_PHOTOS]
    return SceneAssets(pattern_sources=photos, textures=photos)


def _files(folder: Optional[PathLike], exts: Sequence[str]) -> List[str]:
    if folder is None:
        return []
    folder = Path(folder)
    if not folder.is_dir():
        raise MatSegInputError(f"asset folder {folder} does not exist")
    from ..hub.writer import is_built_dataset_folder

    if is_built_dataset_folder(folder):
        raise MatSegInputError(f"asset folder {folder} is a built dataset (Parquet shards), not a folder of files: "
                               "give the folder it was built from")
    return sorted(str(p.resolve()) for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in exts
                  and not any(part.startswith(".") for part in p.relative_to(folder).parts))


def assets_from_folders(natural_images: Optional[PathLike] = None, textures: Optional[PathLike] = None,
                        pbr: Optional[PathLike] = None, hdri: Optional[PathLike] = None,
                        objects: Optional[PathLike] = None, environment_images: Optional[PathLike] = None,
                        licenses: Optional[Dict[str, str]] = None, builtin: bool = True) -> SceneAssets:
    """Assets from folders (any may be ``None``); the built-in photos fill in pattern sources and textures
    when ``builtin`` (always when no natural image is given).

    ``natural_images``: photos for pattern maps (and, when ``environment_images`` is not given, environments);
    ``textures``: RGB textures (turned into PBR materials); ``pbr``: folders in the authors' layout (via
    :func:`matseg_hub.materials.pbr.list_pbr_folders`); ``hdri``: ``.hdr``/``.exr``; ``objects``: ``.gltf``/``.glb``.
    """
    base = default_assets()
    nat = _files(natural_images, IMAGE_EXTENSIONS)
    tex = _files(textures, IMAGE_EXTENSIONS)
    pbr_dirs: List[str] = []
    if pbr is not None:
        from ..materials.pbr import list_pbr_folders

        pbr_dirs = [str(p.resolve()) for p in list_pbr_folders(pbr)]
    hdris = _files(hdri, (".hdr", ".exr"))
    objs = _files(objects, (".gltf", ".glb"))
    env_images = _files(environment_images, IMAGE_EXTENSIONS) if environment_images is not None else list(nat)
    return SceneAssets(
        pattern_sources=nat + (base.pattern_sources if builtin or not nat else []),
        textures=tex + (base.textures if builtin or not (tex or pbr_dirs) else []),
        pbr_folders=pbr_dirs, hdris=hdris, environment_images=env_images, objects=objs,
        licenses=dict(licenses or {}))


@lru_cache(maxsize=64)
def _load_source_cached(source: str) -> np.ndarray:
    if source.startswith(SKIMAGE_PREFIX):
        import skimage.data

        name = source[len(SKIMAGE_PREFIX):]
        if name not in SKIMAGE_PHOTOS:
            raise MatSegInputError(f"unknown built-in photo {source!r}; expected skimage:<one of {SKIMAGE_PHOTOS}>")
        image = np.asarray(getattr(skimage.data, name)())
        if image.ndim == 2:
            image = np.repeat(image[:, :, None], 3, axis=2)
        image = np.ascontiguousarray(image[:, :, :3]).astype(np.uint8, copy=False)
    else:
        from ..utils.images import read_image

        image = read_image(source)
    image.setflags(write=False)
    return image


def load_source_image(source: str) -> np.ndarray:
    """A pattern/texture source as uint8 [H, W, 3] RGB (``skimage:<name>`` or an image path); cached, read-only."""
    return _load_source_cached(str(source))


def pattern_image(layer: PatternLayer) -> np.ndarray:
    """The layer's pattern map: float32 [params.height, params.width] in [0, 1], reproduced bit for bit."""
    from ..synthetic.patterns import PatternParams, render_pattern

    return render_pattern(load_source_image(layer.source), PatternParams.from_dict(layer.params))


# ---------------------------------------------------------------------------------------------------------------
# Sampling
# ---------------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class MainObjectsMode:
    """One branch of the draw of the main (annotated) objects: with ``probability``, ``count`` (lo, hi) objects of
    longest side in ``size`` (lo, hi) whose bounding-box centres are uniform in the box ``box_min``..``box_max``
    (then lifted by ``size / 2 * U(0, 1)``)."""

    probability: float
    count: Tuple[int, int]
    size: Tuple[float, float]
    box_min: Vec3 = (0.0, 0.0, 0.0)
    box_max: Vec3 = (0.0, 0.0, 0.0)


#: the authors' main.py: ``if rand() < 0.5: one object elif rand() < 0.5: 1-6 else 1-11`` (0.5 / 0.25 / 0.25)
AUTHORS_MAIN_OBJECTS: Tuple[MainObjectsMode, ...] = (
    MainObjectsMode(0.5, (1, 1), (40.0, 60.0)),
    MainObjectsMode(0.25, (1, 6), (10.0, 60.0), (-20.0, -20.0, -2.0), (20.0, 20.0, 10.0)),
    MainObjectsMode(0.25, (1, 11), (10.0, 30.0), (-30.0, -30.0, -5.0), (30.0, 30.0, 15.0)),
)
STYLES: Tuple[str, ...] = ("authors", "spread")
PRESETS: Tuple[str, ...] = ("paper", "spread", "single")


@dataclass
class Scene3DConfig:
    """Ranges :func:`sample_scene` draws from (JSON-friendly; recorded nowhere else than in the scene itself).

    The defaults are the authors' distribution (module docstring; ``style="authors"``): ``main_objects`` (the
    branches of the draw of main objects; each draws its number inside ``objects``, or from ``objects`` when its
    range lies outside) share one layout of
    ``materials`` (2–8) materials, only 2 with probability ``two_materials_prob``; with probability
    ``scatter_prob`` ``occluders`` (1–8) scattered unannotated objects; a ground plane with ``ground_prob``.
    ``hard_prob``: phase maps with one threshold; ``softness_range``, ``pattern_scale`` (log-uniform) and
    ``pattern_coordinates``: how phase maps are made and projected.

    ``style="spread"`` (:meth:`from_preset`): the version-2 sampler — ``objects`` annotated objects set apart on the
    ground, each with its own ``materials`` materials (at most ``max_scene_materials`` a scene) and ``occluders``
    occluders always.
    """

    width: int = 512
    height: int = 512
    samples: int = 12
    denoise: bool = True
    max_bounces: int = 4
    pattern_resolution: int = 512
    style: str = "authors"
    objects: Tuple[int, int] = (1, 11)
    main_objects: Tuple[MainObjectsMode, ...] = AUTHORS_MAIN_OBJECTS
    materials: Tuple[int, int] = (2, 8)
    two_materials_prob: float = 0.15
    max_scene_materials: int = 10
    occluders: Tuple[int, int] = (1, 8)
    scatter_prob: float = 0.2
    occluder_in_view_prob: float = 0.3  # spread: the others stand around the objects (background, shadows)
    gltf_prob: float = 0.5
    displacement_prob: float = 0.5
    ground_prob: float = 0.25
    texture_prob: float = 0.45
    pbr_prob: float = 0.35
    hdri_prob: float = 1.0
    image_env_prob: float = 0.3
    sun_prob: float = 0.15
    hard_prob: Optional[float] = 0.75
    softness_range: Tuple[float, float] = (0.0, 0.25)
    pattern_scale: Tuple[float, float] = (0.1, 10 ** 0.2)
    pattern_coordinates: Tuple[str, ...] = ("generated", "object", "uv")
    primitives: Tuple[str, ...] = PRIMITIVES

    @classmethod
    def from_preset(cls, name: str, **overrides) -> "Scene3DConfig":
        """``"paper"`` (the defaults: the authors' script), ``"spread"`` (the distribution of generator version 2) or ``"single"``
        (one object, 0–3 occluders: version 1); ``overrides`` replace fields (``width=256``).

        Raises:
            MatSegInputError: an unknown preset name.
        """
        presets = {
            "paper": {},
            "spread": dict(style="spread", objects=(1, 6), materials=(2, 5), two_materials_prob=0.0,
                           scatter_prob=1.0, ground_prob=0.85, hdri_prob=0.7, sun_prob=0.4, hard_prob=None,
                           softness_range=(0.0, 0.6), pattern_scale=(0.4, 1.5),
                           pattern_coordinates=("object", "object", "generated", "uv")),
        }
        presets["single"] = dict(presets["spread"], objects=(1, 1), occluders=(0, 3))
        if name not in presets:
            raise MatSegInputError(f"unknown 3D scene preset {name!r}; expected one of {PRESETS}")
        return cls(**{**presets[name], **overrides})

    def __post_init__(self):
        if self.style not in STYLES:
            raise MatSegInputError(f"unknown style {self.style!r}; expected one of {STYLES}")
        lo, hi = self.materials
        if not 1 <= lo <= hi <= 8:
            raise MatSegInputError(f"materials range must satisfy 1 <= lo <= hi <= 8, got {self.materials}")
        if self.style == "authors" and lo < 2:  # the main objects share one layout: a scene needs 2 visible
            raise MatSegInputError(f"materials range must start at 2 or more for the paper preset (its main "
                                   f"objects share one layout, and a scene needs 2 visible materials), got "
                                   f"{self.materials}")
        if not 1 <= self.objects[0] <= self.objects[1]:
            raise MatSegInputError(f"objects range must satisfy 1 <= lo <= hi, got {self.objects}")
        if self.style == "spread" and self.max_scene_materials < max(2, lo, self.objects[1]):
            raise MatSegInputError(f"max_scene_materials must be >= 2, the least materials of an object ({lo}) and "
                                   f"the most objects ({self.objects[1]}); got {self.max_scene_materials}")
        if not 0 <= self.occluders[0] <= self.occluders[1]:
            raise MatSegInputError(f"occluders range must satisfy 0 <= lo <= hi, got {self.occluders}")
        if self.style == "authors":
            if not self.main_objects or any(m.probability < 0 or not 1 <= m.count[0] <= m.count[1]
                                            or not 0 < m.size[0] <= m.size[1] for m in self.main_objects):
                raise MatSegInputError("main_objects needs branches with probability >= 0, 1 <= count lo <= hi and "
                                       f"0 < size lo <= hi; got {self.main_objects}")
            if not sum(m.probability for m in self.main_objects) > 0:
                raise MatSegInputError("the probabilities of main_objects sum to 0")
        if not 0 < self.pattern_scale[0] <= self.pattern_scale[1]:
            raise MatSegInputError(f"pattern_scale must satisfy 0 < lo <= hi, got {self.pattern_scale}")
        if not self.pattern_coordinates or any(c not in COORDINATES for c in self.pattern_coordinates):
            raise MatSegInputError(f"pattern_coordinates must be some of {COORDINATES}, got {self.pattern_coordinates}")
        bad = [p for p in self.primitives if p not in PRIMITIVES]
        if bad or not self.primitives:
            raise MatSegInputError(f"unknown primitives {bad}; expected some of {PRIMITIVES}")
        if self.width < 8 or self.height < 8 or self.samples < 1:
            raise MatSegInputError(f"bad render size/samples: {self.width}x{self.height}, {self.samples} samples")


def scene_rng(seed: int, index: int, attempt: int = 0) -> np.random.Generator:
    """The generator of scene ``index`` of a run with ``seed`` (independent of worker count and order):
    ``stream_rng("scene3d", seed, index, attempt)`` (:mod:`matseg_hub.utils.seeds`)."""
    from ..utils.seeds import stream_rng

    if seed < 0 or index < 0 or attempt < 0:
        raise MatSegInputError(f"seed, index and attempt must be >= 0, got {seed}, {index}, {attempt}")
    return stream_rng("scene3d", int(seed), int(index), int(attempt))


def _pick(rng: np.random.Generator, items: Sequence[str]) -> str:
    return items[int(rng.integers(len(items)))]


def _colour(rng: np.random.Generator) -> Vec3:
    # a random colour in HSV, converted to linear RGB
    import colorsys

    h, s, v = float(rng.random()), float(rng.uniform(0, 1) ** 0.7), float(rng.uniform(0.05, 1.0))
    r, g, b = colorsys.hsv_to_rgb(h, s, v)
    return tuple(float(round(c ** 2.2, 6)) for c in (r, g, b))


def sample_material(rng: np.random.Generator, assets: SceneAssets, config: Scene3DConfig, name: str) -> MaterialSpec:
    """A random material: PBR folder, texture (made PBR at render time) or uniform colour."""
    u = float(rng.random())
    common = dict(name=name, scale=float(np.exp(rng.uniform(np.log(0.5), np.log(4.0)))),
                  rotation=float(rng.uniform(0, 360)), normal_strength=float(rng.uniform(0.3, 1.0)),
                  recipe_seed=int(rng.integers(2 ** 31)))
    if assets.pbr_folders and u < config.pbr_prob:
        path = _pick(rng, assets.pbr_folders)
        return MaterialSpec(kind="pbr", path=path, licence=assets.license_of(path), **common)
    if assets.textures and u < config.pbr_prob + config.texture_prob:
        path = _pick(rng, assets.textures)
        return MaterialSpec(kind="texture", path=path, licence=assets.license_of(path), **common)
    return MaterialSpec(kind="uniform", base_color=_colour(rng), roughness=float(rng.uniform(0.05, 1.0)),
                       metallic=float(rng.random() < 0.25) * float(rng.uniform(0.5, 1.0)), **common)


def layout_shares(coverages: Sequence[float]) -> List[float]:
    """Expected share of each material of a layout whose pattern ``j`` covers ``coverages[j]`` of its map
    (independent maps, the weights of the module docstring): ``len(coverages) + 1`` values summing to 1."""
    shares = []
    for k in range(len(coverages) + 1):
        share = 1.0 if k == 0 else float(coverages[k - 1])
        for c in coverages[k:]:
            share *= 1.0 - float(c)
        shares.append(share)
    return shares


_PATTERN_TRIES = 8


def sample_layout(rng: np.random.Generator, assets: SceneAssets, config: Scene3DConfig, num_materials: int,
                  prefix: str = "material", extent: Optional[float] = None) -> MaterialLayout:
    """``num_materials`` materials and the ``num_materials - 1`` pattern maps that lay them out.

    Pattern ``j`` gets occupancy about ``1 / (j + 2)`` so that every material ends with a similar share
    (:func:`layout_shares`); a map is redrawn while its coverage is off its occupancy by more than half of it (a
    threshold at the maximum gives an empty map, whose material would land nowhere), so every material of the
    layout keeps an expected share of at least about 3 % (8 materials). A map is hard with ``config.hard_prob``
    (``None``: the pattern module's own draw), projected in one of ``config.pattern_coordinates`` at a
    log-uniform scale in ``config.pattern_scale``; ``extent`` goes to :attr:`MaterialLayout.extent`.
    """
    from ..synthetic.patterns import pattern_map

    mats = [sample_material(rng, assets, config, f"{prefix}{k}") for k in range(num_materials)]
    pats = []
    res = int(config.pattern_resolution)
    for j in range(num_materials - 1):
        source = _pick(rng, assets.pattern_sources)
        image = load_source_image(source)
        occupancy = float(np.clip(rng.normal(1.0 / (j + 2), 0.08), 0.12, 0.8))
        hard = None if config.hard_prob is None else bool(rng.random() < config.hard_prob)
        best = None
        for t in range(_PATTERN_TRIES if hard is None else 2 * _PATTERN_TRIES):
            # a hard threshold can land on a tie (a saturated patch, a binary photo): the later tries are soft, and
            # the closest map wins
            h = hard if hard is None or t < _PATTERN_TRIES // 2 else False
            soft, params = pattern_map(image, rng, size=(res, res), occupancy=occupancy, hard=h,
                                       softness_range=tuple(config.softness_range), return_params=True)
            err = abs(float(soft[::4, ::4].mean()) - occupancy)
            if hard is not None and (best is None or err < best[0]):
                best = (err, params)
            if err <= 0.5 * occupancy:
                break
        if best is not None:
            params = best[1]
        lo, hi = config.pattern_scale
        pats.append(PatternLayer(
            source=source, params=params.to_dict(), coordinates=_pick(rng, tuple(config.pattern_coordinates)),
            scale=float(np.exp(rng.uniform(np.log(lo), np.log(hi)))),
            rotation=tuple(float(v) for v in rng.uniform(0, 360, size=3)),
            offset=tuple(float(v) for v in rng.uniform(-1, 1, size=3)),
            blend=float(rng.uniform(0.05, 0.4)), licence=assets.license_of(source)))
    return MaterialLayout(materials=mats, patterns=pats, extent=None if extent is None else float(extent))


def _single_material(rng, assets, config, name) -> MaterialLayout:
    return MaterialLayout(materials=[sample_material(rng, assets, config, name)])


def _look_direction(azimuth: float, elevation: float) -> np.ndarray:
    a, e = math.radians(azimuth), math.radians(elevation)
    return np.array([math.cos(e) * math.cos(a), math.cos(e) * math.sin(a), math.sin(e)])


def _material_counts(rng: np.random.Generator, config: Scene3DConfig, num_objects: int) -> List[int]:
    """Materials of each annotated object: drawn from ``config.materials``, at most ``max_scene_materials`` in all
    (every later object keeps at least one)."""
    counts, budget = [], int(config.max_scene_materials)
    for o in range(num_objects):
        hi = min(config.materials[1], budget - (num_objects - o - 1))
        lo = min(config.materials[0], hi)
        n = int(rng.integers(lo, hi + 1))
        counts.append(n)
        budget -= n
    return counts


def _place_objects(rng: np.random.Generator, sizes: Sequence[float]) -> List[Tuple[float, float]]:
    """Ground positions (x, y) for objects of the given sizes: the first at the origin, the others around it,
    their bounding circles apart where 20 tries allow (the authors scatter their main objects the same way)."""
    spots = [(0.0, 0.0)]
    for size in sizes[1:]:
        best, best_gap = None, -math.inf
        for _ in range(20):
            ang = float(rng.uniform(0, 2 * math.pi))
            rad = float(rng.uniform(0.4, 0.9)) * math.sqrt(len(spots)) * max(sizes)  # a loose cluster
            p = (rad * math.cos(ang), rad * math.sin(ang))
            gap = min(math.hypot(p[0] - q[0], p[1] - q[1]) - 0.5 * (size + s) for q, s in zip(spots, sizes))
            if gap > best_gap:
                best, best_gap = p, gap
            if gap >= 0:
                break
        spots.append(best)
    return spots


def _draw_shape(rng: np.random.Generator, assets: SceneAssets, config: Scene3DConfig, max_subdivision: int):
    """An object's shape: a glTF mesh (``gltf_prob``, when there are any) or a primitive, subdivided 2..
    ``max_subdivision`` times and displaced with ``displacement_prob`` (else 0-1 times, no displacement).
    Returns ``(path, shape, subdivision, displacement, licence)``."""
    if assets.objects and rng.random() < config.gltf_prob:
        path = _pick(rng, assets.objects)
        return path, "gltf", 0, 0.0, assets.license_of(path)
    shape = _pick(rng, config.primitives)
    displaced = rng.random() < config.displacement_prob
    subdivision = int(rng.integers(2, max_subdivision + 1)) if displaced else int(rng.integers(0, 2))
    displacement = float(rng.uniform(0.03, 0.2)) if displaced else 0.0
    return None, shape, subdivision, displacement, ""


def _sample_object(rng: np.random.Generator, assets: SceneAssets, config: Scene3DConfig, name: str,
                   num_materials: int, size: float, xy: Tuple[float, float]) -> SceneObject:
    """One annotated object (a displaced/subdivided primitive or a glTF mesh) standing on the ground at ``xy``."""
    path, shape, subdivision, displacement, licence = _draw_shape(rng, assets, config, max_subdivision=4)
    layout = sample_layout(rng, assets, config, num_materials)
    return SceneObject(name=name, shape=shape, path=path, layout=layout, location=(float(xy[0]), float(xy[1]), 0.0),
                       rotation=(0.0, 0.0, float(rng.uniform(0, 360))) if rng.random() < 0.6 else
                       tuple(float(v) for v in rng.uniform(0, 360, size=3)),
                       size=size, subdivision=subdivision, displacement=displacement,
                       displacement_scale=float(rng.uniform(0.15, 0.8)), noise_seed=int(rng.integers(2 ** 16)),
                       smooth=bool(rng.random() < 0.8), annotated=True, licence=licence)


def _sample_spread(rng: np.random.Generator, assets: SceneAssets, config: Scene3DConfig):
    """The version-2 sampler (preset ``"spread"``): objects, camera, occluders, ground."""
    # annotated objects: the first of size 1 at the origin, the others smaller, around it
    n_obj = int(rng.integers(config.objects[0], config.objects[1] + 1))
    sizes = [1.0] + [float(rng.uniform(0.4, 1.0)) for _ in range(n_obj - 1)]
    spots = _place_objects(rng, sizes)
    counts = _material_counts(rng, config, n_obj)
    objects = [_sample_object(rng, assets, config, f"object{o}", counts[o], sizes[o], spots[o]) for o in range(n_obj)]
    # the group's centre and radius on the ground (the camera frames it)
    centre = np.mean(np.array(spots), axis=0)
    radius = max(math.hypot(x - centre[0], y - centre[1]) + 0.5 * s for (x, y), s in zip(spots, sizes))
    size = max(1.0, 1.2 * radius)  # what the camera frames: 1 for a single object, most of the group otherwise

    # camera
    lens = float(rng.uniform(30.0, 70.0))
    azimuth = float(rng.uniform(0, 360))
    elevation = float(rng.uniform(8.0, 65.0))
    target = np.array([centre[0] + rng.normal(0, 0.08), centre[1] + rng.normal(0, 0.08),
                       float(rng.uniform(0.3, 0.6))])
    half_fov = math.atan(36.0 / 2 / lens)
    distance = size * float(rng.uniform(0.6, 1.2)) / math.tan(half_fov)
    direction = _look_direction(azimuth, elevation)
    cam_loc = target + distance * direction
    camera = Camera(location=tuple(float(v) for v in cam_loc), target=tuple(float(v) for v in target), lens=lens)

    # occluders
    occluders = []
    n_occ = int(rng.integers(config.occluders[0], config.occluders[1] + 1))
    for i in range(n_occ):
        occ_size = float(rng.uniform(0.15, 0.6))
        if rng.random() < config.occluder_in_view_prob:
            # on the ground between the camera and the objects, shifted sideways so it hides part of them
            t = float(rng.uniform(0.25, 0.6))
            p = target + t * (cam_loc - target)
            side = np.cross(direction, [0.0, 0.0, 1.0])
            side /= max(np.linalg.norm(side), 1e-9)
            p = p + side * float(rng.uniform(-0.5, 0.5)) * size
            loc = (float(p[0]), float(p[1]), 0.0)
        else:  # scattered around the group (background and shadows)
            ang = float(rng.uniform(0, 2 * math.pi))
            rad = radius + float(rng.uniform(0.4, 2.5))
            loc = (float(centre[0]) + rad * math.cos(ang), float(centre[1]) + rad * math.sin(ang), 0.0)
        occluders.append(SceneObject(
            name=f"occluder{i}", shape=_pick(rng, config.primitives),
            layout=_single_material(rng, assets, config, f"occluder{i}_material"), location=loc,
            rotation=tuple(float(v) for v in rng.uniform(0, 360, size=3)), size=occ_size,
            subdivision=int(rng.integers(0, 2)), smooth=bool(rng.random() < 0.5), annotated=False))

    # ground
    ground = Ground(enabled=bool(rng.random() < config.ground_prob),
                    material=sample_material(rng, assets, config, "ground"), size=40.0 * max(1.0, size))
    ground.material.scale *= 0.5
    return objects, camera, occluders, ground


def _sample_environment(rng: np.random.Generator, assets: SceneAssets, config: Scene3DConfig) -> Environment:
    """An HDRI (``hdri_prob``), else a natural photo (``image_env_prob``), else Blender's sky; an extra sun lamp
    with ``sun_prob``. Authors' style: HDRI strength 1 or U(1, 2.5), half and half (``SetScene.AddBackground``)."""
    # environment
    u = float(rng.random())
    env_rotation = float(rng.uniform(0, 360))
    sun = float(rng.uniform(1.0, 4.0)) if rng.random() < config.sun_prob else 0.0
    if assets.hdris and u < config.hdri_prob:
        path = _pick(rng, assets.hdris)
        strength = (float(rng.uniform(0.6, 1.6)) if config.style == "spread" else
                    1.0 + float(rng.uniform(0.0, 1.5)) * float(rng.random() < 0.5))
        environment = Environment(kind="hdri", path=path, strength=strength,
                                  rotation=env_rotation, sun=sun, licence=assets.license_of(path))
    elif assets.environment_images and u < config.hdri_prob + config.image_env_prob:
        path = _pick(rng, assets.environment_images)
        environment = Environment(kind="image", path=path, strength=float(rng.uniform(0.6, 1.6)),
                                  rotation=env_rotation, sun=sun or float(rng.uniform(1.0, 3.0)),
                                  licence=assets.license_of(path))
    else:
        environment = Environment(kind="sky", strength=float(rng.uniform(0.3, 1.0)), rotation=env_rotation,
                                  sun_elevation=float(rng.uniform(5.0, 80.0)), sun_rotation=float(rng.uniform(0, 360)),
                                  sun=sun)
    if environment.kind != "sky":  # the extra sun lamp's direction (the sky draws its own above)
        environment.sun_elevation = float(rng.uniform(15.0, 75.0))
        environment.sun_rotation = float(rng.uniform(0, 360))

    return environment


_TWO_PI = 6.2831853  # the constant of ObjectsHandling.LoadObject


def _euler_matrix(a: float, b: float, c: float) -> np.ndarray:
    """Blender's XYZ Euler rotation (radians) as a 3x3 matrix: ``Rz(c) @ Ry(b) @ Rx(a)``."""
    ca, sa, cb, sb, cc, sc = math.cos(a), math.sin(a), math.cos(b), math.sin(b), math.cos(c), math.sin(c)
    rx = np.array([[1, 0, 0], [0, ca, -sa], [0, sa, ca]])
    ry = np.array([[cb, 0, sb], [0, 1, 0], [-sb, 0, cb]])
    rz = np.array([[cc, -sc, 0], [sc, cc, 0], [0, 0, 1]])
    return rz @ ry @ rx


def quaternion_quirk_rotation(rng: np.random.Generator) -> Vec3:
    """The authors' object rotation as XYZ Euler degrees: ``rotation_quaternion[i] = rand() * 2 pi`` for
    ``i = 0, 1, 2`` (w, x, y) on an object imported in quaternion mode, z left 0; Blender normalises it."""
    w, x, y = (float(v) * _TWO_PI for v in rng.random(3))
    n = math.sqrt(w * w + x * x + y * y) or 1.0
    w, x, y, z = w / n, x / n, y / n, 0.0
    r = np.array([[1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
                  [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
                  [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)]])
    b = math.asin(float(np.clip(-r[2, 0], -1.0, 1.0)))
    a = math.atan2(r[2, 1], r[2, 2])
    c = math.atan2(r[1, 0], r[0, 0])
    return tuple(float(round(math.degrees(v), 9)) for v in (a, b, c))


def _authors_object(rng: np.random.Generator, assets: SceneAssets, config: Scene3DConfig, name: str, size: float,
                    centre: Sequence[float], layout: MaterialLayout, annotated: bool,
                    layout_from: Optional[str] = None) -> SceneObject:
    """One object placed as ``ObjectsHandling.LoadObject`` does: the bounding-box centre at ``centre`` lifted by
    ``size / 2 * rand()``, the quaternion rotation; a glTF mesh (``gltf_prob``) or a primitive (half of them
    subdivided and displaced)."""
    path, shape, subdivision, displacement, licence = _draw_shape(rng, assets, config, max_subdivision=3)
    location = (float(centre[0]), float(centre[1]), float(centre[2]) + size / 2 * float(rng.random()))
    return SceneObject(name=name, shape=shape, path=path, layout=layout, location=location,
                       rotation=quaternion_quirk_rotation(rng), size=float(size), subdivision=subdivision,
                       displacement=displacement, displacement_scale=float(rng.uniform(0.15, 0.8)),
                       noise_seed=int(rng.integers(2 ** 16)), smooth=bool(rng.random() < 0.8), annotated=annotated,
                       licence=licence, anchor="centre", layout_from=layout_from)


def _main_objects_mode(rng: np.random.Generator, config: Scene3DConfig) -> MainObjectsMode:
    probs = np.array([m.probability for m in config.main_objects], float)
    cum = np.cumsum(probs / probs.sum())
    return config.main_objects[min(int(np.searchsorted(cum, float(rng.random()), side="right")), len(cum) - 1)]


def scene_material_count(rng: np.random.Generator, config: Scene3DConfig) -> int:
    """Phases of the authors' multiphase graph: ``randint(2, 8)`` with probability 0.85, else 2 (the bounds are
    ``config.materials``, the 2-branch probability ``config.two_materials_prob``)."""
    lo, hi = config.materials
    if rng.random() < config.two_materials_prob:
        return int(min(max(2, lo), hi))
    return int(rng.integers(lo, hi + 1))


def _sample_authors(rng: np.random.Generator, assets: SceneAssets, config: Scene3DConfig):
    """The authors' main.py: main objects sharing one layout, scattered objects, ground, camera."""
    # main objects (LoadRandomObject / LoadNMainObjects), merged into one in their code: one layout for all
    mode = _main_objects_mode(rng, config)
    # the mode's count range within config.objects (the default 1-11 keeps the code's draw); a mode outside it
    # (the single-object mode under --num-objects 2 4) draws from config.objects instead
    lo, hi = max(mode.count[0], config.objects[0]), min(mode.count[1], config.objects[1])
    if lo > hi:
        lo, hi = config.objects
    n_obj = int(rng.integers(lo, hi + 1))
    sizes, centres = [], []
    for _ in range(n_obj):
        sizes.append(float(rng.uniform(*mode.size)))
        centres.append([float(rng.uniform(lo, hi)) for lo, hi in zip(mode.box_min, mode.box_max)])
    extent = 2.0 * max(math.hypot(c[0], c[1]) + 0.5 * sz for c, sz in zip(centres, sizes))
    layout = sample_layout(rng, assets, config, scene_material_count(rng, config), extent=extent)
    objects = [_authors_object(rng, assets, config, "object0", sizes[0], centres[0], layout, True)]
    for o in range(1, n_obj):
        objects.append(_authors_object(rng, assets, config, f"object{o}", sizes[o], centres[o],
                                       MaterialLayout(materials=[]), True, layout_from="object0"))

    # ground plane (SetScene.AddGroundPlane, sx = sy = MaxXY = 20: a size-2 plane scaled by 20 * U(2, 6)), PBR
    enabled = bool(rng.random() < config.ground_prob)
    ground_material = sample_material(rng, assets, dataclasses.replace(config, pbr_prob=1.0), "ground")
    ground_material.scale /= 50.0  # repetitions per 50 units (a main object), not per unit
    ground = Ground(enabled=enabled, material=ground_material, size=40.0 * float(rng.uniform(2.0, 6.0)))

    # scattered objects (LoadNObjectsToScene with AvoidPos 0, AvoidRad 0), with probability scatter_prob
    occluders = []
    if rng.random() < config.scatter_prob:
        n_occ = int(rng.integers(config.occluders[0], config.occluders[1] + 1))
        px, py = 20.0 * float(rng.uniform(2.0, 6.0)), 20.0 * float(rng.uniform(2.0, 6.0))
        mn, mx = 20.0 * float(rng.uniform(0.2, 1.0)), 20.0 * float(rng.uniform(1.0, 5.0))
        for i in range(n_occ):
            for _ in range(100):  # their loop redraws until the object is farther from the origin than its size
                size = float(rng.uniform(mn, mx))
                xyz = [float(rng.uniform(-px / 2, px / 2)), float(rng.uniform(-py / 2, py / 2)),
                       float(rng.uniform(-1.0, 3.0))]
                if sum(v * v for v in xyz) > size * size:
                    break
            occluders.append(_authors_object(rng, assets, config, f"occluder{i}", size, xyz,
                                             _single_material(rng, assets, config, f"occluder{i}_material"), False))

    # camera (SetScene.RandomlySetCameraPos with VesWidth = VesHeight = 20)
    dist = float(rng.random()) * 60.0 + 40.0
    ang = (1.0 - 1.1 * float(rng.random()) * float(rng.random())) * 3.14 / 2
    y = math.sin(ang) * dist + float(rng.random()) * 20.0 - 10.0
    z = math.cos(ang) * dist + 20.0 * float(rng.random())
    roll = (0.5 * float(rng.random()) - 0.5 * float(rng.random())) * float(rng.random())
    rot = (ang, roll, 3.14159)
    sight = _euler_matrix(*rot) @ np.array([0.0, 0.0, -1.0])
    location = np.array([0.0, y, z])
    camera = Camera(location=tuple(float(v) for v in location),
                    target=tuple(float(v) for v in location + dist * sight), lens=50.0,
                    rotation=tuple(float(math.degrees(v)) for v in rot))
    return objects, camera, occluders, ground


def sample_scene(seed: int, index: int, assets: Optional[SceneAssets] = None, config: Optional[Scene3DConfig] = None,
                 attempt: int = 0) -> Scene3D:
    """Draw scene ``index`` of a run with ``seed``: deterministic (same arguments -> equal scenes, same JSON).

    Default (``config.style == "authors"``): the authors' distribution (module docstring) — 1–11 main objects (one
    in half of the scenes) wearing one layout of 2–8 materials, scattered unannotated objects in a fifth of the
    scenes, a ground plane in a quarter, an HDRI (else a natural photo, else Blender's sky) and the authors'
    camera. ``style == "spread"`` (``Scene3DConfig.from_preset("spread")``): the version-2 sampler — objects set
    apart on the ground, each with its own 2–5 materials, occluders, usually a ground. ``attempt`` re-draws a scene
    whose materials ended up hidden (the renderer asks for it).
    """
    assets = assets or default_assets()
    config = config or Scene3DConfig()
    rng = scene_rng(seed, index, attempt)
    if config.style == "spread":
        objects, camera, occluders, ground = _sample_spread(rng, assets, config)
    else:
        objects, camera, occluders, ground = _sample_authors(rng, assets, config)
    environment = _sample_environment(rng, assets, config)
    render = RenderSettings(width=int(config.width), height=int(config.height), samples=int(config.samples),
                            denoise=bool(config.denoise), max_bounces=int(config.max_bounces),
                            seed=int(rng.integers(2 ** 31)), pattern_resolution=int(config.pattern_resolution))
    scene = Scene3D(objects=objects, camera=camera, environment=environment, ground=ground, occluders=occluders,
                    render=render, seed=int(seed), index=int(index), attempt=int(attempt),
                    generator_version=GENERATOR_VERSION)
    return scene.validate()
