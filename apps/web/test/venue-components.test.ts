// The venue screens' words as components, in Debian's chromium at 360 px with nothing around them (no
// platform): the funnel's step names whole in both languages, and the audit trail's "member left"
// sentence. Bundled and served as component-page.ts does.
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
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
