"""Look-alike corpora in the exact on-disk layouts of real datasets, with real speech.

Speech comes from espeak-ng (:mod:`speechbrain_dsl.data.espeak`): each speaker has
its own accent, voice variant, pitch, pitch range and speaking rate; utterances
vary around them, with natural pauses at punctuation, leading and trailing
silence and, optionally, background noise. Everything we choose is deterministic
for a seed: texts, voices, prosody, silences, noise, gains and file names.
espeak-ng adds a little randomness of its own to the waveform that cannot be
seeded (see :mod:`speechbrain_dsl.data.espeak`), so audio is not bit-identical
across runs.

    python -m speechbrain_dsl.data.synthetic libritts --out DIR [--seed N]
        [--speakers S] [--utterances U] [--noise-prob P]
    python -m speechbrain_dsl.data.synthetic audioset --out DIR [--seed N]
        [--clips-per-class C]
    python -m speechbrain_dsl.data.synthetic speech_commands --out DIR [--seed N]
        [--speakers S]
    python -m speechbrain_dsl.data.synthetic libricount --out DIR [--seed N]
        [--mixtures-per-count M] [--max-count K]

Layouts written
---------------
``libritts``: ``DIR/LibriTTS/<subset>/<spk>/<chap>/<spk>_<chap>_<6d>_<6d>.wav``
(24 kHz, 16-bit) with ``.normalized.txt`` and ``.original.txt`` next to each wav,
``<spk>_<chap>.trans.tsv`` per chapter and ``speakers.tsv`` at the top. Speakers
are split between ``train-clean-100``, ``dev-clean`` and ``test-clean`` so the
held-out subsets have unseen speakers, as in LibriTTS.

``audioset``: ``DIR/AudioSet/eval_segments.csv`` (3 comment lines, then
``YTID, start_seconds, end_seconds, "labels"``), ``class_labels_indices.csv`` and
10-s clips under ``DIR/AudioSet/audio/`` in the common naming schemes
(``Y<YTID>.wav``, ``<YTID>.wav``, ``<YTID>_<start>.wav``). "Silence" clips hold
what AudioSet's class holds: digital silence, quiet tones, low-level room noise,
pink and white noise, mains hum. "Speech" clips are espeak-ng speech, clean or
with noise. A few Music clips (not a target class) and a few rows whose audio is
missing make the set look like a real partial download.

``speech_commands``: ``DIR/SpeechCommands/<word>/<8hex>_nohash_<n>.wav`` (16 kHz,
at most 1 s) for the 35 words of v0.02, ``_background_noise_/*.wav`` (long noise
recordings), ``validation_list.txt`` and ``testing_list.txt`` (speakers, by their
hash, split 80/10/10 as in the real set).

``libricount``: ``DIR/LibriCount/test/<k>_<id>.wav`` (5 s, 16 kHz) mixtures of
``k`` espeak-ng speakers talking over each other, with ``<k>_<id>.json``: a list of
``{"sex", "activity", "speaker_id"}``, one per speaker.
"""

import argparse
import hashlib
import json
import random
import re
import sys
import time
from pathlib import Path

import numpy as np
import soundfile as sf

from speechbrain_dsl.atomic import atomic_path, write_text
from speechbrain_dsl.data.espeak import (
    ACCENTS,
    ESPEAK_SAMPLE_RATE,
    FEMALE_VARIANTS,
    MALE_VARIANTS,
    synthesize_batches,
)

