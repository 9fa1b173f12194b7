"""Codec reconstruction and adversarial losses."""

import pytest
import torch

from speechbrain_dsl.nnet.losses import (
    MultiScaleMelLoss,
    discriminator_adversarial_loss,
    feature_matching_loss,
    generator_adversarial_loss,
)


def test_mel_loss_is_zero_for_identical_audio_and_positive_otherwise():
    loss = MultiScaleMelLoss(16000, n_ffts=(64, 256))
    x = torch.randn(2, 1, 2000)
    assert float(loss(x, x)) == 0.0
    assert float(loss(x + 0.1 * torch.randn_like(x), x)) > 0
    # [B, S] and [B, 1, S] give the same value
    y = torch.randn(2, 1, 2000)
    assert float(loss(y, x)) == pytest.approx(float(loss(y.squeeze(1), x.squeeze(1))))


def test_mel_loss_caps_mel_bands_for_small_windows():
    loss = MultiScaleMelLoss(16000, n_ffts=(64, 2048), n_mels=64)
    assert [m.mel_scale.n_mels for m in loss.mels] == [8, 64]


def test_mel_loss_keeps_a_gradient_for_quiet_output():
    loss = MultiScaleMelLoss(16000, n_ffts=(128, 512))
    target = torch.randn(1, 1, 4000)
    quiet = (1e-4 * torch.randn(1, 1, 4000)).requires_grad_()
    loss(quiet, target).backward()
    assert bool(torch.isfinite(quiet.grad).all())
    assert float(quiet.grad.abs().sum()) > 0


def test_generator_adversarial_loss_is_hinge_averaged_over_discriminators():
    scores = [torch.tensor([0.5, 2.0]), torch.tensor([-1.0])]
    # relu(1 - s): [0.5, 0] -> 0.25 ; [2] -> 2 ; mean over discriminators
    assert float(generator_adversarial_loss(scores)) == pytest.approx((0.25 + 2.0) / 2)


def test_discriminator_adversarial_loss_is_hinge_averaged_over_discriminators():
    fake = [torch.tensor([0.5, -2.0]), torch.tensor([0.0])]
    real = [torch.tensor([2.0, 0.0]), torch.tensor([0.5])]
    # disc 1: real relu(1 - r) = [0, 1] -> 0.5 ; fake relu(1 + f) = [1.5, 0] -> 0.75
    # disc 2: real 0.5 ; fake 1.0
    expected = ((0.5 + 0.75) + (0.5 + 1.0)) / 2
    assert float(discriminator_adversarial_loss(fake, real)) == pytest.approx(expected)


def test_feature_matching_loss_does_not_train_through_real_features():
    fake = [
        [torch.tensor([1.0, 2.0], requires_grad=True)],
        [torch.tensor([0.0], requires_grad=True)],
    ]
    real = [
        [torch.tensor([0.0, 0.0], requires_grad=True)],
        [torch.tensor([3.0], requires_grad=True)],
    ]
    loss = feature_matching_loss(fake, real)
    assert float(loss.detach()) == pytest.approx((1.5 + 3.0) / 2)
    loss.backward()
    assert fake[0][0].grad is not None and fake[1][0].grad is not None
    assert real[0][0].grad is None and real[1][0].grad is None
