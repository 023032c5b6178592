"""Tests for the judges: score parsing, the API judge against a local HTTP server, and the local HF judge."""

from __future__ import annotations

import base64
import io
import json
import logging
import threading
import time
import wave
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from wavalign_kit.errors import JudgeFailure
from wavalign_kit.rewards import Completion, CompositeReward
from wavalign_kit.rewards.api import ApiJudge, JudgeClient, JudgeError
from wavalign_kit.rewards.hf import HFJudge, score_token_ids
from wavalign_kit.rewards.judges import ScoreParseError, judge_prompt, parse_score

KEY = "sk-test-0123456789abcdef"
KEY_ENV = "WAVALIGN_JUDGE_API_KEY"


@pytest.mark.parametrize("reply, score", [
    ("Score: 4", 4.0), ("**Score**: 5", 5.0), ("score = 2.5", 2.5), ("I'd give it 4/5.", 4.0),
    ('{"score": 3}', 3.0), ('Here you go: {"score": "2", "why": "ok"}', 2.0), ("1", 1.0), (" 5.\n", 5.0),
    ("The score is 3 overall", 3.0), ("4 out of 5", 4.0),
])
def test_parse_score_formats(reply, score):
    assert parse_score(reply) == score


@pytest.mark.parametrize("reply", ["Score: 7", "0/5", '{"score": 9}', "great answer", "3 or 4", "", "Score: -1"])
def test_parse_score_rejects_out_of_range_and_unparsable(reply):
    with pytest.raises(ScoreParseError):
        parse_score(reply)


class JudgeServer:
    """OpenAI-compatible chat server on 127.0.0.1 whose reply is the answer text it is sent, except:
    "SLOW" sleeps 0.15 s, "ERR500" always answers HTTP 500, "FLAKY" answers 500 twice then "Score: 5",
    "ERR400" answers HTTP 400, "WAIT" waits (at most 1 s) until two requests are in flight, then answers
    "Score: 3"; with ``redirect_to`` set, every request is answered by a 302 to that URL."""

    def __init__(self, redirect_to: str | None = None):
        self.redirect_to = redirect_to
        self.hits: Counter[str] = Counter()
        self.records: list[dict] = []
        self.lock = threading.Lock()
        self.in_flight = self.max_in_flight = 0
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # keep pytest output clean
                pass

            def do_GET(self):  # a redirected POST arrives as a GET: record it
                with server.lock:
                    server.records.append({"path": self.path, "auth": self.headers.get("Authorization"),
                                           "method": "GET"})
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.end_headers()
                self.wfile.write(json.dumps({"choices": [{"message": {"content": "Score: 5"}}]}).encode())

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
                if server.redirect_to:
                    self.send_response(302)
                    self.send_header("Location", server.redirect_to)
                    self.end_headers()
                    return
                with server.lock:
                    server.in_flight += 1
                    server.max_in_flight = max(server.max_in_flight, server.in_flight)
                try:
                    status, reply = server.answer(self.path, dict(self.headers), body)
                finally:
                    with server.lock:
                        server.in_flight -= 1
                payload = json.dumps({"choices": [{"message": {"role": "assistant", "content": reply}}]})
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.end_headers()
                try:
                    self.wfile.write(payload.encode())
                except OSError:  # the client gave up (timeout)
                    pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.httpd.block_on_close = False
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05},
                                       daemon=True)

    def answer(self, path: str, headers: dict, body: dict) -> tuple[int, str]:
        user = body["messages"][1]["content"]
        text = next(p["text"] for p in user if p["type"] == "text")
        answer = next(line.split(": ", 1)[1] for line in text.splitlines() if line.startswith("Assistant answer"))
        record = {"path": path, "auth": headers.get("Authorization"), "model": body["model"], "answer": answer}
        audio = [p["input_audio"] for p in user if p["type"] == "input_audio"]
        if audio:
            with wave.open(io.BytesIO(base64.b64decode(audio[0]["data"]))) as w:
                record.update(format=audio[0]["format"], rate=w.getframerate(), frames=w.getnframes(),
                              channels=w.getnchannels(), width=w.getsampwidth())
        with self.lock:
            self.hits[answer] += 1
            self.records.append(record)
            hit = self.hits[answer]
        if answer == "SLOW":
            time.sleep(0.15)
            return 200, "Score: 3"
        if answer == "WAIT":
            deadline = time.perf_counter() + 1.0
            while self.in_flight < 2 and time.perf_counter() < deadline:
                time.sleep(0.002)
            return 200, "Score: 3"
        if answer == "ERR500" or (answer == "FLAKY" and hit <= 2):
            return 500, "server error"
        if answer == "ERR400":
            return 400, "bad request"
        if answer == "FLAKY":
            return 200, "Score: 5"
        return 200, answer


