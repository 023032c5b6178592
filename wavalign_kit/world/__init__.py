"""The embedded spoken-dialogue world: verifiable tasks, synthesised corpus, codec units, tokenizer, evaluators."""

from wavalign_kit.world.build import WorldConfig, build_world, main, world_config
from wavalign_kit.world.checks import has_kit_check, verify
from wavalign_kit.world.integrity import CorruptWorldError
from wavalign_kit.world.load import JsonlWorld, load_world
from wavalign_kit.world.own_data import load_own_data
from wavalign_kit.world.protocol import SPLITS, World
from wavalign_kit.world.schema import Example, SchemaError, load_examples
from wavalign_kit.world.tasks import TaskItem
from wavalign_kit.world.tokenizer import build_tokenizer
from wavalign_kit.world.units import UnitCacheError

__all__ = ["SPLITS", "CorruptWorldError", "Example", "JsonlWorld", "SchemaError", "TaskItem", "UnitCacheError",
           "World", "WorldConfig", "build_tokenizer", "build_world", "has_kit_check", "load_examples", "load_own_data",
           "load_world", "main", "verify", "world_config"]