_SUBJECTS = (
    "the old captain",
    "my younger sister",
    "a tired farmer",
    "the clever student",
    "our new neighbour",
    "the quiet librarian",
    "a stranger in a grey coat",
    "the little boy",
    "her grandfather",
    "the village doctor",
    "a young sailor",
    "the king's messenger",
    "every child in the town",
    "the baker's wife",
)
_VERBS = (
    "walked slowly towards",
    "looked carefully at",
    "spoke softly about",
    "dreamed again of",
    "wrote a long letter about",
    "laughed loudly at",
    "thought for a moment about",
    "ran quickly past",
    "waited patiently near",
    "painted a picture of",
    "sang a song about",
    "forgot everything about",
)
_OBJECTS = (
    "the river",
    "the silver bridge",
    "an empty house",
    "the distant mountains",
    "a basket of apples",
    "the broken clock",
    "the crowded market",
    "a field of wheat",
    "the lighthouse",
    "the wooden gate",
    "the frozen lake",
    "a bright red kite",
    "the garden wall",
    "the last train home",
)
_TAILS = (
    "before the sun went down",
    "in the middle of the night",
    "without a word",
    "while the rain kept falling",
    "on a cold winter morning",
    "as the bells began to ring",
    "after a long and difficult day",
    "because nobody else would",
    "just as the door opened",
    "for {n} minutes",
    "with {n} of his friends",
    "at {n} o'clock",
)
_OPENERS = (
    "",
    "",
    "",
    "Well, ",
    "Yesterday, ",
    "Of course, ",
    "Later that week, ",
    "To everyone's surprise, ",
    "Once upon a time, ",
)
_ONES = (
    "zero one two three four five six seven eight nine ten eleven twelve "
    "thirteen fourteen fifteen sixteen seventeen eighteen nineteen"
).split()
_TENS = "twenty thirty forty fifty sixty seventy eighty ninety".split()

SUBSETS = ("train-clean-100", "dev-clean", "test-clean")


def number_to_words(n):
    """English words for 0 <= n < 100 (LibriTTS 'normalized' text spells numbers).

    Example
    -------
    >>> number_to_words(42)
    'forty two'
    """
    if n < 20:
        return _ONES[n]
    tens, ones = divmod(n, 10)
    return _TENS[tens - 2] + ("" if ones == 0 else " " + _ONES[ones])


def random_sentence(rng):
    """One sentence as ``(original, normalized)`` text, LibriTTS style.

    Example
    -------
    >>> original, normalized = random_sentence(random.Random(3))
    >>> original[0].isupper() and normalized[-1] in ".!?"
    True
    """
    n = rng.randint(2, 59)
    tail = rng.choice(_TAILS)
    words = [rng.choice(_SUBJECTS), rng.choice(_VERBS), rng.choice(_OBJECTS)]
    body = " ".join(words) + (", " if rng.random() < 0.6 else " ") + tail
    body = rng.choice(_OPENERS) + body
    body = body[0].upper() + body[1:] + rng.choice(".....!?")
    return body.format(n=n), body.format(n=number_to_words(n))


def speaker_profile(rng, speaker_id):
    """A fixed voice for a speaker: accent, variant, pitch, range and rate."""
    female = rng.random() < 0.5
    variant = rng.choice(FEMALE_VARIANTS if female else MALE_VARIANTS)
    return {
        "id": speaker_id,
        "gender": "F" if female else "M",
        "voice": f"{rng.choice(ACCENTS)}+{variant}",
        "pitch": rng.randint(30, 70),
        "range": rng.randint(20, 90),
        "rate": rng.randint(140, 200),
    }


def plan_utterance(profile, text, rng, noise_prob):
    """Every random choice of one utterance, drawn from the speaker's ``rng``."""
    return {
        "request": {
            "text": text,
            "voice": profile["voice"],
            "rate": profile["rate"] + rng.randint(-15, 15),
            "pitch": min(99, max(0, profile["pitch"] + rng.randint(-6, 6))),
            "pitch_range": profile["range"],
            "word_gap": rng.choice((0, 0, 0, 1, 2)),
        },
        "lead": rng.uniform(0.1, 0.5),
        "trail": rng.uniform(0.1, 0.6),
        "gain": rng.uniform(0.25, 0.8),
        "snr_db": rng.uniform(10, 35) if rng.random() < noise_prob else None,
        "noise_seed": rng.randint(0, 2**31),
    }


def render(plan, speech, sample_rate):
    """Adds the planned silences, gain and noise to ``speech`` and resamples it."""
    # Imported here: synthesis workers re-import this module, and should start fast.
    import torch
    import torchaudio

    lead = np.zeros(int(plan["lead"] * ESPEAK_SAMPLE_RATE), np.float32)
    trail = np.zeros(int(plan["trail"] * ESPEAK_SAMPLE_RATE), np.float32)
    audio = np.concatenate([lead, speech, trail]) * plan["gain"]
    if plan["snr_db"] is not None:
        speech_power = float(np.mean(audio**2)) + 1e-10
        noise = np.random.default_rng(plan["noise_seed"]).standard_normal(len(audio))
        audio = audio + noise.astype(np.float32) * np.sqrt(
            speech_power / 10 ** (plan["snr_db"] / 10)
        )
    wav = torchaudio.functional.resample(
        torch.from_numpy(audio.astype(np.float32)), ESPEAK_SAMPLE_RATE, sample_rate
    )
    return wav.clamp(-1, 1).numpy()


