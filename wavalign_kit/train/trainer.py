"""The training loop shared by every method: data, optimiser, mixer, accelerate, metrics, checkpoints and resume.

One step = one optimiser update over ``grad_accum`` micro-batches of ``prompts_per_step`` prompts per process:
1. each micro-batch is prepared by the step's method (`sft`, `grpo` or `dpo`: rollouts and rewards for the online
   methods, targets for the anchor);
2. the reward groups of all processes are gathered and the mixer is updated ONCE (the step's lambda);
3. one fused forward + backward per micro-batch through the method's ``loss`` (gradients synchronised on the
   last), clipping, AdamW; ``updates_per_rollout`` > 1 repeats this with PPO clipping. A step whose loss or
   gradient is not finite leaves the weights as they are and is counted (``nonfinite_steps``);
   ``max_nonfinite_steps`` in a row stop the run.
"""

from __future__ import annotations

import contextlib
import functools
import math
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from wavalign_kit.errors import ConfigError, NonFiniteError
from wavalign_kit.mixing import mixer_for, reward_range
from wavalign_kit.preflight import preflight, raise_on_failure
from wavalign_kit.rewards import training_reward
from wavalign_kit.train import dpo, grpo, sft
from wavalign_kit.train.checkpoint import (
    latest_checkpoint,
    load_checkpoint,
    rng_state,
    run_lock,
    save_checkpoint,
    seed_everything,
    set_rng_state,
)
from wavalign_kit.train.config import TrainConfig, check_resumable, config_dict
from wavalign_kit.train.metrics_log import MetricsLog, metric_columns
from wavalign_kit.train.optim import build_optimizer, step_scheduler
from wavalign_kit.train.sampler import PromptSampler
from wavalign_kit.train.step_metrics import peak_memory_mb, step_row, step_seed, to_floats

METHODS = {"sft": sft, "grpo": grpo, "dpo": dpo}


def make_accelerator(cfg: TrainConfig):
    """An Accelerator for one training run: CUDA with bf16 autocast when available (``bf16``), else the CPU."""
    from accelerate import Accelerator

    cuda = torch.cuda.is_available()
    return Accelerator(cpu=not cuda, mixed_precision="bf16" if cuda and cfg.bf16 else "no")


