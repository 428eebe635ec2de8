/* de taartenfabriek page: VM inventory (cards or table, remembered), actions, pull/create, settings,
   active operations and a log view that follows a task over ws://…/ws/tasks/<id>. The page holds no token:
   it calls the API with the session cookie its one-time sign-in link gave it, and the CSRF token. */
"use strict";

(() => {
  const root = document.getElementById("localvm");
  if (!root) return;
  const { el, badge } = tt;
  const csrf = root.dataset.csrf;  // present only for a browser signed in through a login link
  const headers = { "X-CSRFToken": csrf };
  const api = (method, url, body) => tt.api(method, url, body, headers);
  const VIEW_KEY = "ttstack.localvm.view";
  let view = localStorage.getItem(VIEW_KEY) === "table" ? "table" : "cards";
  let summary = { base_images: [], working_vms: [] };
  let following = null;
  const configs = new Map();  // name -> normalised `tart get` (cpu, memory, disk_size), asked once per page

  function withConfig(vm) {
    const c = configs.get(vm.name);
    if (!c || typeof c !== "object") return vm;
    return Object.assign({}, vm, { cpu: vm.cpu ?? c.cpu, memory: vm.memory ?? c.memory, disk_size: c.disk_size ?? vm.disk_size });
  }

  function loadConfigs() {
    for (const vm of summary.working_vms) {  // `tart get` answers for local VMs only
      if (configs.has(vm.name) || (vm.cpu !== null && vm.cpu !== undefined && vm.memory)) continue;
      configs.set(vm.name, "loading");
      api("GET", `/api/vms/${encodeURIComponent(vm.name)}/config`)
        .then((c) => { configs.set(vm.name, c); renderList(); })
        .catch(() => configs.set(vm.name, null));
    }
  }

  function error(message) {
    const node = document.getElementById("page-error");
    node.hidden = !message;
    node.textContent = message || "";
  }

  /* ---------------------------------------------------------------- VM list */
  function facts(vm) {
    return [
      ["Status", badge(vm.status)],
      ["IP", vm.ip_address ? el("span", {}, vm.ip_address, " ", el("a", { href: `vnc://${vm.ip_address}`, class: "vnc", text: "vnc://" + vm.ip_address })) : "–"],
      ["CPU", vm.cpu ?? "–"],
      ["Memory", vm.memory ?? "–"],
      ["Disk", vm.disk_size !== null && vm.disk_size !== undefined ? String(vm.disk_size) : "–"],
      ["OS", vm.os || "–"],
      ["Source", vm.source || "–"],
    ];
  }

  function actions(vm, isBase) {
    const buttons = [];
    if (!isBase) {
      buttons.push(el("button", { type: "button", class: "act-start", text: "Start", disabled: vm.status === "running", onclick: () => action(vm.name, "start") }));
      buttons.push(el("button", { type: "button", class: "act-stop", text: "Stop", disabled: vm.status !== "running", onclick: () => action(vm.name, "stop") }));
    }
    buttons.push(el("button", { type: "button", class: "act-clone", text: "Clone", onclick: () => openClone(vm.name) }));
    if (isBase) buttons.push(el("button", { type: "button", class: "act-create", text: "Create VM", onclick: () => prefillCreate(vm.name) }));
    buttons.push(el("button", { type: "button", class: "danger act-delete", text: "Delete", onclick: () => action(vm.name, "delete") }));
    return el("div", { class: "vm-actions" }, ...buttons);
  }

  function cards(vms, isBase) {
    return el("div", { class: "cards" }, ...vms.map((vm) => el("article", { class: "vm-card", dataset: { vm: vm.name, status: vm.status } },
      el("h3", { text: vm.name }),
      el("dl", {}, ...facts(vm).flatMap(([k, v]) => [el("dt", { text: k }), el("dd", {}, v)])),
      actions(vm, isBase))));
  }

  function table(vms, isBase) {
    const head = ["Name", ...facts({}).map(([k]) => k), ""];
    return el("table", { class: "grid" },
      el("thead", {}, el("tr", {}, ...head.map((h) => el("th", { text: h })))),
      el("tbody", {}, ...vms.map((vm) => el("tr", { dataset: { vm: vm.name, status: vm.status } },
        el("td", { text: vm.name }), ...facts(vm).map(([, v]) => el("td", {}, v)), el("td", {}, actions(vm, isBase))))));
  }

  function renderList() {
    for (const [id, all, isBase] of [["working-vms", summary.working_vms, false], ["base-images", summary.base_images, true]]) {
      const vms = all.map(withConfig);
      const node = document.getElementById(id);
      node.replaceChildren(vms.length ? (view === "cards" ? cards(vms, isBase) : table(vms, isBase))
        : el("p", { class: "muted", text: isBase ? "No base images: pull one." : "No working VMs: clone or create one." }));
    }
    document.getElementById("view-cards").classList.toggle("on", view === "cards");
    document.getElementById("view-table").classList.toggle("on", view === "table");
    const select = document.getElementById("create-source");
    const chosen = select.value;
    select.replaceChildren(...[...summary.base_images, ...summary.working_vms].map((vm) => el("option", { value: vm.name, text: vm.name })));
    if (chosen) select.value = chosen;
  }

  async function loadList(refresh) {
    try {
      if (refresh) await api("POST", "/api/vms/refresh", {});
      summary = await api("GET", "/api/vms/categorized");
      renderList();
      loadConfigs();
      document.getElementById("list-status").textContent = `updated ${new Date().toLocaleTimeString()}`;
      error("");
    } catch (e) {
      error(`Cannot list VMs: ${e.message}`);
    }
  }

  function setView(next) {
    view = next;
    localStorage.setItem(VIEW_KEY, view);
    renderList();
  }

  /* ---------------------------------------------------------------- tasks */
  function showLog(task) {
    document.getElementById("log-title").textContent = `— ${task.action} ${task.target || ""}`;
    const status = document.getElementById("log-status");
    status.hidden = false;
    status.textContent = task.status;
    status.className = `badge state-${task.status}`;
    const lines = [...(task.logs || [])];
    if (task.error) lines.push(`error: ${task.error}`);
    if (task.stderr && task.status === "failed") lines.push(task.stderr);
    const node = document.getElementById("log-lines");
    const atBottom = node.scrollHeight - node.scrollTop - node.clientHeight < 20;
    node.textContent = lines.join("\n");
    if (atBottom) node.scrollTop = node.scrollHeight;
  }

  async function follow(taskId) {
    following = taskId;
    document.getElementById("log-lines").textContent = "";
    const final = await tt.followTask(taskId, {
      headers,
      onUpdate: (task) => { if (following === taskId) showLog(task); },
    });
    loadActive();
    await loadList(true);
    return final;
  }

  async function submitTask(promise) {
    try {
      const task = await promise;
      loadActive();
      follow(task.id);
      return task;
    } catch (e) {
      error(e.message);
      return null;
    }
  }

  function action(name, verb) {
    if (verb === "delete" && !window.confirm(`Delete ${name}?`)) return;
    submitTask(api("POST", `/api/vms/${encodeURIComponent(name)}/${verb}`, {}));
  }

  async function loadActive() {
    try {
      const tasks = await api("GET", "/api/tasks/active");
      const items = tasks.map((t) => el("li", { dataset: { task: t.id } },
        badge(t.status), `${t.action} ${t.target || ""} `,
        el("button", { type: "button", class: "copy view-log", text: "Log", onclick: () => follow(t.id) })));
      document.getElementById("active-ops").replaceChildren(...items);
      document.getElementById("no-ops").hidden = items.length > 0;
    } catch (e) { /* next round */ }
  }

  /* ---------------------------------------------------------------- clone / create / pull */
  const dialog = document.getElementById("clone-dialog");
  function openClone(name) {
    document.getElementById("clone-source").textContent = name;
    dialog.dataset.source = name;
    document.getElementById("clone-name").value = `${name.split("/").pop().split(":")[0]}-clone`;
    dialog.showModal();
  }
  dialog.addEventListener("close", () => {
    if (dialog.returnValue !== "clone") return;
    submitTask(api("POST", `/api/vms/${encodeURIComponent(dialog.dataset.source)}/clone`, {
      new_name: document.getElementById("clone-name").value.trim(),
      start_after_clone: document.getElementById("clone-start").checked,
    }));
  });

  function prefillCreate(name) {
    document.getElementById("create-source").value = name;
    document.getElementById("create-name").focus();
  }

  document.getElementById("create-form").addEventListener("submit", (event) => {
    event.preventDefault();
    submitTask(api("POST", "/api/vms/create", {
      name: document.getElementById("create-name").value.trim(),
      source_vm: document.getElementById("create-source").value,
      cpu: Number(document.getElementById("create-cpu").value),
      memory: Number(document.getElementById("create-memory").value),
      disk_size: Number(document.getElementById("create-disk").value),
    }));
  });

  document.getElementById("pull-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const url = document.getElementById("pull-url").value.trim() || document.getElementById("pull-catalogue").value;
    if (!url) { error("Choose an image from the catalogue or type an OCI URL."); return; }
    submitTask(api("POST", "/api/vms/pull", { oci_url: url }));
  });

  document.getElementById("load-catalogue").addEventListener("click", async () => {
    const status = document.getElementById("catalogue-status");
    status.textContent = "loading…";
    try {
      const images = await api("GET", "/api/vms/available-images");
      const select = document.getElementById("pull-catalogue");
      const options = [el("option", { value: "", text: `— ${images.length} images —` })];
      for (const image of images) {
        const base = image.url.replace(/:[^/:]+$/, "");
        const tags = image.tags && image.tags.length ? image.tags : ["latest"];
        for (const tag of tags) options.push(el("option", { value: `${base}:${tag}`, text: `${image.name}:${tag}` }));
      }
      select.replaceChildren(...options);
      status.textContent = "";
    } catch (e) {
      status.textContent = e.status === 422 ? "Set a GitHub token in Settings first." : e.message;
    }
  });

  /* ---------------------------------------------------------------- settings */
  async function loadSettings() {
    try {
      const s = await api("GET", "/api/settings/github-token");
      document.getElementById("github-token-status").textContent = s.configured ? `(set: ${s.masked_token})` : "(not set)";
    } catch (e) { /* shown by the list error */ }
  }
  async function saveToken(value) {
    try {
      await api("POST", "/api/settings/github-token", { token: value });
      document.getElementById("github-token").value = "";
      loadSettings();
    } catch (e) { error(e.message); }
  }
  document.getElementById("settings-form").addEventListener("submit", (event) => {
    event.preventDefault();
    saveToken(document.getElementById("github-token").value.trim());
  });
  document.getElementById("github-token-clear").addEventListener("click", () => saveToken(""));

  /* ---------------------------------------------------------------- start */
  document.getElementById("refresh").addEventListener("click", () => loadList(true));
  document.getElementById("view-cards").addEventListener("click", () => setView("cards"));
  document.getElementById("view-table").addEventListener("click", () => setView("table"));

  if (!csrf) { error("Not signed in: open the link `ttstack localvm` printed, on the Mac that runs it."); return; }
  api("GET", "/api/tart/version").then((v) => { document.getElementById("tart-version").textContent = `tart ${v.version}`; }).catch(() => {});
  loadList(true);
  loadActive();
  loadSettings();
  setInterval(loadActive, 2000);
  setInterval(() => loadList(false), 5000);
})();
