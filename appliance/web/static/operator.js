"use strict";
// The operator's flow: new customer -> consent -> photo -> document -> result -> deliver -> finish.
(() => {
  const root = document.getElementById("operator");
  if (!root) return;
  const { call, t, say, show, setText } = Studio;
  const api = root.dataset.api; // .../api/v1/sessions
  const jobsApi = api.replace(/sessions$/, "print-jobs");
  const $ = (id) => document.getElementById(id);
  const live = ["capturing", "reviewing", "delivering"];
  const current = { session: root.dataset.session || null, state: null, photo: null, product: null };

  function preview(on) {
    const image = $("live");
    if (!image || !root.dataset.preview) return;
    if (on && !image.getAttribute("src")) image.src = root.dataset.preview;
    if (!on && image.getAttribute("src")) image.removeAttribute("src");
    image.hidden = !on;
  }

  function render() {
    const state = current.session ? current.state : null;
    setText("session-line", state
      ? t("Customer %(id)s: %(state)s", { id: current.session.slice(0, 6), state: t(state) })
      : t("No customer session."));
    const working = live.includes(state);
    show("step-consent", state === "started" || state === "consented");
    show("step-photo", working);
    show("step-product", working && Boolean(current.photo));
    show("step-result", working && Boolean(current.product));
    show("step-deliver", working && Boolean(current.product));
    show("step-finish", Boolean(state));
    preview(working && !current.product);
  }

  function reset() {
    Object.assign(current, { session: null, state: null, photo: null, product: null });
    show("qr-box", false);
    show("confirm-finish", false);
    setText("print-line", "");
    render();
  }

  async function refresh(background) {
    if (!current.session) return render();
    try {
      const session = await call("GET", api + "/" + current.session, undefined, { background });
      current.state = session.state;
      if (!current.photo && session.photos.length) current.photo = session.photos.at(-1);
      if (!current.product && session.products.length) {
        current.product = session.products.at(-1).id;
        const found = await call("GET", productUrl(""), undefined, { background });
        showResult(found.report);
      }
      render();
    } catch (error) {
      if (error.status === 404) reset();
      else say(error.message, "error");
    }
  }

  function productUrl(tail) {
    return api + "/" + current.session + "/products/" + current.product + tail;
  }

  function showResult(report) {
    $("result-preview").src = productUrl("/preview") + "?v=" + Date.now();
    const list = $("checks");
    list.replaceChildren();
    for (const check of (report && report.checks) || []) {
      const item = document.createElement("li");
      item.className = "check " + check.status;
      const verdict = document.createElement("strong");
      verdict.textContent = t(check.status);
      const text = document.createElement("span");
      // The template and its values when the check has them (translated), else the text.
      text.textContent = " " + (check.text ? t(check.text, check.values) : check.message);
      item.append(verdict, text);
      if (check.advice) {
        // What to do about it, in the page's language; the preview marks where it is.
        const advice = document.createElement("em");
        advice.className = "advice";
        advice.textContent = " → " + t(check.advice);
        item.append(advice);
      }
      list.append(item);
    }
  }

  async function act(busyText, work) {
    say(busyText, "busy");
    document.body.classList.add("busy");
    try {
      await work();
    } catch (error) {
      say(error.message, "error");
    } finally {
      document.body.classList.remove("busy");
      render();
    }
  }

  $("new-session").addEventListener("click", () => act("", async () => {
    reset();
    const desk = $("desk").value;
    // Remembered for the next visit: which desk's customer screen this operator drives.
    document.cookie = "studio-desk=" + encodeURIComponent(desk) + "; path=/; Secure; SameSite=Strict";
    const created = await call("POST", api, { desk });
    Object.assign(current, { session: created.id, state: created.state });
    say("");
  }));

  $("consent").addEventListener("click", () => act("", async () => {
    const result = await call("POST", api + "/" + current.session + "/consent");
    current.state = result.state;
    say("");
  }));

  async function gotPhoto(result) {
    Object.assign(current, { photo: result.photo_id, product: null, state: "capturing" });
    show("qr-box", false);
    say(t("Photo received. Choose the document."), "ok");
  }

  $("upload").addEventListener("change", (event) => act(t("Uploading…"), async () => {
    const file = event.target.files[0];
    if (!file) return;
    const form = new FormData();
    form.append("photo", file);
    event.target.value = "";
    await gotPhoto(await call("POST", api + "/" + current.session + "/photos", form));
  }));

  const captureButton = $("capture");
  if (captureButton) {
    captureButton.addEventListener("click", () => act(t("Taking the photo…"), async () => {
      await gotPhoto(await call("POST", api + "/" + current.session + "/capture"));
    }));
  }

  $("make").addEventListener("click", () => act(t("Making the photo…"), async () => {
    const body = {
      spec: $("spec").value || null,
      background: $("background").value || null,
      sheet: $("paper").value || null,
      portrait: $("portrait").value || null,
      religious_covering: $("religious-covering").checked,
    };
    const url = api + "/" + current.session + "/photos/" + current.photo + "/products";
    const made = await call("POST", url, body);
    current.product = made.product_id;
    current.state = "reviewing";
    show("qr-box", false);
    showResult(made.report);
    say(t("Done. Check the result."), "ok");
  }));

  async function followJob(jobId, tries) {
    try {
      const job = await call("GET", jobsApi + "/" + encodeURIComponent(jobId), undefined,
        { background: true });
      const state = typeof job.status === "string" ? job.status
        : (job.status && (job.status.state || JSON.stringify(job.status))) || "?";
      setText("print-line", t("Print job %(id)s: %(state)s", { id: jobId, state }));
      if (tries > 0 && !/complete|done|printed|cancel|abort|fail/i.test(state)) {
        window.setTimeout(() => followJob(jobId, tries - 1), 2000);
      }
    } catch (error) {
      setText("print-line", error.message);
    }
  }

  const printButton = $("print");
  if (printButton) {
    printButton.addEventListener("click", () => act(t("Sending to the printer…"), async () => {
      const copies = parseInt($("copies").value, 10) || 1;
      const body = { product_id: current.product, copies };
      const job = await call("POST", api + "/" + current.session + "/print", body);
      current.state = "delivering";
      say("");
      await followJob(job.job_id, 30);
    }));
  }

  $("link").addEventListener("click", () => act("", async () => {
    const body = { product_id: current.product };
    const link = await call("POST", api + "/" + current.session + "/download-link", body);
    current.state = "delivering";
    $("qr").src = "data:image/svg+xml;base64," + window.btoa(link.qr_svg);
    setText("link-url", link.url);
    show("qr-box", true);
    say(t("Scan with the customer's phone."), "ok");
  }));

  $("finish").addEventListener("click", () => show("confirm-finish", true));
  $("finish-no").addEventListener("click", () => show("confirm-finish", false));
  $("finish-yes").addEventListener("click", () => act("", async () => {
    const result = await call("POST", api + "/" + current.session + "/finish", {});
    reset();
    say(result.state === "wiped"
      ? t("Finished: every photo of this customer is wiped.")
      : t("Finished. The customer's link works until it is used or expires; then everything is wiped."), "ok");
  }));

  // The customer may agree on the customer screen: follow the state while waiting for it.
  window.setInterval(() => {
    if (current.session && (current.state === "started" || current.state === "consented")) {
      refresh(true);
    }
  }, 2000);
  refresh(false);
})();
