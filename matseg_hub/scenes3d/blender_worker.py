"""Render prepared 3D scene jobs with Blender's ``bpy`` (Cycles, CPU). The only module that imports ``bpy``.

Run by :mod:`matseg_hub.scenes3d` with a Python that has ``bpy`` and ``OpenEXR`` (usually a separate venv, since the
``bpy`` wheel pins its own numpy); it imports nothing from :mod:`matseg_hub`, so it runs as a plain file::

    python blender_worker.py JOB.json OUT_DIR          # render one job
    python blender_worker.py --serve                   # render jobs read from stdin, one JSON per line:
                                                       #   {"job": "JOB.json", "out": "OUT_DIR"}

A job is a scene (:class:`matseg_hub.scenes3d.scene.Scene3D` as a dict) whose files are resolved by the orchestrator:
every pattern layer has ``map_file`` (a 16-bit PNG of its pattern map), every material ``maps`` (albedo,
roughness, metallic, height image paths) and ``threads`` says how many CPU threads Cycles may use.

One Cycles render gives everything, so the masks align with the RGB pixel for pixel and see the same occlusion:
the RGB (denoised) and, as AOV passes accumulated over the same samples and pixel filter but never denoised and
written only where the camera ray first hits a surface, the weight ``w_k`` of every material of every annotated
object with a layout of its own (``m<o>_<k>``; objects with ``layout_from`` wear their owner's material and write
its passes) and the annotated-object coverage (``annotated``). Output in ``OUT_DIR``: ``rgb.png``,
``passes.npz`` (float32 [H, W] per pass), ``camera.json`` and ``result.json`` (written last; timings).
On ``--serve`` each finished job prints one line ``MATSEG-DONE <json>`` on stdout.
"""

import json
import math
import os
import sys
import time
import traceback
import warnings

import bpy  # noqa: E402  (this module exists to import it)
import numpy as np
from mathutils import Euler, Matrix, Vector

warnings.filterwarnings("ignore", category=DeprecationWarning)

DONE_MARK = "MATSEG-DONE "
PRIMITIVE_OPS = {
    "sphere": lambda: bpy.ops.mesh.primitive_uv_sphere_add(segments=48, ring_count=24, radius=0.5),
    "icosphere": lambda: bpy.ops.mesh.primitive_ico_sphere_add(subdivisions=3, radius=0.5),
    "cube": lambda: bpy.ops.mesh.primitive_cube_add(size=1.0),
    "cylinder": lambda: bpy.ops.mesh.primitive_cylinder_add(vertices=48, radius=0.5, depth=1.0),
    "cone": lambda: bpy.ops.mesh.primitive_cone_add(vertices=48, radius1=0.5, depth=1.0),
    "torus": lambda: bpy.ops.mesh.primitive_torus_add(major_radius=0.5, minor_radius=0.2),
    "monkey": lambda: bpy.ops.mesh.primitive_monkey_add(size=1.0),
}


# ---------------------------------------------------------------------------------------------------------------
# scene setup
# ---------------------------------------------------------------------------------------------------------------
def _reset():
    bpy.ops.wm.read_factory_settings(use_empty=True)
    for block in (bpy.data.images, bpy.data.materials, bpy.data.meshes, bpy.data.textures):
        for item in list(block):
            block.remove(item)


def _setup_render(scene, settings, threads):
    sc = bpy.context.scene
    sc.render.engine = "CYCLES"
    cy = sc.cycles
    cy.device = "CPU"
    cy.samples = int(settings["samples"])
    cy.use_adaptive_sampling = True
    cy.adaptive_threshold = float(settings["adaptive_threshold"])
    cy.use_denoising = bool(settings["denoise"])
    if settings["denoise"]:
        cy.denoiser = "OPENIMAGEDENOISE"
        cy.denoising_prefilter = "FAST"
    bounces = int(settings["max_bounces"])
    cy.max_bounces = bounces
    cy.diffuse_bounces = min(bounces, 2)
    cy.glossy_bounces = min(bounces, 2)
    cy.transmission_bounces = bounces
    cy.transparent_max_bounces = bounces
    cy.caustics_reflective = False
    cy.caustics_refractive = False
    cy.seed = int(settings["seed"])
    cy.texture_limit_render = "2048"
    sc.render.threads_mode = "FIXED"
    sc.render.threads = max(1, int(threads))
    sc.render.resolution_x = int(settings["width"])
    sc.render.resolution_y = int(settings["height"])
    sc.render.resolution_percentage = 100
    sc.render.film_transparent = False
    try:
        sc.view_settings.view_transform = settings.get("view_transform", "AgX")
    except TypeError:
        sc.view_settings.view_transform = "Standard"


