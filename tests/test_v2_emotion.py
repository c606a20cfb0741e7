"""IndexTTS-2 emotion matrices and the 8-value emotion vector."""

from __future__ import annotations

import pytest
import torch
from helpers import v2_golden_folders
from omegaconf import OmegaConf
from safetensors.torch import load_file

from indextts.errors import CheckpointError, ConfigError, InferenceError
from indextts.v2.emotion import (EMOTION_BIAS, EMOTIONS, MAX_EMOTION_SUM, check_emotion_vector,
                                 load_emotion_matrices, mix_emotion, normalize_emotion_vector,
                                 scale_emotion_vector)

COUNTS = [3, 1, 2, 4, 2, 1, 3, 2]
STYLE, WIDTH = 6, 5
GOLDENS = v2_golden_folders()


def _config(version: float = 2.0, counts=COUNTS):
    return OmegaConf.create({"version": version, "emo_num": list(counts), "spk_matrix": "feat1.pt",
                             "emo_matrix": "feat2.pt"})


@pytest.fixture()
def model_dir(tmp_path):
    torch.manual_seed(0)
    torch.save(torch.randn(sum(COUNTS), STYLE), tmp_path / "feat1.pt")
    torch.save(torch.randn(sum(COUNTS), WIDTH), tmp_path / "feat2.pt")
    return tmp_path


def test_each_emotion_picks_the_example_with_the_most_similar_speaker_style(model_dir):
    matrices = load_emotion_matrices(model_dir, _config())
    assert matrices.counts == tuple(COUNTS)
    # A style equal (up to scale) to one row of the first emotion's speakers picks that row there.
    style = 3.0 * matrices.speaker[0][2][None]
    rows = matrices.most_similar_rows(style)
    assert rows.shape == (1, len(EMOTIONS)) and rows[0, 0] == 2
    for k, speakers in enumerate(matrices.speaker):
        similarities = [torch.dot(style[0], s) / (style[0].norm() * s.norm()) for s in speakers]
        assert rows[0, k] == int(torch.stack(similarities).argmax())


def test_weighted_rows_and_mixing_follow_the_reference_formula(model_dir):
    matrices = load_emotion_matrices(model_dir, _config())
    weights = torch.tensor([[0.1, 0.0, 0.2, 0.0, 0.0, 0.3, 0.0, 0.1]])
    rows = matrices.most_similar_rows(torch.randn(1, STYLE))
    vector = matrices.weighted_rows(weights, rows)
    want = sum(weights[0, k] * matrices.emotion[k][rows[0, k]] for k in range(len(EMOTIONS)))
    torch.testing.assert_close(vector[0], want)
    reference = torch.randn(1, WIDTH)
    torch.testing.assert_close(mix_emotion(vector, weights, reference), vector + (1 - 0.7) * reference)


def test_a_batch_gives_each_row_what_it_gives_alone(model_dir):
    matrices = load_emotion_matrices(model_dir, _config())
    styles, weights = torch.randn(3, STYLE), torch.rand(3, len(EMOTIONS)) / 8
    rows = matrices.most_similar_rows(styles)
    batch = matrices.weighted_rows(weights, rows)
    for i in range(3):
        alone_rows = matrices.most_similar_rows(styles[i:i + 1])
        assert torch.equal(rows[i], alone_rows[0])
        torch.testing.assert_close(batch[i], matrices.weighted_rows(weights[i:i + 1], alone_rows)[0])


def test_matrices_move_to_a_device_as_a_whole(model_dir):
    matrices = load_emotion_matrices(model_dir, _config())
    moved = matrices.to("meta")
    assert all(r.is_meta for r in moved.speaker + moved.emotion) and moved.counts == matrices.counts
    assert not any(r.is_meta for r in matrices.speaker + matrices.emotion)


def test_random_rows_stay_inside_each_emotion_and_follow_the_generator(model_dir):
    matrices = load_emotion_matrices(model_dir, _config())
    rows = matrices.random_rows(50, torch.Generator().manual_seed(1))
    assert rows.shape == (50, len(EMOTIONS))
    assert all(int(rows[:, k].max()) < n and int(rows[:, k].min()) >= 0 for k, n in enumerate(COUNTS))
    assert torch.equal(rows, matrices.random_rows(50, torch.Generator().manual_seed(1)))


