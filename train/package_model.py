"""Package a trained run's best checkpoint as a built-in net (``matseg_hub/resources/models/<name>/``).

    python train/package_model.py --run runs/matseg-tiny-finetune --stage1 runs/matseg-tiny \
        --output matseg_hub/resources/models/matseg-tiny

What it does (the recipe of ``matseg-tiny``'s folder, rerunnable):

1. loads ``<run>/best`` (float32) and writes it to ``--output`` with its weights stored as float16 (the config keeps
   ``dtype: float32``, so ``from_pretrained`` loads it as float32: half the bytes, the same compute);
2. scores rgb, hsv, the float32 checkpoint and the packaged float16 copy with triplet accuracy on the run's held-out
   selection scenes (``<run>/heldout_scenes``), on fresh test scenes of a seed that neither training nor selection
   used (``--test-seed``), and on the built-in benchmark photo (reported only; never used to pick the checkpoint);
3. writes the model card (``README.md``): recipe, seeds, steps, wall time of each stage, the table, the training
   curve's last numbers.

``--output`` must be empty, absent, or hold only the files this script writes (they are replaced).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Dict, List

OWN_FILES = {"config.json", "model.safetensors", "preprocessor_config.json", "README.md", "matseg_auto.py"}
METRICS = ("point_triplet", "material_triplet", "point_top1", "material_top1")


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run", required=True, help="output_dir of a train/train.py run (with best/)")
    parser.add_argument("--output", required=True, help="folder to write the packaged net into")
    parser.add_argument("--name", default="matseg-tiny", help="the net's name (card title)")
    parser.add_argument("--recipe", default="train/configs/matseg-tiny-finetune.yaml",
                        help="the recipe file of --run (named in the card)")
    parser.add_argument("--test-seed", type=int, default=777_001, help="seed of the fresh test scenes")
    parser.add_argument("--test-scenes", type=int, default=100, help="number of fresh test scenes")
    parser.add_argument("--note", default="", help="a clause on --run's history for the card (e.g. a resume)")
    parser.add_argument("--generator-note", default="", help="a sentence on the generator version(s) used (card)")
    parser.add_argument("--stage1", default=None, help="the run that --run continued from (init_from), for the card")
    parser.add_argument("--stage1-recipe", default="train/configs/matseg-tiny.yaml", help="--stage1's recipe file")
    return parser.parse_args(argv)


def _check_output(out: Path) -> None:
    from matseg_hub.errors import MatSegInputError

    if out.exists():
        other = sorted(p.name for p in out.iterdir() if p.name not in OWN_FILES)
        if other:
            raise MatSegInputError(f"--output {out} holds files this script did not write ({', '.join(other[:5])}); "
                                   f"give an empty or new folder")


def write_float16_copy(src: Path, out: Path) -> None:
    """``src`` (a save_pretrained folder) -> ``out`` with every floating weight stored as float16."""
    import torch
    from safetensors.torch import load_file, save_file

    from matseg_hub.utils.files import atomic_write_bytes

    out.mkdir(parents=True, exist_ok=True)
    weights = load_file(str(src / "model.safetensors"))
    half = {k: (v.to(torch.float16) if v.is_floating_point() else v).contiguous() for k, v in weights.items()}
    with tempfile.TemporaryDirectory(dir=out) as tmp:
        save_file(half, str(Path(tmp) / "model.safetensors"), metadata={"format": "pt"})
        atomic_write_bytes(out / "model.safetensors", (Path(tmp) / "model.safetensors").read_bytes())
    for name in ("config.json", "preprocessor_config.json", "matseg_auto.py"):
        atomic_write_bytes(out / name, (src / name).read_bytes())


def score_table(models: Dict[str, str], sets: Dict[str, tuple]) -> Dict[str, Dict[str, Dict[str, float]]]:
    """{set: {model: metrics}}; ``sets``: name -> (benchmark folder or None for the built-in photo, max_size)."""
    from matseg_hub.training.scoring import score

    table: Dict[str, Dict[str, Dict[str, float]]] = {}
    for set_name, (data, max_size) in sets.items():
        table[set_name] = {}
        for label, spec in models.items():
            table[set_name][label] = score(data, spec, max_size=max_size)
            print(f"{set_name:>12} {label:>22} {table[set_name][label]['point_triplet']:.4f}", flush=True)
    return table


def run_state(run: Path) -> dict:
    """A run's ``trainer_state.json`` (history + evaluations); for a run stopped before its end, the newest
    checkpoint's copy (``checkpoints/step-N/trainer_state.json``)."""
    path = run / "trainer_state.json"
    if not path.is_file():
        steps = sorted((run / "checkpoints").glob("step-*"), key=lambda p: int(p.name.split("-")[1]))
        if not steps:
            sys.exit(f"package_model.py: error: {run} has no trainer_state.json and no checkpoint")
        path = steps[-1] / "trainer_state.json"
    state = json.loads(path.read_text())
    state["_file"] = str(path)
    return state


