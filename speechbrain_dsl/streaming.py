"""Streaming encoding with per-segment routing, equal to offline encoding.

:class:`StreamingEncoder` takes audio chunks of any size. Whenever a whole routing
segment (``segment_frames`` frames, 1 s by default) has arrived, it encodes the
segment together with just enough past audio to cover the encoder's receptive
field, routes it (the switch needs the whole segment), runs only the chosen tail
and emits the segment's frames. Because every layer is causal with a known
receptive field, the frames are the ones offline encoding of the whole stream
produces. :meth:`StreamingEncoder.flush` emits the last, partial segment.

Latency is one segment (plus compute): the price of routing per segment.
"""

import math

import torch
import torch.nn.functional as F


class StreamingEncoder:
    """Chunk-by-chunk encoder for one audio stream.

    Arguments
    ---------
    codec : DSLCodec
        With a DSL encoder that routes fixed-size segments.

    Example
    -------
    >>> from hyperpyyaml import load_hyperpyyaml
    >>> codec = load_hyperpyyaml(open("hparams/soundstream_dsl.yaml"))["codec"].eval()
    >>> stream = StreamingEncoder(codec)
    >>> wav = torch.randn(40000) * 0.1
    >>> parts = [stream.push(chunk) for chunk in wav.split(7000)] + [stream.flush()]
    >>> emb = torch.cat(parts)
    >>> offline, _ = codec.encode_features(wav[None, None])
    >>> emb.shape, torch.allclose(emb, offline[0].T, atol=1e-5)
    (torch.Size([125, 64]), True)
    """

    def __init__(self, codec):
        if not codec.has_dsl:
            raise ValueError("StreamingEncoder needs a codec with a DSL encoder")
        encoder = codec.encoder
        if encoder.dsl.segment_frames is None:
            raise ValueError("streaming needs fixed-size routing segments (segment_frames)")
        self.codec = codec
        self.hop = encoder.hop
        self.segment_samples = encoder.dsl.segment_frames * self.hop
        dsl = encoder.dsl
        lookback = encoder.base.lookback + encoder.base.hop * max(
            dsl.full_tail.lookback, dsl.light_tail.lookback
        )
        self.context_samples = max(0, math.ceil((lookback + 1) / self.hop) - 1) * self.hop
        self.routes = []
        self.reset()

    def reset(self):
        """Starts a new stream."""
        self.history = torch.zeros(0)
        self.pending = torch.zeros(0)
        self.routes = []

    @torch.no_grad()
    def push(self, chunk):
        """Adds samples ``[S]`` (or ``[1, S]``); returns the frames completed ``[T, D]``."""
        chunk = chunk.reshape(-1).to(self.pending.dtype)
        if not bool(torch.isfinite(chunk).all()):
            raise ValueError("chunk: contains NaN or inf values")
        self.pending = torch.cat([self.pending, chunk])
        frames = []
        while self.pending.numel() >= self.segment_samples:
            segment, self.pending = self.pending.split(
                [self.segment_samples, self.pending.numel() - self.segment_samples]
            )
            frames.append(self._encode_segment(segment))
        return torch.cat(frames) if frames else self._empty()

    @torch.no_grad()
    def flush(self):
        """Encodes what is left (zero-padded to a hop, as offline); ends the stream."""
        if self.pending.numel() == 0:
            return self._empty()
        segment = F.pad(self.pending, (0, -self.pending.numel() % self.hop))
        out = self._encode_segment(segment)
        self.pending = torch.zeros(0)
        return out

    def _empty(self):
        return torch.zeros(0, self.codec.encoder.emb_dim)

    def _encode_segment(self, segment):
        codec, encoder = self.codec, self.codec.encoder
        dsl = encoder.dsl
        window = torch.cat([self.history, segment])
        context_frames = self.history.numel() // self.hop
        masked = dsl.mask(encoder.base(window[None, None] * codec.input_scale))
        own = masked[..., context_frames * dsl.hop :]  # the segment's base features
        mode = dsl.mode
        if mode == "mixed":
            light = bool(dsl.switch(own, own.shape[-1])[0, 0] < dsl.threshold)
        elif mode in ("full", "light"):
            light = mode == "light"
        else:
            raise ValueError(f"streaming supports modes full, light and mixed, not {mode!r}")
        self.routes.append(light)
        tail = dsl.light_tail if light else dsl.full_tail
        emb = tail(masked)[0, :, context_frames:]
        keep = min(self.context_samples, window.numel())
        self.history = window[window.numel() - keep :]
        return emb.T