def _image(path, non_color):
    img = bpy.data.images.load(path, check_existing=True)
    if non_color:
        img.colorspace_settings.name = "Non-Color"
    return img


def _node(nt, kind, **props):
    n = nt.nodes.new(kind)
    for k, v in props.items():
        setattr(n, k, v)
    return n


def _math(nt, op, a, b):
    n = _node(nt, "ShaderNodeMath", operation=op)
    for i, v in enumerate((a, b)):
        if isinstance(v, (int, float)):
            n.inputs[i].default_value = float(v)
        else:
            nt.links.new(v, n.inputs[i])
    return n.outputs[0]


def _mix(nt, data_type, factor, a, b):
    n = _node(nt, "ShaderNodeMix", data_type=data_type)
    ins = {"FLOAT": (0, 2, 3), "RGBA": (0, 6, 7), "VECTOR": (0, 4, 5)}[data_type]
    nt.links.new(factor, n.inputs[ins[0]])
    for idx, v in zip(ins[1:], (a, b)):
        nt.links.new(v, n.inputs[idx])
    out = {"FLOAT": 0, "RGBA": 2, "VECTOR": 1}[data_type]
    return n.outputs[out]


def _value(nt, v):
    n = _node(nt, "ShaderNodeValue")
    n.outputs[0].default_value = float(v)
    return n.outputs[0]


def _rgb(nt, c):
    n = _node(nt, "ShaderNodeRGB")
    n.outputs[0].default_value = (float(c[0]), float(c[1]), float(c[2]), 1.0)
    return n.outputs[0]


def _mapping(nt, coord_socket, scale, rotation_deg, offset):
    m = _node(nt, "ShaderNodeMapping", vector_type="POINT")
    nt.links.new(coord_socket, m.inputs["Vector"])
    m.inputs["Location"].default_value = tuple(float(v) for v in offset)
    m.inputs["Rotation"].default_value = tuple(math.radians(float(v)) for v in rotation_deg)
    m.inputs["Scale"].default_value = (float(scale),) * 3
    return m.outputs["Vector"]


def _tex(nt, path, vector, non_color, blend, extension="REPEAT"):
    t = _node(nt, "ShaderNodeTexImage", projection="BOX", projection_blend=float(blend), extension=extension)
    t.image = _image(path, non_color)
    nt.links.new(vector, t.inputs["Vector"])
    return t


def _material_sockets(nt, mat, vector):
    """(colour, roughness, metallic, height, emission) output sockets of one material."""
    maps = mat.get("maps") or {}
    if mat["kind"] != "uniform" and maps.get("albedo"):
        colour = _tex(nt, maps["albedo"], vector, False, 0.2).outputs["Color"]
    else:
        colour = _rgb(nt, mat["base_color"])
    out = [colour]
    for key in ("roughness", "metallic"):
        out.append(_tex(nt, maps[key], vector, True, 0.2).outputs["Color"] if maps.get(key) else
                   _value(nt, mat[key]))
    out.append(_tex(nt, maps["height"], vector, True, 0.2).outputs["Color"] if maps.get("height") else
               _value(nt, 0.5))
    out.append(_value(nt, mat.get("emission", 0.0)))
    return out


def _empty_node_tree(owner):
    """The node tree of a new material or world, emptied of Blender's default nodes."""
    if not owner.node_tree:  # pragma: no cover - Blender < 5 creates no tree until asked
        owner.use_nodes = True
    nt = owner.node_tree
    for n in list(nt.nodes):
        nt.nodes.remove(n)
    return nt


