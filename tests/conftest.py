"""Shared session fixtures: the synthetic stand-in world (the one fake world of the tests) and the smoke world,
built once per test session into a pytest temporary directory."""

from __future__ import annotations

import os
from pathlib import Path

import pytest


@pytest.fixture(scope="session", autouse=True)
def evaluator_cache(tmp_path_factory) -> Path:
    """Evaluator sets trained in this session are cached in a session directory, not under ./data/cache."""
    from wavalign_kit.evaluators.cache import CACHE_ENV

    root = tmp_path_factory.mktemp("evaluator-cache")
    before = os.environ.get(CACHE_ENV)
    os.environ[CACHE_ENV] = str(root)
    yield root
    if before is None:
        os.environ.pop(CACHE_ENV, None)
    else:
        os.environ[CACHE_ENV] = before


@pytest.fixture(scope="session")
def smoke_world_dir(tmp_path_factory) -> Path:
    """A smoke-profile world built by build_world (once per session, single-threaded: its models are tiny)."""
    import torch
    from threadpoolctl import threadpool_limits

    from wavalign_kit.world import build_world, world_config

    out = tmp_path_factory.mktemp("worlds") / "smoke"
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with threadpool_limits(limits=1):
            build_world(world_config("smoke"), out, quiet=True)
    finally:
        torch.set_num_threads(threads)
    return out


@pytest.fixture(scope="session")
def smoke_world(smoke_world_dir):
    """The smoke world loaded with load_world (codec, tokenizer, evaluators, summary, splits)."""
    from wavalign_kit.world import load_world

    return load_world(smoke_world_dir)


@pytest.fixture(scope="session")
def synthetic():
    """The synthetic stand-in world (`train.synthetic`): 32 spoken-arithmetic train examples, 8 per other split,
    word-coded units with exact fake evaluators; single-threaded torch for the tiny models."""
    import torch

    from wavalign_kit.train.synthetic import synthetic_world

    torch.set_num_threads(1)
    return synthetic_world(32)
