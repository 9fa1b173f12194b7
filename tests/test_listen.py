"""``python -m tools.listen``: every check clip decoded in every pass, scored and linked."""

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from speechbrain_dsl.inference.manifest import sha256_file
from tools import listen

ROOT = Path(__file__).resolve().parents[1]
LINK = re.compile(r"\]\(([^()\s]+)\)")
CLIP_SAMPLES = {"a": 16000, "b": 15000}  # b is not a whole number of codec frames


def speech_like(samples: int, seed: int) -> np.ndarray:
    """A voiced-sounding test signal: harmonics of a gliding pitch under a syllable envelope."""
    rng = np.random.default_rng(seed)
    t = np.arange(samples) / 16000
    pitch = 120 + 40 * np.sin(2 * np.pi * 0.7 * t + seed)
    phase = 2 * np.pi * np.cumsum(pitch) / 16000
    voiced = sum(np.sin(k * phase) / k for k in range(1, 12))
    envelope = 0.5 + 0.5 * np.sin(2 * np.pi * 4 * t) ** 2
    return (0.05 * voiced * envelope + 0.003 * rng.standard_normal(samples)).astype(np.float32)


@pytest.fixture(scope="module")
def listened(tmp_path_factory, packaged_dsl_codec, packaged_baseline_codec):
    """The tool run on untrained DSL and baseline packages with two check clips each."""
    root = tmp_path_factory.mktemp("listen")
    models = []
    for name, package in (("dsl", packaged_dsl_codec), ("baseline", packaged_baseline_codec)):
        folder = root / "models" / name
        shutil.copytree(package, folder)
        (folder / "check").mkdir()
        for seed, (clip, samples) in enumerate(CLIP_SAMPLES.items()):
            sf.write(folder / "check" / f"{clip}.wav", speech_like(samples, seed), 16000, "PCM_16")
        models.append(folder)
    out, results = root / "listen", root / "listen.json"
    argv = ["--models", *map(str, models), "--out", str(out), "--results", str(results)]
    assert listen.main(argv) == 0
    return dict(models=models, out=out, result=json.loads(results.read_text()))


def test_every_clip_is_written_once_per_pass_as_16khz_flac_of_its_length(listened):
    out = listened["out"]
    expected = {
        f"{model}/{clip}.{name}.flac"
        for model, passes in (("dsl", listen.PASSES), ("baseline", ("full",)))
        for clip in CLIP_SAMPLES
        for name in passes
    }
    written = {p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()}
    assert written == expected  # and no temporary file left behind
    for path in expected:
        info = sf.info(out / path)
        clip = path.split("/")[1].split(".")[0]
        assert (info.format, info.subtype, info.samplerate, info.channels) == (
            "FLAC",
            "PCM_16",
            16000,
            1,
        )
        assert info.frames == CLIP_SAMPLES[clip], path


def test_the_light_pass_of_a_dsl_model_is_not_its_full_pass(listened):
    out = listened["out"] / "dsl"
    for clip in CLIP_SAMPLES:
        full = sf.read(out / f"{clip}.full.flac")[0]
        light = sf.read(out / f"{clip}.light.flac")[0]
        assert np.abs(full - light).max() > 1e-3, clip


def test_the_result_file_scores_every_decode_and_names_the_models(listened):
    result, (dsl, baseline) = listened["result"], listened["models"]
    assert result["meta"]["command"].startswith("python -m tools.listen --models ")
    assert result["meta"]["cpu"] and result["meta"]["threads"] == 1
    by_name = {model["name"]: model for model in result["models"]}
    assert by_name["dsl"]["passes"] == list(listen.PASSES) and by_name["dsl"]["threshold"] > 0
    assert by_name["baseline"]["passes"] == ["full"] and by_name["baseline"]["threshold"] is None
    for model, folder in ((by_name["dsl"], dsl), (by_name["baseline"], baseline)):
        assert model["codec_sha256"] == sha256_file(folder / "codec.ckpt")
        assert [row["clip"] for row in model["clips"]] == [f"{c}.wav" for c in CLIP_SAMPLES]
        for row in model["clips"]:
            assert set(row["passes"]) == set(model["passes"])
            for name, decode in row["passes"].items():
                assert 1.0 <= decode["visqol"] <= 5.0
                assert Path(decode["path"]).is_file()
                assert ("light_share" in decode) == (name == "mixed")
    shares = [row["passes"]["mixed"]["light_share"] for row in by_name["dsl"]["clips"]]
    assert all(0.0 <= share <= 1.0 for share in shares)


