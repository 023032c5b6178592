"""The training loop shared by every method: data, optimiser, mixer, accelerate, logging, checkpoint and resume.

One step = one optimiser update over ``grad_accum`` micro-batches of ``prompts_per_step`` prompts per process:
1. rollout phase (GRPO / online DPO): generate and score every micro-batch of the step;
2. the reward groups of all processes are gathered and the mixer is updated ONCE (lambda for the step);
3. train phase: one fused forward + backward per micro-batch (gradients synchronised on the last one),
   gradient clipping, AdamW, scheduler; ``updates_per_rollout`` > 1 repeats this phase with PPO clipping.
"""

from __future__ import annotations

import contextlib
import math
import random
import resource
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from wavalign_kit.config import ConfigError
from wavalign_kit.mixing import build_mixer
from wavalign_kit.train.checkpoint import (
    latest_checkpoint,
    load_checkpoint,
    rng_state,
    save_checkpoint,
    set_rng_state,
)
from wavalign_kit.train.config import TrainConfig, config_dict
from wavalign_kit.train.dpo import build_pair_batch, dpo_step_loss, has_rejected, offline_pairs, online_pairs
from wavalign_kit.train.metrics_log import MetricsLog, metric_columns
from wavalign_kit.train.online import build_hybrid_batch, collect, hybrid_loss, reference_logprobs, slice_rows
from wavalign_kit.train.optim import build_optimizer
from wavalign_kit.train.sampler import PromptSampler

MEAN_KEYS = ("loss_rl", "loss_anchor", "loss_dpo", "kl_text", "kl_speech", "entropy_text", "entropy_speech",
             "len_text", "len_speech", "dpo_accuracy", "clip_frac", "grad_norm_text", "grad_norm_speech")
RESUME_FREE = ("progress", "save_every", "keep_checkpoints")  # keys a resumed run may change
SUM_KEYS = ("rows_skipped", "pairs", "pairs_skipped", "judge_failures", "train_tokens", "time_generate",
            "time_reward")


def has_target(example) -> bool:
    """Whether an example has an SFT target (text or speech) for the anchor."""
    units = getattr(example, "target_units", None)
    return bool(getattr(example, "target_text", "")) or (units is not None and len(units) > 0)


def finite_mean(values: list[float]) -> float:
    """Mean of the finite values (NaN when there is none)."""
    ok = [v for v in values if math.isfinite(v)]
    return sum(ok) / len(ok) if ok else float("nan")


def step_seed(seed: int, *parts: int) -> int:
    """A generation seed that depends only on (seed, step, micro-batch, rank): resumed runs sample the same."""
    return int(np.random.SeedSequence([seed, *parts]).generate_state(1)[0])


