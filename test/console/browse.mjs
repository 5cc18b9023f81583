// browse.mjs drives the console in Debian's Chromium (headless, through
// playwright-core) as console_test.go describes in the JSON file named by
// CONSOLE_CONFIG, and prints one line per check: "console: PASS name" or
// "console: FAIL name: why". It exits 1 when a check failed. Every screen
// each role sees is saved as a screenshot (config.shots/<role>-<screen>.png).
//
// Config: {
//   base:        "https://127.0.0.1:PORT/console/",
//   clientCert:  {certPath, keyPath} or null (the ingress wants mTLS),
//   chromium:    the browser's executable,
//   shots:       the screenshot directory,
//   users:       {role: {subject, screens: [...]}} (the expected screens),
//   explorer:    {role, query, expect},         run a query, see the data and its trace
//   playground:  {role, subject, operation, file, append},
//                open the refused decision, append to the draft, see allow
//   dlq:         {role}                          replay the first dead letter
// }
import { chromium } from "playwright-core";
import { readFileSync, mkdirSync } from "node:fs";
import { join } from "node:path";

const cfg = JSON.parse(readFileSync(process.env.CONSOLE_CONFIG, "utf8"));
mkdirSync(cfg.shots, { recursive: true });
const origin = new URL(cfg.base).origin;
const timeout = cfg.timeoutMs || 20000;
let failed = 0;
const cspViolations = [];
const pagesWithoutCSP = new Set();

// watch records, for every page a browser context loads, the CSP
// violations the browser reports and any page served without a CSP.
function watch(page, who) {
  page.on("console", (m) => {
    if (/Content Security Policy/i.test(m.text())) cspViolations.push(`${who}: ${m.text()}`);
  });
  page.on("response", async (r) => {
    if (r.request().resourceType() !== "document" || r.status() >= 300) return;
    const csp = (await r.allHeaders())["content-security-policy"] || "";
    if (!/script-src 'self'/.test(csp)) pagesWithoutCSP.add(`${r.url()} (${csp || "no CSP"})`);
  });
  page.on("pageerror", (e) => console.log(`console: page error (${who}): ${e.message}`));
}

function pass(name) {
  console.log(`console: PASS ${name}`);
}
function fail(name, why) {
  failed++;
  console.log(`console: FAIL ${name}: ${why}`);
}
async function check(name, fn) {
  try {
    await fn();
    pass(name);
  } catch (e) {
    fail(name, (e && e.message ? e.message : String(e)).split("\n").slice(0, 6).join(" | "));
  }
}
function assert(cond, msg) {
  if (!cond) throw new Error(msg);
}

const browser = await chromium.launch({
  executablePath: cfg.chromium,
  headless: true,
  // As root (CI, containers) Chromium runs only without its sandbox.
  args: ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"],
});

