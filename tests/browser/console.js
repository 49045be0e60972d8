// Drives Debian's Chromium, headless, through the console of a running daemon, as a person
// would: tests/it/console.rs starts the daemon and this script, and reads what it prints.
//
//   node console.js SCENARIO BASE_URL USER PASSWORD SHOT_DIR [ARGS...]
//
// Prints `READY`, `SEEN …` and finally `OK` (or `FAIL why` and exits 1). Each scenario saves
// a screenshot in SHOT_DIR. CHROMIUM names the browser (default /usr/bin/chromium).
"use strict";
const { chromium } = require("playwright-core");
const readline = require("readline");
const path = require("path");

const [scenario, base, user, password, shots, ...args] = process.argv.slice(2);

function fail(why) {
  console.log("FAIL " + why);
  process.exit(1);
}

async function logIn(page, next) {
  await page.goto(base + next);
  if (!page.url().includes("/login")) fail("not sent to the login page: " + page.url());
  await page.getByLabel(/User|用户名/).fill(user);
  await page.getByLabel(/Password|密码/).fill(password);
  await page.getByRole("button", { name: /Log in|登录/ }).click();
  await page.waitForURL((u) => !u.pathname.startsWith("/login"), { timeout: 10000 });
}

function nextLine() {
  const rl = readline.createInterface({ input: process.stdin });
  return new Promise((resolve) => rl.once("line", (l) => { rl.close(); resolve(l); }));
}

// No part of the page is wider than the window: nothing to scroll sideways on a phone.
async function noSideScroll(page) {
  const [w, sw] = await page.evaluate(() => [window.innerWidth, document.documentElement.scrollWidth]);
  if (sw > w) fail(`the page is ${sw} px wide in a ${w} px window`);
}

// A small PNG (8 × 8, red) to stand for a camera's photo.
const PHOTO = "iVBORw0KGgoAAAANSUhEUgAAAAgAAAAICAIAAABLbSncAAAAEUlEQVR4nGM4ISeHFTEMLQkAkL9BAbKfPiIAAAAASUVORK5CYII=";

