"""Preflight: before any rollout, do the model, its layout, the codec, the world's data and the rewards agree?

`preflight(model, world, reward=..., cfg=...)` returns one `Check` per question (unit counts, codebooks, sample
rates, reward names and audio needs, the verifier's checks, prompt encoding, response layout, lengths); the
trainer raises one ConfigError listing every failed check with what to change (`raise_on_failure`), and notebook
00 shows them as a table (`checks_frame`). Each check is cheap: one prompt, one target, a scan of the split's units.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from wavalign_kit.errors import ConfigError

VERIFIED_REWARDS = ("text_correct", "speech_correct", "semantic", "holistic", "semantic_judge")   # read check


@dataclass
class Check:
    """One preflight question: ``ok`` True (passes), False (fails: the run would break or train the wrong
    tokens) or None (a note worth reading); ``found`` says what was seen, ``fix`` what to change."""

    what: str
    ok: bool | None
    found: str
    fix: str = ""


def _layout(model: Any) -> Check:
    lay, tok = model.layout, model.tokenizer

    def name(i: int | None) -> str:
        return "none" if i is None else repr(tok.convert_ids_to_tokens(int(i)))

    if lay.kind == "interleaved":
        ratio = " ".join(str(x) for pair in lay.ratio.chunks for x in pair)
        found = (f"interleaved, {lay.num_units} speech tokens {name(lay.speech_start)}.., ratio {ratio}; text ends with "
                 f"{name(lay.text_end_id) if lay.text_end_id is not None else 'the schedule and eos'}; responses carry "
                 f"audio boundaries: {lay.response_audio} ({name(lay.begin_audio_id)} / {name(lay.end_audio_id)}); "
                 f"eos {name(lay.eos_id)}")
    else:
        found = (f"parallel, {lay.num_codebooks} codebook(s) of {lay.num_units} units, speech delay {lay.speech_delay}; "
                 f"text ends with {name(lay.text_end_id if lay.text_end_id is not None else lay.text_pad_id)}; "
                 f"eos {name(lay.eos_id)}")
    core = model.model.get_base_model() if model.is_lora() else model.model
    vocab = getattr(core.config, "vocab_size", None)
    top = max(i for i in ((lay.speech_start or 0) + lay.num_units - 1, lay.eos_id, lay.pad_id, lay.text_end_id,
                          lay.begin_audio_id, lay.end_audio_id, lay.text_pad_id, lay.speech_pad_id) if i is not None)
    if vocab is not None and top >= vocab:
        return Check("layout", False, f"{found}; token id {top} is beyond the model's {vocab} embeddings",
                     "resize the model's embeddings to the tokenizer (model.resize_token_embeddings(len(tokenizer)))")
    note = None
    if lay.kind == "interleaved" and lay.response_audio == "end" and lay.begin_audio_id is not None:
        note = "begin_audio frames user speech in prompts only; set models.layout.response_audio=chunks if the " \
               "model also wraps each speech run of its answers in begin_audio ... end_audio"
    return Check("layout", True, found, note or "")


def _units(model: Any, world: Any, codec: Any, examples: list) -> list[Check]:
    lay, out = model.layout, []
    n = lay.num_units
    if codec is None:
        out.append(Check("codec", None, "no codec: speech units are never decoded to audio",
                         "rewards that need audio, and the notebooks' audio, need one: models.codec=pkg.mod:Class"))
    elif int(codec.num_units) != n:
        out.append(Check("codec", False, f"the codec has {codec.num_units} units, the model {n} speech tokens",
                         "use the model's own codec (models.codec=pkg.mod:Class) or a model whose speech tokens are "
                         "that codec's units"))
    else:
        out.append(Check("codec", True, f"{type(codec).__name__}: {codec.num_units} units at {codec.sample_rate} Hz, "
                         f"as many as the model's speech tokens"))
    world_codec = getattr(world, "codec", None)
    world_units = getattr(world, "num_units", None)          # a world without a codec (the synthetic stand-in)
    if world_codec is None and world_units is not None and int(world_units) != n:
        out.append(Check("world units", False, f"the world's data has {world_units} units, the model {n} speech tokens",
                         "a model with as many speech tokens as the world's units"))
    if world_codec is not None and world_codec is not codec:
        if int(world_codec.num_units) != n:
            out.append(Check("world units", False, f"the world's data was encoded by a {world_codec.num_units}-unit "
                             f"codec ({type(world_codec).__name__}); the model has {n} speech tokens",
                             "give the data in the model's units: own data encoded by the model's codec "
                             "(world.yaml codec: or models.codec), or a model with as many speech tokens"))
        if codec is not None and type(world_codec) is not type(codec):
            out.append(Check("world codec", False, f"the data's units were made by {type(world_codec).__name__} "
                             f"({world_codec.sample_rate} Hz), the model's speech is decoded by {type(codec).__name__} "
                             f"({codec.sample_rate} Hz): two unit spaces", "encode the data with the model's codec "
                             "(own data: models.codec, or codec: in its world.yaml)"))
        elif codec is not None and int(world_codec.sample_rate) != int(codec.sample_rate):
            out.append(Check("sample rate", False, f"the world's codec runs at {world_codec.sample_rate} Hz, the "
                             f"model's at {codec.sample_rate} Hz", "encode the data with the model's codec"))
    high, books = -1, set()
    for ex in examples:
        for u in (ex.target_units, ex.prompt_units, ex.rejected_units):
            if u is not None and len(u):
                a = np.asarray(u)
                high, books = max(high, int(a.max())), books | {a.shape[1] if a.ndim == 2 else 1}
    want = lay.num_codebooks if lay.kind == "parallel" else 1
    if high >= n:
        out.append(Check("data units", False, f"the data's units reach {high}, beyond the model's {n} speech tokens",
                         "encode the data with the model's codec"))
    elif books and books != {want}:
        out.append(Check("data units", False, f"the data has {sorted(books)} codebook(s) per frame, the model {want}",
                         "encode the data with the model's codec"))
    elif high >= 0:
        out.append(Check("data units", True, f"{len(examples)} examples, units 0..{high} < {n}, {want} codebook(s)"))
    return out


def _rewards(reward: Any, codec: Any, cfg: Any, examples: list) -> list[Check]:
    from wavalign_kit.world.checks import has_kit_check

    if reward is None:
        return []
    parts = ", ".join(f"{fn.name} x{w:g} ({fn.channel}{', audio' if fn.needs_audio else ''})" for fn, w in reward.items)
    out = [Check("rewards", True, f"{parts}; range {reward.score_range or 'not declared'}")]
    if reward.needs_audio and (codec is None or not hasattr(codec, "decode")):
        need = [fn.name for fn, _ in reward.items if fn.needs_audio]
        out.append(Check("audio", False, f"rewards {need} need audio but no codec decodes the speech units",
                         "give the model's codec (models.codec=pkg.mod:Class, with decode(units))"))
    for fn, _ in reward.items:
        rate = getattr(fn, "sample_rate", None)
        if rate is not None and fn.needs_audio and codec is not None and int(rate) != int(codec.sample_rate):
            out.append(Check("sample rate", False, f"reward {fn.name!r} takes audio at {rate} Hz, the codec decodes at "
                             f"{codec.sample_rate} Hz", f"resample inside {fn.name!r}, or use a codec at {rate} Hz"))
    span = None if reward.score_range is None else reward.score_range[1] - reward.score_range[0]
    if cfg is not None and cfg.algorithm == "dpo" and cfg.dpo_source != "offline" and span is not None \
            and cfg.pair_min_margin > span / 2:
        out.append(Check("pairs", None,
                         f"pair_min_margin={cfg.pair_min_margin:g} on rewards spanning {span:g}: "
                         f"{'no' if cfg.pair_min_margin >= span else 'few'} sampled pairs are that far apart",
                         f"set pair_min_margin to a fraction of the reward's range, e.g. {span / 10:g}"))
    verified = [fn.name for fn, _ in reward.items if fn.name in VERIFIED_REWARDS]
    if verified and examples and not (cfg is not None and cfg.reward_options.get("verifier")):
        share = float(np.mean([has_kit_check(ex) for ex in examples]))
        if share == 0:
            out.append(Check("verifier", False, f"rewards {verified} score answers with the kit's task checks, which "
                             "none of the data's examples carry", "use a judge or your own reward "
                             "(reward={'mypkg.rewards:MyReward': 1.0}), or give the records kit checks"))
        elif share < 1:
            out.append(Check("verifier", None, f"{share:.0%} of the examples carry a kit check; rewards {verified} "
                             "score the others as wrong", "use a judge or your own reward for them"))
    return out


def _encoding(model: Any, examples: list, cfg: Any) -> list[Check]:
    out, lay = [], model.layout
    spoken = next((ex for ex in examples if ex.task_type == "s2s" and ex.prompt_units is not None), None)
    if spoken is not None:
        ids = np.asarray(model.encode_prompt(spoken))
        stream = ids[:, 1:].reshape(-1) if ids.ndim == 2 else ids
        lo = lay.speech_start or 0
        units = np.flatnonzero((stream >= lo) & (stream < lo + lay.num_units))
        want = np.asarray(spoken.prompt_units).size
        contiguous = len(units) == want and (ids.ndim == 2 or (len(units) and units[-1] - units[0] + 1 == want))
        out.append(Check("prompt", bool(contiguous), f"a spoken prompt of {want} units encodes to {len(ids)} tokens "
                         f"with {len(units)} speech tokens{' in one run' if contiguous else ''}",
                         "" if contiguous else "the chat template must render the user content once"))
    ex = examples[0]
    resp = model.encode_response(ex.target_text, ex.target_units)
    text, units = lay.split_response(resp)
    forced = model.forced_mask([model.encode_prompt(ex)], [resp])
    same = list(text) == model.text_ids(ex.target_text) and np.array_equal(np.asarray(units).reshape(-1), np.asarray(ex.target_units).reshape(-1))
    out.append(Check("response", bool(same), f"a target lays out to {len(resp)} tokens ({int(forced.sum())} forced by "
                     "the layout) and reads back to the same text and units",
                     "" if same else "the layout's closing tokens collide with the text's tokens"))
    longest = max(len(model.encode_response(e.target_text, e.target_units)) for e in examples[:64])
    if cfg is not None and longest > cfg.max_new_tokens:
        out.append(Check("lengths", None, f"targets reach {longest} tokens; rollouts stop at max_new_tokens="
                         f"{cfg.max_new_tokens}", f"raise max_new_tokens to about {longest + 8}"))
    unk = getattr(model.tokenizer, "unk_token_id", None)
    if unk is not None:
        share = float(np.mean([unk in model.text_ids(e.target_text) for e in examples[:64]]))
        if share:
            out.append(Check("text tokens", None, f"{share:.0%} of the target texts hold the unknown token",
                             "use the model's own tokenizer for this data"))
    return out


def preflight(model: Any, world: Any, *, reward: Any = None, cfg: Any = None, codec: Any = None,
              split: str | None = None) -> list[Check]:
    """Every check of the module docstring for ``model`` on ``world``'s split (``cfg.split``, else ``split``,
    else "rl"), its ``reward`` and the ``codec`` that decodes its speech (default: the model's, else the world's)."""
    codec = codec if codec is not None else getattr(model, "codec", None) or getattr(world, "codec", None)
    examples = world.split(split or (cfg.split if cfg is not None else "rl"))
    if not examples:
        return [Check("data", False, "the split holds no examples", "add records to it")]
    return [_layout(model), *_units(model, world, codec, examples), *_rewards(reward, codec, cfg, examples),
            *_encoding(model, examples, cfg)]


def raise_on_failure(checks: list[Check], where: str = "", log=print) -> None:
    """One ConfigError naming every failed check and its fix; notes are logged and pass."""
    for c in checks:
        if c.ok is None:
            log(f"[preflight] note: {c.what}: {c.found}" + (f" ({c.fix})" if c.fix else ""))
    failed = [c for c in checks if c.ok is False]
    if failed:
        lines = "\n".join(f"  - {c.what}: {c.found}" + (f"; fix: {c.fix}" if c.fix else "") for c in failed)
        raise ConfigError(f"{where + ': ' if where else ''}the model, its layout, the codec, the data and the rewards "
                          f"do not agree ({len(failed)} problem{'s' if len(failed) > 1 else ''}):\n{lines}")


def checks_frame(checks: list[Check]):
    """The checks as a table (what, status, found, fix) for the notebooks."""
    import pandas as pd

    status = {True: "ok", False: "FAILS", None: "note"}
    return pd.DataFrame([{"check": c.what, "status": status[c.ok], "found": c.found, "fix": c.fix} for c in checks])