@pytest.fixture
def server():
    srv = JudgeServer()
    srv.thread.start()
    try:
        yield srv
    finally:
        srv.httpd.shutdown()
        srv.httpd.server_close()
        srv.thread.join(timeout=5)


@pytest.fixture
def api_key(monkeypatch):
    monkeypatch.setenv(KEY_ENV, KEY)
    return KEY


def client(url: str, **kw) -> JudgeClient:
    kw = {"timeout": 2.0, "max_retries": 2, "backoff": 0.01, **kw}
    return JudgeClient(base_url=url, model="judge-model", **kw)


def batch(texts, rate=22050, seconds=0.25, style="happy"):
    prompts = [SimpleNamespace(question_text="what is two plus two", style=style) for _ in texts]
    rng = np.random.default_rng(0)
    audio = [(0.1 * rng.standard_normal(int(rate * seconds))).astype(np.float32) for _ in texts]
    return prompts, [Completion(t, np.zeros(3, np.int64), a, rate) for t, a in zip(texts, audio)]


def test_good_answers_audio_at_true_rate_and_key_header(server, api_key):
    judge = ApiJudge(client(server.url), "holistic", max_workers=4)
    prompts, completions = batch(["Score: 4", "4/5", '{"score": 2}', "5"], rate=22050)
    out = judge(prompts, completions)
    assert out.scores == [4.0, 4.0, 2.0, 5.0]
    assert out.failures == 0 and judge.needs_audio and judge.channel == "semantic"
    assert len(server.records) == 4
    for rec in server.records:
        assert rec["path"] == "/v1/chat/completions" and rec["model"] == "judge-model"
        assert rec["auth"] == f"Bearer {KEY}"
        assert (rec["format"], rec["rate"], rec["channels"], rec["width"]) == ("wav", 22050, 1, 2)
        assert rec["frames"] == int(22050 * 0.25)


def test_semantic_judge_sends_no_audio_and_server_without_auth(server, monkeypatch):
    monkeypatch.delenv(KEY_ENV, raising=False)
    judge = ApiJudge(client(server.url, api_key_env=None), "semantic")
    prompts, completions = batch(["Score: 3"])
    completions[0].audio = None
    assert judge(prompts, completions).scores == [3.0] and not judge.needs_audio
    assert server.records[0]["auth"] is None and "rate" not in server.records[0]
    with pytest.raises(ValueError, match="no audio"):
        ApiJudge(client(server.url, api_key_env=None), "acoustic")(prompts, completions)


def test_unparsable_answers_score_default_are_counted_and_logged(server, api_key, caplog):
    judge = ApiJudge(client(server.url), "acoustic", default_score=2.5)
    reward = CompositeReward([(judge, 1.0)])
    prompts, completions = batch(["Score: 4", "lovely voice", "Score: 9", "3/5"])
    with caplog.at_level(logging.WARNING, logger="wavalign_kit.rewards.api"):
        result = reward.score(prompts, completions)
    np.testing.assert_allclose(result.total, [4.0, 2.5, 2.5, 3.0])
    assert result.failures == 2 and result.failures_by_name == {"api_acoustic": 2}
    assert judge.total_failures == 2 and judge.total_calls == 4 and result.acoustic.sum() == 12.0
    assert caplog.text.count("failed") == 2 and "outside [1, 5]" in caplog.text
    assert KEY not in caplog.text and KEY not in repr(judge) and KEY not in repr(judge.client)


def test_slow_answer_times_out_retries_then_counts_failure(server, api_key, caplog):
    judge = ApiJudge(client(server.url, timeout=0.05, max_retries=1), "holistic", default_score=3.0)
    prompts, completions = batch(["Score: 5", "SLOW", "Score: 1"])
    start = time.perf_counter()
    with caplog.at_level(logging.WARNING, logger="wavalign_kit.rewards.api"):
        out = judge(prompts, completions)
    assert out.scores == [5.0, 3.0, 1.0] and out.failures == 1
    assert server.hits["SLOW"] == 2  # first try + one retry
    assert time.perf_counter() - start < 1.0
    assert "after 2 attempts" in caplog.text and "timed out" in caplog.text.lower()


