"""Averaged weights: what validation, test, packages and loaders of a checkpoint use."""

import pytest
import torch
from speechbrain.utils.checkpoints import Checkpointer

from speechbrain_dsl.training.checkpoints import load_state_strict
from speechbrain_dsl.training.weight_average import (
    AVERAGE_FILE,
    RECOVERABLE,
    WeightAverage,
    averaged_state,
)


class Tiny(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.layer = torch.nn.Linear(2, 2)
        self.register_buffer("codebook", torch.zeros(3))


def _train(model, average, values):
    for value in values:
        with torch.no_grad():
            for p in model.parameters():
                p.fill_(value)
            model.codebook.fill_(value)
        average.update()


def test_the_average_follows_the_ema_rule_and_leaves_the_live_weights_alone():
    model = Tiny()
    average = WeightAverage(model, decay=0.9)
    with torch.no_grad():
        model.layer.weight.fill_(5.0)  # trained (or recovered) after the average was made
    with average.applied():  # no update yet: the live weights, not the copy made at start
        assert torch.equal(model.layer.weight, torch.full((2, 2), 5.0))
    _train(model, average, [1.0, 2.0, 4.0])
    expected = (0.9 * 1.0 + 0.1 * 2.0) * 0.9 + 0.1 * 4.0  # starts at the first live weights
    with average.applied():
        assert torch.allclose(model.layer.weight, torch.full((2, 2), expected))
        assert torch.equal(model.codebook, torch.full((3,), 4.0))  # buffers stay live
        with pytest.raises(RuntimeError, match="applied"):
            average.update()
    assert torch.equal(model.layer.weight, torch.full((2, 2), 4.0))


def test_checkpoint_round_trip_and_an_older_checkpoint_without_an_average(tmp_path):
    model = Tiny()
    average = WeightAverage(model, decay=0.5)
    _train(model, average, [1.0, 3.0])
    old = Checkpointer(tmp_path / "old", {"codec": model})
    old.save_checkpoint()  # made before averaging existed
    new = Checkpointer(tmp_path / "new", {"codec": model, RECOVERABLE: average})
    saved = new.save_checkpoint()
    assert (saved.path / AVERAGE_FILE).is_file()

    fresh_model = Tiny()
    fresh = WeightAverage(fresh_model, decay=0.5)
    loader = Checkpointer(tmp_path / "new", {"codec": fresh_model})
    loader.add_recoverable(RECOVERABLE, fresh, optional_load=True)
    loader.recover_if_possible()
    assert fresh.steps == 2
    with fresh.applied():
        assert torch.allclose(fresh_model.layer.weight, torch.full((2, 2), 2.0))

    other_model = Tiny()
    other = WeightAverage(other_model, decay=0.5)
    resumed = Checkpointer(tmp_path / "old", {"codec": other_model})
    resumed.add_recoverable(RECOVERABLE, other, optional_load=True)
    resumed.recover_if_possible()  # no average in it: it is optional
    assert other.steps == 0
    other.update()  # the average starts from the recovered live weights
    with other.applied():
        assert torch.equal(other_model.layer.weight, torch.full((2, 2), 3.0))


def test_loaders_of_a_checkpoint_folder_take_the_averaged_parameters(tmp_path):
    model = Tiny()
    average = WeightAverage(model, decay=0.5)
    _train(model, average, [1.0, 3.0])
    saved = Checkpointer(tmp_path, {"codec": model, RECOVERABLE: average}).save_checkpoint()
    ckpt = saved.path / "codec.ckpt"
    state = averaged_state(ckpt)
    assert torch.equal(state["layer.weight"], torch.full((2, 2), 2.0))
    assert torch.equal(state["codebook"], torch.full((3,), 3.0))  # live buffer
    loaded = load_state_strict(Tiny(), ckpt, verify=False, averaged=True)
    assert torch.equal(loaded.layer.bias, torch.full((2,), 2.0))
    resumed = load_state_strict(Tiny(), ckpt, verify=False)  # resuming: the live weights
    assert torch.equal(resumed.layer.bias, torch.full((2,), 3.0))
    (saved.path / AVERAGE_FILE).unlink()  # without the average: the live weights
    assert torch.equal(averaged_state(ckpt)["layer.weight"], torch.full((2, 2), 3.0))


def test_a_bad_average_file_is_named(tmp_path):
    model = Tiny()
    torch.save(model.state_dict(), tmp_path / "codec.ckpt")
    torch.save({"not": torch.zeros(1)}, tmp_path / AVERAGE_FILE)
    with pytest.raises(ValueError, match=AVERAGE_FILE):
        averaged_state(tmp_path / "codec.ckpt")


def test_decay_outside_zero_one_is_refused():
    with pytest.raises(ValueError, match="decay"):
        WeightAverage(Tiny(), decay=1.0)
