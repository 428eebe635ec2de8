/* Fleet dashboard: renders the embedded snapshot, then polls /dashboard.json and re-renders. */
"use strict";

(() => {
  const root = document.getElementById("dashboard");
  if (!root) return;
  const { el, mib, bytes, timeLeft, ago, badge } = tt;
  const source = root.dataset.source;
  const interval = Number(root.dataset.interval) || 2000;

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
        el("td", { text: ago(h.last_seen) }));
    });
    document.getElementById("hosts").replaceChildren(...(hosts.length ? hosts
      : [el("tr", {}, el("td", { colspan: 9, class: "muted", text: "No hosts registered (POST /api/hosts)." }))]));

    const envs = data.envs.map((e) => el("tr", { dataset: { env: e.id, state: e.state } },
      el("td", { text: e.id }), el("td", { text: e.owner || "–" }), el("td", {}, badge(e.state)),
      el("td", { text: e.vm_count }), el("td", { text: timeLeft(e.expires_at, data.now, receivedAt) })));
    document.getElementById("envs").replaceChildren(...(envs.length ? envs
      : [el("tr", {}, el("td", { colspan: 5, class: "muted", text: "No environments." }))]));

    const images = data.images.map((i) => el("tr", {},
      el("td", { text: i.name }), el("td", { text: [i.kind, i.format].filter(Boolean).join(" / ") || "–" }),
      el("td", { text: i.engines.join(", ") || "–" }), el("td", { text: i.size ? bytes(i.size) : "–" }),
      el("td", { text: i.hosts.join(", ") })));
    document.getElementById("images").replaceChildren(...(images.length ? images
      : [el("tr", {}, el("td", { colspan: 5, class: "muted", text: "No images reported." }))]));
  }

  function live(ok) {
    document.getElementById("live-dot").classList.toggle("off", !ok);
    document.getElementById("live-text").textContent = ok ? `live · updated ${new Date().toLocaleTimeString()}` : "reconnecting…";
  }

  let last = tt.jsonData("dashboard-data"), lastAt = Date.now();
  render(last, lastAt);

  async function tick() {
    try {
      const reply = await fetch(source, { headers: { Accept: "application/json" }, cache: "no-store" });
      if (!reply.ok) throw new Error(String(reply.status));
      last = await reply.json();
      lastAt = Date.now();
      render(last, lastAt);
      live(true);
    } catch (e) {
      live(false);
    }
    setTimeout(tick, document.hidden ? interval * 5 : interval);
  }
  setTimeout(tick, interval);
})();
