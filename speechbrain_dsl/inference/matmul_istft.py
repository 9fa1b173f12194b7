"""The Vocos inverse-STFT head as matmuls: what the exported decoder graph runs.

:class:`~speechbrain_dsl.inference.graphs.ExportableDecoder` swaps the head of a
:class:`~speechbrain_dsl.lobes.vocos.VocosDecoder` for :class:`MatmulISTFT`, the
same function without complex numbers or FFTs (which ONNX and onnxruntime lack).
"""

import math

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["MatmulISTFT"]


class MatmulISTFT(nn.Module):
    """A Vocos :class:`~speechbrain_dsl.lobes.vocos.ISTFTHead` without complex numbers or FFTs.

    ONNX has no complex tensors and onnxruntime no inverse real FFT, so the
    export path writes the head's ``irfft`` as one matmul with a constant
    cosine/sine basis (the Hann window folded in) and the overlap-add as shifted
    sums: the same function (equal within float rounding, tested), at
    ``2 (n_fft / 2 + 1) n_fft`` multiply-adds per frame.

    Arguments
    ---------
    head : ISTFTHead
        Its projection and settings are used as they are.

    Example
    -------
    >>> from speechbrain_dsl.lobes.vocos import ISTFTHead
    >>> head = ISTFTHead(8, n_fft=64, hop_length=16)
    >>> x = torch.randn(2, 8, 10)
    >>> torch.allclose(MatmulISTFT(head)(x), head(x), atol=1e-5)
    True
    """

    def __init__(self, head):
        super().__init__()
        self.proj = head.proj
        self.n_fft, self.hop_length = head.n_fft, head.hop_length
        self.max_log_magnitude = head.max_log_magnitude
        self.lookahead = head.lookahead
        n, bins = head.n_fft, head.n_fft // 2 + 1
        k = torch.arange(bins, dtype=torch.float64)[:, None]
        t = torch.arange(n, dtype=torch.float64)[None]
        # irfft (norm="backward"): x[t] = (1/n) sum_k w_k (Re X_k cos - Im X_k sin)(2 pi k t / n),
        # w = 1 for DC and Nyquist, 2 otherwise; the imaginary parts of DC and Nyquist are ignored.
        weight = torch.full((bins, 1), 2.0, dtype=torch.float64)
        weight[0] = 1.0
        if n % 2 == 0:
            weight[-1] = 1.0
        angle = 2 * math.pi * k * t / n
        window = torch.hann_window(n, dtype=torch.float64)
        basis = torch.cat([weight * torch.cos(angle), -weight * torch.sin(angle)]) / n * window
        self.register_buffer("basis", basis.float(), persistent=False)
        self.register_buffer("window_square", window.square().float(), persistent=False)

    def forward(self, x):
        """``x`` [batch, dim, frames] -> waveform [batch, 1, frames * hop]."""
        out = self.proj(x.transpose(1, 2).float())  # [B, T, n_fft + 2]
        log_mag, phase = out.chunk(2, dim=-1)
        mag = torch.exp(log_mag.clamp(max=self.max_log_magnitude))
        spectrum = torch.cat([mag * torch.cos(phase), mag * torch.sin(phase)], dim=-1)
        chunks = spectrum @ self.basis  # [B, T, n_fft], windowed
        frames = chunks.shape[1]
        audio = self.overlap_add(chunks)
        envelope = self.overlap_add(self.window_square.expand(1, frames, -1))
        pad = self.lookahead
        audio = audio[:, pad : audio.shape[-1] - pad]
        envelope = envelope[:, pad : envelope.shape[-1] - pad]
        return (audio / envelope.clamp(min=1e-11))[:, None]

    def overlap_add(self, chunks):
        """Sums ``chunks`` [B, T, n_fft] at hop spacing: ``[B, (T - 1) * hop + n_fft]``."""
        hop, n = self.hop_length, self.n_fft
        if n % hop:
            eye = torch.eye(n, dtype=chunks.dtype, device=chunks.device)[:, None]
            return F.conv_transpose1d(chunks.transpose(1, 2), eye, stride=hop)[:, 0]
        r = n // hop  # each hop-long output block sums r chunk pieces
        batch, frames = chunks.shape[:2]
        pieces = chunks.reshape(batch, frames, r, hop)
        out = 0
        for i in range(r):
            out = out + F.pad(pieces[:, :, i], (0, 0, i, r - 1 - i))
        return out.reshape(batch, (frames + r - 1) * hop)
