"""Speech recogniser over units: CTC over characters or words (the embedded world's analogue of Whisper WER)."""

from __future__ import annotations

import difflib
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from wavalign_kit.evaluators.base import UnitEvaluator, batched
from wavalign_kit.evaluators.encoder import UnitEncoder, check_units, on_nonempty, pad_units
from wavalign_kit.evaluators.wer import normalize_words

BLANK, UNK, SPACE = "<blank>", "<unk>", " "


ENCODERS = ("gru", "half_rate_gru")


class RecognizerNet(nn.Module):
    """UnitEncoder -> `upsample` output slots per unit frame -> log-probabilities (B, T * upsample, V).

    Index 0 is the CTC blank. Splitting each frame into `upsample` slots lets character CTC emit more
    labels than there are units (fast speech has ~4 units per word). `encoder`: "gru" (convolutions and a
    bidirectional GRU at the unit rate) or "half_rate_gru" (the GRU and all but the first convolution at half
    the unit rate: about 30 % cheaper on a CPU; each half-rate frame then gets 2 * upsample slots).
    """

    def __init__(self, num_units: int, vocab_size: int, embed_dim: int, hidden: int, layers: int, dropout: float,
                 upsample: int, encoder: str = "gru"):
        super().__init__()
        if encoder not in ENCODERS:
            raise ValueError(f"encoder={encoder!r}: use one of {list(ENCODERS)}")
        self.encoder = UnitEncoder(num_units, embed_dim, hidden, layers, dropout, half_rate=encoder == "half_rate_gru")
        self.head = nn.Linear(self.encoder.out_dim, upsample * self.encoder.frame_step * vocab_size)
        self.upsample, self.vocab_size = upsample, vocab_size

    def forward(self, units: Tensor, lengths: Tensor) -> Tensor:
        logits = self.head(self.encoder(units, lengths))                             # (B, T', step * up * V)
        logits = logits.reshape(units.shape[0], -1, self.vocab_size)                  # (B, T' * step * up, V)
        return F.log_softmax(logits[:, : units.shape[1] * self.upsample], dim=-1)    # (B, T * up, V)


class Recognizer(UnitEvaluator):
    """Units -> words, greedy CTC decoding (best path, repeats merged, blanks dropped).

    spec["tokens"] = "char": CTC over characters (space separates words); each decoded word outside the
    lexicon (the training texts' words) is replaced by the closest lexicon word (difflib similarity).
    spec["tokens"] = "word": CTC over the closed word vocabulary; unknown words map to <unk>.
    Texts are normalised as in WER (lower case, punctuation stripped).
    """

    kind = "recognizer"

    def __init__(self, spec: dict[str, Any]):
        super().__init__(spec)
        self.tokens: str = spec["tokens"]
        self.vocab: list[str] = list(spec["vocab"])
        self.lexicon: list[str] = list(spec["lexicon"])
        self.token_ids = {w: i for i, w in enumerate(self.vocab)}
        self._lexicon_set = set(self.lexicon)
        self._snapped: dict[str, str] = {}

    @staticmethod
    def build_net(spec: dict[str, Any]) -> nn.Module:
        return RecognizerNet(spec["num_units"], len(spec["vocab"]), spec["embed_dim"], spec["hidden"],
                             spec["layers"], spec["dropout"], spec["upsample"], spec.get("encoder", "gru"))

    @classmethod
    def spec_for(cls, texts: Sequence[str], tokens: str = "char") -> dict[str, Any]:
        """Vocabulary part of the spec: tokens, vocab ([<blank>, <unk>, ...]), lexicon, upsample."""
        if tokens not in ("char", "word"):
            raise ValueError(f"tokens={tokens!r}: use 'char' or 'word'")
        lexicon = sorted({w for t in texts for w in normalize_words(t)})
        units = sorted({c for w in lexicon for c in w} | {SPACE}) if tokens == "char" else lexicon
        return {"tokens": tokens, "vocab": [BLANK, UNK, *units], "lexicon": lexicon,
                "upsample": 3 if tokens == "char" else 1}

    def encode_text(self, text: str) -> list[int]:
        """Target token ids of a transcript."""
        unk = self.token_ids[UNK]
        words = normalize_words(text)
        pieces = list(SPACE.join(words)) if self.tokens == "char" else words
        return [self.token_ids.get(p, unk) for p in pieces]

    def loss(self, units_list: Sequence[np.ndarray], targets: Sequence[str]) -> Tensor:
        """Mean CTC loss per target token."""
        units, lengths = pad_units(units_list, self.num_units, self.device)
        logp = self.net(units, lengths)                                          # (B, T * up, V)
        labels = [self.encode_text(t) for t in targets]
        flat = torch.tensor([i for lab in labels for i in lab], dtype=torch.long, device=self.device)
        label_lengths = torch.tensor([len(lab) for lab in labels], dtype=torch.long, device=self.device)
        return F.ctc_loss(logp.transpose(0, 1), flat, lengths * self.net.upsample, label_lengths, blank=0,
                          reduction="mean", zero_infinity=True)

    def _snap(self, word: str) -> str:
        if word in self._lexicon_set or not self.lexicon:
            return word
        if word not in self._snapped:
            close = difflib.get_close_matches(word, self.lexicon, n=1, cutoff=0.0)
            self._snapped[word] = close[0] if close else word
        return self._snapped[word]

    def transcribe(self, units_list: Sequence[np.ndarray], batch_size: int = 64) -> list[str]:
        """Greedy CTC transcript (space-joined words) of each unit sequence ("" for an empty one)."""
        units_list = check_units(units_list, self.num_units)
        return on_nonempty(units_list, lambda units: self._transcribe(units, batch_size), "")

    @torch.no_grad()
    def _transcribe(self, units_list: Sequence[np.ndarray], batch_size: int) -> list[str]:
        self.net.eval()
        out: list[str] = []
        for idx in batched(len(units_list), batch_size):
            units, lengths = pad_units([units_list[i] for i in idx], self.num_units, self.device)
            best = self.net(units, lengths).argmax(-1)                               # (B, T * up)
            for row, n in zip(best.tolist(), (lengths * self.net.upsample).tolist()):
                path = [self.vocab[k] for j, k in enumerate(row[:n]) if k != 0 and (j == 0 or k != row[j - 1])]
                if self.tokens == "char":
                    out.append(" ".join(self._snap(w) for w in "".join(path).split()))
                else:
                    out.append(" ".join(path))
        return out
