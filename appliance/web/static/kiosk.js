"use strict";
// The customer screen (a paired kiosk): consent, countdown and capture, the result, the
// download QR code, and "Delete my photos now". Every call acts on this kiosk's own desk.
(() => {
  const root = document.getElementById("kiosk");
  if (!root) return;
  const { call, t, say, show, setText } = Studio;
  const screens = ["k-idle", "k-consent", "k-capture", "k-result", "k-qr", "k-deleted"];
  let view = { session: null, state: null };
  let shooting = false;
  let deletedAt = 0;

  function screenFor(data) {
    if (!data.session) return Date.now() - deletedAt < 8000 ? "k-deleted" : "k-idle";
    const state = data.session.state;
    if (data.qr) return "k-qr";
    if (state === "started" || state === "consented") return "k-consent";
    if (state === "capturing" && !data.preview_url) return "k-capture";
    if (data.preview_url) return "k-result";
    return "k-idle";
  }

  function showScreen(id) {
    for (const screen of screens) show(screen, screen === id);
    show("k-delete-box", Boolean(view.session));
    if (!view.session) show("k-confirm", false);
  }

  async function poll() {
    try {
      const data = await call("GET", root.dataset.state, undefined, { background: true });
      view = { session: data.session && data.session.id, state: data.session && data.session.state };
      if (!shooting) showScreen(screenFor(data));
      const preview = document.getElementById("k-preview");
      if (data.preview_url && preview.dataset.src !== data.preview_url) {
        preview.dataset.src = data.preview_url;
        preview.src = data.preview_url;
      }
      const qr = document.getElementById("k-qr-img");
      if (data.qr && qr.getAttribute("src") !== data.qr) qr.src = data.qr;
    } catch (error) {
      if (error.status === 401) window.location.assign("/kiosk/pair");
      say(error.message, "error");
    }
    window.setTimeout(poll, 1500);
  }

  document.getElementById("k-agree").addEventListener("click", async () => {
    if (!view.session) return;
    try {
      await call("POST", root.dataset.consent);
      showScreen("k-capture");
    } catch (error) {
      say(error.message, "error");
    }
  });

  document.getElementById("k-delete").addEventListener("click", () => show("k-confirm", true));
  document.getElementById("k-delete-no").addEventListener("click", () => show("k-confirm", false));
  document.getElementById("k-delete-yes").addEventListener("click", async () => {
    try {
      await call("POST", root.dataset.delete);
      deletedAt = Date.now();
      view = { session: null, state: null };
      const preview = document.getElementById("k-preview");
      preview.removeAttribute("src");
      delete preview.dataset.src;
      document.getElementById("k-qr-img").removeAttribute("src");
      showScreen("k-deleted");
    } catch (error) {
      say(error.message, "error");
    }
  });

  const shoot = document.getElementById("k-shoot");
  if (shoot) {
    shoot.addEventListener("click", () => {
      if (!view.session || shooting) return;
      shooting = true;
      shoot.hidden = true;
      let left = parseInt(root.dataset.countdown, 10) || 0;
      const tick = async () => {
        if (left > 0) {
          setText("k-count", String(left));
          left -= 1;
          window.setTimeout(tick, 1000);
          return;
        }
        setText("k-count", "");
        try {
          await call("POST", root.dataset.capture);
          setText("k-note", t("Photo taken. The photographer checks it now."));
        } catch (error) {
          say(error.message, "error");
        }
        shoot.hidden = false;
        shooting = false;
      };
      tick();
    });
  }

  poll();
})();
