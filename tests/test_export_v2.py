"""Runs on IndexTTS-2 / 2.5 bases: the family check when a run meets a base, and the merged export.

The runs come from ``helpers_v2.write_v2_run`` (the run layout without training). The exported
``gpt.pth`` is checked here against this project's strict loader and against the adapter's own
factors; ``tools/conformance_v2/check_export.py`` loads it into the reference's GPT class
(docs/conformance.md).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf
from safetensors.torch import load_file

from helpers import write_lora_run
from helpers_v2 import write_v2_run
from test_lora import assert_export_refused
from indextts.checkpoint_folder import CheckpointFolder
from indextts.checkpoint_folder.folder import FINGERPRINT_CACHE_SUFFIX
from indextts.checkpoints import expected_shapes, tensor_shapes
from indextts.errors import CheckpointError
from indextts.gpt.generation import GenerationConfig
from indextts.inference import IndexTTS, SynthesisOptions
from indextts.inference.adapters import load_speakers, load_trained_run
from indextts.inference.export import EXPORT_INFO, export_merged
from indextts.run_folder import ADAPTER_CONFIG, ADAPTER_DIR, ADAPTER_WEIGHTS, SPEAKERS_FILE, SPEAKERS_INFO
from indextts.v2.gpt.loading import load_gpt_v2
from indextts.v2.text import GLOSSARY_FILE

VERSIONS = ("2", "2.5")
PEFT_PREFIX = "base_model.model."


@pytest.fixture(scope="module")
def v2_runs(tiny_v2_dirs, tmp_path_factory) -> dict[str, Path]:
    """One run per IndexTTS-2 family, by version."""
    root = tmp_path_factory.mktemp("v2_runs")
    return {version: write_v2_run(root / version, tiny_v2_dirs[version]) for version in VERSIONS}


@pytest.fixture(scope="module")
def runs_15(tiny_model_dir, tmp_path_factory) -> dict[str, Path]:
    """IndexTTS-1.5 runs: one written before runs named their family, one that names it."""
    root, base = tmp_path_factory.mktemp("runs_15"), CheckpointFolder(tiny_model_dir)
    runs = {}
    for name in ("unnamed", "named"):
        runs[name] = write_lora_run(root / name, base.load_gpt(), torch.zeros(100, 8), ("alice",), identity=base.identity(),
                                    model_dir=tiny_model_dir)
    config = OmegaConf.load(runs["named"] / "config.yaml")
    config.model.family = "1.5"
    OmegaConf.save(config, runs["named"] / "config.yaml")
    return runs


def _refusal(run: Path, model_dir: Path) -> str:
    base = CheckpointFolder(model_dir)
    with pytest.raises(CheckpointError) as caught:
        load_trained_run(run, base.load_gpt(), base=base)
    return str(caught.value)


@pytest.mark.parametrize("version", VERSIONS)
def test_an_indextts2_run_is_refused_on_a_15_base_by_family(v2_runs, tiny_v2_dirs, tiny_model_dir, version):
    message = _refusal(v2_runs[version], tiny_model_dir)
    assert f"trained on an IndexTTS-{version} base" in message
    assert f"{Path(tiny_model_dir).resolve()} holds IndexTTS-1.5" in message
    assert f"model_dir in its config.yaml: {Path(tiny_v2_dirs[version]).resolve()}" in message
    assert "different base GPT" not in message  # the family, not a shape, is named


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("run", ("unnamed", "named"))
def test_a_15_run_is_refused_on_an_indextts2_base(runs_15, tiny_v2_dirs, version, run):
    message = _refusal(runs_15[run], tiny_v2_dirs[version])
    trained = "1.x" if run == "unnamed" else "1.5"
    assert f"trained on an IndexTTS-{trained} base" in message and f"holds IndexTTS-{version}" in message


@pytest.mark.parametrize("trained, other", (("2", "2.5"), ("2.5", "2")))
def test_2_and_25_runs_are_refused_on_each_others_base(v2_runs, tiny_v2_dirs, trained, other):
    message = _refusal(v2_runs[trained], tiny_v2_dirs[other])
    assert f"trained on an IndexTTS-{trained} base" in message and f"holds IndexTTS-{other}" in message
    without_folder = load_gpt_v2(CheckpointFolder(tiny_v2_dirs[other]).v2.paths.gpt,
                                 CheckpointFolder(tiny_v2_dirs[other]).v2.gpt_dims)
    with pytest.raises(CheckpointError, match=f"the base GPT given holds IndexTTS-{other}"):
        load_trained_run(v2_runs[trained], without_folder)


def test_15_runs_still_load_on_their_base(runs_15, tiny_model_dir):
    for run in runs_15.values():
        assert load_trained_run(run, CheckpointFolder(tiny_model_dir).load_gpt()).speakers


@pytest.fixture(scope="module", params=VERSIONS)
def exported(request, v2_runs, tiny_v2_dirs, tmp_path_factory):
    """The export of each family's run, from a copy of its base that also holds the optional glossary."""
    version, work = request.param, tmp_path_factory.mktemp("export")
    base = shutil.copytree(tiny_v2_dirs[version], work / "base")
    (base / GLOSSARY_FILE).write_text("TTS: {zh: 语音合成, en: text to speech}\n", encoding="utf-8")
    out = export_merged(v2_runs[version], base, work / "out")
    return {"version": version, "out": out, "run": v2_runs[version], "base": base}


