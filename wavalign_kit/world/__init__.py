"""The embedded spoken-dialogue world: verifiable tasks, synthesised corpus, codec units, tokenizer, evaluators."""

from wavalign_kit.world.build import WorldConfig, build_world, main, world_config
from wavalign_kit.world.load import World, load_world
from wavalign_kit.world.schema import Example, SchemaError, load_examples
from wavalign_kit.world.tasks import TaskItem, verify
from wavalign_kit.world.tokenizer import build_tokenizer

__all__ = ["Example", "SchemaError", "TaskItem", "World", "WorldConfig", "build_tokenizer", "build_world",
           "load_examples", "load_world", "main", "verify", "world_config"]
