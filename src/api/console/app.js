// aftercare's console: countdowns to each deadline, and the ticket queue kept live.
// No framework: the pages are rendered on the server; this only updates them in place.
"use strict";

function span(ms) {
  const s = Math.floor(Math.abs(ms) / 1000);
  const d = Math.floor(s / 86400), h = Math.floor((s % 86400) / 3600), m = Math.floor((s % 3600) / 60);
  const pad = (n) => String(n).padStart(2, "0");
  return (d > 0 ? d + "d " : "") + h + ":" + pad(m) + ":" + pad(s % 60);
}

// Each deadline shows the time left, and once it passes, how late it is, marked missed.
function tick() {
  const table = document.querySelector("table.queue");
  if (!table) return;
  const now = Date.now();
  for (const t of table.querySelectorAll("time[data-due]")) {
    const due = Date.parse(t.dataset.due);
    if (Number.isNaN(due)) continue;
    const left = due - now;
    let c = t.parentElement.querySelector(".countdown");
    if (!c) {
      c = document.createElement("span");
      c.className = "countdown";
      t.after(c);
    }
    if (left >= 0) {
      c.textContent = " " + table.dataset.left + " " + span(left);
    } else {
      c.textContent = " " + table.dataset.late + " " + span(left);
      const cell = t.parentElement;
      if (!cell.querySelector(".breach")) {
        const b = document.createElement("span");
        b.className = "breach";
        b.textContent = table.dataset.breached + " ";
        cell.prepend(b);
      }
    }
  }
}

// The queue's rows again, through the same checks as the page, whenever a ticket changed.
async function refresh() {
  const rows = document.getElementById("rows");
  if (!rows) return;
  const url = new URL(window.location.href);
  url.searchParams.set("fragment", "rows");
  const r = await fetch(url, { credentials: "same-origin", headers: { "Accept": "text/html" } });
  // Sent to the login page: the session ended; the whole page goes there.
  if (r.redirected) { window.location.reload(); return; }
  if (!r.ok) return;
  rows.innerHTML = await r.text();
  tick();
}

function live() {
  const el = document.querySelector("[data-live]");
  if (!el || !window.EventSource) return;
  const source = new EventSource(el.dataset.live);
  source.addEventListener("tickets", () => { refresh(); });
  source.addEventListener("open", () => el.classList.add("on"));
  source.addEventListener("error", () => el.classList.remove("on"));
}

// The call form: only the chosen customer's sites, and only its (and the site's) devices.
function pickers() {
  const form = document.querySelector("form.call");
  if (!form) return;
  const customer = form.querySelector("#customer"), site = form.querySelector("#site"), device = form.querySelector("#device");
  if (!customer || !site || !device) return;
  const narrow = () => {
    for (const o of site.options) {
      const off = o.value !== "" && o.dataset.customer !== customer.value;
      o.hidden = off; o.disabled = off;
    }
    if (site.selectedOptions[0] && site.selectedOptions[0].disabled) site.value = "";
    for (const o of device.options) {
      const off = o.value !== "" && (o.dataset.customer !== customer.value || (site.value !== "" && o.dataset.site !== site.value));
      o.hidden = off; o.disabled = off;
    }
    if (device.selectedOptions[0] && device.selectedOptions[0].disabled) device.value = "";
  };
  customer.addEventListener("change", narrow);
  site.addEventListener("change", narrow);
  narrow();
}

// Why an upload was refused, as the API said it.
async function reason(r) {
  try { const b = await r.json(); if (b && b.error) return b.error; } catch (_) { /* not JSON */ }
  return String(r.status);
}

// Uploads still under way on a form: it is not sent until they are done.
function busy(form, by) {
  form.dataset.uploading = String(Number(form.dataset.uploading || 0) + by);
}

