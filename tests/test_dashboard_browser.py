"""The dashboard in a real browser (headless Chromium from the operating system's packages,
driven by Playwright): a search runs while the page is open, the trial table grows, a trial
opens, and the Pareto plot holds as many points as the run's front. Screenshots are saved in
the test's temporary folder. Skipped, saying why, only when no browser can be started."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

pytest.importorskip("starlette")
pytest.importorskip("bokeh")
sync_api = pytest.importorskip("playwright.sync_api",
                               reason="playwright is not installed (pip install -e '.[test]')")

import nastk  # noqa: E402
from nastk.core.pareto import pareto_front  # noqa: E402

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")

SEARCH = textwrap.dedent("""
    import sys, time
    import nastk

    space = nastk.SearchSpace([nastk.IntRange("d", 1, 9), nastk.IntRange("w", 1, 9)])

    def score(arch):
        time.sleep(0.25)
        if (arch["d"] + arch["w"]) % 7 == 0:  # failed trials whose error holds markup
            raise RuntimeError("<script>alert('injected')</script>")
        return ({"acc": arch["d"] * 0.1 + arch["w"] * 0.01 - arch["d"] * arch["w"] * 0.004},
                {"flops": float(arch["d"] * arch["w"] * 100)})

    run = nastk.create_search(space, score, objective="acc", costs=["flops"],
                              strategy="random", storage=sys.argv[1], budget=40, seed=3)
    run.optimize()
    run.close()
""")


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def browser():
    if CHROMIUM is None:
        pytest.skip("no Chromium on this machine (Debian: apt-get install chromium)")
    with sync_api.sync_playwright() as pw:
        try:
            b = pw.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        except Exception as err:  # the browser cannot start here
            pytest.skip(f"Chromium at {CHROMIUM} does not start: {err}")
        yield b
        b.close()


@pytest.mark.slow
def test_a_live_search_in_the_browser(browser, tmp_path):
    import uvicorn

    from nastk.dashboard.app import create_app

    root = tmp_path / "runs"
    root.mkdir()
    script = tmp_path / "search.py"
    script.write_text(SEARCH)
    search = subprocess.Popen([sys.executable, str(script), str(root / "live")],
                              env=dict(os.environ), stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE)
    port = _port()
    server = uvicorn.Server(uvicorn.Config(create_app([root], rescan_s=0.5), host="127.0.0.1",
                                           port=port, log_level="error"))
    threading.Thread(target=server.run, daemon=True).start()
    try:
        while not server.started:
            time.sleep(0.05)
        deadline = time.time() + 60
        while not (root / "live" / "store.sqlite").exists() and time.time() < deadline:
            time.sleep(0.1)
        page = browser.new_page(viewport={"width": 1300, "height": 1000})
        dialogs: list[str] = []
        page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
        page.goto(f"http://127.0.0.1:{port}/")
        page.wait_for_selector("#runs tbody a", timeout=20_000)
        page.screenshot(path=str(tmp_path / "runs.png"))
        page.click("#runs tbody a")
        page.wait_for_selector("#trials tbody tr", timeout=20_000)

        def total() -> int:
            return int(page.inner_text("#page").split("of")[-1])

        first = total()
        grown = first
        deadline = time.time() + 60
        while grown <= first and time.time() < deadline:  # the page updates itself
            time.sleep(0.5)
            grown = total()
        assert grown > first, "the trial table did not grow while the search ran"
        page.screenshot(path=str(tmp_path / "run_live.png"), full_page=True)
        assert search.wait(timeout=120) == 0, search.stderr.read().decode()[-2000:]
        time.sleep(2.5)  # one more refresh after the last trial
        record = nastk.load_run(root / "live")
        front = pareto_front(record.trials, record.objective)
        page.wait_for_function("() => frontSrc && frontSrc.data.x.length > 0")
        n_front = page.evaluate("frontSrc.data.x.length")
        n_others = page.evaluate("otherSrc.data.x.length")
        assert n_front == len(front)
        assert n_front + n_others == sum(t.result is not None and t.result.ok
                                         for t in record.trials)
        assert total() == 40
        page.screenshot(path=str(tmp_path / "run.png"), full_page=True)
        # a failed trial's error text shows as text, and runs nothing
        page.select_option("#status", "failed")
        page.wait_for_function("() => [...document.querySelectorAll('#trials tbody tr')]"
                               ".every(tr => tr.children[1].textContent === 'failed')")
        assert "<script>alert('injected')</script>" in page.inner_text("#trials tbody")
        assert dialogs == []
        page.select_option("#status", "")
        page.wait_for_function("() => document.querySelectorAll('#trials tbody tr').length "
                               "> 20")
        page.click("#trials tbody tr a")
        page.wait_for_function("() => document.querySelector('#arch').textContent.length > 2")
        assert '"d"' in page.inner_text("#arch")
        page.screenshot(path=str(tmp_path / "trial.png"), full_page=True)
        for name in ("runs.png", "run_live.png", "run.png", "trial.png"):
            assert (tmp_path / name).stat().st_size > 10_000, name
        out = os.environ.get("NASTK_SCREENSHOTS")
        if out:  # keep them where a human looks (docs/ takes one for the README)
            for name in ("runs.png", "run.png", "trial.png"):
                shutil.copy(tmp_path / name, Path(out) / f"dashboard_{name}")
    finally:
        server.should_exit = True
        if search.poll() is None:
            search.kill()
