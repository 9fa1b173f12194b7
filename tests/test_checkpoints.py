"""AtomicCheckpointer: all-or-nothing, checksummed checkpoints that carry the RNG
states, fall back to the previous intact checkpoint, and resume bit for bit."""

import errno
import logging
import random

import numpy as np
import pytest
import speechbrain as sb
import torch
from speechbrain.dataio.dataset import DynamicItemDataset
from speechbrain.utils.checkpoints import mark_as_loader, mark_as_saver, register_checkpoint_hooks
from speechbrain.utils.epoch_loop import EpochCounter

from speechbrain_dsl.training import checkpoints
from speechbrain_dsl.training.checkpoints import (
    BEST_BY,
    MANIFEST,
    PARTIAL_PREFIX,
    AtomicCheckpointer,
    CheckpointError,
    RandomState,
    capture_rng_state,
    find_codec_checkpoint,
    restore_rng_state,
    sha256_file,
)


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
    assert not list(tmp_path.glob(PARTIAL_PREFIX + "*"))  # a failed save cleans up after itself
    assert [c.meta["n"] for c in ckpt.list_checkpoints()] == [1]
    with torch.no_grad():
        layer.weight.fill_(7.0)
    saver.explode = False
    recovered = ckpt.recover_if_possible()
    assert recovered.path == good.path and not torch.all(layer.weight == 7.0)
    ckpt.save_checkpoint(meta={"n": 3})
    assert sorted(c.meta["n"] for c in ckpt.list_checkpoints()) == [1, 3]


def test_leftovers_of_a_killed_save_are_removed_when_a_checkpointer_starts(tmp_path):
    leftover = tmp_path / (PARTIAL_PREFIX + "CKPT+2024-01-01+00-00-00+00")
    leftover.mkdir()
    (leftover / "CKPT.yaml").write_text("end-of-epoch: true\nunixtime: 1.0\n")
    reader = AtomicCheckpointer(tmp_path, clear_partial=False)  # a reader leaves them alone
    assert leftover.exists() and reader.list_checkpoints() == []
    AtomicCheckpointer(tmp_path, {"layer": torch.nn.Linear(2, 2)})
    assert not leftover.exists()


def test_every_checkpoint_has_a_sha256_manifest_of_all_its_files(tmp_path):
    ckpt = AtomicCheckpointer(tmp_path, {"layer": torch.nn.Linear(2, 2)})
    saved = ckpt.save_checkpoint()
    lines = (saved.path / MANIFEST).read_text().splitlines()
    listed = {line.split("  ")[1]: line.split("  ")[0] for line in lines}
    assert set(listed) == {"CKPT.yaml", "layer.ckpt", "rng.ckpt"}
    assert all(sha256_file(saved.path / name) == digest for name, digest in listed.items())


def _two_checkpoints(folder):
    """A checkpointer with an older (weights 1) and a newer (weights 2) checkpoint."""
    layer = torch.nn.Linear(3, 2)
    ckpt = AtomicCheckpointer(folder, {"layer": layer, "counter": EpochCounter(10)})
    with torch.no_grad():
        layer.weight.fill_(1.0)
    older = ckpt.save_checkpoint(meta={"n": 1})
    with torch.no_grad():
        layer.weight.fill_(2.0)
    newer = ckpt.save_checkpoint(meta={"n": 2})
    with torch.no_grad():
        layer.weight.fill_(0.0)
    return ckpt, layer, older, newer


def _flip_byte_in_tensor_data(path):
    data = bytearray(path.read_bytes())
    index = data.find(bytes(np.float32(2.0).tobytes()))  # inside the weight tensor
    data[index + 3] ^= 0x10
    path.write_bytes(bytes(data))


def _nan_weights_resaved(path):
    """Valid NaN weights with an updated manifest: only the finiteness check catches it."""
    torch.save({"weight": torch.full((2, 3), float("nan")), "bias": torch.zeros(2)}, path)
    checkpoints.write_manifest(path.parent)


