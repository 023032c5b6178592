"""A 1..5 semantic judge backed by a local Hugging Face causal LM (loaded by path, never downloaded).

The LM reads the semantic judge prompt (question + the answer's text channel, or its transcript) and the score
is read from its next-token logits restricted to the tokens "1".."5": the argmax (a judge's integer score) or,
with ``expected=True``, the expected value under the softmax over those five tokens.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from wavalign_kit.rewards.judges import SYSTEM_PROMPTS, judge_prompt

SCORE_TOKENS = ("1", "2", "3", "4", "5")


def score_token_ids(tokenizer: Any) -> list[int]:
    """Token ids of "1".."5"; ValueError when the tokenizer does not hold each as one token."""
    ids = []
    for digit in SCORE_TOKENS:
        tid = tokenizer.convert_tokens_to_ids(digit)
        if tid is None or tid == tokenizer.unk_token_id:
            encoded = tokenizer.encode(digit, add_special_tokens=False)
            if len(encoded) != 1 or encoded[0] == tokenizer.unk_token_id:
                raise ValueError(f"HFJudge: the tokenizer has no single token for {digit!r} (encodes to "
                                 f"{encoded}); use a model whose vocabulary holds the digits 1..5")
            tid = encoded[0]
        ids.append(int(tid))
    return ids


class HFJudge:
    """Reward function: a local causal LM judging the answer's content on a 1..5 scale (channel semantic).

    ``transcribe``: optional ``units_list -> texts`` (e.g. a recogniser's ``transcribe``) to judge the
    speech's transcript instead of the text channel."""

    channel, needs_audio, score_range = "semantic", False, (1.0, 5.0)

    def __init__(self, path: str | Path, *, expected: bool = False, batch_size: int = 8, device: str = "cpu",
                 dtype: torch.dtype | None = None, max_length: int = 1024,
                 transcribe: Callable[[list[np.ndarray]], list[str]] | None = None, name: str = "hf_judge"):
        from transformers import AutoModelForCausalLM, AutoTokenizer

        path = Path(path)
        if not (path / "config.json").is_file():
            raise ValueError(f"HFJudge path {str(path)!r} holds no config.json; pass a local model directory")
        if batch_size < 1:
            raise ValueError(f"HFJudge batch_size must be >= 1, got {batch_size}")
        self.tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
        self.tokenizer.padding_side = "left"  # the score is read at the last position of every row
        self.tokenizer.truncation_side = "left"  # keep the end of the prompt (the question to score)
        if self.tokenizer.pad_token_id is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token or self.tokenizer.unk_token
        self.model = AutoModelForCausalLM.from_pretrained(path, local_files_only=True, dtype=dtype).to(device)
        self.model.eval()
        self.score_ids = score_token_ids(self.tokenizer)
        self.expected, self.batch_size, self.device, self.max_length = expected, batch_size, device, max_length
        self.transcribe, self.name = transcribe, name

    def prompt(self, question: str, answer_text: str) -> str:
        """The judge prompt, through the tokenizer's chat template when it has one."""
        user = judge_prompt("semantic", question, answer_text)
        if getattr(self.tokenizer, "chat_template", None):
            messages = [{"role": "system", "content": SYSTEM_PROMPTS["semantic"]}, {"role": "user", "content": user}]
            return self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True) + "Score: "
        return f"{SYSTEM_PROMPTS['semantic']}\n{user}\nScore: "

    @torch.no_grad()
    def score_texts(self, questions: Sequence[str], answers: Sequence[str]) -> list[float]:
        """1..5 scores for (question, answer text) pairs."""
        prompts = [self.prompt(q, a) for q, a in zip(questions, answers)]
        scores: list[float] = []
        values = torch.arange(1, 6, dtype=torch.float32)
        for start in range(0, len(prompts), self.batch_size):
            enc = self.tokenizer(prompts[start:start + self.batch_size], return_tensors="pt", padding=True,
                                 truncation=True, max_length=self.max_length,
                                 add_special_tokens=not self.tokenizer.chat_template)  # BOS unless templated
            logits = self.model(**enc.to(self.device)).logits[:, -1, :]  # (b, V) next-token logits
            digit_logits = logits[:, self.score_ids].float().cpu()  # (b, 5)
            if self.expected:
                batch = torch.softmax(digit_logits, dim=-1) @ values
            else:
                batch = digit_logits.argmax(dim=-1).float() + 1.0
            scores.extend(batch.tolist())
        return scores

    def __call__(self, prompts: Sequence[Any], completions: Sequence[Any]) -> list[float]:
        if self.transcribe is not None:
            answers = self.transcribe([c.units for c in completions])
        else:
            answers = [c.text for c in completions]
        return self.score_texts([ex.question_text for ex in prompts], answers)
