"""DSLCodec: shapes, tensor-level encode/decode, routing, input validation, gradients, YAML."""

import math

import pytest
import torch
from conftest import BASELINE_YAML, DSL_YAML, TINY_HOP, load_hparams, make_codec
from hyperpyyaml import load_hyperpyyaml

from speechbrain_dsl.inference.tokenizer import DSLTokenizer
from speechbrain_dsl.lobes.codec import CodecOutput, DSLCodec
from speechbrain_dsl.lobes.dsl_encoder import DSLEncoder, baseline_to_dsl_state
from speechbrain_dsl.lobes.soundstream import SoundStreamDecoder, SoundStreamEncoder
from speechbrain_dsl.lobes.vocos import VocosDecoder
from speechbrain_dsl.nnet.dsl import DSLLoss, DynamicSwitchLayer, Mask, Switch
from speechbrain_dsl.nnet.losses import MultiScaleMelLoss
from speechbrain_dsl.nnet.quantizer import ResidualVectorQuantizer

# ---------------------------------------------------------------------------- shapes


@pytest.mark.parametrize("samples", [16, 17, 100, 320, 333])
@pytest.mark.parametrize("training", [True, False])
def test_codec_forward_shapes_for_any_length(samples, training):
    codec = make_codec().train(training)
    out = codec(torch.randn(2, samples))
    frames = math.ceil(samples / TINY_HOP)
    assert isinstance(out, CodecOutput)
    assert out.wav_hat.shape == (2, 1, frames * TINY_HOP)
    assert out.emb.shape == out.quantized.shape == (2, frames, 8)
    assert out.tokens.shape == (2, frames, 3)
    assert out.commitment.dim() == 0
    assert out.dsl.features.shape == (2, 8, frames)


@pytest.mark.parametrize("samples", [320, 321, 16000, 16000 + 5, 3 * 16000 - 1])
def test_default_codec_shapes_for_lengths_off_the_hop(samples):
    codec = load_hparams(codebook_size=64)["codec"].eval()
    with torch.no_grad():
        out = codec(torch.randn(2, 1, samples) * 0.1)
    frames = math.ceil(samples / 320)
    assert out.wav_hat.shape == (2, 1, frames * 320)
    assert out.tokens.shape == (2, frames, 8)
    assert out.emb.shape == (2, frames, 64)
    assert out.dsl.route.shape == (2, math.ceil(frames / 50))
    assert out.dsl.predicted.shape == (2, math.ceil(frames / 50))


def test_frames_for_is_ceil_samples_over_hop():
    codec = make_codec()
    assert [codec.frames_for(n) for n in (1, 16, 17, 32, 33)] == [1, 1, 2, 2, 3]


def test_baseline_codec_has_no_dsl_output():
    codec = make_codec(dsl=False).eval()
    out = codec(torch.randn(2, 50))
    assert out.dsl is None and not codec.has_dsl
    assert out.wav_hat.shape == (2, 1, 64)


# ------------------------------------------------------------------------ tokenizer


@pytest.fixture(scope="module")
def default_codec():
    torch.manual_seed(0)
    codec = load_hparams()["codec"].eval()
    with torch.no_grad():  # k-means initialises the codebooks on the first call
        codec.encode(torch.randn(4, 16000) * 0.1)
    return codec


@pytest.mark.parametrize("samples", [16000, 16000 + 7])
def test_encode_returns_long_tokens_and_their_codebook_vectors(default_codec, samples):
    codec = default_codec
    wav = torch.randn(2, samples) * 0.1
    length = torch.tensor([1.0, 0.6])
    with torch.no_grad():
        tokens, emb = codec.encode(wav, length)
        tokens3, emb3 = codec.encode(wav.unsqueeze(1), length)
    frames = math.ceil(samples / 320)
    assert tokens.shape == (2, frames, 8) and tokens.dtype == torch.int64
    assert emb.shape == (2, frames, 8, 64) and emb.dtype == torch.float32
    assert int(tokens.min()) >= 0 and int(tokens.max()) < codec.vocab_size == 1024
    assert torch.equal(tokens, tokens3) and torch.equal(emb, emb3)
    vocab = codec.vocabulary
    for k in range(8):
        torch.testing.assert_close(emb[:, :, k], vocab[k][tokens[:, :, k]])


