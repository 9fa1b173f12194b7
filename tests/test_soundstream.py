"""SoundStream encoder / decoder: shapes for any length, and causality."""

import math

import pytest
import torch
from conftest import TINY_HOP, make_decoder, make_encoder

from speechbrain_dsl.lobes.discriminators import SoundStreamDiscriminator
from speechbrain_dsl.lobes.soundstream import SoundStreamDecoder, SoundStreamEncoder


@pytest.mark.parametrize("samples", [16, 17, 100, 160, 161, 333])
def test_encoder_gives_ceil_samples_over_hop_frames(samples):
    enc = make_encoder()
    assert enc.hop == TINY_HOP
    out = enc(torch.randn(2, 1, samples))
    assert out.shape == (2, 8, math.ceil(samples / TINY_HOP))


@pytest.mark.parametrize("samples", [320, 321, 1000, 16000, 16319])
def test_default_encoder_and_decoder_shapes_for_lengths_off_the_hop(default_hparams, samples):
    enc = default_hparams["soundstream_encoder"]
    dec = default_hparams["decoder"]
    assert enc.hop == 320
    with torch.no_grad():
        emb = enc(torch.randn(2, 1, samples))
        frames = math.ceil(samples / 320)
        assert emb.shape == (2, 64, frames)
        assert dec(emb).shape == (2, 1, frames * 320)


@pytest.mark.parametrize("frames", [1, 2, 5])
def test_decoder_gives_frames_times_hop_samples(frames):
    dec = make_decoder()
    assert dec(torch.randn(3, 8, frames)).shape == (3, 1, frames * TINY_HOP)


def assert_prefix_causal(fn, x, cut, keep, dim=-1):
    """Changing ``x[..., cut:]`` leaves ``fn(x)[..., :keep]`` bit-identical, and
    changes something after it (so the check can fail)."""
    with torch.no_grad():
        y = fn(x)
        x2 = x.clone()
        x2[..., cut:] = torch.randn_like(x2[..., cut:]) * 3
        y2 = fn(x2)
    assert torch.equal(y[..., :keep], y2[..., :keep]), "output depends on the future"
    assert not torch.allclose(y[..., keep:], y2[..., keep:]), "perturbation had no effect"


@pytest.mark.parametrize("cut", [1, 15, 16, 50, 95])
def test_encoder_frame_depends_only_on_samples_before_its_hop_end(cut):
    """Frame ``t`` uses samples ``< (t + 1) * hop``: frames ``t < cut // hop`` are
    unchanged by changes at or after sample ``cut``."""
    enc = make_encoder()
    x = torch.randn(2, 1, 160)
    assert_prefix_causal(enc, x, cut, keep=cut // TINY_HOP)


def test_default_encoder_is_causal(default_hparams):
    enc = default_hparams["soundstream_encoder"]
    x = torch.randn(1, 1, 320 * 12)
    for cut in (320 * 5, 320 * 5 + 17, 320 * 9 - 1):
        assert_prefix_causal(enc, x, cut, keep=cut // 320)


@pytest.mark.parametrize("cut", [1, 2, 4])
def test_decoder_sample_depends_only_on_frames_up_to_sample_over_hop(cut):
    """Output sample ``n`` uses frames ``<= n // hop``: changing frames ``>= cut``
    leaves samples ``< cut * hop`` unchanged."""
    dec = make_decoder()
    emb = torch.randn(2, 8, 6)
    assert_prefix_causal(dec, emb, cut, keep=cut * TINY_HOP)


def test_decoder_sample_depends_on_its_own_frame():
    """The dependency bound is tight: sample ``n`` does depend on frame ``n // hop``."""
    dec = make_decoder().double()
    emb = torch.randn(1, 8, 4, dtype=torch.float64, requires_grad=True)
    y = dec(emb)
    for n in (0, 15, 16, 40, 63):
        (grad,) = torch.autograd.grad(y[0, 0, n], emb, retain_graph=True)
        used = torch.nonzero(grad[0].abs().sum(0) > 0).flatten().tolist()
        assert max(used) == n // TINY_HOP


def test_default_decoder_looks_ahead_only_its_stated_lookahead(default_hparams):
    dec = default_hparams["decoder"]  # frame-rate convs are causal; the inverse STFT looks ahead
    emb = torch.randn(1, 64, 6)
    assert_prefix_causal(dec, emb, 3, keep=3 * 320 - dec.head.lookahead)


def test_soundstream_decoder_is_causal():
    from conftest import load_hparams

    dec = load_hparams(decoder_type="soundstream")["decoder"]
    emb = torch.randn(1, 64, 6)
    assert_prefix_causal(dec, emb, 3, keep=3 * 320)


def test_discriminator_scores_every_scale():
    disc = SoundStreamDiscriminator(
        num_scales=2,
        wave_channels=4,
        wave_max_channels=8,
        stft_n_fft=128,
        stft_hop_length=32,
        stft_channels=2,
    )
    scores, feats = disc(torch.randn(2, 1, 800))
    assert len(scores) == len(feats) == 3
    assert all(s.shape[0] == 2 for s in scores)


def test_decoder_mirrors_encoder_channel_widths():
    dec = SoundStreamDecoder(emb_dim=6, channels=3, multipliers=(2, 5), strides=(2, 3))
    enc = SoundStreamEncoder(channels=3, multipliers=(2, 5), strides=(2, 3), emb_dim=6)
    emb = enc(torch.randn(1, 1, 60))
    assert emb.shape == (1, 6, 10)
    assert dec(emb).shape == (1, 1, 60)
    assert dec.layers[0].out_channels == 15  # channels * multipliers[-1]
