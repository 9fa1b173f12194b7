"""Shared small models and helpers for the speechbrain_dsl test suite.

Most tests use a *tiny* model (hop 16, a handful of channels) so the suite stays
fast; tests whose subject is the default model load ``hparams/*.yaml``.

Tiny model layout (``split_after=1``):

- full encoder: strides (2, 2, 4) -> hop 16; base = first conv + block 1 (hop 2,
  8 channels); full tail hop 8 with a lookback of 57 base steps (7 frames of
  context, more than a 3-frame routing segment).
- light tail: first conv with stride 4, one block of stride 2 -> hop 8, lookback
  39 base steps (4 frames of context).
"""

from pathlib import Path

import pytest
import torch

from speechbrain_dsl.lobes.codec import DSLCodec
from speechbrain_dsl.lobes.dsl_encoder import DSLEncoder
from speechbrain_dsl.lobes.soundstream import SoundStreamDecoder, SoundStreamEncoder
from speechbrain_dsl.nnet.dsl import Mask, Switch
from speechbrain_dsl.nnet.quantizer import ResidualVectorQuantizer

ROOT = Path(__file__).resolve().parents[1]
HPARAMS = ROOT / "hparams"
DSL_YAML = HPARAMS / "soundstream_dsl.yaml"
BASELINE_YAML = HPARAMS / "soundstream_baseline.yaml"

TINY_HOP = 16
TINY_ENCODER = dict(
    channels=4,
    multipliers=(2, 4, 4),
    strides=(2, 2, 4),
    dilations=(1, 3),
    kernel_size=3,
    emb_dim=8,
)
TINY_BASE_CHANNELS = 8  # channels * multipliers[0]


@pytest.fixture(autouse=True)
def _seed():
    """Every test starts from the same random state."""
    torch.manual_seed(0)


def make_encoder():
    """A tiny causal SoundStream encoder (hop 16, emb_dim 8)."""
    return SoundStreamEncoder(**TINY_ENCODER)


def make_light_tail():
    """A tiny light tail matching the base of :func:`make_encoder` (hop 8)."""
    return SoundStreamEncoder(
        TINY_BASE_CHANNELS,
        channels=2,
        multipliers=(1,),
        strides=(2,),
        dilations=(1,),
        kernel_size=3,
        first_kernel_size=4,
        first_stride=4,
        emb_dim=8,
    )


def make_dsl_encoder(
    segment_frames=3, mask=True, random_mask=True, mode="mixed", threshold=0.5, **kw
):
    """A tiny DSLEncoder; by default its mask gains are random (not identity)."""
    encoder = make_encoder()
    m = Mask(TINY_BASE_CHANNELS) if mask else None
    if m is not None and random_mask:
        with torch.no_grad():
            m.weight.uniform_(0.5, 1.5)
    return DSLEncoder(
        encoder,
        make_light_tail(),
        Switch(TINY_BASE_CHANNELS, hidden=8),
        m,
        split_after=1,
        segment_frames=segment_frames,
        mode=mode,
        threshold=threshold,
        **kw,
    )


def make_decoder():
    return SoundStreamDecoder(
        emb_dim=8,
        channels=2,
        multipliers=(2, 4, 4),
        strides=(2, 2, 4),
        dilations=(1,),
        kernel_size=3,
    )


def make_codec(dsl=True, num_quantizers=3, codebook_size=16):
    """A tiny codec (hop 16) with a DSL encoder, or a baseline encoder."""
    encoder = make_dsl_encoder() if dsl else make_encoder()
    quantizer = ResidualVectorQuantizer(
        dim=8, num_quantizers=num_quantizers, codebook_size=codebook_size
    )
    return DSLCodec(encoder, quantizer, make_decoder(), sample_rate=16000)


def load_hparams(path=DSL_YAML, **overrides):
    """Instantiates a model YAML with hyperpyyaml."""
    from hyperpyyaml import load_hyperpyyaml

    with open(path) as f:
        return load_hyperpyyaml(f, overrides)


@pytest.fixture
def tiny_dsl_encoder():
    return make_dsl_encoder()


@pytest.fixture
def tiny_codec():
    return make_codec()


@pytest.fixture(scope="module")
def default_hparams():
    """The default DSL model (shared by a module: tests must not train it)."""
    return load_hparams()


def package_untrained(model_yaml, folder):
    """Packages an untrained codec of ``model_yaml`` (codebooks initialised) into ``folder/model``."""
    from speechbrain_dsl.inference.package import package
    from speechbrain_dsl.training.checkpoints import AtomicCheckpointer

    with open(model_yaml) as f:
        from hyperpyyaml import load_hyperpyyaml

        codec = load_hyperpyyaml(f)["codec"].eval()
    codec.encode(torch.randn(2, 16000) * 0.1)  # initialise the codebooks
    AtomicCheckpointer(folder / "save", {"codec": codec}).save_checkpoint()
    return package(folder / "save", folder / "model", model_yaml)


@pytest.fixture(scope="session")
def packaged_dsl_codec(tmp_path_factory):
    """The default DSL model, untrained, as a packaged folder (read-only for tests)."""
    return package_untrained(DSL_YAML, tmp_path_factory.mktemp("packaged_dsl"))


@pytest.fixture(scope="session")
def packaged_baseline_codec(tmp_path_factory):
    """The default baseline model, untrained, as a packaged folder (read-only for tests)."""
    return package_untrained(BASELINE_YAML, tmp_path_factory.mktemp("packaged_baseline"))


@pytest.fixture(scope="session")
def speech_commands_data(tmp_path_factory):
    """A small Speech Commands v0.02 look-alike (10 speakers; read-only for tests)."""
    from speechbrain_dsl.data.synthetic import make_speech_commands

    return make_speech_commands(tmp_path_factory.mktemp("speech_commands"), seed=4, speakers=10)
