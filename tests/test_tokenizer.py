"""The codec's tokenizer face: codebook choice, DASB's contract, Encodec / DAC parity, YAML swaps."""

import ast
import importlib.util
import inspect
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import ROOT, TINY_HOP, make_codec
from hyperpyyaml import load_hyperpyyaml

from speechbrain_dsl.inference.interface import DACStyleCodec, load_tokenizer
from speechbrain_dsl.inference.tokenizer import DSLTokenizer
from speechbrain_dsl.lobes.codec import DSLCodec

SPEECHBRAIN = Path(importlib.util.find_spec("speechbrain").submodule_search_locations[0])
SHIPPED = ROOT / "pretrained" / "dsl-codec-16k"


@pytest.fixture
def codec():
    """The tokenizer of a tiny codec (hop 16, 3 codebooks of 16, D = 8), codebooks initialised."""
    codec = DSLTokenizer(make_codec(num_quantizers=3, codebook_size=16)).eval()
    codec.encode(torch.randn(4, 1600) * 0.1)
    return codec


def wavs(batch=2, samples=320):
    return torch.randn(batch, samples) * 0.1


def params(function):
    return list(inspect.signature(function).parameters.values())[1:]  # without self


# --------------------------------------------------------------- DASB's contract


def test_dasb_methods_have_the_contract_signatures():
    shape = lambda f: [(p.name, p.kind.name, p.default) for p in params(f)]  # noqa: E731
    var = ("kwargs", "VAR_KEYWORD", inspect.Parameter.empty)
    positional = "POSITIONAL_OR_KEYWORD"
    assert shape(DSLTokenizer.sig_to_tokens) == [
        ("signal", positional, inspect.Parameter.empty),
        ("lengths", positional, None),
        ("num_codebooks", positional, None),
        var,
    ]
    assert shape(DSLTokenizer.tokens_to_sig) == [
        ("tokens", positional, inspect.Parameter.empty),
        ("length", positional, None),
        var,
    ]
    assert shape(DSLTokenizer.get_pretrained_embeddings) == [
        ("vocab_size", positional, None),
        ("num_codebooks", positional, None),
        ("device", positional, "cpu"),
        var,
    ]