def write_atomic_wav(path, audio, sample_rate):
    """Writes 16-bit PCM ``audio`` to ``path`` via a temporary file and a rename."""
    with atomic_path(path, suffix=".wav") as tmp:
        sf.write(tmp, audio, sample_rate, subtype="PCM_16")


def make_libritts(
    out, seed=0, speakers=20, utterances=20, noise_prob=0.2, sample_rate=24000, held_out_share=0.2
):
    """Writes a LibriTTS-layout corpus under ``out/LibriTTS``; returns its path.

    Arguments
    ---------
    out : str or Path
    seed : int
    speakers : int
        Total speakers; ``held_out_share`` of them (at least one each) go to
        ``dev-clean`` and ``test-clean``, the rest to ``train-clean-100``.
    utterances : int
        Utterances per speaker, spread over 1-3 chapters.
    noise_prob : float
        Share of utterances with background noise (10-35 dB SNR).
    sample_rate : int
        LibriTTS is 24 kHz.
    held_out_share : float

    Returns
    -------
    Path
    """
    if speakers < 3:
        raise ValueError(f"--speakers must be >= 3 (one per subset), got {speakers}")
    if utterances < 1:
        raise ValueError(f"--utterances must be >= 1, got {utterances}")
    root = Path(out) / "LibriTTS"
    rng = random.Random(seed)
    speaker_ids = rng.sample(range(100, 9999), speakers)
    n_held = max(1, round(speakers * held_out_share / 2))
    subset_of = {s: "dev-clean" for s in speaker_ids[:n_held]}
    subset_of.update({s: "test-clean" for s in speaker_ids[n_held : 2 * n_held]})
    subset_of.update({s: "train-clean-100" for s in speaker_ids[2 * n_held :]})

    speaker_rows = ["READER\tGENDER\tSUBSET\tNAME"]
    plans = []  # per speaker: [(folder, utterance id, original, normalized, plan)]
    for spk in sorted(speaker_ids):
        # One generator per speaker: a speaker's choices don't depend on the others.
        srng = random.Random(f"{seed}-{spk}")
        profile = speaker_profile(srng, spk)
        speaker_rows.append(f"{spk}\t{profile['gender']}\t{subset_of[spk]}\tSpeaker {spk}")
        chapters = srng.sample(range(1000, 99999), srng.randint(1, 3))
        utts = []
        for index in range(utterances):
            chapter = chapters[index % len(chapters)]
            folder = root / subset_of[spk] / str(spk) / str(chapter)
            utt = f"{spk}_{chapter}_{srng.randint(0, 999999):06d}_{index:06d}"
            pairs = [random_sentence(srng) for _ in range(srng.choice((1, 1, 2)))]
            original = " ".join(p[0] for p in pairs)
            normalized = " ".join(p[1] for p in pairs)
            utts.append(
                (
                    folder,
                    utt,
                    original,
                    normalized,
                    plan_utterance(profile, normalized, srng, noise_prob),
                )
            )
        plans.append(utts)

    speech = synthesize_batches([[u[4]["request"] for u in utts] for utts in plans])
    for utts, spoken in zip(plans, speech):
        for (folder, utt, original, normalized, plan), audio in zip(utts, spoken):
            folder.mkdir(parents=True, exist_ok=True)
            write_atomic_wav(folder / f"{utt}.wav", render(plan, audio, sample_rate), sample_rate)
            write_text(folder / f"{utt}.original.txt", original)
            write_text(folder / f"{utt}.normalized.txt", normalized)
            chapter_id = "_".join(utt.split("_")[:2])
            with open(folder / f"{chapter_id}.trans.tsv", "a", encoding="utf-8") as f:
                f.write(f"{utt}\t{original}\t{normalized}\n")
    write_text(root / "speakers.tsv", "\n".join(speaker_rows) + "\n")
    return root


