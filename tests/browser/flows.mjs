// carelens's web pages in a real browser: Debian's Chromium driven by playwright-core (no
// browser download). Run by scripts/check-pages-in-browser.sh, which starts `carelens
// serve` on the sample with a throwaway ledger and passes:
//   CARELENS_URL       the server's address
//   ANALYST_TOKEN, RESEARCHER_TOKEN, APPROVER_TOKEN
//                      tokens of the sample's analyst, researcher and approver
//   SHOTS              a folder for screenshots (optional)
// Every page visited is checked with axe-core (WCAG 2.2 A and AA rules): no serious or
// critical violation is allowed. Exits non-zero on the first failed check.

import { readFileSync, mkdirSync } from "node:fs";
import { createRequire } from "node:module";
import { chromium } from "playwright-core";

const require = createRequire(import.meta.url);
const AXE = readFileSync(require.resolve("axe-core/axe.min.js"), "utf8");
const URL = process.env.CARELENS_URL;
const SHOTS = process.env.SHOTS;
if (!URL || !process.env.ANALYST_TOKEN || !process.env.RESEARCHER_TOKEN || !process.env.APPROVER_TOKEN) {
  console.error("CARELENS_URL and the three tokens must be set");
  process.exit(2);
}
if (SHOTS) mkdirSync(SHOTS, { recursive: true });

let checks = 0;
function check(ok, what) {
  checks += 1;
  if (!ok) {
    console.error(`FAILED: ${what}`);
    process.exit(1);
  }
}