def test_decode_gives_frames_times_hop_samples(default_codec):
    codec = default_codec
    tokens = torch.randint(0, 1024, (3, 7, 8))
    with torch.no_grad():
        wav = codec.decode(tokens)
        wav32 = codec.decode(tokens.int())
    assert wav.shape == (3, 1, 7 * 320) and wav.dtype == torch.float32
    torch.testing.assert_close(wav, wav32)


def test_decode_with_fewer_codebooks_uses_only_those_codebooks(default_codec):
    codec = default_codec
    tokens = torch.randint(0, 1024, (2, 5, 8))
    vocab = codec.vocabulary
    with torch.no_grad():
        for k in (1, 3):
            wav = codec.decode(tokens[..., :k])
            summed = sum(vocab[i][tokens[:, :, i]] for i in range(k))
            expected = codec.decoder(summed.transpose(1, 2)) / codec.input_scale
            assert wav.shape == (2, 1, 5 * 320)
            torch.testing.assert_close(wav, expected, atol=1e-5, rtol=1e-4)


def test_encode_decode_round_trip_shapes_and_dasb_interface(default_codec):
    codec = default_codec
    tokenizer = DSLTokenizer(codec)  # DASB's calls are the tokenizer's; the model's tensors
    wav = torch.randn(3, 16000 + 100) * 0.1
    lengths = torch.tensor([1.0, 0.7, 0.4])
    with torch.no_grad():
        tokens = tokenizer.sig_to_tokens(wav, lengths)
        assert tokens.shape == (3, 51, 8)
        assert torch.equal(tokens, codec.encode(wav, lengths)[0])
        first3 = tokenizer.sig_to_tokens(wav, lengths, num_codebooks=3)
        assert torch.equal(first3, tokens[..., :3])
        sig = tokenizer.tokens_to_sig(tokens)
        assert sig.shape == (3, 51 * 320)
        torch.testing.assert_close(sig, codec.decode(tokens).squeeze(1))
        audio = codec.decode(tokens, lengths)
    assert audio.shape == (3, 1, 51 * 320)
    assert codec.vocabulary.shape == (8, 1024, 64)
    pretrained = codec.get_pretrained_embeddings()
    assert pretrained.shape == (8 * 1024, 64)
    torch.testing.assert_close(pretrained[1024 + 5], codec.vocabulary[1, 5])
    assert codec.get_pretrained_embeddings(vocab_size=1024, num_codebooks=2).shape == (2048, 64)


def test_decode_with_length_zeroes_the_padding_of_shorter_utterances():
    codec = make_codec().eval()
    tokens = torch.randint(0, 16, (3, 10, 3))
    with torch.no_grad():
        audio = codec.decode(tokens, torch.tensor([1.0, 0.5, 0.2]))
        ref = codec.decode(tokens)
    assert audio.shape == (3, 1, 160)
    torch.testing.assert_close(audio[0], ref[0])
    torch.testing.assert_close(audio[1, :, :80], ref[1, :, :80])
    assert bool((audio[1, :, 80:] == 0).all())
    assert bool((audio[2, :, 32:] == 0).all())


def test_embed_with_length_zeroes_padded_frames():
    codec = make_codec().eval()
    with torch.no_grad():
        emb = codec.embed(torch.randn(2, 160) * 0.1, torch.tensor([1.0, 0.5]))
    assert emb.shape == (2, 10, 8)
    assert bool((emb[1, 5:] == 0).all()) and bool((emb[1, :5] != 0).any())
    assert bool((emb[0] != 0).any(-1).all())


def test_encode_ignores_padding_declared_in_length(default_codec):
    codec = default_codec
    wav = torch.randn(1, 320 * 60) * 0.1
    padded = torch.cat([wav, torch.randn(1, 320 * 40) * 0.3], dim=-1)
    with torch.no_grad():
        ref, _ = codec.encode(wav)
        tokens, _ = codec.encode(padded, torch.tensor([0.6]))
    assert torch.equal(tokens[:, :60], ref)


def test_mode_and_threshold_setters_reach_the_dsl():
    codec = make_codec()
    assert codec.mode == "mixed" and codec.threshold == 0.5
    codec.mode = "light"
    codec.threshold = "0.25"
    assert codec.encoder.dsl.mode == "light" and codec.encoder.dsl.threshold == 0.25
    codec.threshold = 0.1
    assert codec.threshold == pytest.approx(0.1)
    codec.eval()
    with torch.no_grad():
        out = codec(torch.randn(2, 64))
    assert bool(out.dsl.route.all())
    with pytest.raises(ValueError, match="mode must be one of"):
        codec.mode = "fastest"
    assert codec.mode == "light"


