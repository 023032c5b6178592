"""Spoken dialogue models: interleaved and parallel architectures, tiny factory, LoRA, loading, warm start."""

from wavalign_kit.models.base import Rollout, SpokenDialogueModel, TokenBatch
from wavalign_kit.models.decoding import DecodeOptions
from wavalign_kit.models.factory import ModelsConfig, build_model, count_parameters, world_layout
from wavalign_kit.models.interleaved import InterleavedModel
from wavalign_kit.models.loading import load_pretrained
from wavalign_kit.models.lora import LoraSettings, apply_lora
from wavalign_kit.models.parallel import DualStreamConfig, DualStreamModel, ParallelModel
from wavalign_kit.models.sampling import Sampling


def run_warmstart(world, arch, cfg, out_dir):
    """Supervised warm start of a tiny base model (see :func:`wavalign_kit.models.warmstart.run_warmstart`)."""
    from wavalign_kit.models.warmstart import run_warmstart as _run

    return _run(world, arch, cfg, out_dir)


__all__ = [
    "DecodeOptions", "DualStreamConfig", "DualStreamModel", "InterleavedModel", "LoraSettings", "ModelsConfig", "ParallelModel",
    "Rollout", "Sampling", "SpokenDialogueModel", "TokenBatch", "apply_lora", "build_model", "count_parameters",
    "load_pretrained", "run_warmstart", "world_layout",
]
