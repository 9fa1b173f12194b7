"""``tools.score_package``: the Opus anchor scored on the same utterances as a package."""

import json
import shutil

import pytest
import torch
from conftest import ROOT

from tools.score_package import OpusRoundTrip, main

CHECK = ROOT / "pretrained" / "campaign-baseline" / "check"


def test_opus_round_trip_keeps_length_and_spends_less_at_a_higher_level():
    clip = torch.randn(24000) * 0.1
    low, high = OpusRoundTrip(16000, 1.0), OpusRoundTrip(16000, 0.5)
    assert low(clip).shape == high(clip).shape == (1, 24000)
    assert 5.0 < low.kbps < 12.0 < high.kbps
    with pytest.raises(ValueError, match="--opus"):
        OpusRoundTrip(16000, 1.5)
    with pytest.raises(ValueError, match="--rate.*22050"):
        OpusRoundTrip(22050)


def test_opus_anchor_scores_the_corpus_and_more_bits_score_higher(tmp_path, capsys):
    _corpus_of_check_clips(tmp_path)
    rows = {}
    for level in (1.0, 0.0):
        main(["--opus", str(level), "--corpus", str(tmp_path), "--subsets", "test-x", "--json"])
        rows[level] = json.loads(capsys.readouterr().out)["test-x"]
    assert rows[1.0]["utterances"] == 2 and rows[1.0]["kbps"] < 12.0 < rows[0.0]["kbps"]
    # near-transparent at the highest bitrate: a misaligned or broken decode would not be
    assert rows[0.0]["visqol_mean"] > 4.0 > rows[1.0]["visqol_mean"]
    assert rows[0.0]["mel"] < rows[1.0]["mel"]


def test_score_package_takes_a_package_or_opus_not_both(tmp_path, capsys):
    for argv in ([], [str(tmp_path), "--opus", "1.0"]):
        with pytest.raises(SystemExit) as exited:
            main(argv + ["--corpus", str(tmp_path)])
        assert exited.value.code == 2  # argparse's usage error, not a failure further on
        err = capsys.readouterr().err
        assert "give a package folder or --opus LEVEL (one of the two)" in err, err


def _corpus_of_check_clips(folder, count=2):
    speaker = folder / "test-x" / "1" / "1"
    speaker.mkdir(parents=True)
    for wav in sorted(CHECK.glob("*.wav"))[:count]:
        shutil.copy(wav, speaker / wav.name)
    return folder


def test_fewer_codebooks_cost_quality_and_latents_bound_the_tokens(tmp_path, capsys):
    corpus = _corpus_of_check_clips(tmp_path)
    package = str(CHECK.parent)
    rows = {}
    for name, extra in (("all", []), ("one", ["--codebooks", "1"]), ("latents", ["--latents"])):
        main([package, "--corpus", str(corpus), "--subsets", "test-x", "--json"] + extra)
        rows[name] = json.loads(capsys.readouterr().out)["test-x"]
    assert rows["one"]["kbps"] == rows["all"]["kbps"] / 8  # 8 codebooks of 10 bits at 50 Hz
    assert rows["latents"]["kbps"] is None  # no quantiser: no bitrate
    # one codebook of eight is far coarser; the unquantised latents are the finest
    assert rows["one"]["mel"] > rows["all"]["mel"] + 0.05
    assert rows["latents"]["mel"] < rows["all"]["mel"] + 0.01
    main([package, "--corpus", str(corpus), "--subsets", "test-x", "--codebooks", "1"])
    table = capsys.readouterr().out.splitlines()
    assert table[0].split()[-1] == "kbps" and table[1].split()[-1] == "0.50"


def test_codebooks_and_latents_are_refused_where_they_do_not_apply(tmp_path, capsys):
    package = str(CHECK.parent)
    for argv, message in (
        ([package, "--codebooks", "9"], "--codebooks: num_codebooks: expected an int in 1..8"),
        ([package, "--codebooks", "2", "--latents"], "--latents"),
        (["--opus", "1.0", "--latents"], "apply to a package"),
    ):
        with pytest.raises(SystemExit):
            main(argv + ["--corpus", str(tmp_path)])
        assert message in capsys.readouterr().err
