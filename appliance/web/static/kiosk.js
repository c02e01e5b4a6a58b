"use strict";
// The customer screen: consent, countdown and capture, the result, the download QR code.
(() => {
  const root = document.getElementById("kiosk");
  if (!root) return;
  const { call, t, say, show, setText } = Studio;
  const api = root.dataset.api;
  const screens = ["k-idle", "k-consent", "k-capture", "k-result", "k-qr"];
  let view = { session: null, state: null };
  let shooting = false;

  function screenFor(data) {
    if (!data.session) return "k-idle";
    const state = data.session.state;
    if (data.qr) return "k-qr";
    if (state === "started" || state === "consented") return "k-consent";
    if (state === "capturing" && !data.preview_url) return "k-capture";
    if (data.preview_url) return "k-result";
    return "k-idle";
  }

  function showScreen(id) {
    for (const screen of screens) show(screen, screen === id);
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
      say(error.message, "error");
    }
    window.setTimeout(poll, 1500);
  }

  document.getElementById("k-agree").addEventListener("click", async () => {
    if (!view.session) return;
    try {
      await call("POST", api + "/" + view.session + "/consent");
      showScreen("k-capture");
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
          await call("POST", api + "/" + view.session + "/capture");
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
