"""`mrl embed` (pipelines/cli.py)."""

import numpy as np
import pytest

from mrl_keras.pipelines import cli
from mrl_keras.serving.retrieval.embedding_shards import read_embeddings_manifest


def test_embed_command_runs_the_pipeline(tmp_path, fm_model, fm_images, capsys):
    base, backend = fm_model
    images, _ = fm_images
    np.save(tmp_path / "x.npy", images[:120])
    out = tmp_path / "emb"
    argv = ["--npy", str(tmp_path / "x.npy"), "--model", base, "--out", str(out), "--shards", "3",
            "--dim", "32", "--dtype", "bfloat16", "--runner", "DirectRunner"]
    assert cli.main(argv) == 0
    assert "wrote 120 embeddings in 3 shards" in capsys.readouterr().err
    manifest = read_embeddings_manifest(out, model_version=1)
    assert (manifest["count"], manifest["dim"], manifest["dtype"]) == (120, 32, "bfloat16")
    assert cli.main(argv) == 1 and "overwrite" in capsys.readouterr().err
    assert cli.main(argv + ["--overwrite"]) == 0


@pytest.mark.parametrize(
    "argv, code, message",
    [
        (["--model", "m", "--out", "o"], 2, "one of the arguments --images --tfrecords --npy --tfds is required"),
        (["--npy", "x", "--images", "y", "--model", "m", "--out", "o"], 2, "not allowed with"),
        (["--npy", "x", "--model", "m", "--out", "o", "--num-shards", "3"], 2, "unknown flag --num-shards"),
        (["--npy", "x", "--model", "/nonexistent", "--out", "o"], 1, "Cannot read the model"),
    ],
)
def test_bad_arguments_are_one_line_errors(argv, code, message, capsys):
    assert cli.main(argv) == code
    err = capsys.readouterr().err.strip().splitlines()
    assert err and message in err[-1] and err[-1].startswith("mrl embed")
