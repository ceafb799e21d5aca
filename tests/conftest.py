"""Suite-wide pytest configuration.

Package-specific fixtures live in each folder's own conftest.py (tests/export/conftest.py, ...).
"""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import pytest  # noqa: E402


def pytest_addoption(parser):
    parser.addoption(
        "--run-slow", action="store_true", default=False, help="also run tests marked slow"
    )


def pytest_collection_modifyitems(config, items):
    if config.getoption("--run-slow"):
        return
    skip_slow = pytest.mark.skip(reason="slow: run with --run-slow")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip_slow)


@pytest.fixture(autouse=True)
def _unfreeze_gc():
    """A served app freezes the garbage collector's view of its start-up objects
    (`ServiceConfig.freeze_gc`); the suite's process hosts many apps, so each test starts
    unfrozen and leaves nothing frozen behind."""
    import gc

    yield
    gc.unfreeze()