// The customer's signature, drawn with a finger, a pen or the mouse. When the form is sent it
// is uploaded as a PNG first and its id put in the form; then the form goes.
function signaturePads() {
  for (const box of document.querySelectorAll("fieldset.sign")) {
    const canvas = box.querySelector("canvas"), hidden = box.querySelector("[data-signature]");
    const message = box.querySelector("[data-message]"), form = box.closest("form");
    const name = box.querySelector("input:not([type=hidden])");
    if (!canvas || !hidden || !form) continue;
    const ctx = canvas.getContext("2d");
    ctx.lineWidth = 3; ctx.lineCap = "round"; ctx.lineJoin = "round"; ctx.strokeStyle = "#111";
    let drawn = false, last = null;
    const at = (e) => {
      const r = canvas.getBoundingClientRect();
      return [(e.clientX - r.left) * canvas.width / r.width, (e.clientY - r.top) * canvas.height / r.height];
    };
    canvas.addEventListener("pointerdown", (e) => { canvas.setPointerCapture(e.pointerId); last = at(e); e.preventDefault(); });
    canvas.addEventListener("pointermove", (e) => {
      if (!last) return;
      const p = at(e);
      ctx.beginPath(); ctx.moveTo(last[0], last[1]); ctx.lineTo(p[0], p[1]); ctx.stroke();
      last = p; drawn = true; hidden.value = "";
      if (name) name.required = true;
    });
    const up = () => { last = null; };
    canvas.addEventListener("pointerup", up);
    canvas.addEventListener("pointercancel", up);
    box.querySelector("[data-clear]").addEventListener("click", () => {
      ctx.clearRect(0, 0, canvas.width, canvas.height);
      drawn = false; hidden.value = "";
      if (name) name.required = false;
    });
    form.addEventListener("submit", async (e) => {
      if (!drawn || hidden.value) return;
      e.preventDefault();
      if (Number(form.dataset.uploading || 0) > 0) { message.textContent = box.dataset.busy; return; }
      message.textContent = box.dataset.busy;
      busy(form, 1);
      try {
        const blob = await new Promise((ok) => canvas.toBlob(ok, "image/png"));
        const r = await fetch(box.dataset.upload, {
          method: "POST", credentials: "same-origin", headers: { "Content-Type": "image/png" }, body: blob,
        });
        if (!r.ok) throw new Error(await reason(r));
        hidden.value = String((await r.json()).id);
        message.textContent = "";
        busy(form, -1);
        // Sent again, now with the signature: this handler lets it go, the others look again.
        form.requestSubmit();
      } catch (err) {
        busy(form, -1);
        message.textContent = box.dataset.failed + ": " + err.message;
      }
    });
  }
}

// A photo made at most 1600 px on its long side, as JPEG: quick over a phone's network and well
// under the 5 MiB an attachment may have. Anything the browser cannot read goes as it is.
async function smaller(file) {
  if (!window.createImageBitmap) return file;
  try {
    const bmp = await createImageBitmap(file);
    const scale = Math.min(1, 1600 / Math.max(bmp.width, bmp.height));
    if (scale === 1 && file.size < 2 * 1024 * 1024) return file;
    const c = document.createElement("canvas");
    c.width = Math.round(bmp.width * scale); c.height = Math.round(bmp.height * scale);
    c.getContext("2d").drawImage(bmp, 0, 0, c.width, c.height);
    return await new Promise((ok) => c.toBlob((b) => ok(b || file), "image/jpeg", 0.85));
  } catch (_) {
    return file;
  }
}

// Photos from the camera: each uploaded as soon as it is taken, shown, and named in the form.
function photoPickers() {
  for (const box of document.querySelectorAll("fieldset.photos")) {
    const input = box.querySelector("input[type=file]"), thumbs = box.querySelector(".thumbs");
    const message = box.querySelector("[data-message]"), form = box.closest("form");
    if (!input || !form) continue;
    input.addEventListener("change", async () => {
      const files = Array.from(input.files);
      input.value = "";
      for (const file of files) {
        busy(form, 1);
        message.textContent = box.dataset.busy;
        try {
          const body = await smaller(file);
          const r = await fetch(box.dataset.upload, {
            method: "POST", credentials: "same-origin",
            headers: { "Content-Type": body.type || "application/octet-stream" }, body,
          });
          if (!r.ok) throw new Error(await reason(r));
          const a = await r.json();
          const field = document.createElement("input");
          field.type = "hidden"; field.name = "photo"; field.value = String(a.id);
          form.append(field);
          const img = document.createElement("img");
          img.src = box.dataset.view + "/" + a.id; img.alt = file.name;
          thumbs.append(img);
          message.textContent = "";
        } catch (err) {
          message.textContent = box.dataset.failed + ": " + err.message;
        } finally {
          busy(form, -1);
        }
      }
    });
    form.addEventListener("submit", (e) => {
      if (Number(form.dataset.uploading || 0) > 0) { e.preventDefault(); message.textContent = box.dataset.busy; }
    });
  }
}

// A form with uploads is sent once: a second tap while it goes would complete a visit twice.
function onceOnly() {
  for (const form of document.querySelectorAll("form.call")) {
    if (!form.querySelector("fieldset.sign, fieldset.photos")) continue;
    // Last of the form's handlers: it sees whether an upload held the form back.
    form.addEventListener("submit", (e) => {
      if (e.defaultPrevented) return;
      if (form.dataset.sent) { e.preventDefault(); return; }
      form.dataset.sent = "1";
    });
  }
}

document.addEventListener("DOMContentLoaded", () => {
  pickers();
  signaturePads();
  photoPickers();
  onceOnly();
  tick();
  setInterval(tick, 1000);
  live();
});
