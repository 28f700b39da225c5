#!/usr/bin/env python3
"""The fleet-console dashboard in a real browser (issue 7).

Drives the real pages of a running `fleet-console serve` in headless
Chromium (Debian's `chromium`, through Playwright's sync API; Playwright
never downloads a browser here) against a real broker and a simulated
fleet, and checks what the issue's "Done when" asks and the DOM contract
the pages keep:

  sign in (and a wrong token refused), the overview's counts per site, a
  device's telemetry updating without a reload, an operator starting a
  session from the device page and seeing it run (and stopping it), the
  overview following live, a viewer seeing no controls and a forged POST
  refused with 403, CSRF and Origin checks, sign out; screenshots of the
  overview and a device page at desktop (1280x800) and tablet (820x1180)
  widths.

It is run by Tests/FleetConsoleTests/DashboardBrowserTests.swift, which
starts mosquitto, the console and `fleet-sim`, waits until every device is
online, idle and without alerts, and passes (environment):

  DASH_BASE_URL        the console, e.g. http://127.0.0.1:43121
  DASH_OPERATOR_TOKEN  an operator's API token (plain secret)
  DASH_OPERATOR_NAME   its name in the console config (shown in #whoami)
  DASH_VIEWER_TOKEN    a viewer's API token
  DASH_VIEWER_NAME     its name
  DASH_ADMIN_TOKEN     an admin's API token (rollouts from the browser)
  DASH_SITES           JSON: {"site-id": ["device", ...], ...}, every device
                       of the fleet, all online and idle when the script starts
  DASH_PROGRAM         a program id every device has (a long one: the session
                       must still run while the script looks at it)
  DASH_SCREENSHOTS     directory for the screenshots (created)
  DASH_CHROMIUM        optional, default /usr/bin/chromium
  DASH_TIMEOUT_S       optional, default 30: the deadline of each wait
  DASH_BROKER          the broker as host:port (the alert check publishes a
                       device's status there with mosquitto_pub)
  DASH_SITE_ZONES      JSON: {"site-id": "IANA time zone", ...}: each site's
                       times must show that zone (e.g. CET for Europe/Berlin)

Also (issue 24): the overview's floor of tiles following live, the devices
list filtered, sorted and paged by the server (and the API's pages), times
in the site's zone and durations as m:ss, no request of any page answering
an error, a real alert acknowledged, an axe-core check of every page, and
the main actions done with the keyboard alone.

Every wait has a deadline; nothing sleeps a fixed time and hopes. Prints a
line per check and exits 0 when all passed, 1 when a check failed, 2 when
the environment is unusable (no Playwright, no Chromium, missing variables).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
import traceback
from datetime import datetime, timedelta
from typing import Callable
from zoneinfo import ZoneInfo
from urllib.parse import urlparse

INSTALL_HINT = (
    "install them with deploy/test.sh, or by hand: `apt-get install chromium` and "
    "`PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 python3 -m pip install playwright` "
    "(Playwright drives the system Chromium; it must not download a browser)"
)

try:
    from playwright.sync_api import Browser, BrowserContext, Page, Playwright, sync_playwright
except ImportError as error:  # pragma: no cover - environment check
    print(f"error: the Python package playwright is missing ({error}); {INSTALL_HINT}", file=sys.stderr)
    sys.exit(2)


# MARK: - Configuration


def require_env(name: str) -> str:
    value = os.environ.get(name, "")
    if not value:
        print(f"error: {name} is not set (see the docstring of {__file__})", file=sys.stderr)
        sys.exit(2)
    return value


BASE = require_env("DASH_BASE_URL").rstrip("/")
OPERATOR_TOKEN = require_env("DASH_OPERATOR_TOKEN")
OPERATOR_NAME = require_env("DASH_OPERATOR_NAME")
VIEWER_TOKEN = require_env("DASH_VIEWER_TOKEN")
VIEWER_NAME = require_env("DASH_VIEWER_NAME")
ADMIN_TOKEN = require_env("DASH_ADMIN_TOKEN")
SITES: dict[str, list[str]] = json.loads(require_env("DASH_SITES"))
PROGRAM = require_env("DASH_PROGRAM")
SCREENSHOTS = require_env("DASH_SCREENSHOTS")
CHROMIUM = os.environ.get("DASH_CHROMIUM") or "/usr/bin/chromium"
TIMEOUT_S = float(os.environ.get("DASH_TIMEOUT_S") or 30)
BROKER = require_env("DASH_BROKER")


def zone_names(zone: str) -> set[str]:
    """How a time in `zone` may name it now: its abbreviation (CET, UTC) or,
    where the console's time zone data has no letters for it, its offset
    from GMT (GMT+1). Never another zone's."""
    now = datetime.now(ZoneInfo(zone))
    hours = int((now.utcoffset() or timedelta()).total_seconds() // 3600)
    names = {now.tzname() or zone, zone}
    if hours:
        names.add(f"GMT{hours:+d}")
    return names


SITE_ZONES: dict[str, set[str]] = {site: zone_names(zone) for site, zone in json.loads(require_env("DASH_SITE_ZONES")).items()}
# A time as the dashboard writes it: the site's wall clock and its zone.
TIME_RE = r"^\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2} (\S+)$"
DURATION_RE = r"^\d+:\d{2}(:\d{2})?$"

try:
    from axe_playwright_python.sync_playwright import Axe
except ImportError as error:  # pragma: no cover - environment check
    print(f"error: the Python package axe-playwright-python is missing ({error}); deploy/test.sh installs it "
          "(`python3 -m pip install axe-playwright-python`)", file=sys.stderr)
    sys.exit(2)

if not os.access(CHROMIUM, os.X_OK):
    print(f"error: no Chromium at {CHROMIUM}; {INSTALL_HINT}", file=sys.stderr)
    sys.exit(2)
if len(SITES) < 2 or any(not devices for devices in SITES.values()):
    print(f"error: DASH_SITES needs two sites with devices each, got {SITES}", file=sys.stderr)
    sys.exit(2)

SITE_IDS = sorted(SITES)
ALL_DEVICES = sorted(f"{site}/{device}" for site, devices in SITES.items() for device in devices)
# Device A: the operator runs a session on it. Device B (another site): every
# refused POST targets it, so it must still be idle at the end.
SITE_A, SITE_B = SITE_IDS[0], SITE_IDS[1]
DEVICE_A = f"{SITE_A}/{sorted(SITES[SITE_A])[0]}"
DEVICE_B = f"{SITE_B}/{sorted(SITES[SITE_B])[0]}"
PAGES = ["/", "/devices", f"/devices/{DEVICE_A}", "/alerts", "/usage", "/rollouts"]
NAV = [("Overview", "/"), ("Devices", "/devices"), ("Alerts", "/alerts"), ("Usage", "/usage"), ("Rollouts", "/rollouts")]
LIVE_FIELDS = ["state", "program", "elapsed", "step", "step_left", "target", "technique", "intensity", "pressure", "motor_temp", "breathing", "updated"]
TECHNIQUES = {"compression", "circular", "kneading", "rolling", "tapping", "shiatsu"}
PLACEHOLDERS = {"", "-", "–", "—", "no telemetry yet"}
CONTROL_BUTTONS = ["Start session", "Stop session", "Start on idle devices", "Acknowledge", "Pause", "Resume", "Abort"]
DESKTOP = {"width": 1280, "height": 800}
TABLET = {"width": 820, "height": 1180}


def url(path: str) -> str:
    return BASE + path


def path_of(page: Page) -> str:
    return urlparse(page.url).path


# MARK: - Checks


class CheckFailed(AssertionError):
    pass


def check(condition: bool, message: str) -> None:
    if not condition:
        raise CheckFailed(message)


def poll(produce: Callable[[], object], accept: Callable[[object], bool], description: str,
         page: Page | None = None, timeout: float | None = None) -> object:
    """Calls `produce` until `accept` holds for its value; fails with the last
    value at the deadline. Between tries it yields to the page's event loop
    (Playwright's wait) or, without a page, for a moment."""
    deadline = time.monotonic() + (timeout or TIMEOUT_S)
    last: object = None
    while True:
        try:
            last = produce()
            if accept(last):
                return last
        except CheckFailed:
            raise
        except Exception as error:  # a navigation in between, a detached node
            last = f"({type(error).__name__}: {error})"
        if time.monotonic() >= deadline:
            raise CheckFailed(f"{description}: not within {timeout or TIMEOUT_S:.0f} s; last seen: {last!r}")
        if page is not None:
            page.wait_for_timeout(100)
        else:
            time.sleep(0.1)  # poll again until the deadline above


class Runner:
    def __init__(self) -> None:
        self.passed: list[str] = []
        self.failed: list[tuple[str, str]] = []
        self.pages: list[Page] = []

    def run(self, name: str, body: Callable[[], None], fatal: bool = False) -> bool:
        started = time.monotonic()
        try:
            body()
        except Exception as error:  # CheckFailed and Playwright's errors alike
            detail = str(error) if isinstance(error, CheckFailed) else "".join(
                traceback.format_exception_only(type(error), error)).strip()
            self.failed.append((name, detail))
            print(f"FAIL {name} ({time.monotonic() - started:.1f} s): {detail}", flush=True)
            self.capture_failure(name)
            if fatal:
                raise SystemExit(self.finish(aborted=name))
            return False
        self.passed.append(name)
        print(f"ok   {name} ({time.monotonic() - started:.1f} s)", flush=True)
        return True

    def capture_failure(self, name: str) -> None:
        for index, page in enumerate(self.pages):
            if page.is_closed():
                continue
            slug = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")
            target = os.path.join(SCREENSHOTS, f"failure-{slug}-{index}.png")
            try:
                page.screenshot(path=target, full_page=True)
                print(f"     page {index} at {page.url}: screenshot {target}", flush=True)
            except Exception as error:
                print(f"     page {index} at {page.url}: no screenshot ({error})", flush=True)

    def finish(self, aborted: str | None = None) -> int:
        if aborted:
            print(f"stopped after '{aborted}' failed: the checks after it need it", flush=True)
        print(f"dashboard checks: {len(self.passed)} passed, {len(self.failed)} failed", flush=True)
        for name, detail in self.failed:
            print(f"  failed: {name}: {detail}", flush=True)
        return 0 if not self.failed and not aborted else 1


# MARK: - Page helpers


def sign_in(page: Page, token: str) -> None:
    page.goto(url("/login"))
    page.locator("#token").fill(token)
    with page.expect_navigation():
        page.get_by_role("button", name="Sign in").click()


def session_cookie(context: BrowserContext) -> dict | None:
    for cookie in context.cookies(BASE):
        if cookie["name"] == "fc_session" and cookie["value"]:
            return cookie
    return None


def text(page: Page, selector: str) -> str:
    locator = page.locator(selector)
    count = locator.count()
    check(count == 1, f"{path_of(page)}: expected exactly one {selector}, found {count}")
    return locator.inner_text().strip()


def live(page: Page, field: str) -> str:
    return text(page, f'[data-live="{field}"]')


def csrf_of(page: Page) -> str:
    values = page.eval_on_selector_all(
        'input[type="hidden"][name="csrf"]', "inputs => inputs.map(i => i.value).filter(v => v)")
    check(bool(values), f"{path_of(page)}: no hidden csrf input with a value on the page")
    return values[0]


def mark_page(page: Page, name: str) -> str:
    """Puts a value on `window`: still there later means the page was not reloaded."""
    value = f"{name}-{time.monotonic_ns()}"
    page.evaluate("v => { window.__dashboardTestMark = v; }", value)
    return value


def check_not_reloaded(page: Page, mark: str) -> None:
    now = page.evaluate("() => window.__dashboardTestMark || null")
    check(now == mark, f"{path_of(page)} was reloaded or navigated (the page's marker is gone: {now!r})")


def visible_rows(page: Page) -> list[str]:
    return page.eval_on_selector_all(
        "#devices tr[data-device]",
        "rows => rows.filter(r => r.getClientRects().length > 0).map(r => r.dataset.device)")


def post_forms(page: Page) -> list[dict]:
    return page.eval_on_selector_all(
        "form",
        """forms => forms.filter(f => (f.getAttribute('method') || 'get').toLowerCase() === 'post').map(f => ({
            id: f.id, action: f.getAttribute('action'),
            csrf: (f.querySelector('input[type=hidden][name=csrf]') || {}).value || ''}))""")


def unlabelled_inputs(page: Page) -> list[str]:
    return page.eval_on_selector_all(
        "input, select, textarea",
        """els => els.filter(e => !['hidden', 'submit', 'button', 'reset', 'image'].includes((e.getAttribute('type') || '').toLowerCase()))
            .filter(e => !((e.labels && [...e.labels].some(l => l.textContent.trim())) || (e.getAttribute('aria-label') || '').trim()
                           || (e.getAttribute('aria-labelledby') || '').trim()))
            .map(e => e.outerHTML.slice(0, 160))""")


def horizontal_overflow(page: Page) -> int:
    return page.evaluate("() => document.documentElement.scrollWidth - document.documentElement.clientWidth")


def screenshot(page: Page, name: str, viewport: dict) -> str:
    page.set_viewport_size(viewport)
    target = os.path.join(SCREENSHOTS, f"{name}.png")
    page.screenshot(path=target, full_page=True)
    check(os.path.getsize(target) > 1000, f"screenshot {target} is (nearly) empty")
    return target


def screenshots_at_both_widths(shots: list[tuple[Page, str, Callable[[], None]]]) -> None:
    """Each (tab, name, show) at desktop and tablet width: `show` brings the
    page up, then a screenshot at each width; fails when one scrolls sideways."""
    taken, overflow = [], []
    for tab, name, show in shots:
        show()
        for width_name, viewport in [("desktop", DESKTOP), ("tablet", TABLET)]:
            taken.append(screenshot(tab, f"{name}-{width_name}", viewport))
            extra = horizontal_overflow(tab)
            if extra > 1:
                overflow.append(f"{name} at {viewport['width']} px scrolls sideways by {extra} px")
        tab.set_viewport_size(DESKTOP)
    print("     screenshots: " + ", ".join(taken), flush=True)
    check(not overflow, "; ".join(overflow))


def expected_counts(site: str, running: int = 0, sessions_today: int = 0) -> dict[str, str]:
    devices = len(SITES[site])
    return {
        "devices": str(devices), "online": str(devices), "in_session": str(running), "idle": str(devices - running),
        "offline": "0", "faulted": "0", "alerts": "0", "sessions_today": str(sessions_today),
        "utilisation": f"{round(100 * running / devices)}%",
    }


def site_counts(page: Page, site: str) -> dict[str, str]:
    section = page.locator(f'section.site[data-site="{site}"]')
    check(section.count() == 1, f"overview: expected one section.site[data-site={site}], found {section.count()}")
    counts = {}
    for name in expected_counts(site):
        cell = section.locator(f'[data-count="{name}"]')
        counts[name] = cell.inner_text().strip() if cell.count() == 1 else f"<{cell.count()} elements>"
    return counts


def tiles(page: Page, site: str | None = None) -> dict[str, dict[str, str]]:
    """The overview's floor tiles (visible or not): device -> state, label, program, left, alert, visible."""
    scope = f'ul.floor[data-floor="{site}"] li.tile' if site else "ul.floor li.tile"
    return {t["device"]: t for t in page.eval_on_selector_all(scope, """ts => ts.map(t => ({
        device: t.dataset.device, state: t.dataset.state, visible: t.getClientRects().length > 0,
        label: (t.querySelector('[data-tile=label]') || {}).textContent || '',
        program: (t.querySelector('[data-tile=program]') || {}).textContent || '',
        left: (t.querySelector('[data-tile=left]') || {}).textContent || '',
        alert: (t.querySelector('[data-tile=alert]') || {}).textContent || ''}))""")}


def error_responses(page: Page, path: str) -> list[str]:
    """Loads `path` and returns every request of the page that answered 400 or more."""
    bad: list[str] = []
    listener = lambda r: bad.append(f"{r.status} {urlparse(r.url).path}") if r.status >= 400 else None
    page.on("response", listener)
    try:
        page.goto(url(path))
        page.wait_for_load_state("load")
        page.evaluate("() => new Promise(r => setTimeout(r, 0))")  # the icon request goes out with the load
    finally:
        page.remove_listener("response", listener)
    return bad


def axe_problems(page: Page, path: str) -> list[str]:
    """axe-core on the page as it stands: every serious or critical violation, with where."""
    results = Axe().run(page)
    found = []
    for violation in results.response.get("violations", []):
        if violation.get("impact") in ("serious", "critical"):
            targets = [", ".join(n.get("target", [])) for n in violation.get("nodes", [])][:3]
            found.append(f"{path}: {violation['impact']} {violation['id']} ({violation.get('help')}) at {targets}")
    return found


def tab_to(page: Page, selector: str, limit: int = 120) -> None:
    """Presses Tab until the focused element matches `selector` (the keyboard alone)."""
    for _ in range(limit):
        page.keyboard.press("Tab")
        if page.evaluate("s => !!document.activeElement && document.activeElement.matches(s)", selector):
            return
    raise CheckFailed(f"{path_of(page)}: {limit} presses of Tab never reached {selector}")


def publish(topic: str, payload: dict, retain: bool = True) -> None:
    host, port = BROKER.rsplit(":", 1)
    command = ["mosquitto_pub", "-h", host, "-p", port, "-q", "1", "-t", topic, "-m", json.dumps(payload)] + (["-r"] if retain else [])
    done = subprocess.run(command, capture_output=True, text=True, timeout=TIMEOUT_S)
    check(done.returncode == 0, f"mosquitto_pub {topic}: exit {done.returncode}: {done.stderr.strip()}")


def refused(response, what: str) -> None:
    body = response.text()[:200].strip()
    check(response.status == 403, f"{what}: expected 403, got {response.status} ({response.headers.get('location') or body!r})")


# MARK: - The scenario


def main() -> int:
    os.makedirs(SCREENSHOTS, exist_ok=True)
    for name in os.listdir(SCREENSHOTS):  # an earlier run's failure pictures would mislead
        if name.startswith("failure-") and name.endswith(".png"):
            os.remove(os.path.join(SCREENSHOTS, name))
    runner = Runner()
    print(f"dashboard at {BASE}; sites {SITES}; device A {DEVICE_A}, device B {DEVICE_B}; program {PROGRAM}; "
          f"Chromium {CHROMIUM}; screenshots in {SCREENSHOTS}", flush=True)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True)
        try:
            scenario(playwright, browser, runner)
        except SystemExit as stop:
            return int(stop.code or 0)
        finally:
            browser.close()
    return runner.finish()


