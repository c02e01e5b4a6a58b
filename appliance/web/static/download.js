// The customer's download page (plain HTTP, on their own phone): fetch the link's sealed
// bundle once, decrypt it here with the key from the URL fragment (never sent to the server),
// show the photo, offer the files, and "Delete my photos now". See appliance/web/sealed.py.
import { chacha20poly1305 } from "./noble/chacha.js";

const root = document.getElementById("download");
const $ = (id) => document.getElementById(id);
const message = (name) => root.dataset["msg" + name];
const MAGIC = [0x53, 0x41, 0x4c, 0x31]; // "SAL1"

function status(text) {
  $("d-status").textContent = text;
}

function fromBase64Url(text) {
  const padded = text.replace(/-/g, "+").replace(/_/g, "/") + "=".repeat((4 - (text.length % 4)) % 4);
  const binary = window.atob(padded);
  return Uint8Array.from(binary, (c) => c.charCodeAt(0));
}

function openBundle(key, token, blob) {
  const aad = new TextEncoder().encode("studio-link-v1:" + token);
  const plain = chacha20poly1305(key, blob.subarray(0, 12), aad).decrypt(blob.subarray(12));
  if (!MAGIC.every((byte, i) => plain[i] === byte)) throw new Error("not a bundle");
  const length = new DataView(plain.buffer, plain.byteOffset).getUint32(4);
  const header = JSON.parse(new TextDecoder().decode(plain.subarray(8, 8 + length)));
  let offset = 8 + length;
  const files = {};
  for (const entry of header.files) {
    files[entry.kind] = { ...entry, bytes: plain.subarray(offset, offset + entry.size) };
    offset += entry.size;
  }
  return { files, deleteSecret: header.delete };
}

function offer(anchorId, file) {
  const url = URL.createObjectURL(new Blob([file.bytes], { type: file.type }));
  const anchor = $(anchorId);
  anchor.href = url;
  anchor.download = file.name;
  anchor.hidden = false;
  return url;
}

async function main() {
  const token = root.dataset.token;
  const keyText = window.location.hash.slice(1);
  if (!keyText) return status(message("Nokey"));
  let key;
  try {
    key = fromBase64Url(keyText);
  } catch {
    return status(message("Nokey"));
  }
  // The key must not linger in the address bar or the history once it has been used.
  window.history.replaceState(null, "", window.location.pathname + window.location.search);
  const response = await fetch("/d/" + token + "/sealed", { cache: "no-store" });
  if (!response.ok) return status(message("Gone"));
  let bundle;
  try {
    bundle = openBundle(key, token, new Uint8Array(await response.arrayBuffer()));
  } catch {
    return status(message("Broken"));
  }
  key.fill(0);
  const urls = [offer("save-photo", bundle.files.digital)];
  $("d-photo").src = urls[0];
  if (bundle.files.sheet) urls.push(offer("save-sheet", bundle.files.sheet));
  status("");
  $("d-ready").hidden = false;
  const remove = $("delete-now");
  remove.hidden = false;
  remove.addEventListener("click", async () => {
    remove.disabled = true;
    const answer = await fetch("/d/" + token + "/delete", {
      method: "POST", body: bundle.deleteSecret, headers: { "Content-Type": "text/plain" },
    });
    $("d-deleted").textContent = message(answer.ok ? "Deleted" : "DeleteFailed");
    $("d-deleted").hidden = false;
    remove.hidden = true;
  });
}

main().catch(() => status(message("Gone")));