def hand_made_result():
    """A result file of two models, the second without the DSL and missing a clip."""

    def row(clip, model, scores, share=None):
        passes = {
            name: dict(path=f"docs/listen/{model}/{clip}.{name}.flac", visqol=score)
            for name, score in scores.items()
        }
        if share is not None:
            passes["mixed"]["light_share"] = share
        original = f"pretrained/{model}/check/{clip}.wav"
        return dict(
            clip=f"{clip}.wav", original=original, original_sha256=clip, seconds=3.0, passes=passes
        )

    dsl = dict(
        name="dsl-x", codec_sha256="ab" * 32, dsl=True, threshold=0.5, passes=list(listen.PASSES)
    )
    dsl["clips"] = [
        row("one", "dsl-x", dict(full=2.0, mixed=1.5, light=1.0), share=0.5),
        row("two", "dsl-x", dict(full=3.0, mixed=3.0, light=None), share=0.0),
    ]
    base = dict(name="base-x", codec_sha256="cd" * 32, dsl=False, threshold=None, passes=["full"])
    base["clips"] = [row("one", "base-x", dict(full=2.5))]
    meta = dict(command="python -m tools.listen --models x", cpu="2-core Some CPU", threads=1)
    return dict(meta=dict(meta, engine="torch", visqol="ViSQOL v"), models=[dsl, base])


def test_the_table_has_a_row_per_clip_a_cell_per_pass_and_the_means():
    lines = listen.table(hand_made_result()).splitlines()
    assert "2-core Some CPU" in lines[0] and "python -m tools.listen --models x" in lines[0]
    header = lines.index(
        "| clip | original | `dsl-x` full | `dsl-x` mixed | `dsl-x` light | `base-x` full |"
    )
    one, two, mean = lines[header + 2 :]
    assert one == (
        "| one | [wav](../pretrained/dsl-x/check/one.wav) "
        "| [2.00](listen/dsl-x/one.full.flac) "
        "| [1.50](listen/dsl-x/one.mixed.flac), 50% light "
        "| [1.00](listen/dsl-x/one.light.flac) "
        "| [2.50](listen/base-x/one.full.flac) |"
    )
    assert two.endswith("| [-](listen/dsl-x/two.light.flac) | - |")  # no score; no decode
    assert mean == "| **mean** | | **2.50** | **2.25, 25.0% light** | **1.00** | **2.50** |"


def test_the_table_option_prints_the_table_and_runs_nothing(tmp_path, capsys):
    result = tmp_path / "listen.json"
    result.write_text(json.dumps(hand_made_result()))
    assert listen.main(["--table", str(result)]) == 0
    assert capsys.readouterr().out == listen.table(hand_made_result()) + "\n"


def test_the_docs_table_links_every_decoded_file_and_only_those():
    result = json.loads((ROOT / "docs" / "results" / "listen.json").read_text())
    links = LINK.findall(listen.table(result))
    targets = {(ROOT / "docs" / link).resolve() for link in links}
    assert all(target.is_file() for target in targets), [t for t in targets if not t.is_file()]
    decodes = {t for t in targets if t.suffix == ".flac"}
    assert decodes == {p.resolve() for p in (ROOT / "docs" / "listen").rglob("*.flac")}
    assert len(decodes) == sum(len(m["passes"]) * len(m["clips"]) for m in result["models"])


def package_without(tmp_path, missing):
    folder = tmp_path / f"no-{missing.replace('/', '-')}"
    (folder / "check").mkdir(parents=True)
    for name in ("hyperparams.yaml", "codec.ckpt", "check/a.wav"):
        if name != missing:
            (folder / name).write_bytes(b"")
    return folder


@pytest.mark.parametrize(
    "make",
    [
        lambda tmp: tmp / "no-such-model",
        lambda tmp: package_without(tmp, "codec.ckpt"),
        lambda tmp: package_without(tmp, "check/a.wav"),
    ],
    ids=["missing folder", "no weights", "no check clips"],
)
def test_a_bad_models_folder_is_named_in_the_error_and_nothing_is_written(tmp_path, capsys, make):
    bad = make(tmp_path)
    out, results = tmp_path / "out", tmp_path / "listen.json"
    with pytest.raises(SystemExit) as exit:
        listen.main(["--models", str(bad), "--out", str(out), "--results", str(results)])
    assert exit.value.code == 2
    assert f"--models: {bad} " in capsys.readouterr().err
    assert not out.exists() and not results.exists()
