// The dashboard's live parts: machine and host states from the watch feed (server-sent events), and an app's
// logs followed as they are written. Plain JavaScript, no build step; the session cookie authenticates both.
"use strict";

(function () {
  const body = document.body;
  const revision = body.dataset.revision || "0";
  const app = body.dataset.app || "";
  let reloading = null;

  function reloadSoon() {  // a machine this page does not show yet: draw the page again (at most once a second)
    if (reloading === null) reloading = setTimeout(() => location.reload(), 1000);
  }

  function applyChange(ev) {
    if (ev.kind === "machine") {
      const row = document.querySelector(`tr[data-machine="${CSS.escape(ev.key)}"]`);
      const m = ev.object;
      if (row && m) {
        if (row.dataset.state !== m.state) {
          row.dataset.state = m.state;
          row.querySelector(".state").textContent = m.state;
          row.classList.remove("changed"); void row.offsetWidth; row.classList.add("changed");
        }
        const checks = row.querySelector(".checks");
        if (checks && Array.isArray(m.checks)) {
          const passing = m.checks.filter((c) => c.status === "passing").length;
          checks.textContent = m.checks.length ? `${passing}/${m.checks.length} passing` : "-";
        }
      } else if (!row && m && m.state !== "destroyed" && (!app || m.app === app)) {
        reloadSoon();
      }
    } else if (ev.kind === "host" && ev.object) {
      const host = document.querySelector(`article[data-host="${CSS.escape(ev.key)}"] .status`);
      if (host) {
        host.textContent = ev.object.status;
        host.className = `status status-${ev.object.status}`;
      }
    }
  }

  if (document.querySelector("tr[data-machine], article[data-host], body[data-app]:not([data-app=''])")) {
    const feed = new EventSource(`/v1/watch?stream=true&since=${encodeURIComponent(revision)}`);
    feed.addEventListener("change", (msg) => applyChange(JSON.parse(msg.data)));
    feed.addEventListener("reset", () => reloadSoon());
  }

  const logs = document.querySelector("pre.logs");
  if (logs) followLogs(logs, logs.dataset.app);

  async function followLogs(pre, name) {
    const decoder = new TextDecoder();
    for (let attempt = 0; attempt < 100; attempt++) {
      try {
        const response = await fetch(`/v1/apps/${encodeURIComponent(name)}/logs?follow=true&lines=50`);
        if (!response.ok) return;
        const reader = response.body.getReader();
        let partial = "";
        for (;;) {
          const { value, done } = await reader.read();
          if (done) break;
          partial += decoder.decode(value, { stream: true });
          const lines = partial.split("\n");
          partial = lines.pop();
          for (const line of lines) {
            if (!line.trim()) continue;
            const item = JSON.parse(line);
            const text = `${item.timestamp || "-"} ${item.region} ${item.machine_id} ${item.stream === "stderr" ? "stderr " : ""}${item.message}\n`;
            pre.append(document.createTextNode(text));
            while (pre.childNodes.length > 1000) pre.removeChild(pre.firstChild);
            pre.scrollTop = pre.scrollHeight;
          }
        }
      } catch (err) {
        // the stream broke (a server restart): follow again after a pause
      }
      await new Promise((resolve) => setTimeout(resolve, 2000));
    }
  }
})();
