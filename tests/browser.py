"""Helpers for the browser tests: start the app as a subprocess, start Debian's Chromium via playwright.

Never `playwright install`: the tests drive the system Chromium (apt-get install chromium).
"""

from __future__ import annotations

import datetime
import os
import socket
import subprocess
import sys
import time
import urllib.request
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--no-first-run"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def running_app(data_dir: Path, *extra_args: str, timeout: float = 90) -> Iterator[str]:
    """`python app.py --port <free> --data-dir <data_dir>` until the block ends; yields its URL."""
    port = free_port()
    env = dict(os.environ, GRADIO_ANALYTICS_ENABLED="False", HF_HUB_OFFLINE="1", PYTHONUNBUFFERED="1")
    log_path = data_dir / "app.log"
    data_dir.mkdir(parents=True, exist_ok=True)
    with open(log_path, "w") as log:
        proc = subprocess.Popen([sys.executable, str(ROOT / "app.py"), "--port", str(port), "--data-dir",
                                 str(data_dir), *extra_args], cwd=ROOT, env=env, stdout=log,
                                stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/"
    try:
        deadline = time.monotonic() + timeout
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"app.py exited with {proc.returncode}:\n{log_path.read_text()[-4000:]}")
            try:
                with urllib.request.urlopen(url, timeout=2) as response:
                    if response.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                tail = log_path.read_text()[-4000:]
                raise RuntimeError(f"app.py did not answer within {timeout}s:\n{tail}")
            time.sleep(0.3)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def app_log(data_dir: Path) -> str:
    path = data_dir / "app.log"
    return path.read_text() if path.exists() else ""


@contextmanager
def chromium() -> Iterator[object]:
    """A headless playwright Browser on /usr/bin/chromium."""
    if not CHROMIUM.exists():
        raise RuntimeError(f"{CHROMIUM} is missing: the browser tests need Debian's Chromium. "
                           "Run `apt-get install -y chromium` (never `playwright install`).")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


def outputs_today(data_dir: Path) -> list[Path]:
    """The img2img PNGs the app saved today under data_dir, in name (= number) order."""
    folder = data_dir / "outputs" / "img2img-images" / datetime.date.today().isoformat()
    return sorted(folder.glob("*.png")) if folder.exists() else []


def set_number(page, elem_id: str, value) -> None:
    """Type into a slider's (or number box's) number input, as a user does."""
    box = page.locator(f"#{elem_id} input[type=number]")
    box.fill(str(value))
    box.press("Enter")
    assert float(box.input_value()) == float(value)


def upload_to_editor(page, elem_id: str, path: Path) -> None:
    """Drop a file on an ImageEditor once it is ready: a file given before its canvas exists (right after
    its tab is first shown) is silently ignored by Gradio's editor."""
    editor = page.locator(f"#{elem_id}")
    editor.locator("canvas").first.wait_for(state="attached")
    editor.locator("input[type=file]").set_input_files(str(path))
    editor.get_by_text("Upload an image").wait_for(state="hidden")
