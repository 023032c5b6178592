"""OpenAI-compatible chat judge: `JudgeClient` (HTTP, retries, timeout) and `ApiJudge` (a reward function).

The judge receives the question, the answer's text channel and, for holistic / acoustic judging, the answer's
audio as a base64 WAV ``input_audio`` part written at the audio's TRUE sample rate.  Calls run concurrently in
a bounded thread pool; a failed call (timeout, HTTP error after retries, unparsable or out-of-range score)
scores ``default_score``, is logged and counted in the returned `JudgeScores`; `CompositeReward` stops a step in
which more than ``train.max_judge_failure_share`` of the calls failed.

The API key is read from the environment variable ``api_key_env`` (default ``WAVALIGN_JUDGE_API_KEY``) at each
request; it is never stored on an object, logged or written anywhere, and it never leaves the endpoint's origin:
the client follows no redirect (a redirect is a failed call naming its target).
"""

from __future__ import annotations

import base64
import http.client
import io
import json
import logging
import os
import time
import urllib.error
import urllib.request
import wave
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np

from wavalign_kit.errors import KitError
from wavalign_kit.rewards.base import JudgeScores
from wavalign_kit.rewards.judges import SYSTEM_PROMPTS, ScoreParseError, check_kind, judge_prompt, parse_score

logger = logging.getLogger(__name__)

DEFAULT_KEY_ENV = "WAVALIGN_JUDGE_API_KEY"


class JudgeError(KitError, RuntimeError):
    """The judge is misconfigured (e.g. its API key is missing from the environment)."""


class JudgeCallError(RuntimeError):
    """One judge request failed for good (after its retries)."""


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """Refuse every redirect: following one would send the request (and its Authorization header) elsewhere."""

    def redirect_request(self, req, fp, code, msg, headers, newurl):  # noqa: D102 (urllib's hook)
        raise JudgeCallError(f"judge endpoint answered HTTP {code} redirecting to {newurl}; the client follows no "
                             "redirect (the API key must not leave its origin): set base_url to the final address")


_OPENER = urllib.request.build_opener(_NoRedirect)


def wav_base64(audio: np.ndarray, sample_rate: int) -> str:
    """Mono float waveform in [-1, 1] -> base64 of a 16-bit PCM WAV file whose header says ``sample_rate``."""
    wav = np.asarray(audio, dtype=np.float64)
    if wav.ndim != 1 or wav.size == 0 or not np.isfinite(wav).all():
        raise ValueError(f"judge audio must be a non-empty finite 1-D waveform, got shape {wav.shape}")
    if int(sample_rate) != sample_rate or sample_rate <= 0:
        raise ValueError(f"judge audio sample_rate must be a positive integer, got {sample_rate}")
    pcm = (np.clip(wav, -1.0, 1.0) * 32767.0).round().astype("<i2")
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(int(sample_rate))
        w.writeframes(pcm.tobytes())
    return base64.b64encode(buf.getvalue()).decode("ascii")


