"""Frozen-codec features computed once and reused by every probe run.

Probing full, light and mixed embeddings (and k folds, and repeated runs) would
otherwise re-encode the same audio many times. :class:`EmbeddingCache` stores, per
codec, routing mode and split, each utterance's continuous embedding ``[T, D]``,
its tokens ``[T, K]`` and (for routed modes) the share of its segments that took
the light path. Files live under ``<folder>/<codec fingerprint>/<mode>/<split>.pt``:
the fingerprint hashes the codec's weights and threshold, so a retrained or
recalibrated codec never reads stale features, and each entry remembers the
audio it came from (path, slice, size, modification time) so edited audio is
re-encoded. Files are written to a temporary name and renamed.
"""

import hashlib
import math
import os
from pathlib import Path

import soundfile as sf
import torch
import torchaudio

from speechbrain_dsl.atomic import atomic_path


def codec_fingerprint(codec):
    """A short hash of ``codec``'s structure, settings, parameters and buffers (threshold included).

    Example
    -------
    >>> a, b = torch.nn.Linear(2, 2), torch.nn.Linear(2, 2)
    >>> codec_fingerprint(a) == codec_fingerprint(a), codec_fingerprint(a) == codec_fingerprint(b)
    (True, False)
    """
    digest = hashlib.sha256()
    # structure (repr) and settings that live outside the state dict
    settings = {name: getattr(codec, name, None) for name in ("sample_rate", "input_scale")}
    segments = [m.segment_frames for m in codec.modules() if hasattr(m, "segment_frames")]
    digest.update(f"{codec!r}|{settings}|{segments}".encode())
    for name, tensor in sorted(codec.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()[:16]


def read_clip(wav, sample_rate, start=0, stop=-1):
    """Mono float32 ``[S]`` of ``wav[start:stop]`` (samples; ``stop`` -1 = end) at ``sample_rate``."""
    try:
        audio, sr = sf.read(
            str(wav), start=start, stop=None if stop < 0 else stop, dtype="float32", always_2d=True
        )
    except RuntimeError as err:
        raise ValueError(f"cannot read audio file {wav}: {err}") from None
    audio = torch.from_numpy(audio).mean(1)
    if sr != sample_rate:
        audio = torchaudio.functional.resample(audio, sr, sample_rate)
    return audio


def audio_key(entry):
    """What identifies an entry's audio: path, slice, file size and modification time."""
    try:
        stat = os.stat(entry["wav"])
    except OSError:
        raise ValueError(f"audio file not found: {entry['wav']}") from None
    return (
        f"{entry['wav']}|{entry.get('start', 0)}|{entry.get('stop', -1)}|"
        f"{stat.st_size}|{stat.st_mtime_ns}"
    )


class EmbeddingCache:
    """Per-utterance features of a frozen codec, keyed by codec, mode and audio.

    Arguments
    ---------
    folder : str or Path
    codec : DSLCodec
        Frozen codec (its ``mode`` is set per request and restored afterwards).
    batch_size : int
        Utterances encoded together (sorted by length to limit padding).
    max_seconds : float, optional
        Clips are cut to this length before encoding.

    Example
    -------
    >>> import tempfile, numpy as np, soundfile as sf
    >>> from speechbrain_dsl.lobes.codec import DSLCodec
    >>> from speechbrain_dsl.lobes.soundstream import SoundStreamEncoder, SoundStreamDecoder
    >>> from speechbrain_dsl.nnet.quantizer import ResidualVectorQuantizer
    >>> codec = DSLCodec(SoundStreamEncoder(channels=2, multipliers=(2,), strides=(4,), emb_dim=8),
    ...                  ResidualVectorQuantizer(dim=8, num_quantizers=2, codebook_size=16),
    ...                  SoundStreamDecoder(emb_dim=8, channels=2, multipliers=(2,), strides=(4,)))
    >>> tmp = tempfile.mkdtemp()
    >>> sf.write(f"{tmp}/a.wav", np.zeros(800, "float32"), 16000)
    >>> cache = EmbeddingCache(f"{tmp}/cache", codec)
    >>> feats = cache.features("train", {"a": {"wav": f"{tmp}/a.wav"}}, mode="full")
    >>> feats["a"]["emb"].shape, feats["a"]["tokens"].shape, cache.encoded
    (torch.Size([200, 8]), torch.Size([200, 2]), 1)
    >>> _ = cache.features("train", {"a": {"wav": f"{tmp}/a.wav"}}, mode="full")
    >>> cache.encoded   # the second request read the cache
    1
    """

    def __init__(self, folder, codec, batch_size=16, max_seconds=None):
        self.folder = Path(folder)
        self.codec = codec
        self.batch_size = batch_size
        self.max_seconds = max_seconds
        self.fingerprint = codec_fingerprint(codec)
        self.encoded = 0  # utterances actually run through the codec (for tests and logs)

    def path(self, split, mode):
        """The cache file of one split and routing mode."""
        return self.folder / self.fingerprint / mode / f"{split}.pt"

    def features(self, split, entries, mode):
        """``{id: {"emb": [T, D], "tokens": [T, K], "light_share": float or None}}``.

        ``entries`` maps ids to manifest entries with ``wav`` (and optionally
        ``start``/``stop`` in samples). Cached entries with the same audio are reused;
        the rest are encoded and the file is rewritten.
        """
        path = self.path(split, mode)
        cached = torch.load(path, weights_only=True) if path.is_file() else {}
        # the clip-length cap changes the features, so it is part of each entry's key
        keys = {
            utt: f"{audio_key(entry)}|max_seconds={self.max_seconds}"
            for utt, entry in entries.items()
        }
        missing = [utt for utt in entries if cached.get(utt, {}).get("key") != keys[utt]]
        if missing:
            for utt, feats in self._encode(missing, entries, mode):
                cached[utt] = {**feats, "key": keys[utt]}
            with atomic_path(path) as tmp:
                torch.save(cached, tmp)
        return {utt: cached[utt] for utt in entries}

    @torch.no_grad()
    def _encode(self, ids, entries, mode):
        codec, rate = self.codec, self.codec.sample_rate
        limit = None if self.max_seconds is None else int(self.max_seconds * rate)
        clips = {}
        for utt in ids:
            entry = entries[utt]
            clip = read_clip(entry["wav"], rate, entry.get("start", 0), entry.get("stop", -1))
            clips[utt] = clip[:limit] if limit else clip
        order = sorted(ids, key=lambda u: len(clips[u]))
        if not codec.has_dsl and mode != "full":
            raise ValueError(f"mode {mode!r} needs a codec with a DSL; this one has none")
        for i in range(0, len(order), self.batch_size):
            batch = order[i : i + self.batch_size]
            sizes = torch.tensor([len(clips[u]) for u in batch])
            wav = torch.zeros(len(batch), int(sizes.max()))
            for row, utt in enumerate(batch):
                wav[row, : sizes[row]] = clips[utt]
            lengths = sizes / sizes.max()
            encoded = codec.encode_with_routing(wav, lengths, mode=mode, tokens=False)
            emb = encoded.emb
            with codec._inference():
                _, tokens, _ = codec.quantizer(emb)  # every codebook, whatever the tokenizer uses
            row_frames = [codec.frames_for(int(size)) for size in sizes]
            shares = (
                _light_shares(encoded.routing, row_frames) if codec.has_dsl else [None] * len(batch)
            )
            for row, utt in enumerate(batch):
                frames = row_frames[row]
                self.encoded += 1
                yield (
                    utt,
                    {
                        "emb": emb[row, :frames].clone(),
                        "tokens": tokens[row, :frames].to(torch.int16).clone(),
                        "light_share": shares[row],
                    },
                )


def _light_shares(routing, frames):
    """Light share of each row's own segments (its frame count, not the batch padding)."""
    return [
        float(routing.route[row, : math.ceil(n / routing.segment_frames)].float().mean())
        for row, n in enumerate(frames)
    ]