def test_baseline_codec_mode_is_full_and_rejects_routing_settings():
    codec = make_codec(dsl=False)
    assert codec.mode == "full" and codec.threshold is None
    codec.mode = "full"
    with pytest.raises(ValueError, match="needs a DSL encoder"):
        codec.mode = "light"
    with pytest.raises(ValueError, match="needs a DSL encoder"):
        codec.threshold = 0.3


@pytest.mark.parametrize("mode", ["full", "light", "mixed", "oracle"])
def test_every_mode_encodes_and_decodes(mode):
    codec = make_codec().eval()
    codec.mode = mode
    with torch.no_grad():
        tokens, emb = codec.encode(torch.randn(2, 100) * 0.1)
        assert tokens.shape == (2, 7, 3) and emb.shape == (2, 7, 3, 8)
        assert codec.decode(tokens).shape == (2, 1, 7 * TINY_HOP)


# ----------------------------------------------------------------------- bad inputs


@pytest.mark.parametrize("shape", [(2, 1, 1, 400), (2, 2, 400), (400,), (1, 3, 2, 1, 400)])
def test_wrong_rank_or_channels_raise_value_error_naming_expected_shape(shape):
    codec = make_codec().eval()
    expected = r"expected shape \[batch, samples\] or \[batch, 1, samples\], got " + (
        re_tuple(shape)
    )
    with pytest.raises(ValueError, match=expected):
        codec.encode(torch.randn(shape))
    with pytest.raises(ValueError, match=expected):
        codec(torch.randn(shape))


def re_tuple(shape):
    return r"\(" + ", ".join(map(str, shape)) + ("," if len(shape) == 1 else "") + r"\)"


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
def test_non_finite_samples_raise_value_error(bad):
    codec = make_codec().eval()
    wav = torch.randn(2, 100)
    wav[1, 37] = bad
    with pytest.raises(ValueError, match="NaN or inf"):
        codec.encode(wav)
    with pytest.raises(ValueError, match="NaN or inf"):
        codec(wav)


@pytest.mark.parametrize("samples", [0, 1, 319])
def test_input_shorter_than_one_hop_raises_value_error(samples):
    codec = load_hparams(codebook_size=16)["codec"].eval()
    with pytest.raises(
        ValueError, match=rf"{samples} samples is shorter than one hop \(320 samples = 20 ms\)"
    ):
        codec.encode(torch.zeros(2, samples))


def test_declared_sample_rate_other_than_codec_rate_raises_value_error():
    codec = make_codec().eval()
    with pytest.raises(ValueError, match="declared sample rate 8000 Hz.*expects 16000 Hz"):
        codec.encode(torch.randn(1, 160), sample_rate=8000)
    with pytest.raises(ValueError, match="declared sample rate 44100"):
        codec.embed(torch.randn(1, 160), sample_rate=44100)
    tokens, _ = codec.encode(torch.randn(1, 160) * 0.1, sample_rate=16000)
    assert tokens.shape == (1, 10, 3)


def test_non_tensor_input_raises_value_error():
    with pytest.raises(ValueError, match="expected a torch.Tensor"):
        make_codec().encode([[0.0] * 100])


def test_float64_waveform_is_cast_to_the_model_dtype():
    codec = make_codec().eval()
    wav = torch.randn(2, 100) * 0.1
    with torch.no_grad():
        tokens64, _ = codec.encode(wav.double())
        tokens32, _ = codec.encode(wav)
    assert torch.equal(tokens64, tokens32)


def test_integer_waveform_raises_value_error():
    with pytest.raises(ValueError, match="floating-point waveform.*int16"):
        make_codec().eval().encode((torch.randn(2, 100) * 1000).to(torch.int16))


def test_empty_batch_raises_value_error():
    with pytest.raises(ValueError, match="batch"):
        make_codec().eval().encode(torch.zeros(0, 100))


@pytest.mark.parametrize("codebook", [0, 2])
def test_decode_rejects_tokens_outside_the_vocabulary(codebook):
    codec = make_codec().eval()
    tokens = torch.zeros(1, 3, 3, dtype=torch.long)
    tokens[..., codebook] = 16  # vocab_size
    with pytest.raises(ValueError, match="vocab"):
        codec.decode(tokens)


