"""AtomicCheckpointer: a save interrupted half-way never becomes a checkpoint."""

import pytest
import torch
from speechbrain.utils.checkpoints import register_checkpoint_hooks, mark_as_loader, mark_as_saver

from speechbrain_dsl.checkpoints import PARTIAL_PREFIX, AtomicCheckpointer


@register_checkpoint_hooks
class ExplodingSaver:
    """A recoverable whose save dies after writing part of its file."""

    def __init__(self):
        self.explode = False

    @mark_as_saver
    def save(self, path):
        path.write_text("partial")
        if self.explode:
            raise KeyboardInterrupt("killed while saving")

    @mark_as_loader
    def load(self, path, end_of_epoch):
        assert path.read_text() == "partial"


def test_interrupted_save_leaves_the_previous_checkpoint_as_the_latest(tmp_path):
    layer, saver = torch.nn.Linear(2, 2), ExplodingSaver()
    ckpt = AtomicCheckpointer(tmp_path, {"layer": layer, "saver": saver})
    good = ckpt.save_checkpoint(meta={"n": 1})
    saver.explode = True
    with pytest.raises(KeyboardInterrupt):
        ckpt.save_checkpoint(meta={"n": 2})
    assert len(list(tmp_path.glob(PARTIAL_PREFIX + "*"))) == 1
    assert [c.meta["n"] for c in ckpt.list_checkpoints()] == [1]
    with torch.no_grad():
        layer.weight.fill_(7.0)
    saver.explode = False
    recovered = ckpt.recover_if_possible()
    assert recovered.path == good.path and not torch.all(layer.weight == 7.0)
    ckpt.save_checkpoint(meta={"n": 3})
    assert not list(tmp_path.glob(PARTIAL_PREFIX + "*"))  # leftovers are cleaned up
    assert sorted(c.meta["n"] for c in ckpt.list_checkpoints()) == [1, 3]