def _build_material(name, obj_spec, obj_index, size, has_uv):
    """A node tree that mixes the layout's materials by their pattern maps and writes one AOV per material."""
    mat = bpy.data.materials.new(name)
    nt = _empty_node_tree(mat)
    out = _node(nt, "ShaderNodeOutputMaterial")
    bsdf = _node(nt, "ShaderNodeBsdfPrincipled")
    nt.links.new(bsdf.outputs[0], out.inputs["Surface"])
    tc = _node(nt, "ShaderNodeTexCoord")
    layout = obj_spec["layout"]
    mats, pats = layout["materials"], layout["patterns"]

    props = None
    for k, m in enumerate(mats):
        vec = _mapping(nt, tc.outputs["Object"], float(m["scale"]) / size, (0.0, 0.0, m["rotation"]), (0, 0, 0))
        sockets = _material_sockets(nt, m, vec)
        if props is None:
            props = sockets
            continue
        pat = pats[k - 1]
        coords = pat["coordinates"]
        if coords == "uv" and not has_uv:
            coords = "generated"
        src = {"object": "Object", "generated": "Generated", "uv": "UV"}[coords]
        scale = float(pat["scale"]) / (size if coords == "object" else 1.0)
        pvec = _mapping(nt, tc.outputs[src], scale, pat["rotation"], pat["offset"])
        p = _tex(nt, pat["map_file"], pvec, True, pat["blend"], extension="MIRROR").outputs["Color"]
        p = _math(nt, "MINIMUM", _math(nt, "MAXIMUM", p, 0.0), 1.0)
        pat["_socket"] = p
        props = [_mix(nt, "RGBA", p, props[0], sockets[0])] + [
            _mix(nt, "FLOAT", p, a, b) for a, b in zip(props[1:], sockets[1:])]

    colour, rough, metal, height, emission = props
    nt.links.new(colour, bsdf.inputs["Base Color"])
    nt.links.new(rough, bsdf.inputs["Roughness"])
    nt.links.new(metal, bsdf.inputs["Metallic"])
    if obj_spec.get("annotated") and any(m.get("maps", {}).get("height") for m in mats):  # bump: main objects only
        bump = _node(nt, "ShaderNodeBump")
        bump.inputs["Strength"].default_value = float(np.mean([m["normal_strength"] for m in mats])) * 0.5
        bump.inputs["Distance"].default_value = 0.02 * size
        nt.links.new(height, bump.inputs["Height"])
        nt.links.new(bump.outputs["Normal"], bsdf.inputs["Normal"])
    if any(float(m.get("emission", 0.0)) > 0 for m in mats):
        nt.links.new(colour, bsdf.inputs["Emission Color"])
        nt.links.new(emission, bsdf.inputs["Emission Strength"])

    if obj_spec.get("annotated"):
        # w_0 = prod_j (1 - p_j);  w_k = p_{k-1} prod_{j >= k} (1 - p_j)
        ps = [pat["_socket"] for pat in pats]
        suffix = [None] * (len(mats) + 1)  # suffix[k] = prod_{j >= k} (1 - p_j); None = 1
        for j in range(len(ps) - 1, -1, -1):
            inv = _math(nt, "SUBTRACT", 1.0, ps[j])
            suffix[j] = inv if suffix[j + 1] is None else _math(nt, "MULTIPLY", inv, suffix[j + 1])
        for k in range(len(mats)):
            if k == 0:
                w = suffix[0] if suffix[0] is not None else _value(nt, 1.0)
            else:
                w = ps[k - 1] if suffix[k] is None else _math(nt, "MULTIPLY", ps[k - 1], suffix[k])
            aov = _node(nt, "ShaderNodeOutputAOV", aov_name=f"m{obj_index}_{k}")
            nt.links.new(w, aov.inputs["Value"])
        ann = _node(nt, "ShaderNodeOutputAOV", aov_name="annotated")
        ann.inputs["Value"].default_value = 1.0
    return mat


def _rotation_matrix(deg):
    return np.array(Euler([math.radians(float(v)) for v in deg], "XYZ").to_matrix())


