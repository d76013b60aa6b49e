"""A small client of Chromium's DevTools protocol: enough to load pages in headless Chromium,
read them with JavaScript, catch console errors and dialogs, and take screenshots."""
import base64
import json
import subprocess
import time
from pathlib import Path

import requests
import websocket

# Any dialog a page opens, and any call to alert/confirm/prompt, is recorded here before the
# page's own scripts run: an injected payload that executes leaves a trace.
TRAP = """
window.__opened = [];
for (const name of ["alert", "confirm", "prompt"]) {
  window[name] = function (message) { window.__opened.push(name + ":" + message); };
}
"""


class Browser:
    def __init__(self, profile: Path, headers=None):
        profile.mkdir(parents=True, exist_ok=True)
        self.proc = subprocess.Popen(
            ["chromium", "--headless=new", "--no-sandbox", "--disable-gpu", "--no-first-run",
             "--disable-extensions", "--disable-background-networking", "--remote-debugging-port=0",
             f"--user-data-dir={profile}", "--window-size=1280,900", "about:blank"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        port_file = profile / "DevToolsActivePort"
        deadline = time.time() + 30
        while not port_file.exists() or not port_file.read_text().strip():
            if time.time() > deadline or self.proc.poll() is not None:
                self.close()
                raise RuntimeError("headless Chromium did not start")
            time.sleep(0.05)
        port = int(port_file.read_text().split()[0])
        pages = [t for t in requests.get(f"http://127.0.0.1:{port}/json/list", timeout=10).json() if t["type"] == "page"]
        self.ws = websocket.create_connection(pages[0]["webSocketDebuggerUrl"], timeout=60, suppress_origin=True)
        self.next_id = 0
        self.events = []
        for domain in ("Page", "Runtime", "Log", "Network"):
            self.send(f"{domain}.enable")
        self.send("Page.addScriptToEvaluateOnNewDocument", source=TRAP)
        if headers:
            self.send("Network.setExtraHTTPHeaders", headers=headers)

    def send(self, method, **params):
        self.next_id += 1
        mine = self.next_id
        self.ws.send(json.dumps({"id": mine, "method": method, "params": params}))
        while True:
            message = json.loads(self.ws.recv())
            if message.get("id") == mine:
                if "error" in message:
                    raise RuntimeError(f"{method}: {message['error']}")
                return message.get("result", {})
            if "method" in message:
                self.events.append(message)

    def wait_for(self, method, timeout=30, since=0):
        """The first `method` event at or after index `since` of the events kept."""
        deadline = time.time() + timeout
        seen = since
        while time.time() < deadline:
            for event in self.events[seen:]:
                if event["method"] == method:
                    return event
            seen = len(self.events)
            self.ws.settimeout(max(0.05, deadline - time.time()))
            try:
                message = json.loads(self.ws.recv())
            except websocket.WebSocketTimeoutException:
                break
            if "method" in message:
                self.events.append(message)
        raise TimeoutError(f"no {method} within {timeout} s")

    def goto(self, url):
        """Loads `url` and waits for its load event; returns the HTTP status of the document."""
        self.events.clear()
        self.send("Page.navigate", url=url)
        self.wait_for("Page.loadEventFired")
        statuses = [e["params"]["response"]["status"] for e in self.events
                    if e["method"] == "Network.responseReceived" and e["params"]["type"] == "Document"]
        return statuses[-1] if statuses else None

    def wait_until(self, expression, timeout=30):
        """Waits until `expression` is true in the page (e.g. after a script sent it elsewhere)."""
        deadline = time.time() + timeout
        while time.time() < deadline:
            try:
                if self.eval(f"document.readyState === 'complete' && !!({expression})"):
                    return
            except RuntimeError:
                pass  # the page changed under the evaluation
            time.sleep(0.05)
        raise TimeoutError(f"{expression} not true within {timeout} s")

    def eval(self, expression):
        result = self.send("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in result:
            raise RuntimeError(f"{expression}: {result['exceptionDetails']}")
        return result["result"].get("value")

    def problems(self):
        """Console errors, uncaught exceptions and dialogs since the last `goto`."""
        found = []
        for e in self.events:
            p = e["params"]
            if e["method"] == "Runtime.exceptionThrown":
                found.append(f"exception: {p['exceptionDetails'].get('text')}")
            elif e["method"] == "Runtime.consoleAPICalled" and p["type"] == "error":
                found.append(f"console.error: {[a.get('value') for a in p['args']]}")
            elif e["method"] == "Log.entryAdded" and p["entry"]["level"] == "error":
                found.append(f"log: {p['entry'].get('text')} {p['entry'].get('url', '')}")
            elif e["method"] == "Page.javascriptDialogOpening":
                found.append(f"dialog: {p.get('message')}")
        opened = self.eval("window.__opened || []")
        return found + [f"called {o}" for o in opened]

    def screenshot(self, path: Path, height=6000):
        """The whole page (its first `height` pixels), not only the window."""
        size = self.send("Page.getLayoutMetrics")["cssContentSize"]
        shot = self.send("Page.captureScreenshot", format="png", captureBeyondViewport=True,
                         clip={"x": 0, "y": 0, "width": size["width"], "height": min(size["height"], height), "scale": 1})
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(base64.b64decode(shot["data"]))

    def close(self):
        try:
            self.ws.close()
        except Exception:
            pass
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
