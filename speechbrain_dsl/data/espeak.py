"""Real synthetic speech from espeak-ng, with no downloads.

The PyPI package ``espeakng-loader`` ships ``libespeak-ng`` and its voice data; we
call the C API through ``ctypes`` with synchronous output and collect the samples
in a callback. espeak-ng keeps global state, so one process-wide synthesizer is
shared behind a lock.

espeak-ng also draws on internal randomness and state that carries from one
utterance to the next (``rand()``, waveform phase), which cannot be seeded from
outside: the same request can come out with slightly different samples (a
log-mel distance around 0.1, where 20 dB of white noise is 0.9) and a length a
few samples apart. Corpora built on it are therefore reproducible in everything
we choose (texts, voices, prosody, silences, noise, gains, file names), not
bit for bit. :func:`synthesize_batches` runs each batch in a fresh process, which
keeps one batch's state out of the next and uses both cores.

Output: mono float32 in [-1, 1] at :data:`ESPEAK_SAMPLE_RATE` (22,050 Hz).
"""

import ctypes
import multiprocessing
import threading
from concurrent.futures import ProcessPoolExecutor

import numpy as np

ESPEAK_SAMPLE_RATE = 22050
_AUDIO_OUTPUT_SYNCHRONOUS = 2
_POS_CHARACTER = 1
_CHARS_UTF8 = 1
_PARAMETERS = {"rate": 1, "volume": 2, "pitch": 3, "range": 4, "word_gap": 7}

# Voice variants shipped with espeak-ng (espeak-ng-data/voices/!v).
FEMALE_VARIANTS = ("f1", "f2", "f3", "f4", "f5", "belinda", "linda", "anika", "annie")
MALE_VARIANTS = ("m1", "m2", "m3", "m4", "m5", "m6", "m7", "adam", "david", "ed", "john")
ACCENTS = ("en-us", "en", "en-gb-x-rp", "en-gb-scotland", "en-029")

_CALLBACK = ctypes.CFUNCTYPE(
    ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.c_void_p
)


class _Espeak:
    """Process-wide handle on libespeak-ng (initialised once)."""

    def __init__(self):
        import espeakng_loader

        self.lib = ctypes.CDLL(espeakng_loader.get_library_path())
        self.lib.espeak_Initialize.restype = ctypes.c_int
        rate = self.lib.espeak_Initialize(
            _AUDIO_OUTPUT_SYNCHRONOUS, 0, espeakng_loader.get_data_path().encode(), 0
        )
        if rate != ESPEAK_SAMPLE_RATE:
            raise RuntimeError(f"espeak-ng initialisation failed or changed rate (returned {rate})")
        self.chunks = []
        self.callback = _CALLBACK(self._collect)  # keep a reference: C holds it
        self.lib.espeak_SetSynthCallback(self.callback)
        self.lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
        self.lib.espeak_Synth.argtypes = [
            ctypes.c_char_p,
            ctypes.c_size_t,
            ctypes.c_uint,
            ctypes.c_int,
            ctypes.c_uint,
            ctypes.c_uint,
            ctypes.c_void_p,
            ctypes.c_void_p,
        ]
        self.lock = threading.Lock()

    def _collect(self, samples, count, events):
        if count > 0:
            self.chunks.append(np.ctypeslib.as_array(samples, shape=(count,)).copy())
        return 0

    def synthesize(self, text, voice, **params):
        with self.lock:
            if self.lib.espeak_SetVoiceByName(voice.encode()) != 0:
                raise ValueError(f"espeak-ng has no voice {voice!r}")
            for name, value in params.items():
                self.lib.espeak_SetParameter(_PARAMETERS[name], int(value), 0)
            self.chunks = []
            data = text.encode("utf-8") + b"\0"
            err = self.lib.espeak_Synth(
                data, len(data), 0, _POS_CHARACTER, 0, _CHARS_UTF8, None, None
            )
            if err != 0:
                raise RuntimeError(f"espeak_Synth failed with code {err} for {text!r}")
            audio = np.concatenate(self.chunks) if self.chunks else np.zeros(0, np.int16)
        return audio.astype(np.float32) / 32768.0


_ENGINE = None


def synthesize(text, voice="en-us+f3", rate=175, pitch=50, pitch_range=50, word_gap=0):
    """Speaks ``text`` with espeak-ng.

    Arguments
    ---------
    text : str
    voice : str
        ``<language>[+<variant>]``, e.g. ``en-us+f3`` or ``en-gb-x-rp+m3``.
    rate : int
        Words per minute (80-450).
    pitch : int
        Base pitch, 0-99.
    pitch_range : int
        Pitch variation, 0-99 (0 = monotone).
    word_gap : int
        Extra pause between words, in units of 10 ms.

    Returns
    -------
    numpy.ndarray
        float32 samples at 22,050 Hz.

    Example
    -------
    >>> audio = synthesize("hello world")
    >>> audio.dtype, 0.3 < len(audio) / ESPEAK_SAMPLE_RATE < 3.0
    (dtype('float32'), True)
    """
    global _ENGINE
    if _ENGINE is None:
        _ENGINE = _Espeak()
    return _ENGINE.synthesize(
        text, voice, rate=rate, pitch=pitch, range=pitch_range, word_gap=word_gap
    )


def _synthesize_all(requests):
    return [synthesize(**request) for request in requests]


def synthesize_batches(batches, workers=2):
    """Speaks batches of requests, each batch in a fresh process (reproducible).

    Arguments
    ---------
    batches : list of list of dict
        Keyword arguments of :func:`synthesize`, e.g. one batch per speaker.
    workers : int
        Processes running at once.

    Returns
    -------
    list of list of numpy.ndarray
        Audio at 22,050 Hz, in the order of the requests.

    Example
    -------
    >>> batches = [[{"text": "one"}, {"text": "two"}], [{"text": "three"}]]
    >>> audio = synthesize_batches(batches)
    >>> [len(b) for b in audio], audio[1][0].dtype
    ([2, 1], dtype('float32'))
    """
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(workers, mp_context=context, max_tasks_per_child=1) as pool:
        return list(pool.map(_synthesize_all, batches))
