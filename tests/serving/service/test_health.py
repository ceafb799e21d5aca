"""The readiness prober: answers from its cache, probes in the background, survives errors,
and keeps backend messages out of the cached details."""

import time

from mrl_keras.serving.backends.errors import Unavailable
from mrl_keras.serving.service.health import HealthProber


def test_cached_answers_follow_the_probe_and_errors_keep_only_the_code():
    state = {"up": True}
    errors = []

    def probe():
        if not state["up"]:
            raise Unavailable("Cannot reach http://127.0.0.1:1234: refused")
        return True, {"backend_state": "AVAILABLE", "model_version": 3}

    prober = HealthProber(probe, interval_s=0.02, on_error=errors.append).start()
    try:
        ready, details, age = prober.snapshot()
        assert ready and details["model_version"] == 3 and age >= 0
        state["up"] = False
        for _ in range(500):  # bounded: until the background probe saw it
            if not prober.snapshot()[0]:
                break
            time.sleep(0.01)
        ready, details, _ = prober.snapshot()
        assert not ready and details == {"backend_state": "UNAVAILABLE"}
        assert errors and errors[-1].code == "UNAVAILABLE"
        state["up"] = True
        assert prober.probe_once()[0] is True
    finally:
        prober.close()


def test_a_failing_probe_never_kills_the_prober():
    def probe():
        raise RuntimeError("bug")

    prober = HealthProber(probe, interval_s=0.01).start()
    time.sleep(0.05)
    ready, details, _ = prober.snapshot()
    assert not ready and details["backend_state"] == "UNKNOWN" and prober.probes >= 2
    prober.close()


def test_a_reported_failure_is_visible_at_once_and_the_next_probe_corrects_it():
    prober = HealthProber(lambda: (True, {"backend_state": "AVAILABLE"}), interval_s=60).start()
    try:
        prober.report_unavailable("UNAVAILABLE")
        ready, details, _ = prober.snapshot()
        assert not ready and details["backend_state"] == "UNAVAILABLE"
        for _ in range(500):  # report_unavailable wakes the prober (bounded wait)
            if prober.snapshot()[0]:
                break
            time.sleep(0.01)
        assert prober.snapshot()[0] is True
    finally:
        prober.close()