def _files(root: Path) -> set[str]:
    return {p.relative_to(root).as_posix() for p in root.rglob("*")
            if p.is_file() and not p.name.endswith(FINGERPRINT_CACHE_SUFFIX)}


def test_the_export_is_a_complete_folder_of_the_base_family(exported):
    out, base = exported["out"], exported["base"]
    assert GLOSSARY_FILE in _files(base) and "hf_cache/campplus_cn_common.bin" in _files(base)
    assert _files(out) == _files(base) | {SPEAKERS_FILE, SPEAKERS_INFO, EXPORT_INFO}
    for name in _files(base) - {"gpt.pth", "config.yaml"}:
        assert (out / name).read_bytes() == (base / name).read_bytes(), name
    folder = CheckpointFolder(out)
    assert folder.family.version == exported["version"]
    assert OmegaConf.to_container(folder.cfg) == OmegaConf.to_container(CheckpointFolder(base).cfg)
    assert json.loads((out / EXPORT_INFO).read_text())["base_identity"] == CheckpointFolder(base).identity()


def test_the_exported_gpt_has_exactly_the_release_keys_and_loads_strictly(exported):
    stored = torch.load(exported["out"] / "gpt.pth", weights_only=True)
    assert set(stored) == {"model"}
    folder = CheckpointFolder(exported["out"])
    assert tensor_shapes(stored["model"]) == expected_shapes(folder.v2.gpt_dims)
    assert tensor_shapes(folder.load_gpt().state_dict()) == tensor_shapes(stored["model"])


def _lora_deltas(run: Path) -> dict[str, torch.Tensor]:
    """Base parameter name -> scale * (B A)^T, computed from the adapter files (GPT-2 Conv1D weights are (in, out))."""
    config = json.loads((run / ADAPTER_DIR / ADAPTER_CONFIG).read_text())
    assert config["fan_in_fan_out"]
    tensors, scale = load_file(str(run / ADAPTER_DIR / ADAPTER_WEIGHTS)), config["lora_alpha"] / config["r"]
    deltas = {}
    for key in (k for k in tensors if k.endswith(".lora_A.weight")):
        down, up = tensors[key], tensors[key.replace("lora_A", "lora_B")]
        deltas[key.removeprefix(PEFT_PREFIX).replace(".lora_A.weight", ".weight")] = scale * (up @ down).T
    return deltas


def test_merged_weights_are_the_base_plus_the_lora_delta(exported):
    merged = torch.load(exported["out"] / "gpt.pth", weights_only=True)["model"]
    base = torch.load(CheckpointFolder(exported["base"]).v2.paths.gpt, weights_only=True)["model"]
    deltas = _lora_deltas(exported["run"])
    assert deltas and set(deltas) < set(base)
    assert all(deltas[key].abs().max() > 1e-3 for key in deltas)  # the export must change these
    for key, weight in base.items():
        if key in deltas:
            torch.testing.assert_close(merged[key], weight.float() + deltas[key], rtol=1e-5, atol=1e-6)
        else:
            assert torch.equal(merged[key], weight.float()), key


