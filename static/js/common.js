/* Shared helpers of the ttstack pages. No framework, no innerHTML with data: every value goes in as text. */
"use strict";

const tt = (() => {
  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(attrs || {})) {
      if (value === null || value === undefined || value === false) continue;
      if (key === "class") node.className = value;
      else if (key === "text") node.textContent = value;
      else if (key.startsWith("on") && typeof value === "function") node.addEventListener(key.slice(2), value);
      else if (key === "dataset") Object.assign(node.dataset, value);
      else node.setAttribute(key, value === true ? "" : String(value));
    }
    for (const child of children.flat()) {
      if (child === null || child === undefined || child === false) continue;
      node.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return node;
  }

  function jsonData(id) {
    const node = document.getElementById(id);
    return node ? JSON.parse(node.textContent) : null;
  }

  function cookie(name) {
    for (const part of document.cookie.split(";")) {
      const [key, ...rest] = part.trim().split("=");
      if (key === name) return decodeURIComponent(rest.join("="));
    }
    return "";
  }

  /* MiB -> human text */
  function mib(value) {
    const n = Number(value) || 0;
    if (n >= 1024 * 1024) return (n / 1024 / 1024).toFixed(1) + " TiB";
    if (n >= 1024) return (n / 1024).toFixed(1) + " GiB";
    return n + " MiB";
  }

  function bytes(value) {
    const n = Number(value) || 0;
    const units = ["B", "KB", "MB", "GB", "TB"];
    let i = 0, v = n;
    while (v >= 1000 && i < units.length - 1) { v /= 1000; i += 1; }
    return (i ? v.toFixed(1) : v) + " " + units[i];
  }

  function duration(seconds) {
    if (seconds <= 0) return "expired";
    const d = Math.floor(seconds / 86400), h = Math.floor((seconds % 86400) / 3600);
    const m = Math.floor((seconds % 3600) / 60), s = Math.floor(seconds % 60);
    if (d) return `${d}d ${h}h`;
    if (h) return `${h}h ${m}m`;
    if (m) return `${m}m ${s}s`;
    return `${s}s`;
  }

  /* Time left until `expiresAt` (ISO) given the server's `now` (ISO) and when we received it. */
  function timeLeft(expiresAt, serverNow, receivedAt) {
    if (!expiresAt) return "never expires";
    const skew = Date.now() - (receivedAt || Date.now());
    const left = (Date.parse(expiresAt) - Date.parse(serverNow) - skew) / 1000;
    return duration(left);
  }

  function ago(iso) {
    if (!iso) return "never";
    const s = Math.max(0, (Date.now() - Date.parse(iso)) / 1000);
    return s < 90 ? `${Math.round(s)}s ago` : duration(s) + " ago";
  }

  function badge(state) {
    return el("span", { class: `badge state-${String(state || "unknown").replace(/[^a-z]/g, "")}`, text: state || "unknown" });
  }

  async function api(method, url, body, headers) {
    const opts = { method, headers: Object.assign({ Accept: "application/json" }, headers || {}), credentials: "same-origin" };
    if (method !== "GET" && !opts.headers["X-CSRFToken"]) opts.headers["X-CSRFToken"] = cookie("csrftoken");
    if (body !== undefined) {
      opts.headers["Content-Type"] = "application/json";
      opts.body = JSON.stringify(body);
    }
    const reply = await fetch(url, opts);
    let data = null;
    try { data = await reply.json(); } catch (e) { data = null; }
    if (!reply.ok) {
      const err = new Error((data && data.detail) || `${reply.status} ${reply.statusText}`);
      err.status = reply.status;
      err.data = data;
      throw err;
    }
    return data;
  }

  /* Follow a task over /ws/tasks/<id> (token: optional ?token=); falls back to polling pollUrl.
     onUpdate(task) for every state; resolves with the final task. */
  function followTask(taskId, { token, pollUrl, headers, onUpdate } = {}) {
    return new Promise((resolve) => {
      let done = false, last = null;
      const finish = (task) => { if (!done) { done = true; resolve(task); } };
      const handle = (task) => {
        if (!task || !task.id) return;
        last = task;
        if (onUpdate) onUpdate(task);
        if (task.status === "completed" || task.status === "failed") finish(task);
      };
      const poll = async () => {
        while (!done) {
          try { handle(await api("GET", pollUrl || `/api/tasks/${taskId}`, undefined, headers)); }
          catch (e) { if (e.status === 404) { finish(last); return; } }
          await new Promise((r) => setTimeout(r, 1000));
        }
      };
      let url = `${location.protocol === "https:" ? "wss" : "ws"}://${location.host}/ws/tasks/${encodeURIComponent(taskId)}`;
      if (token) url += `?token=${encodeURIComponent(token)}`;
      let socket;
      try { socket = new WebSocket(url); } catch (e) { poll(); return; }
      socket.addEventListener("message", (event) => {
        try { handle(JSON.parse(event.data)); } catch (e) { /* not a task */ }
      });
      socket.addEventListener("close", () => { if (!done) poll(); });
    });
  }

  function setupCopyButtons(root) {
    (root || document).addEventListener("click", async (event) => {
      const button = event.target.closest("button.copy");
      if (!button) return;
      const target = button.dataset.copy ? document.getElementById(button.dataset.copy) : button.previousElementSibling;
      const text = target ? target.textContent : "";
      try {
        await navigator.clipboard.writeText(text);
        button.textContent = "Copied";
      } catch (e) {
        const range = document.createRange();
        range.selectNodeContents(target);
        const sel = window.getSelection();
        sel.removeAllRanges();
        sel.addRange(range);
        button.textContent = "Selected";
      }
      setTimeout(() => { button.textContent = "Copy"; }, 1500);
    });
  }

  return { el, jsonData, cookie, mib, bytes, duration, timeLeft, ago, badge, api, followTask, setupCopyButtons };
})();

document.addEventListener("DOMContentLoaded", () => tt.setupCopyButtons(document));
