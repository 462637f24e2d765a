"""Train the MatSeg descriptor network with accelerate (SPEC §6).

    accelerate launch train/train.py --config train/configs/tiny-cpu.yaml [--output_dir DIR] [--max_steps N] \
        [--resume_from_checkpoint PATH|latest] [--any_config_key VALUE ...]
    accelerate launch --multi_gpu --num_processes 2 train/train.py --config ...   # 2 GPUs, or 2 CPU processes (gloo)
    python train/train.py --config train/configs/tiny-cpu.yaml                      # one process

Everything (loss, data, augmentations, scoring) lives in ``matseg_hub.training``; this script parses, builds and
loops. Output folder: ``checkpoints/step-N`` (``accelerator.save_state`` + data position per process),
``best/`` (picked by ``best_metric``, by default on held-out generated scenes) and ``final/`` (``save_pretrained`` +
model card with the benchmark numbers as test numbers and what picked the checkpoint), ``trainer_state.json``
(history), ``loss_curve.png``, ``config.yaml``, ``logs/`` (TensorBoard).

A bad setting, a missing checkpoint or an environment error ends with one line ``train.py: error: ...`` and exit
status 1; a traceback means a bug.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import shutil
import sys
import time
import warnings
from pathlib import Path
from typing import Dict, List, Optional

import torch

from matseg_hub.errors import MatSegInputError, require_extra
from matseg_hub.training.config import TrainConfig, load_config, save_config
from matseg_hub.training.progress import (CHECKPOINTS, TrainerState, has_accelerator_device, latest_checkpoint,
                                          save_loss_curve)
from matseg_hub.utils.files import atomic_write_text
from matseg_hub.utils.logging import get_logger, set_verbosity

logger = get_logger("train")
#: what the ``[train]`` extra brings: the loop, the default tracker (``report_to: tensorboard``), loss_curve.png
TRAIN_MODULES = ("accelerate", "tensorboard", "matplotlib")
# DDP on depthwise convolutions (ConvNeXt) warns once per process about gradient layouts; harmless.
warnings.filterwarnings("ignore", message=".*Grad strides do not match bucket view strides.*")


def parse_args(argv: Optional[List[str]] = None) -> TrainConfig:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], add_help=True,
                                     epilog="Any field of matseg_hub.training.config.TrainConfig can be given as "
                                            "--key value or --key=value (values are YAML).")
    parser.add_argument("--config", default=None, help="YAML file of settings (train/configs/*.yaml)")
    args, rest = parser.parse_known_args(argv)
    return load_config(args.config, rest)


def main(argv: Optional[List[str]] = None) -> int:
    """Train; a user's or the machine's error ends in one line on stderr and a non-zero exit status."""
    from matseg_hub.cli import run_reporting_errors

    return run_reporting_errors(lambda: train(argv), prog="train.py",
                                interrupted="train.py: interrupted; the checkpoints written so far are kept: resume "
                                            "with --resume_from_checkpoint latest")


def resume_folder(cfg: TrainConfig, out: Path, rank: int) -> Optional[Path]:
    """The checkpoint to resume from (``None``: start from scratch), checked before anything is loaded.

    Raises:
        MatSegInputError: the folder is missing or is not a complete checkpoint of this script (names it).
    """
    resume = cfg.resume_from_checkpoint
    if resume == "latest":
        found = latest_checkpoint(out)
        if found is None:
            logger.info("no checkpoint in %s: starting from scratch", out / CHECKPOINTS)
            return None
        resume = found
    if not resume:
        return None
    path = Path(resume)
    if not path.is_dir():
        raise MatSegInputError(f"resume_from_checkpoint: checkpoint folder {path} does not exist; give a "
                               f"checkpoints/step-N folder of a run, or 'latest'")
    missing = [name for name in ("trainer_state.json", f"data_state_rank{rank}.json") if not (path / name).is_file()]
    if missing:
        raise MatSegInputError(f"resume_from_checkpoint: {path} is not a complete checkpoint of train.py "
                               f"(no {', '.join(missing)}); give a checkpoints/step-N folder, or 'latest'")
    return path


def train(argv: Optional[List[str]] = None) -> int:
    cfg = parse_args(argv)
    require_extra("train", "train/train.py", TRAIN_MODULES)  # before any work, not after the first run
    from accelerate import Accelerator
    from accelerate.utils import ProjectConfiguration, set_seed

    from matseg_hub.training.data import build_loader
    from matseg_hub.training.loss import material_loss
    from matseg_hub.training.model import (build_model, card_metrics, convert_sync_batchnorm, mixed_precision_for,
                                           normalize_images, save_model, selection_text)

    out = Path(cfg.output_dir)
    report_to = None if cfg.report_to in ("none", "", None) else cfg.report_to
    # Without an accelerator device, accelerate only forms a process group when told to use the CPU: with
    # cpu=True, `accelerate launch --multi_gpu --num_processes N` (torchrun) gives N CPU processes over gloo.
    accelerator = Accelerator(cpu=not has_accelerator_device(),
                              mixed_precision=mixed_precision_for(cfg.mixed_precision), log_with=report_to,
                              gradient_accumulation_steps=cfg.gradient_accumulation_steps,
                              project_config=ProjectConfiguration(project_dir=str(out), logging_dir=str(out / "logs")))
    set_verbosity(20 if accelerator.is_main_process else 30)
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    rank, world = accelerator.process_index, accelerator.num_processes
    logger.info("%d process(es), %s, device %s, mixed precision %s", world, accelerator.distributed_type,
                accelerator.device, accelerator.mixed_precision)
    resume = resume_folder(cfg, out, rank)  # a wrong path fails now, not after the model is built
    if cfg.selects_on_test_set:
        logger.warning("best_metric %s selects best/ on the benchmark, the test set: its numbers then overestimate "
                       "the model (the model card says so); use scenes/point_triplet to select on held-out scenes",
                       cfg.best_metric)
    set_seed(cfg.seed)  # same initial weights on every process
    model = convert_sync_batchnorm(build_model(cfg), num_processes=world, device_type=accelerator.device.type,
                                   enabled=cfg.sync_batchnorm)
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.learning_rate, weight_decay=cfg.weight_decay)
    warmup = max(0, cfg.warmup_steps)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: min(1.0, (s + 1) / warmup) if warmup else 1.0)
    # the scheduler counts optimiser steps: it is stepped here, not by accelerate (which would step it once per
    # process), and saved with the checkpoints as a registered object
    model, optimizer = accelerator.prepare(model, optimizer)
    accelerator.register_for_checkpointing(scheduler)
    loader = build_loader(cfg, rank=rank, world_size=world, pin_memory=accelerator.device.type == "cuda")
    state = TrainerState()

    if resume:
        accelerator.load_state(str(resume))
        state.load(json.loads((resume / "trainer_state.json").read_text()))
        loader.load_state_dict(json.loads((resume / f"data_state_rank{rank}.json").read_text()))
        logger.info("resumed from %s at step %d", resume, state.step)

    heldout = None
    if accelerator.is_main_process:
        out.mkdir(parents=True, exist_ok=True)
        save_config(cfg, out / "config.yaml")
        if report_to:
            accelerator.init_trackers("matseg", config={k: (json.dumps(v) if isinstance(v, (list, dict)) else v)
                                                        for k, v in cfg.to_dict().items()})
        if cfg.eval_scenes > 0:
            from matseg_hub.training.scoring import write_scene_benchmark

            heldout = out / "heldout_scenes"
            if not (heldout / "data").is_dir():
                write_scene_benchmark(heldout, cfg.eval_seed, cfg.eval_scenes, size=cfg.eval_scene_size)
    accelerator.wait_for_everyone()

    def evaluate(step: int) -> Optional[Dict[str, float]]:
        """Main process: score the model; log; keep the best. Every process must call it (barrier)."""
        result = None
        if accelerator.is_main_process:
            from matseg_hub.training.scoring import model_descriptor_fn, score

            net = accelerator.unwrap_model(model)
            fn = model_descriptor_fn(net)
            t0 = time.time()
            result = {"step": step}
            if cfg.eval_benchmark:
                data = None if cfg.eval_benchmark == "builtin" else cfg.eval_benchmark
                for k, v in score(data, fn, max_size=cfg.eval_max_size, limit=cfg.eval_limit).items():
                    result[f"benchmark/{k}"] = v
            if heldout is not None:
                for k, v in score(heldout, fn, max_size=None).items():
                    result[f"scenes/{k}"] = v
            net.train()
            result["eval_seconds"] = round(time.time() - t0, 2)
            logger.info("step %d: %s", step, {k: round(v, 4) for k, v in result.items() if k != "step"})
            accelerator.log({k: v for k, v in result.items() if "/" in k}, step=step)
            state.evals.append(result)
            value = result.get(cfg.best_metric) if cfg.best_metric else None
            if value is not None and (state.best is None or value > state.best):
                state.best, state.best_step = value, step
                save_model(net, out / "best", metrics=card_metrics(result),
                           training=f"step {step} of `train/train.py` ({world} process(es)); config: config.yaml",
                           selection=selection_text(cfg, result, step), repo_id=cfg.push_to_hub)
                atomic_write_text(out / "best" / "eval_results.json", json.dumps(result, indent=2))
        accelerator.wait_for_everyone()
        return result

    def checkpoint(step: int) -> None:
        path = out / CHECKPOINTS / f"step-{step}"
        accelerator.wait_for_everyone()
        accelerator.save_state(str(path))
        path.mkdir(parents=True, exist_ok=True)
        atomic_write_text(path / f"data_state_rank{rank}.json", json.dumps(loader.state_dict()))
        accelerator.wait_for_everyone()
        if accelerator.is_main_process:
            atomic_write_text(path / "trainer_state.json", json.dumps(state.to_dict()))
            save_loss_curve(state, out / "loss_curve.png")
            olds = sorted((p for p in (out / CHECKPOINTS).glob("step-*") if p != path),
                          key=lambda p: int(p.name.split("-")[1]))
            for old in olds[:max(0, len(olds) - max(0, cfg.keep_checkpoints - 1))]:
                shutil.rmtree(old, ignore_errors=True)
        accelerator.wait_for_everyone()

    if state.step == 0 and not state.evals and cfg.eval_every and (cfg.eval_benchmark or heldout is not None):
        evaluate(0)  # the untrained network, for comparison

    model.train()
    fixed = None
    t_log, n_images, n_pixels, t_data = time.time(), 0, 0, 0.0
    # loss sum, pixel-accuracy sum, micro-batches since the last log: summed on the device, read back only when logged
    window = torch.zeros(3, dtype=torch.float64, device=accelerator.device)
    one = torch.ones((), dtype=torch.float64, device=accelerator.device)
    data_iter = iter(loader)
    t_start = time.time()
    last = False
    while state.step < cfg.max_steps and not last:
        t0 = time.time()
        batch = fixed if fixed is not None else next(data_iter)
        if cfg.overfit_one_batch and fixed is None:
            fixed = batch
        t_data += time.time() - t0
        with accelerator.accumulate(model):
            images = batch["images"].to(accelerator.device, non_blocking=True)
            with accelerator.autocast():
                desc = model(normalize_images(images)).descriptor_map
            device = accelerator.device
            result = material_loss(desc, batch["masks"].to(device), batch["annotated"].to(device),
                                   num_materials=batch["num_materials"].to(device),
                                   temperature=cfg.temperature, scope=cfg.loss_scope)
            accelerator.backward(result.loss)
            if accelerator.sync_gradients and cfg.max_grad_norm:
                accelerator.clip_grad_norm_(model.parameters(), cfg.max_grad_norm)
            optimizer.step()
            if accelerator.sync_gradients:
                scheduler.step()
            optimizer.zero_grad()
        window += torch.stack([result.loss.detach().double(), result.pixel_accuracy.double(), one])
        n_images += images.shape[0]
        n_pixels += images.shape[0] * images.shape[2] * images.shape[3]
        if not accelerator.sync_gradients:
            continue
        state.step += 1
        step = state.step
        if cfg.max_train_minutes is not None and step % cfg.logging_every == 0:
            # every process must agree on when to stop: checked at logging steps (a sync), not at every step
            over = torch.tensor([float(time.time() - t_start > 60 * cfg.max_train_minutes)], device=accelerator.device)
            last = bool(accelerator.reduce(over, reduction="sum").item() > 0)
            if last:
                logger.info("time budget of %.1f min reached at step %d", cfg.max_train_minutes, step)
        last = last or step == cfg.max_steps
        if step % cfg.logging_every == 0 or last:
            host = torch.tensor([n_images, n_pixels, t_data], device=accelerator.device, dtype=torch.float64)
            stats = torch.cat([window[:2] / window[2], host])
            mean = accelerator.reduce(stats, reduction="mean").tolist()  # the one read-back per logging interval
            elapsed = max(1e-9, time.time() - t_log)
            entry = {"step": step, "loss": float(mean[0]), "pixel_accuracy": float(mean[1]),
                     "lr": scheduler.get_last_lr()[0], "images_per_s": float(mean[2]) * world / elapsed,
                     "steps_per_s": cfg.logging_every / elapsed if step % cfg.logging_every == 0 else float("nan"),
                     "data_wait_share": float(mean[4]) / elapsed,
                     "batch": hashlib.sha1(images.cpu().numpy().tobytes()).hexdigest()[:16],
                     "batch_shape": list(images.shape)}
            if accelerator.is_main_process:
                state.history.append(entry)
                accelerator.log({f"train/{k}": v for k, v in entry.items()
                                 if isinstance(v, float) and not (isinstance(v, float) and math.isnan(v))}, step=step)
                logger.info("step %d loss %.4f pix-acc %.3f %.1f img/s data-wait %.0f%%", step, entry["loss"],
                            entry["pixel_accuracy"], entry["images_per_s"], 100 * entry["data_wait_share"])
            t_log, n_images, n_pixels, t_data = time.time(), 0, 0, 0.0
            window.zero_()
        if step % cfg.eval_every == 0 or last:
            evaluate(step)
        if step % cfg.checkpoint_every == 0 or last:
            checkpoint(step)
    del data_iter

    if accelerator.is_main_process:
        net = accelerator.unwrap_model(model)
        last = state.evals[-1] if state.evals else {}
        save_model(net, out / "final", metrics=card_metrics(last), selection=selection_text(cfg, last),
                   training=f"{state.step} steps of `train/train.py`", repo_id=cfg.push_to_hub)
        save_loss_curve(state, out / "loss_curve.png")
        atomic_write_text(out / "trainer_state.json", json.dumps(state.to_dict(), indent=1))
        if cfg.push_to_hub:
            from matseg_hub.hub.publish import publish_folder

            folder = out / "best" if (out / "best").is_dir() else out / "final"
            commit = publish_folder(folder, cfg.push_to_hub, repo_type="model", private=cfg.hub_private,
                                    git_remote=cfg.hub_git_remote,
                                    commit_message=f"MatSeg model, step {state.best_step or state.step}")
            logger.info("pushed %s to %s (%s)", folder, cfg.push_to_hub, commit[:12])
    accelerator.wait_for_everyone()
    accelerator.end_training()
    return 0


if __name__ == "__main__":
    sys.exit(main())
