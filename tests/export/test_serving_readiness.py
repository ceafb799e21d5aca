"""What TF Serving needs: signature defs as documented, standard ops only, loadable without
mrl_keras, warmup records, and version folders that appear atomically."""

import json
import os
import re
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
from export_testing import DIMS, NUM_CLASSES, D, make_model

from mrl_keras.export.saved_model import export_saved_model
from mrl_keras.export.version_folder import TEMP_PREFIX
from mrl_keras.export.warmup import read_warmup_requests

ENV = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "KERAS_BACKEND": "tensorflow"}


def _parse_saved_model_cli(text):
    """{signature: {"inputs": {key: (dtype, shape)}, "outputs": {...}}} from `show --all`."""
    signatures = {}
    current = section = key = None
    for line in text.splitlines():
        line = line.strip()
        if m := re.match(r"signature_def\['(.+)'\]:", line):
            current = signatures.setdefault(m.group(1), {"inputs": {}, "outputs": {}})
        elif "contains the following input(s)" in line:
            section = "inputs"
        elif "contains the following output(s)" in line:
            section = "outputs"
        elif m := re.match(r"(inputs|outputs)\['(.+)'\] tensor_info:", line):
            key = m.group(2)
        elif current is not None and (m := re.match(r"dtype: (\w+)", line)):
            current[section][key] = [m.group(1), None]
        elif current is not None and (m := re.match(r"shape: (.+)", line)) and key:
            current[section][key][1] = m.group(1)
            key = None
    return signatures


def test_saved_model_cli_lists_documented_signatures(exported_mrl):
    _, result = exported_mrl
    cli = os.path.join(os.path.dirname(sys.executable), "saved_model_cli")
    text = subprocess.run(
        [cli, "show", "--dir", result.path, "--all"],
        capture_output=True,
        text=True,
        check=True,
        env=ENV,
    ).stdout
    found = _parse_saved_model_cli(text)
    image = ["DT_FLOAT", "(-1, 6, 6, 1)"]
    for m in (8, 16, 24, 32):
        assert found[f"embed_{m}"] == {
            "inputs": {"inputs": image},
            "outputs": {"embedding": ["DT_FLOAT", f"(-1, {m})"]},
        }
        assert found[f"embed_{m}_bytes"]["inputs"] == {"image_bytes": ["DT_STRING", "(-1)"]}
    assert found["serving_default"] == found[f"embed_{D}"]
    for m in DIMS:
        assert found[f"classify_{m}"] == {
            "inputs": {"inputs": image},
            "outputs": {
                "logits": ["DT_FLOAT", f"(-1, {NUM_CLASSES})"],
                "probabilities": ["DT_FLOAT", f"(-1, {NUM_CLASSES})"],
                "classes": ["DT_INT64", "(-1)"],
                "scores": ["DT_FLOAT", "(-1)"],
            },
        }
    assert found["classify_cascade"] == {
        "inputs": {"inputs": image},
        "outputs": {
            "classes": ["DT_INT64", "(-1)"],
            "scores": ["DT_FLOAT", "(-1)"],
            "dims_used": ["DT_INT32", "(-1)"],
        },
    }
    assert "tensorflow/serving/predict" in text


FRESH_PROCESS = textwrap.dedent(
    """
    import json, sys
    import numpy as np
    import tensorflow as tf
    from tensorflow.core.protobuf import saved_model_pb2
    from tensorflow.python.framework import op_def_registry

    path = sys.argv[1]
    loaded = tf.saved_model.load(path)
    x = tf.constant(np.random.default_rng(0).random((3, 6, 6, 1), dtype=np.float32))
    shapes = {}
    for name in sorted(loaded.signatures):
        fn = loaded.signatures[name]
        if name.endswith("_bytes"):
            png = tf.io.encode_png(tf.zeros((6, 6, 1), tf.uint8))
            out = fn(image_bytes=tf.stack([png] * 3))
        else:
            out = fn(inputs=x)
        shapes[name] = {k: v.shape.as_list() for k, v in out.items()}
    proto = saved_model_pb2.SavedModel()
    with open(path + "/saved_model.pb", "rb") as f:
        proto.ParseFromString(f.read())
    ops = set()
    for graph in proto.meta_graphs:
        ops |= {node.op for node in graph.graph_def.node}
        for function in graph.graph_def.library.function:
            ops |= {node.op for node in function.node_def}
    print(json.dumps({
        "shapes": shapes,
        "ops": sorted(ops),
        "unregistered": sorted(op for op in ops if op_def_registry.get(op) is None),
        "not_raw_ops": sorted(op for op in ops if not hasattr(tf.raw_ops, op)),
        "modules": sorted(m for m in sys.modules if m.split(".")[0] in ("mrl_keras", "scann")),
    }))
    """
)