def test_decode_rejects_bad_tokens():
    codec = make_codec().eval()
    with pytest.raises(
        ValueError, match=r"expected \[batch, frames, K\] with 1 <= K <= num_codebooks=3"
    ):
        codec.decode(torch.zeros(2, 5, 4, dtype=torch.long))
    with pytest.raises(ValueError, match=r"expected \[batch, frames, K\]"):
        codec.decode(torch.zeros(2, 5, dtype=torch.long))
    with pytest.raises(ValueError, match="integer tensor"):
        codec.decode(torch.zeros(2, 5, 3))


# ------------------------------------------------------------------------ gradients


def test_training_step_sends_gradients_to_every_part():
    """Mel + commitment + DSL loss reach mask, switch, both tails, the encoder output
    fed to the RVQ, and the decoder (codebooks are EMA-updated buffers)."""
    hp = load_hparams(codebook_size=32, num_quantizers=4, segment_frames=10)
    codec = hp["codec"].train()
    quantizer_inputs = []

    def keep_input(module, args):
        args[0].retain_grad()
        quantizer_inputs.append(args[0])

    codec.quantizer.register_forward_pre_hook(keep_input)
    wav = torch.randn(2, 1, 320 * 20) * 0.1
    lengths = torch.tensor([1.0, 0.75])
    out = codec(wav, lengths)
    out.dsl.light_features.retain_grad()
    terms = DSLLoss(alpha=1e-2, beta=1.0)(out.dsl)
    loss = MultiScaleMelLoss(16000, n_ffts=(256, 512, 1024))(out.wav_hat, wav)
    loss = loss + out.commitment + terms["loss"]
    loss.backward()

    def has_grad(module):
        grads = [p.grad for p in module.parameters()]
        return bool(grads) and any(g is not None and g.abs().sum() > 0 for g in grads)

    dsl = codec.encoder.dsl
    assert dsl.mask.weight.grad is not None and bool((dsl.mask.weight.grad != 0).all())
    assert has_grad(dsl.switch)
    assert has_grad(codec.encoder.base)
    assert has_grad(codec.decoder)
    assert out.dsl.light_features.grad is not None and out.dsl.light_features.grad.abs().sum() > 0
    for name, tail in (("full", dsl.full_tail), ("light", dsl.light_tail)):
        missing = [n for n, p in tail.named_parameters() if p.grad is None or not p.grad.any()]
        assert not missing, f"{name} tail parameters without gradient: {missing}"
    (emb,) = quantizer_inputs
    assert emb.shape == (2, 20, 64)
    assert emb.grad is not None and emb.grad.abs().sum() > 0
    assert not codec.vocabulary.requires_grad


# ----------------------------------------------------------------------------- YAML


def test_dsl_yaml_instantiates_the_documented_model():
    hp = load_hparams()
    codec = hp["codec"]
    assert isinstance(codec, DSLCodec) and codec.has_dsl
    assert isinstance(hp["encoder"], DSLEncoder) and codec.encoder is hp["encoder"]
    assert isinstance(codec.quantizer, ResidualVectorQuantizer)
    assert isinstance(codec.decoder, VocosDecoder)  # the paper's: decoder_type=soundstream
    assert codec.decoder.hop == codec.hop_length
    assert isinstance(load_hparams(decoder_type="soundstream")["codec"].decoder, SoundStreamDecoder)
    assert (codec.sample_rate, codec.hop_length) == (16000, 320)
    assert (codec.num_codebooks, codec.vocab_size) == (8, 1024)
    dsl = hp["encoder"].dsl
    assert isinstance(dsl, DynamicSwitchLayer)
    assert (dsl.segment_frames, dsl.mode, dsl.distance_name) == (50, "mixed", "mae")
    assert dsl.threshold == 0.5
    assert isinstance(dsl.mask, Mask) and isinstance(dsl.switch, Switch)
    assert dsl.light_tail is hp["light_tail"]
    # The DSL follows the first conv; the full tail is the rest of
    # soundstream_encoder (shared modules).
    assert hp["encoder"].split_after == 0
    assert dsl.full_tail[0] is hp["soundstream_encoder"].stages[1]
    assert dsl.hop == 320 and hp["encoder"].base.hop == 1


