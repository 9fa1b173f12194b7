"""The parts of the new codec recipe: decoder, losses, discriminator, codebooks, gain, retrofit."""

import torch
from conftest import ROOT
from hyperpyyaml import load_hyperpyyaml

from speechbrain_dsl.lobes.discriminators import MultiResolutionSTFTDiscriminator
from speechbrain_dsl.lobes.vocos import ISTFTHead, VocosDecoder
from speechbrain_dsl.nnet.augment import RandomGain
from speechbrain_dsl.nnet.losses import GANLoss, MultiResolutionSTFTLoss
from speechbrain_dsl.nnet.quantizer import ResidualVectorQuantizer
from speechbrain_dsl.training.retrofit import init_codec_from


def test_istft_head_inverts_an_aligned_stft_exactly():
    head = ISTFTHead(4, n_fft=64, hop_length=16)
    signal = torch.randn(2, 16 * 40)
    # Frame t's window starts lookahead samples before t * hop: pad both ends.
    padded = torch.nn.functional.pad(signal, (head.lookahead, head.lookahead))
    spec = torch.stft(padded, 64, 16, window=head.window, center=False, return_complex=True)
    rebuilt = head.istft(spec)[:, 0]
    assert rebuilt.shape == signal.shape
    # The edges lack the overlap of neighbouring frames; the interior is exact.
    assert torch.allclose(rebuilt[:, 64:-64], signal[:, 64:-64], atol=1e-5)


def test_vocos_decoder_is_causal_up_to_its_stated_lookahead():
    dec = VocosDecoder(
        emb_dim=8, dim=16, intermediate_dim=32, num_blocks=2, n_fft=64, hop_length=16
    ).eval()
    emb = torch.randn(1, 8, 20)
    changed = emb.clone()
    changed[..., 12:] += 1.0
    with torch.no_grad():
        diff = (dec(emb) - dec(changed)).abs()[0, 0]
    first = int((diff > 1e-6).nonzero()[0])
    earliest_allowed = 12 * 16 - dec.head.lookahead
    assert earliest_allowed <= first < 12 * 16


def test_default_decoder_size_and_cost_match_the_design():
    with open(ROOT / "hparams" / "soundstream_baseline.yaml") as f:
        codec = load_hyperpyyaml(f)["codec"]
    assert isinstance(codec.decoder, VocosDecoder)
    params = sum(p.numel() for p in codec.decoder.parameters())
    assert 3.0e6 < params < 4.0e6
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        codec.decoder(torch.randn(1, 64, 50))
    assert counter.get_total_flops() / 2 < 0.25e9  # MACs per second of audio


def test_the_paper_decoder_is_still_one_yaml_key_away():
    with open(ROOT / "hparams" / "soundstream_baseline.yaml") as f:
        codec = load_hyperpyyaml(f, {"decoder_type": "soundstream"})["codec"]
    assert type(codec.decoder).__name__ == "SoundStreamDecoder"


def test_stft_loss_sees_harmonic_detail_at_any_level():
    t = torch.arange(16000) / 16000
    voice = sum(torch.sin(2 * torch.pi * 120 * k * t) / k for k in range(1, 20))[None]
    smeared = voice + 0.3 * torch.randn_like(voice) * voice.abs().mean()
    loss = MultiResolutionSTFTLoss()
    assert float(loss(voice, voice)) == 0.0
    quiet, loud = loss(0.01 * smeared, 0.01 * voice), loss(smeared, voice)
    assert float(loud) > 0.1
    # Only eps (1e-5 under the magnitudes) breaks exact invariance, in near-empty bins.
    assert abs(float(quiet) - float(loud)) < 0.2 * float(loud)


def test_gan_loss_gives_the_generator_gradient_and_the_discriminator_none():
    gan = GANLoss(MultiResolutionSTFTDiscriminator(n_ffts=(128, 256), channels=4))
    real = torch.randn(2, 1, 4000)
    fake = torch.randn(2, 1, 4000, requires_grad=True)
    adversarial, feature = gan.generator_loss(fake, real)
    (adversarial + feature).backward()
    assert fake.grad is not None and fake.grad.abs().sum() > 0
    assert all(p.grad is None for p in gan.discriminator.parameters())
    loss_d = gan.discriminator_loss(fake, real)
    fake.grad = None
    loss_d.backward()
    assert fake.grad is None  # detached
    assert all(p.grad is not None for p in gan.discriminator.parameters())


def test_discriminator_costs_far_less_than_soundstreams():
    from torch.utils.flop_counter import FlopCounterMode

    from speechbrain_dsl.lobes.discriminators import SoundStreamDiscriminator

    def macs(disc):
        with FlopCounterMode(display=False) as counter:
            disc(torch.randn(1, 1, 16000))
        return counter.get_total_flops() / 2

    assert (
        macs(MultiResolutionSTFTDiscriminator())
        < macs(SoundStreamDiscriminator(3, 16, 256, 1024, 256, 16)) / 10
    )


def test_random_gain_covers_the_range_and_never_clips():
    torch.manual_seed(0)
    gain = RandomGain(-45.0, -3.0)
    wav = 0.05 * torch.randn(200, 1, 1600)
    out = gain(wav)
    level = 10 * torch.log10(out.square().mean(-1))
    assert out.abs().max() <= 0.99 + 1e-6
    assert float(level.min()) < -40 and float(level.max()) > -10
    silent = gain(torch.zeros(2, 1, 1600))
    assert torch.equal(silent, torch.zeros(2, 1, 1600))


