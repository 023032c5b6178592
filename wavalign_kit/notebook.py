"""What every numbered notebook does first (`setup`) and the displays they share; no method logic lives here.

A notebook's ``parameters`` cell declares ``out_dir``, ``profile``, ``config`` and the pipeline parameters it
reads, each defaulting to None: `setup` takes every None from the profile's ``pipeline`` section (``seed`` from
the profile's top level), so the defaults live in one place, the profile, and papermill overrides any of them.
Bring your own: ``model_path`` (a local model), ``layout`` (its layout: a shipped name, a YAML path or a mapping),
``codec`` (its speech codec, ``package.module:Class``; every audio cell decodes with it), ``judge`` (the
training reward) and ``world_dir`` (a built world or your own JSONL data) go into the config (see
`profiles.apply_model_parameters`).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from wavalign_kit.paths import Workspace

# About how long each notebook takes, per profile: (low, high) seconds measured on the 2-core development machine
# (AMD EPYC, one torch thread per process, no GPU); None = not measured yet. The one place these figures live:
# every notebook's introduction shows them (`requirements`). Update them after a reference run.
RUNTIMES: dict[str, dict[str, tuple[int, int] | None]] = {   # seconds, from `wavalign pipeline` runs' manifests
    "00_world_and_base_model": {"smoke": (40, 50), "cpu": (619, 619), "cpu-full": (879, 879), "gpu": None},
    "01_reward_analysis": {"smoke": (10, 17), "cpu": (17, 17), "cpu-full": (23, 23), "gpu": None},
    "02_rollout_statistics": {"smoke": (13, 18), "cpu": (27, 27), "cpu-full": (43, 43), "gpu": None},
    "03_hybrid_training": {"smoke": (20, 25), "cpu": (380, 380), "cpu-full": (910, 910), "gpu": None},
    "04_evaluation": {"smoke": (17, 23), "cpu": (172, 172), "cpu-full": (372, 372), "gpu": None},
}
RUNTIME_NOTES = {
    "00_world_and_base_model": {"cpu": "world about 6 min with its examiners, warm start about 4 min",
                                "cpu-full": "world about 6.5 min, two warm starts of about 4 min"},
    "03_hybrid_training": {"cpu": "21 training runs, two at a time", "cpu-full": "48 training runs, two at a time"},
}
NEEDS = {"smoke": "CPU", "cpu": "CPU (2 cores)", "cpu-full": "CPU (2 cores)",
         "gpu": "one CUDA GPU (memory not measured yet)"}
REFERENCE_PROFILE = "cpu"   # the profile whose numbers are worth reading on a CPU


def about(seconds: tuple[int, int] | None) -> str:
    """``(low, high)`` seconds as "about 20 s", "about 11 min" or "about 10-42 min"; None as "not measured yet"."""
    if seconds is None:
        return "not measured yet"
    low, high = seconds
    if high < 90:
        return f"about {low} s" if low == high else f"about {low}-{high} s"
    lo_min, hi_min = round(low / 60), round(high / 60)
    return f"about {lo_min} min" if lo_min == hi_min else f"about {lo_min}-{hi_min} min"


def pipeline_runtime(profile: str) -> str:
    """The whole pipeline's runtime on ``profile``: the sum of its notebooks' (`RUNTIMES`)."""
    spans = [r.get(profile) for r in RUNTIMES.values()]
    if any(s is None for s in spans):
        return "not measured yet"
    return about((sum(s[0] for s in spans), sum(s[1] for s in spans))) + " on 2 CPU cores"


def requirements(notebook: str, profile: str, config: dict | None = None) -> None:
    """Show what ``notebook`` needs: its measured runtime and hardware per profile (``profile``, this run's, marked),
    and on the ``smoke`` profile a loud notice that its numbers are not meaningful and how to get ones that are."""
    from IPython.display import Markdown, display

    from wavalign_kit.config import load_profile
    from wavalign_kit.profiles import notebook_config
    from wavalign_kit.takeaways import profile_notice

    if notebook not in RUNTIMES:
        raise ValueError(f"notebook {notebook!r} has no runtime entry; known: {sorted(RUNTIMES)}")
    cfg = notebook_config(profile, config)
    active = cfg.get("profile", profile)
    lines = ["| profile | time on the development machine | needs |", "|---|---|---|"]
    for name, span in RUNTIMES[notebook].items():
        note = RUNTIME_NOTES.get(notebook, {}).get(name)
        mark = " (this run)" if name == active else ""
        lines.append(f"| `{name}`{mark} | {about(span)}{f' ({note})' if note else ''} | {NEEDS[name]} |")
    lines.append("\nMeasured on 2 CPU cores with one torch thread per process; times grow with a busy machine.")
    notice = profile_notice(cfg, load_profile(REFERENCE_PROFILE),
                            reference_runtime=pipeline_runtime(REFERENCE_PROFILE))
    display(Markdown("\n".join(lines) + (f"\n\n{notice}" if notice else "")))


@dataclass
class Notebook:
    """A notebook's resolved state: the merged profile, its parameters, its workspace and world. Parameters
    read as attributes (``nb.seeds``, ``nb.architectures``)."""

    cfg: dict[str, Any]
    params: dict[str, Any]
    ws: Workspace
    world: Any

    def __getattr__(self, name: str) -> Any:
        params = self.__dict__.get("params", {})
        if name in params:
            return params[name]
        raise AttributeError(f"notebook parameter {name!r} is not declared; known: {sorted(params)}")

    def base_model(self, arch: str):
        """The base model of ``arch`` (the real model at ``model_path``, else the workspace's warm start)."""
        from wavalign_kit.workspace import load_base_model

        return load_base_model(self.cfg, arch, self.ws, self.params.get("model_path") or "")

    @property
    def model_codec(self) -> Any:
        """The codec of ``models.codec`` (the ``codec`` parameter), loaded once; None: the world's codec."""
        if "_model_codec" not in self.__dict__:
            from wavalign_kit.workspace import model_codec

            self.__dict__["_model_codec"] = model_codec(self.cfg)
        return self.__dict__["_model_codec"]

    def codec_of(self, model: Any) -> Any:
        """The codec that turns ``model``'s speech units into audio: its own, else ``models.codec``, else the
        world's. Every audio cell decodes with it."""
        return getattr(model, "codec", None) or self.model_codec or self.world.codec

    def setup_checks(self, model: Any):
        """The preflight table of ``model`` on this world with the training config's reward (what the trainer
        checks before its first rollout; a reward or split that cannot be built is a failed row)."""
        from wavalign_kit.errors import KitError
        from wavalign_kit.preflight import Check, checks_frame, preflight
        from wavalign_kit.rewards import training_reward

        cfg = self.train_config()
        rows: list[Check] = []
        try:
            reward = training_reward(cfg, self.world)
        except (ValueError, KitError) as err:
            reward = None
            rows.append(Check("rewards", False, str(err), "set train.reward, or the judge parameter"))
        try:
            rows += preflight(model, self.world, reward=reward, cfg=cfg, codec=self.codec_of(model))
        except (ValueError, OSError) as err:
            rows.append(Check("data", False, str(err), f"the training split is {cfg.split!r}"))
        return checks_frame(rows)

    def train_config(self, preset: str | None = None, **overrides: Any):
        """The training config of the profile (and ``preset``), with ``overrides``."""
        from wavalign_kit.config import load_yaml
        from wavalign_kit.train.config import preset_path, resolve_config

        recipe = load_yaml(preset_path(preset)) if preset else {}
        return resolve_config(self.cfg, recipe, overrides)[0]


def resolve_parameters(cfg: dict[str, Any], params: dict[str, Any]) -> dict[str, Any]:
    """Each parameter given as None takes the profile's value (``seed``: top level; others: ``pipeline``; the
    bring-your-own parameters model_path, layout, codec, judge: "" when the profile has none)."""
    from wavalign_kit.profiles import MODEL_PARAMETERS

    defaults = {**MODEL_PARAMETERS, **(cfg.get("pipeline") or {}), "seed": cfg.get("seed", 0)}
    missing = sorted(k for k, v in params.items() if v is None and k not in defaults)
    if missing:
        raise ValueError(f"notebook parameters {missing} are None and the profile's pipeline section has no value "
                         "for them; set them in the parameters cell or with `wavalign pipeline -p NAME VALUE`")
    return {k: defaults[k] if v is None else v for k, v in params.items()}


def setup(*, out_dir: str, profile: str, config: dict | None = None, **params: Any) -> Notebook:
    """Resolve the parameters, set torch threads, create the workspace's output folders and build (or reuse) the
    world. ``params``: the notebook's other parameters (None = the profile's value)."""
    import torch

    from wavalign_kit.profiles import apply_model_parameters, notebook_config
    from wavalign_kit.workspace import prepare_world

    warnings.filterwarnings("ignore", category=UserWarning)
    cfg = notebook_config(profile, config)
    resolved = resolve_parameters(cfg, params)
    cfg = apply_model_parameters(cfg, resolved)
    torch.set_num_threads(int(resolved.get("num_threads") or 1))
    ws = Workspace(output_root(out_dir)).make_dirs()
    world = prepare_world(cfg, ws, resolved.get("world_dir") or "", quiet=False)   # one line per build stage
    return Notebook(cfg, resolved, ws, world)


def output_root(out_dir: str | Path) -> Path:
    """``out_dir`` resolved; on Colab a relative one stays inside ``/content`` (the runtime's persistent files)."""
    import sys

    path = Path(out_dir)
    if "google.colab" in sys.modules and not path.is_absolute():
        return Path("/content") / Path(*[part for part in path.parts if part not in ("..", ".")])
    return path.resolve()


def play(wav: np.ndarray, sample_rate: int, path: str | Path, caption: str = "") -> Path:
    """Save a waveform as WAV at ``path`` (its caption beside it, ``<path>.json``, for report.md) and show it with an
    audio player under ``caption`` (Markdown)."""
    import json

    from IPython.display import Audio, Markdown, display

    from wavalign_kit.speech import write_wav

    out = write_wav(path, wav, sample_rate, normalize=True)
    Path(f"{out}.json").write_text(json.dumps({"caption": caption}) + "\n")
    if caption:
        display(Markdown(caption))
    display(Audio(np.asarray(wav, dtype=np.float32), rate=sample_rate))
    return out


def answer(model, example: Any, codec: Any, sampling: Any, *, seed: int = 0) -> tuple[str, np.ndarray, np.ndarray]:
    """One sampled answer of ``model`` to ``example``: (text channel, speech units, decoded waveform; 0.1 s of
    silence when it spoke no unit)."""
    max_new = 2 * len(model.encode_response(example.target_text, example.target_units)) + 8
    rollout = model.generate([example], num_samples=1, text_sampling=sampling, speech_sampling=sampling,
                             max_new_tokens=max_new, seed=seed)
    units = np.asarray(rollout.units[0])
    wav = codec.decode(units) if len(units) else np.zeros(int(0.1 * codec.sample_rate), dtype=np.float32)
    return rollout.texts[0], units, wav
