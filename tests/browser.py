"""A page opened in a real headless Chromium (Debian's ``chromium`` and
``chromium-driver``, driven by selenium): what its images and audio elements report once
loaded, and a screenshot. Used by the tests and by ``tools/screenshot.py``."""

from __future__ import annotations

import shutil
from pathlib import Path

WAIT_FOR_MEDIA = """
const done = arguments[arguments.length - 1];
// A page of large data URIs can still be parsing when the driver hands it over: wait for
// the load event first, so that every element is in the document.
const loaded = new Promise(r => document.readyState === 'complete' ? r()
                               : window.addEventListener('load', r));
const image = i => new Promise(r => {
    if (i.complete) return r();
    i.addEventListener('load', r); i.addEventListener('error', r);
});
const audio = a => new Promise(r => {
    if (a.readyState >= 1 || a.error) return r();
    a.addEventListener('loadedmetadata', r); a.addEventListener('error', r); a.load();
});
loaded.then(() => {
    const audios = [...document.querySelectorAll('audio')];
    return Promise.all([...[...document.images].map(image), ...audios.map(audio)])
        .then(() => done({
            images: [...document.images].map(i => [i.complete, i.naturalWidth]),
            audio: audios.map(a => [a.readyState, a.error ? a.error.code : 0, a.duration]),
        }));
});
"""


def open_page(page: Path, screenshot: Path | None, *, width: int = 1400,
              height: int = 1000) -> dict:
    """Load ``page`` in headless Chromium; return what its images and audio elements
    report once the page has loaded, every image has loaded or failed, and every audio
    element has its metadata or an error."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    driver_path = shutil.which("chromedriver")
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if not (driver_path and browser):
        raise RuntimeError("needs chromium and chromium-driver (Debian: apt install chromium "
                           "chromium-driver)")
    options = webdriver.ChromeOptions()
    options.binary_location = browser
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 f"--window-size={width},{height}"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(driver_path), options=options)
    try:
        driver.set_script_timeout(60)
        driver.get(page.resolve().as_uri())
        state = driver.execute_async_script(WAIT_FOR_MEDIA)
        if screenshot is not None:
            driver.save_screenshot(str(screenshot))
    finally:
        driver.quit()
    return state
