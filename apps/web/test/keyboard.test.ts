// The worker's and the venue manager's screens by keyboard alone, at the narrowest phone (320 px): the first
// Tab stop skips the tabs, every stop shows where the focus is, nothing scrolls sideways, and a checkbox is a
// thumb's target.
import assert from "node:assert/strict";
import { after, afterEach, before, describe, test } from "node:test";
import type { Page } from "playwright-core";
import { WebHarness } from "./harness.js";

/** Where the focus is: its tag and words, whether it is inside the tabs, and its focus outline. */
const focused = (page: Page) =>
  page.evaluate(() => {
    const e = document.activeElement as HTMLElement | null;
    if (!e || e === document.body) return undefined;
    const style = getComputedStyle(e);
    return {
      what: `${e.tagName.toLowerCase()} ${(e.getAttribute("aria-label") || (e as HTMLInputElement).labels?.[0]?.innerText || e.innerText || e.id).replace(/\s+/g, " ").trim()}`,
      inTabs: Boolean(e.closest("nav.tabs")),
      outline: `${style.outlineStyle} ${style.outlineWidth}`,
      top: e.getBoundingClientRect().top,
    };
  });

/** Every Tab stop of the page from the top, at most `max`. */
async function tabStops(page: Page, max = 80) {
  const stops: NonNullable<Awaited<ReturnType<typeof focused>>>[] = [];
  for (let i = 0; i < max; i++) {
    await page.keyboard.press("Tab");
    const f = await focused(page);
    if (!f || stops.some((s) => s.what === f.what && s.top === f.top)) break;
    stops.push(f);
  }
  return stops;
}

describe("keyboard and 320 px (chromium)", () => {
  const h = new WebHarness();
  before(() => h.start().then(() => undefined));
  afterEach(() => h.closePages());
  after(() => h.stop());

  const check = async (page: Page, path: string, firstInContent: RegExp) => {
    await page.goto(`${h.url}${path}`);
    await page.locator("h1").first().waitFor();
    const stops = await tabStops(page);
    // Before, eight tabs came first on every screen, and nothing skipped them.
    assert.equal(stops[0]?.what, "a Skip to the page's content", `${path}: the first stop skips the tabs`);
    assert.ok(stops[0].top >= 0, `${path}: the skip link shows when focused`);
    assert.deepEqual(stops.filter((s) => s.outline !== "solid 3px").map((s) => s.what), [], `${path}: every stop shows the focus`);
    await page.goto(`${h.url}${path}`);
    await page.locator("h1").first().waitFor();
    await page.keyboard.press("Tab");
    await page.keyboard.press("Enter");
    await page.keyboard.press("Tab");
    const next = await focused(page);
    assert.equal(next?.inTabs, false, `${path}: after the skip, the focus is past the tabs`);
    assert.match(next!.what, firstInContent, path);
    const sideways = await page.evaluate(() => document.documentElement.scrollWidth - document.documentElement.clientWidth);
    assert.equal(sideways, 0, `${path}: nothing scrolls sideways at 320 px`);
    const small = await page.locator("input[type=checkbox]:visible").evaluateAll((boxes) =>
      boxes.map((b) => b.getBoundingClientRect()).filter((r) => r.width < 24 || r.height < 24).length);
    assert.equal(small, 0, `${path}: every checkbox is at least 24 px`);
  };

  test("the worker's screens: the first Tab skips the tabs, every stop shows the focus, no sideways scroll, checkboxes a thumb's size", async () => {
    const worker = await h.worker("Zawadi");
    const page = await h.signedInPhone(worker, { viewport: { width: 320, height: 640 } });
    await check(page, "/w/withdraw", /^input Amount/);
    await check(page, "/w/settings", /^input Your name/);
    await check(page, "/w/history", /^select Show/);
    // A tap on a tab: the router focuses the new page's first element, the skip link, which stays off screen
    // (shown on any focus, it covered the tabs and took the next tap).
    await page.getByRole("link", { name: "Withdraw" }).click();
    await page.waitForURL(/\/w\/withdraw$/);
    await page.getByRole("link", { name: "Settings" }).click();
    await page.waitForURL(/\/w\/settings$/);
    assert.ok((await page.locator("a.skip").boundingBox())!.x < 0, "the skip link stays off screen after a tap");
  });

  test("the venue manager's screens likewise", async () => {
    const venue = await h.venue("Kilimanjaro Grill");
    const page = await h.signedInAs({ accessToken: venue.managerToken }, { viewport: { width: 320, height: 640 } });
    await check(page, `/v/${venue.id}/staff`, /^div Name Phone Role/); // the staff table's scrolling box
    await check(page, `/v/${venue.id}/shifts`, /^input From/);
  });
});
