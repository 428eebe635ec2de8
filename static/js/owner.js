/* Owners' pages: their environments (live), the create form, task progress over /ws/tasks/<id>.
   Calls the controller's REST API with the session cookie and the CSRF token. */
"use strict";

(() => {
  const { el, api, badge, timeLeft, followTask } = tt;

  /* `ssh -p PORT root@HOST`: HOST is where the agent publishes ports (its publish_addr when it reports a
     specific one), else the agent's address without its port. */
  function sshLine(vm) {
    const port = vm.port_map && vm.port_map["22"];
    if (!port) return null;
    let host = vm.publish_addr && !["0.0.0.0", "::", "[::]"].includes(vm.publish_addr) ? vm.publish_addr : "";
    if (!host && vm.host_addr) {
      host = vm.host_addr.replace(/^[a-z]+:\/\//i, "").replace(/\/.*$/, "");
      host = host.replace(/:\d+$/, "");
    }
    host = host.replace(/^\[(.*)\]$/, "$1");
    return host ? `ssh -p ${port} root@${host}` : null;
  }

  function portsText(vm) {
    const map = vm.port_map || {};
    const keys = Object.keys(map);
    if (!keys.length) return (vm.ports || []).join(", ") || "–";
    return keys.map((k) => `${k}→${map[k]}`).join(", ");
  }

  /* ------------------------------------------------------------------ environments (list / detail) */
  const root = document.getElementById("owner-envs");
  if (root) {
    const mode = root.dataset.mode;
    const owner = root.dataset.owner;
    const base = root.dataset.api;
    const detailUrl = root.dataset.detail;
    let serverNow = root.dataset.now, receivedAt = Date.now();
    let envs = mode === "list" ? tt.jsonData("envs-data") : [tt.jsonData("env-data")];
    const listNode = document.getElementById("env-list");
    const emptyNode = document.getElementById("no-envs");
    let busy = false;

    const panel = document.getElementById("task-panel");
    function showTask(task) {
      panel.hidden = false;
      document.getElementById("task-id").textContent = `${task.action || ""} ${task.id}`;
      const status = document.getElementById("task-status");
      status.textContent = task.status;
      status.className = `badge state-${task.status}`;
      const lines = [...(task.logs || [])];
      if (task.error) lines.push(`error: ${task.error}`);
      const log = document.getElementById("task-log");
      log.textContent = lines.join("\n");
      log.scrollTop = log.scrollHeight;
    }

    async function follow(taskId) {
      const final = await followTask(taskId, {
        onUpdate: (task) => { showTask(task); refresh(); },
      });
      await refresh();
      return final;
    }

    async function act(env, verb) {
      if (verb === "delete" && !window.confirm(`Delete environment ${env.id} and all its VMs?`)) return;
      try {
        const reply = verb === "delete"
          ? await api("DELETE", `${base}/${encodeURIComponent(env.id)}`)
          : await api("POST", `${base}/${encodeURIComponent(env.id)}/${verb}`);
        if (reply && reply.task) follow(reply.task);
        else refresh();
      } catch (e) {
        showTask({ id: "", action: `${verb} ${env.id}`, status: "failed", logs: [], error: e.message });
      }
    }

    async function extend(env) {
      const hours = window.prompt(`Extend ${env.id}: expire how many hours from now?`, "6");
      if (hours === null) return;
      try {
        await api("POST", `${base}/${encodeURIComponent(env.id)}/extend`, { lifetime: Math.round(Number(hours) * 3600) });
        refresh();
      } catch (e) {
        showTask({ id: "", action: `extend ${env.id}`, status: "failed", logs: [], error: e.message });
      }
    }

    function vmRow(vm) {
      const ssh = sshLine(vm);
      return el("tr", { dataset: { vm: vm.id, state: vm.state } },
        el("td", { text: vm.id }),
        el("td", {}, badge(vm.state), vm.error ? el("div", { class: "muted small", text: vm.error }) : null),
        el("td", { text: vm.engine }),
        el("td", { text: vm.image }),
        el("td", { text: vm.host_addr || "–" }),
        el("td", { text: `${vm.cpu} vCPU · ${tt.mib(vm.mem)} · ${tt.mib(vm.disk)}` }),
        el("td", { text: portsText(vm) }),
        el("td", {}, ssh ? el("div", { class: "copyline" }, el("code", { class: "ssh", text: ssh }),
          el("button", { type: "button", class: "copy", text: "Copy" })) : el("span", { class: "muted", text: "–" })));
    }

    function envCard(env) {
      const title = mode === "list"
        ? el("a", { href: detailUrl + encodeURIComponent(env.id), text: env.id })
        : el("span", { text: env.id });
      const canPower = ["active", "stopped"].includes(env.state);
      return el("section", { class: "card env", dataset: { env: env.id, state: env.state } },
        el("div", { class: "env-head" },
          el("h2", {}, title, " ", badge(env.state)),
          el("span", { class: "muted timeleft", dataset: { expires: env.expires_at || "" },
            text: `time left: ${timeLeft(env.expires_at, serverNow, receivedAt)}` }),
          el("div", { class: "actions" },
            el("button", { type: "button", class: "act-stop", disabled: !canPower || env.state === "stopped", text: "Stop",
              onclick: () => act(env, "stop") }),
            el("button", { type: "button", class: "act-start", disabled: !canPower || env.state === "active", text: "Start",
              onclick: () => act(env, "start") }),
            el("button", { type: "button", class: "act-extend", disabled: env.state === "deleting", text: "Extend",
              onclick: () => extend(env) }),
            el("button", { type: "button", class: "danger act-delete", disabled: env.state === "deleting", text: "Delete",
              onclick: () => act(env, "delete") }))),
        env.error ? el("p", { class: "error", text: env.error }) : null,
        el("table", { class: "grid" },
          el("thead", {}, el("tr", {}, ...["VM", "State", "Engine", "Image", "Host", "Size", "Ports", "SSH"].map((h) => el("th", { text: h })))),
          el("tbody", {}, ...(env.vms || []).map(vmRow))));
    }

    function render() {
      listNode.replaceChildren(...envs.map(envCard));
      emptyNode.hidden = envs.length > 0;
    }

    async function refresh() {
      if (busy) return;
      busy = true;
      try {
        if (mode === "list") {
          envs = await api("GET", `${base}?owner=${encodeURIComponent(owner)}`);
        } else {
          try {
            envs = [await api("GET", `${base}/${encodeURIComponent(root.dataset.env)}`)];
          } catch (e) {
            if (e.status !== 404) throw e;
            envs = [];
          }
        }
        serverNow = new Date().toISOString();
        receivedAt = Date.now();
        render();
      } catch (e) {
        /* keep the last view; the next round tries again */
      } finally {
        busy = false;
      }
    }

    render();
    setInterval(refresh, 3000);
    /* the countdown ticks every second between two reads */
    setInterval(() => listNode.querySelectorAll(".timeleft").forEach((node) => {
      node.textContent = `time left: ${timeLeft(node.dataset.expires || null, serverNow, receivedAt)}`;
    }), 1000);
    if (root.dataset.task) follow(root.dataset.task);
  }

  /* ------------------------------------------------------------------ create form */
  const form = document.getElementById("env-form");
  if (form) {
    const value = (name) => form.elements[name].value.trim();
    const number = (name) => Number(value(name));
    const errorFor = (name) => form.querySelector(`[data-error-for="${name}"]`);
    const formError = document.getElementById("form-error");

    function showErrors(err) {
      formError.hidden = false;
      formError.textContent = err.message;
      const errors = (err.data && err.data.errors) || {};
      for (const [key, messages] of Object.entries(errors)) {
        if (key === "vms" && messages && typeof messages === "object") {
          /* per VM: {"0": {"cpu": [...]}} (or a list of messages for the list itself) */
          for (const vmErrors of Object.values(messages)) {
            if (vmErrors && typeof vmErrors === "object" && !Array.isArray(vmErrors)) {
              for (const [field, m] of Object.entries(vmErrors)) {
                const node = errorFor(field);
                if (node) node.textContent = [].concat(m).join(" ");
              }
            }
          }
        } else {
          const node = errorFor(key);
          if (node) node.textContent = typeof messages === "string" ? messages : JSON.stringify(messages);
        }
      }
    }

    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      form.querySelectorAll("[data-error-for]").forEach((n) => { n.textContent = ""; });
      formError.hidden = true;
      const ports = value("ports").split(/[\s,]+/).filter(Boolean).map(Number);
      const vm = { image: value("image"), engine: value("engine"), cpu: number("cpu"), mem: number("mem"),
        disk: number("disk"), ports, deny_outgoing: form.elements.deny_outgoing.checked };
      const count = Math.max(1, number("count") || 1);
      const body = {
        id: value("id"),
        ssh_keys: form.elements.ssh_keys.value.split("\n").map((k) => k.trim()).filter(Boolean),
        vms: Array.from({ length: count }, () => Object.assign({}, vm)),
        lifetime: Math.round(Number(value("lifetime")) * 3600),
        isolated_network: form.elements.isolated_network.checked,
      };
      const button = document.getElementById("create-env");
      button.disabled = true;
      try {
        const reply = await api("POST", form.dataset.api, body);
        window.location.assign(`${form.dataset.detail}${encodeURIComponent(reply.id)}?task=${encodeURIComponent(reply.task)}`);
      } catch (err) {
        showErrors(err);
        button.disabled = false;
      }
    });
  }
})();