def test_the_runs_speakers_are_carried_with_their_v2_fields(exported):
    out, run = exported["out"], exported["run"]
    assert (out / SPEAKERS_FILE).read_bytes() == (run / SPEAKERS_FILE).read_bytes()
    assert (out / SPEAKERS_INFO).read_bytes() == (run / SPEAKERS_INFO).read_bytes()
    speakers = load_speakers(out / SPEAKERS_FILE)
    assert sorted(speakers) == ["alice", "bob"] and all(s.is_v2 and s.style is not None for s in speakers.values())



def test_export_targets_are_refused_as_for_15(v2_runs, tiny_v2_dirs, tmp_path, capsys):
    base = shutil.copytree(tiny_v2_dirs["2.5"], tmp_path / "bases" / "base")  # a copy: a failure must not spoil the shared one
    run = shutil.copytree(v2_runs["2.5"], tmp_path / "runs" / "run")
    assert_export_refused(capsys, run, base, base, base, f"{base} is the base checkpoint folder")
    assert_export_refused(capsys, run, base, base / "hf_cache" / "merged", base, "is inside the base checkpoint")
    assert_export_refused(capsys, run, base, run, run, "is the training run folder")
    assert_export_refused(capsys, run, base, run.parent, run, "contains the training run folder")
    other = tmp_path / "other"
    shutil.copytree(base, other)
    assert_export_refused(capsys, run, base, other, other, "already holds model files")
    assert not (base / "hf_cache" / "merged").exists()


def test_export_on_the_other_family_is_refused_before_writing(v2_runs, tiny_v2_dirs, tmp_path, capsys):
    assert_export_refused(capsys, v2_runs["2"], tiny_v2_dirs["2.5"], tmp_path / "out", v2_runs["2"],
                    "trained on an IndexTTS-2 base", "holds IndexTTS-2.5")
    assert not (tmp_path / "out").exists()


def test_auxiliary_models_linked_into_the_base_are_copied_as_files(v2_runs, tiny_v2_dirs, tmp_path):
    """A base whose hf_cache/ is a link to a shared folder: the export holds real copies, not the link."""
    base = shutil.copytree(tiny_v2_dirs["2"], tmp_path / "base")
    shutil.move(base / "hf_cache", tmp_path / "shared_hf_cache")
    (base / "hf_cache").symlink_to(tmp_path / "shared_hf_cache", target_is_directory=True)
    out = export_merged(v2_runs["2"], base, tmp_path / "out")
    copied = [p for p in (out / "hf_cache").rglob("*") if p.is_file()]
    assert not (out / "hf_cache").is_symlink() and not any(p.is_symlink() for p in copied)
    assert _files(out / "hf_cache") == _files(tmp_path / "shared_hf_cache") and copied


def test_the_exported_folder_speaks_by_name_with_the_runs_codes(exported):
    """Issue 24: the merged folder alone speaks each speaker with the codes the run gives on its base."""
    greedy = SynthesisOptions(generation=GenerationConfig(do_sample=False, num_beams=1, max_new_tokens=20, seed=0))
    text = "Hello there, 你好。"
    with_run = IndexTTS.from_pretrained(exported["base"], adapter=exported["run"], device="cpu")
    merged = IndexTTS.from_pretrained(exported["out"], device="cpu")
    assert merged.family.version == exported["version"]
    for speaker in ("alice", "bob"):
        from_run = with_run.synthesize(text, voice=speaker, options=greedy)
        from_export = merged.synthesize(text, voice=speaker, options=greedy)
        assert len(from_run.codes) == len(from_export.codes) and sum(map(len, from_run.codes)) > 0
        for run_codes, export_codes in zip(from_run.codes, from_export.codes):
            torch.testing.assert_close(export_codes, run_codes, rtol=0, atol=0)
