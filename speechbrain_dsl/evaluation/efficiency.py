"""Parameters and MACs of a DSL encoder's parts, and MACs of a real routed forward.

MACs are counted with ``torch.utils.flop_counter.FlopCounterMode`` on real forward
passes (MACs = FLOPs / 2). Like the paper's MMAC/s, they cover convolutions and
linear layers; elementwise ops (ELU, the mask's gain, adds) are not counted.

Command line::

    python -m speechbrain_dsl.evaluation.efficiency hparams/soundstream_dsl.yaml [--json]
"""

import argparse
import json
import sys
from pathlib import Path

import torch
from hyperpyyaml import load_hyperpyyaml
from torch.utils.flop_counter import FlopCounterMode

from speechbrain_dsl.lobes.dsl_encoder import DSLEncoder

PARTS = ("base", "mask", "switch", "full_tail", "light_tail", "encoder")


def count_params(module):
    """Number of parameters of ``module`` (0 for None)."""
    return 0 if module is None else sum(p.numel() for p in module.parameters())


def count_macs(fn, *args, **kwargs):
    """MACs executed by ``fn(*args, **kwargs)`` (convolutions and matmuls).

    Example
    -------
    >>> count_macs(torch.nn.Linear(3, 4, bias=False), torch.randn(2, 3))
    24
    """
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        fn(*args, **kwargs)
    return counter.get_total_flops() // 2


def executed_macs(model, wav, mode=None, route=None, lengths=None, threshold=None):
    """MACs the encoder actually executes on ``wav`` [B, 1, S] in ``mode``.

    Arguments
    ---------
    model : DSLEncoder or DSLCodec
        With a codec, its encoder is run exactly as ``encode`` runs it (input
        scaling included), so the routing is the one the codec would take.
    wav : torch.Tensor
    mode : str, optional
        Routing mode of this call; the default mode when None.
    route : torch.Tensor, optional
        Forced route ``[B, segments]`` (True = light), as in ``DSLEncoder.forward``.
    lengths : torch.Tensor, optional
    threshold : float, optional
        Threshold of this call (the calibrated one when None).

    Returns
    -------
    int
    """
    encoder = model.encoder if hasattr(model, "encode_features") else model
    run = model.encode_features if hasattr(model, "encode_features") else encoder
    was_training = encoder.training
    encoder.eval()
    try:
        return count_macs(run, wav, lengths, route, mode, threshold)
    finally:
        encoder.train(was_training)


def part_costs(encoder, sample_rate=16000, seconds=1.0):
    """Params and MACs per second of audio of each part of a DSL encoder.

    Returns
    -------
    dict
        ``{"params": {part: int}, "macs_per_second": {part: float}}`` for parts
        ``base``, ``mask``, ``switch``, ``full_tail``, ``light_tail`` and ``encoder``
        (base + mask + full tail, the encoder as the baseline runs it).
    """
    if not isinstance(encoder, DSLEncoder):
        raise ValueError(
            f"part_costs: expected a DSLEncoder, got {type(encoder).__name__}; the "
            f"model YAML must define `encoder` as a DSLEncoder"
        )
    dsl = encoder.dsl
    samples = int(sample_rate * seconds)
    wav = torch.randn(1, 1, samples + (-samples % encoder.hop))
    with torch.no_grad():
        feats = encoder.base(wav)
        masked = dsl.mask(feats)
    seg = feats.shape[-1]  # one segment covering the clip
    one_level = torch.zeros(1, 1) if getattr(dsl.switch, "level_input", False) else None
    macs = {
        "base": count_macs(encoder.base, wav),
        "mask": count_macs(dsl.mask, feats),
        "switch": count_macs(dsl.switch, masked, seg, levels=one_level),
        "full_tail": count_macs(dsl.full_tail, masked),
        "light_tail": count_macs(dsl.light_tail, masked),
    }
    macs["encoder"] = executed_macs(encoder, wav, mode="full")
    params = {
        "base": count_params(encoder.base),
        "mask": count_params(dsl.mask),
        "switch": count_params(dsl.switch),
        "full_tail": count_params(dsl.full_tail),
        "light_tail": count_params(dsl.light_tail),
    }
    params["encoder"] = params["base"] + params["mask"] + params["full_tail"]
    duration = wav.shape[-1] / sample_rate
    return {
        "params": params,
        "macs_per_second": {k: v / duration for k, v in macs.items()},
    }


def predicted_mac_ratio(costs, light_share):
    """MACs of a mixed pass at ``light_share``, relative to the full encoder."""
    m = costs["macs_per_second"]
    mixed = (
        m["base"]
        + m["mask"]
        + m["switch"]
        + light_share * m["light_tail"]
        + (1 - light_share) * m["full_tail"]
    )
    return mixed / m["encoder"]