AUDIOSET_CLASSES = (
    ("/m/09x0r", "Speech"),
    ("/m/028v0c", "Silence"),
    ("/m/04rlf", "Music"),
    ("/m/05zppz", "Male speech, man speaking"),
    ("/m/02zsn", "Female speech, woman speaking"),
)
SILENCE_KINDS = ("digital", "tone", "room", "pink", "white", "hum")


def pink_noise(n, np_rng):
    """Pink (1/f) noise by spectral shaping of white noise, unit RMS."""
    spectrum = np.fft.rfft(np_rng.standard_normal(n))
    spectrum /= np.sqrt(np.maximum(np.arange(len(spectrum)), 1))
    noise = np.fft.irfft(spectrum, n)
    return noise / (np.sqrt(np.mean(noise**2)) + 1e-12)


def silence_like(kind, seconds, sample_rate, rng, np_rng):
    """A clip of what AudioSet labels Silence (quiet, stationary, or nothing)."""
    n = int(seconds * sample_rate)
    t = np.arange(n) / sample_rate
    level = 10 ** (rng.uniform(-60, -40) / 20)  # -60..-40 dBFS
    if kind == "digital":
        return np.zeros(n, np.float32)
    if kind == "tone":
        return (level * np.sin(2 * np.pi * rng.uniform(200, 2000) * t)).astype(np.float32)
    if kind == "room":
        room = pink_noise(n, np_rng) * level
        return (room + 0.3 * level * np.sin(2 * np.pi * 120 * t)).astype(np.float32)
    if kind == "pink":
        return (pink_noise(n, np_rng) * level).astype(np.float32)
    if kind == "white":
        return (np_rng.standard_normal(n) * level).astype(np.float32)
    base = rng.choice((50, 60))  # mains hum with harmonics
    hum = sum(np.sin(2 * np.pi * base * k * t) / k for k in (1, 2, 3))
    return (level * hum).astype(np.float32)


def music_like(seconds, sample_rate, rng):
    """A few bars of decaying sine notes (a non-target class)."""
    n = int(seconds * sample_rate)
    out = np.zeros(n, np.float32)
    note = int(0.25 * sample_rate)
    for start in range(0, n - note, note):
        t = np.arange(note) / sample_rate
        freq = 220 * 2 ** (rng.randint(0, 24) / 12)
        out[start : start + note] += 0.2 * np.sin(2 * np.pi * freq * t) * np.exp(-4 * t)
    return out


def fit_to(audio, n):
    """Pads (centred) or cuts ``audio`` to ``n`` samples."""
    if len(audio) >= n:
        return audio[:n]
    left = (n - len(audio)) // 2
    return np.pad(audio, (left, n - len(audio) - left))


NOISE_KINDS = SILENCE_KINDS[1:] + ("music",)  # digital silence holds nothing to code
NOISE_SUBSETS = {"train-noise": 12, "dev-noise": 2, "test-noise": 2}  # "speakers" per subset


def make_noise_subsets(out, seed=0, clips=20, sample_rate=24000):
    """Writes non-speech subsets (``train-noise``, ``dev-noise``, ``test-noise``) beside a corpus.

    Noise-like "silence" (quiet tones, room tone, pink and white noise, mains hum)
    and simple music, 3-8 s each at -60 to -25 dBFS, in the LibriTTS layout so the
    codec recipe trains, validates and calibrates on them like any subset. Each
    pseudo-speaker is one seed of the generators; transcripts name the kind.

    Arguments
    ---------
    out : str or Path
        The folder holding ``LibriTTS`` (created if missing).
    seed : int
    clips : int
        Clips per pseudo-speaker.
    sample_rate : int

    Returns
    -------
    Path
        The ``LibriTTS`` folder.
    """
    if clips < 1:
        raise ValueError(f"--clips must be >= 1, got {clips}")
    root = Path(out) / "LibriTTS"
    rng = random.Random(f"noise-{seed}")
    speaker = 90000
    for subset, speakers in NOISE_SUBSETS.items():
        for _ in range(speakers):
            speaker += 1
            folder = root / subset / str(speaker) / "1"
            folder.mkdir(parents=True, exist_ok=True)
            np_rng = np.random.default_rng(rng.randint(0, 2**31))
            lines = []
            for index in range(clips):
                kind = NOISE_KINDS[(index + speaker) % len(NOISE_KINDS)]
                seconds = rng.uniform(3.0, 8.0)
                if kind == "music":
                    audio = music_like(seconds, sample_rate, rng)
                else:
                    audio = silence_like(kind, seconds, sample_rate, rng, np_rng)
                rms = np.sqrt(np.mean(np.square(audio, dtype=np.float64))) + 1e-12
                audio = audio * (10 ** (rng.uniform(-60.0, -25.0) / 20) / rms)
                utt = f"{speaker}_1_{index:06d}_000000"
                write_atomic_wav(folder / f"{utt}.wav", np.clip(audio, -1, 1), sample_rate)
                write_text(folder / f"{utt}.normalized.txt", kind)
                write_text(folder / f"{utt}.original.txt", kind)
                lines.append(f"{utt}\t{kind}\t{kind}\n")
            write_text(folder / f"{speaker}_1.trans.tsv", "".join(lines))
    return root


