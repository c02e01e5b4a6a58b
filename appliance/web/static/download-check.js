"use strict";
// The customer's page says so when its decryption module cannot load (the pinned library is
// missing on the appliance) instead of "Opening…" for ever. Script load errors do not bubble,
// so this listens in the capture phase; it is a classic script, loaded before the module.
window.addEventListener("error", (event) => {
  if (!(event.target instanceof HTMLScriptElement)) return;
  const show = () => {
    const root = document.getElementById("download");
    document.getElementById("d-status").textContent = root.dataset.msgNoscript;
  };
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", show);
  else show();
}, true);