def _make_mesh(spec):
    """Create the object's mesh (primitive or glTF), rotated, scaled to ``size`` and placed on ``location``."""
    if spec["shape"] == "gltf":
        before = set(bpy.data.objects)
        bpy.ops.import_scene.gltf(filepath=spec["path"])
        new = [o for o in bpy.data.objects if o not in before]
        meshes = [o for o in new if o.type == "MESH"]
        if not meshes:
            raise RuntimeError(f"{spec['path']}: the glTF file holds no mesh")
        for o in meshes:  # bake parent transforms into the meshes
            o.data.transform(o.matrix_world)
            o.parent = None
            o.matrix_world = Matrix.Identity(4)
        for o in new:
            if o not in meshes:
                bpy.data.objects.remove(o, do_unlink=True)
        bpy.ops.object.select_all(action="DESELECT")
        for o in meshes:
            o.select_set(True)
        bpy.context.view_layer.objects.active = meshes[0]
        if len(meshes) > 1:
            bpy.ops.object.join()
        obj = bpy.context.view_layer.objects.active
        obj.data.materials.clear()
    else:
        PRIMITIVE_OPS[spec["shape"]]()
        obj = bpy.context.view_layer.objects.active
    obj.name = spec["name"]
    me = obj.data
    n = len(me.vertices)
    co = np.empty(n * 3, dtype=np.float64)
    me.vertices.foreach_get("co", co)
    rot = _rotation_matrix(spec["rotation"])
    if spec.get("anchor", "bottom") == "centre":  # the authors' LoadObject: scale, centre the box, then rotate
        co = co.reshape(n, 3)
        lo, hi = co.min(0), co.max(0)
        scale = float(spec["size"]) / max(float((hi - lo).max()), 1e-9)
        co = ((co - (lo + hi) / 2) * scale) @ rot.T + np.asarray(spec["location"], float)
    else:
        co = co.reshape(n, 3) @ rot.T
        lo, hi = co.min(0), co.max(0)
        scale = float(spec["size"]) / max(float((hi - lo).max()), 1e-9)
        co = (co - [(lo[0] + hi[0]) / 2, (lo[1] + hi[1]) / 2, lo[2]]) * scale + np.asarray(spec["location"], float)
    me.vertices.foreach_set("co", co.ravel().astype(np.float32))
    me.update()
    if spec.get("smooth", True):
        me.shade_smooth()
    else:
        me.shade_flat()
    if spec["subdivision"] > 0:
        sub = obj.modifiers.new("subdivision", "SUBSURF")
        sub.levels = sub.render_levels = int(spec["subdivision"])
    if spec["displacement"] > 0:
        tex = bpy.data.textures.new(f"{spec['name']}_noise", "CLOUDS")
        tex.noise_scale = float(spec["displacement_scale"]) * float(spec["size"])
        tex.noise_depth = 2
        anchor = bpy.data.objects.new(f"{spec['name']}_noise_anchor", None)
        bpy.context.scene.collection.objects.link(anchor)
        rs = np.random.default_rng(int(spec["noise_seed"]))
        anchor.location = tuple(float(v) for v in rs.uniform(-50, 50, size=3))
        disp = obj.modifiers.new("displacement", "DISPLACE")
        disp.texture = tex
        disp.texture_coords = "OBJECT"
        disp.texture_coords_object = anchor
        disp.strength = float(spec["displacement"]) * float(spec["size"])
    return obj


def _add_object(spec, obj_index, built=None):
    """Add the object; ``built`` maps owner names to their materials (an object with ``layout_from`` wears its
    owner's material: one node tree, in world coordinates, over all of them)."""
    obj = _make_mesh(spec)
    has_uv = len(obj.data.uv_layers) > 0
    built = {} if built is None else built
    if spec.get("layout_from"):
        mat = built[spec["layout_from"]]
    else:
        size = float(spec["layout"].get("extent") or spec["size"])
        mat = _build_material(f"{spec['name']}_material", spec, obj_index, size, has_uv)
        built[spec["name"]] = mat
    obj.data.materials.clear()
    obj.data.materials.append(mat)
    for poly in obj.data.polygons:
        poly.material_index = 0
    return obj


def _add_ground(ground):
    if not ground["enabled"]:
        return None
    bpy.ops.mesh.primitive_plane_add(size=float(ground["size"]))
    obj = bpy.context.view_layer.objects.active
    obj.name = "ground"
    spec = {"name": "ground", "layout": {"materials": [ground["material"]], "patterns": []}, "annotated": False}
    obj.data.materials.append(_build_material("ground_material", spec, -1, 1.0, True))
    return obj