def test_emotion_vector_of_wrong_length_is_refused():
    with pytest.raises(InferenceError, match=r"needs 8 values \(happy, angry, .*calm\), but 7 were given"):
        check_emotion_vector([0.1] * 7)


@pytest.mark.parametrize("value", [-0.1, 1.3, float("nan")])
def test_emotion_vector_out_of_range_names_the_emotion(value):
    with pytest.raises(InferenceError, match=f"between 0 and 1.2, but sad={value}"):
        check_emotion_vector([0.0, 0.0, value, 0.0, 0.0, 0.0, 0.0, 0.0])
    assert check_emotion_vector([1.2] + [0.0] * 7).tolist() == pytest.approx([1.2] + [0.0] * 7)


def test_alpha_scaling_clamps_alpha_and_truncates_to_four_decimals():
    assert scale_emotion_vector([0.33333, 0.8], 0.5) == [int(0.33333 * 0.5 * 10000) / 10000, 0.4]
    assert scale_emotion_vector([0.33333, 0.8], 0.5)[0] == 0.1666
    assert scale_emotion_vector([0.3, 0.8], 2.0) == [0.3, 0.8]
    assert scale_emotion_vector([0.3, 0.8], -1.0) == [0.0, 0.0]


def test_normalisation_applies_the_bias_and_caps_the_sum():
    small = [0.1] + [0.0] * 7
    assert normalize_emotion_vector(small) == pytest.approx([0.1 * EMOTION_BIAS[0]] + [0.0] * 7)
    assert normalize_emotion_vector(small, apply_bias=False) == pytest.approx(small)
    capped = normalize_emotion_vector([1.0] * 8)
    assert sum(capped) == pytest.approx(MAX_EMOTION_SUM)
    assert capped[6] / capped[0] == pytest.approx(EMOTION_BIAS[6] / EMOTION_BIAS[0])


@pytest.mark.parametrize("version,repo,command", [(2.0, "IndexTeam/IndexTTS-2", "indextts download 2 "),
                                                  (2.5, "IndexTeam/IndexTTS-2.5", "indextts download 2.5 ")])
def test_missing_matrix_names_file_repository_and_command(tmp_path, version, repo, command):
    with pytest.raises(CheckpointError) as error:
        load_emotion_matrices(tmp_path, _config(version))
    message = str(error.value)
    assert f"{tmp_path / 'feat1.pt'} does not exist" in message and f"{repo} (feat1.pt);" in message
    assert f"`{command}--dir {tmp_path}`" in message


def test_an_empty_matrix_file_is_one_clear_error(model_dir):
    """An interrupted copy leaves an empty file, whose EOFError has no message."""
    (model_dir / "feat2.pt").write_bytes(b"")
    with pytest.raises(CheckpointError, match=r"feat2\.pt: the file is truncated or corrupt \(EOFError\)"):
        load_emotion_matrices(model_dir, _config())


def test_matrix_with_other_row_count_is_refused(model_dir):
    with pytest.raises(CheckpointError, match=r"with 19 rows \(the sum of emo_num.*holds \(18, 6\)"):
        load_emotion_matrices(model_dir, _config(counts=[*COUNTS[:-1], 3]))


def test_emo_num_of_wrong_length_is_a_config_error(model_dir):
    with pytest.raises(ConfigError, match="emo_num in config.yaml must give 8 positive row counts"):
        load_emotion_matrices(model_dir, _config(counts=COUNTS[:-1]))


@pytest.mark.parametrize("folder", GOLDENS, ids=[f.name for f in GOLDENS])
def test_golden_emotion_vector(folder):
    expected = load_file(folder / "expected.safetensors")
    names = ("style_0", "emo_weights", "emo_rows", "emo_vec_0", "emo_vec_weighted")
    if not all(name in expected for name in names):
        pytest.skip(f"{folder.name} lacks some of {names}")
    matrices = load_emotion_matrices(folder, OmegaConf.load(folder / "config.yaml"))
    weights = check_emotion_vector(expected["emo_weights"].tolist())[None]
    rows = matrices.most_similar_rows(expected["style_0"][None])
    assert torch.equal(rows[0], expected["emo_rows"].long())
    mixed = mix_emotion(matrices.weighted_rows(weights, rows), weights, expected["emo_vec_0"][None])
    torch.testing.assert_close(mixed[0], expected["emo_vec_weighted"], atol=1e-4, rtol=1e-4)