class Trainer:
    """Trains ``model`` (a SpokenDialogueModel) on ``world`` with ``cfg``; writes metrics and checkpoints to ``out``."""

    def __init__(self, cfg: TrainConfig, model, world, out_dir: str | Path, *, reward=None, accelerator=None,
                 log=print):
        self.model, self.world, self.out, self.log = model, world, Path(out_dir), log
        self.acc = accelerator or make_accelerator(cfg)
        self.rank, self.procs = self.acc.process_index, self.acc.num_processes
        self.cfg, self.examples = cfg, world.split(cfg.split)
        self.n_sft = int(round(cfg.sft_share * cfg.steps))
        self.online = cfg.algorithm == "grpo" or (cfg.algorithm == "dpo" and cfg.dpo_source != "offline")
        self._check_data()
        if reward is None and self.online:
            reward = training_reward(cfg, world)
        self.reward = reward
        if self.online and cfg.routed and reward.channels != {"semantic", "acoustic"}:
            raise ConfigError(f"train.routed=true needs semantic AND acoustic rewards; train.reward={cfg.reward!r} has "
                              f"only {sorted(reward.channels)} (e.g. reward={{semantic_judge: 1, acoustic_judge: 1}})")
        if cfg.mixer == "adaptive" and not self.online:
            raise ConfigError("train.mixer=adaptive needs rewards, but offline DPO has none: use mixer=fixed or "
                              "dpo_source=sampled")
        self.codec = getattr(model, "codec", None) or getattr(world, "codec", None)   # decodes speech for rewards
        checks = preflight(model, world, reward=reward, cfg=cfg, codec=self.codec)   # before any rollout
        raise_on_failure(checks, str(self.out), log)
        self.mixer = mixer_for(cfg, reward)
        self.reward_range = None if reward is None else reward_range(cfg, reward, log)
        self.sampler = PromptSampler(len(self.examples), cfg.seed)
        self.valid = world.split(cfg.eval_split)[: cfg.eval_examples] if cfg.eval_every else []
        self.columns = metric_columns(reward.names if reward is not None else [], cfg.grad_norm_per_channel,
                                      bool(cfg.eval_every))
        self.nonfinite = self.nonfinite_run = 0
        self.step_nonfinite = False

    def _check_data(self) -> None:
        """The examples must hold what the method trains on: targets for an anchor, rejected responses offline."""
        cfg = self.cfg
        if cfg.anchor or self.n_sft > 0 or cfg.algorithm == "sft":
            sft.check_targets(self.examples, cfg.split)
        if cfg.algorithm == "dpo" and cfg.dpo_source == "offline":
            dpo.check_rejected(self.examples, cfg.split)

    def _setup(self) -> int:
        """Move the model, take the reference, restore a checkpoint; returns the step to start from."""
        cfg, acc, model = self.cfg, self.acc, self.model
        model.model.to(acc.device)
        if cfg.uses_reference:
            if not model.is_lora():
                model.snapshot_reference()  # the starting policy, before any checkpoint weights are loaded
            self.log("[train] reference policy: " + ("the model with its LoRA adapters disabled" if model.is_lora()
                                                     else "a frozen copy of the starting weights"))
        elif cfg.algorithm == "grpo":
            self.log("[train] beta_text = beta_speech = 0: no KL term, the reference pass is skipped")
        ckpt = latest_checkpoint(self.out)
        if ckpt is not None:
            model.model.load_state_dict(type(model).load(ckpt / "model").model.state_dict())
        model.model.train()
        self.optimizer, self.scheduler = build_optimizer(model.model.parameters(), cfg)
        self.module, self.optimizer = acc.prepare(model.model, self.optimizer)
        self.policy = functools.partial(model.token_logprobs, module=self.module)
        self.params = [p for p in model.model.parameters() if p.requires_grad]
        if ckpt is None:
            seed_everything(cfg.seed + self.rank)
            return 0
        state, rngs = load_checkpoint(ckpt, optimizer=self.optimizer, scheduler=self.scheduler)
        check_resumable(state["config"], cfg, str(ckpt))
        self.mixer.load_state_dict(state["mixer"])
        self.sampler.load_state(state["data"])
        self.nonfinite = int(state.get("nonfinite_steps", 0))
        set_rng_state(rngs[self.rank] if self.rank < len(rngs) else rngs[0])
        self.log(f"[train] resumed from {ckpt.name} at step {state['step']}")
        return int(state["step"])

    # ------------------------------------------------------------------ the loop
    def train(self) -> dict[str, Any]:
        """Run (or resume) to ``cfg.steps`` optimiser steps; returns the last step's metrics."""
        with run_lock(self.out) if self.acc.is_main_process else contextlib.nullcontext():
            self.acc.wait_for_everyone()
            return self._train()

    def _train(self) -> dict[str, Any]:
        cfg, acc = self.cfg, self.acc
        start = self._setup()
        log = MetricsLog(self.out, self.columns, resume_step=start) if acc.is_main_process else None
        bar = tqdm(range(start, cfg.steps), initial=start, total=cfg.steps, desc=f"train {cfg.algorithm}",
                   disable=not (cfg.progress and acc.is_main_process), dynamic_ncols=True)
        row: dict[str, Any] = {}
        try:
            for step in bar:
                row = self.step(step)
                if log is not None:
                    log.write(row)
                bar.set_postfix({k: f"{row[k]:.3g}" for k in ("loss", "lambda", "reward_mean", "kl_text")
                                 if isinstance(row.get(k), float) and math.isfinite(row[k])})
                if (step + 1) % cfg.save_every == 0 or step + 1 == cfg.steps:
                    self.save(step + 1)
        finally:
            if log is not None:
                log.close()
        with torch.no_grad():
            checksum = float(sum(p.detach().double().abs().sum() for p in self.model.model.parameters()))
        self.log(f"[train] process {self.rank}/{self.procs} finished at step {cfg.steps}, "
                 f"parameter checksum {checksum:.10e}")
        return row

    def step(self, step: int) -> dict[str, Any]:
        """One optimiser step (prepare, mixer update, update phase); returns its metrics row."""
        cfg, acc = self.cfg, self.acc
        t0 = time.perf_counter()
        stage = "sft" if step < self.n_sft else cfg.algorithm
        method = METHODS[stage]
        with acc.autocast():
            batches = [method.prepare(self.model, ex, cfg, reward=self.reward, codec=self.codec,
                                      seed=step_seed(cfg.seed, step, m, self.rank))
                       for m, ex in enumerate(self.sampler.micro_batches(self.examples, cfg.prompts_per_step,
                                                                         cfg.grad_accum, self.rank, self.procs))]
        groups = [b.group_rewards for b in batches if b.group_rewards is not None]
        rewards = acc.gather(torch.as_tensor(np.concatenate(groups), device=acc.device)).cpu().numpy() if groups else None
        if stage == "sft":
            lam, mix_stats = 0.0, {}
        elif rewards is not None and cfg.mixer != "none":
            lam, mix_stats = self.mixer.update(rewards.tolist()), dict(self.mixer.stats)
        else:
            lam, mix_stats = self.mixer.value, {}
        t_prepared = time.perf_counter()
        extra: dict[str, Any] = {}
        if cfg.grad_norm_per_channel and stage == "grpo":  # measured before the rollout's first update
            with acc.autocast():
                extra = grpo.channel_grad_norms(self.policy, batches[0], cfg, self.params)
        for _ in range(cfg.updates_per_rollout if stage == "grpo" else 1):
            stats, grad_norm = self._update(method, batches, lam)
        stats = to_floats([{**st, **extra} if i == 0 else st for i, st in enumerate(stats)])
        if self.valid and ((step + 1) % cfg.eval_every == 0 or step + 1 == cfg.steps):
            stats[0]["valid_loss"] = sft.heldout_loss(self.policy, self.module, self.model, self.valid, cfg)
        row = step_row(self, step, stage, stats, batches, rewards, lam, mix_stats, grad_norm)
        row.update(step_time=time.perf_counter() - t0, time_train=time.perf_counter() - t_prepared,
                   lr=self.scheduler.get_last_lr()[0], peak_mem_mb=peak_memory_mb(acc.device))
        step_scheduler(self.scheduler)
        row["tokens_per_s"] = row.pop("train_tokens", 0.0) / max(row["step_time"], 1e-9)
        return row

    def _update(self, method, batches: list, lam: float) -> tuple[list[dict[str, Any]], float | None]:
        """Forward + backward over the micro-batches (gradient sync on the last), clip, AdamW, unless not finite."""
        cfg, acc = self.cfg, self.acc
        stats, trained, bad = [], 0, torch.zeros((), device=acc.device)
        for m, b in enumerate(batches):
            sync = m == len(batches) - 1
            with (contextlib.nullcontext() if sync else acc.no_sync(self.module)), acc.autocast():
                loss, st = method.loss(self.policy, b, cfg, lam)
                if loss is None:
                    if sync:  # keep every process in the same collective: a zero-weighted pass
                        acc.backward(sum(p.sum() for p in self.params) * 0.0)
                else:
                    acc.backward(loss / len(batches))
                    st["loss"] = loss.detach()
                    trained, bad = trained + 1, bad + (~torch.isfinite(loss.detach())).to(bad.device).float()
            stats.append(st)
        counts = torch.stack([torch.tensor(float(trained), device=acc.device), bad])   # one sync for both
        trained, bad = (int(x) for x in acc.reduce(counts, "sum").tolist())
        self.step_nonfinite = False
        if trained == 0:
            self.log(f"[train] warning: nothing to train on in this step ({float(stats[0].get('rows_skipped', 0)):.0f} "
                     f"rows with an empty {cfg.rl_token_type} mask, {float(stats[0].get('pairs_skipped', 0)):.0f} "
                     "pairs skipped); no update")
            self.optimizer.zero_grad(set_to_none=True)
            return stats, None
        norm = float(acc.clip_grad_norm_(self.params, cfg.grad_clip))
        self.step_nonfinite = bool(bad) or not math.isfinite(norm)
        if self.step_nonfinite:
            self.optimizer.zero_grad(set_to_none=True)
            self.nonfinite, self.nonfinite_run = self.nonfinite + 1, self.nonfinite_run + 1
            self.log(f"[train] warning: non-finite loss or gradient norm ({norm}); the weights were not updated")
            if self.nonfinite_run >= cfg.max_nonfinite_steps:
                raise NonFiniteError(f"{self.nonfinite_run} steps in a row produced a NaN/inf loss or gradient; the "
                                     f"weights are unchanged since the last good step. Lower train.lr, check the "
                                     f"rewards and inputs, or raise train.max_nonfinite_steps ({self.out})")
            return stats, norm
        self.nonfinite_run = 0
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        return stats, norm

    def save(self, step: int) -> None:
        """Checkpoint (main process writes; every process contributes its RNG state); never of non-finite weights."""
        from accelerate.utils import gather_object

        if not all(bool(torch.isfinite(p).all()) for p in self.params):
            raise NonFiniteError(f"{self.out}: the weights hold NaN/inf at step {step}; no checkpoint was written")
        rngs = gather_object([rng_state()]) if self.procs > 1 else [rng_state()]
        if self.acc.is_main_process:
            state = {"config": config_dict(self.cfg), "mixer": self.mixer.state_dict(), "data": self.sampler.state(),
                     "lambda": self.mixer.value, "nonfinite_steps": self.nonfinite}
            save_checkpoint(self.out, step, model=self.model, optimizer=self.optimizer, scheduler=self.scheduler,
                            state=state, rng_states=rngs, keep=self.cfg.keep_checkpoints)
        self.acc.wait_for_everyone()