def peak_memory_mb(device: torch.device) -> float:
    """Peak GPU memory allocated (CUDA) or the process's peak resident memory (CPU), in MiB."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


class Trainer:
    """Trains ``model`` (a SpokenDialogueModel) on ``world`` with ``cfg``; writes metrics and checkpoints to ``out``."""

    def __init__(self, cfg: TrainConfig, model, world, out_dir: str | Path, *, reward=None, accelerator=None,
                 log=print):
        from accelerate import Accelerator

        self.cfg, self.model, self.world, self.out = cfg, model, world, Path(out_dir)
        self.log = log
        cuda = torch.cuda.is_available()
        self.acc = accelerator or Accelerator(cpu=not cuda, mixed_precision="bf16" if cuda and cfg.bf16 else "no")
        self.rank, self.procs = self.acc.process_index, self.acc.num_processes
        self.examples = world.split(cfg.split)
        self.n_sft = int(round(cfg.sft_share * cfg.steps))
        self.online = cfg.algorithm == "grpo" or (cfg.algorithm == "dpo" and self._dpo_online())
        self._check_data()
        self.reward = reward if reward is not None or not self.online else build_train_reward(cfg, world)
        if self.online and cfg.algorithm == "grpo" and cfg.routed:
            channels = {fn.channel for fn, _ in self.reward.items}
            if channels != {"semantic", "acoustic"}:
                raise ConfigError(f"train.routed=true needs semantic AND acoustic rewards; train.reward={cfg.reward!r} "
                                  f"has only {sorted(channels)} (e.g. reward={{semantic_judge: 1, acoustic_judge: 1}})")
        if cfg.mixer == "adaptive" and not self.online:
            raise ConfigError("train.mixer=adaptive needs rewards, but offline DPO has none: use mixer=fixed or "
                              "dpo_source=online")
        self.mixer = build_mixer("none") if cfg.mixer == "none" else (
            build_mixer("fixed", weight=cfg.mix_weight) if cfg.mixer == "fixed" else
            build_mixer("adaptive", lambda_max=cfg.lambda_max, ema_alpha=cfg.ema_alpha, gate_slope=cfg.gate_slope,
                        reward_threshold=cfg.reward_threshold, reward_scale=cfg.reward_scale, use_ema=cfg.use_ema))
        self.sampler = PromptSampler(len(self.examples), cfg.seed)
        names = list(self.reward.names) if self.reward is not None else []
        self.columns = metric_columns(names, cfg.grad_norm_per_channel)

    # ------------------------------------------------------------------ set-up
    def _dpo_online(self) -> bool:
        if self.cfg.dpo_source == "auto":
            return not all(has_rejected(e) for e in self.examples)
        return self.cfg.dpo_source == "online"

    def _check_data(self) -> None:
        cfg = self.cfg
        needs_target = cfg.anchor or self.n_sft > 0 or cfg.algorithm == "sft"
        if needs_target:
            missing = [e.id for e in self.examples if not has_target(e)]
            if missing:
                raise ConfigError(f"split {cfg.split!r}: {len(missing)} of {len(self.examples)} examples have no SFT "
                                  f"target (target_text / target_units), e.g. {missing[:3]}, but the config asks for "
                                  "an anchor (anchor=true, algorithm=sft or sft_share>0); fill the targets or set "
                                  "anchor=false")
        if cfg.algorithm == "dpo" and cfg.dpo_source == "offline":
            missing = [e.id for e in self.examples if not has_rejected(e)]
            if missing:
                raise ConfigError(f"train.dpo_source=offline but {len(missing)} examples of split {cfg.split!r} have "
                                  f"no rejected response, e.g. {missing[:3]}; use dpo_source=online")

    def _setup_model(self) -> int:
        """Move the model, take the reference, restore a checkpoint; returns the step to start from."""
        cfg, acc, model = self.cfg, self.acc, self.model
        model.model.to(acc.device)
        self.uses_reference = cfg.uses_reference
        if self.uses_reference and not model.is_lora():
            model.snapshot_reference()  # the starting policy, before any checkpoint weights are loaded
        elif cfg.algorithm == "grpo":
            self.log("[train] beta_text = beta_speech = 0: no KL term, the reference pass is skipped")
        ckpt = latest_checkpoint(self.out)
        if ckpt is not None:
            saved = type(model).load(ckpt / "model")
            model.model.load_state_dict(saved.model.state_dict())
        model.model.train()
        self.optimizer, self.scheduler = build_optimizer(model.model.parameters(), cfg)
        self.wrapped, self.optimizer = acc.prepare(model.model, self.optimizer)
        start = 0
        if ckpt is not None:
            state, rngs = load_checkpoint(ckpt, optimizer=self.optimizer, scheduler=self.scheduler)
            now = config_dict(cfg)
            diff = sorted(k for k in now if k not in RESUME_FREE and state["config"].get(k) != now[k])
            if diff:
                raise ConfigError(f"{ckpt}: written with a different config (keys {diff}); resume with the same "
                                  "preset and overrides or pick a new --out directory")
            self.mixer.load_state_dict(state["mixer"])
            self.sampler.load_state(state["data"])
            set_rng_state(rngs[self.rank] if self.rank < len(rngs) else rngs[0])
            start = int(state["step"])
            self.log(f"[train] resumed from {ckpt.name} at step {start}")
        else:
            random.seed(cfg.seed + self.rank)
            np.random.seed((cfg.seed + self.rank) % 2**32)
            torch.manual_seed(cfg.seed + self.rank)
        return start

    @contextlib.contextmanager
    def _training_forward(self):
        """Route the model's forward passes through the accelerate-prepared module (DDP/FSDP) for training."""
        policy, self.model.model = self.model.model, self.wrapped
        try:
            with self.acc.autocast():
                yield
        finally:
            self.model.model = policy

    # ------------------------------------------------------------------ the loop
    def train(self) -> dict[str, Any]:
        """Run (or resume) to ``cfg.steps`` optimiser steps; returns the last step's metrics."""
        cfg = self.cfg
        if self.acc.is_main_process:
            self.out.mkdir(parents=True, exist_ok=True)
        self.acc.wait_for_everyone()
        start = self._setup_model()
        metrics = MetricsLog(self.out, self.columns, resume_step=start if start else None) \
            if self.acc.is_main_process else None
        bar = tqdm(range(start, cfg.steps), initial=start, total=cfg.steps, desc=f"train {cfg.algorithm}",
                   disable=not (cfg.progress and self.acc.is_main_process), dynamic_ncols=True)
        row: dict[str, Any] = {}
        try:
            for step in bar:
                row = self.step(step)
                if metrics is not None:
                    metrics.write(row)
                bar.set_postfix({k: f"{row[k]:.3g}" for k in ("loss", "lambda", "reward_mean", "kl_text")
                                 if isinstance(row.get(k), float) and math.isfinite(row[k])})
                if (step + 1) % cfg.save_every == 0 or step + 1 == cfg.steps:
                    self.save(step + 1)
        finally:
            if metrics is not None:
                metrics.close()
        with torch.no_grad():
            checksum = float(sum(p.detach().double().abs().sum() for p in self.model.model.parameters()))
        self.log(f"[train] process {self.rank}/{self.procs} finished at step {cfg.steps}, "
                 f"parameter checksum {checksum:.10e}")
        return row

    def _micro_examples(self) -> list[list]:
        """The step's micro-batches of this process (every process draws the same global order)."""
        P = self.cfg.prompts_per_step
        out = []
        for _ in range(self.cfg.grad_accum):
            idx = self.sampler.take(P * self.procs)[self.rank * P: (self.rank + 1) * P]
            out.append([self.examples[i] for i in idx])
        return out

    def step(self, step: int) -> dict[str, Any]:
        """One optimiser step (rollouts, mixer update, train phase); returns its metrics row."""
        cfg, acc = self.cfg, self.acc
        t0 = time.perf_counter()
        micro = self._micro_examples()
        stage = "sft" if step < self.n_sft or cfg.algorithm == "sft" else cfg.algorithm
        online = stage != "sft" and self.online
        scored = []
        if online:
            with acc.autocast():
                scored = [collect(self.model, ex, cfg, self.reward, getattr(self.world, "codec", None),
                                  step_seed(cfg.seed, step, m, self.rank)) for m, ex in enumerate(micro)]
        # gate statistics across processes -> one mixer update per optimiser step
        rewards = None
        if scored:
            local = torch.as_tensor(np.concatenate([s.group_rewards for s in scored]), device=acc.device)
            rewards = acc.gather(local).cpu().numpy()                                   # (P_total, G)
        if stage == "sft":
            lam, mix_stats = 0.0, {"lambda": 0.0}
        elif rewards is not None and cfg.mixer != "none":
            lam = self.mixer.update(rewards.tolist())
            mix_stats = dict(self.mixer.stats)
        else:
            lam, mix_stats = (1.0 if cfg.mixer == "none" else self.mixer.value), {}
            mix_stats["lambda"] = lam
        t_rollout = time.perf_counter()
        use_anchor = stage == "sft" or cfg.anchor
        batches = [self._prepare(stage, micro[m], scored[m] if scored else None, use_anchor) for m in range(len(micro))]
        stats: list[dict[str, float]] = []
        grad_norm = float("nan")
        for update in range(cfg.updates_per_rollout if stage == "grpo" else 1):
            stats, grad_norm = self._train_phase(stage, batches, lam, use_anchor, first=update == 0)
            if update == 0:  # per-channel gradient norms are measured on the rollout's first update
                channel_norms = [{k: v for k, v in st.items() if k.startswith("grad_norm_")} for st in stats]
        stats = [{**st, **cn} for st, cn in zip(stats, channel_norms)]
        t_end = time.perf_counter()
        row = self._row(step, stats, scored, rewards, lam, mix_stats, grad_norm)
        row.update(step_time=t_end - t0, time_train=t_end - t_rollout, lr=self.scheduler.get_last_lr()[0],
                   peak_mem_mb=peak_memory_mb(acc.device))
        with warnings.catch_warnings():  # a fully skipped first step (no optimizer.step) still advances the schedule
            warnings.filterwarnings("ignore", message="Detected call of `lr_scheduler.step", category=UserWarning)
            self.scheduler.step()
        row["tokens_per_s"] = row.pop("train_tokens", 0.0) / max(row["step_time"], 1e-9)
        return row

    def _prepare(self, stage: str, examples: list, scored, use_anchor: bool):
        """The fused batch of one micro-batch (and its reference log-probs when the KL/DPO needs them)."""
        anchor = examples if use_anchor else []
        with self.acc.autocast():
            if stage == "dpo":
                if scored is None:
                    p, c, r = offline_pairs(self.model, examples)
                    return build_pair_batch(self.model, p, c, r, anchor)
                p, c, r, ps = online_pairs(scored, self.cfg)
                return build_pair_batch(self.model, p, c, r, anchor, dropped=ps.dropped)
            hb = build_hybrid_batch(self.model, scored if stage == "grpo" else None, anchor, self.cfg)
            if stage == "grpo" and self.uses_reference:
                hb.ref_logp = reference_logprobs(self.model, slice_rows(hb.batch, slice(0, hb.rl_rows)))
        return hb

    def _train_phase(self, stage: str, batches: list, lam: float, use_anchor: bool, first: bool
                     ) -> tuple[list[dict[str, float]], float]:
        """Forward + backward over the micro-batches (gradient sync on the last), clip, optimiser step."""
        cfg, acc = self.cfg, self.acc
        stats, trained = [], 0
        params = [p for p in self.model.model.parameters() if p.requires_grad]
        for m, b in enumerate(batches):
            sync = m == len(batches) - 1
            ctx = contextlib.nullcontext() if sync else acc.no_sync(self.wrapped)
            with ctx, self._training_forward():
                channel_grads = cfg.grad_norm_per_channel and m == 0 and first and stage == "grpo"
                if stage == "dpo":
                    loss, st = dpo_step_loss(self.model, b, cfg, lam, use_anchor=use_anchor)
                    parts = {}
                else:
                    loss, st, parts = hybrid_loss(self.model, b, cfg, lam, use_anchor=use_anchor,
                                                  channel_grads=channel_grads)
                for ch, part in parts.items():
                    grads = torch.autograd.grad(part, params, retain_graph=True, allow_unused=True)
                    st[f"grad_norm_{ch}"] = float(torch.sqrt(sum((g.float() ** 2).sum() for g in grads if g is not None)))
                if loss is None:
                    if sync:  # keep every process in the same collective: a zero-weighted pass
                        acc.backward(sum(p.sum() for p in params) * 0.0)
                    st["loss"] = float("nan")
                else:
                    acc.backward(loss / len(batches))
                    st["loss"] = float(loss.detach())
                    trained += 1
            stats.append(st)
        trained_all = int(acc.reduce(torch.tensor(trained, device=acc.device), "sum"))
        if trained_all == 0:
            self.log(f"[train] warning: nothing to train on in this step ({stats[0].get('rows_skipped', 0):.0f} rows "
                     f"with an empty {cfg.rl_token_type} mask, {stats[0].get('pairs_skipped', 0):.0f} pairs skipped); "
                     "no update")
            self.optimizer.zero_grad(set_to_none=True)
            return stats, float("nan")
        norm = acc.clip_grad_norm_(params, cfg.grad_clip)
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        return stats, float(norm) if norm is not None else float("nan")

    # ------------------------------------------------------------------ metrics and checkpoints
    def _reduce(self, values: dict[str, float], keys: tuple[str, ...], mean: bool) -> dict[str, float]:
        """NaN-aware mean (or sum) of per-process figures across processes."""
        vec = torch.tensor([[values.get(k, float("nan")) for k in keys]], dtype=torch.float64, device=self.acc.device)
        ok = torch.isfinite(vec)
        packed = torch.cat([torch.where(ok, vec, torch.zeros_like(vec)), ok.double()])
        total = self.acc.reduce(packed, "sum")
        out = {}
        for i, k in enumerate(keys):
            n = float(total[1, i])
            out[k] = (float(total[0, i]) / n if mean else float(total[0, i])) if n else float("nan")
        return out

    def _row(self, step, stats, scored, rewards, lam, mix_stats, grad_norm) -> dict[str, Any]:
        local_mean = {k: finite_mean([s[k] for s in stats if k in s]) for k in (*MEAN_KEYS, "loss")}
        local_sum = {k: float(sum(s.get(k, 0.0) for s in stats)) for k in SUM_KEYS}
        if scored:
            local_sum["judge_failures"] = float(sum(s.rewards.failures for s in scored))
            local_sum["time_generate"] = sum(s.timings["time_generate"] for s in scored)
            local_sum["time_reward"] = sum(s.timings["time_reward"] for s in scored)
            comps = {f"reward/{n}": float(np.mean(np.concatenate([s.rewards.components[n] for s in scored])))
                     for n in self.reward.names}
            local_mean.update(comps)
        keys_mean = (*MEAN_KEYS, "loss", *[c for c in self.columns if c.startswith("reward/")])
        row: dict[str, Any] = {"step": step + 1, **self._reduce(local_mean, keys_mean, True),
                               **self._reduce(local_sum, SUM_KEYS, False)}
        row["time_generate"] /= self.procs
        row["time_reward"] /= self.procs
        if rewards is not None:
            row.update(reward_mean=float(rewards.mean()), reward_std=float(rewards.std()),
                       reward_max=float(rewards.max()),
                       zero_var_share=float(np.mean(rewards.std(axis=1) == 0)))
        row.update({k: v for k, v in mix_stats.items() if k in self.columns and k != "reward_max"})
        row["lambda"] = lam
        row["grad_norm"] = grad_norm
        if rewards is None:  # no rollouts this step (SFT stage, offline DPO)
            row.update(judge_failures=float("nan"), time_generate=float("nan"), time_reward=float("nan"))
        if self.cfg.algorithm != "dpo":
            row.update(pairs=float("nan"), pairs_skipped=float("nan"))
        return {k: v for k, v in row.items() if k in self.columns or k == "train_tokens"}

    def save(self, step: int) -> None:
        """Checkpoint (main process writes; every process contributes its RNG state)."""
        from accelerate.utils import gather_object

        rngs = gather_object([rng_state()]) if self.procs > 1 else [rng_state()]
        if self.acc.is_main_process:
            state = {"config": config_dict(self.cfg), "mixer": self.mixer.state_dict(), "data": self.sampler.state(),
                     "lambda": self.mixer.value}
            save_checkpoint(self.out, step, model=self.model, optimizer=self.optimizer, scheduler=self.scheduler,
                            state=state, rng_states=rngs, keep=self.cfg.keep_checkpoints)
        self.acc.wait_for_everyone()


