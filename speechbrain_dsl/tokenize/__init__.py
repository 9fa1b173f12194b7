"""Tokenize whole corpora with a packaged codec: sharded, resumable, in DASB's cached-token format.

    python -m speechbrain_dsl.tokenize --model pretrained/dsl-codec-16k \\
        --data train.json --data_root /data/LibriTTS --out tokens/train \\
        [--num_codebooks 2] [--mode full|light|mixed] [--engine torch|onnxruntime] \\
        [--device cpu|cuda] [--workers N] [--batch_seconds 60] [--skip_bad_audio]
    torchrun --nproc_per_node 4 -m speechbrain_dsl.tokenize --device cuda ...

``--data`` is a SpeechBrain CSV or JSON manifest (``$data_root`` / ``{data_root}``
replaced by ``--data_root``) or a folder of audio
(:func:`~speechbrain_dsl.tokenize.corpus.read_corpus` says how ids are made).
``--out`` receives ``tokens.ark`` and ``tokens.scp`` (kaldiio, keyed by
utterance id, int64 tokens ``[frames, num_codebooks]``), DASB's
``opt_extract.pkl`` and ``embeddings.npy``, and ``summary.json`` (see
:mod:`speechbrain_dsl.tokenize.store`), so a DASB recipe whose ``TokensLoader``
points at ``--out`` reads them unchanged. An utterance gets
``ceil(samples / hop)`` frames, the frames ``sig_to_tokens`` gives that file
alone (DASB's own extractor cuts padded batches with ``undo_padding``, which
can round one frame differently).

Runs survive being killed: chunks of ``--chunk_size`` utterances are written
whole (temporary name, then rename) and a rerun encodes only the missing ones;
the finished ``tokens.ark`` is byte-identical to that of an uninterrupted run
(``tokens.scp`` too, up to the absolute output path it names), for any number
of ranks. A finished folder reruns as a no-op; one holding a run with other
settings is refused. Bad audio (missing, unreadable, empty, truncated, too short,
NaN, out of range, another rate with ``--no_resample``) is refused before
anything is encoded, naming the files, or left out with ``--skip_bad_audio``
and listed in the summary.

Example
-------
>>> from speechbrain_dsl.tokenize import TokenizeConfig, tokenize_corpus
>>> summary = tokenize_corpus(TokenizeConfig(model="pretrained/dsl-codec-16k",
...     data="train.json", data_root="/data/LibriTTS", out="tokens/train",
...     num_codebooks=2))                                                 # doctest: +SKIP
>>> summary["audio_hours"], summary["light_share"]                      # doctest: +SKIP
(245.1, 0.31)
"""

from speechbrain_dsl.tokenize.corpus import Entry, plan_batches, read_corpus
from speechbrain_dsl.tokenize.runner import TokenizeConfig, tokenize_corpus

__all__ = ["Entry", "TokenizeConfig", "plan_batches", "read_corpus", "tokenize_corpus"]