def test_http_500_is_retried_until_success_and_400_is_not(server, api_key):
    judge = ApiJudge(client(server.url, max_retries=2), "semantic")
    prompts, completions = batch(["FLAKY", "ERR400", "Score: 2"])
    out = judge(prompts, completions)
    assert out.scores == [5.0, 3.0, 2.0]
    assert server.hits["FLAKY"] == 3 and server.hits["ERR400"] == 1 and out.failures == 1


def test_too_many_failures_raise_clear_error(server, api_key):
    judge = ApiJudge(client(server.url, max_retries=1), "semantic")
    prompts, completions = batch(["ERR500"] * 3 + ["Score: 4"])
    with pytest.raises(JudgeFailure, match="3 of 4 calls failed.*max_judge_failure_share=0.5.*HTTP 500"):
        CompositeReward([(judge, 1.0)]).score(prompts, completions, max_failure_share=0.5)
    assert server.hits["ERR500"] == 6 and judge.total_failures == 3


def test_a_redirect_never_carries_the_key_to_another_origin(api_key):
    """A 302 from the judge's endpoint to a second loopback port: the client follows no redirect, the other
    server never sees the key (nor any request), and the call is a counted failure naming the redirect."""
    elsewhere = JudgeServer()
    elsewhere.thread.start()
    redirecting = JudgeServer(redirect_to=elsewhere.url + "/chat/completions")
    redirecting.thread.start()
    try:
        judge = ApiJudge(client(redirecting.url, max_retries=1), "semantic")
        out = judge(*batch(["Score: 5", "Score: 4"]))
        assert out.failures == 2 and out.scores == [judge.default_score] * 2
        assert "302" in out.first_error and elsewhere.url in out.first_error
        assert elsewhere.records == []
    finally:
        for srv in (redirecting, elsewhere):
            srv.httpd.shutdown()
            srv.httpd.server_close()


def test_calls_run_concurrently_in_a_bounded_pool(server, api_key):
    judge = ApiJudge(client(server.url), "semantic", max_workers=2)
    prompts, completions = batch(["WAIT"] * 6)
    assert judge(prompts, completions).scores == [3.0] * 6
    assert server.max_in_flight == 2


def test_key_comes_only_from_environment(monkeypatch, tmp_path):
    monkeypatch.delenv("MY_JUDGE_KEY", raising=False)
    with pytest.raises(JudgeError, match="set the environment variable MY_JUDGE_KEY"):
        JudgeClient(base_url="http://127.0.0.1:9/v1", model="m", api_key_env="MY_JUDGE_KEY")
    monkeypatch.setenv("MY_JUDGE_KEY", KEY)
    c = JudgeClient(base_url="http://127.0.0.1:9/v1", model="m", api_key_env="MY_JUDGE_KEY")
    assert KEY not in repr(c) and KEY not in str(vars(c))
    with pytest.raises(ValueError, match="base_url"):
        JudgeClient(base_url="127.0.0.1:9", model="m", api_key_env=None)


# ---- local Hugging Face judge -------------------------------------------------------------------------------

VOCAB_WORDS = ["1", "2", "3", "4", "5", "Score", ":", "User", "request", "Assistant", "answer", "(", ")", "text",
               "what", "is", "two", "plus", "four", "three", "rate", "the"]


def build_tiny_judge(path, words=VOCAB_WORDS):
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    vocab = {w: i for i, w in enumerate(["<pad>", "<unk>", "<s>", "</s>", *words])}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="<unk>", pad_token="<pad>", bos_token="<s>",
                                   eos_token="</s>")
    fast.save_pretrained(path)
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=len(vocab), hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                         num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=512,
                         pad_token_id=0, bos_token_id=2, eos_token_id=3)
    LlamaForCausalLM(config).save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def tiny_judge_dir(tmp_path_factory):
    return build_tiny_judge(tmp_path_factory.mktemp("tiny_judge"))


QUESTIONS = ["what is two plus two", "what is three", "rate the answer what is two plus four plus four"]
ANSWERS = ["four", "three plus two is four and three", "5"]