// session opens a fresh browser context (no cookies) signed in as role.
async function session(role) {
  const ctx = await browser.newContext({
    ignoreHTTPSErrors: true, // the development CA is not the system's
    clientCertificates: cfg.clientCert ? [{ origin, ...cfg.clientCert }] : [],
    viewport: { width: 1440, height: 900 },
  });
  ctx.setDefaultTimeout(timeout);
  const page = await ctx.newPage();
  watch(page, role);
  const user = cfg.users[role];
  // Anything but the login page sends an unauthenticated client to it.
  await page.goto(cfg.base);
  await page.waitForURL(/\/console\/login(#.*)?$/);
  await page.locator(`button[data-subject="${user.subject}"]`).click();
  await page.waitForURL((u) => u.pathname.endsWith("/console/"));
  await page.locator(".top nav").waitFor();
  return { ctx, page };
}

async function goTo(page, screen) {
  await page.evaluate((s) => (location.hash = "#/" + s), screen);
  await page.locator(`main[data-screen="${screen}"]`).waitFor();
}

async function shot(page, name) {
  // Let charts, editors and fonts settle: wait for the network to idle.
  await page.waitForLoadState("networkidle").catch(() => {});
  await page.screenshot({ path: join(cfg.shots, name + ".png") });
}

// 0. The login page, before any session.
await check("login page lists the demo users", async () => {
  const ctx = await browser.newContext({
    ignoreHTTPSErrors: true,
    clientCertificates: cfg.clientCert ? [{ origin, ...cfg.clientCert }] : [],
    viewport: { width: 1440, height: 900 },
  });
  const page = await ctx.newPage();
  watch(page, "login");
  await page.goto(cfg.base + "#/playground");
  await page.waitForURL(/\/console\/login(#.*)?$/);
  for (const u of Object.values(cfg.users)) await page.locator(`button[data-subject="${u.subject}"]`).waitFor();
  await shot(page, "login");
  await ctx.close();
});

// 1. Each role sees exactly its screens; every screen is photographed.
for (const [role, user] of Object.entries(cfg.users)) {
  await check(`${role} sees only ${user.screens.join(", ")}`, async () => {
    const { ctx, page } = await session(role);
    try {
      const nav = await page.locator(".top nav a").evaluateAll((as) => as.map((a) => a.dataset.screen));
      assert(JSON.stringify(nav) === JSON.stringify(user.screens), `nav shows ${nav}, want ${user.screens}`);
      for (const s of user.screens) {
        await goTo(page, s);
        const ready = {
          explorer: ".graphiql-container",
          playground: ".cm-content",
          decisions: "[data-testid=decisions]",
          observers: "[data-testid=dlq]",
          quotas: ".tenant-card, .quotas .muted",
        }[s];
        await page.locator(ready).first().waitFor();
        await shot(page, `${role}-${s}`);
      }
      // A forbidden route shows the first allowed screen instead.
      for (const s of ["explorer", "playground", "decisions", "observers", "quotas"].filter((s) => !user.screens.includes(s))) {
        await page.evaluate((s) => (location.hash = "#/" + s), s);
        await page.locator(`main[data-screen="${user.screens[0]}"]`).waitFor();
      }
      // The server refuses the playground's APIs to the roles without it,
      // whatever the page shows.
      if (!user.screens.includes("playground")) {
        const status = await page.evaluate(async () => {
          const csrf = (document.cookie.match(/fraise_csrf=([^;]*)/) || [])[1] || "";
          const r = await fetch("api/policies/evaluate", {
            method: "POST",
            headers: { "Content-Type": "application/json", "X-CSRF-Token": decodeURIComponent(csrf) },
            body: JSON.stringify({ files: [], input: {} }),
          });
          return r.status;
        });
        assert(status === 403, `POST api/policies/evaluate as ${role}: ${status}, want 403`);
      }
      // Signing out ends the session: the console is the login page again.
      await page.getByRole("button", { name: "Sign out" }).click();
      await page.waitForURL(/\/console\/login(#.*)?$/);
      await page.goto(cfg.base + "#/explorer");
      await page.waitForURL(/\/console\/login(#.*)?$/);
    } finally {
      await ctx.close();
    }
  });
}

// 2. The explorer runs a query and shows its cost and its trace.
if (cfg.explorer) {
  await check(`explorer runs a query as ${cfg.explorer.role}`, async () => {
    const { ctx, page } = await session(cfg.explorer.role);
    try {
      let graphqlHeaders = {};
      page.on("response", async (r) => {
        if (new URL(r.url()).pathname === "/graphql") graphqlHeaders = await r.allHeaders();
      });
      await goTo(page, "explorer");
      const editor = page.locator(".graphiql-query-editor .CodeMirror").first();
      await editor.waitFor();
      if (cfg.explorer.persisted) {
        // Load the persisted operation from the list into the editor.
        await page.locator("[data-persisted]", { hasText: cfg.explorer.persisted }).first().click();
        await editor.filter({ hasText: cfg.explorer.query.split("{")[0].trim() }).waitFor();
      } else {
        // CodeMirror 5 keeps its editor object on its element.
        await editor.evaluate((el, q) => el.CodeMirror.setValue(q), cfg.explorer.query);
      }
      await page.locator("[data-testid=cost]").filter({ hasText: /Cost \d+/ }).waitFor();
      const cost = await page.locator("[data-testid=cost]").innerText();
      await page.locator(".graphiql-execute-button").click();
      await page.locator(".result-window .CodeMirror, .graphiql-response .CodeMirror").filter({ hasText: cfg.explorer.expect }).first().waitFor();
      console.log(`console: explorer: ${cost}`);
      await shot(page, "explorer-run");
      await check("explorer shows the trace of the response", async () => {
        await page.locator("[data-testid=trace]").filter({ hasText: /Trace: \S{8,}/ }).waitFor({ timeout: 5000 }).catch(() => {
          throw new Error("no trace shown: the /graphql response carried no x-fraise-trace-id header; its headers: " + Object.keys(graphqlHeaders).join(" "));
        });
        console.log(`console: explorer: ${await page.locator("[data-testid=trace]").innerText()}`);
      });
    } finally {
      await ctx.close();
    }
  });
}

// 3. A refused request, from the decision log into the playground: the
// draft that allows it, the replay that lists it, the live that still
// refuses it.
if (cfg.playground) {
  const p = cfg.playground;
  await check(`playground turns a refused ${p.operation} by ${p.subject} into an allow in the draft only`, async () => {
    const { ctx, page } = await session(p.role);
    try {
      await goTo(page, "decisions");
      await page.locator("input[name=subject]").fill(p.subject);
      await page.locator("select[name=decision]").selectOption("deny");
      await page.getByRole("button", { name: "Search" }).click();
      const row = page.locator("[data-testid=decisions] tbody tr.deny").filter({ hasText: new RegExp(p.operation, "i") }).first();
      await row.waitFor();
      await shot(page, "decisions-refused");
      const decisionId = await row.getAttribute("data-decision");
      await row.locator("[data-action=open-in-playground]").click();
      await page.locator("main[data-screen=playground]").waitFor();
      const result = page.locator("[data-testid=result]");
      await result.locator("[data-verdict=live] .badge", { hasText: "deny" }).waitFor();
      await result.locator("[data-verdict=draft] .badge", { hasText: "deny" }).waitFor();

      // Edit the draft: append to the file the config names.
      await page.locator(`.tabs button[data-file="${p.file}"]`).click();
      const content = page.locator(".cm-content");
      await content.click();
      await page.keyboard.press("Control+End");
      await content.pressSequentially(p.append, { delay: 0 });
      await page.locator("[data-action=check]").click();
      await page.locator("[data-testid=check].ok").waitFor();

      await page.locator("[data-action=evaluate]").click();
      await result.locator("[data-verdict=draft] .badge", { hasText: "allow" }).waitFor();
      await result.locator("[data-verdict=live] .badge", { hasText: "deny" }).waitFor();
      await result.locator(".changed").waitFor();
      await shot(page, "playground-evaluate");

      // The same question from the form: a viewer's mutation of that root
      // field, built by the server as extauthz would, then evaluated.
      await page.locator(".builder select[name=role]").selectOption("viewer");
      await page.locator(".builder input[name=operation]").fill("mutation");
      await page.locator(".builder input[name=fields]").fill(p.rootField || "createPost");
      await page.locator("[data-action=build-input]").click();
      await page.locator("[data-testid=source]", { hasText: "built from the form" }).waitFor();
      const evaluated = page.waitForResponse((r) => r.url().endsWith("/api/policies/evaluate"));
      await page.locator("[data-action=evaluate]").click();
      await evaluated;
      await result.locator("[data-verdict=draft] .badge", { hasText: "allow" }).waitFor();
      await result.locator("[data-verdict=live] .badge", { hasText: "deny" }).waitFor();

      // A pasted input: the same document, now as a query — allowed by both.
      const built = JSON.parse(await page.locator("textarea.input-json").inputValue());
      built.graphql.operation = "query";
      await page.locator("textarea.input-json").fill(JSON.stringify(built));
      const again = page.waitForResponse((r) => r.url().endsWith("/api/policies/evaluate"));
      await page.locator("[data-action=evaluate]").click();
      await again;
      if (!cfg.fixture) {
        await result.locator("[data-verdict=live] .badge", { hasText: "allow" }).waitFor();
        await result.locator(".same").waitFor();
      }

      await page.locator("[data-action=replay]").click();
      const changed = page.locator(`[data-testid=replay] tr[data-decision="${decisionId}"]`);
      await changed.waitFor();
      assert((await changed.locator("td.deny").count()) === 1 && (await changed.locator("td.allow").count()) === 1,
        "the replay row does not show live deny, draft allow");
      await page.locator("[data-action=test]").click();
      await page.locator("[data-testid=tests]").waitFor();
      await page.locator("[data-action=export]").click();
      await page.locator("[data-testid=diff] pre").filter({ hasText: "+" }).waitFor();
      await page.locator("[data-testid=replay]").scrollIntoViewIfNeeded();
      await shot(page, "playground-replay");

      // A compile error shows inline, OPA's message in the editor.
      await content.click();
      await page.keyboard.press("Control+End");
      await content.pressSequentially("\nbroken if {", { delay: 0 });
      await page.locator("[data-action=check]").click();
      await page.locator("[data-testid=check].bad").waitFor();
      await page.locator(".cm-lintRange-error").first().waitFor();
      await shot(page, "playground-compile-error");

      // The live policy is untouched: the console re-reads it.
      const live = await page.evaluate(async () => (await fetch("api/policies")).json());
      const f = live.files.find((x) => x.path === p.file);
      assert(f && !f.content.includes(p.append.trim()), "the live policy changed");
    } finally {
      await ctx.close();
    }
  });
}

// 4. A dead letter replayed by an operator, then delivered.
if (cfg.dlq) {
  await check(`${cfg.dlq.role} replays a dead letter and sees it delivered`, async () => {
    const { ctx, page } = await session(cfg.dlq.role);
    try {
      await goTo(page, "observers");
      const row = page.locator("[data-testid=dlq] tr[data-dead-letter]").first();
      await row.waitFor();
      const id = await row.getAttribute("data-dead-letter");
      await shot(page, "observers-dead-letter");
      await row.locator("[data-action=replay]").click();
      await page.locator(".notice", { hasText: `Dead letter ${id} replayed` }).waitFor();
      await page.locator(`[data-testid=dlq] tr[data-dead-letter="${id}"]`).waitFor({ state: "detached" });
      // Delivered: the rule no longer holds a dead delivery and nothing
      // waits in the backlog (or the rule lists a delivered delivery, where
      // the server reports those). console_test.go checks the webhook got it.
      const deadline = Date.now() + timeout;
      for (;;) {
        const done = await page.evaluate(() => {
          if (document.querySelector(".rule-card tr.delivered, .rule-card tr.ok")) return true;
          const backlog = document.querySelector("[data-testid=backlog]");
          return !document.querySelector(".rule-card tr.dead") && !!backlog && /Backlog: 0 pending/.test(backlog.textContent);
        });
        if (done) break;
        assert(Date.now() < deadline, "the replayed dead letter still shows as dead or pending");
        const refreshed = page.waitForResponse((r) => r.url().includes("/api/observers/dlq"));
        await page.getByRole("button", { name: "Refresh" }).click();
        await refreshed;
      }
      await shot(page, "observers-replayed");
    } finally {
      await ctx.close();
    }
  });
}

await browser.close();
if (cspViolations.length) {
  fail("no Content-Security-Policy violation", [...new Set(cspViolations.map((v) => v.replace(/ Either the .*$/, "")))].join(" | "));
} else {
  pass("no Content-Security-Policy violation");
}
if (pagesWithoutCSP.size) {
  fail("every page carries the CSP", [...pagesWithoutCSP].join(" | "));
} else {
  pass("every page carries the CSP");
}
console.log(`console: ${failed ? "FAILED" : "ok"}, screenshots in ${cfg.shots}`);
process.exit(failed ? 1 : 0);