BREAKAGES = {
    "truncated weights": lambda p: (p / "layer.ckpt").write_bytes(
        (p / "layer.ckpt").read_bytes()[:100]
    ),
    "zeroed weights": lambda p: (p / "layer.ckpt").write_bytes(
        bytes(len((p / "layer.ckpt").read_bytes()))
    ),
    "zeroed counter": lambda p: (p / "counter.ckpt").write_bytes(b"\0" * 8),
    "missing file": lambda p: (p / "counter.ckpt").unlink(),
    "flipped byte": lambda p: _flip_byte_in_tensor_data(p / "layer.ckpt"),
    "zeroed CKPT.yaml": lambda p: (p / "CKPT.yaml").write_bytes(b"\0" * 40),
    "corrupt manifest": lambda p: (p / MANIFEST).write_text("garbage\n"),
    "NaN weights": lambda p: _nan_weights_resaved(p / "layer.ckpt"),
}


@pytest.mark.parametrize("breakage", sorted(BREAKAGES))
def test_a_broken_latest_checkpoint_is_skipped_for_the_previous_intact_one(
    tmp_path, caplog, breakage
):
    ckpt, layer, older, newer = _two_checkpoints(tmp_path)
    BREAKAGES[breakage](newer.path)
    with caplog.at_level(logging.WARNING, logger="speechbrain_dsl.training.checkpoints"):
        recovered = ckpt.recover_if_possible()
    assert recovered.path == older.path
    assert torch.all(layer.weight == 1.0)
    assert str(newer.path) in caplog.text  # the warning names the skipped checkpoint


def test_flipped_byte_is_reported_as_a_checksum_failure_naming_the_file(tmp_path, caplog):
    ckpt, layer, older, newer = _two_checkpoints(tmp_path)
    _flip_byte_in_tensor_data(newer.path / "layer.ckpt")
    with caplog.at_level(logging.WARNING, logger="speechbrain_dsl.training.checkpoints"):
        ckpt.recover_if_possible()
    assert f"{newer.path / 'layer.ckpt'} fails its sha256 checksum" in caplog.text


def test_without_any_intact_checkpoint_recovery_raises_naming_each(tmp_path):
    ckpt, layer, older, newer = _two_checkpoints(tmp_path)
    for saved in (older, newer):
        (saved.path / "layer.ckpt").write_bytes(b"")
    with pytest.raises(CheckpointError) as info:
        ckpt.recover_if_possible()
    assert str(older.path / "layer.ckpt") in str(info.value)
    assert str(newer.path / "layer.ckpt") in str(info.value)


def test_checkpoints_of_older_versions_without_manifest_or_rng_still_load(tmp_path, caplog):
    ckpt, layer, older, newer = _two_checkpoints(tmp_path)
    (newer.path / MANIFEST).unlink()
    (newer.path / "rng.ckpt").unlink()
    with caplog.at_level(logging.WARNING, logger="speechbrain_dsl.training.checkpoints"):
        assert ckpt.recover_if_possible().path == newer.path
    assert torch.all(layer.weight == 2.0) and "without an integrity check" in caplog.text


def test_best_checkpoint_falls_back_to_the_next_best(tmp_path):
    layer = torch.nn.Linear(2, 2)
    ckpt = AtomicCheckpointer(tmp_path, {"layer": layer})
    saved = {}
    for loss in (3.0, 1.0, 2.0):
        with torch.no_grad():
            layer.weight.fill_(loss)
        saved[loss] = ckpt.save_checkpoint(meta={"loss": loss})
    (saved[1.0].path / "layer.ckpt").write_bytes(b"junk")
    assert ckpt.recover_if_possible(min_key="loss").path == saved[2.0].path
    assert torch.all(layer.weight == 2.0)


def _codec_checkpoints(folder, metas, keep=None):
    """Saves a ``codec`` checkpoint per meta (with ``keep``: through save_and_keep_only)."""
    ckpt = AtomicCheckpointer(folder, {"codec": torch.nn.Linear(2, 2)})
    paths = []
    for meta in metas:
        if keep is None:
            paths.append(ckpt.save_checkpoint(meta=meta).path)
        else:
            ckpt.save_and_keep_only(meta=meta, num_to_keep=len(metas), **keep)
            paths.append(ckpt.find_checkpoint().path)
    return ckpt, paths