def test_hf_judge_argmax_scores_do_not_depend_on_batching(tiny_judge_dir):
    judge = HFJudge(tiny_judge_dir, batch_size=1)
    scores = judge.score_texts(QUESTIONS, ANSWERS)
    assert set(scores) <= {1.0, 2.0, 3.0, 4.0, 5.0}
    judge.batch_size = 3  # left-padded batch: same scores
    assert judge.score_texts(QUESTIONS, ANSWERS) == scores
    judge.expected = True
    expected_three = judge.score_texts(QUESTIONS, ANSWERS)
    judge.batch_size = 1
    np.testing.assert_allclose(judge.score_texts(QUESTIONS, ANSWERS), expected_three, atol=1e-5)
    assert all(1.0 <= s <= 5.0 for s in expected_three) and len(set(expected_three)) == 3


def test_hf_judge_reads_the_digit_logits(tiny_judge_dir):
    judge = HFJudge(tiny_judge_dir)
    hidden, vocab = judge.model.lm_head.in_features, judge.model.lm_head.out_features
    head = torch.nn.Linear(hidden, vocab, bias=True)
    torch.nn.init.zeros_(head.weight)
    torch.nn.init.zeros_(head.bias)
    head.bias.data[judge.tokenizer.convert_tokens_to_ids("4")] = 2.0
    head.bias.data[judge.tokenizer.convert_tokens_to_ids("Score")] = 50.0  # a non-digit never counts
    judge.model.lm_head = head
    assert judge.score_texts(QUESTIONS, ANSWERS) == [4.0, 4.0, 4.0]
    judge.expected = True
    e2 = np.exp(2.0)
    np.testing.assert_allclose(judge.score_texts(QUESTIONS[:1], ANSWERS[:1]), [(1 + 2 + 3 + 5 + 4 * e2) / (4 + e2)],
                               rtol=1e-5)


def test_hf_judge_scores_the_transcript_when_given_a_recogniser(tiny_judge_dir):
    seen = []

    def transcribe(units_list):
        seen.extend(units_list)
        return ["three plus two is four and three" for _ in units_list]

    judge = HFJudge(tiny_judge_dir, expected=True, transcribe=transcribe)
    prompts = [SimpleNamespace(question_text=q) for q in QUESTIONS]
    completions = [Completion("four", np.array([1, 2])) for _ in QUESTIONS]
    result = CompositeReward([(judge, 1.0)]).score(prompts, completions)
    assert len(seen) == 3 and judge.channel == "semantic" and not judge.needs_audio
    np.testing.assert_allclose(result.semantic, result.total)
    np.testing.assert_allclose(result.total, judge.score_texts(QUESTIONS, ["three plus two is four and three"] * 3),
                               rtol=1e-6)
    assert not np.allclose(result.total, judge.score_texts(QUESTIONS, ["four"] * 3))


def test_hf_judge_needs_single_digit_tokens_and_a_model_dir(tmp_path):
    path = build_tiny_judge(tmp_path / "no_three", [w for w in VOCAB_WORDS if w != "3"])
    from transformers import AutoTokenizer

    with pytest.raises(ValueError, match="no single token for '3'"):
        score_token_ids(AutoTokenizer.from_pretrained(path))
    with pytest.raises(ValueError, match="holds no config.json"):
        HFJudge(tmp_path / "missing")


def test_judge_prompt_contents():
    text = judge_prompt("acoustic", "what is two", "two", "happy")
    assert "User request: what is two" in text and "Requested speaking style: happy" in text
    assert "style" not in judge_prompt("semantic", "q", "a", "happy")
    with pytest.raises(ValueError, match="holistic, semantic, acoustic"):
        judge_prompt("prosody", "q", "a")


def test_api_judge_from_a_config_entry_scores_through_build_reward(server, api_key):
    from wavalign_kit.rewards import build_reward

    spec = {"api_acoustic": {"base_url": server.url, "model": "judge-model", "timeout": 2.0, "max_retries": 1,
                             "backoff": 0.01, "weight": 0.5, "max_workers": 2}}
    reward = build_reward(spec)
    prompts, completions = batch(["Score: 4", "2/5"])
    result = reward.score(prompts, completions)
    assert result.total.tolist() == [2.0, 1.0] and result.failures == 0
    assert reward.needs_audio and all(rec["auth"] == f"Bearer {KEY}" for rec in server.records)
    with pytest.raises(ValueError, match="needs model="):
        build_reward({"api_holistic": {"base_url": server.url}})
    with pytest.raises(ValueError, match="only taken by the judges"):
        build_reward({"holistic": {"weight": 1}})