def make_audioset(
    out, seed=0, clips_per_class=20, sample_rate=16000, seconds=10.0, music_clips=3, missing_clips=2
):
    """Writes an AudioSet look-alike (Speech vs Silence) under ``out/AudioSet``.

    Returns
    -------
    Path
    """
    if clips_per_class < 1:
        raise ValueError(f"--clips-per-class must be >= 1, got {clips_per_class}")
    root = Path(out) / "AudioSet"
    audio_dir = root / "audio"
    audio_dir.mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    np_rng = np.random.default_rng(seed)
    ytid = lambda: "".join(
        rng.choice("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_")
        for _ in range(11)
    )  # noqa: E731
    n = int(seconds * sample_rate)

    rows, clips = [], []  # rows: (ytid, start, labels); clips: (ytid, start, audio)
    for i in range(clips_per_class):
        kind = SILENCE_KINDS[i % len(SILENCE_KINDS)]
        rows.append((ytid(), float(rng.randint(0, 300)), ["/m/028v0c"]))
        clips.append(silence_like(kind, seconds, sample_rate, rng, np_rng))
    requests, speech_rows = [], []
    for i in range(clips_per_class):
        profile = speaker_profile(rng, i)
        text = " ".join(random_sentence(rng)[1] for _ in range(rng.choice((1, 2))))
        plan = plan_utterance(profile, text, rng, noise_prob=0.5)
        plan["lead"], plan["trail"] = rng.uniform(0.0, 1.0), 0.0
        requests.append(plan)
        labels = ["/m/09x0r", "/m/05zppz" if profile["gender"] == "M" else "/m/02zsn"]
        speech_rows.append((ytid(), float(rng.randint(0, 300)), labels))
    spoken = synthesize_batches([[p["request"] for p in requests]])[0]
    for row, plan, speech in zip(speech_rows, requests, spoken):
        rows.append(row)
        clips.append(fit_to(render(plan, speech, sample_rate), n))
    for _ in range(music_clips):
        rows.append((ytid(), float(rng.randint(0, 300)), ["/m/04rlf"]))
        clips.append(music_like(seconds, sample_rate, rng))
    order = list(range(len(rows)))
    rng.shuffle(order)
    schemes = ("Y{id}.wav", "{id}.wav", "{id}_{start}.wav")
    for k in order:
        yt, start, _ = rows[k]
        name = schemes[k % len(schemes)].format(id=yt, start=int(start))
        write_atomic_wav(audio_dir / name, clips[k], sample_rate)
    for _ in range(missing_clips):  # listed in the CSV, never downloaded
        rows.append((ytid(), float(rng.randint(0, 300)), [rng.choice(("/m/09x0r", "/m/028v0c"))]))
        order.append(len(rows) - 1)

    lines = [
        "# Segments csv created by speechbrain_dsl.data.synthetic",
        f"# num_ytids={len(rows)}, num_segs={len(rows)}, num_unique_labels={len(AUDIOSET_CLASSES)}",
        "# YTID, start_seconds, end_seconds, positive_labels",
    ]
    for k in order:
        yt, start, labels = rows[k]
        lines.append(f'{yt}, {start:.3f}, {start + seconds:.3f}, "{",".join(labels)}"')
    write_text(root / "eval_segments.csv", "\n".join(lines) + "\n")
    index = ["index,mid,display_name"] + [
        f'{i},{mid},"{name}"' for i, (mid, name) in enumerate(AUDIOSET_CLASSES)
    ]
    write_text(root / "class_labels_indices.csv", "\n".join(index) + "\n")
    return root