def test_runs_in_fresh_tensorflow_only_process_with_standard_ops(exported_mrl):
    _, result = exported_mrl
    run = subprocess.run(
        [sys.executable, "-c", FRESH_PROCESS, result.path],
        capture_output=True,
        text=True,
        env=ENV,
        cwd="/",
    )
    assert run.returncode == 0, run.stderr[-2000:]
    report = json.loads(run.stdout.strip().splitlines()[-1])
    assert report["modules"] == []
    assert report["unregistered"] == []
    assert report["not_raw_ops"] == []
    assert not [op for op in report["ops"] if op.lower().startswith("scann")]
    assert set(result.signatures) <= set(report["shapes"])
    assert report["shapes"]["classify_cascade"] == {
        "classes": [3],
        "scores": [3],
        "dims_used": [3],
    }
    assert report["shapes"]["embed_24_bytes"] == {"embedding": [3, 24]}


def test_warmup_file_parses_as_prediction_logs(exported):
    _, result = exported
    records = read_warmup_requests(result.path)
    assert 0 < len(records) <= 1000
    names = [r.predict_log.request.model_spec.signature_name for r in records]
    assert sorted(names) == sorted(result.signatures)
    for record in records:
        request = record.predict_log.request
        assert request.model_spec.name == "tiny_mrl"
        assert len(request.inputs) == 1
        key = "image_bytes" if request.model_spec.signature_name.endswith("_bytes") else "inputs"
        assert key in request.inputs


KILLED_EXPORT = textwrap.dedent(
    """
    import sys
    sys.path.insert(0, sys.argv[2])
    from export_testing import make_model
    from mrl_keras.export.saved_model import export_saved_model
    export_saved_model(make_model(), sys.argv[1], bytes_signatures=True, extra_dims=(4, 12, 20))
    """
)


def test_killed_export_leaves_no_version_folder(tmp_path):
    base = tmp_path / "killed"
    child = subprocess.Popen(
        [sys.executable, "-c", KILLED_EXPORT, str(base), os.path.dirname(__file__)],
        env=ENV,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 120
    killed_while_writing = False
    try:
        while time.monotonic() < deadline and child.poll() is None:
            temps = [n for n in os.listdir(base)] if base.exists() else []
            if any(
                n.startswith(TEMP_PREFIX) and (base / n / "saved_model.pb").exists() for n in temps
            ):
                child.send_signal(signal.SIGKILL)
                killed_while_writing = True
                break
            time.sleep(0.002)
    finally:
        if child.poll() is None:
            child.kill()
        child.wait()
    assert killed_while_writing, "the export finished before it could be killed"
    listing = os.listdir(base)
    assert not [n for n in listing if n.isdigit()]
    assert [n for n in listing if n.startswith(TEMP_PREFIX)]
    # The next export on this host clears the dead process's temporary folder.
    result = export_saved_model(make_model(), base, warmup=False, verify=False)
    assert result.version == 1
    assert sorted(os.listdir(base)) == ["1"]


def test_version_folder_is_world_readable_like_a_plain_mkdir(exported):
    _, result = exported
    mode = os.stat(result.path).st_mode & 0o777
    umask = os.umask(0)
    os.umask(umask)
    assert mode == 0o777 & ~umask


def test_warmup_requests_run_against_loaded_model(exported, loaded):
    import tensorflow as tf

    _, result = exported
    for record in read_warmup_requests(result.path):
        request = record.predict_log.request
        inputs = {k: tf.make_ndarray(v) for k, v in request.inputs.items()}
        out = loaded.signatures[request.model_spec.signature_name](
            **{k: tf.constant(v) for k, v in inputs.items()}
        )
        assert all(np.asarray(v).shape[0] == 1 for v in out.values())
