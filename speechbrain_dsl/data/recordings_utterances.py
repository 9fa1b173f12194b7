"""Utterances of a few seconds, each a speaker's clips joined with pauses of silence.

A speaker's clips, shuffled by a generator seeded with the seed and the speaker
id, are joined with pauses of digital silence drawn from ``--pause-seconds``
(0.15-0.5 s) until the utterance reaches a length drawn from
``--utterance-seconds`` (3-8 s); see :func:`plan_utterances` for the exact rule.
A speaker's utterances depend only on its own clips, the seed and these options
(:mod:`speechbrain_dsl.data.recordings` writes them).
"""

import random
from typing import Sequence

__all__ = ["DEFAULT_PAUSE_SECONDS", "DEFAULT_UTTERANCE_SECONDS", "plan_utterances"]

DEFAULT_UTTERANCE_SECONDS = (3.0, 8.0)
DEFAULT_PAUSE_SECONDS = (0.15, 0.5)


def plan_utterances(
    durations: Sequence[float],
    rng: random.Random,
    utterance_seconds=DEFAULT_UTTERANCE_SECONDS,
    pause_seconds=DEFAULT_PAUSE_SECONDS,
) -> list:
    """Groups clips into utterances: lists of ``(clip index, pause before it)``.

    Clips are taken in a shuffled order. Each utterance gets a target length
    drawn from ``utterance_seconds`` and is closed once it reaches it. A clip
    that would push it past the maximum starts the next utterance instead,
    unless the current one is still below the minimum (then the clip joins and
    the utterance ends a little long). A last utterance below the minimum joins
    the previous one if that stays within the maximum, and is dropped otherwise.

    Example
    -------
    >>> plan = plan_utterances([1.0] * 10, random.Random(0), (3, 5), (0.2, 0.2))
    >>> [len(u) for u in plan], sorted(i for u in plan for i, _ in u) == list(range(10))
    ([4, 3, 3], True)
    >>> plan[0][0][1], plan[0][1][1]  # no pause before the first clip
    (0.0, 0.2)
    """
    lo, hi = utterance_seconds
    order = list(range(len(durations)))
    rng.shuffle(order)
    plan, current, length = [], [], 0.0
    target = rng.uniform(lo, hi)
    for index in order:
        pause = rng.uniform(*pause_seconds) if current else 0.0
        if current and length + pause + durations[index] > hi and length >= lo:
            plan.append(current)
            current, length, pause, target = [], 0.0, 0.0, rng.uniform(lo, hi)
        current.append((index, pause))
        length += pause + durations[index]
        if length >= target:
            plan.append(current)
            current, length, target = [], 0.0, rng.uniform(lo, hi)
    if current and length >= lo:
        plan.append(current)
    elif current and plan:
        last = sum(pause + durations[i] for i, pause in plan[-1])
        pause = rng.uniform(*pause_seconds)
        if last + pause + length <= hi:
            plan[-1] = plan[-1] + [(current[0][0], pause)] + current[1:]
    return plan