SPEECH_COMMANDS_WORDS = (
    "backward bed bird cat dog down eight five follow forward four go happy house learn "
    "left marvin nine no off on one right seven sheila six stop three tree two up visual "
    "wow yes zero"
).split()


SPEECH_COMMANDS_MAX_WAVS_PER_CLASS = 2**27 - 1  # ~134M, from the dataset's README


def speech_commands_set(filename, validation_percentage=10, testing_percentage=10):
    """The split of a Speech Commands file by the dataset's own rule (its README's ``which_set``).

    The speaker id (the name before ``_nohash_``) is hashed with SHA-1, so a
    speaker's files always land in the same split whatever else is added.

    Arguments
    ---------
    filename : str
        A file name or path such as ``yes/0a7c2a8d_nohash_0.wav``.
    validation_percentage, testing_percentage : float

    Returns
    -------
    str
        ``"validation"``, ``"testing"`` or ``"training"``.

    Example
    -------
    >>> [speech_commands_set(f"yes/{s}_nohash_0.wav") for s in ("d82c07cd", "9e4d6e3c", "c2094cac")]
    ['training', 'validation', 'testing']
    """
    base_name = Path(filename).name
    speaker = re.sub(r"_nohash_.*$", "", base_name)
    hashed = hashlib.sha1(speaker.encode("utf-8")).hexdigest()
    percentage = (int(hashed, 16) % (SPEECH_COMMANDS_MAX_WAVS_PER_CLASS + 1)) * (
        100.0 / SPEECH_COMMANDS_MAX_WAVS_PER_CLASS
    )
    if percentage < validation_percentage:
        return "validation"
    if percentage < testing_percentage + validation_percentage:
        return "testing"
    return "training"


