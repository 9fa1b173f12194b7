"""Reconstruction quality metrics on batches: ViSQOL, log-mel distance, SI-SNR.

ViSQOL uses the ``visqol-python`` package (speech mode, 16 kHz, with its lattice
model: without it the package silently falls back to a mapper that over-predicts
by 1-2 MOS). Its first call JIT-compiles (~10 s); later clips take ~0.1 s.
"""

import numpy as np
import torch
import torchaudio

from speechbrain_dsl.nnet.segments import length_mask, segment_mean

_VISQOL = None


def _valid_lengths(lengths, batch, samples):
    if lengths is None:
        return [samples] * batch
    return [max(1, int(round(float(length) * samples))) for length in lengths]


def si_snr(estimate, reference, lengths=None, eps=1e-8):
    """Scale-invariant SNR in dB per utterance, ``[B]``.

    SpeechBrain's ``cal_si_snr`` modifies its input in place and ignores
    per-utterance lengths; this one does neither.

    Arguments
    ---------
    estimate, reference : torch.Tensor
        ``[B, S]`` or ``[B, 1, S]``.
    lengths : torch.Tensor, optional
        Relative lengths; samples beyond them are ignored.

    Example
    -------
    >>> ref = torch.randn(2, 16000)
    >>> bool((si_snr(3 * ref, ref) > 60).all())
    True
    >>> noisy = ref + 0.1 * torch.randn(2, 16000)
    >>> [round(v) for v in si_snr(noisy, ref).tolist()]
    [20, 20]
    """
    est = estimate.reshape(estimate.shape[0], -1)
    ref = reference.reshape(reference.shape[0], -1)
    mask = length_mask(lengths, ref.shape[-1], ref.device, ref.shape[0]).to(ref.dtype)
    count = mask.sum(-1, keepdim=True)
    est = (est - (est * mask).sum(-1, keepdim=True) / count) * mask
    ref = (ref - (ref * mask).sum(-1, keepdim=True) / count) * mask
    scale = (est * ref).sum(-1, keepdim=True) / (ref.square().sum(-1, keepdim=True) + eps)
    target = scale * ref
    noise = est - target
    ratio = target.square().sum(-1) / (noise.square().sum(-1) + eps)
    return 10 * torch.log10(ratio + eps)


def mel_distance(
    estimate, reference, lengths=None, sample_rate=16000, n_fft=1024, n_mels=80, eps=1e-5
):
    """Mean absolute log-mel distance per utterance, ``[B]``.

    ``n_mels=None`` compares linear-frequency bins instead (the log-spectral
    distance), which sees harmonic detail that mel bands above ~1 kHz blur.

    Example
    -------
    >>> x = torch.randn(2, 8000)
    >>> mel_distance(x, x).tolist()
    [0.0, 0.0]
    >>> bool((mel_distance(x, 0.5 * x, n_mels=None) > 0).all())
    True
    """
    window = torch.hann_window(n_fft, device=reference.device)
    fbank = None
    if n_mels is not None:
        fbank = torchaudio.functional.melscale_fbanks(
            n_fft // 2 + 1, 0.0, sample_rate / 2, n_mels, sample_rate
        ).to(reference.device)

    def logmel(x):
        spec = (
            torch.stft(
                x.reshape(x.shape[0], -1).float(),
                n_fft,
                n_fft // 4,
                window=window,
                return_complex=True,
            )
            .abs()
            .transpose(1, 2)
        )
        return torch.log((spec if fbank is None else spec @ fbank) + eps)

    diff = (logmel(estimate) - logmel(reference)).abs().mean(-1)  # [B, frames]
    frames = length_mask(lengths, diff.shape[-1], diff.device, diff.shape[0])
    return (diff * frames).sum(-1) / frames.sum(-1)