def new_context(browser: Browser) -> BrowserContext:
    context = browser.new_context(viewport=DESKTOP, base_url=BASE)
    context.set_default_timeout(TIMEOUT_S * 1000)
    context.set_default_navigation_timeout(TIMEOUT_S * 1000)
    return context


def scenario(playwright: Playwright, browser: Browser, runner: Runner) -> None:
    operator = new_context(browser)
    page = operator.new_page()
    runner.pages = [page]
    # For the record (not checked): scripts' errors and failed requests.
    page_errors: list[str] = []
    page.on("pageerror", lambda e: page_errors.append(f"script error: {e}"))
    page.on("response", lambda r: page_errors.append(f"{r.status} {urlparse(r.url).path}") if r.status >= 400 else None)

    # 1. Without a session every dashboard page sends the browser to /login.
    def redirects_to_login() -> None:
        wrong = []
        for path in PAGES:
            page.goto(url(path))
            if path_of(page) != "/login":
                wrong.append(f"{path} -> {path_of(page)}")
        check(not wrong, f"pages shown without a session (expected a redirect to /login): {wrong}")
        form = page.locator('form#login[method="post"][action="/login"]')
        check(form.count() == 1, "/login has no <form id=login method=post action=/login>")
        check(page.locator('label[for="token"]').inner_text().strip() == "API token", "no <label for=token>API token</label>")
        check(page.locator('input#token[name="token"][type="password"]').count() == 1,
              "no <input id=token name=token type=password>")
        check(form.get_by_role("button", name="Sign in").count() == 1, "no 'Sign in' button in the login form")
    runner.run("without a session, every page redirects to /login", redirects_to_login)

    # 2. A wrong token is refused.
    def wrong_token_refused() -> None:
        sign_in(page, "not-a-valid-token")
        check(path_of(page) == "/login", f"after a wrong token the browser is at {page.url}, expected /login")
        check(page.locator("#login-error").is_visible(), "a wrong token shows no #login-error")
        check(session_cookie(operator) is None, f"a wrong token set a session cookie: {session_cookie(operator)}")
    runner.run("sign-in with a wrong token shows #login-error and no session", wrong_token_refused)

    # 3. Sign in as the operator.
    def operator_signs_in() -> None:
        sign_in(page, OPERATOR_TOKEN)
        check(path_of(page) == "/", f"after signing in the browser is at {page.url}, expected /")
        cookie = session_cookie(operator)
        check(cookie is not None, f"no fc_session cookie after signing in; cookies: {operator.cookies(BASE)}")
        check(cookie["httpOnly"], f"fc_session is not HttpOnly: {cookie}")
        check(cookie["sameSite"] == "Strict", f"fc_session is not SameSite=Strict: {cookie}")
        check("fc_session" not in page.evaluate("() => document.cookie"), "page scripts can read fc_session")
        check(OPERATOR_NAME in text(page, "#whoami"), f"#whoami shows {text(page, '#whoami')!r}, not {OPERATOR_NAME!r}")
    runner.run("operator signs in: redirect to /, HttpOnly SameSite=Strict fc_session, #whoami", operator_signs_in, fatal=True)

    # 4. Every page: navigation, who is signed in, sign-out form, CSRF on
    # every POST form, a label for every input.
    def page_chrome() -> None:
        problems = []
        for path in PAGES:
            page.goto(url(path))
            if path_of(page) != path:
                problems.append(f"{path}: ended at {page.url}")
                continue
            nav = page.locator("nav")
            for name, href in NAV:
                if nav.locator(f'a[href="{href}"]', has_text=name).count() < 1:
                    problems.append(f"{path}: no <nav> link {name} -> {href}")
            if OPERATOR_NAME not in (page.locator("#whoami").inner_text() if page.locator("#whoami").count() else ""):
                problems.append(f"{path}: #whoami does not name {OPERATOR_NAME}")
            logout = page.locator('form#logout[method="post"][action="/logout"]')
            if logout.count() != 1 or logout.get_by_role("button", name="Sign out").count() != 1:
                problems.append(f"{path}: no <form id=logout method=post action=/logout> with a 'Sign out' button")
            for form in post_forms(page):
                if not form["csrf"]:
                    problems.append(f"{path}: POST form {form['id'] or form['action']} has no hidden csrf value")
            for html in unlabelled_inputs(page):
                problems.append(f"{path}: input without a label: {html}")
        check(not problems, "; ".join(problems))
    runner.run("every page has the nav, #whoami, sign-out, CSRF on POST forms, labelled inputs", page_chrome)

    # 5. The overview's counts per site (an idle, healthy fleet).
    def overview_counts() -> None:
        page.goto(url("/"))
        shown = sorted(page.eval_on_selector_all("section.site", "s => s.map(x => x.dataset.site)"))
        check(shown == SITE_IDS, f"overview shows sites {shown}, expected {SITE_IDS}")
        wrong = {}
        for site in SITE_IDS:
            counts, expected = site_counts(page, site), expected_counts(site)
            if counts != expected:
                wrong[site] = {"shown": counts, "expected": expected}
        check(not wrong, f"overview counts differ: {wrong}")
        for site in SITE_IDS:
            form = page.locator(f'section.site[data-site="{site}"] form.start-site[method="post"][action="/ui/sites/{site}/start"]')
            check(form.count() == 1, f"overview: the operator sees no start-site form for {site}")
            options = form.locator('select[name="program"] option').evaluate_all("os => os.map(o => o.value)")
            check(PROGRAM in options, f"overview {site}: program select lacks {PROGRAM}: {options}")
            check(form.get_by_role("button", name="Start on idle devices").count() == 1,
                  f"overview {site}: no 'Start on idle devices' button")
    runner.run("overview shows the right counts per site (and start-site forms for the operator)", overview_counts)

    # 5b. The floor: a tile per device with its state in words, filterable.
    def overview_floor() -> None:
        page.goto(url("/"))
        shown = tiles(page)
        check(sorted(shown) == ALL_DEVICES, f"floor tiles {sorted(shown)}, expected {ALL_DEVICES}")
        wrong = {d: (t["state"], t["label"]) for d, t in shown.items() if (t["state"], t["label"].strip()) != ("idle", "Idle")}
        check(not wrong, f"tiles not idle with the label 'Idle': {wrong}")
        for site in SITE_IDS:
            mine = sorted(tiles(page, site))
            check(mine == sorted(d for d in ALL_DEVICES if d.startswith(site + "/")), f"{site}'s floor shows {mine}")
        page.locator("#floor-state").select_option("in_session")
        poll(lambda: [d for d, t in tiles(page).items() if t["visible"]], lambda v: v == [], "no tile visible when showing in_session only", page)
        page.locator("#floor-state").select_option("")
        page.locator("#floor-text").fill(DEVICE_B.split("/", 1)[1])
        poll(lambda: [d for d, t in tiles(page).items() if t["visible"]], lambda v: v == [DEVICE_B], f"only {DEVICE_B}'s tile after searching it", page)
        page.locator("#floor-text").fill("")
    runner.run("overview floor: a tile per device with its state in words, filterable", overview_floor)

    # 6. The devices table, filtered, sorted and paged by the server: every
    # filter and column button is a GET of /devices with its parameters.
    def rows_after(action: Callable[[], None]) -> list[str]:
        with page.expect_navigation():
            action()
        return visible_rows(page)

    def devices_table() -> None:
        page.goto(url("/devices"))
        rows = sorted(page.eval_on_selector_all("#devices tr[data-device]", "rs => rs.map(r => r.dataset.device)"))
        check(rows == ALL_DEVICES, f"#devices rows {rows}, expected {ALL_DEVICES}")
        for column in ["state", "health", "program", "last_seen", "config"]:
            count = page.locator(f'#devices tr[data-device] td[data-col="{column}"]').count()
            check(count == len(ALL_DEVICES), f"{count} cells td[data-col={column}], expected {len(ALL_DEVICES)}")
        states = page.eval_on_selector_all('#devices tr[data-device] td[data-col="state"]', "cs => cs.map(c => c.textContent.trim())")
        check(all(s == "idle" for s in states), f"device states {states}, expected all idle")
        for key in ["site", "device", "state", "health", "program", "last_seen"]:
            check(page.locator(f'#devices th button[data-sort="{key}"]').count() == 1, f"no sort button th button[data-sort={key}]")
        for cell in page.eval_on_selector_all('#devices td[data-col="last_seen"]', "cs => cs.map(c => c.textContent.trim())"):
            check(re.match(TIME_RE, cell) is not None, f"a last-seen time reads {cell!r}, not 'YYYY-MM-DD hh:mm:ss ZONE'")

        def device_order() -> list[str]:
            return [d.split("/", 1)[1] for d in visible_rows(page)]
        order = [d.split("/", 1)[1] for d in rows_after(lambda: page.locator('#devices th button[data-sort="device"]').click())]
        check(order == sorted(order), f"after clicking Device the rows are {order}, expected ascending")
        check("sort=device" in page.url, f"the sort is not in the URL (sorted by the server?): {page.url}")
        order = [d.split("/", 1)[1] for d in rows_after(lambda: page.locator('#devices th button[data-sort="device"]').click())]
        check(order == sorted(order, reverse=True), f"after clicking Device again the rows are {order}, expected descending")
        check(page.locator('#devices th[aria-sort="descending"] button[data-sort="device"]').count() == 1,
              "the Device column is not marked aria-sort=descending")

        page.locator("#filter-site").select_option(SITE_B)
        only_b = sorted(d for d in ALL_DEVICES if d.startswith(SITE_B + "/"))
        shown = sorted(rows_after(lambda: page.get_by_role("button", name="Filter").click()))
        check(shown == only_b, f"after filtering by site {SITE_B}: rows {shown}, expected {only_b}")
        check(f"site={SITE_B}" in page.url, f"the site filter is not in the URL: {page.url}")
        page.locator("#filter-site").select_option("")
        page.locator("#filter-state").select_option("in_session")
        shown = rows_after(lambda: page.get_by_role("button", name="Filter").click())
        check(shown == [], f"rows {shown} after state=in_session (all idle)")
        check("No devices match" in text(page, "#devices-range"), f"#devices-range says {text(page, '#devices-range')!r}")
        page.locator("#filter-state").select_option("")

        device_a_name = DEVICE_A.split("/", 1)[1]
        page.locator("#filter-text").fill(device_a_name)
        shown = rows_after(lambda: page.locator("#filter-text").press("Enter"))
        check(shown == [DEVICE_A], f"rows {shown} after searching {device_a_name}, expected only {DEVICE_A}")

        # Pages of two rows: following "Next page" visits every device once, in order.
        page.goto(url("/devices?limit=2&sort=device"))
        seen = visible_rows(page)
        check(len(seen) == 2, f"/devices?limit=2 shows {len(seen)} rows")
        check(page.locator("#devices-prev").count() == 0, "the first page has a Previous link")
        for _ in range(len(ALL_DEVICES)):
            if page.locator("#devices-next").count() == 0:
                break
            seen += rows_after(lambda: page.locator("#devices-next").click())
        names = [d.split("/", 1)[1] for d in seen]
        check(sorted(seen) == ALL_DEVICES and names == sorted(names), f"the pages of 2 rows showed {seen}")
        check(page.locator("#devices-prev").count() == 1, "the last page has no Previous link")

        page.goto(url("/devices?limit=0"))
        check("limit" in text(page, "#flash"), "a bad limit does not say which field is wrong")

        link = page.locator(f'#devices tr[data-device="{DEVICE_A}"] a[href="/devices/{DEVICE_A}"]')
        page.goto(url("/devices"))
        check(link.count() >= 1, f"row {DEVICE_A} has no link to /devices/{DEVICE_A}")
        with page.expect_navigation():
            link.first.click()
        check(path_of(page) == f"/devices/{DEVICE_A}", f"the row's link went to {page.url}")
    runner.run("devices list: filtered, sorted and paged by the server, link to the device page", devices_table)

    # 6b. The API's device list: pages, filters, sort, and errors naming the parameter.
    def devices_api() -> None:
        api = playwright.request.new_context(base_url=BASE, extra_http_headers={"Authorization": f"Bearer {VIEWER_TOKEN}"})
        try:
            whole = api.get("/api/v1/devices").json()
            check(len(whole["devices"]) == len(ALL_DEVICES) and whole["total"] == len(ALL_DEVICES) and whole["next_offset"] is None,
                  f"the unpaged list: {len(whole['devices'])} devices, total {whole.get('total')}, next_offset {whole.get('next_offset')}")
            first = api.get("/api/v1/devices?limit=2&sort=-device").json()
            names = [d["device"] for d in first["devices"]]
            expected = sorted((d.split("/", 1)[1] for d in ALL_DEVICES), reverse=True)[:2]
            check(names == expected and first["total"] == len(ALL_DEVICES) and first["next_offset"] == 2,
                  f"?limit=2&sort=-device: {names}, total {first['total']}, next_offset {first['next_offset']}; expected {expected}")
            filtered = api.get(f"/api/v1/devices?site={SITE_B}&q={DEVICE_B.split('/', 1)[1]}").json()
            check([f"{d['site']}/{d['device']}" for d in filtered["devices"]] == [DEVICE_B], f"?site&q: {filtered['devices']}")
            for query, field in [("limit=0", "limit"), ("offset=-1", "offset"), ("sort=colour", "sort"), ("state=asleep", "state")]:
                response = api.get(f"/api/v1/devices?{query}")
                message = response.json().get("error", {}).get("message", "") if response.status == 400 else ""
                check(response.status == 400 and message.startswith(field + ":"),
                      f"?{query}: {response.status} {response.text()[:200]}, expected 400 naming {field}")
        finally:
            api.dispose()
    runner.run("API device list: unpaged as before, pages, sort, filters, bad parameters named", devices_api)

    # A second tab on the overview, opened before the session starts, shows
    # the counts following live.
    overview_tab = operator.new_page()
    runner.pages.append(overview_tab)
    overview_tab.goto(url("/"))
    overview_mark = mark_page(overview_tab, "overview")

    # 7. The operator starts a session from the device page and sees it run;
    # the telemetry updates without a reload.
    device_mark: dict[str, str] = {}

    def operator_starts_session() -> None:
        page.goto(url(f"/devices/{DEVICE_A}"))
        for field in LIVE_FIELDS:
            check(page.locator(f'[data-live="{field}"]').count() == 1, f"device page: no [data-live={field}]")
        check(page.locator("table#sessions").count() == 1, "device page: no <table id=sessions>")
        check(page.locator("#config").count() == 1, "device page: no #config")
        start = page.locator(f'form#start[method="post"][action="/ui/devices/{DEVICE_A}/start"]')
        check(start.count() == 1, f"device page: no <form id=start method=post action=/ui/devices/{DEVICE_A}/start>")
        check(page.locator('form#start select#program[name="program"]').count() == 1, "no <select id=program name=program> in #start")
        check(page.locator(f'form#stop[method="post"][action="/ui/devices/{DEVICE_A}/stop"]').count() == 1,
              f"device page: no <form id=stop method=post action=/ui/devices/{DEVICE_A}/stop>")
        before = live(page, "state")
        check(before != "running", f"{DEVICE_A} already runs a session before the test started one ({before})")
        page.locator("#program").select_option(PROGRAM)
        with page.expect_navigation():
            start.get_by_role("button", name="Start session").click()
        check(path_of(page) == f"/devices/{DEVICE_A}", f"after Start session the browser is at {page.url}")
        flash = page.locator("#flash")
        check(flash.count() == 1 and flash.inner_text().strip() != "", "no #flash message after Start session")
        print(f"     flash after start: {flash.inner_text().strip()!r}", flush=True)
        device_mark["value"] = mark_page(page, "device")
        poll(lambda: live(page, "state"), lambda s: s == "running", f'[data-live="state"] of {DEVICE_A} to become running', page)
        check_not_reloaded(page, device_mark["value"])
    runner.run("operator starts a session from the device page and sees it run", operator_starts_session)

    def telemetry_updates_live() -> None:
        check("value" in device_mark, "no running session to watch (the previous check failed)")
        first = live(page, "updated")
        poll(lambda: live(page, "updated"), lambda u: u not in PLACEHOLDERS and u != first,
             f'[data-live="updated"] to change from {first!r}', page)
        second = live(page, "updated")
        poll(lambda: live(page, "updated"), lambda u: u != second, f'[data-live="updated"] to change again from {second!r}', page)
        check_not_reloaded(page, device_mark["value"])
        values = {field: live(page, field) for field in LIVE_FIELDS}
        print(f"     live telemetry: {values}", flush=True)
        empty = [f for f in LIVE_FIELDS if values[f] in PLACEHOLDERS]
        check(not empty, f"while the session runs these live fields are empty: {empty} ({values})")
        check(values["technique"] in TECHNIQUES, f'[data-live="technique"] is {values["technique"]!r}, not a technique')
        check(re.search(r"\d", values["intensity"]) is not None, f'[data-live="intensity"] is {values["intensity"]!r}')
        zone = re.match(TIME_RE, values["updated"])
        check(zone is not None and zone.group(1) in SITE_ZONES[SITE_A],
              f'[data-live="updated"] is {values["updated"]!r}: expected the time in {SITE_A}\'s zone, shown as one of {SITE_ZONES[SITE_A]}')
        for field in ["elapsed", "step_left"]:
            check(re.match(DURATION_RE, values[field]) is not None, f'[data-live="{field}"] is {values[field]!r}, not m:ss')
    runner.run("the device's telemetry updates on the page without a reload", telemetry_updates_live)

    # The live session picture: the pressure chart draws more points as
    # telemetry comes, the steps timeline marks the current step.
    def session_picture() -> None:
        check("value" in device_mark, "no running session to watch (the previous check failed)")

        def points() -> int:
            return page.eval_on_selector_all("#pressure-chart polyline",
                                             "ls => ls.map(l => l.getAttribute('points').trim().split(/\\s+/).filter(p => p).length).reduce((a, b) => Math.max(a, b), 0)")
        first = poll(points, lambda n: n >= 2, "the pressure chart to draw a line of at least 2 points", page)
        poll(points, lambda n: n > first, f"the pressure chart to draw more than {first} points without a reload", page)
        zones = page.eval_on_selector_all("#pressure-chart polyline", "ls => ls.map(l => l.dataset.zone)")
        check(zones and all(z in {"thigh", "calf", "shin", "achilles", "heel", "arch"} for z in zones), f"chart lines for zones {zones}")
        label = page.locator("#pressure-chart").get_attribute("aria-label") or ""
        check("mmHg" in label, f"the chart's aria-label does not say the pressures: {label!r}")
        current = page.locator('#steps li[aria-current="step"]')
        poll(lambda: current.count(), lambda n: n == 1, "exactly one current step in #steps", page)
        step_text = current.inner_text()
        check(live(page, "technique") in step_text or re.search(r"Step \d+:", step_text) is not None,
              f"the current step reads {step_text!r}")
        check(re.search(r"intensity \d+", step_text) is not None, f"the current step does not show its intensity: {step_text!r}")
        check(page.locator("#troubles").count() == 1, "no #troubles (recent faults and aborts)")
        check_not_reloaded(page, device_mark["value"])
    runner.run("session picture: the pressure chart draws points live, the current step is marked", session_picture)

    def overview_follows_live() -> None:
        expected = expected_counts(SITE_A, running=1, sessions_today=1)
        poll(lambda: site_counts(overview_tab, SITE_A), lambda c: c == expected,
             f"the overview tab's counts of {SITE_A} to become {expected} without a reload", overview_tab)
        check(site_counts(overview_tab, SITE_B) == expected_counts(SITE_B),
              f"{SITE_B}'s counts changed: {site_counts(overview_tab, SITE_B)}")
        check_not_reloaded(overview_tab, overview_mark)
    runner.run("the overview's counts follow the session live (SSE, no reload)", overview_follows_live)

    def floor_follows_live() -> None:
        tile = poll(lambda: tiles(overview_tab).get(DEVICE_A, {}), lambda t: t.get("state") == "in_session",
                    f"{DEVICE_A}'s tile to turn in_session without a reload", overview_tab)
        check(tile["label"].strip() == "In session", f"{DEVICE_A}'s tile says {tile['label']!r}, expected 'In session'")
        check(PROGRAM in tile["program"], f"{DEVICE_A}'s tile shows program {tile['program']!r}, expected {PROGRAM}")
        poll(lambda: tiles(overview_tab)[DEVICE_A]["left"], lambda v: re.search(r"\d+:\d{2} left", v) is not None,
             f"{DEVICE_A}'s tile to show the time left as m:ss", overview_tab)
        others = {d: t["state"] for d, t in tiles(overview_tab).items() if d != DEVICE_A and t["state"] != "idle"}
        check(not others, f"other tiles changed: {others}")
        check_not_reloaded(overview_tab, overview_mark)
    runner.run("the floor tile of the device follows the session live (state, label, program, time left)", floor_follows_live)

    # 8. Screenshots while the session runs.
    def screenshots() -> None:
        screenshots_at_both_widths([(overview_tab, "overview", lambda: None), (page, "device", lambda: None)])
    runner.run("screenshots of overview and device page at 1280x800 and 820x1180 (no sideways scrolling)", screenshots)

    def devices_table_shows_session() -> None:
        overview_tab.goto(url("/devices"))
        row = overview_tab.locator(f'#devices tr[data-device="{DEVICE_A}"]')
        state = row.locator('td[data-col="state"]').inner_text().strip()
        program = row.locator('td[data-col="program"]').inner_text().strip()
        check(state == "in_session", f"#devices row {DEVICE_A}: state {state!r}, expected in_session")
        check(PROGRAM in program, f"#devices row {DEVICE_A}: program {program!r}, expected {PROGRAM}")
    runner.run("devices table shows the running session (state, program)", devices_table_shows_session)

    # 9. CSRF and Origin: refused even for the operator.
    def csrf_and_origin() -> None:
        page.goto(url(f"/devices/{DEVICE_A}"))
        token = csrf_of(page)
        target = url(f"/ui/devices/{DEVICE_B}/start")
        refused(page.request.post(target, form={"program": PROGRAM}, headers={"Origin": BASE}, max_redirects=0),
                "operator POST without csrf")
        refused(page.request.post(target, form={"program": PROGRAM, "csrf": "0" * len(token)}, headers={"Origin": BASE},
                                  max_redirects=0), "operator POST with a wrong csrf")
        refused(page.request.post(target, form={"program": PROGRAM, "csrf": token}, headers={"Origin": "http://evil.example"},
                                  max_redirects=0), "operator POST with csrf from Origin http://evil.example")
        parsed = urlparse(BASE)
        other = f"{parsed.scheme}://{parsed.hostname}:{(parsed.port or 80) + 1}"
        refused(page.request.post(target, form={"program": PROGRAM, "csrf": token}, headers={"Origin": other},
                                  max_redirects=0), f"operator POST with csrf from Origin {other} (same host, other port)")
    runner.run("POSTs without or with a wrong CSRF token, or from another Origin, are refused (403)", csrf_and_origin)

    # 10. The operator stops the session.
    def operator_stops_session() -> None:
        page.goto(url(f"/devices/{DEVICE_A}"))
        stop = page.locator(f'form#stop[method="post"][action="/ui/devices/{DEVICE_A}/stop"]')
        with page.expect_navigation():
            stop.get_by_role("button", name="Stop session").click()
        check(path_of(page) == f"/devices/{DEVICE_A}", f"after Stop session the browser is at {page.url}")
        flash = page.locator("#flash")
        check(flash.count() == 1 and flash.inner_text().strip() != "", "no #flash message after Stop session")
        print(f"     flash after stop: {flash.inner_text().strip()!r}", flush=True)
        poll(lambda: live(page, "state"), lambda s: s != "running", f'[data-live="state"] of {DEVICE_A} to leave running', page)

        def sessions_table() -> str:
            page.reload()
            return page.locator("table#sessions").inner_text()
        poll(sessions_table, lambda t: PROGRAM in t, f"#sessions of {DEVICE_A} to list the {PROGRAM} session", page)
    runner.run("operator stops the session; it leaves running and shows in #sessions", operator_stops_session)

    # 11. Alerts, usage and rollouts pages for the operator.
    def other_pages() -> None:
        page.goto(url("/alerts"))
        check(page.locator("table#alerts").count() == 1, "/alerts has no <table id=alerts>")
        rows = page.locator("table#alerts tr[data-alert]")
        for index in range(rows.count()):
            row = rows.nth(index)
            check(row.get_by_role("button", name="Acknowledge").count() == 1,
                  f"alert row {row.get_attribute('data-alert')} has no Acknowledge button for the operator")
        page.goto(url("/rollouts"))
        check(path_of(page) == "/rollouts", f"/rollouts ended at {page.url}")

        def usage_charts() -> list[str]:
            page.goto(url("/usage"))
            return page.eval_on_selector_all("main svg", "ss => ss.map(s => (s.getAttribute('aria-label') || '').trim())")
        labels = poll(usage_charts, lambda ls: len(ls) > 0, "/usage to show inline <svg> charts after a session", page)
        check(all(labels), f"/usage has <svg> charts without an aria-label: {labels}")
        values = page.eval_on_selector_all("main svg text", "ts => ts.map(t => t.textContent.trim())")
        decimals = [v for v in values if re.fullmatch(r"\d+\.\d+", v)]
        check(not decimals, f"/usage prints numbers with decimals: {decimals}")
        counts = re.findall(r"\d+(?:\.\d+)?", page.locator("section.usage p").first.inner_text())
        check(counts and all("." not in c for c in counts), f"/usage session counts read {counts}")
        check(any(re.fullmatch(r"\d+:\d{2}", v) for v in values), f"/usage shows no duration as m:ss: {values}")
        print(f"     usage charts: {labels}", flush=True)
    runner.run("alerts table, rollouts page, usage charts (inline SVG with aria-labels)", other_pages)

    # 11b. No page's own resources answer an error (the icon answered 404 on every page).
    def no_error_responses() -> None:
        bad = {}
        for path in PAGES:
            found = error_responses(page, path)
            if found:
                bad[path] = found
        check(not bad, f"requests answering errors: {bad}")
    runner.run("no request of any page answers 404 or another error", no_error_responses)

    # 11c. A real alert: a device (the real broker, the real ingest) comes
    # online and loses its connection; the operator acknowledges the
    # console's alert with the keyboard alone.
    alarm_device = "sim-alarm"

    def acknowledge_real_alert() -> None:
        topic = f"massage/v1/{SITE_A}/{alarm_device}/status"
        now = lambda: time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        publish(topic, {"ts": now(), "epoch": 1, "seq": 1, "state": "online", "agent_version": "test", "programs": [PROGRAM]})
        api = playwright.request.new_context(base_url=BASE, extra_http_headers={"Authorization": f"Bearer {VIEWER_TOKEN}"})
        try:
            poll(lambda: api.get(f"/api/v1/devices?site={SITE_A}&q={alarm_device}").json()["devices"],
                 lambda ds: len(ds) == 1 and ds[0]["online"], f"{SITE_A}/{alarm_device} online in the API", page)
            publish(topic, {"ts": now(), "epoch": 1, "seq": 2, "state": "offline"})

            def alert_row() -> str | None:
                page.goto(url("/alerts"))
                rows = page.locator(f"table#alerts tr[data-alert]", has_text=alarm_device)
                return rows.first.get_attribute("data-alert") if rows.count() else None
            alert_id = poll(alert_row, lambda a: a is not None, f"an alert for {SITE_A}/{alarm_device} on /alerts", page)
            row = page.locator(f'table#alerts tr[data-alert="{alert_id}"]')
            raised = row.locator("td").nth(5).inner_text().strip()
            zone = re.match(TIME_RE, raised)
            check(zone is not None and zone.group(1) in SITE_ZONES[SITE_A], f"the alert's raised time {raised!r} is not in {SITE_A}'s zone {SITE_ZONES[SITE_A]}")
            tab_to(page, f'tr[data-alert="{alert_id}"] button')
            with page.expect_navigation():
                page.keyboard.press("Enter")
            check(f"Alert {alert_id} acknowledged" in text(page, "#flash"), f"flash after acknowledging: {text(page, '#flash')!r}")
            row = page.locator(f'table#alerts tr[data-alert="{alert_id}"]')
            check(OPERATOR_NAME in row.inner_text(), f"the alert row does not name who acknowledged it: {row.inner_text()!r}")
            check(row.get_by_role("button", name="Acknowledge").count() == 0, "the acknowledged alert still offers Acknowledge")
            alerts = api.get("/api/v1/alerts?active=true").json()["alerts"]
            mine = [a for a in alerts if str(a.get("id")) == alert_id]
            check(mine and mine[0].get("acknowledged_by") == OPERATOR_NAME, f"the API's alert {alert_id}: {mine}")
        finally:
            api.dispose()
    runner.run("a real alert (a device that lost its connection) is acknowledged from /alerts with the keyboard", acknowledge_real_alert)

    # 11d. Keyboard only: skip link, navigation, the devices search, a
    # device's start and stop.
    def keyboard_only() -> None:
        page.goto(url("/"))
        page.keyboard.press("Tab")
        check(page.evaluate("() => document.activeElement.className") == "skip", "the first Tab does not reach the skip link")
        page.keyboard.press("Enter")
        check(page.evaluate("() => document.activeElement.id") == "main", "the skip link does not move focus to <main>")
        page.goto(url("/"))
        tab_to(page, 'nav a[href="/devices"]')
        with page.expect_navigation():
            page.keyboard.press("Enter")
        check(path_of(page) == "/devices", f"Enter on the Devices link went to {page.url}")
        tab_to(page, "#filter-text")
        page.keyboard.type(DEVICE_A.split("/", 1)[1])
        with page.expect_navigation():
            page.keyboard.press("Enter")
        check(visible_rows(page) == [DEVICE_A], f"the keyboard's search shows {visible_rows(page)}")
        tab_to(page, f'#devices a[href="/devices/{DEVICE_A}"]')
        with page.expect_navigation():
            page.keyboard.press("Enter")
        check(path_of(page) == f"/devices/{DEVICE_A}", f"Enter on the device link went to {page.url}")
        tab_to(page, "form#start button")
        with page.expect_navigation():
            page.keyboard.press("Enter")
        check("start_session" in text(page, "#flash"), f"flash after starting with the keyboard: {text(page, '#flash')!r}")
        poll(lambda: live(page, "state"), lambda s: s == "running", f"{DEVICE_A} running after a keyboard start", page)
        tab_to(page, "form#stop button")
        with page.expect_navigation():
            page.keyboard.press("Enter")
        check("stop_session" in text(page, "#flash"), f"flash after stopping with the keyboard: {text(page, '#flash')!r}")
        poll(lambda: live(page, "state"), lambda s: s != "running", f"{DEVICE_A} leaves running after a keyboard stop", page)
    runner.run("keyboard only: skip link, nav, device search, start and stop a session", keyboard_only)

    # 11f. Rollouts from the browser (admin): a bad form shows every reason
    # with its key and sends nothing; a good one runs to completed and its
    # page follows it live; pause, resume and abort from the page.
    admin = new_context(browser)
    admin_page = admin.new_page()
    runner.pages.append(admin_page)
    site_a_devices = sorted(d for d in ALL_DEVICES if d.startswith(SITE_A + "/"))
    rollout_pages: list[str] = []

    def api_rollouts() -> list[dict]:
        api = playwright.request.new_context(base_url=BASE, extra_http_headers={"Authorization": f"Bearer {VIEWER_TOKEN}"})
        try:
            return api.get("/api/v1/rollouts").json()["rollouts"]
        finally:
            api.dispose()

    def fill_rollout(name: str, config: str, canary: str, percentages: str, bake: str) -> None:
        admin_page.goto(url("/rollouts"))
        with admin_page.expect_navigation():
            admin_page.locator("#new-rollout").click()
        admin_page.locator("#ro-name").fill(name)
        admin_page.locator("#ro-config").fill(config)
        admin_page.locator("#ro-devices").fill("\n".join(site_a_devices))
        admin_page.locator("#ro-canary").fill(canary)
        admin_page.locator("#ro-percentages").fill(percentages)
        admin_page.locator("#ro-bake").fill(bake)

    def submit_rollout(button: str) -> None:
        with admin_page.expect_navigation():
            admin_page.locator("#rollout-form").get_by_role("button", name=button, exact=True).click()

    def bad_rollout_refused() -> None:
        sign_in(admin_page, ADMIN_TOKEN)
        before = len(api_rollouts())
        fill_rollout("bad one", "default_intensity: 42\nbogus_key: 1", "x", "50, 100", "0")
        submit_rollout("Start rollout")
        check(path_of(admin_page) == "/ui/rollouts/new", f"a bad rollout went to {admin_page.url}")
        keys = admin_page.eval_on_selector_all("#rollout-reasons li", "ls => ls.map(l => l.dataset.key)")
        texts = admin_page.eval_on_selector_all("#rollout-reasons li", "ls => ls.map(l => l.textContent.trim())")
        print(f"     reasons shown: {texts}", flush=True)
        check("waves.canary" in keys, f"no reason for waves.canary among {texts}")
        check(sum(1 for k in keys if k.startswith("config")) >= 2, f"expected a reason for each of the config's two problems: {texts}")
        check(any("bogus_key" in t for t in texts) and any("default_intensity" in t for t in texts), f"the config's reasons do not name their keys: {texts}")
        check(admin_page.locator("#ro-config").input_value().startswith("default_intensity: 42"), "the form lost what was typed")
        check(len(api_rollouts()) == before, "a refused form created a rollout")
    runner.run("rollout form: a bad config and canary show every reason with its key; nothing is sent", bad_rollout_refused)

    def rollout_preview_api() -> None:
        api = playwright.request.new_context(base_url=BASE, extra_http_headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})
        try:
            good = {"name": "preview", "config": {"default_intensity": 4}, "targets": {"sites": [SITE_B]},
                    "waves": {"canary": 1, "percentages": [100]}}
            answer = api.post("/api/v1/rollouts/preview", data=json.dumps(good), headers={"Content-Type": "application/json"}).json()
            devices_b = len(SITES[SITE_B])
            check(answer == {"ok": True, "reasons": [], "targets": devices_b, "waves": [1, devices_b - 1]}, f"preview of a good document: {answer}")
            bad = {**good, "config": {"bogus_key": 1}, "waves": {"canary": 0, "percentages": [100]}}
            answer = api.post("/api/v1/rollouts/preview", data=json.dumps(bad), headers={"Content-Type": "application/json"}).json()
            keys = sorted(r.split(": ", 1)[0] for r in answer.get("reasons", []))
            check(answer.get("ok") is False and "waves.canary" in keys and any(k.startswith("config") for k in keys),
                  f"preview of a bad document: {answer}")
        finally:
            api.dispose()
        check(api_rollouts() == [], "a preview created a rollout")
    runner.run("API rollout preview: devices and waves of a good document, every reason of a bad one, nothing created", rollout_preview_api)

    def good_rollout_completes() -> None:
        fill_rollout("intensity four", "default_intensity: 4", "1", "100", "0")
        live_text = poll(lambda: text(admin_page, "#live-preview"), lambda t: t.startswith(f"{len(site_a_devices)} devices match"),
                         "the form's live preview to count the devices as they are typed", admin_page)
        check(f"waves: 1 + {len(site_a_devices) - 1}; no problems" in live_text, f"the live preview reads {live_text!r}")
        admin_page.locator("#ro-canary").fill("zero")
        poll(lambda: text(admin_page, "#live-preview"), lambda t: "waves.canary" in t, "the live preview to name waves.canary", admin_page)
        admin_page.locator("#ro-canary").fill("1")
        check(len(api_rollouts()) == 0, "the live preview created a rollout")
        submit_rollout("Check")
        check(text(admin_page, "#target-count") == str(len(site_a_devices)), f"Check counts {text(admin_page, '#target-count')} devices")
        sizes = admin_page.eval_on_selector_all("#wave-sizes [data-wave]", "ws => ws.map(w => w.textContent.trim())")
        check(sizes == ["1", str(len(site_a_devices) - 1)], f"Check previews waves {sizes}")
        check(admin_page.locator("#rollout-reasons").count() == 0, "a good form shows reasons")
        check(len(api_rollouts()) == 0, "Check created a rollout")
        submit_rollout("Start rollout")
        check(re.fullmatch(r"/rollouts/[a-z0-9-]+", path_of(admin_page)) is not None, f"Start rollout went to {admin_page.url}")
        rollout_pages.append(path_of(admin_page))
        mark = mark_page(admin_page, "rollout")
        poll(lambda: text(admin_page, '[data-ro="state"]'), lambda st: st == "completed", "the rollout page to say completed", admin_page, timeout=120)
        states = admin_page.eval_on_selector_all("#ro-devices tbody tr", "rs => rs.map(r => r.cells[2].textContent)")
        check(states == ["succeeded"] * len(site_a_devices), f"the devices' states when completed: {states}")
        check_not_reloaded(admin_page, mark)
    runner.run("rollout form: Check previews devices and waves; Start runs it to completed, the page following live", good_rollout_completes)

    def pause_resume_abort() -> None:
        fill_rollout("long bake", "default_intensity: 5", "1", "100", "600")
        submit_rollout("Start rollout")
        check(re.fullmatch(r"/rollouts/[a-z0-9-]+", path_of(admin_page)) is not None, f"Start rollout went to {admin_page.url}")
        rollout_pages.append(path_of(admin_page))
        check(text(admin_page, '[data-ro="threshold"]') != "", "the rollout page shows no error threshold line")
        for button, state in [("Pause", "paused"), ("Resume", "running"), ("Abort", "aborted")]:
            with admin_page.expect_navigation():
                admin_page.get_by_role("button", name=button, exact=True).click()
            check(path_of(admin_page) == rollout_pages[-1], f"{button} went to {admin_page.url}")
            poll(lambda: text(admin_page, '[data-ro="state"]'), lambda st: st == state, f"the rollout to be {state} after {button}", admin_page)
        rollout = [r for r in api_rollouts() if r["id"] == rollout_pages[-1].rsplit("/", 1)[1]]
        check(rollout and rollout[0]["state"] == "aborted", f"the API's rollout: {rollout[:1]}")
    runner.run("rollout page: pause, resume and abort from the page", pause_resume_abort)

    def more_screenshots() -> None:
        pages = [("/devices", "devices"), ("/rollouts/new", "rollout-form")] + [(p, "rollout") for p in rollout_pages[:1]]
        screenshots_at_both_widths([(admin_page, name, lambda path=path: admin_page.goto(url(path))) for path, name in pages])
    runner.run("screenshots of the devices list, rollout form and rollout page at both widths (no sideways scrolling)", more_screenshots)

    # 11e. axe-core on every page (and the sign-in page): no serious or critical violation.
    def accessibility() -> None:
        problems = []
        for path in PAGES:
            page.goto(url(path))
            problems += axe_problems(page, path)
        for path in ["/rollouts/new"] + rollout_pages[:1]:
            admin_page.goto(url(path))
            problems += axe_problems(admin_page, path)
        anonymous = new_context(browser)
        try:
            login = anonymous.new_page()
            login.goto(url("/login"))
            problems += axe_problems(login, "/login")
        finally:
            anonymous.close()
        check(not problems, "; ".join(problems))
    runner.run("axe-core: no serious or critical violation on any page", accessibility)

    # 12. A viewer sees no controls, and the server refuses a forged POST.
    viewer = new_context(browser)
    viewer_page = viewer.new_page()
    runner.pages.append(viewer_page)

    def viewer_sees_no_controls() -> None:
        sign_in(viewer_page, VIEWER_TOKEN)
        check(path_of(viewer_page) == "/", f"the viewer's sign-in ended at {viewer_page.url}")
        check(VIEWER_NAME in text(viewer_page, "#whoami"), f"#whoami shows {text(viewer_page, '#whoami')!r} for the viewer")
        problems = []
        for path in PAGES:
            viewer_page.goto(url(path))
            if path_of(viewer_page) != path:
                problems.append(f"{path}: ended at {viewer_page.url}")
                continue
            for form in post_forms(viewer_page):
                if form["id"] != "logout":
                    problems.append(f"{path}: a POST form for the viewer: {form['id'] or form['action']}")
            for name in CONTROL_BUTTONS:
                if viewer_page.get_by_role("button", name=name, exact=True).count():
                    problems.append(f"{path}: a '{name}' button for the viewer")
        viewer_page.goto(url("/"))
        if viewer_page.locator("form.start-site").count():
            problems.append("/: form.start-site for the viewer")
        shown = sorted(viewer_page.eval_on_selector_all("section.site", "s => s.map(x => x.dataset.site)"))
        if shown != SITE_IDS:
            problems.append(f"/: the viewer sees sites {shown}, expected {SITE_IDS}")
        check(not problems, "; ".join(problems))
    runner.run("a viewer signs in and sees no controls on any page", viewer_sees_no_controls)

    def viewer_forged_post_refused() -> None:
        viewer_page.goto(url(f"/devices/{DEVICE_B}"))
        token = csrf_of(viewer_page)  # the sign-out form's: a valid token of the viewer's session
        for path, form in [(f"/ui/devices/{DEVICE_B}/start", {"program": PROGRAM}),
                           (f"/ui/devices/{DEVICE_B}/stop", {}),
                           (f"/ui/sites/{SITE_B}/start", {"program": PROGRAM})]:
            response = viewer_page.request.post(url(path), form={**form, "csrf": token}, headers={"Origin": BASE}, max_redirects=0)
            refused(response, f"viewer POST {path} with the page's csrf token")
    runner.run("a viewer's forged POSTs (with a valid CSRF token) are refused with 403", viewer_forged_post_refused)

    def device_b_untouched() -> None:
        api = playwright.request.new_context(base_url=BASE, extra_http_headers={"Authorization": f"Bearer {VIEWER_TOKEN}"})
        try:
            response = api.get(f"/api/v1/devices/{DEVICE_B}")
            check(response.ok, f"GET /api/v1/devices/{DEVICE_B}: {response.status} {response.text()[:200]}")
            device = response.json().get("device", {})
        finally:
            api.dispose()
        check(device.get("state") == "idle" and not device.get("session"),
              f"{DEVICE_B} was acted on by a POST that should have been refused: state {device.get('state')}, session {device.get('session')}")
        viewer_page.goto(url("/"))
        counts = site_counts(viewer_page, SITE_B)
        check(counts == expected_counts(SITE_B), f"{SITE_B}'s counts changed after only refused POSTs: {counts}")
    runner.run("no refused POST started anything on device B", device_b_untouched)

    # 13. Sign out.
    def sign_out(context: BrowserContext, tab: Page, who: str) -> None:
        tab.goto(url("/"))
        old = session_cookie(context)
        check(old is not None, f"{who}: no session cookie before signing out")
        with tab.expect_navigation():
            tab.locator("form#logout").get_by_role("button", name="Sign out").click()
        check(path_of(tab) == "/login", f"{who}: Sign out ended at {tab.url}, expected /login")
        check(session_cookie(context) is None, f"{who}: the session cookie is still there: {session_cookie(context)}")
        tab.goto(url("/devices"))
        check(path_of(tab) == "/login", f"{who}: /devices after signing out ended at {tab.url}, expected /login")
        replay = playwright.request.new_context(base_url=BASE, extra_http_headers={"Cookie": f"fc_session={old['value']}"})
        response = replay.get("/devices", max_redirects=0)
        location = response.headers.get("location", "")
        check(response.status in (302, 303, 307) and urlparse(location).path == "/login",
              f"{who}: the old session cookie still opens /devices after sign-out ({response.status}, location {location!r})")
        replay.dispose()
    runner.run("operator signs out: /login, cookie gone, pages redirect, the old session is dead",
               lambda: sign_out(operator, page, "operator"))
    runner.run("viewer signs out", lambda: sign_out(viewer, viewer_page, "viewer"))

    if page_errors:
        print("     for the record, on the operator's first tab: " + ", ".join(page_errors[:10]), flush=True)


if __name__ == "__main__":
    sys.exit(main())
