"""A frame-rate decoder: causal ConvNeXt blocks at the token rate and an inverse-STFT head.

This is the Vocos design (Siuzdenko, 2023) made causal: every layer runs at the
encoder's frame rate (50 Hz for hop 320 at 16 kHz) and the last one predicts a
log-magnitude and a phase per STFT bin, which an inverse STFT turns into samples.
Nothing runs at the sample rate except the overlap-add, so it costs ~0.18 GMAC
per second of audio at the default size against 0.43 for SoundStream's waveform
decoder, and it learns the harmonic structure of the magnitude directly.

Latency. The convolutions are causal (frame ``t`` sees embeddings ``<= t``). The
inverse STFT spreads frame ``t`` over a window of ``n_fft`` samples centred on the
middle of its hop, so output sample ``n`` also depends on the frames whose window
reaches it: the head adds a look-ahead of ``(n_fft - hop) / 2`` samples
(:attr:`ISTFTHead.lookahead`). At the defaults (n_fft 1280, hop 320) that is
480 samples = 30 ms at 16 kHz, on top of the encoder's 20-ms frame.

Layout: embeddings ``[batch, emb_dim, frames]`` in, waveform ``[batch, 1, frames * hop]`` out.
"""

import torch
import torch.nn.functional as F
from torch import nn

from speechbrain_dsl.nnet.conv import CausalConv1d

__all__ = ["CausalConvNeXtBlock", "ISTFTHead", "VocosDecoder"]


