"use strict";
// Passkeys (WebAuthn): the account page adds one, the login page logs in with one. The server
// makes every challenge and checks every answer; this only carries them to the authenticator.
(() => {
  const t = Studio.t;
  const MESSAGES = {
    wrong_password: "Wrong password.",
    wrong_code: "Wrong code.",
    replayed: "That code was already used. Wait for the next one.",
    invalid: "The passkey was not accepted.",
    expired: "That took too long. Try again.",
    unavailable: "Passkeys work only when this page is opened by the appliance's name (for example https://studio.local:8443), not by its address.",
    cancelled: "Cancelled.",
  };

  function fromB64(text) {
    const padded = text.replace(/-/g, "+").replace(/_/g, "/") + "===".slice((text.length + 3) % 4);
    return Uint8Array.from(atob(padded), (c) => c.charCodeAt(0)).buffer;
  }

  function toB64(buffer) {
    let text = "";
    for (const byte of new Uint8Array(buffer)) text += String.fromCharCode(byte);
    return btoa(text).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
  }

  function credentialJSON(credential) {
    const r = credential.response;
    const response = { clientDataJSON: toB64(r.clientDataJSON) };
    if (r.attestationObject) {
      response.attestationObject = toB64(r.attestationObject);
      if (r.getTransports) response.transports = r.getTransports();
    }
    if (r.authenticatorData) {
      response.authenticatorData = toB64(r.authenticatorData);
      response.signature = toB64(r.signature);
      if (r.userHandle) response.userHandle = toB64(r.userHandle);
    }
    return {
      id: credential.id,
      rawId: toB64(credential.rawId),
      type: credential.type,
      response,
      clientExtensionResults: credential.getClientExtensionResults(),
      authenticatorAttachment: credential.authenticatorAttachment || undefined,
    };
  }

  async function post(url, body) {
    const meta = document.querySelector('meta[name="csrf-token"]');
    const response = await fetch(url, {
      method: "POST",
      headers: {
        "X-CSRF-Token": meta ? meta.content : "",
        Accept: "application/json",
        "Content-Type": "application/json",
      },
      body: JSON.stringify(body),
      credentials: "same-origin",
      cache: "no-store",
    });
    const data = await response.json().catch(() => ({}));
    if (!response.ok) {
      const error = new Error(data.error || "invalid");
      error.code = data.error || "invalid";
      error.wait = data.wait_s || 0;
      throw error;
    }
    return data;
  }

  function explain(line, error) {
    let code = error.code || (error.name === "NotAllowedError" ? "cancelled" : "invalid");
    if (code === "locked") {
      line.textContent = t("Too many attempts. Try again in %(seconds)s seconds.", { seconds: error.wait });
      return;
    }
    line.textContent = t(MESSAGES[code] || MESSAGES.invalid);
  }

  const usable = Boolean(window.PublicKeyCredential && window.isSecureContext);

  const add = document.getElementById("passkey-add");
  if (add) {
    const line = document.getElementById("passkey-message");
    if (!usable) line.textContent = t("This browser cannot use passkeys here.");
    add.addEventListener("submit", async (event) => {
      event.preventDefault();
      line.textContent = "";
      const form = new FormData(add);
      try {
        const options = await post(add.dataset.options, {
          password: form.get("password") || "",
          code: form.get("code") || "",
        });
        options.challenge = fromB64(options.challenge);
        options.user.id = fromB64(options.user.id);
        for (const item of options.excludeCredentials || []) item.id = fromB64(item.id);
        const credential = await navigator.credentials.create({ publicKey: options });
        await post(add.dataset.register, {
          name: form.get("name") || "",
          credential: credentialJSON(credential),
        });
        window.location.assign(window.location.pathname);
      } catch (error) {
        explain(line, error);
      }
    });
  }

  const login = document.getElementById("passkey-login");
  if (login && usable) {
    login.hidden = false;
    const line = document.getElementById("passkey-message");
    document.getElementById("passkey-login-button").addEventListener("click", async () => {
      line.textContent = "";
      try {
        const started = await post(login.dataset.options, {});
        const options = started.options;
        options.challenge = fromB64(options.challenge);
        for (const item of options.allowCredentials || []) item.id = fromB64(item.id);
        const credential = await navigator.credentials.get({ publicKey: options });
        const done = await post(login.dataset.login, {
          ceremony: started.ceremony,
          credential: credentialJSON(credential),
          next: login.dataset.next || "/",
        });
        window.location.assign(done.redirect);
      } catch (error) {
        explain(line, error);
      }
    });
  }
})();