@dataclass
class JudgeClient:
    """POSTs chat requests to ``{base_url}/chat/completions`` with ``model``; retries timeouts, connection
    errors, HTTP 429 and 5xx up to ``max_retries`` times, sleeping ``backoff * 2**attempt`` (at most
    ``backoff_max``) seconds in between.  ``api_key_env=None`` sends no Authorization header (local servers)."""

    base_url: str
    model: str
    api_key_env: str | None = DEFAULT_KEY_ENV
    timeout: float = 60.0
    max_retries: int = 3
    backoff: float = 1.0
    backoff_max: float = 30.0
    temperature: float = 0.0
    max_tokens: int = 32

    def __post_init__(self) -> None:
        if not self.base_url.startswith(("http://", "https://")):
            raise ValueError(f"JudgeClient base_url must start with http:// or https://, got {self.base_url!r}")
        if self.timeout <= 0 or self.max_retries < 0 or self.backoff < 0:
            raise ValueError("JudgeClient needs timeout > 0, max_retries >= 0 and backoff >= 0, got "
                             f"{self.timeout}, {self.max_retries}, {self.backoff}")
        self._headers()  # fail now, not mid-training, when the key is missing

    def _headers(self) -> dict[str, str]:
        headers = {"Content-Type": "application/json"}
        if self.api_key_env is not None:
            key = os.environ.get(self.api_key_env)
            if not key:
                raise JudgeError(f"judge API key missing: set the environment variable {self.api_key_env} "
                                 "(or pass api_key_env=None for a server without authentication)")
            headers["Authorization"] = f"Bearer {key}"
        return headers

    def _post_once(self, payload: bytes) -> str:
        url = self.base_url.rstrip("/") + "/chat/completions"
        request = urllib.request.Request(url, data=payload, headers=self._headers(), method="POST")
        with _OPENER.open(request, timeout=self.timeout) as response:
            body = json.loads(response.read().decode("utf-8"))
        try:
            content = body["choices"][0]["message"]["content"]
        except (KeyError, IndexError, TypeError) as err:
            raise JudgeCallError(f"judge response has no choices[0].message.content: {str(body)[:200]}") from err
        if isinstance(content, list):  # some servers return content parts
            content = "".join(part.get("text", "") for part in content if isinstance(part, dict))
        if not isinstance(content, str):
            raise JudgeCallError(f"judge response content is not text: {content!r:.200}")
        return content

    def chat(self, messages: list[dict[str, Any]]) -> str:
        """Send one chat request; return the reply text or raise JudgeCallError after the retries."""
        payload = json.dumps({"model": self.model, "messages": messages, "temperature": self.temperature,
                              "max_tokens": self.max_tokens}).encode("utf-8")
        reason = ""
        for attempt in range(self.max_retries + 1):
            try:
                return self._post_once(payload)
            except urllib.error.HTTPError as err:
                reason = f"HTTP {err.code}"
                if err.code != 429 and err.code < 500:
                    raise JudgeCallError(f"judge request rejected: {reason} {err.reason}") from err
            except (OSError, http.client.HTTPException) as err:  # URLError, timeouts, dropped connections
                reason = f"{type(err).__name__}: {getattr(err, 'reason', err)}"
            except ValueError as err:  # body not UTF-8 JSON
                raise JudgeCallError(f"judge response is not JSON: {err}") from err
            if attempt < self.max_retries:
                time.sleep(min(self.backoff * 2**attempt, self.backoff_max))
        raise JudgeCallError(f"judge request failed after {self.max_retries + 1} attempts ({reason})")


class ApiJudge:
    """A reward function scoring each completion 1..5 with an OpenAI-compatible (multimodal) chat judge.

    ``kind``: "holistic" (channel semantic, sends audio), "semantic" (text only), "acoustic" (sends audio)."""

    def __init__(self, client: JudgeClient, kind: str = "holistic", *, name: str | None = None,
                 max_workers: int = 8, default_score: float = 3.0):
        self.client = client
        self.kind = check_kind(kind)
        self.name = name or f"api_{kind}"
        self.channel = "acoustic" if kind == "acoustic" else "semantic"
        self.needs_audio = kind != "semantic"
        self.score_range = (1.0, 5.0)
        if max_workers < 1:
            raise ValueError(f"ApiJudge max_workers must be >= 1, got {max_workers}")
        self.max_workers = max_workers
        self.default_score = float(default_score)
        self.total_failures = 0
        self.total_calls = 0

    def __repr__(self) -> str:
        return (f"ApiJudge(kind={self.kind!r}, model={self.client.model!r}, base_url={self.client.base_url!r}, "
                f"max_workers={self.max_workers}, default_score={self.default_score})")

    def messages(self, example: Any, completion: Any) -> list[dict[str, Any]]:
        """The chat messages for one completion (system rubric, then question + answer text [+ audio])."""
        text = judge_prompt(self.kind, example.question_text, completion.text, getattr(example, "style", None))
        content: list[dict[str, Any]] = [{"type": "text", "text": text}]
        if self.needs_audio:
            if completion.audio is None:
                raise ValueError(f"{self.name}: completion has no audio; decode the speech units first "
                                 "(the trainer does so when reward.needs_audio is True)")
            content.append({"type": "input_audio", "input_audio": {
                "data": wav_base64(completion.audio, completion.sample_rate), "format": "wav"}})
        return [{"role": "system", "content": SYSTEM_PROMPTS[self.kind]}, {"role": "user", "content": content}]

    def _score_one(self, index: int, messages: list[dict[str, Any]]) -> tuple[float, str | None]:
        try:
            return parse_score(self.client.chat(messages)), None
        except (JudgeCallError, ScoreParseError) as err:
            logger.warning("%s: call %d failed (%s); scoring it %.2f", self.name, index, err, self.default_score)
            return self.default_score, str(err)

    def __call__(self, prompts: Sequence[Any], completions: Sequence[Any]) -> JudgeScores:
        requests = [self.messages(ex, c) for ex, c in zip(prompts, completions)]
        with ThreadPoolExecutor(max_workers=min(self.max_workers, max(1, len(requests)))) as pool:
            results = list(pool.map(self._score_one, range(len(requests)), requests))
        errors = [err for _, err in results if err is not None]
        self.total_failures += len(errors)
        self.total_calls += len(results)
        return JudgeScores([score for score, _ in results], len(errors), errors[0] if errors else None)