def visqol(estimate, reference, lengths=None, sample_rate=16000):
    """ViSQOL MOS-LQO (speech mode, lattice model) per utterance, ``[B]``.

    Arguments
    ---------
    estimate, reference : torch.Tensor
        ``[B, S]`` or ``[B, 1, S]`` at 16 kHz (ViSQOL's speech mode rate).
    lengths : torch.Tensor, optional
    sample_rate : int
        Must be 16000.
    """
    if sample_rate != 16000:
        raise ValueError(f"visqol: speech mode needs 16 kHz audio, got {sample_rate} Hz")
    global _VISQOL
    if _VISQOL is None:
        from visqol import VisqolApi

        _VISQOL = VisqolApi()
        _VISQOL.create(mode="speech", use_lattice_model=True)
    est = estimate.reshape(estimate.shape[0], -1).detach().cpu().double().numpy()
    ref = reference.reshape(reference.shape[0], -1).detach().cpu().double().numpy()
    scores = []
    for i, n in enumerate(_valid_lengths(lengths, ref.shape[0], ref.shape[-1])):
        if not np.any(ref[i, :n]):
            scores.append(float("nan"))  # ViSQOL is undefined for a silent reference
            continue
        scores.append(_VISQOL.measure_from_arrays(ref[i, :n], est[i, :n], sample_rate).moslqo)
    return torch.tensor(scores)


def segment_mel_distance(
    estimate,
    reference,
    segment_samples,
    sample_rate=16000,
    n_fft=1024,
    hop_length=160,
    n_mels=80,
    eps=1e-5,
):
    """Mean absolute log-mel distance per segment of ``segment_samples``, ``[B, segments]``.

    Frames are causal (frame ``f`` ends at sample ``(f + 1) * hop_length``), so each
    segment's distance uses only its own audio and the ``n_fft`` samples before it.

    Example
    -------
    >>> x = torch.randn(2, 32000)
    >>> y = x.clone(); y[:, 16000:] = 0
    >>> d = segment_mel_distance(y, x, 16000)
    >>> d.shape, bool(d[0, 0] < 0.5 < d[0, 1])
    (torch.Size([2, 2]), True)
    """
    if segment_samples % hop_length:
        raise ValueError(
            f"segment_samples={segment_samples} must be a multiple of hop_length={hop_length}"
        )
    fbank = torchaudio.functional.melscale_fbanks(
        n_fft // 2 + 1, 0.0, sample_rate / 2, n_mels, sample_rate
    ).to(reference.device)
    window = torch.hann_window(n_fft, device=reference.device)

    def logmel(x):
        x = torch.nn.functional.pad(x.reshape(x.shape[0], -1), (n_fft - hop_length, 0))
        spec = torch.stft(
            x, n_fft, hop_length, window=window, center=False, return_complex=True
        ).abs()
        return torch.log(spec.transpose(1, 2) @ fbank + eps)

    diff = (logmel(estimate) - logmel(reference)).abs().mean(-1)  # [B, frames]
    return segment_mean(diff, segment_samples // hop_length)


def level_db(wav, lengths=None):
    """RMS level in dB (re full scale 1.0) of each waveform ``[B, S]`` over its valid samples.

    Example
    -------
    >>> level_db(torch.full((1, 100), 0.1)).round(decimals=2)
    tensor([-20.])
    """
    valid = length_mask(lengths, wav.shape[-1], wav.device, wav.shape[0]).to(wav.dtype)
    power = (wav.square() * valid).sum(-1) / valid.sum(-1)
    return 10 * torch.log10(power.clamp(min=1e-16))


@torch.no_grad()
def level_errors_db(codec, wav, lengths=None, levels_dbfs=(-40.0, -25.0, -10.0)):
    """|output level - input level| in dB after coding ``wav`` set to each level.

    Each waveform is scaled to ``levels_dbfs`` (RMS, dB re full scale; the gain is
    capped so peaks stay under 1, and the error is against the level actually fed
    in), encoded and decoded in the full pass.

    Arguments
    ---------
    codec : DSLCodec
    wav : torch.Tensor
        ``[B, S]`` speech at the codec's sample rate.
    lengths : torch.Tensor, optional
        Relative lengths ``[B]``.
    levels_dbfs : sequence of float

    Returns
    -------
    torch.Tensor
        ``[len(levels_dbfs), B]`` absolute level errors in dB.
    """
    errors = []
    for dbfs in levels_dbfs:
        gain = 10 ** ((dbfs - level_db(wav, lengths)) / 20)
        gain = torch.minimum(gain, 0.99 / wav.abs().amax(-1).clamp(min=1e-8))
        scaled = wav * gain[:, None]
        tokens, _ = codec.encode(scaled, lengths, mode="full")
        out = codec.decode(tokens, lengths)[..., : wav.shape[-1]].squeeze(1)
        errors.append((level_db(out, lengths) - level_db(scaled, lengths)).abs())
    return torch.stack(errors)