def test_sig_to_tokens_takes_a_count_or_a_list_of_codebooks(codec):
    signal = wavs()
    tokens = codec.sig_to_tokens(signal)
    assert tokens.dtype == torch.int64 and tokens.shape == (2, 320 // TINY_HOP, 3)
    assert torch.equal(codec.sig_to_tokens(signal, num_codebooks=2), tokens[..., :2])
    assert torch.equal(codec.sig_to_tokens(signal, num_codebooks=[2, 0]), tokens[..., [2, 0]])
    assert torch.equal(codec.sig_to_tokens(signal.numpy()), tokens)
    for bad, message in [
        (4, r"num_codebooks: expected 1\.\.3 codebooks, got 4"),
        (0, r"expected 1\.\.3 codebooks, got 0"),
        ([0, 3], r"distinct codebook indices in \[0, 3\), got \[0, 3\]"),
        ([1, 1], r"distinct codebook indices"),
        ("2", "expected None, an int or a list"),
    ]:
        with pytest.raises(ValueError, match=message):
            codec.sig_to_tokens(signal, num_codebooks=bad)


def test_sig_to_tokens_accepts_dasb_keywords_that_ask_for_nothing(codec):
    signal = wavs()
    tokens = codec.sig_to_tokens(signal)
    same = codec.sig_to_tokens(
        signal,
        None,
        None,
        deduplicates=[False, False],
        bpe_tokenizers=[None, None],
        SSL_layers=[1, 3],
    )
    assert torch.equal(same, tokens)
    with pytest.raises(ValueError, match=r"deduplicates: codec tokens are frame-aligned"):
        codec.sig_to_tokens(signal, deduplicates=[True, False])
    with pytest.raises(ValueError, match=r"bpe_tokenizers"):
        codec.sig_to_tokens(signal, bpe_tokenizers=[object()])


def test_sig_to_tokens_refuses_bad_lengths(codec):
    with pytest.raises(ValueError, match=r"length: relative lengths must be in \(0, 1\]"):
        codec.sig_to_tokens(wavs(), torch.tensor([1.0, 1.2]))
    with pytest.raises(ValueError, match=r"length: expected one relative length per item"):
        codec.sig_to_tokens(wavs(), torch.tensor([1.0]))


def test_dasb_calls_run_in_eval_mode_without_grad_and_restore_the_mode(codec):
    codec.train()
    seen = []
    for module in (codec.encoder, codec.decoder):
        module.register_forward_hook(
            lambda m, i, o: seen.append((m.training, torch.is_grad_enabled()))
        )
    signal = wavs()
    tokens = codec.sig_to_tokens(signal)
    audio = codec.tokens_to_sig(tokens)
    vectors = codec.get_pretrained_embeddings()
    assert seen == [(False, False), (False, False)]
    assert codec.training and any(p.requires_grad for p in codec.parameters())
    assert not audio.requires_grad and not vectors.requires_grad
    assert torch.equal(tokens, codec.eval().sig_to_tokens(signal))


def test_tokens_to_sig_gives_batch_by_samples_and_zeroes_padding(codec):
    tokens = codec.sig_to_tokens(wavs(3, 320))
    audio = codec.tokens_to_sig(tokens, length=torch.tensor([1.0, 0.5, 0.25]), lenght=None)
    assert audio.shape == (3, 320)
    torch.testing.assert_close(audio[0], codec.decode(tokens)[0, 0])
    assert bool((audio[1, 160:] == 0).all()) and bool((audio[2, 80:] == 0).all())
    assert bool((audio[1, :160] != 0).any())


def test_pretrained_embeddings_are_codebook_major_as_recipes_index_them(codec):
    signal = wavs()
    tokens, emb = codec.encode(signal)
    table = codec.get_pretrained_embeddings(16, 3, device="cpu", unused=True)
    assert table.shape == (3 * 16, 8)
    # DASB's embedding layers look token c of codebook k up at row k * C + c
    offsets = torch.arange(3) * 16
    torch.testing.assert_close(torch.nn.functional.embedding(tokens + offsets, table), emb)
    picked = codec.get_pretrained_embeddings(num_codebooks=[2, 0])
    torch.testing.assert_close(picked, torch.cat([codec.vocabulary[2], codec.vocabulary[0]]))
    assert codec.get_pretrained_embeddings(device="meta").device.type == "meta"
    with pytest.raises(ValueError, match="vocab_size: this codec has 16 entries"):
        codec.get_pretrained_embeddings(vocab_size=8)


# ---------------------------------------------------------------- codebook choice


def test_num_codebooks_applies_to_every_tokenizer_call(codec):
    signal = wavs()
    full_tokens, full_emb = codec.encode(signal)
    codec.num_codebooks = 2
    tokens, emb = codec.encode(signal)
    assert torch.equal(tokens, full_tokens[..., :2]) and torch.equal(emb, full_emb[:, :, :2])
    assert torch.equal(codec.sig_to_tokens(signal), tokens)
    assert codec.vocabulary.shape == (2, 16, 8) and codec.num_heads == 2
    assert codec.get_pretrained_embeddings().shape == (2 * 16, 8)
    assert codec.tokens_to_sig(tokens).shape == (2, 320)
    assert codec.bitrate == pytest.approx(16000 / TINY_HOP * 2 * math.log2(16) / 1000)
    with pytest.raises(ValueError, match=r"num_codebooks=2 of this codec's 3"):
        codec.decode(full_tokens)
    with pytest.raises(ValueError, match=r"expected 1\.\.2 codebooks.*num_codebooks=2"):
        codec.sig_to_tokens(signal, num_codebooks=3)
    with pytest.raises(ValueError, match=r"num_codebooks: expected an int in 1\.\.3"):
        codec.num_codebooks = 4
    codec.num_codebooks = None
    assert codec.num_codebooks == 3 and torch.equal(codec.encode(signal)[0], full_tokens)


def test_load_tokenizer_with_two_codebooks_gives_1_kbps(packaged_dsl_codec):
    eight = load_tokenizer(packaged_dsl_codec)
    two = load_tokenizer(packaged_dsl_codec, "mixed", 2)
    signal = torch.randn(2, 16000) * 0.1
    tokens = two.sig_to_tokens(signal)
    assert tokens.shape == (2, 50, 2) and torch.equal(tokens, eight.sig_to_tokens(signal)[..., :2])
    assert two.vocabulary.shape == (2, 1024, 64)
    assert two.get_pretrained_embeddings().shape == (2 * 1024, 64)
    assert two.tokens_to_sig(tokens).shape == (2, 16000)
    measured = tokens[0].numel() * math.log2(two.vocab_size) / 1.0 / 1000  # kbit per second
    assert two.bitrate == measured == 1.0 and eight.bitrate == 4.0
    with pytest.raises(ValueError, match=r"expected 1\.\.8 codebooks, got 10"):
        eight.sig_to_tokens(signal, num_codebooks=10)
    with pytest.raises(ValueError, match=r"num_codebooks: expected an int in 1\.\.8"):
        load_tokenizer(packaged_dsl_codec, num_codebooks=10)


# ------------------------------------------------------- SpeechBrain parity


def speechbrain_methods(relative_path, class_name):
    """``{method: [argument names]}`` of a class in the installed SpeechBrain source."""
    tree = ast.parse((SPEECHBRAIN / relative_path).read_text())
    cls = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == class_name)
    return {
        f.name: [a.arg for a in f.args.args[1:]] for f in cls.body if isinstance(f, ast.FunctionDef)
    }