def test_codec_checkpoint_by_a_named_metric_else_the_latest(tmp_path, caplog):
    _, (low, high, latest) = _codec_checkpoints(
        tmp_path, [{"mel": 1.0, "acc": 0.2}, {"mel": 3.0, "acc": 0.9}, {"mel": 2.0, "acc": 0.5}]
    )
    assert find_codec_checkpoint(tmp_path, min_key="mel") == low / "codec.ckpt"
    assert find_codec_checkpoint(tmp_path, max_key="acc") == high / "codec.ckpt"
    with caplog.at_level(logging.WARNING):
        assert find_codec_checkpoint(tmp_path) == latest / "codec.ckpt"
        assert find_codec_checkpoint(tmp_path, min_key="wer") == latest / "codec.ckpt"
    assert "took the latest of 3 checkpoints" in caplog.text and "--min-key" in caplog.text
    assert "no checkpoint in" in caplog.text and "'wer'" in caplog.text
    with pytest.raises(ValueError, match="give min_key .* or max_key .*, not both"):
        find_codec_checkpoint(tmp_path, min_key="mel", max_key="acc")
    assert find_codec_checkpoint(low) == low / "codec.ckpt"  # a CKPT+ folder or the file itself
    assert find_codec_checkpoint(low / "codec.ckpt") == low / "codec.ckpt"


def test_the_checkpoint_the_run_keeps_as_best_is_found_without_naming_its_metric(tmp_path):
    ckpt, (_, best, _) = _codec_checkpoints(
        tmp_path, [{"mel": 2.0}, {"mel": 1.0}, {"mel": 3.0}], keep={"min_keys": ["mel"]}
    )
    assert [c.meta[BEST_BY] for c in ckpt.list_checkpoints()] == [{"min_key": "mel"}] * 3
    # an intra-epoch checkpoint after them (no metric, no best_by) is the latest
    ckpt.save_and_keep_only(
        meta={"intra": True},
        end_of_epoch=False,
        num_to_keep=1,
        ckpt_predicate=lambda c: "intra" in c.meta,
    )
    assert find_codec_checkpoint(tmp_path) == best / "codec.ckpt"
    assert find_codec_checkpoint(tmp_path, min_key="intra") != best / "codec.ckpt"


@pytest.mark.parametrize(
    "keep", [{"min_keys": ["mel"], "max_keys": ["acc"]}, {"min_keys": ["wer"]}, {}]
)
def test_no_best_by_entry_unless_one_key_of_the_meta_ranks_the_checkpoints(tmp_path, keep):
    ckpt, _ = _codec_checkpoints(tmp_path, [{"mel": 2.0, "acc": 0.5}], keep=keep)
    assert BEST_BY not in ckpt.find_checkpoint().meta


def test_disk_full_during_a_save_says_so_names_the_file_and_cleans_up(tmp_path, monkeypatch):
    ckpt = AtomicCheckpointer(tmp_path, {"layer": torch.nn.Linear(2, 2)})

    def full_disk(obj, path):  # what torch.save reports when the disk fills up
        raise RuntimeError(
            "[enforce fail at inline_container.cc:664] . unexpected pos 64 vs 0\n"
            "basic_ios::clear: iostream error"
        )

    monkeypatch.setitem(checkpoints.DEFAULT_SAVE_HOOKS, torch.nn.Module, full_disk)
    monkeypatch.setattr(checkpoints, "_free_bytes", lambda path: 4096)
    with pytest.raises(OSError) as info:
        ckpt.save_checkpoint()
    assert info.value.errno == errno.ENOSPC
    assert "No space left on device" in str(info.value) and "layer.ckpt" in str(info.value)
    assert not list(tmp_path.glob(PARTIAL_PREFIX + "*")) and ckpt.list_checkpoints() == []


def test_a_write_error_with_space_left_is_not_called_a_full_disk(tmp_path, monkeypatch):
    ckpt = AtomicCheckpointer(tmp_path, {"layer": torch.nn.Linear(2, 2)})

    def broken(obj, path):
        raise RuntimeError("basic_ios::clear: iostream error")

    monkeypatch.setitem(checkpoints.DEFAULT_SAVE_HOOKS, torch.nn.Module, broken)
    monkeypatch.setattr(checkpoints, "_free_bytes", lambda path: 50 * 2**30)
    with pytest.raises(RuntimeError) as info:
        ckpt.save_checkpoint()
    assert any("layer.ckpt" in note for note in getattr(info.value, "__notes__", []))
    assert not list(tmp_path.glob(PARTIAL_PREFIX + "*"))


def _draw():
    return (
        random.random(),
        float(np.random.rand()),
        float(np.random.randn()),
        torch.rand(3).tolist(),
    )


