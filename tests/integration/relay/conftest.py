"""Fixtures for the relay's tests (the helpers live in tests/support/relay.py)."""

from __future__ import annotations

import pytest

from support.relay import WAIT, RelayProcess, ScriptedUpstream, answer


@pytest.fixture
def upstream_factory():
    made = []

    def make(behave=answer):
        server = ScriptedUpstream(behave)
        made.append(server)
        return server

    yield make
    for server in made:
        server.close()


@pytest.fixture
def upstream(upstream_factory):
    return upstream_factory()


@pytest.fixture
def relay_factory(tmp_path):
    started = []

    def start(*args, **kwargs):
        process = RelayProcess(tmp_path, args, **kwargs)
        started.append(process)
        return process

    yield start
    for process in started:
        if process.proc.poll() is None:
            process.proc.kill()
            process.proc.wait(WAIT)
        process.notify.close()
        assert "Traceback" not in process.log(), "the relay logged an internal error:\n" + process.log()