def test_encodec_style_calls_match_speechbrains_encodec(codec):
    theirs = speechbrain_methods("integrations/huggingface/encodec.py", "Encodec")
    for name in ("encode", "decode", "embeddings"):
        ours = [p.name for p in params(getattr(DSLTokenizer, name))]
        assert ours[: len(theirs[name])] == theirs[name], name
    assert (codec.num_heads, codec.num_tokens, codec.emb_dim) == codec.vocabulary.shape
    assert codec.bandwidth == codec.bitrate and codec.sample_rate == 16000
    tokens, emb = codec.encode(wavs(), torch.tensor([1.0, 0.5]))
    torch.testing.assert_close(codec.embeddings(tokens), emb)


def test_dac_style_calls_match_speechbrains_dac(codec):
    theirs = speechbrain_methods("lobes/models/discrete/dac.py", "DAC")
    for name in ("forward", "encode", "decode"):
        ours = [p.name for p in params(getattr(DACStyleCodec, name))]
        assert ours[: len(theirs[name])] == theirs[name], name
    from_codes = speechbrain_methods("lobes/models/discrete/dac.py", "ResidualVectorQuantize")
    dac = DACStyleCodec(codec=codec)
    assert [
        p.name for p in inspect.signature(dac.quantizer.from_codes).parameters.values()
    ] == from_codes["from_codes"]
    assert (
        dac.sample_rate,
        dac.n_codebooks,
        dac.codebook_size,
        dac.codebook_dim,
        dac.latent_dim,
        dac.hop_length,
    ) == (16000, 3, 16, 8, 8, TINY_HOP)


def test_dac_style_wrapper_gives_codes_latents_and_audio(codec):
    dac = DACStyleCodec(codec=codec)
    signal = wavs()
    tokens, emb = codec.encode(signal)
    codes, z = dac(signal.unsqueeze(1), n_quantizers=2)
    assert codes.shape == (2, 2, 20) and torch.equal(codes, tokens[..., :2].transpose(1, 2))
    torch.testing.assert_close(z, emb[:, :, :2].sum(2).transpose(1, 2))
    z_q, z_p, same = dac.quantizer.from_codes(codes)
    torch.testing.assert_close(z_q, z)
    assert z_p.shape == (2, 2 * 8, 20) and same is codes
    torch.testing.assert_close(dac.decode(z_q), codec.decode(tokens[..., :2]))
    z2, codes2, latents, commitment, codebook = dac.encode(signal.unsqueeze(1), 2)
    assert torch.equal(codes2, codes) and float(commitment) == float(codebook) == 0.0
    assert dac(signal)[0].shape == (2, 3, 20)  # all codebooks by default
    assert dac(signal[:, ::2], sample_rate=8000)[0].shape == (2, 3, 20)  # resampled
    with pytest.raises(ValueError, match=r"n_quantizers: expected 1\.\.3 codebooks, got 4"):
        dac(signal, n_quantizers=4)
    copy = DACStyleCodec(codec=make_codec(num_quantizers=3, codebook_size=16))
    copy.load_state_dict(dac.state_dict())  # recipes checkpoint it
    assert torch.equal(copy(signal)[0], dac(signal)[0])