def test_rng_state_round_trips_python_numpy_and_torch(tmp_path):
    random.seed(1), np.random.seed(2), torch.manual_seed(3)
    np.random.randn()  # leaves a cached gaussian in numpy's state
    ckpt = AtomicCheckpointer(tmp_path, {"layer": torch.nn.Linear(2, 2)})
    ckpt.save_checkpoint()
    expected = _draw()
    random.seed(9), np.random.seed(9), torch.manual_seed(9)
    ckpt.recover_if_possible()
    assert _draw() == expected


def test_a_malformed_rng_state_is_refused_naming_the_file(tmp_path):
    bad = tmp_path / "rng.ckpt"
    torch.save({"python": (3, (1, 2), None), "numpy": {}, "torch": torch.zeros(3)}, bad)
    with pytest.raises(CheckpointError, match="rng.ckpt is not a valid RNG state"):
        RandomState().load(bad)
    with pytest.raises(ValueError, match="not a valid RNG state"):
        restore_rng_state({"python": random.getstate()})
    assert set(capture_rng_state()) >= {"python", "numpy", "torch"}


# --- kill and resume, bit for bit, through SpeechBrain's Brain ---------------------


class Killed(Exception):
    """Stands in for SIGKILL: the process stops between two steps."""


class TinyBrain(sb.Brain):
    """Regression with dropout on randomly cropped, noisy inputs: every RNG matters."""

    def compute_forward(self, batch, stage):
        return self.modules.model(batch.x.data)

    def compute_objectives(self, predictions, batch, stage):
        return ((predictions.squeeze(-1) - batch.y) ** 2).mean()

    def fit_batch(self, batch):
        if self.kill_at is not None and len(self.losses) == self.kill_at:
            raise Killed()
        loss = super().fit_batch(batch)
        self.losses.append(loss.item())
        return loss

    def on_stage_end(self, stage, stage_loss, epoch):
        if stage == sb.Stage.VALID:
            self.checkpointer.save_and_keep_only(meta={"loss": stage_loss}, num_to_keep=2)


def _dataset(n):
    data = {f"u{i}": {"value": float(i)} for i in range(n)}
    dataset = DynamicItemDataset(data)

    @sb.utils.data_pipeline.takes("value")
    @sb.utils.data_pipeline.provides("x", "y")
    def pipeline(value):
        start = random.randint(0, 3)  # a random crop (python RNG), as in the codec recipe
        x = torch.arange(start, start + 4, dtype=torch.float32) * value / 10
        yield x + torch.from_numpy(np.random.normal(0, 0.01, 4).astype("float32"))  # numpy RNG
        yield value / 10

    dataset.add_dynamic_item(pipeline)
    dataset.set_output_keys(["x", "y"])
    return dataset


def _train(folder, kill_at=None, save_rng_state=True):
    """Losses of one run (seeded like a recipe), up to ``kill_at`` steps if given."""
    sb.utils.seed.seed_everything(1986)
    model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Dropout(0.5), torch.nn.Linear(8, 1))
    counter = EpochCounter(2)
    checkpointer = AtomicCheckpointer(
        folder, {"model": model, "counter": counter}, save_rng_state=save_rng_state
    )
    brain = TinyBrain(
        modules={"model": model},
        opt_class=lambda p: torch.optim.SGD(p, lr=0.05),
        checkpointer=checkpointer,
        run_opts={"ckpt_interval_steps": 3, "noprogressbar": True, "device": "cpu"},
    )
    brain.losses, brain.kill_at = [], kill_at
    try:
        brain.fit(
            counter,
            _dataset(16),
            _dataset(4),
            train_loader_kwargs={"batch_size": 2, "shuffle": True},
            valid_loader_kwargs={"batch_size": 2},
        )
    except Killed:
        pass
    return brain.losses


def test_a_killed_and_resumed_run_has_exactly_the_losses_of_an_uninterrupted_one(tmp_path):
    uninterrupted = _train(tmp_path / "once")
    assert len(uninterrupted) == 16 and len(set(uninterrupted)) == 16
    # killed at step 5 of epoch 2, after the intra-epoch checkpoint of its step 3
    before = _train(tmp_path / "killed", kill_at=12)
    resumed = _train(tmp_path / "killed")
    assert before == uninterrupted[:12]
    assert resumed == uninterrupted[11:]  # the last intra-epoch checkpoint was after 11 steps
    # killed in epoch 1 after its second intra-epoch checkpoint, and again in epoch 2
    _train(tmp_path / "twice", kill_at=7)
    _train(tmp_path / "twice", kill_at=5)
    assert _train(tmp_path / "twice") == uninterrupted[11:]


