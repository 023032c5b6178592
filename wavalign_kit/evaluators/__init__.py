"""Evaluators trained by the kit on synthesised speech: recogniser (WER), style classifier, unit LM."""

from wavalign_kit.evaluators.recognizer import Recognizer
from wavalign_kit.evaluators.style import StyleClassifier
from wavalign_kit.evaluators.training import EvaluatorConfig, Evaluators, train_evaluators
from wavalign_kit.evaluators.unit_lm import UnitLM
from wavalign_kit.evaluators.wer import corpus_word_error_rate, normalize_words, word_error_rate

__all__ = ["EvaluatorConfig", "Evaluators", "Recognizer", "StyleClassifier", "UnitLM", "corpus_word_error_rate",
           "normalize_words", "train_evaluators", "word_error_rate"]