def test_dac_style_n_quantizers_is_a_count_of_first_codebooks(codec):
    # from_codes reads position k as codebook k: a list [2] would build z from
    # codebook 0 with codebook-2 indices, so only a count (or None) is accepted
    dac = DACStyleCodec(codec=codec)
    signal = wavs()
    for bad in ([2], [0, 1], (0,), "2", 2.0, True):
        with pytest.raises(
            ValueError,
            match=r"n_quantizers: expected None or an int \(the "
            r"first K codebooks\), got",
        ):
            dac(signal, n_quantizers=bad)
        with pytest.raises(ValueError, match=r"n_quantizers: expected None or an int"):
            dac.encode(signal, bad)
    codes, _ = dac(signal, n_quantizers=np.int64(2))
    assert torch.equal(codes, dac(signal, n_quantizers=2)[0])


def test_token_calls_skip_the_codebook_vector_lookup_they_do_not_return(codec, monkeypatch):
    signal = wavs()
    tokens, emb = codec.encode(signal)
    calls = []
    codes = codec.quantizer.codes
    monkeypatch.setattr(codec.quantizer, "codes", lambda t: calls.append(t) or codes(t))
    assert torch.equal(codec.sig_to_tokens(signal), tokens)
    assert torch.equal(codec.sig_to_tokens(signal, num_codebooks=[2, 0]), tokens[..., [2, 0]])
    assert calls == []  # tokens only
    dac = DACStyleCodec(codec=codec)
    codes_, z = dac(signal, n_quantizers=2)
    assert len(calls) == 1  # from_codes' lookup for z, none in the encoding
    torch.testing.assert_close(z, emb[:, :, :2].sum(2).transpose(1, 2))
    again, emb_again = codec.encode(signal)
    assert torch.equal(again, tokens) and torch.equal(emb_again, emb) and len(calls) == 2


def test_every_entry_point_encodes_through_the_tokenizers_engine(codec, monkeypatch):
    signal = wavs()
    want = (codec.encode(signal)[0] + 1) % 16
    dac = DACStyleCodec(codec=codec)  # the tokenizer's model, engine chosen by the same name
    assert dac.codec is codec.codec and dac.engine == codec.engine == "torch"
    for face in (codec, dac):  # another engine: tokens shifted by one
        run = face._engine.encode

        def shifted(*args, run=run, **kwargs):
            out = run(*args, **kwargs)
            out.tokens = (out.tokens + 1) % 16
            return out

        monkeypatch.setattr(face._engine, "encode", shifted)
    assert torch.equal(codec.sig_to_tokens(signal), want)
    assert torch.equal(codec.encode(signal)[0], want)
    assert torch.equal(codec.encode_with_routing(signal).tokens, want)
    assert torch.equal(dac(signal)[0], want.transpose(1, 2))
    assert torch.equal(dac.sig_to_tokens(signal), want)


def test_the_training_pass_points_dac_style_calls_to_the_wrapper(codec):
    with pytest.raises(
        ValueError, match="n_quantizers: DSLCodec.forward is the training pass.*DACStyleCodec"
    ):
        codec(wavs().unsqueeze(1), n_quantizers=2)
    with pytest.raises(ValueError, match="either source"):
        DACStyleCodec()


# ------------------------------------------------------------ README's YAML swaps

ENCODEC_RECIPE = """
save_folder: save
sample_rate: 24000
codec: !new:speechbrain.integrations.huggingface.encodec.Encodec
    source: facebook/encodec_24khz
    save_path: !ref <save_folder>
    bandwidth: 1.5
"""

DAC_RECIPE = """
save_folder: save
sample_rate: 24000
codec: !new:speechbrain.lobes.models.discrete.dac.DAC
    model_type: 24khz
    model_bitrate: 8kbps
    load_pretrained: True
    tag: latest
"""

OURS_FOR_ENCODEC = """sample_rate: 16000
codec: !apply:speechbrain_dsl.inference.interface.load_tokenizer
    source: pretrained/dsl-codec-16k
    mode: mixed
    num_codebooks: 2
"""
OURS_FOR_DAC = """sample_rate: 16000
codec: !new:speechbrain_dsl.inference.interface.DACStyleCodec
    source: pretrained/dsl-codec-16k
    mode: mixed
    num_codebooks: 2
"""