def _setup_world(env):
    world = bpy.data.worlds.new("world")
    bpy.context.scene.world = world
    nt = _empty_node_tree(world)
    out = _node(nt, "ShaderNodeOutputWorld")
    bg = _node(nt, "ShaderNodeBackground")
    bg.inputs["Strength"].default_value = float(env["strength"])
    nt.links.new(bg.outputs[0], out.inputs["Surface"])
    kind = env["kind"]
    if kind == "colour":
        bg.inputs["Color"].default_value = tuple(env["colour"]) + (1.0,)
    else:
        tc = _node(nt, "ShaderNodeTexCoord")
        vec = _mapping(nt, tc.outputs["Generated"], 1.0, (0.0, 0.0, env["rotation"]), (0, 0, 0))
        if kind == "sky":
            sky = _node(nt, "ShaderNodeTexSky")
            types = [i.identifier for i in sky.bl_rna.properties["sky_type"].enum_items]
            for pref in ("MULTIPLE_SCATTERING", "NISHITA", "SINGLE_SCATTERING", "HOSEK_WILKIE"):
                if pref in types:
                    sky.sky_type = pref
                    break
            if hasattr(sky, "sun_elevation"):
                sky.sun_elevation = math.radians(float(env["sun_elevation"]))
                sky.sun_rotation = math.radians(float(env["sun_rotation"]))
            src = sky
            bg.inputs["Strength"].default_value = float(env["strength"]) * 0.3
        else:
            src = _node(nt, "ShaderNodeTexEnvironment")
            src.image = _image(env["path"], False)
        if "Vector" in src.inputs:
            nt.links.new(vec, src.inputs["Vector"])
        nt.links.new(src.outputs["Color"], bg.inputs["Color"])
    if float(env.get("sun", 0.0)) > 0:
        light = bpy.data.lights.new("sun", "SUN")
        light.energy = float(env["sun"])
        light.angle = math.radians(3.0)
        sun = bpy.data.objects.new("sun", light)
        bpy.context.scene.collection.objects.link(sun)
        el, rot = math.radians(float(env["sun_elevation"])), math.radians(float(env["sun_rotation"]))
        d = Vector((math.cos(el) * math.cos(rot), math.cos(el) * math.sin(rot), math.sin(el)))
        sun.rotation_euler = (-d).to_track_quat("-Z", "Y").to_euler()


def _setup_camera(cam_spec, settings):
    cam = bpy.data.cameras.new("Camera")
    cam.lens = float(cam_spec["lens"])
    cam.sensor_width = float(cam_spec["sensor_width"])
    cam.sensor_fit = "HORIZONTAL"
    cam.clip_start = 0.01
    cam.clip_end = 1000.0
    obj = bpy.data.objects.new("Camera", cam)
    bpy.context.scene.collection.objects.link(obj)
    bpy.context.scene.camera = obj
    loc = Vector(cam_spec["location"])
    obj.location = loc
    if cam_spec.get("rotation") is not None:  # the authors' cameras: an Euler rotation, not a target
        obj.rotation_euler = Euler([math.radians(float(v)) for v in cam_spec["rotation"]], "XYZ")
    else:
        obj.rotation_euler = (Vector(cam_spec["target"]) - loc).to_track_quat("-Z", "Y").to_euler()
    bpy.context.view_layer.update()
    return obj


def camera_parameters(obj, settings):
    """The reference's ``CameraParameters.json`` keys plus OpenCV intrinsics/extrinsics (pixels, metres)."""
    sc = bpy.context.scene
    cam = obj.data
    w, h = int(settings["width"]), int(settings["height"])
    fx = cam.lens / cam.sensor_width * w
    K = [[fx, 0.0, w / 2.0], [0.0, fx, h / 2.0], [0.0, 0.0, 1.0]]
    world_to_blender_cam = obj.matrix_world.inverted()
    flip = Matrix(((1, 0, 0, 0), (0, -1, 0, 0), (0, 0, -1, 0), (0, 0, 0, 1)))
    cv = flip @ world_to_blender_cam
    return {
        "name": obj.name, "Focal Length": cam.lens, "Location": list(obj.location),
        "Rotation": list(obj.rotation_euler), "Perseption": cam.type, "shift_x": cam.shift_x,
        "shift_y": cam.shift_y, "sensor_width": cam.sensor_width, "sensor_height": cam.sensor_height,
        "sensor_fit": cam.sensor_fit, "resolution_y": h, "resolution_x": w,
        "pixel_aspect_x": sc.render.pixel_aspect_x, "pixel_aspect_y": sc.render.pixel_aspect_y,
        "resolution_percentage": sc.render.resolution_percentage, "scale": list(obj.scale),
        "K": K, "world_to_camera_opencv": [list(row) for row in cv][:3],
        "camera_to_world_blender": [list(row) for row in obj.matrix_world],
    }


# ---------------------------------------------------------------------------------------------------------------
# rendering
# ---------------------------------------------------------------------------------------------------------------
def _read_passes(exr_path, names):
    import OpenEXR

    f = OpenEXR.File(exr_path, separate_channels=True)
    found = {}
    for part in f.parts:
        for cname, ch in part.channels.items():
            bits = cname.split(".")
            if len(bits) >= 3 and bits[-2] in names:
                found[bits[-2]] = np.asarray(ch.pixels, dtype=np.float32)
    missing = [n for n in names if n not in found]
    h, w = bpy.context.scene.render.resolution_y, bpy.context.scene.render.resolution_x
    for n in missing:  # an AOV that no visible surface wrote is all zeros
        found[n] = np.zeros((h, w), dtype=np.float32)
    return found