def build_train_reward(cfg: TrainConfig, world):
    """The step's reward from ``cfg.reward`` over the world's evaluators, with the naturalness calibration."""
    from wavalign_kit.rewards import build_reward, naturalness_calibration
    from wavalign_kit.train.synthetic import SyntheticWorld, synthetic_reward

    if isinstance(world, SyntheticWorld):  # no evaluators: the synthetic world's own judges
        return synthetic_reward()
    options = dict(cfg.reward_options)
    options.setdefault("seed", cfg.seed)
    names = [cfg.reward] if isinstance(cfg.reward, str) else list(cfg.reward)
    needs_cal = any(n in ("naturalness", "holistic", "acoustic_judge") for n in names if isinstance(n, str))
    if needs_cal and "naturalness_ref" not in options:
        summary = getattr(world, "summary", {}) or {}
        if "naturalness_ref" in summary and "naturalness_floor" in summary:
            options.update(naturalness_ref=summary["naturalness_ref"], naturalness_floor=summary["naturalness_floor"])
        else:
            real = [e.target_units for e in world.split("valid")[:64]]
            options.update(naturalness_calibration(world.evaluators.unit_lm, real, seed=cfg.seed))
    try:
        return build_reward(cfg.reward, world.evaluators, **options)
    except ValueError as err:
        raise ConfigError(f"train.reward / train.reward_options: {err}") from None