def test_the_resume_test_would_catch_a_checkpoint_without_rng_states(tmp_path):
    uninterrupted = _train(tmp_path / "once", save_rng_state=False)
    _train(tmp_path / "killed", kill_at=12, save_rng_state=False)
    assert _train(tmp_path / "killed", save_rng_state=False) != uninterrupted[11:]


def test_a_broken_latest_checkpoint_resumes_bit_for_bit_from_the_one_before(tmp_path, caplog):
    uninterrupted = _train(tmp_path / "once")
    _train(tmp_path / "killed", kill_at=12)
    latest = max(
        AtomicCheckpointer(tmp_path / "killed", clear_partial=False).list_checkpoints(),
        key=lambda c: c.meta["unixtime"],
    )
    (latest.path / "model.ckpt").write_bytes(b"\0" * 64)
    with caplog.at_level(logging.WARNING, logger="speechbrain_dsl.training.checkpoints"):
        resumed = _train(tmp_path / "killed")
    assert str(latest.path) in caplog.text
    assert resumed == uninterrupted[-len(resumed) :] and len(resumed) > 5


# --- the switch threshold may be infinite ----------------------------------------

THRESHOLD_KEY = "encoder.dsl.calibrated_threshold"


@pytest.mark.parametrize("threshold", [float("inf"), float("-inf")])
def test_a_codec_whose_threshold_is_infinite_saves_and_loads_back(tmp_path, threshold):
    """The threshold setter takes inf (every segment light) and -inf (none): such a
    codec's checkpoint must load back, through the checkpointer and strictly."""
    from conftest import make_codec

    from speechbrain_dsl.training.checkpoints import load_state_strict
    from speechbrain_dsl.training.retrofit import init_codec_from

    codec = make_codec()
    codec.threshold = threshold
    saved = AtomicCheckpointer(tmp_path / "ckpt", {"codec": codec}).save_checkpoint()
    fresh = make_codec()
    assert fresh.threshold == 0.5
    recovered = AtomicCheckpointer(tmp_path / "ckpt", {"codec": fresh}).recover_if_possible()
    assert recovered.path == saved.path and fresh.threshold == threshold
    assert load_state_strict(make_codec(), saved.path / "codec.ckpt").threshold == threshold
    other = make_codec()
    assert init_codec_from(other, saved.path / "codec.ckpt") == [] and other.threshold == threshold


def test_a_nan_threshold_and_infinite_weights_are_still_refused(tmp_path):
    from conftest import make_codec

    from speechbrain_dsl.training.checkpoints import load_state_strict
    from speechbrain_dsl.training.retrofit import init_codec_from

    state = make_codec().state_dict()
    nan_threshold, inf_weight = tmp_path / "nan.ckpt", tmp_path / "inf.ckpt"
    torch.save({**state, THRESHOLD_KEY: torch.tensor(float("nan"))}, nan_threshold)
    weight = next(k for k in state if k.endswith("weight") and state[k].is_floating_point())
    torch.save(
        {
            **state,
            THRESHOLD_KEY: torch.tensor(float("inf")),
            weight: torch.full_like(state[weight], float("inf")),
        },
        inf_weight,
    )
    with pytest.raises(
        CheckpointError,
        match=rf"{nan_threshold} does not fit DSLCodec: NaN or "
        rf"infinite values in 1 tensor\(s\) \({THRESHOLD_KEY}\)$",
    ):
        load_state_strict(make_codec(), nan_threshold)
    with pytest.raises(CheckpointError, match=rf"infinite values in 1 tensor\(s\) \({weight}\)$"):
        load_state_strict(make_codec(), inf_weight)
    with pytest.raises(ValueError, match=rf"{THRESHOLD_KEY}: non-finite values"):
        init_codec_from(make_codec(), nan_threshold)
    with pytest.raises(ValueError, match=rf"does not fit this codec: {weight}: non-finite values$"):
        init_codec_from(make_codec(), inf_weight)