def _train_steps(rvq, data, steps):
    replaced, tokens = [], []
    for _ in range(steps):
        rvq.train()
        rvq(data)
        replaced.append(rvq.replaced_codes)
        rvq.eval()
        with torch.no_grad():
            tokens.append(rvq(data[:1])[1])
    return replaced, tokens


def test_relative_dead_code_rule_keeps_codebooks_after_warm_up():
    torch.manual_seed(0)
    # Fewer frames per batch than codes, as in the recipe (800 frames, 1024 codes).
    data = torch.randn(4, 50, 8) @ torch.randn(8, 8)
    absolute = ResidualVectorQuantizer(
        dim=8, num_quantizers=2, codebook_size=256, threshold_ema_dead_code=2
    )
    relative = ResidualVectorQuantizer(
        dim=8, num_quantizers=2, codebook_size=256, threshold_ema_dead_code=2, dead_code_usage=0.1
    )
    replaced_abs, _ = _train_steps(absolute, data, 40)
    replaced_rel, tokens = _train_steps(relative, data, 40)
    codes = 2 * 256
    # The absolute rule of 2 re-samples most codes every step, forever.
    assert min(replaced_abs[20:]) > 0.3 * codes
    # The relative rule: after warm-up, under 1% of codes per step ...
    assert max(replaced_rel[20:]) < 0.01 * codes
    # ... and the tokens of a fixed clip stay put from step to step.
    changed = [float((a != b).float().mean()) for a, b in zip(tokens[30:], tokens[31:])]
    assert max(changed) < 0.1


def _codecs():
    with open(ROOT / "hparams" / "soundstream_baseline.yaml") as f:
        baseline = load_hyperpyyaml(f)["codec"]
    with open(ROOT / "hparams" / "soundstream_dsl.yaml") as f:
        dsl = load_hyperpyyaml(f)["codec"]
    return baseline, dsl


def test_retrofit_right_after_insertion_full_pass_equals_the_baseline(tmp_path):
    torch.manual_seed(0)
    baseline, dsl = _codecs()
    with torch.no_grad():  # a "trained" baseline: not the DSL codec's own init
        for p in baseline.parameters():
            p.add_(0.01 * torch.randn_like(p))
        for name, buffer in baseline.quantizer.named_buffers():  # codebooks as if k-means ran
            if name.endswith("embed"):
                buffer.normal_()
            elif name.endswith("initted"):
                buffer.fill_(True)
    torch.save(baseline.state_dict(), tmp_path / "codec.ckpt")
    fresh = init_codec_from(dsl, tmp_path)
    assert fresh and all(k.startswith("encoder.dsl.") for k in fresh)
    wav = 0.1 * torch.randn(2, 16000)
    dsl.eval().mode = "full"
    baseline.eval()
    with torch.no_grad():
        assert torch.equal(dsl.encode(wav)[0], baseline.encode(wav)[0])
        assert torch.equal(dsl.embed(wav), baseline.embed(wav))
        assert torch.equal(dsl(wav).wav_hat, baseline(wav).wav_hat)


def test_init_from_refuses_weights_that_do_not_fit(tmp_path):
    baseline, dsl = _codecs()
    state = baseline.state_dict()
    state["decoder.head.proj.weight"] = state["decoder.head.proj.weight"][:10]
    torch.save(state, tmp_path / "codec.ckpt")
    import pytest

    with pytest.raises(ValueError, match="decoder.head.proj.weight: shape"):
        init_codec_from(baseline, tmp_path)
    torch.save({}, tmp_path / "codec.ckpt")
    with pytest.raises(ValueError, match="holds no state dict"):
        init_codec_from(baseline, tmp_path)
    with pytest.raises(ValueError, match="no codec weights"):
        init_codec_from(baseline, tmp_path / "nowhere")
    good = baseline.state_dict()
    good["decoder.embed.bias"] = torch.full_like(good["decoder.embed.bias"], float("nan"))
    torch.save(good, tmp_path / "codec.ckpt")
    with pytest.raises(ValueError, match="non-finite"):
        init_codec_from(baseline, tmp_path)


def test_istft_head_can_reach_the_level_of_loud_speech():
    # A full-scale sine at the codec's input scale (x10) must be representable:
    # the clamp on the log-magnitude must not cap it (it would also zero its gradient).
    head = ISTFTHead(4, n_fft=1280, hop_length=320)
    t = torch.arange(320 * 40) / 16000
    loud = 10 * torch.sin(2 * torch.pi * 440 * t)[None]
    padded = torch.nn.functional.pad(loud, (head.lookahead, head.lookahead))
    spec = torch.stft(padded, 1280, 320, window=head.window, center=False, return_complex=True)
    assert float(spec.abs().max().log()) < head.max_log_magnitude


def test_debug_under_torchrun_is_refused_with_a_reason():
    import os
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    recipe = root / "recipes" / "LibriTTS" / "codec"
    result = subprocess.run(
        [sys.executable, "train.py", "hparams/codec_dsl.yaml", "--debug"],
        cwd=recipe,
        env=dict(os.environ, WORLD_SIZE="2", RANK="1", LOCAL_RANK="1", OMP_NUM_THREADS="1"),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode != 0
    assert "--debug runs in one process" in result.stderr