class CausalConvNeXtBlock(nn.Module):
    """ConvNeXt block with a causal depthwise convolution.

    ``x + gamma * pw2(gelu(pw1(norm(dwconv(x)))))``.

    Arguments
    ---------
    dim : int
    intermediate_dim : int
        Width of the pointwise expansion.
    kernel_size : int
        Kernel of the causal depthwise convolution.
    layer_scale : float
        Initial value of the per-channel residual scale ``gamma``.

    Example
    -------
    >>> block = CausalConvNeXtBlock(8, 24)
    >>> block(torch.randn(2, 8, 30)).shape
    torch.Size([2, 8, 30])
    """

    def __init__(
        self, dim: int, intermediate_dim: int, kernel_size: int = 7, layer_scale: float = 0.1
    ) -> None:
        super().__init__()
        self.dwconv = CausalConv1d(dim, dim, kernel_size, groups=dim)
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.pwconv1 = nn.Linear(dim, intermediate_dim)
        self.pwconv2 = nn.Linear(intermediate_dim, dim)
        self.gamma = nn.Parameter(torch.full((dim,), float(layer_scale)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` [batch, dim, frames] -> same shape."""
        y = self.dwconv(x).transpose(1, 2)
        y = self.pwconv2(F.gelu(self.pwconv1(self.norm(y))))
        return x + (self.gamma * y).transpose(1, 2)


class ISTFTHead(nn.Module):
    """Predicts log-magnitude and phase per bin and inverts the STFT by overlap-add.

    Runs in float32 even under autocast: the complex spectrum and the window
    normalisation lose too much in bf16/fp16.

    Arguments
    ---------
    dim : int
        Input channels.
    n_fft : int
        FFT size (= window length, a Hann window).
    hop_length : int
        Samples per frame: the encoder's hop.
    max_log_magnitude : float
        Log-magnitudes are clamped here so ``exp`` cannot overflow early in training.
        It must leave room for the loudest input: a full-scale sine times the
        codec's ``input_scale`` of 10 has bin magnitudes near ``10 * n_fft / 4``
        (log 8.1 at n_fft 1280). Vocos's clamp at 100 (log 4.6) silenced loud
        speech here: its gradient is zero above the clamp.

    Example
    -------
    >>> head = ISTFTHead(8, n_fft=64, hop_length=16)
    >>> head(torch.randn(2, 8, 10)).shape
    torch.Size([2, 1, 160])
    >>> head.lookahead
    24
    """

    def __init__(
        self, dim: int, n_fft: int = 1280, hop_length: int = 320, max_log_magnitude: float = 12.0
    ) -> None:
        super().__init__()
        if n_fft < hop_length or (n_fft - hop_length) % 2:
            raise ValueError(
                f"ISTFTHead: n_fft={n_fft} must be >= hop_length={hop_length} and "
                f"n_fft - hop_length must be even (the window is centred on each hop)"
            )
        self.n_fft, self.hop_length = n_fft, hop_length
        self.max_log_magnitude = max_log_magnitude
        self.proj = nn.Linear(dim, n_fft + 2)
        self.register_buffer("window", torch.hann_window(n_fft), persistent=False)

    @property
    def lookahead(self) -> int:
        """Samples of future frames each output sample depends on."""
        return (self.n_fft - self.hop_length) // 2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` [batch, dim, frames] -> waveform [batch, 1, frames * hop]."""
        with torch.autocast(x.device.type, enabled=False):
            out = self.proj(x.transpose(1, 2).float()).transpose(1, 2)
            log_mag, phase = out.chunk(2, dim=1)
            mag = torch.exp(log_mag.clamp(max=self.max_log_magnitude))
            spec = torch.polar(mag, phase)
            return self.istft(spec)

    def istft(self, spec: torch.Tensor) -> torch.Tensor:
        """Inverse STFT of ``spec`` [batch, n_fft // 2 + 1, frames] with "same" padding.

        Frame ``t``'s window is centred on the middle of samples
        ``[t * hop, (t + 1) * hop)``, so ``frames`` frames give ``frames * hop``
        samples with no frame lost at the edges.
        """
        frames = spec.shape[-1]
        pad = self.lookahead
        chunks = torch.fft.irfft(spec, n=self.n_fft, dim=1, norm="backward") * self.window[:, None]
        length = (frames - 1) * self.hop_length + self.n_fft
        fold = dict(
            output_size=(1, length), kernel_size=(1, self.n_fft), stride=(1, self.hop_length)
        )
        audio = F.fold(chunks, **fold)[:, 0, 0, pad:-pad]
        envelope = F.fold(self.window.square().expand(1, frames, -1).transpose(1, 2), **fold)[
            0, 0, 0, pad:-pad
        ]
        return (audio / envelope.clamp(min=1e-11))[:, None]


class VocosDecoder(nn.Module):
    """Frame-rate decoder: causal conv in, ConvNeXt blocks, inverse-STFT head.

    Arguments
    ---------
    emb_dim : int
        Embedding (quantizer) size.
    dim : int
        Width of the ConvNeXt blocks.
    intermediate_dim : int
        Width of their pointwise expansion.
    num_blocks : int
    kernel_size : int
        Kernel of the input conv and the depthwise convs.
    n_fft : int
    hop_length : int
        Must equal the encoder's hop.

    Example
    -------
    >>> dec = VocosDecoder(emb_dim=8, dim=16, intermediate_dim=32, num_blocks=2,
    ...                    n_fft=64, hop_length=16)
    >>> dec(torch.randn(3, 8, 10)).shape
    torch.Size([3, 1, 160])
    """

    def __init__(
        self,
        emb_dim: int = 64,
        dim: int = 256,
        intermediate_dim: int = 768,
        num_blocks: int = 8,
        kernel_size: int = 7,
        n_fft: int = 1280,
        hop_length: int = 320,
    ) -> None:
        super().__init__()
        self.embed = CausalConv1d(emb_dim, dim, kernel_size)
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.blocks = nn.ModuleList(
            CausalConvNeXtBlock(dim, intermediate_dim, kernel_size, layer_scale=1 / num_blocks)
            for _ in range(num_blocks)
        )
        self.final_norm = nn.LayerNorm(dim, eps=1e-6)
        self.head = ISTFTHead(dim, n_fft, hop_length)
        self.hop = hop_length

    def forward(self, emb: torch.Tensor) -> torch.Tensor:
        """Decodes ``emb`` [batch, emb_dim, frames] into [batch, 1, frames * hop]."""
        x = self.norm(self.embed(emb).transpose(1, 2)).transpose(1, 2)
        for block in self.blocks:
            x = block(x)
        x = self.final_norm(x.transpose(1, 2)).transpose(1, 2)
        return self.head(x)