def _wall_minutes(run: Path, state: dict) -> float:
    """Minutes from the run's start (``config.yaml`` written) to its last state file."""
    return (Path(state["_file"]).stat().st_mtime - (run / "config.yaml").stat().st_mtime) / 60


def stage_text(title: str, recipe: str, cfg: dict, state: dict, wall: float, note: str = "") -> List[str]:
    """Markdown lines of one training stage: the command, settings, the last logged numbers, the evaluations."""
    last_logs = state["history"][-10:]
    mean = lambda key: sum(h[key] for h in last_logs) / len(last_logs)  # noqa: E731
    history = {h["step"]: h for h in state["history"]}
    start = f"continued from `{cfg['init_from']}`" if cfg.get("init_from") else "from scratch (random initialisation)"
    rows = ["| step | loss (logged at that step) | scenes/point_triplet (selection) | benchmark/point_triplet (photo, reported only) |",
            "| --- | --- | --- | --- |"]
    for e in state["evals"]:
        loss = history.get(e["step"], {}).get("loss")
        rows.append(f"| {e['step']} | {'' if loss is None else f'{loss:.4f}'} | "
                    f"{e.get('scenes/point_triplet', float('nan')):.4f} | {e.get('benchmark/point_triplet', float('nan')):.4f} |")
    return [
        f"### {title}", "",
        f"`python train/train.py --config {recipe}`: {start}; seed {cfg['seed']}; {state['step']} optimiser steps in "
        f"{wall:.0f} min wall time (evaluations included) on 2 CPU cores shared with other jobs (budget "
        f"`max_train_minutes: {cfg['max_train_minutes']}`){note}. AdamW lr {cfg['learning_rate']}, weight decay "
        f"{cfg['weight_decay']}, warm-up {cfg['warmup_steps']} steps, gradient clipping {cfg['max_grad_norm']}. "
        f"Its `best/`: step {state['best_step']} (`{cfg['best_metric']}` {state['best']:.4f} on its held-out scenes). "
        f"Last {len(last_logs)} logging intervals (steps {last_logs[0]['step']}-{last_logs[-1]['step']}): loss "
        f"{mean('loss'):.4f}, pixel accuracy {mean('pixel_accuracy'):.4f}.", "",
        *rows, ""]


def card_text(name: str, stages: List[tuple], cfg: dict, state: dict, table: dict, sets_text: Dict[str, str],
              model, generator: str = "") -> str:
    """The README.md of the packaged net; ``stages``: (title, recipe, cfg, state, wall minutes, note) per stage,
    the last one the run whose best/ is packaged (``cfg``, ``state``)."""
    from matseg_hub.models.matseg.model_card import model_card_text

    best = next(e for e in state["evals"] if e["step"] == state["best_step"])
    rows: List[str] = ["| data | model | point triplet | material triplet | point top-1 | material top-1 |",
                       "| --- | --- | --- | --- | --- | --- |"]
    for set_name, per_model in table.items():
        for label, m in per_model.items():
            rows.append(f"| {set_name} | {label} | " + " | ".join(f"{m[k]:.4f}" for k in METRICS) + " |")
    lines = [
        "Trained on CPU with the package's own trainer (`train/train.py`) on 2D scenes generated on the fly "
        f"(`matseg_hub.synthetic.scenes2d` with the generator's default distribution, the authors'; only the sizes "
        f"reduced: sources {json.dumps(cfg['data_sources'])}), random batch sides {cfg['min_size']}-{cfg['max_size']} "
        f"px, at most {cfg['max_pixels']} pixels per batch, augmentations on, loss temperature {cfg['temperature']}. "
        "No real photo was used for training or for picking a checkpoint.", ""]
    for stage in stages:
        lines += stage_text(*stage)
    if generator:
        lines += [generator, ""]
    lines += ["Weights are stored as float16 (`model.safetensors`); `config.json` keeps `dtype: float32`, so "
              "`from_pretrained` loads and runs the net in float32. The table below scores both copies."]
    training = "\n".join(lines)
    selection = (f"`best/` was picked by `{cfg['best_metric']}` = {best[cfg['best_metric']]:.4f} at step "
                 f"{state['best_step']} on {cfg['eval_scenes']} held-out generated scenes (seed {cfg['eval_seed']}, "
                 f"{cfg['eval_scene_size']} px), never trained on. The built-in benchmark photo was scored for the "
                 "record only: it was never used for selection or stopping, so its numbers are test numbers (of one "
                 "photo, 37 points).")
    results = "\n".join(["## Scores", "", "Triplet accuracy (soft mode; SPEC §3) beside the colour baselines:", "",
                         *[f"- **{k}**: {v}" for k, v in sets_text.items()], "", *rows, ""])
    description = (f"`{name}`: a small MatSeg descriptor network that ships inside `matseg-hub` "
                   "(`matseg_hub.builtin_model_dir()`), trained only on generated scenes with implanted natural-image "
                   "patterns, so that the package's first command shows the paper's point out of the box: a net "
                   "trained on synthetic patterns beats colour baselines on material states. It is tiny "
                   f"({sum(p.numel() for p in model.parameters()):,} parameters) and far weaker than the paper's "
                   "ConvNeXt-base net: use it to try the tools, not to report results.\n\n"
                   "```bash\nmatseg evaluate                        # rgb, hsv and matseg-tiny on the built-in photo\n"
                   "matseg evaluate --model matseg-tiny --data BENCHMARK_FOLDER\nmatseg demo                            "
                   "# click on the built-in photo\n```\n\n```python\nimport matseg_hub\n"
                   "from transformers import AutoModel\nmodel = AutoModel.from_pretrained(matseg_hub.builtin_model_dir())"
                   "\npredictor = matseg_hub.MatSegPredictor(\"matseg-tiny\")\n```")
    card = model_card_text(model.config, license="cc0-1.0", repo_id=name, description=description,
                           training=training, selection=selection,
                           metrics={f"benchmark_{k}": table["built-in photo"]["matseg-tiny (float16, shipped)"][k]
                                    for k in METRICS})
    card = card.replace(f'model = AutoModel.from_pretrained("{name}")',
                        f'model = AutoModel.from_pretrained(matseg_hub.builtin_model_dir())  # a Hub copy: "ORG/{name}"')
    card = card.replace("import matseg_hub.models.matseg  # registers", "import matseg_hub\nimport matseg_hub.models.matseg  # registers")
    marker = "## Results"
    head, _, tail = card.partition(marker)
    tail = tail.split("## Citation", 1)[1] if "## Citation" in tail else tail
    return head + results + "\n## Citation" + tail


