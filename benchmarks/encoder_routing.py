"""Wall time and executed MACs of the DSL encoder: full vs light vs mixed.

One CPU thread, 60 s of audio in 1 s routing segments, two layouts:

- ``b60``: a batch of 60 one-second clips (one segment per clip);
- ``1x60s``: one 60-second utterance (60 segments; routed windows carry left
  context, so mixed pays a little for segment boundaries).

Mixed mode runs at forced light shares 0, 0.3, 0.8 and 1.0 (random segments, fixed
seed; the switch still runs). A second table compares DSL placements (after the
first conv, block 1, block 2) at 80% light, which is the evidence behind the
default placement. Wall time is the median of ``--repeats`` runs;
executed MACs are counted with torch.utils.flop_counter on the same forward.
Everything is a ratio to the full pass measured in the same process.

glibc's malloc returns large freed blocks to the OS by default, which costs about
a million page faults per pass on the 30 MB activations here. Unless
``--allocator default`` is given, the script re-executes itself with
MALLOC_MMAP_THRESHOLD_ / MALLOC_TRIM_THRESHOLD_ / MALLOC_TOP_PAD_ set so freed
memory is reused; it reports which settings were in force.

    python benchmarks/encoder_routing.py [--json] [--repeats 15]
"""

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

TUNED_MALLOC = {
    "MALLOC_MMAP_THRESHOLD_": "33554432",
    "MALLOC_TRIM_THRESHOLD_": "4294967296",
    "MALLOC_TOP_PAD_": "268435456",
}
ROOT = Path(__file__).resolve().parents[1]


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default=str(ROOT / "hparams" / "soundstream_dsl.yaml"))
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--seconds", type=int, default=60)
    parser.add_argument("--json", action="store_true", help="print rows as JSON")
    parser.add_argument(
        "--no-placements", action="store_true", help="skip the placement comparison table"
    )
    parser.add_argument(
        "--placements",
        default=str(ROOT / "hparams" / "dsl_placements.yaml"),
        help="YAML of the DSL placements compared (overrides of --model)",
    )
    parser.add_argument(
        "--allocator",
        choices=("tuned", "default"),
        default="tuned",
        help="glibc malloc settings (see module docstring)",
    )
    return parser.parse_args(argv)


def ensure_allocator(args):
    """Re-executes with tuned malloc settings unless they are in force already."""
    if args.allocator == "tuned" and any(os.environ.get(k) != v for k, v in TUNED_MALLOC.items()):
        env = dict(os.environ, **TUNED_MALLOC)
        os.execve(sys.executable, [sys.executable, *sys.argv], env)


def interleaved_median_ms(fns, repeats):
    """Median wall time of each function, timed round-robin so drift hits all alike."""
    for fn in fns:
        fn()  # warm-up: first-call allocations and kernel selection
    times = [[] for _ in fns]
    for _ in range(repeats):
        for i, fn in enumerate(fns):
            start = time.perf_counter()
            fn()
            times[i].append(time.perf_counter() - start)
    return [1000 * statistics.median(t) for t in times]


def forced_route(batch, segments, share, generator):
    """Bool [batch, segments] with round(share * total) random segments light."""
    import torch

    total = batch * segments
    route = torch.zeros(total, dtype=torch.bool)
    route[torch.randperm(total, generator=generator)[: round(share * total)]] = True
    return route.view(batch, segments)


def run(args):
    import torch

    from speechbrain_dsl.evaluation.efficiency import (
        executed_macs,
        load_encoder,
        part_costs,
        predicted_mac_ratio,
    )

    torch.set_num_threads(1)
    encoder, sample_rate = load_encoder(args.model)
    encoder.eval()
    costs = part_costs(encoder, sample_rate)
    seg_frames = encoder.dsl.segment_frames
    seg_samples = seg_frames * encoder.hop
    layouts = {
        "b60": torch.randn(
            args.seconds, 1, seg_samples, generator=torch.Generator().manual_seed(0)
        ),
        "1x60s": torch.randn(
            1, 1, args.seconds * seg_samples, generator=torch.Generator().manual_seed(0)
        ),
    }
    rows = []
    for layout, wav in layouts.items():
        batch, segments = wav.shape[0], wav.shape[-1] // seg_samples
        gen = torch.Generator().manual_seed(1)
        cases = [("full", 0.0, None), ("light", 1.0, None)] + [
            ("mixed", share, forced_route(batch, segments, share, gen))
            for share in (0.0, 0.3, 0.8, 1.0)
        ]

        def call(mode, route, wav=wav):
            return encoder(wav, None, route, mode)

        with torch.no_grad():
            times = interleaved_median_ms(
                [lambda m=mode, r=route: call(m, r) for mode, _, route in cases], args.repeats
            )
            macs = [executed_macs(encoder, wav, mode=m, route=r) for m, _, r in cases]
        for (mode, share, route), ms, mac in zip(cases, times, macs):
            if route is not None:  # the share actually forced (rounded to whole segments)
                share = round(float(route.float().mean()), 4)
            wall_ratio, mac_ratio = ms / times[0], mac / macs[0]
            predicted = predicted_mac_ratio(costs, share) if mode == "mixed" else mac_ratio
            saving_share = (
                (1 - wall_ratio) / (1 - predicted)
                if mode == "mixed" and predicted < 0.999
                else None
            )
            rows.append(
                {
                    "layout": layout,
                    "mode": mode,
                    "light_share": share,
                    "wall_ms": round(ms, 2),
                    "wall_ratio": round(wall_ratio, 4),
                    "mac_ratio": round(mac_ratio, 4),
                    "predicted_mac_ratio": round(predicted, 4),
                    "saving_vs_predicted": None if saving_share is None else round(saving_share, 3),
                }
            )
    allocator = {k: os.environ.get(k) for k in TUNED_MALLOC}
    return rows, allocator, costs


