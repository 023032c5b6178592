"""models.layout: the shipped layout files, every key settable from YAML / key=value / notebook parameters /
Python, and the checks against the tokenizer (missing tokens, gaps, unit counts) with errors that name the key."""

from __future__ import annotations

import pytest
from tokenizers import Tokenizer
from tokenizers.models import WordLevel
from tokenizers.pre_tokenizers import WhitespaceSplit
from transformers import PreTrainedTokenizerFast

from wavalign_kit.config import ConfigError, parse_overrides
from wavalign_kit.layouts import LayoutConfig, known_layouts, load_layout, merge_layout
from wavalign_kit.profiles import apply_model_parameters


def tokenizer_with(tokens: list[str], units: list[str]) -> PreTrainedTokenizerFast:
    vocab = {t: i for i, t in enumerate(["<unk>", "<pad>", "hello", "world", *tokens, *units])}
    core = Tokenizer(WordLevel(vocab, unk_token="<unk>"))
    core.pre_tokenizer = WhitespaceSplit()
    return PreTrainedTokenizerFast(tokenizer_object=core, unk_token="<unk>", pad_token="<pad>")


@pytest.mark.parametrize("name", ["vita_audio_boost", "vita_audio_balance", "glm4_voice", "kimi_audio_like"])
def test_shipped_layouts_resolve_against_their_tokens(name):
    cfg = load_layout(name)
    assert name in known_layouts() and cfg.tested is False and cfg.source and cfg.model
    named = [t for t in (cfg.begin_audio, cfg.end_audio, cfg.text_end, cfg.eos, cfg.text_pad, cfg.speech_pad) if t]
    small = {"num_units": 8}
    if cfg.speech_offset is not None:            # speech tokens by id: right after the named tokens here
        tok = tokenizer_with(list(dict.fromkeys(named)), [f"u{i}" for i in range(8)])
        small["speech_offset"] = tok.get_vocab()["u0"]
    else:
        tok = tokenizer_with(list(dict.fromkeys(named)), [cfg.speech_token_pattern.format(i=i) for i in range(8)])
    layout = load_layout({"file": name, **small}).resolve(tok)
    assert layout.kind == cfg.kind and layout.num_units == 8
    expected = {"vita_audio_boost": ((1, 10), (4, 10)), "vita_audio_balance": ((1, 4), (3, 8), (4, 10)),
                "glm4_voice": ((13, 26),), "kimi_audio_like": None}[name]
    assert (layout.ratio.chunks if layout.ratio else None) == expected
    if name == "glm4_voice":
        assert layout.response_audio == "none" and layout.text_end_id is None
    if name.startswith("vita"):
        assert layout.response_audio == "chunks" and layout.text_end_id is None
    if name == "kimi_audio_like":
        assert layout.speech_delay == 6 and layout.text_end_id == tok.get_vocab()["<|im_kimia_text_eos|>"]
    as_shipped = "declared 16384 speech units but the tokenizer holds 8" if cfg.speech_offset is None else \
        "ids 152064..168447 lie outside the tokenizer"     # the real model's unit count / ids, checked
    with pytest.raises(ValueError, match=as_shipped):
        load_layout(name).resolve(tok)


def test_every_key_from_a_file_the_command_line_and_notebook_parameters(tmp_path):
    path = tmp_path / "mine.yaml"
    path.write_text('speech_token_pattern: "<s{i}>"\nratio: "3 6"\ntext_end: null\n')
    over = parse_overrides([f"models.layout.file={path}", "models.layout.ratio=2 4", "models.layout.begin_audio=null"])
    cfg = load_layout(over["models"]["layout"])
    assert (cfg.speech_token_pattern, cfg.ratio, cfg.text_end, cfg.begin_audio) == ("<s{i}>", "2 4", None, None)
    assert load_layout(str(path)).ratio == "3 6" and load_layout(LayoutConfig(ratio="1 1")).ratio == "1 1"
    # the notebooks' layout parameter goes under the keys the profile gave
    prof = apply_model_parameters({"models": {"layout": {"ratio": "5 5"}}}, {"layout": str(path), "codec": "a.b:C",
                                                                         "judge": "x.y:Z", "model_path": "/m"})
    assert prof["models"]["layout"] == {"ratio": "5 5", "file": str(path)} and prof["models"]["codec"] == "a.b:C"
    assert prof["train"]["reward"] == "x.y:Z" and prof["models"]["path"] == "/m"
    assert merge_layout("glm4_voice", {"ratio": "1 2"}) == {"file": "glm4_voice", "ratio": "1 2"}
    assert load_layout(None) is None and load_layout("") is None


def test_bad_keys_and_values_are_named():
    with pytest.raises(ConfigError, match=r"models.layout: unknown key 'text_ned' \(did you mean 'text_end'\?\)"):
        load_layout({"text_ned": None})
    with pytest.raises(ConfigError, match=r"models.layout.file: unknown layout 'glm4_vocie' \(did you mean 'glm4_voice'\?\)"):
        load_layout("glm4_vocie")
    with pytest.raises(ConfigError, match="models.layout.ratio"):
        load_layout({"ratio": "1 10 4"})
    with pytest.raises(ConfigError, match="models.layout.response_audio"):
        load_layout({"response_audio": "both"})
    with pytest.raises(ConfigError, match=r"'models.layout' was already given a value.*models.layout.file="):
        parse_overrides(["models.layout=glm4_voice", "models.layout.ratio=1 2"])


def test_tokenizer_checks_name_the_key_and_both_numbers():
    units = [f"<a{i}>" for i in range(6)]
    tok = tokenizer_with(["<e>"], units)
    ok = LayoutConfig(speech_token_pattern="<a{i}>", begin_audio=None, end_audio=None, text_end=None, eos="<e>",
                      ratio="1 2", response_audio="none")
    assert ok.resolve(tok).num_units == 6
    with pytest.raises(ValueError, match=r"models.layout.num_units: declared 4 speech units but the tokenizer holds 6"):
        LayoutConfig(**{**vars(ok), "num_units": 4}).resolve(tok)
    with pytest.raises(ValueError, match=r"models.layout.eos: the tokenizer has no token '<eos>'"):
        LayoutConfig(**{**vars(ok), "eos": "<eos>"}).resolve(tok)
    with pytest.raises(ValueError, match=r"models.layout.ratio: the interleave ratio .* is not declared"):
        LayoutConfig(**{**vars(ok), "ratio": None}).resolve(tok)
    gap = tokenizer_with(["<e>"], ["<a0>", "<a1>", "x", "<a2>"])
    with pytest.raises(ValueError, match=r"not consecutive \('<a2>' has id"):
        ok.resolve(gap)
    holes = tokenizer_with(["<e>"], ["<a0>", "<a1>", "<a3>"])
    with pytest.raises(ValueError, match=r"holds 2 speech tokens .* \(and 1 more after a gap at '<a2>'\)"):
        ok.resolve(holes)