def make_speech_commands(out, seed=0, speakers=30, noise_files=3):
    """Writes a Speech Commands v0.02 look-alike under ``out/SpeechCommands``.

    A tenth of the speakers (at least one) go to ``validation_list.txt`` and a
    tenth to ``testing_list.txt``, and every speaker id (``<8hex>``) is drawn so
    that the dataset's hash rule (:func:`speech_commands_set`) puts the speaker in
    that same split: splitting by the lists or by the hash gives the same sets.
    """
    if speakers < 10:
        raise ValueError(f"--speakers must be >= 10 (for 80/10/10 splits), got {speakers}")
    root = Path(out) / "SpeechCommands"
    rng = random.Random(seed)
    profiles = [speaker_profile(rng, i) for i in range(speakers)]
    hashes = [f"{rng.getrandbits(32):08x}" for _ in range(speakers)]
    batches, words = [], []
    for profile in profiles:
        requests, files = [], []
        for word in SPEECH_COMMANDS_WORDS:
            for n in range(rng.choice((1, 1, 2))):
                plan = plan_utterance(profile, word, rng, noise_prob=0.3)
                plan["request"]["rate"] = rng.randint(120, 220)
                plan["lead"], plan["trail"] = rng.uniform(0.0, 0.2), 0.0
                requests.append(plan)
                files.append((word, n))
        batches.append(requests)
        words.append(files)
    spoken = synthesize_batches([[p["request"] for p in plans] for plans in batches])
    noise_dir = root / "_background_noise_"
    noise_dir.mkdir(parents=True, exist_ok=True)
    np_rng = np.random.default_rng(seed)
    for kind in ("white", "pink", "room", "hum")[:noise_files]:
        noise = silence_like(kind, 60.0, 16000, rng, np_rng) * 30  # audible, ~-25 dBFS
        write_atomic_wav(noise_dir / f"{kind}_noise.wav", np.clip(noise, -1, 1), 16000)
    order = list(range(speakers))
    rng.shuffle(order)
    n_val = n_test = max(1, speakers // 10)
    split = {i: "training" for i in order}
    split.update({i: "validation" for i in order[:n_val]})
    split.update({i: "testing" for i in order[n_val : n_val + n_test]})
    hashes = _speaker_ids_for_splits(hashes, [split[i] for i in range(speakers)], seed)
    names = [
        [f"{word}/{speaker}_nohash_{n}.wav" for word, n in files]
        for speaker, files in zip(hashes, words)
    ]
    for plans, files, audio in zip(batches, names, spoken):
        for plan, name, speech in zip(plans, files, audio):
            path = root / name
            path.parent.mkdir(parents=True, exist_ok=True)
            write_atomic_wav(path, render(plan, speech, 16000)[:16000], 16000)
    for list_name, chosen in (
        ("validation_list.txt", order[:n_val]),
        ("testing_list.txt", order[n_val : n_val + n_test]),
    ):
        lines = sorted(name for i in chosen for name in names[i])
        write_text(root / list_name, "\n".join(lines) + "\n")
    return root


def _speaker_ids_for_splits(ids, splits, seed):
    """``ids`` (8-hex speaker ids), each redrawn until the hash rule gives its split.

    Ids the rule already agrees with are kept; redraws come from their own
    generator, so the rest of the corpus is what the seed always gave.
    """
    rng = random.Random(f"speech-commands-speaker-ids-{seed}")
    chosen = []
    for speaker, split in zip(ids, splits):
        while speech_commands_set(f"{speaker}_nohash_0.wav") != split or speaker in chosen:
            speaker = f"{rng.getrandbits(32):08x}"
        chosen.append(speaker)
    return chosen


def make_libricount(out, seed=0, mixtures_per_count=10, max_count=5, seconds=5.0):
    """Writes a LibriCount look-alike under ``out/LibriCount/test``."""
    if not 0 < max_count <= 10:
        raise ValueError(f"--max-count must be in 1..10, got {max_count}")
    root = Path(out) / "LibriCount"
    folder = root / "test"
    folder.mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    n = int(seconds * 16000)
    pool = [speaker_profile(rng, i) for i in range(40)]
    mixtures = []
    for k in range(max_count + 1):
        for _ in range(mixtures_per_count):
            speakers = rng.sample(pool, k)
            plans = []
            for profile in speakers:
                text = " ".join(random_sentence(rng)[1] for _ in range(2))
                plan = plan_utterance(profile, text, rng, noise_prob=0.0)
                plan["lead"], plan["trail"] = rng.uniform(0.0, 1.5), 0.0
                plan["gain"] = rng.uniform(0.2, 0.5)
                plans.append(plan)
            mixtures.append((k, f"{rng.getrandbits(40):010x}", speakers, plans))
    spoken = synthesize_batches([[p["request"] for p in m[3]] for m in mixtures])
    for (k, mix_id, speakers, plans), audio in zip(mixtures, spoken):
        mix = np.zeros(n, np.float32)
        meta = []
        for profile, plan, speech in zip(speakers, plans, audio):
            voice = fit_to(render(plan, speech, 16000), n)[:n]
            voice = np.pad(voice, (0, n - len(voice)))
            mix += voice
            active = np.abs(voice) > 1e-3
            meta.append(
                {
                    "sex": profile["gender"],
                    "speaker_id": profile["id"],
                    "activity": [[float(s) / 16000, float(e) / 16000] for s, e in _spans(active)],
                }
            )
        peak = float(np.abs(mix).max())
        write_atomic_wav(folder / f"{k}_{mix_id}.wav", mix / max(1.0, peak / 0.95), 16000)
        write_text(folder / f"{k}_{mix_id}.json", json.dumps(meta))
    return root


def _spans(active, min_gap=1600):
    """Start/end sample pairs of runs of True, merging gaps under ``min_gap``."""
    spans, start, last = [], None, None
    for i in np.flatnonzero(active):
        if start is None:
            start = last = i
        elif i - last > min_gap:
            spans.append((start, last + 1))
            start = i
        last = i
    if start is not None:
        spans.append((start, last + 1))
    return spans


def main(argv=None):
    """Command-line entry point."""
    parser = argparse.ArgumentParser(
        prog="python -m speechbrain_dsl.data.synthetic",
        description="Generate look-alike corpora with espeak-ng speech.",
    )
    sub = parser.add_subparsers(dest="corpus", required=True)
    libritts = sub.add_parser("libritts", help="LibriTTS layout (24 kHz)")
    libritts.add_argument("--out", required=True, help="output folder")
    libritts.add_argument("--seed", type=int, default=0)
    libritts.add_argument("--speakers", type=int, default=20)
    libritts.add_argument("--utterances", type=int, default=20, help="per speaker")
    libritts.add_argument("--noise-prob", type=float, default=0.2)
    noise = sub.add_parser(
        "noise", help="non-speech subsets (train/dev/test-noise) in a LibriTTS folder"
    )
    noise.add_argument("--out", required=True, help="the folder holding LibriTTS")
    noise.add_argument("--seed", type=int, default=0)
    noise.add_argument("--clips", type=int, default=20, help="per pseudo-speaker")
    audioset = sub.add_parser("audioset", help="AudioSet Speech vs Silence look-alike")
    audioset.add_argument("--out", required=True, help="output folder")
    audioset.add_argument("--seed", type=int, default=0)
    audioset.add_argument("--clips-per-class", type=int, default=20)
    commands = sub.add_parser("speech_commands", help="Speech Commands v0.02 layout")
    commands.add_argument("--out", required=True, help="output folder")
    commands.add_argument("--seed", type=int, default=0)
    commands.add_argument("--speakers", type=int, default=30)
    count = sub.add_parser("libricount", help="LibriCount layout")
    count.add_argument("--out", required=True, help="output folder")
    count.add_argument("--seed", type=int, default=0)
    count.add_argument("--mixtures-per-count", type=int, default=10)
    count.add_argument("--max-count", type=int, default=5)
    args = parser.parse_args(argv)

    start = time.time()
    if args.corpus == "libritts":
        if (Path(args.out) / "LibriTTS").exists():
            print(
                f"error: {Path(args.out) / 'LibriTTS'} already exists; choose an empty --out",
                file=sys.stderr,
            )
            return 2
        try:
            root = make_libritts(
                args.out, args.seed, args.speakers, args.utterances, args.noise_prob
            )
        except ValueError as err:
            print(f"error: {err}", file=sys.stderr)
            return 2
        wavs = list(root.rglob("*.wav"))
        seconds = sum(sf.info(str(w)).duration for w in wavs)
        print(
            f"wrote {len(wavs)} utterances ({seconds / 60:.1f} min) to {root} "
            f"in {time.time() - start:.1f} s"
        )
    elif args.corpus == "noise":
        existing = [n for n in NOISE_SUBSETS if (Path(args.out) / "LibriTTS" / n).exists()]
        if existing:
            print(
                f"error: {existing} already exist in {Path(args.out) / 'LibriTTS'}", file=sys.stderr
            )
            return 2
        try:
            root = make_noise_subsets(args.out, args.seed, args.clips)
        except ValueError as err:
            print(f"error: {err}", file=sys.stderr)
            return 2
        wavs = [w for n in NOISE_SUBSETS for w in (root / n).rglob("*.wav")]
        seconds = sum(sf.info(str(w)).duration for w in wavs)
        print(
            f"wrote {len(wavs)} non-speech clips ({seconds / 60:.1f} min) to {root} "
            f"in {time.time() - start:.1f} s"
        )
    elif args.corpus == "audioset":
        if (Path(args.out) / "AudioSet").exists():
            print(
                f"error: {Path(args.out) / 'AudioSet'} already exists; choose an empty --out",
                file=sys.stderr,
            )
            return 2
        try:
            root = make_audioset(args.out, args.seed, args.clips_per_class)
        except ValueError as err:
            print(f"error: {err}", file=sys.stderr)
            return 2
        wavs = list(root.rglob("*.wav"))
        print(f"wrote {len(wavs)} clips to {root} in {time.time() - start:.1f} s")
    elif args.corpus in ("speech_commands", "libricount"):
        name = {"speech_commands": "SpeechCommands", "libricount": "LibriCount"}[args.corpus]
        if (Path(args.out) / name).exists():
            print(
                f"error: {Path(args.out) / name} already exists; choose an empty --out",
                file=sys.stderr,
            )
            return 2
        try:
            if args.corpus == "speech_commands":
                root = make_speech_commands(args.out, args.seed, args.speakers)
            else:
                root = make_libricount(args.out, args.seed, args.mixtures_per_count, args.max_count)
        except ValueError as err:
            print(f"error: {err}", file=sys.stderr)
            return 2
        wavs = list(root.rglob("*.wav"))
        print(f"wrote {len(wavs)} files to {root} in {time.time() - start:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
