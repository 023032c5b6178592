"""Evaluators trained by the kit on synthesised speech: recogniser (WER), style classifier, unit LM.

A world holds two sets of them (see ``training.py``): the reward models (``world.evaluators``), which the
rewards use, and the examiners (``world.examiners``), which evaluation uses.
"""

from wavalign_kit.evaluators.config import EvaluatorConfig
from wavalign_kit.evaluators.recognizer import Recognizer
from wavalign_kit.evaluators.style import StyleClassifier
from wavalign_kit.evaluators.training import (
    Evaluators,
    EvaluatorSet,
    read_manifest,
    train_evaluator_sets,
    train_evaluators,
)
from wavalign_kit.evaluators.unit_lm import UnitLM
from wavalign_kit.evaluators.wer import corpus_word_error_rate, normalize_words, word_error_rate

__all__ = ["EvaluatorConfig", "EvaluatorSet", "Evaluators", "Recognizer", "StyleClassifier", "UnitLM",
           "corpus_word_error_rate", "normalize_words", "read_manifest", "train_evaluator_sets", "train_evaluators",
           "word_error_rate"]
