// The venue screens' words as components, in Debian's chromium at 360 px with nothing around them (no
// platform): the funnel's step names whole in both languages, and the audit trail's "member left"
// sentence. Bundled and served as component-page.ts does.
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { fileURLToPath } from "node:url";
import type { Browser, Page } from "playwright-core";
import { launchChromium } from "./browser.js";
import { bundleComponents, componentPage } from "./component-page.js";
import type {} from "./components/venue-entry";

const ORIGIN = "http://venue-components.test";

describe("the venue screens' components (chromium, 360 px)", () => {
  let browser: Browser;
  let bundle: string;

  before(async () => {
    bundle = await bundleComponents(new URL("./components/venue-entry.tsx", import.meta.url));
    browser = await launchChromium();
  });
  after(async () => {
    await browser?.close();
  });

  async function open(lang: string): Promise<Page> {
    return componentPage(browser, bundle, ORIGIN, lang, { viewport: { width: 360, height: 740 }, deviceScaleFactor: 2, isMobile: true, locale: lang });
  }

  for (const locale of ["sw", "en"] as const) {
    test(`the funnel's step names are whole and end before their bars (${locale})`, async () => {
      const page = await open(locale);
      await page.evaluate((l) => window.venueComponents.mountFunnel(l, [40, 31, 24, 20]), locale);
      await page.getByTestId("chart-funnel").locator("g[data-label]").first().waitFor();
      const rows = await page.getByTestId("chart-funnel").locator("g[data-label]").evaluateAll((gs) =>
        gs.map((g) => {
          const label = g.querySelector("text")! as SVGTextElement;
          const box = label.getBBox();
          return { label: g.getAttribute("data-label")!, written: [...label.querySelectorAll("tspan")].map((s) => s.textContent).join(" ") || label.textContent, right: box.x + box.width, bar: Number(g.querySelector("rect")!.getAttribute("x")) };
        }),
      );
      assert.equal(rows.length, 4);
      for (const r of rows) {
        assert.equal(r.written, r.label, "the step's whole name is written");
        assert.ok(r.right <= r.bar, `"${r.label}" ends at ${r.right.toFixed(1)}, its bar starts at ${r.bar}`);
      }
      if (locale === "sw") assert.deepEqual(rows.map((r) => r.label), ["Zilizoskaniwa", "Kiasi kimechaguliwa", "Malipo yameanzishwa", "Zimelipwa"]);
    });
  }

  test("every figure and label of the charts ends inside them at phone width: the largest table's \"KES 12,500 · 140 scans\" is not cut at the right edge, nor the first hour's label at the left", async () => {
    const page = await open("en");
    const tables = [
      { label: "Table 1", value: 12_500_00, text: "KES 12,500 · 140 scans" },
      { label: "Table 12", value: 500_00, text: "KES 500 · 0 scans" },
      { label: "Verandah corner", value: 3_000_00, text: "KES 3,000 · 1 scan" },
    ];
    const hours = Array.from({ length: 24 }, (_, h) => ({ label: String(h).padStart(2, "0"), value: h === 0 ? 900 : h * 10, text: `${h} tips` }));
    await page.evaluate(([rows, columns]) => window.venueComponents.mountCharts(rows, columns), [tables, hours] as const);
    await page.getByTestId("chart-rows").locator("g[data-label]").first().waitFor();
    // Each text's box in the chart's own units (the viewBox is 100 wide), as drawn (a squeezed one at its squeezed width).
    const boxes = (testId: string) => page.getByTestId(testId).locator("svg text").evaluateAll((ts) =>
      ts.map((t) => {
        const box = (t as SVGTextElement).getBBox();
        const squeezed = t.getAttribute("textLength");
        return { text: t.textContent, left: box.x, right: box.x + (squeezed ? Number(squeezed) : box.width) };
      }),
    );
    const rows = await boxes("chart-rows");
    const columns = await boxes("chart-columns");
    for (const t of tables) assert.ok(rows.some((d) => d.text === t.text), `"${t.text}" is written`);
    assert.ok(columns.some((d) => d.text === "00"), "the first hour's label is written");
    // A row's label starts at 0 by design (a glyph's side bearing may reach past it); what runs out is on the right.
    for (const d of rows) assert.ok(d.right <= 100.01, `"${d.text}" spans ${d.left.toFixed(2)}..${d.right.toFixed(2)} of 0..100`);
    for (const d of columns) assert.ok(d.left >= -0.01 && d.right <= 100.01, `"${d.text}" spans ${d.left.toFixed(2)}..${d.right.toFixed(2)} of 0..100`);
    // Kept with the web tests' screenshots, to look at.
    await page.screenshot({ path: fileURLToPath(new URL("../../../test-artifacts/web/charts-phone.png", import.meta.url)), fullPage: true });
  });

  test("a member who left by the old one-tap button reads without its fixed reason; a reason typed is given", async () => {
    const page = await open("sw");
    const sentence = (locale: "en" | "sw", reason?: string) =>
      page.evaluate(([l, r]) => window.venueComponents.auditSentence(l as "en" | "sw", "member.left", r === undefined ? { member_id: "m1" } : { member_id: "m1", reason: r }), [locale, reason] as const);
    assert.equal(await sentence("en", "left the staff"), "Achieng left the staff.");
    assert.equal(await sentence("sw", "left the staff"), "Achieng ameondoka kazini.");
    assert.equal(await sentence("en"), "Achieng left the staff.");
    assert.equal(await sentence("en", "moved to Mombasa"), "Achieng left the staff: “moved to Mombasa”.");
    assert.equal(await sentence("sw", "moved to Mombasa"), "Achieng ameondoka kazini: “moved to Mombasa”.");
  });
});
