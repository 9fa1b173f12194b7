"""The espeak-ng speech of the look-alike corpora: what is said, by which voice, rendered how.

Sentences in LibriTTS style (numbers spelled out in the normalized text), a fixed
voice per speaker (accent, variant, pitch, range, rate), every random choice of
one utterance (prosody around the speaker's voice, silences, gain, noise), and the
rendering of espeak-ng's output with those choices at a corpus's sample rate.
All choices come from the generator passed in, so a corpus is deterministic for
its seed (espeak-ng's own randomness aside, see :mod:`speechbrain_dsl.data.espeak`).
"""

import numpy as np

from speechbrain_dsl.data.espeak import (
    ACCENTS,
    ESPEAK_SAMPLE_RATE,
    FEMALE_VARIANTS,
    MALE_VARIANTS,
)

__all__ = [
    "number_to_words",
    "plan_utterance",
    "random_sentence",
    "render",
    "speaker_profile",
]

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
    >>> import random
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