def render_job(job_path, out_dir):
    t0, c0 = time.perf_counter(), time.process_time()
    with open(job_path, encoding="utf-8") as fh:
        job = json.load(fh)
    scene, threads = job["scene"], int(job.get("threads", 1))
    settings = scene["render"]
    os.makedirs(out_dir, exist_ok=True)
    _reset()
    _setup_render(scene, settings, threads)
    vl = bpy.context.scene.view_layers[0]
    names = ["annotated"]
    annotated = [o for o in scene["objects"] if o["annotated"] and not o.get("layout_from")]
    for oi, spec in enumerate(annotated):
        names += [f"m{oi}_{k}" for k in range(len(spec["layout"]["materials"]))]
    for n in names:
        aov = vl.aovs.add()
        aov.name = n
        aov.type = "VALUE"
    oi, built = 0, {}
    for spec in scene["objects"]:
        owner = spec["annotated"] and not spec.get("layout_from")
        _add_object(spec, oi if owner else -1, built)
        oi += bool(owner)
    for spec in scene["occluders"]:
        spec = dict(spec, annotated=False)
        _add_object(spec, -1)
    _add_ground(scene["ground"])
    _setup_world(scene["environment"])
    cam = _setup_camera(scene["camera"], settings)
    t_build, c_build = time.perf_counter(), time.process_time()

    sc = bpy.context.scene
    exr = os.path.join(out_dir, "passes.exr")
    im = sc.render.image_settings
    if hasattr(im, "media_type"):
        im.media_type = "MULTI_LAYER_IMAGE"
    else:  # pragma: no cover - Blender < 5
        im.file_format = "OPEN_EXR_MULTILAYER"
    im.exr_codec = "NONE"
    im.color_depth = "32"
    sc.render.filepath = exr
    bpy.ops.render.render(write_still=True)
    t_render, c_render = time.perf_counter(), time.process_time()

    if hasattr(im, "media_type"):
        im.media_type = "IMAGE"
    im.file_format = "PNG"
    im.color_mode = "RGB"
    im.color_depth = "8"
    im.compression = 15
    bpy.data.images["Render Result"].save_render(os.path.join(out_dir, "rgb.png"))
    passes = _read_passes(exr, names)
    os.remove(exr)
    np.savez(os.path.join(out_dir, "passes.npz"), **passes)
    with open(os.path.join(out_dir, "camera.json"), "w", encoding="utf-8") as fh:
        json.dump(camera_parameters(cam, settings), fh)
    t_end = time.perf_counter()
    result = {"ok": True, "out": out_dir, "passes": names, "blender": bpy.app.version_string,
              "timings": {"build_s": t_build - t0, "render_s": t_render - t_build, "write_s": t_end - t_render,
                          "build_cpu_s": c_build - c0, "render_cpu_s": c_render - c_build}}
    tmp = os.path.join(out_dir, "result.json.tmp")
    with open(tmp, "w", encoding="utf-8") as fh:
        json.dump(result, fh)
    os.replace(tmp, os.path.join(out_dir, "result.json"))
    return result


def serve():
    """Render jobs read from stdin (one JSON line each) until stdin closes."""
    for line in sys.stdin:
        line = line.strip()
        if not line:
            continue
        try:
            req = json.loads(line)
            result = render_job(req["job"], req["out"])
        except Exception as exc:  # noqa: BLE001 - reported to the orchestrator, which names the scene
            result = {"ok": False, "error": f"{type(exc).__name__}: {exc}", "traceback": traceback.format_exc()}
        sys.stdout.write(DONE_MARK + json.dumps(result) + "\n")
        sys.stdout.flush()


def main(argv):
    if argv[:1] == ["--serve"]:
        serve()
        return 0
    if argv[:1] == ["--version"]:
        import OpenEXR  # noqa: F401 - checks that it is there

        sys.stdout.write(DONE_MARK + json.dumps({"ok": True, "blender": bpy.app.version_string}) + "\n")
        return 0
    if len(argv) != 2:
        sys.stderr.write("usage: blender_worker.py JOB.json OUT_DIR | --serve | --version\n")
        return 2
    result = render_job(argv[0], argv[1])
    sys.stdout.write(DONE_MARK + json.dumps(result) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