def test_baseline_yaml_instantiates_the_same_encoder_without_dsl():
    base = load_hparams(BASELINE_YAML)
    dsl = load_hparams()
    codec = base["codec"]
    assert isinstance(codec, DSLCodec) and not codec.has_dsl
    assert isinstance(codec.encoder, SoundStreamEncoder)
    assert codec.mode == "full"
    n = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    assert n(codec.encoder) == n(dsl["soundstream_encoder"])
    assert n(codec.decoder) == n(dsl["decoder"])
    assert (codec.num_codebooks, codec.vocab_size, codec.hop_length) == (8, 1024, 320)


def test_yaml_overrides_reach_the_model():
    hp = load_hparams(mode="light", threshold=0.1, segment_frames=25, num_quantizers=2)
    assert hp["codec"].mode == "light"
    assert hp["codec"].threshold == pytest.approx(0.1)
    assert hp["encoder"].dsl.segment_frames == 25
    assert hp["codec"].num_codebooks == 2


INLINE_YAML = """
base_channels: 8
full: !new:speechbrain_dsl.lobes.soundstream.SoundStreamEncoder
    channels: 4
    multipliers: [2, 4]
    strides: [2, 4]
    emb_dim: 8
encoder: !new:speechbrain_dsl.lobes.dsl_encoder.DSLEncoder
    encoder: !ref <full>
    light_tail: !new:speechbrain_dsl.lobes.soundstream.SoundStreamEncoder
        in_channels: !ref <base_channels>
        channels: 2
        multipliers: [1]
        strides: [4]
        emb_dim: 8
    switch: !new:speechbrain_dsl.nnet.dsl.Switch
        in_channels: !ref <base_channels>
        hidden: 4
    mask: !new:speechbrain_dsl.nnet.dsl.Mask
        channels: !ref <base_channels>
    split_after: 1
    segment_frames: 5
    mode: light
    threshold: 0.3
"""


def test_inline_yaml_builds_a_working_dsl_encoder():
    hp = load_hyperpyyaml(INLINE_YAML)
    enc = hp["encoder"]
    assert isinstance(enc, DSLEncoder)
    assert (enc.dsl.mode, enc.dsl.segment_frames) == ("light", 5)
    assert enc.dsl.threshold == pytest.approx(0.3)
    assert enc.hop == 8 and enc.emb_dim == 8
    out = enc.eval()(torch.randn(2, 1, 8 * 12))
    assert out.features.shape == (2, 8, 12) and bool(out.route.all())


def test_inline_yaml_with_mismatched_light_tail_raises_value_error():
    bad = INLINE_YAML.replace("in_channels: !ref <base_channels>", "in_channels: 3", 1)
    with pytest.raises(ValueError, match="light_tail takes 3 input channels"):
        load_hyperpyyaml(bad)