def swapped(recipe_yaml, ours):
    """The recipe's YAML with its sample rate and codec entry replaced by ``ours``."""
    head, _ = recipe_yaml.split("sample_rate:", 1)
    text = head + ours.replace("source: pretrained/", f"source: {ROOT}/pretrained/")
    return load_hyperpyyaml(text)


@pytest.mark.parametrize("block", [OURS_FOR_ENCODEC, OURS_FOR_DAC])
def test_readme_shows_the_swap_lines_tested_here(block):
    readme = (ROOT / "README.md").read_text()
    assert f"```yaml\n{block}```" in readme


def test_readme_lines_swap_the_codec_into_an_encodec_recipe():
    hp = swapped(ENCODEC_RECIPE, OURS_FOR_ENCODEC)
    codec, num_codebooks = hp["codec"], 2
    assert hp["sample_rate"] == codec.sample_rate == 16000
    wavs_, wav_lens = torch.randn(2, 16000) * 0.1, torch.tensor([1.0, 0.6])
    # what DASB's train_encodec.py and TokensExtractor do
    with torch.no_grad():
        codec.to("cpu").eval()
        tokens, _ = codec.encode(wavs_, wav_lens)
    table = torch.nn.Embedding(num_codebooks * 1024, 64)
    table.weight.data.copy_(codec.get_pretrained_embeddings(1024, num_codebooks, device="cpu"))
    feats = table(tokens + torch.arange(num_codebooks) * 1024)
    assert tokens.shape == (2, 50, 2) and feats.shape == (2, 50, 2, 64)
    assert codec.sig_to_tokens(wavs_, wav_lens, num_codebooks=2).shape == (2, 50, 2)
    assert codec.tokens_to_sig(tokens).shape == (2, 16000)


def test_readme_lines_swap_the_codec_into_a_dac_recipe():
    hp = swapped(DAC_RECIPE, OURS_FOR_DAC)
    codec, num_codebooks = hp["codec"], 2
    assert hp["sample_rate"] == codec.sample_rate == 16000
    wavs_ = torch.randn(2, 16000) * 0.1
    # what DASB's train_dac.py and DACTokenizer do
    with torch.no_grad():
        codec.to("cpu").eval()
        tokens, _ = codec(wavs_.unsqueeze(1), n_quantizers=num_codebooks)
        quantized, _, _ = codec.quantizer.from_codes(tokens)
        audio = codec.decode(quantized)[:, 0]
    assert tokens.movedim(-2, -1).shape == (2, 50, 2) and audio.shape == (2, 16000)
    assert isinstance(codec, torch.nn.Module) and codec.state_dict()


def test_numpy_and_int16_inputs_at_the_tokenizer_entry_points(codec):
    signal = wavs()
    assert torch.equal(codec.encode(signal.numpy())[0], codec.encode(signal)[0])
    with pytest.raises(ValueError, match=r"inputs: expected a waveform in \[-1, 1\]"):
        codec.sig_to_tokens(signal * 32767)
    with pytest.raises(ValueError, match="floating-point waveform"):
        codec.sig_to_tokens((signal.numpy() * 32767).astype(np.int16))
    with pytest.raises(ValueError, match=r"declared sample rate 8000 Hz"):
        codec.encode(signal, sample_rate=8000)


# ------------------------------------------------- the tokenizer holds the model


