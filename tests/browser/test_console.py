"""The admin console as an incident responder uses it: Debian's headless Chromium, driven by
Selenium through Debian's chromedriver (no browser is downloaded), against the dev host with
Azurite and the Graph simulator. Screenshots of each view go to .run/screenshots/."""

from __future__ import annotations

import csv
import io
import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from selenium import webdriver
from selenium.common.exceptions import StaleElementReferenceException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support.ui import WebDriverWait

from tests.integration.helpers import PIPELINE_TIMEOUT, REQUEST_TIMEOUT, Sim, new_user, sign_out, wait_for_terminal, wait_until
from tools.local_stack import LocalStack

pytestmark = pytest.mark.browser
CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
KEY = "browser-test-key"
SHOTS = Path(__file__).parents[2] / ".run" / "screenshots"
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
)


@pytest.fixture(scope="module")
def stack() -> Iterator[LocalStack]:
    with LocalStack(settings={"DEVHOST_FUNCTION_KEY": KEY}) as running:
        yield running


@pytest.fixture(scope="module")
def api(stack: LocalStack) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=stack.base_url, timeout=REQUEST_TIMEOUT, headers={"x-functions-key": KEY}) as client:
        yield client


@pytest.fixture(scope="module")
def sim(stack: LocalStack) -> Sim:
    return Sim(stack.sim_url)


@pytest.fixture(scope="module")
def downloads(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("downloads")


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory, downloads: Path) -> Iterator[WebDriver]:
    missing = [str(path) for path in (CHROMIUM, CHROMEDRIVER) if not path.exists()]
    assert not missing, f"{', '.join(missing)} missing: `make install` installs Debian's chromium and chromium-driver"
    os.environ["SE_OFFLINE"] = "true"  # Selenium Manager never fetches a browser or a driver
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in (*FLAGS, f"--user-data-dir={tmp_path_factory.mktemp('chromium')}", "--window-size=1280,900"):
        options.add_argument(flag)
    options.add_experimental_option(
        "prefs", {"download.default_directory": str(downloads), "download.prompt_for_download": False}
    )
    driver = webdriver.Chrome(options=options, service=Service(executable_path=str(CHROMEDRIVER)))
    driver.execute_cdp_cmd("Page.setDownloadBehavior", {"behavior": "allow", "downloadPath": str(downloads)})
    try:
        yield driver
    finally:
        driver.quit()


def open_console(browser: WebDriver, stack: LocalStack, view: str = "log") -> None:
    browser.get(f"{stack.base_url}/api/console?code={KEY}#{view}")
    wait(browser, lambda b: b.find_element(By.ID, f"view-{view}").is_displayed())


def wait(browser: WebDriver, condition: Any) -> Any:
    """Until `condition` holds; an element replaced while it was read is read again."""
    waiting = WebDriverWait(browser, PIPELINE_TIMEOUT, poll_frequency=0.2, ignored_exceptions=[StaleElementReferenceException])
    return waiting.until(condition)


