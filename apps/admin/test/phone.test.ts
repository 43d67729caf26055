// The admin console on a phone (an admin on call, 390×844): every screen, with rows in its tables and a
// detail open, fits the screen's width; wide tables scroll inside their own box, not the page.
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import type { Page } from "playwright-core";
import { AdminHarness, eventually } from "./harness.js";
import { testPhone } from "@ttip/runtime/testing";

const PHONE = { viewport: { width: 390, height: 844 }, isMobile: true, hasTouch: true };

/** How far the page runs past the screen's right edge, and the widest things that do. */
const overflow = (page: Page) =>
  page.evaluate(() => {
    const width = document.documentElement.clientWidth;
    const past = [...document.querySelectorAll("body *")]
      .map((e) => ({ e, right: Math.ceil(e.getBoundingClientRect().right) }))
      .filter(({ e, right }) => right > width && !e.closest("table"))
      .slice(0, 3)
      .map(({ e, right }) => `${e.tagName.toLowerCase()}${e.className ? `.${e.className}` : ""} ends at ${right} px`);
    return { page: document.documentElement.scrollWidth, width, past };
  });

describe("the admin console at phone size (chromium, 390×844)", () => {
  const h = new AdminHarness();
  before(() => h.start().then(() => undefined));
  after(() => h.stop());

  test("the code step: a wrong code is said as a sentence, and \"Use another number\" goes back to the number", async () => {
    const page = await h.page(PHONE);
    const [mistyped, right] = [testPhone(), testPhone()];
    const askCode = async (phone: string) => {
      await page.getByLabel("Phone number").fill(phone);
      await page.getByRole("button", { name: "Send code" }).click();
      await page.getByLabel("Code sent by SMS").waitFor();
      await eventually("the code by SMS", async () => h.sms.lastTo(phone));
    };
    await page.goto(`${h.url}/admin`);
    await askCode(mistyped);
    await page.getByLabel("Code sent by SMS").fill(h.otpFor(mistyped) === "000000" ? "111111" : "000000");
    await page.getByRole("button", { name: "Continue" }).click();
    const alert = page.getByRole("alert");
    await alert.filter({ hasText: "That code is wrong." }).waitFor();
    assert.equal(await alert.innerText(), "That code is wrong. 4 tries left.");
    await page.getByRole("button", { name: "Use another number" }).click();
    await askCode(right);
    await page.getByLabel("Code sent by SMS").fill(h.otpFor(right));
    await page.getByRole("button", { name: "Continue" }).click();
    await page.getByLabel("Choose a PIN").waitFor();
  });

  test("every screen fits the screen's width: the header wraps, the panes stack, wide tables scroll in their own box", async () => {
    const page = await h.page(PHONE);
    await h.signIn(page, testPhone(), "7391");
    await page.getByLabel(/Setup token/).fill(await h.setupToken());
    await page.getByRole("button", { name: "Become the first admin" }).click();
    await page.getByRole("heading", { name: "Users" }).waitFor();

    // Rows for the tables: a worker, a tip held for review, a paybill payment in suspense.
    const worker = await h.signUp(testPhone(), "2580", "Achieng Otieno");
    const tip = await h.heldTip(worker.userId);
    await h.daraja.c2b.pay({ billRefNumber: "NOSUCH1", amount: 400, skipValidation: true });

    const screens: Array<[string, (p: Page) => Promise<void>]> = [
      ["Users", async (p) => {
        await p.getByRole("textbox", { name: "Search" }).fill("Achieng");
        await p.getByRole("button", { name: "Search" }).click();
        await p.locator(`tr[data-user-id="${worker.userId}"]`).getByRole("button").click();
        await p.getByLabel("User detail").getByText("Achieng Otieno").waitFor();
      }],
      ["Payments", async (p) => {
        await p.locator(`tr[data-tip-id="${tip.tipId}"]`).getByRole("button").first().click();
        await p.getByLabel("Payment detail").getByTestId("payment-status").waitFor();
      }],
      ["Fraud", (p) => p.locator(`tr[data-tip-id="${tip.tipId}"]`).first().waitFor()],
      ["Suspense", (p) => p.getByRole("cell", { name: "NOSUCH1" }).first().waitFor()],
      ["Money", (p) => p.getByRole("table", { name: "Fee schedules" }).locator("tbody tr").first().waitFor()],
      ["Templates", (p) => p.locator("tbody tr").first().waitFor()],
      ["Notifications", (p) => p.locator("main table").first().waitFor()],
      ["Partners", (p) => p.getByLabel("Partner name").waitFor()],
      ["Audit log", (p) => p.locator("tbody tr").first().waitFor()],
    ];
    const wide: string[] = [];
    for (const [name, loaded] of screens) {
      // The Fraud link carries the held count: found by its name's start.
      await page.locator("header nav a").filter({ hasText: new RegExp(`^${name}`) }).click();
      await page.getByRole("heading", { name, level: 1 }).waitFor();
      await loaded(page);
      const o = await overflow(page);
      assert.equal(o.width, 390);
      if (o.page > o.width) wide.push(`${name}: the page is ${o.page} px wide (${o.past.join("; ")})`);
    }
    assert.deepEqual(wide, [], "no screen runs off a 390 px phone sideways");
  });
});