def test_load_tokenizer_returns_a_tokenizer_that_holds_the_model(packaged_dsl_codec):
    tokenizer = load_tokenizer(packaged_dsl_codec, "light", 2)
    assert type(tokenizer) is DSLTokenizer and not isinstance(tokenizer, DSLCodec)
    assert type(tokenizer.codec) is DSLCodec and isinstance(tokenizer, torch.nn.Module)
    # no graphs packaged: the encoder graph is exported into <savedir>/onnx-cache on first load
    assert tokenizer.engine == "onnxruntime" and tokenizer.runtime is not None
    assert not tokenizer.training and not tokenizer.codec.training
    assert (
        (tokenizer.mode, tokenizer.num_codebooks)
        == ("light", 2)
        == (
            tokenizer.codec.mode,
            tokenizer.codec.num_codebooks,
        )
    )
    # the model's weights, under codec. (what recipes checkpoint or move with .to())
    assert tokenizer.state_dict().keys() == {f"codec.{key}" for key in tokenizer.codec.state_dict()}
    assert tokenizer.quantizer is tokenizer.codec.quantizer  # parts read through
    tokenizer.num_codebooks = 3  # a bitrate, set on the tokenizer: the model's setting
    assert tokenizer.codec.num_codebooks == 3 and tokenizer.bitrate == 1.5
    torch_only = load_tokenizer(packaged_dsl_codec, engine="torch")
    assert torch_only.runtime is None
    with pytest.raises(ValueError, match="without exported graphs"):
        torch_only.engine = "onnxruntime"
    with pytest.raises(ValueError, match="engine: expected one of"):
        tokenizer.engine = "tensorrt"


@pytest.mark.parametrize("num_codebooks", [2, 3])
def test_tokenizer_tokens_equal_the_models_in_every_dialect(num_codebooks):
    model = make_codec(num_quantizers=3, codebook_size=16).eval()
    model.encode(torch.randn(4, 1600) * 0.1)  # initialise the codebooks
    model.num_codebooks = num_codebooks
    tokenizer = DSLTokenizer(model)
    dac = DACStyleCodec(codec=model)
    signal, lengths = wavs(3, 480), torch.tensor([1.0, 0.7, 0.4])
    with torch.no_grad():
        tokens, vectors = model.encode(signal, lengths)
        want = model.encode_with_routing(signal, lengths, mode="mixed")
        audio = model.decode(tokens, lengths)
    assert tokens.shape == (3, 480 // TINY_HOP, num_codebooks)
    # Encodec's dialect
    got, got_vectors = tokenizer.encode(signal, lengths)
    assert torch.equal(got, tokens) and torch.equal(got_vectors, vectors)
    assert torch.equal(tokenizer.embeddings(tokens), model.embeddings(tokens))
    torch.testing.assert_close(tokenizer.decode(tokens, lengths), audio)
    assert torch.equal(tokenizer.vocabulary, model.vocabulary)
    # DASB's
    assert torch.equal(tokenizer.sig_to_tokens(signal, lengths), tokens)
    assert torch.equal(tokenizer.sig_to_tokens(signal, lengths, [1, 0]), tokens[..., [1, 0]])
    torch.testing.assert_close(tokenizer.tokens_to_sig(tokens, lengths), audio[:, 0])
    assert torch.equal(
        tokenizer.get_pretrained_embeddings(16, num_codebooks),
        model.get_pretrained_embeddings(16, num_codebooks),
    )
    # the routes of a call and the continuous embeddings
    out = tokenizer.encode_with_routing(signal, lengths, mode="mixed")
    assert torch.equal(out.tokens, want.tokens) and torch.equal(out.emb, want.emb)
    assert torch.equal(out.routing.route, want.routing.route)
    assert torch.equal(
        tokenizer.embed(signal, lengths, mode="light"), model.embed(signal, lengths, mode="light")
    )
    # DAC's
    codes, z = dac(signal, n_quantizers=num_codebooks)
    assert torch.equal(codes, model.encode(signal)[0].transpose(1, 2))
    torch.testing.assert_close(dac.decode(z), model.decode(codes.transpose(1, 2)))
    assert torch.equal(dac.sig_to_tokens(signal, lengths), tokens)
    assert dac.get_pretrained_embeddings().shape == (num_codebooks * 16, 8)


def test_nothing_reassigns_a_class_or_detects_an_overridden_encode():
    """Engines are objects a tokenizer holds, not classes a codec is turned into."""
    offenders = []
    for path in sorted((ROOT / "speechbrain_dsl").rglob("*.py")):
        source = path.read_text()
        for node in ast.walk(ast.parse(source)):
            targets = getattr(node, "targets", None) or [getattr(node, "target", None)]
            if isinstance(node, (ast.Assign, ast.AugAssign, ast.AnnAssign)) and any(
                isinstance(t, ast.Attribute) and t.attr == "__class__" for t in targets
            ):
                offenders.append(f"{path.name}:{node.lineno}")
        if "type(self).encode is not" in source or '"__class__"' in source:
            offenders.append(path.name)
    assert offenders == []
