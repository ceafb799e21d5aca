"""demo/progress.py: stage lines, timings and the stage named in a failure."""

import io

import pytest

from mrl_keras.demo.progress import Progress, StageError


def test_stages_print_counter_and_record_status():
    out = io.StringIO()
    progress = Progress(["train", "export"], stream=out)
    with progress.stage("train", "fitting"):
        pass
    lines = out.getvalue().splitlines()
    assert lines[0] == "[mrl demo] (1/2) train: fitting"
    assert lines[1].startswith("[mrl demo] (1/2) train: done in ") and len(lines) == 2
    assert progress.status == {"train": "ok", "export": "pending"}
    assert progress.timings["train"] >= 0


def test_a_failure_becomes_a_stage_error_with_its_first_line():
    progress = Progress(["train", "export"], stream=io.StringIO())
    with pytest.raises(StageError, match=r"stage 'export' failed: OSError: disk full") as info:
        with progress.stage("export", "writing"):
            raise OSError("disk full\nsecond line")
    assert info.value.stage == "export" and info.value.reason == "OSError: disk full"
    assert progress.status["export"] == "failed" and "export" in progress.timings