def placement_rows(args):
    """Full vs mixed (80% light) wall time and MACs for each DSL placement, b60."""
    import torch

    from speechbrain_dsl.evaluation.efficiency import (
        load_encoder,
        part_costs,
        predicted_mac_ratio,
        read_placements,
    )

    wav = torch.randn(args.seconds, 1, 16000, generator=torch.Generator().manual_seed(0))
    route = forced_route(args.seconds, 1, 0.8, torch.Generator().manual_seed(1))
    encoders, fns = {}, []
    for split, overrides in read_placements(args.placements).items():
        encoder = load_encoder(args.model, overrides)[0].eval()
        encoders[split] = (encoder, part_costs(encoder))
        fns += [
            lambda e=encoder: e(wav, None, torch.zeros_like(route)),
            lambda e=encoder: e(wav, None, route),
        ]
    with torch.no_grad():
        times = interleaved_median_ms(fns, args.repeats)
    rows = []
    for i, (split, (_, costs)) in enumerate(encoders.items()):
        full_ms, mixed_ms = times[2 * i], times[2 * i + 1]
        p = costs["params"]
        rows.append(
            {
                "split_after": split,
                "base_params": p["base"],
                "light_params_ratio": p["full_tail"] / p["light_tail"],
                "light_macs_ratio": costs["macs_per_second"]["full_tail"]
                / costs["macs_per_second"]["light_tail"],
                "wall_ratio_80": mixed_ms / full_ms,
                "mac_ratio_80": predicted_mac_ratio(costs, 0.8),
            }
        )
    return rows


def main(argv=None):
    args = parse_args(argv)
    ensure_allocator(args)
    rows, allocator, costs = run(args)
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    placements = [] if args.no_placements else placement_rows(args)
    alloc = (
        ", ".join(f"{k}={v}" for k, v in allocator.items())
        if any(allocator.values())
        else "glibc defaults"
    )
    print(
        f"DSL encoder routing benchmark: 1 thread, {args.seconds} s of audio, "
        f"median of {args.repeats}; allocator: {alloc}"
    )
    print(
        f"{'layout':<7}{'mode':<7}{'light':>6}{'wall ms':>9}{'wall/full':>10}"
        f"{'MAC/full':>9}{'MAC pred':>9}{'saving/pred':>12}"
    )
    for r in rows:
        saving = "" if r["saving_vs_predicted"] is None else f"{r['saving_vs_predicted']:.2f}"
        print(
            f"{r['layout']:<7}{r['mode']:<7}{r['light_share']:>6.1f}{r['wall_ms']:>9.1f}"
            f"{r['wall_ratio']:>10.3f}{r['mac_ratio']:>9.3f}{r['predicted_mac_ratio']:>9.3f}{saving:>12}"
        )
    if placements:
        print(
            "\nDSL placement, b60, mixed at 80% light vs mixed at 0% (same switch and mask cost):"
        )
        print(
            f"{'split after':<13}{'base params':>12}{'full/light params':>19}{'full/light MACs':>17}"
            f"{'wall 80%':>10}{'MAC 80%':>9}"
        )
        for r in placements:
            name = "first conv" if r["split_after"] == 0 else f"block {r['split_after']}"
            print(
                f"{name:<13}{r['base_params']:>12,}{r['light_params_ratio']:>18.1f}x"
                f"{r['light_macs_ratio']:>16.1f}x{r['wall_ratio_80']:>10.3f}{r['mac_ratio_80']:>9.3f}"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
