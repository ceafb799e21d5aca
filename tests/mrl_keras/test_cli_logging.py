"""mrl_keras/cli_logging.py: what a command lets TensorFlow, ScaNN and absl print.

Each case runs in a fresh interpreter without TF_CPP_MIN_LOG_LEVEL in its environment (the
suite's conftest sets it), the way a user runs `mrl`.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest

from mrl_keras import cli_logging

# A C++ log line of TensorFlow (`2026-01-01 12:00:00.000000: I tensorflow/...`) or of absl
# (`I0000 00:00:1700000000.000000  123 file.cc:58] ...`), absl's pre-init banner, or cuInit.
LOG_LINE = re.compile(
    r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d+: [IWEF] |[IWEF]\d{4} \d\d:\d\d:\d\d\.\d+ "
    r"|WARNING: All log messages before absl::InitializeLog)|cuInit",
    re.M,
)

_SCANN_BUILD = """
import numpy as np
from scann.scann_ops.py import scann_ops_pybind
db = np.random.default_rng(0).normal(size=(2000, 8)).astype(np.float32)
searcher = scann_ops_pybind.builder(db, 5, "dot_product").tree(
    num_leaves=20, num_leaves_to_search=5, training_sample_size=2000).score_brute_force().build()
print(searcher.search_batched(db[:2])[0].shape)
"""


def run_python(code: str, **env: str) -> subprocess.CompletedProcess:
    environ = {k: v for k, v in os.environ.items() if k != cli_logging.TF_LOG_ENV}
    environ.update(env)
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=300, env=environ
    )


def test_configure_sets_the_tf_log_level_unless_the_user_did():
    show = "import os; print(os.environ['TF_CPP_MIN_LOG_LEVEL'])"
    for verbose, expected in ((False, "2"), (True, "0")):
        code = f"from mrl_keras import cli_logging; cli_logging.configure({verbose}); {show}"
        assert run_python(code).stdout.strip() == expected
    code = f"from mrl_keras import cli_logging; cli_logging.configure(False); {show}"
    assert run_python(code, TF_CPP_MIN_LOG_LEVEL="1").stdout.strip() == "1"
    assert run_python(code, TF_CPP_MIN_LOG_LEVEL="").stdout.strip() == "2"  # empty: not chosen


def test_tensorflow_and_scann_print_no_log_line_unless_verbose():
    """TF's INFO lines and cuInit (no GPU here), ScaNN's absl INFO lines: none without
    `--verbose`; with it, ScaNN's build log shows (so it is the hook that silences it)."""
    pytest.importorskip("scann")
    quiet = run_python(
        "from mrl_keras import cli_logging; cli_logging.configure(False)\n"
        "import tensorflow as tf\n"
        "print(float(tf.reduce_sum(tf.constant([1.0, 2.0]))))\n" + _SCANN_BUILD
    )
    assert quiet.returncode == 0, quiet.stderr
    assert quiet.stdout.split() == ["3.0", "(2,", "5)"]
    assert not LOG_LINE.search(quiet.stderr), quiet.stderr
    loud = run_python(
        "from mrl_keras import cli_logging; cli_logging.configure(True)\n" + _SCANN_BUILD
    )
    assert loud.returncode == 0, loud.stderr
    assert "partitioner_factory_base.cc" in loud.stderr


def test_without_lines_drops_only_matching_lines_written_to_fd_2(capfd):
    with cli_logging.without_lines(re.compile("drop me")):
        os.write(2, b"keep 1\nplease drop me\nkeep 2\n")
    assert capfd.readouterr().err == "keep 1\nkeep 2\n"


def test_without_lines_writes_back_when_the_block_raises(capfd):
    with pytest.raises(RuntimeError), cli_logging.without_lines(re.compile("x")):
        os.write(2, b"kept\n")
        raise RuntimeError("boom")
    assert capfd.readouterr().err == "kept\n"


def test_quiet_scann_extension_is_false_on_a_library_without_absl(tmp_path):
    library = tmp_path / "not_a_library.so"
    library.write_bytes(b"\0" * 64)
    assert cli_logging.quiet_scann_extension(str(library)) is False
