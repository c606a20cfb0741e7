"""Issue 24's bad inputs for IndexTTS-2/2.5, through the commands: one message, exit status 2, no traceback.

The library-level refusals have their own tests (test_export_v2, test_train_v2, test_infer_v2); here
each reaches the user as the commands print it.
"""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import soundfile as sf
import torch

from helpers import write_lora_run
from helpers_v2 import write_v2_run
from indextts.checkpoint_folder import CheckpointFolder
from indextts.cli.infer import main as infer_main


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    path = tmp_path_factory.mktemp("clip") / "voice.wav"
    t = np.arange(36000) / 24000
    sf.write(path, (0.3 * np.sin(2 * np.pi * 220 * t) * (1 + np.sin(7 * t))).astype(np.float32), 24000)
    return path


def _infer(capsys, tmp_path, *args: str) -> str:
    """indextts-infer with ``args``; asserts status 2, no output file and no traceback; returns the message."""
    output = tmp_path / "never.wav"
    status = infer_main([*args, "--text", "Hello.", "--output", str(output), "--device", "cpu"])
    err = capsys.readouterr().err
    assert status == 2 and err.startswith("error: ") and "Traceback" not in err and not output.exists(), err
    return err


@pytest.mark.parametrize("vector, expected", [("0.1,0.2", "needs 8 values"), ("0,0,0,0,0,0,0,1.5", "calm=1.5"),
                                              ("calm,0,0,0,0,0,0,0", "separated by commas")])
def test_a_bad_emotion_vector_is_a_usage_error(capsys, tiny_v2_dirs, clip, tmp_path, vector, expected):
    with pytest.raises(SystemExit) as stopped:
        infer_main(["--model_dir", str(tiny_v2_dirs["2"]), "--reference_audio", str(clip), "--text", "Hi.",
                    "--output", str(tmp_path / "never.wav"), "--emotion_vector", vector])
    err = capsys.readouterr().err
    assert stopped.value.code == 2 and "argument --emotion_vector" in err and expected in err
    assert "Traceback" not in err and not (tmp_path / "never.wav").exists()


def test_an_indextts2_adapter_on_a_15_base_and_the_reverse(capsys, tiny_v2_dirs, tiny_model_dir, tmp_path):
    v2_run = write_v2_run(tmp_path / "v2_run", tiny_v2_dirs["2"])
    err = _infer(capsys, tmp_path, "--model_dir", str(tiny_model_dir), "--adapter", str(v2_run), "--speaker", "alice")
    assert "trained on an IndexTTS-2 base" in err and "IndexTTS-1.5" in err
    base = CheckpointFolder(tiny_model_dir)
    run_15 = write_lora_run(tmp_path / "run_15", base.load_gpt(), torch.zeros(100, 8), ("alice",),
                            identity=base.identity(), model_dir=tiny_model_dir)
    err = _infer(capsys, tmp_path, "--model_dir", str(tiny_v2_dirs["2.5"]), "--adapter", str(run_15),
                 "--speaker", "alice")
    assert "IndexTTS-2.5" in err and "model_dir" in err


@pytest.mark.parametrize("version, aux, repository", [("2", "campplus_cn_common.bin", "funasr/campplus"),
                                                      ("2.5", "bigvgan/bigvgan_generator.pt",
                                                       "nvidia/bigvgan_v2_22khz_80band_256x")])
def test_a_missing_auxiliary_model_names_its_repository_and_command(capsys, tiny_v2_dirs, clip, tmp_path, version,
                                                                    aux, repository):
    base = shutil.copytree(tiny_v2_dirs[version], tmp_path / "base")
    (base / "hf_cache" / aux).unlink()
    err = _infer(capsys, tmp_path, "--model_dir", str(base), "--reference_audio", str(clip))
    assert aux.split("/")[-1] in err and repository in err and f"indextts download {version}" in err
