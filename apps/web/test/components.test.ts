// The worker's forms as components, in Debian's chromium at phone size with
// nothing around them (no platform, no server): the settings form's states
// (busy, refused with a sentence, saved) and the photo picker's checks and
// the picture it makes. Bundled here with esbuild; served by Playwright's
// request routing, so no port is opened.
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import type { Browser, Page } from "playwright-core";
import { launchChromium } from "./browser.js";
import { bundleComponents, componentPage } from "./component-page.js";
import { PHONE } from "./harness.js";
import { drawPng } from "./pictures.js";
// For window.components' type only (the file itself runs in the browser).
import type {} from "./components/entry";

const ORIGIN = "http://components.test";

describe("the worker's form components (chromium at phone size)", () => {
  let browser: Browser;
  let bundle: string;

  before(async () => {
    bundle = await bundleComponents(new URL("./components/entry.tsx", import.meta.url));
    browser = await launchChromium();
  });
  after(async () => {
    await browser?.close();
  });

  async function open(): Promise<Page> {
    return componentPage(browser, bundle, ORIGIN, "en", { ...PHONE, locale: "en-KE" });
  }

  test("a settings form: busy while saving (no second submit), then the refusal as a sentence, then saved", async () => {
    const page = await open();
    await page.evaluate(() => window.components.mountSection());
    const save = page.getByRole("button", { name: "Save payout settings" });
    await page.getByLabel("Payout M-Pesa number").fill("0812");
    await save.click();
    assert.equal(await save.isDisabled(), true, "busy while the call is out");
    assert.deepEqual(await page.evaluate(() => window.components.submitted()), [{ payoutPhone: "0812" }]);
    await page.evaluate(() => window.components.release("Enter a Kenyan mobile number."));
    await page.getByRole("alert").filter({ hasText: "Enter a Kenyan mobile number." }).waitFor();
    assert.equal(await save.isDisabled(), false);
    assert.equal(await page.getByRole("status").count(), 0, "not saved");

    await page.getByLabel("Payout M-Pesa number").fill("0712345678");
    await save.click();
    assert.equal(await page.getByRole("alert").count(), 0, "the old refusal goes as the new save starts");
    await page.evaluate(() => window.components.release(undefined));
    await page.getByRole("status").filter({ hasText: "Saved." }).waitFor();
    assert.equal((await page.evaluate(() => window.components.submitted())).length, 2);
    await page.context().close();
  });

  test("the photo picker: refuses by name what is too big, of another type or unreadable; makes a square JPEG of at most 288 px on white", async () => {
    const page = await open();
    const problems = await page.evaluate(async () => ({
      none: (await window.components.pickedPhoto(undefined)).ok ? "ok" : "refused",
      big: await window.components.problemWith([new Uint8Array(2 * 1024 * 1024 + 1)], "image/jpeg"),
      gif: await window.components.problemWith([new TextEncoder().encode("GIF89a")], "image/gif"),
      unreadable: await window.components.problemWith([new TextEncoder().encode("not a picture")], "image/png"),
    }));
    assert.deepEqual(problems, { none: "refused", big: "err_photoBig", gif: "err_photoType", unreadable: "err_photoRead" });

    // A transparent 1200x800 PNG with a red square in the middle.
    const png = await page.evaluate(drawPng, { width: 1200, height: 800, square: 200 });
    const made = await page.evaluate(async (base64) => {
      const file = new File([Uint8Array.from(atob(base64), (ch) => ch.charCodeAt(0))], "me.png", { type: "image/png" });
      const r = await window.components.pickedPhoto(file);
      return r.ok ? window.components.describeJpeg(r.value) : { problem: r.problem };
    }, png);
    assert.ok(!("problem" in made), JSON.stringify(made));
    assert.deepEqual(made.head, [0xff, 0xd8, 0xff], "a JPEG, as qr checks it");
    assert.deepEqual([made.width, made.height], [288, 288], "the centred square, scaled down");
    assert.ok(made.bytes < 512 * 1024, "under qr's limit");
    assert.ok(made.corner!.every((v) => v > 240), `transparent became white: ${made.corner}`);
    assert.ok(made.centre![0] > 200 && made.centre![1] < 60 && made.centre![2] < 60, `the red square stays in the middle: ${made.centre}`);
    await page.context().close();
  });
});