def main(argv=None) -> int:
    args = parse_args(argv)
    import yaml

    from matseg_hub.models.matseg import MatSegModel
    from matseg_hub.training.scoring import write_scene_benchmark
    from matseg_hub.utils.files import atomic_write_text

    run, out = Path(args.run), Path(args.output)
    _check_output(out)
    cfg = yaml.safe_load((run / "config.yaml").read_text())
    state = run_state(run)
    if args.test_seed in (cfg["seed"], cfg["eval_seed"]):
        sys.exit(f"package_model.py: error: --test-seed {args.test_seed} is a seed the run used")
    write_float16_copy(run / "best", out)
    test_dir = run / f"test_scenes_seed{args.test_seed}"
    if not (test_dir / "data").is_dir():
        write_scene_benchmark(test_dir, args.test_seed, args.test_scenes, size=cfg["eval_scene_size"])
    sets = {"selection scenes": (run / "heldout_scenes", None), "test scenes": (test_dir, None),
            "built-in photo": (None, 700)}
    sets_text = {
        "selection scenes": f"the {cfg['eval_scenes']} held-out generated scenes (seed {cfg['eval_seed']}, "
                            f"{cfg['eval_scene_size']} px) that picked the checkpoint",
        "test scenes": f"{args.test_scenes} fresh generated scenes (seed {args.test_seed}, {cfg['eval_scene_size']} px), "
                       "used for neither training nor selection",
        "built-in photo": "the benchmark photo that ships with the package (CC0, 37 points, 700 px), never used for "
                          "training or selection",
    }
    models = {"rgb": "rgb", "hsv": "hsv", "matseg-tiny (float32 checkpoint)": str(run / "best"),
              "matseg-tiny (float16, shipped)": str(out)}
    t0 = time.time()
    table = score_table(models, sets)
    stages = []
    if args.stage1:
        first = Path(args.stage1)
        first_state = run_state(first)
        note = (f"; stopped by hand after its evaluation at step {first_state['step']} to leave time for stage 2"
                if not (first / "trainer_state.json").is_file() else "")
        stages.append(("Stage 1", args.stage1_recipe, yaml.safe_load((first / "config.yaml").read_text()), first_state,
                       _wall_minutes(first, first_state), note))
    stages.append((f"Stage {len(stages) + 1}", args.recipe, cfg, state, _wall_minutes(run, state),
                   f"; {args.note}" if args.note else ""))
    model = MatSegModel.from_pretrained(str(out))
    atomic_write_text(out / "README.md", card_text(args.name, stages, cfg, state, table, sets_text, model,
                                                   generator=args.generator_note))
    atomic_write_text(run / "package_scores.json", json.dumps(table, indent=1))
    print(f"wrote {out} (scored in {time.time() - t0:.0f} s); sizes: " +
          ", ".join(f"{p.name} {p.stat().st_size}" for p in sorted(out.iterdir())))
    return 0


if __name__ == "__main__":
    sys.exit(main())
