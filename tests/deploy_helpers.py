"""Helpers of the deployment tests (export, engines, streaming, long audio).

Exporting takes tens of seconds, so one packaged folder with all three graphs
(:func:`onnx_package`) is built per test session and shared by the modules that
need it (it lives under pytest's session base folder; tests must not modify it).
"""

import numpy as np
import torch
from conftest import DSL_YAML
from hyperpyyaml import load_hyperpyyaml


def speechy(seconds: float, seed: int, rate: int = 16000) -> torch.Tensor:
    """Noise with loud and quiet 1-s stretches, so a mid threshold gives mixed routes."""
    gen = torch.Generator().manual_seed(seed)
    wav = torch.randn(int(seconds * rate), generator=gen) * 0.003
    for start in range(0, wav.numel() - rate, 2 * rate):
        wav[start : start + rate] *= 100
    return wav


def widest_gap(predicted) -> float:
    """A threshold in the widest gap between predictions, far from float noise."""
    values = torch.as_tensor(predicted).detach().flatten()
    values = values[torch.isfinite(values)].sort().values
    if values.numel() == 1:
        return float(values[0]) + 0.01
    gaps = values[1:] - values[:-1]
    k = int(gaps.argmax())
    return float(values[k] + values[k + 1]) / 2


def onnx_package(tmp_path_factory):
    """The default DSL model (untrained, codebooks initialised) packaged with its ONNX graphs.

    ``encoder.onnx``, ``decoder.onnx`` and ``encoder.int8.onnx`` (calibrated on
    synthetic speech-like audio); built once per session.
    """
    from speechbrain_dsl.inference.package import package
    from speechbrain_dsl.training.checkpoints import AtomicCheckpointer

    root = tmp_path_factory.getbasetemp() / "onnx_package"
    folder = root / "model"
    if (folder / "SHA256SUMS").is_file():
        return folder
    torch.manual_seed(0)
    with open(DSL_YAML) as f:
        codec = load_hyperpyyaml(f)["codec"].eval()
    codec.encode(torch.stack([speechy(1.0, s) for s in range(8)]))  # initialise the codebooks
    calibration = [speechy(10.0, 100 + s).numpy() for s in range(4)]
    AtomicCheckpointer(root / "save", {"codec": codec}).save_checkpoint()
    return package(root / "save", folder, DSL_YAML, onnx=True, calibration=calibration)


def first_token_ties(tokens_a, tokens_b, emb, codebooks, tolerance=1e-4):
    """Frames whose tokens differ, and whether each first difference is a near-tie.

    For a frame where the token lists differ, the residual before the first
    differing codebook is the same for both; the two codewords chosen there are
    a near-tie when their squared distances to it differ by at most
    ``tolerance`` times the residual's squared norm (plus a tiny absolute term).
    Later codebooks of that frame follow from the flip and are not judged.

    Returns
    -------
    (int, int)
        Frames that differ, and how many of those are not explained by a tie.
    """
    a = torch.as_tensor(tokens_a).reshape(-1, tokens_a.shape[-1]).long()
    b = torch.as_tensor(tokens_b).reshape(-1, tokens_b.shape[-1]).long()
    emb = torch.as_tensor(emb).reshape(-1, emb.shape[-1]).double()
    codebooks = torch.as_tensor(codebooks).double()
    differ = (a != b).any(-1).nonzero().flatten().tolist()
    unexplained = 0
    for frame in differ:
        residual = emb[frame].clone()
        for k in range(a.shape[-1]):
            if a[frame, k] != b[frame, k]:
                da = (residual - codebooks[k, a[frame, k]]).square().sum()
                db = (residual - codebooks[k, b[frame, k]]).square().sum()
                if (da - db).abs() > tolerance * residual.square().sum() + 1e-9:
                    unexplained += 1
                break
            residual = residual - codebooks[k, a[frame, k]]
    return len(differ), unexplained


def route_ties(route_a, route_b, predicted, threshold, tolerance=1e-4):
    """Segments whose routes differ, and how many of those are not at the threshold."""
    differ = torch.as_tensor(np.asarray(route_a) != np.asarray(route_b))
    predicted = torch.as_tensor(np.asarray(predicted, dtype=np.float64))
    far = (predicted - threshold).abs() > tolerance
    return int(differ.sum()), int((differ & far).sum())
