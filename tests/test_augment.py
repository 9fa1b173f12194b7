"""Training augmentation: speed, simulated rooms and noise keep shapes, lengths and levels."""

import pytest
import torch

from speechbrain_dsl.nnet.augment import RoomsAndNoise, pink_noise, room_impulse_responses


def speech_like(samples=16000, seed=0):
    gen = torch.Generator().manual_seed(seed)
    t = torch.arange(samples) / 16000
    envelope = (torch.sin(2 * torch.pi * 3 * t) > 0).float()  # 3 syllables a second
    return 0.1 * envelope * torch.randn(samples, generator=gen)


def rms(x, valid):
    return float((x[:valid].square().mean()).sqrt())


def test_rooms_reverberate_and_keep_each_utterances_level():
    torch.manual_seed(0)
    augment = RoomsAndNoise(speeds=(100,), rooms=4, reverb_prob=1.0, noise_prob=0.0)
    wav = torch.stack([speech_like(seed=0), 0.1 * speech_like(seed=1)])[:, None]
    out, lengths = augment(wav.clone(), torch.ones(2))
    assert out.shape == wav.shape and torch.equal(lengths, torch.ones(2))
    for b in range(2):
        assert rms(out[b, 0], 16000) == pytest.approx(rms(wav[b, 0], 16000), rel=1e-3)
        # the room fills the gaps between syllables: energy where the dry signal had none
        gaps = wav[b, 0] == 0
        assert out[b, 0][gaps].square().mean() > 1e-3 * out[b, 0].square().mean()


def test_noise_is_mixed_at_the_drawn_snr():
    torch.manual_seed(0)
    augment = RoomsAndNoise(speeds=(100,), rooms=0, noise_prob=1.0, snr_db=(20.0, 20.0))
    wav = speech_like()[None, None]
    out, _ = augment(wav.clone(), torch.ones(1))
    noise = out - wav
    snr = 20 * torch.log10(wav.square().mean().sqrt() / noise.square().mean().sqrt())
    assert float(snr) == pytest.approx(20.0, abs=0.01)


def test_speed_changes_lengths_and_never_adds_audio_past_them():
    torch.manual_seed(0)
    fast = RoomsAndNoise(speeds=(110,), rooms=0, noise_prob=0.0)
    wav = speech_like()[None, None].repeat(2, 1, 1)
    wav[1, :, 8000:] = 0  # padding of a shorter utterance
    out, lengths = fast(wav.clone(), torch.tensor([1.0, 0.5]))
    assert lengths.tolist() == pytest.approx([1 / 1.1, 0.5 / 1.1], abs=1e-3)
    assert float(out[0, 0, 14546:].abs().max()) == 0.0  # 16000 / 1.1 samples of audio
    assert float(out[1, 0, 7273:].abs().max()) == 0.0  # nor of the shorter one


def test_room_bank_is_seeded_and_starts_at_the_direct_path():
    first, again, other = (room_impulse_responses(3, seed=s) for s in (5, 5, 6))
    assert all(torch.equal(a, b) for a, b in zip(first, again))
    assert not torch.equal(first[0], other[0])
    assert all(int(r.abs().argmax()) == 0 and 800 < r.numel() < 16000 for r in first)


def test_pink_noise_has_more_power_at_low_frequencies():
    power = torch.fft.rfft(pink_noise(64000)).abs().square()
    low, high = power[100:1000].mean(), power[10000:20000].mean()
    assert 10 < float(low / high) < 40  # 1/f: ~15x between these bands


def test_bad_probabilities_are_refused():
    with pytest.raises(ValueError, match="reverb_prob must be in"):
        RoomsAndNoise(reverb_prob=1.5, rooms=0)