const scenarios = {
  // A manager finds a part below the reserve, counts the shelf, and the line is no longer short.
  async spares(page) {
    const [part] = args;
    await logIn(page, "/tickets");
    await page.getByRole("link", { name: "Spare parts" }).click();
    await page.waitForURL(/\/spares$/);
    const row = page.locator(`tr[data-part="${part}"]`);
    if (!(await row.getAttribute("class")).includes("short")) fail("the part is not marked below the reserve");
    if (!(await row.textContent()).includes("below the reserve")) fail("no words for the shortage: " + await row.textContent());
    await row.getByLabel("Quantity of " + part).fill("7");
    await row.getByRole("button", { name: "Record" }).click();
    await page.waitForURL(/\/spares$/);
    const after = page.locator(`tr[data-part="${part}"]`);
    if ((await after.getAttribute("class")).includes("short")) fail("still short after the count: " + await after.textContent());
    console.log("SEEN " + (await after.textContent()).replace(/\s+/g, " ").trim());
    await page.screenshot({ path: path.join(shots, "console-spares.png"), fullPage: true });
  },

  // The desk sends a unit to the factory with its return number, then records its arrival:
  // the page shows the trip and the factory's deadline.
  async factory(page) {
    const [id] = args;
    await logIn(page, "/tickets/" + id);
    await page.locator("#to").selectOption("at_factory");
    await page.locator("#factory_ref").fill("RMA-88 <i>");
    await page.getByRole("button", { name: "Move to" }).click();
    const facts = page.locator("dl.facts");
    await facts.getByText("RMA-88 <i>").waitFor({ timeout: 10000 });
    if ((await page.locator("dl.facts i").count()) > 0) fail("the return number was taken as markup");
    await page.getByRole("button", { name: "Arrived at the factory" }).click();
    await facts.getByText("Back from the factory by").waitFor({ timeout: 10000 });
    if ((await page.getByRole("button", { name: "Arrived at the factory" }).count()) > 0) fail("the arrival can be recorded twice");
    const due = await facts.locator("dt:text('Back from the factory by') + dd").textContent();
    const trip = await facts.locator("dt:text('Factory repair') + dd").textContent();
    console.log("SEEN " + JSON.stringify({ due: due.trim(), trip: trip.replace(/\s+/g, " ").trim() }));
    await page.screenshot({ path: path.join(shots, "console-factory.png"), fullPage: true });
  },

  // In Chinese, the ticket queue has no English left: only the ids of devices, sites and
  // people (given as arguments) are in Latin letters.
  async zh(page) {
    await logIn(page, "/tickets");
    await page.getByRole("link", { name: "中文" }).click();
    await page.waitForURL(/\/tickets/);
    await page.locator("#rows .countdown").first().waitFor({ timeout: 5000 });
    let text = await page.locator("h1").textContent() + " " + await page.locator("form.filters").textContent()
      + " " + await page.locator("table.queue").textContent();
    for (const id of args) text = text.split(id).join(" ");
    const left = text.match(/[A-Za-z][A-Za-z-]*/g);
    if (left) fail("English left in the zh-CN queue: " + left.join(", ") + " in: " + text);
    if (!/漏电/.test(text)) fail("no Chinese fault title: " + text);
    console.log("SEEN " + text.replace(/\s+/g, " ").trim().slice(0, 200));
    await page.screenshot({ path: path.join(shots, "console-queue-zh.png"), fullPage: true });
  },

  // The manager's queue: a fault raised after the page loaded appears without a reload, with
  // a countdown to its deadline.
  async queue(page) {
    await logIn(page, "/tickets");
    let loads = 0;
    page.on("load", () => loads++);
    const before = await page.locator("#rows tr[data-ticket]").count();
    console.log("READY " + before);
    const text = (await nextLine()).replace(/^GO /, "");
    const row = page.locator("#rows tr[data-ticket]", { hasText: text });
    await row.first().waitFor({ timeout: 30000 });
    if (loads > 0) fail("the page was reloaded");
    await page.locator("#rows .countdown").first().waitFor({ timeout: 5000 });
    console.log("SEEN " + (await row.first().getAttribute("data-ticket")));
    await page.screenshot({ path: path.join(shots, "console-queue.png"), fullPage: true });
  },

  // A countdown that runs out turns into a missed mark, without a reload.
  // (The page's own countdown or the live refresh after the daemon fired the breach, whichever
  // comes first: both without a reload.)
  async breach(page) {
    await logIn(page, "/tickets");
    let loads = 0;
    page.on("load", () => loads++);
    if ((await page.locator("#rows .breach").count()) > 0) fail("missed before its deadline");
    const mark = page.locator("#rows tr[data-ticket] .breach");
    await mark.first().waitFor({ timeout: 30000 });
    if (loads > 0) fail("the page was reloaded");
    const row = await page.locator("#rows tr[data-ticket]").first().textContent();
    console.log("SEEN " + row.replace(/\s+/g, " ").trim());
    await page.screenshot({ path: path.join(shots, "console-breach.png"), fullPage: true });
  },

  // A customer's user reaches its own ticket, and another customer's is not found.
  async scope(page) {
    const [own, other] = args;
    await logIn(page, "/tickets/" + own);
    const mine = await page.locator("h1").textContent();
    if (!mine.includes("#" + own)) fail("its own ticket: " + mine);
    const r = await page.goto(base + "/tickets/" + other);
    if (r.status() !== 404) fail("another customer's ticket answered " + r.status());
    const body = await page.locator("main").textContent();
    if (body.includes("lit-b") || body.includes("cust-2")) fail("another customer's ticket shows: " + body);
    const rows = await page.goto(base + "/tickets");
    const list = await page.locator("#rows").textContent();
    if (list.includes("site-b")) fail("another customer's ticket is listed: " + list);
    // Its devices, and not another customer's, by list or by URL.
    await page.goto(base + "/fleet");
    const fleet = await page.locator("main").textContent();
    if (!fleet.includes("lit-a") || fleet.includes("lit-b")) fail("the fleet page: " + fleet);
    const other_device = await page.goto(base + "/devices/lit-b");
    if (other_device.status() !== 404) fail("another customer's device answered " + other_device.status());
    const own_device = await page.goto(base + "/devices/lit-a");
    if (own_device.status() !== 200) fail("its own device answered " + own_device.status());
    await page.locator("figure.chart, p.hint").first().waitFor();
    // Its service levels, and not another customer's.
    const sla_other = await page.goto(base + "/sla?customer=cust-2");
    if (sla_other.status() !== 404) fail("another customer's SLA answered " + sla_other.status());
    const sla = await page.goto(base + "/sla");
    if (sla.status() !== 200) fail("its SLA answered " + sla.status());
    const options = await page.locator("#customer option").allTextContents();
    if (options.join() !== "cust-1") fail("the SLA page offers customers " + options);
    if ((await page.locator("table.sla").first().locator("tbody tr").count()) !== 3) fail("not a row per tier");
    // Its visits and reports, and not another customer's.
    const visits_other = await page.goto(base + "/visits?customer=cust-2");
    if (visits_other.status() !== 404) fail("another customer's visits answered " + visits_other.status());
    await page.goto(base + "/visits");
    const cal = await page.locator("table.calendar").textContent();
    if (!cal.includes("lit-a") || cal.includes("lit-b")) fail("the calendar: " + cal);
    await page.goto(base + "/reports");
    const report_for = await page.locator("#customer option").allTextContents();
    if (report_for.length !== 1 || !report_for[0].startsWith("cust-1")) fail("reports offered for " + report_for);
    console.log("SEEN " + r.status());
    await page.screenshot({ path: path.join(shots, "console-scope.png"), fullPage: true });
  },

  // The manager finds a helpdesk event that could not be delivered and sends it again.
  async outbox(page) {
    await logIn(page, "/outbox");
    const rows = page.locator("main table").first().locator("tbody tr");
    const before = await rows.count();
    if (before === 0) fail("no undelivered event listed");
    await page.screenshot({ path: path.join(shots, "console-outbox.png"), fullPage: true });
    await rows.first().getByRole("button", { name: /Send again|重新发送/ }).click();
    await page.waitForURL(/\/outbox$/);
    console.log("SEEN " + before);
  },

  // The desk records a call in one form: customer, then site, then device, then the problem.
  async call(page) {
    await logIn(page, "/tickets/new");
    await page.getByLabel(/^Customer$|^客户$/).selectOption("cust-1");
    await page.getByLabel(/^Site$|^站点$/).selectOption("site-a");
    // The device picker holds the chosen site's devices only.
    const offered = await page.locator("#device option:not([disabled])").allTextContents();
    if (offered.some((o) => o.includes("lit-b"))) fail("another customer's device is offered: " + offered);
    await page.getByLabel(/^Device$|^设备$/).selectOption("lit-a");
    await page.getByLabel(/^Category/).selectOption("fault");
    await page.getByLabel(/Name$/).fill("Wang Li");
    await page.getByLabel(/Phone$/).fill("138 0000 0000");
    await page.getByLabel(/^Problem$/).fill("The pole by the gate <script>alert(1)</script> is dark");
    await page.getByRole("button", { name: /Open the ticket/ }).click();
    await page.waitForURL(/\/tickets\/\d+$/);
    const id = page.url().split("/").pop();
    const facts = await page.locator("dl.facts").textContent();
    if (!facts.includes("Wang Li") || !facts.includes("<script>alert(1)</script>")) fail("the report as typed: " + facts);
    console.log("SEEN " + id);
    await page.screenshot({ path: path.join(shots, "console-call.png"), fullPage: true });
  },

  // An engineer on a phone: its day, then a visit started and completed with its checklist,
  // the measured items filled in already.
  async visit(page) {
    const [id] = args;
    await page.setViewportSize({ width: 390, height: 844 });
    await logIn(page, "/");
    if (!page.url().endsWith("/work")) fail("an engineer starts at its work: " + page.url());
    await noSideScroll(page);
    await page.goto(base + "/visits/" + id);
    await page.getByRole("button", { name: /Start the visit|开始服务/ }).click();
    await page.waitForURL(new RegExp("/visits/" + id + "$"));
    const inputs = page.locator("form.checklist input[name^='answer:']");
    const n = await inputs.count();
    if (n === 0) fail("no checklist");
    let prefilled = 0;
    for (let i = 0; i < n; i++) {
      const input = inputs.nth(i);
      // A measured item shows the telemetry's answer and is kept as it is.
      if (await input.getAttribute("placeholder")) prefilled++;
      else await input.fill("checked, 2 lamps replaced");
    }
    if (prefilled === 0) fail("no item was filled in from the telemetry");
    // A photo "from the camera" (a file chooser in a test), uploaded as soon as it is chosen.
    await page.getByLabel(/Take or add photos|拍照或添加照片/).setInputFiles({
      name: "cabinet.png", mimeType: "image/png", buffer: Buffer.from(PHOTO, "base64"),
    });
    await page.locator("fieldset.photos .thumbs img").first().waitFor({ timeout: 10000 });
    // Two defects found: each becomes a repair task.
    await page.getByLabel(/Defects found|发现的缺陷/).fill("lamp 3 flickers\n\nbracket <b>loose</b>");
    // The customer signs on the screen with a finger: a stroke across the pad.
    await page.getByLabel(/Signed by|签字人/).fill("Zhang Wei");
    await page.locator("fieldset.sign canvas").scrollIntoViewIfNeeded();
    const pad = await page.locator("fieldset.sign canvas").boundingBox();
    await page.mouse.move(pad.x + 10, pad.y + pad.height / 2);
    await page.mouse.down();
    for (let i = 1; i <= 20; i++) {
      await page.mouse.move(pad.x + 10 + i * (pad.width - 20) / 20, pad.y + pad.height / 2 + (i % 2 ? -20 : 20));
    }
    await page.mouse.up();
    await noSideScroll(page);
    await page.getByRole("button", { name: /Complete the visit|完成服务/ }).click();
    await page.waitForURL(new RegExp("/visits/" + id + "$"));
    await page.locator("img.signature").waitFor({ timeout: 10000 });
    const facts = await page.locator("main").textContent();
    if (!/Done|已完成/.test(facts) || !facts.includes("Zhang Wei")) fail("not done and signed: " + facts);
    const tasks = page.locator("ul.work li a[href^='/tickets/']");
    if ((await tasks.count()) !== 2) fail("repair tasks: " + facts);
    if (!facts.includes("bracket <b>loose</b>")) fail("a defect is not shown as typed: " + facts);
    // The signature kept is the one drawn: its image, served back, has ink on it.
    const ink = await page.evaluate(async () => {
      const img = document.querySelector("img.signature");
      await img.decode();
      const c = document.createElement("canvas");
      c.width = img.naturalWidth; c.height = img.naturalHeight;
      const ctx = c.getContext("2d");
      ctx.drawImage(img, 0, 0);
      const d = ctx.getImageData(0, 0, c.width, c.height).data;
      let n = 0;
      for (let i = 3; i < d.length; i += 4) if (d[i] > 0) n++;
      return n;
    });
    if (ink < 500) fail("the signature kept has " + ink + " inked pixels");
    console.log("SEEN " + prefilled + " " + ink);
    await page.screenshot({ path: path.join(shots, "console-visit-phone.png"), fullPage: true });
  },

  // An engineer on a phone writes the repair record of its ticket: a part from its van, its
  // time, a photo from the camera and the customer's signature drawn on the screen.
  async repair(page) {
    const [id] = args;
    await page.setViewportSize({ width: 390, height: 844 });
    await logIn(page, "/tickets/" + id);
    await page.getByLabel(/^Cause found$/).fill("driver burnt out <i>by a surge</i>");
    await page.getByLabel(/^Work done$/).fill("replaced the driver, tested 30 min");
    await page.locator("#part0_number").fill("LED-DRV-60W");
    await page.locator("#part0_name").fill("driver 60 W");
    await page.locator("#part0_quantity").fill("2");
    await page.locator("#part0_stock").fill("van 3");
    await page.locator("#part0_cost").fill("52.50");
    await page.locator("input[name=part0_wear]").check();
    await page.getByLabel(/^Labour \(minutes\)$/).fill("45");
    await page.getByLabel(/^Travel \(km\)$/).fill("12");
    await page.getByLabel(/Take or add photos/).setInputFiles({
      name: "driver.png", mimeType: "image/png", buffer: Buffer.from(PHOTO, "base64"),
    });
    await page.locator("fieldset.photos .thumbs img").first().waitFor({ timeout: 10000 });
    await page.getByLabel(/Signed by/).fill("Zhang Wei");
    await page.locator("fieldset.sign canvas").scrollIntoViewIfNeeded();
    const pad = await page.locator("fieldset.sign canvas").boundingBox();
    await page.mouse.move(pad.x + 10, pad.y + 20);
    await page.mouse.down();
    for (let i = 1; i <= 20; i++) await page.mouse.move(pad.x + 10 + i * (pad.width - 20) / 20, pad.y + 20 + (i % 3) * 15);
    await page.mouse.up();
    await noSideScroll(page);
    await page.getByRole("button", { name: /Save the record/ }).click();
    await page.waitForURL(new RegExp("/tickets/" + id + "$"));
    const kept = await page.locator("dl.repair").textContent();
    for (const want of ["LED-DRV-60W", "Zhang Wei", "driver burnt out <i>by a surge</i>", "105.00"]) {
      if (!kept.includes(want)) fail("the record shown lacks " + want + ": " + kept);
    }
    if ((await page.locator("dl.repair i").count()) > 0) fail("a cause was rendered as HTML");
    await page.locator("dl.repair img.signature").waitFor();
    if ((await page.locator("main .thumbs img").count()) < 1) fail("no photo shown");
    await noSideScroll(page);
    console.log("SEEN recorded");
    await page.screenshot({ path: path.join(shots, "console-repair-phone.png"), fullPage: true });
  },

  // A manager's month: the visits on a calendar (a month, then a week), a report made as PDF
  // and as HTML, the reports kept, and service levels per contract against its clocks.
  async manage(page) {
    const [visit, contract] = args;
    await logIn(page, "/visits");
    const month = await page.locator("table.calendar").textContent();
    if (!month.includes("Inspection")) fail("no visit on the month: " + month);
    await page.getByRole("link", { name: "Week", exact: true }).click();
    await page.waitForURL(/view=week/);
    if ((await page.locator("table.calendar tbody tr").count()) !== 1) fail("a week is one row");
    await page.goto(base + "/visits?view=month");
    await page.locator("a.visit[href='/visits/" + visit + "']").click();
    await page.waitForURL(new RegExp("/visits/" + visit + "$"));
    await page.screenshot({ path: path.join(shots, "console-calendar.png"), fullPage: true });
    await page.goto(base + "/visits");
    await page.screenshot({ path: path.join(shots, "console-calendar-month.png"), fullPage: true });

    await page.goto(base + "/reports");
    await page.getByLabel(/^Customer$/).first().selectOption("cust-1");
    await page.getByLabel(/^Format$/).selectOption("pdf");
    const [download] = await Promise.all([
      page.waitForEvent("download"),
      page.getByRole("button", { name: /Make a report/ }).click(),
    ]);
    const pdf = require("fs").readFileSync(await download.path());
    if (pdf.subarray(0, 5).toString() !== "%PDF-") fail("not a PDF: " + pdf.subarray(0, 20));
    await page.goto(base + "/reports");
    await page.getByLabel(/^Format$/).selectOption("html");
    await page.getByRole("button", { name: /Make a report/ }).click();
    await page.waitForURL(/\/api\/v1\/reports\?/);
    if (!(await page.textContent("body")).includes("cust-1")) fail("the report is not cust-1's");
    await page.goto(base + "/reports");
    const kept = page.locator("table.kept tbody tr");
    if ((await kept.count()) < 1) fail("no kept report listed");
    await page.screenshot({ path: path.join(shots, "console-reports.png"), fullPage: true });
    await kept.first().getByRole("link", { name: "HTML" }).click();
    await page.waitForURL(/\/api\/v1\/reports\/kept\/\d+$/);

    await page.goto(base + "/sla");
    const sla = await page.locator("section.contract").first().textContent();
    if (!sla.includes(contract)) fail("no section for contract " + contract + ": " + sla);
    if (!/\d+ (s|min|h|d)/.test(sla)) fail("no clock target shown: " + sla);
    await page.screenshot({ path: path.join(shots, "console-sla.png"), fullPage: true });
    console.log("SEEN " + pdf.length);
  },

  // Every page checked by axe-core (WCAG 2.1 A and AA) on a desktop and a phone, after a
  // login made with the keyboard alone.
  async a11y(page) {
    const [ticket, visit] = args;
    await page.goto(base + "/login");
    // The user field has the focus as the page comes (autofocus); then Tab to the password.
    await page.waitForFunction(() => document.activeElement && document.activeElement.id === "user");
    await page.keyboard.type(user, { delay: 20 });
    await page.keyboard.press("Tab");
    await page.waitForFunction(() => document.activeElement && document.activeElement.id === "password");
    await page.keyboard.type(password, { delay: 20 });
    if ((await page.inputValue("#user")) !== user) fail("the user field holds " + (await page.inputValue("#user")));
    await page.keyboard.press("Enter");
    await page.waitForURL((u) => !u.pathname.startsWith("/login"));
    // Through the navigation with the keyboard: Tab until the fleet's link, then Enter.
    for (let i = 0; i < 20; i++) {
      await page.keyboard.press("Tab");
      if (await page.evaluate(() => document.activeElement && document.activeElement.getAttribute("href") === "/fleet")) break;
    }
    await page.keyboard.press("Enter");
    await page.waitForURL(/\/fleet$/);
    const axe = require("fs").readFileSync(require.resolve("axe-core/axe.min.js"), "utf8");
    const pages = ["/login", "/tickets", "/tickets/" + ticket, "/tickets/new", "/fleet", "/devices/lit-a", "/sla", "/visits",
      "/visits?view=week", "/visits/" + visit, "/reports", "/outbox", "/work", "/spares"];
    const found = [];
    for (const [w, h] of [[1280, 800], [390, 844]]) {
      await page.setViewportSize({ width: w, height: h });
      for (const p of pages) {
        await page.goto(base + p);
        if (w < 500) await noSideScroll(page);
        await page.evaluate(axe);
        const r = await page.evaluate(() => window.axe.run(document, { runOnly: ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa"] }));
        for (const v of r.violations) {
          if (v.impact === "serious" || v.impact === "critical") {
            found.push(`${p} @${w}: ${v.id} (${v.impact}) ${v.nodes.slice(0, 3).map((n) => n.target.join(" ")).join(", ")}`);
          }
        }
      }
    }
    if (found.length) fail("accessibility: " + found.join(" | "));
    console.log("SEEN " + pages.length * 2);
    await page.screenshot({ path: path.join(shots, "console-a11y-phone.png"), fullPage: true });
  },

  // The desk acknowledges a ticket and comments on it from the ticket page, on a phone.
  async act(page) {
    const [id] = args;
    await page.setViewportSize({ width: 390, height: 844 });
    await logIn(page, "/tickets/" + id);
    await noSideScroll(page);
    await page.getByLabel(/Move to|转为/).selectOption("acknowledged");
    await page.getByLabel(/^Note$|^说明$/).fill("called the site <b>back</b>");
    await page.getByRole("button", { name: /Move to|转为/ }).click();
    await page.waitForURL(new RegExp("/tickets/" + id + "$"));
    const facts = await page.locator("dl.facts").textContent();
    if (!/Acknowledged|已响应/.test(facts)) fail("not acknowledged: " + facts);
    await page.getByLabel(/^Comment$|^备注$/).fill("engineer on the way");
    await page.getByRole("button", { name: /Add comment|添加备注/ }).click();
    await page.waitForURL(new RegExp("/tickets/" + id + "$"));
    const timeline = await page.locator("ol.timeline").textContent();
    if (!timeline.includes("engineer on the way")) fail("no comment: " + timeline);
    // What a person typed is shown as text, never as markup.
    if ((await page.locator("ol.timeline b").count()) > 0) fail("a note was rendered as HTML");
    if (!timeline.includes("<b>back</b>")) fail("the note is not shown as typed: " + timeline);
    await noSideScroll(page);
    await page.goto(base + "/tickets");
    await noSideScroll(page);
    console.log("SEEN acknowledged");
    await page.screenshot({ path: path.join(shots, "console-desk-phone.png"), fullPage: true });
  },
};

(async () => {
  const run = scenarios[scenario];
  if (!run) fail("no scenario " + scenario);
  const browser = await chromium.launch({
    executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
    args: ["--no-sandbox"],
  });
  let page;
  try {
    // axe-core is put into the page by the test: only that scenario's pages let it past the
    // Content-Security-Policy.
    page = await browser.newPage({ viewport: { width: 1280, height: 800 }, locale: "en-US", bypassCSP: scenario === "a11y" });
    page.setDefaultTimeout(15000);
    const errors = [];
    page.on("pageerror", (e) => errors.push(String(e)));
    page.on("console", (m) => {
      // A page answered 404 on purpose (another customer's ticket) is no error of the page's.
      if (m.type() === "error" && !/status of 404/.test(m.text())) errors.push(m.text());
    });
    await run(page);
    // A script error, or a resource the Content-Security-Policy blocked, is a failure.
    if (errors.length) fail("errors in the page: " + errors.join(" | "));
    console.log("OK");
  } catch (e) {
    // What the page showed when it failed, to look at.
    if (page) await page.screenshot({ path: path.join(shots, "console-" + scenario + "-failed.png"), fullPage: true }).catch(() => {});
    fail(String(e && e.stack || e).replace(/\n/g, " | ") + (page ? " | at " + page.url() : ""));
  } finally {
    await browser.close();
  }
  // Standard input, once read, would keep node alive.
  process.exit(0);
})();