async function accessible(page, name) {
  await page.addScriptTag({ content: AXE });
  const result = await page.evaluate(async () =>
    // eslint-disable-next-line no-undef
    axe.run(document, {
      runOnly: { type: "tag", values: ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa", "wcag22aa"] },
    }),
  );
  const bad = result.violations.filter((v) => v.impact === "serious" || v.impact === "critical");
  for (const v of bad) {
    console.error(`${name}: ${v.id} (${v.impact}): ${v.help}`);
    for (const node of v.nodes.slice(0, 3)) console.error(`   ${node.target.join(" ")}`);
  }
  check(bad.length === 0, `${name}: no serious accessibility violation`);
  console.log(`ok  ${name}: axe found no serious violation (${result.passes.length} rules passed)`);
}

async function signedIn(browser, token) {
  const context = await browser.newContext({ bypassCSP: true, viewport: { width: 1200, height: 900 } });
  const page = await context.newPage();
  await page.goto(`${URL}/signin`);
  await page.getByLabel("Token").fill(token);
  await page.getByRole("button", { name: "Sign in" }).click();
  check(page.url().endsWith("/query"), `signed in (${page.url()})`);
  return page;
}

async function shot(page, name) {
  if (SHOTS) await page.screenshot({ path: `${SHOTS}/${name}.png`, fullPage: true });
}

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  args: [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
  ],
});
try {
  // axe is injected as a script, which the pages' policy forbids; bypass it for the check.
  const context = await browser.newContext({ bypassCSP: true, acceptDownloads: true, viewport: { width: 1200, height: 900 } });
  const page = await context.newPage();

  // The register, before anything is released, needs no sign-in.
  await page.goto(`${URL}/register`);
  check((await page.locator("h1").innerText()) === "Transparency register", "register heading");
  await accessible(page, "register (empty)");

  // Signing in: a wrong token is refused with a message; the right one opens the query page.
  await page.goto(`${URL}/`);
  check(page.url().endsWith("/signin"), "signed-out visitors are sent to sign in");
  await accessible(page, "sign-in");
  await shot(page, "signin");
  await page.getByLabel("Token").fill("carelens_0000");
  await page.getByRole("button", { name: "Sign in" }).click();
  const refusal = await page.getByRole("alert").innerText();
  check(refusal.includes("not accepted"), `a wrong token is refused (${refusal})`);
  await accessible(page, "sign-in (refused)");
  await page.getByLabel("Token").fill(process.env.ANALYST_TOKEN);
  await page.getByRole("button", { name: "Sign in" }).click();
  check(page.url().endsWith("/query"), `signed in, on the query page (${page.url()})`);
  const cookies = await context.cookies();
  const session = cookies.find((c) => c.name === "__Host-carelens_session");
  check(session && session.httpOnly && session.secure && session.sameSite === "Strict", "the session cookie is HttpOnly, Secure, SameSite=Strict");
  await accessible(page, "query");

  // Explain, then release, then download the CSV.
  const sql = "-- carelens: epsilon=0.5\nSELECT sex, COUNT(*) AS people FROM person GROUP BY sex";
  await page.getByRole("textbox", { name: "SQL" }).fill(sql);
  await page.getByRole("button", { name: "Explain" }).click();
  check((await page.locator("#result-heading").innerText()).startsWith("Explain"), "explain shows the cost");
  check((await page.locator(".result").innerText()).includes("ε 0.5"), "explain names ε 0.5");
  await accessible(page, "query (explained)");
  await shot(page, "query-explain");
  await page.getByRole("button", { name: "Release" }).click();
  const heading = await page.locator("#result-heading").innerText();
  check(/^Release \d+$/.test(heading), `released (${heading})`);
  const releaseId = heading.split(" ")[1];
  const rows = await page.locator(".result table tbody tr").count();
  check(rows === 4, `four sexes in the table (${rows})`);
  const suppressed = await page.locator(".result td.suppressed").count();
  const values = (await page.locator(".result td.num").allInnerTexts())
    .map((t) => t.split("\n")[0].trim())
    .filter((t) => /^\d{3,}$/.test(t));
  check(values.length >= 2, `the large counts are shown (${values})`);
  await accessible(page, "query (released)");
  await shot(page, "query-release");
  const [download] = await Promise.all([
    page.waitForEvent("download"),
    page.getByRole("link", { name: "CSV" }).click(),
  ]);
  const csv = readFileSync(await download.path(), "utf8");
  check(csv.startsWith("sex,people\n") && csv.trim().split("\n").length === 5, `the CSV download (${JSON.stringify(csv)})`);
  for (const v of values) check(csv.includes(v), `the CSV holds ${v}`);
  console.log(`ok  released ${releaseId}: ${rows} rows, ${suppressed} suppressed, CSV downloaded`);

  // A rejection shows its place in the SQL and its hint, and spends nothing.
  await page.getByRole("textbox", { name: "SQL" }).fill("SELECT sex, COUNT(*) AS n\nFROM person\nWHERE sexx = 1\nGROUP BY sex");
  await page.getByRole("button", { name: "Release" }).click();
  const alert = await page.getByRole("alert").innerText();
  check(alert.includes("Hint"), `a rejection shows its hint (${alert})`);
  const marked = await page.locator("pre.sql mark").innerText();
  check(marked.includes("WHERE sexx = 1"), `the rejected place is marked (${marked})`);
  await accessible(page, "query (rejected)");
  await shot(page, "query-rejected");

  // The register lists the release, and none of its values.
  await page.goto(`${URL}/register`);
  const register = await page.locator("main").innerText();
  check(register.includes(`release ${releaseId}`), "the register lists the release");
  for (const v of values) check(!register.includes(v), `the register does not show the value ${v}`);
  await accessible(page, "register");
  await shot(page, "register");

  // The library: its queries and their cost; run it; read the report; the run is listed.
  await page.goto(`${URL}/library`);
  const listed = await page.locator("main table tbody tr").count();
  check(listed >= 10, `the library lists its queries (${listed})`);
  await accessible(page, "library");
  await shot(page, "library");
  await page.getByRole("button", { name: /^Run the library/ }).click();
  check(/\/library\/runs\/\d+$/.test(page.url()), `the run's report (${page.url()})`);
  const summary = await page.locator("main").innerText();
  check(summary.includes(`${listed} of ${listed} queries released`), "every library query released");
  await accessible(page, "library report");
  await page.goto(`${URL}/library`);
  check((await page.getByRole("link", { name: /^Run \d+$/ }).count()) === 1, "the run is listed");

  // An analyst cannot open the approvers' queue.
  const queue = await page.goto(`${URL}/requests/queue`);
  check(queue.status() === 403, `the queue is refused to an analyst (${queue.status()})`);
  await accessible(page, "approvals (refused)");

  // A researcher asks for a cohort count; an approver approves it; the researcher releases it.
  const researcher = await signedIn(browser, process.env.RESEARCHER_TOKEN);
  await researcher.goto(`${URL}/requests`);
  await accessible(researcher, "requests (researcher)");
  await researcher.getByRole("textbox", { name: "SQL" }).fill(
    "SELECT COUNT(DISTINCT person_id) AS people FROM person WHERE year_of_birth < 1945",
  );
  await researcher.getByRole("textbox", { name: "Purpose" }).fill("Feasibility of a falls-prevention trial");
  await researcher.getByRole("button", { name: "Submit the request" }).click();
  const requestUrl = researcher.url();
  check(/\/requests\/\d+$/.test(requestUrl), `submitted (${requestUrl})`);
  check((await researcher.locator("dl.facts").innerText()).includes("submitted"), "the request waits");
  check((await researcher.getByRole("button", { name: "Approve" }).count()) === 0, "the requester cannot approve");
  await accessible(researcher, "request (submitted)");
  await shot(researcher, "request-submitted");

  const approver = await signedIn(browser, process.env.APPROVER_TOKEN);
  await approver.goto(`${URL}/requests/queue`);
  await accessible(approver, "approvals");
  await shot(approver, "approvals");
  await approver.getByRole("link", { name: /^Request \d+$/ }).first().click();
  check((await approver.locator("pre").first().innerText()).includes("epsilon"), "the approver sees the cost");
  await approver.getByRole("textbox", { name: "Note" }).fill("Within the trial's approved protocol");
  await accessible(approver, "request (to decide)");
  await shot(approver, "request-decide");
  await approver.getByRole("button", { name: "Approve" }).click();
  check((await approver.locator("dl.facts").innerText()).includes("approved"), "approved");

  await researcher.goto(requestUrl);
  await researcher.getByRole("button", { name: "Release the count" }).click();
  const released = await researcher.locator("#result-heading").innerText();
  check(/^Release \d+$/.test(released), `the researcher released it (${released})`);
  await accessible(researcher, "request (released)");
  await shot(researcher, "request-released");
  const count = (await researcher.locator(".result td.num").first().innerText()).split("\n")[0].trim();
  await researcher.goto(`${URL}/register`);
  const published = await researcher.locator("main").innerText();
  check(published.includes("Feasibility of a falls-prevention trial"), "the register gives the request's purpose");
  check(/^\d{3,}$/.test(count), `the count is large enough to look for (${count})`);
  check(!published.includes(count), `the register does not show the count ${count}`);

  // The audit page: approvers see every entry, the log's check and the loss over time.
  await approver.goto(`${URL}/audit`);
  check((await approver.locator("main").innerText()).includes("Intact."), "the approver sees the log intact");
  await approver.getByLabel("Kind").selectOption("released");
  await approver.getByRole("button", { name: "Filter" }).click();
  const kinds = await approver.locator("main table").last().locator("tbody tr td:nth-child(4)").allInnerTexts();
  check(kinds.length >= 2 && kinds.every((k) => k.startsWith("released")), `filtered to releases (${kinds})`);
  await accessible(approver, "audit (approver)");
  await shot(approver, "audit");

  // At phone width the query page still works without sideways scrolling of the page.
  await page.setViewportSize({ width: 390, height: 844 });
  await page.goto(`${URL}/query`);
  const wide = await page.evaluate(() => document.documentElement.scrollWidth);
  check(wide <= 390, `the query page fits a phone (${wide}px)`);
  await shot(page, "query-phone");

  // Signing out ends the session: the query page sends to sign in again.
  await page.setViewportSize({ width: 1200, height: 900 });
  await page.getByRole("button", { name: "Sign out" }).click();
  await page.goto(`${URL}/query`);
  check(page.url().endsWith("/signin"), "signed out");
  console.log(`ok  ${checks} checks passed`);
} finally {
  await browser.close();
}
