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

  const traffic = document.querySelector("#traffic");
  if (traffic) followTraffic(traffic, traffic.dataset.app);

  // Requests/s per machine and per machine region, and the edges' latency estimate per machine, over the last
  // five minutes: GET /v1/apps/APP/traffic every two seconds, drawn with uPlot (vendored).
  async function followTraffic(section, name) {
    const charts = {};
    let xRange = [0, 1];  // the window asked for (five minutes to now): the x axis holds still as points come
    const empty = section.querySelector(".traffic-empty");
    for (let round = 0; round < 100000; round++) {
      try {
        const since = section.dataset.window || "300";
        const response = await fetch(`/v1/apps/${encodeURIComponent(name)}/traffic?since=${since}`);
        if (response.ok) draw(await response.json());
      } catch (err) {
        // a failed poll: the next one redraws
      }
      await new Promise((resolve) => setTimeout(resolve, 2000));
    }

    function draw(data) {
      const points = data.points || [];
      xRange = [data.now - data.window_s, data.now];
      empty.hidden = points.length > 0;
      section.dataset.points = String(points.length);
      const step = 2;
      const times = [...new Set(points.map((p) => Math.round(p.at / step) * step))].sort((a, b) => a - b);
      const index = new Map(times.map((t, i) => [t, i]));
      const byMachine = {}, byRegion = {}, latency = {};
      for (const p of points) {
        const i = index.get(Math.round(p.at / step) * step);
        const region = (data.machines || {})[p.machine] || "?";
        (byMachine[p.machine] ||= new Array(times.length).fill(null));
        (byRegion[region] ||= new Array(times.length).fill(null));
        byMachine[p.machine][i] = (byMachine[p.machine][i] || 0) + p.requests;
        byRegion[region][i] = (byRegion[region][i] || 0) + p.requests;
        if (p.latency_ms !== null) (latency[p.machine] ||= new Array(times.length).fill(null))[i] = p.latency_ms;
      }
      section.dataset.served = JSON.stringify(Object.fromEntries(
        Object.entries(byMachine).map(([m, v]) => [m, v.reduce((a, b) => a + (b || 0), 0)])));
      plot("chart-machines", times, byMachine);
      plot("chart-regions", times, byRegion);
      plot("chart-latency", times, latency);
    }

    function plot(id, times, series) {
      const el = document.getElementById(id);
      const names = Object.keys(series).sort();
      const key = names.join(",");
      const data = [times, ...names.map((n) => series[n])];
      if (!times.length || typeof uPlot === "undefined") return;
      if (charts[id] && charts[id].key === key) {
        charts[id].plot.setData(data);
        return;
      }
      if (charts[id]) charts[id].plot.destroy();
      const colors = ["#0969da", "#1a7f37", "#cf222e", "#9a6700", "#8250df", "#bf3989", "#1b7c83", "#57606a"];
      const opts = {
        title: el.dataset.title, width: Math.min(1100, el.clientWidth || 900), height: 200,
        scales: { x: { time: true, range: () => xRange } },
        series: [{}, ...names.map((n, i) => ({ label: n, stroke: colors[i % colors.length], width: 2, spanGaps: true }))],
        axes: [{}, { size: 60 }],
      };
      charts[id] = { key, plot: new uPlot(opts, data, el) };
    }
  }

  const drillData = document.getElementById("drill-data");
  if (drillData) drawDrill(JSON.parse(drillData.textContent));
  const running = document.querySelector("#traffic[data-drill]");
  if (running) watchDrill(running.dataset.app, running.dataset.drill);

  // A running drill's page draws itself again once the drill has finished (and its report is in).
  async function watchDrill(name, drill) {
    for (let round = 0; round < 3600; round++) {
      await new Promise((resolve) => setTimeout(resolve, 2000));
      try {
        const response = await fetch(`/v1/apps/${encodeURIComponent(name)}/drills/${encodeURIComponent(drill)}`);
        if (response.ok && (await response.json()).state === "finished") {
          location.reload();
          return;
        }
      } catch (err) {
        // the control plane may be the thing the drill broke: ask again
      }
    }
  }

  // A finished drill: requests/s per machine (or region) and errors over the drill, the fault and heal marked.
  function drawDrill(chart) {
    const el = document.getElementById("chart-drill");
    if (!el || typeof uPlot === "undefined" || !chart.buckets.length) return;
    const width = chart.width_s || 1;
    const names = [...new Set(chart.buckets.flatMap((b) => Object.keys(b.ok)))].sort();
    const xs = chart.buckets.map((b) => b.start);
    const data = [xs, ...names.map((n) => chart.buckets.map((b) => (b.ok[n] || 0) / width)),
                  chart.buckets.map((b) => b.errors / width)];
    el.dataset.series = JSON.stringify(names);
    el.dataset.totals = JSON.stringify(Object.fromEntries(names.map((n, i) => [n, data[i + 1].reduce((a, b) => a + b, 0) * width])));
    const colors = ["#0969da", "#1a7f37", "#9a6700", "#8250df", "#bf3989", "#1b7c83", "#57606a"];
    const marks = [[chart.fault_at_s, "F"], [chart.heal_at_s, "H"]].filter(([at]) => at !== null && at !== undefined);
    new uPlot({
      width: Math.min(1100, el.clientWidth || 900), height: 260, scales: { x: { time: false } },
      series: [{ label: "s" }, ...names.map((n, i) => ({ label: n, stroke: colors[i % colors.length], width: 2 })),
               { label: "errors", stroke: "#cf222e", width: 2, dash: [4, 4] }],
      axes: [{ label: "seconds into the drill" }, { label: "requests/s", size: 60 }],
      hooks: { draw: [(u) => {
        const ctx = u.ctx;
        ctx.save();
        ctx.strokeStyle = "#cf222e"; ctx.fillStyle = "#cf222e"; ctx.font = `${12 * devicePixelRatio}px sans-serif`;
        for (const [at, letter] of marks) {
          const x = u.valToPos(at, "x", true);
          ctx.beginPath(); ctx.moveTo(x, u.bbox.top); ctx.lineTo(x, u.bbox.top + u.bbox.height); ctx.stroke();
          ctx.fillText(letter, x + 4, u.bbox.top + 14 * devicePixelRatio);
        }
        ctx.restore();
      }] },
    }, data, el);
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
