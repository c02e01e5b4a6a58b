"use strict";
// Shared by every staff page: API calls with the CSRF token, messages, the device status bar.
const Studio = (() => {
  let messages = {};
  const holder = document.getElementById("i18n");
  try {
    messages = JSON.parse((holder && holder.dataset.messages) || "{}");
  } catch (error) {
    messages = {};
  }

  function t(id, values) {
    let text = messages[id] || id;
    for (const [key, value] of Object.entries(values || {})) {
      text = text.split("%(" + key + ")s").join(String(value));
    }
    return text;
  }

  function csrf() {
    const meta = document.querySelector('meta[name="csrf-token"]');
    return meta ? meta.content : "";
  }

  async function call(method, url, body, options) {
    const headers = { "X-CSRF-Token": csrf(), Accept: "application/json" };
    if (options && options.background) headers["X-Background"] = "1";
    let payload;
    if (body instanceof FormData) {
      payload = body;
    } else if (body !== undefined) {
      headers["Content-Type"] = "application/json";
      payload = JSON.stringify(body);
    }
    const response = await fetch(url, {
      method, headers, body: payload, credentials: "same-origin", cache: "no-store",
    });
    const type = response.headers.get("Content-Type") || "";
    const data = type.includes("application/json") ? await response.json() : null;
    if (response.status === 401) {
      const kiosk = window.location.pathname.startsWith("/kiosk");  // a revoked kiosk pairs again
      window.location.assign(kiosk ? "/kiosk/pair"
        : "/login?next=" + encodeURIComponent(window.location.pathname));
      throw new Error(t("Logged out"));
    }
    if (!response.ok) {
      const error = new Error((data && data.message) || response.statusText);
      error.status = response.status;
      throw error;
    }
    return data;
  }

  function say(text, kind) {
    const line = document.getElementById("message");
    if (!line) return;
    line.textContent = text || "";
    line.className = "message " + (kind || "");
  }

  function show(id, visible) {
    const element = document.getElementById(id);
    if (element) element.hidden = !visible;
  }

  function setText(id, text) {
    const element = document.getElementById(id);
    if (element) element.textContent = text;
  }

  function printerText(printer) {
    if (!printer.configured) return t("none");
    if (printer.error) return t("not answering");
    const queue = printer.queue || {};
    const jobs = Array.isArray(queue.jobs) ? queue.jobs.length : queue.jobs;
    let state = queue.state || t("ready");
    if (queue.paused || queue.accepting === false) state = queue.reason || t("paused");
    return jobs ? state + ", " + t("%(jobs)s jobs waiting", { jobs }) : state;
  }

  async function statusBar() {
    const bar = document.getElementById("status-bar");
    if (!bar) return;
    try {
      const status = await call("GET", bar.dataset.url, undefined, { background: true });
      const camera = status.camera;
      let cameraText = t(camera.configured ? "ready" : "none");
      if (camera.state && camera.state.status && camera.state.status !== "ready") {
        cameraText = camera.state.reason || t("not answering");
      }
      setText("st-camera", t("Camera") + ": " + cameraText);
      setText("st-printer", t("Printer") + ": " + printerText(status.printer));
      const mib = (status.workspace.used_bytes / 1048576).toFixed(1);
      setText("st-workspace", t("Workspace") + ": " + t("%(mib)s MiB in use", { mib }));
      const queue = status.printer.queue || {};
      const stuck = Boolean(queue.paused || queue.accepting === false);
      show("resume-printer", status.printer.configured && stuck);
      bar.classList.toggle("trouble", Boolean(status.printer.error) || stuck);
    } catch (error) {
      bar.classList.add("trouble");
    }
    window.setTimeout(statusBar, 5000);
  }

  document.addEventListener("DOMContentLoaded", statusBar);
  return { call, t, say, show, setText };
})();
