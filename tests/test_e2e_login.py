"""End to end in a real browser: the log-in page of `python app.py --api --gradio-auth ...` (throttled by
server_auth.py), and the API answering the logged-in page through its cookie."""

from __future__ import annotations

import pytest
from browser import running_app

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    data_dir = tmp_path_factory.mktemp("app-data")
    with running_app(data_dir, "--api", "--gradio-auth", "gina:pw1") as url:
        yield url, data_dir


def log_in(page, password: str) -> None:
    page.get_by_label("username").fill("gina")
    page.get_by_label("password").fill(password)
    page.get_by_role("button", name="Login").click()


def test_login_page_then_the_studio_and_its_api(browser, server):
    context = browser.new_context()
    page = context.new_page()
    page.set_default_timeout(30_000)
    page.goto(server[0])
    log_in(page, "wrong")
    page.get_by_text("Incorrect Credentials").wait_for()
    log_in(page, "pw1")
    page.wait_for_selector("#txt2img_generate")
    assert page.evaluate("fetch('/sdapi/v1/samplers').then(r => r.status)") == 200  # the log-in cookie
    context.close()
