/* Fleet dashboard: renders the embedded snapshot, then re-reads /dashboard.json whenever /ws/dashboard says
   an event was recorded (within a second of a change), and every few seconds as a fallback (every
   data-interval ms while the stream is down). A staff user signed in gets actions on hosts and envs: each
   goes through the REST API with the session, and is recorded as an event like any other request. */
"use strict";

(() => {
  const root = document.getElementById("dashboard");
  if (!root) return;
  const { el, mib, bytes, timeLeft, ago, badge } = tt;
  const source = root.dataset.source;
  const interval = Number(root.dataset.interval) || 2000;
  const staff = root.dataset.staff === "true";
  const STREAM_FALLBACK = 10000; /* polling while the stream is up: only a safety net */
  let streaming = false;

  function say(text, isError) {
    const node = document.getElementById("staff-message");
    if (!node) return;
    node.hidden = false;
    node.textContent = text;
    node.className = isError ? "error" : "muted";
  }

  async function act(label, method, url, body) {
    try {
      await tt.api(method, url, body);
      say(`${label}: done`, false);
    } catch (e) {
      say(`${label}: ${e.message}`, true);
    }
    tick();
  }

  function button(cls, text, onclick, disabled) {
    return el("button", { type: "button", class: cls, text, onclick, disabled: !!disabled });
  }

  function hostActions(h) {
    const url = `/api/hosts/${h.id}`;
    return el("td", { class: "actions" },
      h.drain ? button("act-undrain", "Undrain", () => act(`undrain ${h.addr}`, "PATCH", url, { drain: false }))
        : button("act-drain", "Drain", () => act(`drain ${h.addr}`, "PATCH", url, { drain: true })),
      button("act-detach danger", "Detach", () => {
        if (window.confirm(`Detach host ${h.addr}?`)) act(`detach ${h.addr}`, "POST", `${url}/detach`);
      }));
  }

  function envActions(e) {
    const url = `/api/envs/${encodeURIComponent(e.id)}`;
    const extend = () => {
      const base = Math.max(Date.parse(e.expires_at), Date.now());
      act(`extend ${e.id}`, "POST", `${url}/extend`, { expires_at: new Date(base + 3600 * 1000).toISOString() });
    };
    return el("td", { class: "actions" },
      button("act-extend", "+1h", extend, !e.expires_at || e.state === "deleting"),
      button("act-stop", "Stop", () => act(`stop ${e.id}`, "POST", `${url}/stop`), e.state !== "active"),
      button("act-delete danger", "Delete", () => {
        if (window.confirm(`Delete environment ${e.id} and all its VMs?`)) act(`delete ${e.id}`, "DELETE", url);
      }, e.state === "deleting"));
  }

  function bar(id, used, total, fmt) {
    const pct = total > 0 ? Math.min(100, (used / total) * 100) : 0;
    const fill = document.getElementById(id);
    fill.style.width = pct.toFixed(1) + "%";
    fill.classList.toggle("high", pct >= 85);
    document.getElementById(id + "-text").textContent = `${fmt(used)} / ${fmt(total)} (${pct.toFixed(0)}%)`;
  }

  function usage(used, total, fmt) {
    return `${fmt(used)} / ${fmt(total)}`;
  }

  function render(data, receivedAt) {
    const s = data.status;
    document.getElementById("stat-hosts").textContent = `${s.hosts_online} / ${s.hosts}`;
    document.getElementById("stat-envs").textContent = s.total_envs;
    document.getElementById("stat-vms").textContent = s.total_vms;
    bar("bar-cpu", s.cpu_used, s.cpu_total, (n) => `${n}`);
    bar("bar-mem", s.mem_used, s.mem_total, mib);
    bar("bar-disk", s.disk_used, s.disk_total, mib);

    const hosts = data.hosts.map((h) => {
      const r = h.resources;
      const engines = h.engines.length ? h.engines.join(", ") : "none";
      return el("tr", { dataset: { host: h.addr, state: h.state } },
        el("td", {}, el("strong", { text: h.addr }), h.hostname ? el("div", { class: "muted", text: h.hostname }) : null),
        el("td", {}, badge(h.state), h.drain ? el("span", { class: "badge state-draining", text: "draining" }) : null,
          h.error && h.state !== "online" ? el("div", { class: "muted small", text: h.error }) : null),
        el("td", { text: engines }),
        el("td", { text: h.storage || "–" }),
        el("td", { text: usage(Math.max(r.cpu_used, h.reserved.cpu), r.cpu_total, String) }),
        el("td", { text: usage(Math.max(r.mem_used, h.reserved.mem), r.mem_total, mib) }),
        el("td", { text: usage(Math.max(r.disk_used, h.reserved.disk), r.disk_total, mib) }),
        el("td", { text: h.vms }),
        el("td", { text: ago(h.last_seen) }),
        staff ? hostActions(h) : null);
    });
    document.getElementById("hosts").replaceChildren(...(hosts.length ? hosts
      : [el("tr", {}, el("td", { colspan: staff ? 10 : 9, class: "muted", text: "No hosts registered (POST /api/hosts)." }))]));

    const envs = data.envs.map((e) => el("tr", { dataset: { env: e.id, state: e.state } },
      el("td", { text: e.id }), el("td", { text: e.owner || "–" }), el("td", {}, badge(e.state)),
      el("td", { text: e.vm_count }), el("td", { text: timeLeft(e.expires_at, data.now, receivedAt) }),
      staff ? envActions(e) : null));
    document.getElementById("envs").replaceChildren(...(envs.length ? envs
      : [el("tr", {}, el("td", { colspan: staff ? 6 : 5, class: "muted", text: "No environments." }))]));

    const images = data.images.map((i) => el("tr", {},
      el("td", { text: i.name }), el("td", { text: [i.kind, i.format].filter(Boolean).join(" / ") || "–" }),
      el("td", { text: i.engines.join(", ") || "–" }), el("td", { text: i.size ? bytes(i.size) : "–" }),
      el("td", { text: i.hosts.join(", ") })));
    document.getElementById("images").replaceChildren(...(images.length ? images
      : [el("tr", {}, el("td", { colspan: 5, class: "muted", text: "No images reported." }))]));
  }

  function live(ok) {
    document.getElementById("live-dot").classList.toggle("off", !ok);
    document.getElementById("live-text").textContent = ok
      ? `live${streaming ? "" : " (polling)"} · updated ${new Date().toLocaleTimeString()}` : "reconnecting…";
  }

  let last = tt.jsonData("dashboard-data"), lastAt = Date.now();
  render(last, lastAt);

  let timer = null, fetching = false, again = false;
  async function tick() {
    clearTimeout(timer);
    if (fetching) { again = true; return; } /* one read at a time; one more after it */
    fetching = true;
    try {
      const reply = await fetch(source, { headers: { Accept: "application/json" }, cache: "no-store" });
      if (!reply.ok) throw new Error(String(reply.status));
      last = await reply.json();
      lastAt = Date.now();
      render(last, lastAt);
      live(true);
    } catch (e) {
      live(false);
    } finally {
      fetching = false;
    }
    if (again) { again = false; tick(); return; }
    const every = streaming ? STREAM_FALLBACK : interval;
    timer = setTimeout(tick, document.hidden ? every * 5 : every);
  }
  timer = setTimeout(tick, interval);

  function stream() {
    let socket;
    try {
      socket = new WebSocket(`${location.protocol === "https:" ? "wss" : "ws"}://${location.host}/ws/dashboard`);
    } catch (e) {
      return;
    }
    socket.addEventListener("open", () => { streaming = true; tick(); });
    socket.addEventListener("message", () => tick());
    socket.addEventListener("close", () => {
      streaming = false;
      setTimeout(stream, 3000);
    });
  }
  stream();
})();
