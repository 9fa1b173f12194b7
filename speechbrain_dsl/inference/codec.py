"""A SpeechBrain ``Pretrained`` interface for trained DSL codecs, loaded offline.

A packaged model is a local folder (see :mod:`speechbrain_dsl.inference.package`)
holding ``hyperparams.yaml`` (the model definition, ``modules`` and a
``pretrainer``) and ``codec.ckpt`` (weights and the calibrated switch threshold).
Nothing is downloaded; weights are read with ``torch.load``'s default
``weights_only=True``.

Example
-------
>>> from speechbrain_dsl.inference.codec import DSLCodecInterface
>>> codec = DSLCodecInterface.from_hparams(source="pretrained/dsl-codec-16k")  # doctest: +SKIP
>>> tokens = codec.encode_file("speech.wav")                                   # doctest: +SKIP
"""

import pickle
from pathlib import Path

import soundfile as sf
import torch
import torchaudio
from speechbrain.inference.interfaces import Pretrained

REQUIRED_FILES = ("hyperparams.yaml", "codec.ckpt")


class DSLCodecInterface(Pretrained):
    """Encode to tokens and decode back with a trained (DSL) codec.

    Set ``mode`` (``full``, ``light``, ``mixed``) and ``threshold`` as needed;
    :meth:`routing_stats` describes the routing of the last encode call.
    """

    MODULES_NEEDED = ["codec"]

    @classmethod
    def from_hparams(cls, source, hparams_file="hyperparams.yaml", **kwargs):
        """Loads a packaged model; for a local folder, checks its files first."""
        folder = Path(source)
        if folder.is_dir():
            for name in REQUIRED_FILES if hparams_file == "hyperparams.yaml" else (hparams_file,):
                if not (folder / name).is_file():
                    raise ValueError(f"packaged codec folder {folder} is missing {name}")
        try:
            if folder.is_dir():  # checksums, keys, shapes, finite values: ValueErrors naming files
                from speechbrain_dsl.inference.package import load_packaged

                return load_packaged(cls, folder, hparams_file, **kwargs)
            return super().from_hparams(source=str(source), hparams_file=hparams_file, **kwargs)
        except (RuntimeError, EOFError, pickle.UnpicklingError) as err:
            raise ValueError(f"cannot load {folder / 'codec.ckpt'}: {err}") from None

    @property
    def codec(self):
        """The underlying :class:`~speechbrain_dsl.lobes.codec.DSLCodec`."""
        return self.mods.codec

    @property
    def mode(self):
        """Routing mode of the encoder."""
        return self.codec.mode

    @mode.setter
    def mode(self, value):
        self.codec.mode = value

    @property
    def threshold(self):
        """Switch threshold (calibrated at training time unless set)."""
        return self.codec.threshold

    @threshold.setter
    def threshold(self, value):
        self.codec.threshold = value

    @torch.no_grad()
    def encode_batch(self, wavs, wav_lens=None):
        """Tokens ``[B, T, K]`` of ``wavs`` ``[B, S]`` at the codec's sample rate."""
        wavs = wavs.to(self.device)
        wav_lens = None if wav_lens is None else wav_lens.to(self.device)
        tokens, _ = self.codec.encode(wavs, wav_lens)
        return tokens

    @torch.no_grad()
    def decode_batch(self, tokens):
        """Waveforms ``[B, S]`` from tokens ``[B, T, K]``."""
        return self.codec.decode(tokens.to(self.device)).squeeze(1)

    def encode_file(self, path):
        """Tokens ``[1, T, K]`` of an audio file (any rate: resampled, mixed to mono)."""
        try:
            audio, sr = sf.read(str(path), dtype="float32", always_2d=True)
        except RuntimeError as err:
            raise ValueError(f"cannot read audio file {path}: {err}") from None
        wav = torch.from_numpy(audio).mean(1)
        if sr != self.codec.sample_rate:
            wav = torchaudio.functional.resample(wav, sr, self.codec.sample_rate)
        return self.encode_batch(wav[None])

    def routing_stats(self):
        """Light share, per-segment routes and predictions of the last encode call."""
        out = self.codec.last_routing
        if out is None:
            return None
        valid = out.segment_mask
        return {
            "mode": self.mode,
            "threshold": self.threshold,
            "light_share": float(out.route[valid].float().mean()),
            "route": out.route.cpu(),
            "predicted": None if out.predicted is None else out.predicted.cpu(),
        }


def load_tokenizer(source, mode="mixed", savedir=None):
    """A packaged codec as a frozen tokenizer (a ``DSLCodec`` in eval mode), for YAML.

    It has SpeechBrain's tokenizer interface: ``encode``, ``decode``,
    ``num_codebooks``, ``vocab_size``, ``sample_rate``, ``vocabulary`` and DASB's
    ``sig_to_tokens``, ``tokens_to_sig``, ``get_pretrained_embeddings``.
    """
    interface = DSLCodecInterface.from_hparams(source=str(source), savedir=savedir or str(source))
    codec = interface.codec.eval()
    if not codec.has_dsl and mode != "full":
        raise ValueError(f"{source} holds a codec without DSL: set the tokenizer mode to "
                         f"'full' (got {mode!r})")
    codec.mode = mode
    for parameter in codec.parameters():
        parameter.requires_grad_(False)
    return codec