def shot(browser: WebDriver, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    browser.save_screenshot(str(SHOTS / f"{name}.png"))


def search(browser: WebDriver, text: str) -> list[Any]:
    box = browser.find_element(By.ID, "q")
    box.clear()
    box.send_keys(text)
    browser.find_element(By.CSS_SELECTOR, "#search button[type=submit]").click()

    def rows_of_the_user(b: WebDriver) -> list[Any]:
        rows = b.find_elements(By.CSS_SELECTOR, "#tasks tbody tr")
        return rows if rows and all(row.find_elements(By.TAG_NAME, "td")[1].text == text for row in rows) else []

    return wait(browser, rows_of_the_user)


def test_search_a_user_and_see_their_tasks(browser: WebDriver, stack: LocalStack, api: httpx.Client, sim: Sim) -> None:
    user = new_user(sim, "search")
    for reason in ("INC-1 first", "INC-2 again"):
        wait_for_terminal(api, sign_out(api, user["userPrincipalName"], description=reason).headers["Location"])
    open_console(browser, stack)
    rows = search(browser, user["userPrincipalName"])
    wait(browser, lambda b: len(b.find_elements(By.CSS_SELECTOR, "#tasks tbody tr")) == 2)
    rows = browser.find_elements(By.CSS_SELECTOR, "#tasks tbody tr")
    assert [row.find_elements(By.TAG_NAME, "td")[5].text for row in rows] == ["INC-2 again", "INC-1 first"], "newest first"
    assert {row.find_elements(By.TAG_NAME, "td")[2].text for row in rows} == {"succeeded"}
    shot(browser, "log")


def test_open_a_failed_task_and_see_its_fix(browser: WebDriver, stack: LocalStack, api: httpx.Client, sim: Sim) -> None:
    user = new_user(sim, "denied")
    sim.fault(method="POST", user=user["id"], count=1, action="status", status=403, code="Authorization_RequestDenied")
    task = wait_for_terminal(api, sign_out(api, user["userPrincipalName"]).headers["Location"])
    assert task["status"] == "failed"
    open_console(browser, stack)
    search(browser, user["userPrincipalName"])[0].click()
    fix = wait(browser, lambda b: b.find_element(By.ID, "task-fix").is_displayed() and b.find_element(By.ID, "task-fix-text"))
    assert "User.RevokeSessions.All" in fix.text
    assert browser.find_element(By.ID, "task-title").get_attribute("data-status") == "failed"
    assert "permission_denied" in browser.find_element(By.ID, "task-fields").text
    shot(browser, "task-failed")


def test_sign_out_a_user_from_the_page_after_confirming(browser: WebDriver, stack: LocalStack, sim: Sim) -> None:
    user = new_user(sim, "frompage")
    open_console(browser, stack)
    browser.find_element(By.ID, "signout-user").send_keys(user["userPrincipalName"])
    browser.find_element(By.ID, "signout-reason").send_keys("INC-3 phished")
    browser.find_element(By.CSS_SELECTOR, "#signout button[type=submit]").click()
    confirmation = wait(browser, lambda b: b.switch_to.alert)
    assert user["userPrincipalName"] in confirmation.text, "the confirmation names the user"
    confirmation.accept()
    wait(browser, lambda b: b.find_element(By.ID, "task-title").get_attribute("data-status") == "succeeded")
    assert sim.user(user["id"])["revokeCount"] == 1
    shot(browser, "task-succeeded")


def test_a_group_job_s_progress_bar_reaches_100(browser: WebDriver, stack: LocalStack, api: httpx.Client, sim: Sim) -> None:
    members = [new_user(sim, f"job{n}") for n in range(6)]
    group = str(uuid.uuid4())
    sim.http.post("/_sim/groups", json=[{"id": group, "members": [m["id"] for m in members]}]).raise_for_status()
    created = api.post("/api/signouts", json={"group": group, "description": "INC-4 compromised team"})
    assert created.status_code == 202, created.text
    job_id = created.json()["job"]["id"]
    open_console(browser, stack, "jobs")
    item = f'#jobs li[data-id="{job_id}"]'
    wait(browser, lambda b: b.find_elements(By.CSS_SELECTOR, item))
    shot(browser, "job")
    wait(browser, lambda b: b.find_element(By.CSS_SELECTOR, f"{item} progress").get_attribute("value") == "100")
    assert "6 of 6 (100%)" in browser.find_element(By.CSS_SELECTOR, item).text
    shot(browser, "job-finished")


def test_download_the_csv_and_parse_it(
    browser: WebDriver, stack: LocalStack, api: httpx.Client, sim: Sim, downloads: Path
) -> None:
    user = new_user(sim, "csv")
    wait_for_terminal(api, sign_out(api, user["userPrincipalName"], description="=SUM(A1) INC-5").headers["Location"])
    open_console(browser, stack)
    search(browser, user["userPrincipalName"])
    browser.find_element(By.ID, "csv").click()
    saved = wait_until(lambda: [p for p in downloads.glob("*.csv") if p.stat().st_size], "the CSV downloaded")[0]
    rows = list(csv.DictReader(io.StringIO(saved.read_text(encoding="utf-8"), newline="")))
    assert [(row["user"], row["status"], row["description"]) for row in rows] == [
        (user["userPrincipalName"], "succeeded", "'=SUM(A1) INC-5")
    ]


def test_a_hostile_description_executes_nothing(browser: WebDriver, stack: LocalStack, api: httpx.Client, sim: Sim) -> None:
    user = new_user(sim, "hostile")
    hostile = '<img src=x onerror="window.__pwned=1"><script>window.__pwned=2</script>'
    task = wait_for_terminal(api, sign_out(api, user["userPrincipalName"], description=hostile).headers["Location"])
    open_console(browser, stack)
    [row] = search(browser, user["userPrincipalName"])
    assert row.find_elements(By.TAG_NAME, "td")[5].text == hostile, "shown as text"
    browser.get(f"{stack.base_url}/api/console?code={KEY}#task/{task['id']}")
    wait(browser, lambda b: hostile in b.find_element(By.ID, "task-fields").text)
    assert browser.execute_script("return window.__pwned === undefined && document.images.length === 0")


def test_readable_on_a_phone(browser: WebDriver, stack: LocalStack) -> None:
    browser.set_window_size(390, 844)
    try:
        open_console(browser, stack)
        wait(browser, lambda b: b.find_elements(By.CSS_SELECTOR, "#tasks tbody tr"))
        assert browser.execute_script("return document.documentElement.scrollWidth <= window.innerWidth"), "no sideways scroll"
        shot(browser, "log-phone")
    finally:
        browser.set_window_size(1280, 900)
