"""SIGTERM and SIGHUP stop a run the way Ctrl-C does (nastk.run.signals): finished trials
kept, trials in flight recorded as interrupted, the report written and marked, the resume
command printed, exit status 128 + signal; a second signal exits at once; a resumed run ends
where an uninterrupted one does."""

import os
import random
import signal
import subprocess
import sys
import textwrap
import time

import pytest
from conftest import TESTS, wait_for_complete
from test_search import _cli, _config, finished_keys

from nastk.core.result import Status
from nastk.run.signals import Interrupted, exit_status, stop_on_signals
from nastk.run.sqlite_store import META_INTERRUPTED, RunStore

SIGNALS = [signal.SIGINT, signal.SIGTERM, signal.SIGHUP]


@pytest.mark.parametrize("signum", SIGNALS, ids=lambda s: signal.Signals(s).name)
def test_a_signal_in_the_block_raises_interrupted_and_handlers_are_restored(signum):
    # Python's own handlers first (an earlier test's library may have left one ignored)
    own = signal.default_int_handler if signum == signal.SIGINT else signal.SIG_DFL
    saved = signal.signal(signum, own)
    try:
        with pytest.raises(Interrupted) as caught, stop_on_signals():
            os.kill(os.getpid(), signum)
            time.sleep(5)  # the handler raises before this ends
        assert signal.getsignal(signum) is own
    finally:
        signal.signal(signum, saved)
    assert caught.value.signum == signum
    assert exit_status(caught.value) == 128 + signum
    assert isinstance(caught.value, KeyboardInterrupt)


def test_an_ignored_signal_stays_ignored():
    before = signal.signal(signal.SIGHUP, signal.SIG_IGN)
    try:
        with stop_on_signals():
            assert signal.getsignal(signal.SIGHUP) is signal.SIG_IGN
            assert signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL
    finally:
        signal.signal(signal.SIGHUP, before)


SLOW_CLEANUP = textwrap.dedent("""
    import time
    from nastk.run.signals import stop_on_signals

    with stop_on_signals():  # as `nastk` runs a command: the cleanup is inside the block
        try:
            print("ready", flush=True)
            time.sleep(60)
        except KeyboardInterrupt:
            print("cleaning up", flush=True)
            time.sleep(60)  # a second signal must not wait for this
""")


def test_a_second_signal_exits_at_once():
    proc = subprocess.Popen([sys.executable, "-c", SLOW_CLEANUP], stdout=subprocess.PIPE,
                            text=True)  # SIGTERM: not ignored even in a background job
    assert proc.stdout.readline().strip() == "ready"
    proc.send_signal(signal.SIGTERM)
    assert proc.stdout.readline().strip() == "cleaning up"
    t0 = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=10) == 128 + signal.SIGTERM
    assert time.monotonic() - t0 < 10


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    """The finished trials of the search run once, without a signal."""
    tmp = tmp_path_factory.mktemp("ref")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [str(TESTS), os.environ.get("PYTHONPATH", "")]))
    proc = _cli(["search", str(_config(tmp)), "--no-progress"], env)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    with RunStore.open_existing(tmp / "run") as st:
        return finished_keys(st)


@pytest.mark.slow
@pytest.mark.parametrize("signum", SIGNALS, ids=lambda s: signal.Signals(s).name)
def test_a_search_stopped_by_a_signal_reports_it_and_resumes_to_the_uninterrupted_run(
        tmp_path, toy_env, uninterrupted, signum):
    ref = uninterrupted

    # a random moment, drawn from a seeded generator so that a failure can be replayed
    moment = random.Random(signum).randint(3, 20)
    cfg = _config(tmp_path)
    run_dir = tmp_path / "run"
    # the signal's default disposition: a test run in the background (`&`, nohup) would pass
    # SIGINT or SIGHUP on ignored, and an ignored signal rightly stays ignored
    proc = _cli(["search", str(cfg), "--no-progress"], dict(toy_env, NASTK_TOY_SLEEP="0.1"),
                preexec_fn=lambda: signal.signal(signum, signal.SIG_DFL))
    wait_for_complete(run_dir / "store.sqlite", moment, 60, proc)
    sent = time.monotonic()
    proc.send_signal(signum)
    _, err = proc.communicate(timeout=60)
    name = signal.Signals(signum).name
    assert proc.returncode == 128 + signum, err
    assert time.monotonic() - sent < 30  # within a bounded time
    assert f"interrupted ({name})" in err and "--resume" in err
    report = (run_dir / "report.md").read_text()
    assert f"**Interrupted** by {name}" in report
    with RunStore.open_existing(run_dir) as st:
        assert st.count(Status.RUNNING) == 0
        done = st.count(Status.COMPLETE)
        assert moment <= done < 30
        assert st.get_meta(META_INTERRUPTED)["finished"] == done
        assert st.get_meta(META_INTERRUPTED)["signal"] == name

    again = _cli(["search", str(cfg), "--resume", "--no-progress"], toy_env)
    _, err = again.communicate(timeout=120)
    assert again.returncode == 0, err
    with RunStore.open_existing(run_dir) as st:
        assert finished_keys(st) == ref
        assert st.get_meta(META_INTERRUPTED) is None
    assert "**Interrupted**" not in (run_dir / "report.md").read_text()
