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

document.addEventListener("DOMContentLoaded", () => {
  pickers();
  tick();
  setInterval(tick, 1000);
  live();
});
