"""mrl_keras/progress_bar.py: a bar on a terminal, one line per update in a log."""

from __future__ import annotations

import io

import pytest

from mrl_keras.progress_bar import progress


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_a_log_gets_whole_lines_and_a_last_one():
    log = io.StringIO()
    assert list(progress(range(3), "embedding", unit="batch", interval=0, stream=log)) == [0, 1, 2]
    lines = log.getvalue().splitlines()
    assert "\r" not in log.getvalue()
    assert [line.split(",")[0] for line in lines] == [
        "embedding: 1/3 batch (33%)",
        "embedding: 2/3 batch (67%)",
        "embedding: 3/3 batch (100%)",
    ]


def test_a_long_interval_prints_the_first_and_the_last_line_only():
    log = io.StringIO()
    list(progress(iter(range(5)), "store", interval=3600, stream=log))
    assert [line.split(",")[0] for line in log.getvalue().splitlines()] == [
        "store: 1 it",
        "store: 5 it",
    ]


def test_an_empty_loop_still_says_it_ran():
    log = io.StringIO()
    assert list(progress([], "store", stream=log)) == []
    assert log.getvalue().startswith("store: 0/0 it, ")


def test_a_terminal_gets_the_tqdm_bar():
    pytest.importorskip("tqdm")
    term = Terminal()
    assert list(progress(range(4), "embedding", stream=term)) == [0, 1, 2, 3]
    assert "\r" in term.getvalue() and "4/4" in term.getvalue()


def test_a_negative_interval_is_refused():
    with pytest.raises(ValueError, match="interval >= 0"):
        list(progress(range(2), "x", interval=-1))