def test_dsl_yaml_full_pass_computes_the_baseline_yamls_encoder_with_its_weights():
    """The two YAMLs share one encoder: the baseline's weights, renamed, give the DSL
    model's full pass exactly the baseline's output (what the retrofit recipe starts from)."""
    torch.manual_seed(0)
    base = load_hparams(BASELINE_YAML)["codec"].eval()
    torch.manual_seed(1)
    dsl = load_hparams(DSL_YAML)["codec"].eval()
    state = baseline_to_dsl_state(base.state_dict(), split_after=dsl.encoder.split_after)
    missing, unexpected = dsl.load_state_dict(state, strict=False)
    assert not unexpected
    dsl_only = ("encoder.dsl.mask.", "encoder.dsl.switch.", "encoder.dsl.light_tail.")
    missing = set(missing) - {"encoder.dsl.calibrated_threshold"}
    assert missing and all(k.startswith(dsl_only) for k in missing), missing
    wav = torch.randn(2, 1, 8000) * 0.1
    with torch.no_grad():
        expected, _ = base.encode_features(wav)
        full, _ = dsl.encode_features(wav, mode="full")
        light, _ = dsl.encode_features(wav, mode="light")
        decoded = (dsl.decoder(full), base.decoder(expected))
    assert full.shape == expected.shape == (2, 64, 25)  # emb_dim 64, hop 320
    torch.testing.assert_close(full, expected, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(*decoded, rtol=1e-5, atol=1e-6)
    assert (full - light).abs().mean() > 0.1 * full.abs().mean()  # the light tail is another net


def test_input_scale_is_applied_to_the_encoder_input_and_undone_at_the_output():
    scaled, plain = make_codec(), make_codec()
    scaled.input_scale = 10.0
    wav = torch.randn(2, 160) * 0.05
    scaled(wav)  # k-means initialises the codebooks on the first training batch
    plain.load_state_dict(scaled.state_dict())
    scaled.eval(), plain.eval()
    with torch.no_grad():
        tokens_scaled, _ = scaled.eval().encode(wav)
        tokens_plain, _ = plain.eval().encode(wav * 10.0)
        assert torch.equal(tokens_scaled, tokens_plain)
        torch.testing.assert_close(scaled.decode(tokens_scaled), plain.decode(tokens_plain) / 10.0)
        torch.testing.assert_close(scaled(wav).wav_hat, plain(wav * 10.0).wav_hat / 10.0)


def test_tokenizer_calls_on_a_codec_in_training_mode_behave_as_in_eval():
    """encode/decode must not drop quantizers, update codebooks or ignore the mode."""
    codec = make_codec()
    wav = torch.randn(2, 320) * 0.1
    with torch.no_grad():
        codec.eval().encode(wav)  # k-means initialises every codebook on first use
    codec.train()
    before = codec.vocabulary.clone()
    with torch.no_grad():
        tokens, _ = codec.encode(wav)
        codec.mode = "light"
        light = codec.embed(wav)
        codec.mode = "full"
        full = codec.embed(wav)
        codec.decode(tokens)
    assert codec.training  # the caller's mode is restored
    assert int(tokens.min()) >= 0
    assert torch.equal(codec.vocabulary, before)
    assert not torch.allclose(light, full)


def test_predict_distances_matches_the_mixed_pass_without_running_a_tail():
    codec = make_codec().eval()
    wav = torch.randn(3, 16 * 20) * 0.1
    calls = []
    hook = codec.encoder.dsl.full_tail.register_forward_pre_hook(lambda *a: calls.append(1))
    hook2 = codec.encoder.dsl.light_tail.register_forward_pre_hook(lambda *a: calls.append(1))
    with torch.no_grad():
        predicted = codec.predict_distances(wav)
        hook.remove(), hook2.remove()
        encoded = codec.encode_with_routing(wav, mode="mixed")
    assert not calls
    torch.testing.assert_close(predicted, encoded.routing.predicted)


def test_routing_comes_back_with_each_call_and_scopes_leave_the_defaults_alone():
    codec = make_codec().eval()
    wav = torch.randn(2, 1000) * 0.1
    wav[1, 300:] *= 0.01
    with torch.no_grad():
        codec.encode(wav)  # initialise the codebooks
        predicted = codec.predict_distances(wav)
        threshold = float(predicted.median())
        mixed = codec.encode_with_routing(wav, mode="mixed", threshold=threshold)
        light = codec.encode_with_routing(wav, mode="light")
        full = codec.encode_with_routing(wav, mode="full")
    assert (mixed.routing.mode, mixed.routing.threshold) == ("mixed", threshold)
    assert torch.equal(mixed.routing.route, predicted < threshold)
    torch.testing.assert_close(mixed.routing.predicted, predicted)
    assert light.routing.light_share == 1.0 and full.routing.light_share == 0.0
    assert full.routing.predicted is None  # the switch does not run in full mode
    defaults = (codec.mode, codec.threshold)
    with torch.no_grad(), codec.routing(mode="light") as outer:
        # a recipe's tokenizer call, which cannot pass a mode, follows the model's scope
        assert torch.equal(DSLTokenizer(codec).sig_to_tokens(wav), light.tokens)
        with codec.routing(mode="mixed", threshold=threshold) as inner:
            assert torch.equal(codec.encode(wav)[0], mixed.tokens)
        assert torch.equal(codec.embed(wav, mode="full"), full.emb)  # a call's own mode wins
    assert [r.mode for r in outer] == ["light", "full"] and [r.mode for r in inner] == ["mixed"]
    assert (codec.mode, codec.threshold) == defaults
    with pytest.raises(ValueError, match="mode must be one of"):
        with codec.routing(mode="fast"):
            pass
    assert not codec._scopes  # a refused scope leaves nothing open


def test_a_codec_without_dsl_routes_everything_full_and_refuses_other_modes():
    codec = make_codec(dsl=False).eval()
    wav = torch.randn(2, 1000) * 0.1
    out = codec.encode_with_routing(wav, torch.tensor([1.0, 0.5]))
    assert out.routing.mode == "full" and out.routing.light_share == 0.0
    assert out.routing.segment_mask.tolist() == [[True], [True]]
    with pytest.raises(ValueError, match="routing needs a DSL encoder"):
        codec.encode(wav, mode="mixed")
