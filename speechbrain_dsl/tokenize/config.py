"""The settings of a tokenize run, as the command line gives them, each checked by name."""

import dataclasses
from typing import Optional

from speechbrain_dsl.inference.streaming import ENGINES
from speechbrain_dsl.nnet.routing import ENGINE_MODES as MODES  # oracle runs both tails

__all__ = ["TokenizeConfig"]


@dataclasses.dataclass
class TokenizeConfig:
    """The settings of a run (the command line's options; see ``python -m speechbrain_dsl.tokenize -h``).

    Attributes
    ----------
    model : str
        A packaged codec folder.
    data : str
        A SpeechBrain CSV or JSON manifest, or a folder of audio.
    out : str
        The output folder.
    num_codebooks : int, optional
        Tokens per frame (the first K codebooks; all by default).
    mode : str, optional
        ``full``, ``light`` or ``mixed`` (the model's calibrated threshold);
        ``mixed`` for a DSL model, ``full`` otherwise by default.
    engine : str, optional
        ``torch`` or ``onnxruntime``; onnxruntime by default on CPU for a DSL
        model (its graph is exported into the work folder when the package
        holds none), torch otherwise.
    device : str
        ``cpu``, ``cuda`` (``cuda:LOCAL_RANK``) or ``cuda:N``.
    workers : int
        Local processes (without torchrun).
    batch_seconds : float
        Padded audio seconds per batch.
    chunk_size : int
        Utterances per chunk (the unit written at once, and resumed).
    skip_bad_audio : bool
        Leave bad files out (listed in the summary) instead of refusing them.
    data_root, wav_key, id_from :
        See :func:`~speechbrain_dsl.tokenize.corpus.read_corpus`.
    resample : bool
        Resample other rates to the codec's (else such a file is bad).
    save_name : str
        Base name of the ark and scp files (DASB's ``save_name``).
    loader_workers : int
        DataLoader workers per rank reading audio (0: in the encoding process).
    threads : int, optional
        Torch and onnxruntime threads per rank (default: ``OMP_NUM_THREADS``,
        else the CPU cores shared among the local ranks).
    progress : bool, optional
        Show rank 0's progress bar (default: when stderr is a terminal).
    """

    model: str
    data: str
    out: str
    num_codebooks: Optional[int] = None
    mode: Optional[str] = None
    engine: Optional[str] = None
    device: str = "cpu"
    workers: int = 1
    batch_seconds: float = 60.0
    chunk_size: int = 64
    skip_bad_audio: bool = False
    data_root: Optional[str] = None
    wav_key: Optional[str] = None
    id_from: str = "path"
    resample: bool = True
    save_name: str = "tokens"
    loader_workers: int = 1
    threads: Optional[int] = None
    progress: Optional[bool] = None

    def check(self):
        """ValueErrors naming the option for values out of range."""
        if self.mode is not None and self.mode not in MODES:
            raise ValueError(f"--mode: expected one of {', '.join(MODES)}, got {self.mode!r}")
        if self.engine is not None and self.engine not in ENGINES:
            raise ValueError(f"--engine: expected one of {', '.join(ENGINES)}, got {self.engine!r}")
        for name in ("workers", "chunk_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"--{name}: expected >= 1, got {getattr(self, name)!r}")
        if self.loader_workers < 0:
            raise ValueError(f"--loader_workers: expected >= 0, got {self.loader_workers!r}")
        if self.threads is not None and self.threads < 1:
            raise ValueError(f"--threads: expected >= 1, got {self.threads!r}")
        if not self.batch_seconds > 0:
            raise ValueError(f"--batch_seconds: expected > 0, got {self.batch_seconds!r}")
        if self.num_codebooks is not None and self.num_codebooks < 1:
            raise ValueError(f"--num_codebooks: expected >= 1, got {self.num_codebooks!r}")
        if not self.save_name or "/" in self.save_name or self.save_name.startswith("."):
            raise ValueError(
                f"--save_name: expected a file name without '/' or leading dot, got "
                f"{self.save_name!r}"
            )
