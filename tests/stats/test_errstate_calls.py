"""``stats.blocks.errstate_calls``: each call of a decorated function runs under the error
state it names and leaves the caller's as it was, from many threads at once, on either
numpy path (numpy 2's per-call decorator, numpy 1's context per call)."""

from __future__ import annotations

import threading
import warnings

import numpy as np
import pytest

from ncinspect.stats import blocks


@pytest.mark.parametrize("per_call", [True, False])
def test_each_call_is_quiet_and_the_callers_state_comes_back(monkeypatch, per_call):
    if per_call and not blocks._ERRSTATE_PER_CALL:
        pytest.skip("numpy 1 has no per-call decorator")  # pragma: no cover - CI is numpy 2
    monkeypatch.setattr(blocks, "_ERRSTATE_PER_CALL", per_call)

    @blocks.errstate_calls(over="ignore", invalid="ignore")
    def overflow(x):
        return (x * x) - (x * x)  # inf - inf: overflow, then invalid

    errors, seen = [], []

    def run():
        try:
            for _ in range(200):
                with warnings.catch_warnings(record=True) as caught:
                    warnings.simplefilter("always")
                    out = overflow(np.array([1e300]))
                seen.append((bool(np.isnan(out[0])), len(caught)))
                if np.geterr()["over"] != "raise":  # the caller's state, set below
                    errors.append(np.geterr())
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    def thread_body():
        with np.errstate(over="raise"):  # the caller's own state, per thread
            run()

    threads = [threading.Thread(target=thread_body) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert seen == [(True, 0)] * 800  # quiet inside, NaN out, the caller's state after
