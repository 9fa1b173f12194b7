"""The end of a tokenize run: rank 0 merges the chunks, writes DASB's files and ``summary.json``.

The summary says what was tokenized, with which model and settings (``plan``),
how much (utterances, frames, hours, the light share), which files were left
out, how fast this run went (``this_run``) and the processing time of every
chunk, over all the runs that wrote into the folder (``all_chunks``).
"""

from pathlib import Path

from speechbrain_dsl.atomic import write_json
from speechbrain_dsl.tokenize.store import SUMMARY_FILE, merge, remove_work

__all__ = ["finish_run"]


def finish_run(config, plan, chunks, count, interface, stats, threads, listed) -> dict:
    """Rank 0 after every rank is done: merges, writes DASB's files and the summary."""
    out = Path(config.out)
    codec = interface.codec
    dasb_conf = {  # DASB's TokensExtractor.extract_tokens conf (its _skip compares it)
        "sample_rate": codec.sample_rate,
        "save_folder": config.out,
        "dataset_length": plan["utterances"],
    }
    embeddings = codec.get_pretrained_embeddings().detach().cpu().numpy()
    records = merge(out, chunks, count, config.save_name, dasb_conf, embeddings)
    audio_seconds = sum(r["audio_seconds"] for r in records)
    light = sum(r["light_segments"] for r in records)
    valid = sum(r["valid_segments"] for r in records)
    skipped = [
        {"id": uid, "path": path, "reason": reason}
        for r in records
        for uid, path, reason in r["skipped"]
    ]
    encoded = sum(s["encoded_seconds"] for s in stats)
    wall = max(s["wall_seconds"] for s in stats)
    processes = len(stats)
    spent = sum(r["process_seconds"] for r in records)
    summary = {
        "tool": "python -m speechbrain_dsl.tokenize",
        "format": "kaldiio ark/scp of int64 tokens [frames, num_codebooks] per utterance id, "
        "as DASB's TokensExtractor writes them (benchmarks/DASB/utils/tokens.py)",
        "ark": str((out / f"{config.save_name}.ark").absolute()),
        "scp": str((out / f"{config.save_name}.scp").absolute()),
        "model": str(config.model),
        "model_sha256": plan["model_sha256"],
        "model_sha256_from": "SHA256SUMS" if listed else "codec.ckpt (not in a SHA256SUMS)",
        "data": str(config.data),
        "sample_rate": codec.sample_rate,
        "frame_rate": codec.frame_rate,
        "vocab_size": codec.vocab_size,
        "num_codebooks": plan["num_codebooks"],
        "mode": plan["mode"],
        "threshold": plan["threshold"],
        "engine": plan["engine"],
        "device": config.device,
        "utterances": sum(len(r["entries"]) for r in records),
        "frames": sum(frames for r in records for _, _, frames in r["entries"]),
        "audio_hours": audio_seconds / 3600,
        "light_share": light / valid if valid and codec.has_dsl else None,
        "skipped_count": len(skipped),
        "skipped": skipped,
        "this_run": {
            "processes": processes,
            "threads_per_process": threads,
            "encoded_audio_hours": encoded / 3600,
            "wall_seconds": wall,  # checking, reading and encoding (not loading the model)
            "throughput_audio_hours_per_hour": encoded / wall if wall > 0 else None,
            "real_time_factor": wall / encoded if encoded > 0 else None,
            "audio_hours_per_core_hour": (
                encoded / (wall * processes * threads) if wall > 0 else None
            ),
        },
        "all_chunks": {
            "process_seconds": spent,
            "real_time_factor_per_process": spent / audio_seconds if audio_seconds else None,
        },
        "plan": plan,
    }
    write_json(out / SUMMARY_FILE, summary)
    remove_work(chunks.folder.parent)
    return summary
