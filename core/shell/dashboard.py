"""The read-only web dashboard behind ``--http-listen`` (``GET /``).

One HTML page with its CSS and script inline: no build step, no framework,
nothing fetched from elsewhere (operators open it on hosts without Internet
access).  The page subscribes to ``GET /events``, a server-sent event stream
of status snapshots: one at once, one after every state change the daemon
emits (so a failover shows up without polling), and one every
:data:`REFRESH_SECONDS` for counters and timers.  It shows VRRP instances
(state, priorities, VIPs, master seen, last transition and why), trackers,
virtual and real servers (health, weight) and the last transitions.

The snapshot is the status document, which holds no secrets (no auth_pass,
no keys, no SMTP password): the page can show nothing the daemon does not
publish on /status.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from typing import Any

#: Seconds between snapshots when nothing changes.
REFRESH_SECONDS = 2.0


class Changes:
    """A wake-up for every open event stream when the daemon's state changes."""

    def __init__(self) -> None:
        self._version = 0
        self._cond: asyncio.Condition | None = None

    def _condition(self) -> asyncio.Condition:
        if self._cond is None:
            self._cond = asyncio.Condition()
        return self._cond

    def notify(self) -> None:
        """Called from the main loop (the daemon's emit); never blocks."""
        self._version += 1
        cond = self._condition()

        async def wake() -> None:
            async with cond:
                cond.notify_all()

        task = asyncio.get_running_loop().create_task(wake(), name="dashboard:wake")
        _pending.add(task)
        task.add_done_callback(_pending.discard)

    async def wait(self, seen: int, timeout: float) -> int:
        """Wait until the version moves past ``seen`` or ``timeout`` passes."""
        cond = self._condition()
        if self._version == seen:
            async with cond:
                try:
                    await asyncio.wait_for(
                        cond.wait_for(lambda: self._version != seen), timeout=timeout
                    )
                except TimeoutError:
                    pass
        return self._version

    @property
    def version(self) -> int:
        return self._version


_pending: set[asyncio.Task[None]] = set()


async def stream(
    write: Callable[[bytes], Awaitable[None]],
    snapshot: Callable[[], Awaitable[dict[str, Any]]],
    changes: Changes,
    refresh: float = REFRESH_SECONDS,
) -> None:
    """Write ``event: status`` messages until the client goes away."""
    seen = changes.version
    while True:
        data = json.dumps(await snapshot(), default=str, separators=(",", ":"))
        await write(f"event: status\ndata: {data}\n\n".encode())
        seen = await changes.wait(seen, refresh)


PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>pykeepalived</title>
<style>
  body { font: 14px/1.4 system-ui, sans-serif; margin: 1.5em; color: #222; }
  h1 { font-size: 1.3em; margin: 0 0 .2em; }
  h2 { font-size: 1.05em; margin: 1.4em 0 .4em; }
  #meta, .muted { color: #666; }
  table { border-collapse: collapse; width: 100%; }
  th, td { text-align: left; padding: .25em .6em; border-bottom: 1px solid #ddd; vertical-align: top; }
  th { font-weight: 600; background: #f4f4f4; }
  .state { font-weight: 700; padding: .05em .45em; border-radius: .3em; }
  .MASTER { background: #d7f5dd; color: #0a5d1c; }
  .BACKUP { background: #e3ecfb; color: #123e8c; }
  .FAULT, .DOWN, .STOP { background: #fbe0e0; color: #8c1212; }
  .UP { background: #d7f5dd; color: #0a5d1c; }
  #conn.lost { color: #8c1212; font-weight: 700; }
</style>
</head>
<body>
<h1>pykeepalived</h1>
<div id="meta">connecting&hellip; <span id="conn"></span></div>

<h2>VRRP instances</h2>
<table id="instances"><thead><tr>
  <th>instance</th><th>state</th><th>priority</th><th>effective</th><th>VIPs</th>
  <th>master seen</th><th>last transition</th><th>why</th>
</tr></thead><tbody></tbody></table>

<h2>Trackers</h2>
<table id="trackers"><thead><tr>
  <th>tracker</th><th>status</th><th>detail</th>
</tr></thead><tbody></tbody></table>

<h2>Virtual servers</h2>
<table id="servers"><thead><tr>
  <th>virtual server</th><th>quorum</th><th>real server</th><th>health</th><th>weight</th>
</tr></thead><tbody></tbody></table>

<h2>Last transitions</h2>
<table id="transitions"><thead><tr>
  <th>time</th><th>what</th><th>from</th><th>to</th><th>why</th>
</tr></thead><tbody></tbody></table>

<script>
"use strict";
const $ = (sel) => document.querySelector(sel);
function cell(text, cls) {
  const td = document.createElement("td");
  if (cls) {
    const span = document.createElement("span");
    span.className = "state " + cls;
    span.textContent = text;
    td.appendChild(span);
  } else {
    td.textContent = text === undefined || text === null ? "" : String(text);
  }
  return td;
}
function fill(id, rows) {
  const body = $("#" + id + " tbody");
  body.replaceChildren(...rows.map((cells) => {
    const tr = document.createElement("tr");
    cells.forEach((c) => tr.appendChild(c));
    return tr;
  }));
}
function when(ts) {
  return ts ? new Date(ts * 1000).toLocaleTimeString() : "";
}
function render(s) {
  $("#meta").firstChild.textContent =
    "pid " + s.pid + " · up " + Math.round(s.uptime) + " s · " +
    (s.config_files || []).join(", ") + " ";
  fill("instances", (s.vrrp_instances || []).map((i) => {
    const tr = [cell(i.name), cell(i.state, i.state), cell(i.priority),
      cell(i.effective_priority), cell((i.vips || []).join(" ")), cell(i.master),
      cell(when(i.last_transition)), cell(i.last_transition_reason)];
    tr[0].dataset.instance = i.name;
    tr[1].dataset.state = i.state;
    return tr;
  }));
  fill("trackers", (s.trackers || []).map((t) => [cell(t.name),
    cell(t.up ? "UP" : "DOWN", t.up ? "UP" : "DOWN"), cell(t.reason || t.detail)]));
  const rs = [];
  (s.virtual_servers || []).forEach((vs) => {
    const reals = vs.real_servers || [];
    if (!reals.length) rs.push([cell(vs.virtual_server),
      cell(vs.quorum_up ? "UP" : "DOWN", vs.quorum_up ? "UP" : "DOWN"), cell(""), cell(""), cell("")]);
    reals.forEach((r) => rs.push([cell(vs.virtual_server),
      cell(vs.quorum_up ? "UP" : "DOWN", vs.quorum_up ? "UP" : "DOWN"), cell(r.real_server),
      cell(r.alive ? "UP" : "DOWN", r.alive ? "UP" : "DOWN"), cell(r.weight)]));
  });
  fill("servers", rs);
  fill("transitions", (s.transitions || []).map((t) => [cell(when(t.time)),
    cell(t.kind + " " + t.name), cell(t.previous), cell(t.state, t.state), cell(t.detail)]));
}
function connect() {
  const token = new URLSearchParams(location.search).get("token");
  const src = new EventSource("events" + (token ? "?token=" + encodeURIComponent(token) : ""));
  src.addEventListener("status", (ev) => {
    $("#conn").textContent = "";
    $("#conn").className = "";
    render(JSON.parse(ev.data));
  });
  src.onerror = () => {
    $("#conn").textContent = "(connection lost, retrying)";
    $("#conn").className = "lost";
  };
}
connect();
</script>
</body>
</html>
"""