def mode_macs_per_second(costs, mode, light_share=None):
    """Encoder MACs per second of audio in routing ``mode`` (``mixed`` needs ``light_share``).

    Example
    -------
    >>> costs = {"macs_per_second": {"base": 1.0, "mask": 0.0, "switch": 0.5,
    ...          "full_tail": 10.0, "light_tail": 2.0, "encoder": 11.0}}
    >>> [round(mode_macs_per_second(costs, m, 0.5), 6) for m in ("full", "light", "mixed")]
    [11.0, 3.0, 7.5]
    """
    m = costs["macs_per_second"]
    if mode == "full":
        return m["encoder"]
    if mode == "light":
        return m["base"] + m["mask"] + m["light_tail"]
    if mode == "mixed":
        if light_share is None:
            raise ValueError("mode_macs_per_second: mixed mode needs light_share")
        return predicted_mac_ratio(costs, light_share) * m["encoder"]
    raise ValueError(f"mode must be full, light or mixed, got {mode!r}")


def format_table(costs):
    """The efficiency table as text (the paper's Fig. 2 numbers next to ours)."""
    p, m = costs["params"], costs["macs_per_second"]
    lines = [
        f"{'part':<12}{'params':>10}{'MMAC/s':>10}",
        "-" * 32,
    ]
    for part in PARTS:
        lines.append(f"{part:<12}{p[part]:>10,}{m[part] / 1e6:>10.3f}")
    lines += [
        "-" * 32,
        f"full/light tail params: {p['full_tail'] / p['light_tail']:.1f}x "
        f"(paper: 65,024 -> 3,104 = 20.9x)",
        f"full/light tail MACs/s: {m['full_tail'] / m['light_tail']:.1f}x "
        f"(paper: 5.4 -> 0.44 MMAC/s = 12.3x)",
        f"mixed encoder MACs at 80% light: {predicted_mac_ratio(costs, 0.8):.3f}x full",
    ]
    return "\n".join(lines)


def read_placements(path):
    """DSL placements to compare: ``{name: overrides of a model YAML}``.

    ``path`` is a YAML file whose ``placements`` entry maps each placement
    (e.g. the block the DSL follows) to the overrides that build it (for
    :func:`load_encoder`); the repository's ``hparams/dsl_placements.yaml`` holds
    the default model's. Names keep their file order.

    Example
    -------
    >>> import tempfile
    >>> path = Path(tempfile.mkdtemp()) / "placements.yaml"
    >>> _ = path.write_text("placements:\\n  0: {split_after: 0, base_channels: 8}\\n"
    ...                     "  1: {split_after: 1, base_channels: 16}\\n")
    >>> read_placements(path)
    {0: {'split_after': 0, 'base_channels': 8}, 1: {'split_after': 1, 'base_channels': 16}}
    """
    import yaml

    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ValueError(f"placements file not found: {path}") from None
    except yaml.YAMLError as err:
        raise ValueError(f"{path} is not valid YAML: {err}") from None
    placements = data.get("placements") if isinstance(data, dict) else None
    if not isinstance(placements, dict) or not placements:
        raise ValueError(f"{path}: expected a non-empty `placements` mapping of name -> overrides")
    for name, overrides in placements.items():
        if not isinstance(overrides, dict):
            raise ValueError(
                f"{path}: placement {name!r} is a {type(overrides).__name__}, "
                f"expected a mapping of overrides"
            )
    return placements


def load_encoder(model_yaml, overrides=None):
    """Instantiates the ``encoder`` of a model YAML, with ``overrides`` (a dict) applied.

    Returns ``(encoder, sample_rate)``; ``sample_rate`` is the YAML's (16000 if
    it names none).
    """
    try:
        with open(model_yaml) as f:
            hparams = load_hyperpyyaml(f, overrides or {})
    except FileNotFoundError:
        raise ValueError(f"model YAML not found: {model_yaml}") from None
    if "encoder" not in hparams:
        raise ValueError(f"{model_yaml}: defines no `encoder` key")
    return hparams["encoder"], hparams.get("sample_rate", 16000)


def main(argv=None):
    """Command-line entry point."""
    parser = argparse.ArgumentParser(
        prog="python -m speechbrain_dsl.evaluation.efficiency",
        description="Params and MACs per second of audio of each DSL encoder part.",
    )
    parser.add_argument("model_yaml", help="model YAML defining `encoder` (a DSLEncoder)")
    parser.add_argument("--json", action="store_true", help="print a JSON object")
    args = parser.parse_args(argv)
    try:
        encoder, sample_rate = load_encoder(args.model_yaml)
        costs = part_costs(encoder, sample_rate)
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(costs, indent=2))
    else:
        print(format_table(costs))
    return 0


if __name__ == "__main__":
    sys.exit(main())
