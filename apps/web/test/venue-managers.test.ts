// A venue's co-managers in a real browser: the managers' page invites one by phone, a forwarded
// link manages nothing, the invited worker accepts through the SMS link and opens the venue at
// once (their session refreshed to carry the manager's role), and the venue's creator steps down.
import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { after, afterEach, before, describe, test } from "node:test";
import type { Page } from "playwright-core";
import { Role } from "@ttip/proto/ttip/auth/v1/auth_pb.js";
import { AuthService } from "@ttip/proto/ttip/auth/v1/auth_service_pb.js";
import { OwnerKind } from "@ttip/proto/ttip/qr/v1/qr_pb.js";
import { QrService } from "@ttip/proto/ttip/qr/v1/qr_service_pb.js";
import { VenueService } from "@ttip/proto/ttip/venue/v1/venue_service_pb.js";
import { testPhone } from "@ttip/runtime/testing";
import { eventually, loseFirstAnswer, WebHarness } from "./harness.js";

/** Fails with what the page shows instead of what was awaited. */
async function see(page: Page, what: ReturnType<Page["getByText"]>, timeout = 30_000): Promise<void> {
  await what.waitFor({ timeout }).catch(async (err) => {
    throw new Error(`${(err as Error).message}\nthe page says: ${(await page.locator("main").innerText()).slice(0, 2000)}`);
  });
}

describe("a venue's co-managers (chromium)", () => {
  const h = new WebHarness();
  before(() => h.start().then(() => undefined));
  afterEach(() => h.closePages());
  after(() => h.stop());

  test("invited on the managers' page, accepted through the SMS link by the invited number only, the new manager opens the venue at once; its creator steps down", async () => {
    // The venue's creator, signed up as a manager (with a refresh token, as the sign-in screen leaves it).
    const creatorPhone = testPhone({ format: "07" });
    const { challengeId } = await h.api(AuthService).startPhoneVerification({ phone: creatorPhone });
    const { tokens: creator } = await h.api(AuthService).verifyPhoneOtp({ challengeId, otp: h.otpFor(creatorPhone), role: Role.VENUE_MANAGER });
    const venueId = randomUUID();
    await h.api(QrService, creator!.accessToken).putProfile({ ownerKind: OwnerKind.VENUE, ownerId: venueId, displayName: "Tamarind Mombasa", currency: "KES", city: "Mombasa" });
    const page = await h.signedInAs(creator!, { viewport: { width: 1000, height: 900 }, isMobile: false });
    await page.goto(`${h.url}/v/${venueId}`);
    await page.getByRole("link", { name: "Managers" }).click();
    await see(page, page.getByTestId("managers").getByRole("cell", { name: "(you)" }));
    await see(page, page.getByTestId("last-manager"));
    assert.equal(await page.getByRole("button", { name: "Step down" }).count(), 0, "the only manager cannot step down");

    // A bad number is refused before any call; then the invitation.
    const wairimu = await h.worker("Wairimu");
    await page.getByLabel("Phone number").fill("0812");
    await page.getByLabel("Name", { exact: true }).fill("Wairimu");
    await page.getByRole("button", { name: "Send invitation" }).click();
    await see(page, page.getByRole("alert").filter({ hasText: "Enter a Kenyan mobile number" }));
    await page.getByLabel("Phone number").fill(wairimu.phone);
    await page.getByRole("button", { name: "Send invitation" }).click();
    await see(page, page.getByRole("status").filter({ hasText: "Wairimu was invited by SMS." }));
    await see(page, page.getByTestId("manager-invitations").getByRole("cell", { name: "Wairimu", exact: true }));
    const msisdn = `254${wairimu.phone.slice(1)}`;
    const token = await eventually("the manager invitation SMS", () => {
      const sms = h.providers.sent.filter((m) => m.to.replace(/^\+/, "") === msisdn).pop();
      return sms ? /\/join\/manage\/([A-Za-z0-9_-]+)/.exec(sms.body)?.[1] : undefined;
    });

    // Signed out, the link names the venue and asks for the invited number, in the phone's language.
    for (const [locale, title] of [["en-KE", "Manage Tamarind Mombasa on TTIP"], ["sw-KE", "Simamia Tamarind Mombasa kwenye TTIP"]] as const) {
      const out = await h.phone({ locale });
      await out.goto(`${h.url}/join/manage/${token}`);
      await see(out, out.getByRole("heading", { name: title }));
      assert.match(await out.getByRole("link", { name: locale === "en-KE" ? "Sign in" : /Ingia/ }).getAttribute("href") ?? "", /^\/w\/signin\?as=manager&next=%2Fjoin%2Fmanage%2F/);
    }

    // Forwarded to another worker, the link manages nothing.
    const other = await h.signedInPhone(await h.worker("Otieno"));
    await other.goto(`${h.url}/join/manage/${token}`);
    await other.getByRole("button", { name: "Manage Tamarind Mombasa" }).click();
    await see(other, other.getByRole("alert").filter({ hasText: "sent to another number" }));
    // It offers to end that session and sign in with the invited number, the invitation kept as where to go next.
    const otherSession = JSON.parse((await other.evaluate(() => window.localStorage.getItem("ttip_session")))!) as { refreshToken: string; userId: string };
    /** The device keys this browser keeps (IndexedDB, as the app keeps them): `put` one for the user first. */
    const deviceKeys = (put?: string) => other.evaluate((userId) => new Promise<string[]>((resolve, reject) => {
      const open = indexedDB.open("ttip-device", 1);
      open.onupgradeneeded = () => open.result.createObjectStore("keys");
      open.onerror = () => reject(open.error);
      open.onsuccess = () => {
        const store = open.result.transaction("keys", "readwrite").objectStore("keys");
        if (userId) store.put({ deviceId: "approves-payouts" }, userId);
        const all = store.getAllKeys();
        all.onsuccess = () => (resolve(all.result.map(String)), open.result.close());
      };
    }), put ?? "");
    assert.deepEqual(await deviceKeys(otherSession.userId), [otherSession.userId]);
    await other.getByRole("button", { name: "Sign out, and sign in with the invited number" }).click();
    await other.waitForURL(/\/w\/signin\?as=manager&next=%2Fjoin%2Fmanage%2F/);
    assert.equal(await other.evaluate(() => window.localStorage.getItem("ttip_session")), null, "the other number's session is gone from the browser");
    // Before, kept: whoever signed in here next as that worker withdrew with it, no PIN asked for a new key.
    assert.deepEqual(await deviceKeys(), [], "and the key that approves their withdrawals");
    await assert.rejects(h.api(AuthService).refreshSession({ refreshToken: otherSession.refreshToken }), "and ended at auth");

    // The invited worker accepts and opens the venue: the refreshed session carries the manager's role.
    const phone = await h.signedInPhone(wairimu);
    await phone.goto(`${h.url}/w`);
    await see(phone, phone.getByRole("link", { name: "Settings" }));
    assert.equal(await phone.getByRole("link", { name: "Venues you manage" }).count(), 0, "a worker who manages nothing has no venues' link");
    await phone.goto(`${h.url}/join/manage/${token}`);
    await phone.getByRole("button", { name: "Manage Tamarind Mombasa" }).click();
    await see(phone, phone.getByRole("status").filter({ hasText: "You now manage Tamarind Mombasa." }));
    assert.equal(await phone.getByRole("link", { name: "Open the venue" }).getAttribute("href"), `/v/${venueId}`);
    await phone.goto(`${h.url}/w`);
    await phone.getByRole("link", { name: "Venues you manage" }).click();
    await phone.getByRole("link", { name: "Tamarind Mombasa" }).click();
    await phone.getByRole("link", { name: "Managers" }).click();
    await see(phone, phone.getByTestId("managers").getByRole("cell", { name: "Wairimu (you)" }));
    await h.screenshot(phone, "venue-managers");

    // The creator sees them, and steps down: the venue is no longer theirs to open.
    await page.reload();
    await see(page, page.getByTestId("managers").getByRole("cell", { name: "Wairimu", exact: true }));
    assert.equal(await page.getByTestId("manager-invitations").count(), 0, "no invitation pending");
    await see(page, page.getByRole("button", { name: "Remove Wairimu" }));
    await page.getByRole("button", { name: "Step down" }).click();
    await page.getByRole("button", { name: "Confirm: I step down" }).click();
    await page.waitForURL(/\/v$/);
    await see(page, page.getByText("No venue yet."));
    const asWairimu = h.api(VenueService, (await h.tokens(wairimu)).accessToken);
    const { managers } = await asWairimu.listManagers({ venueId });
    assert.deepEqual(managers.map((m) => m.displayName), ["Wairimu"]);

    // Handed back: the creator, invited again, removes Wairimu; her worker app no longer offers the venues (her
    // session still carries the role, which grants nothing by itself).
    await asWairimu.inviteManager({ venueId, phone: creatorPhone, displayName: "Owner", idempotencyKey: randomUUID() });
    const back = await eventually("the creator's invitation SMS", () => {
      const sms = h.providers.sent.filter((m) => m.to.replace(/^\+/, "") === `254${creatorPhone.slice(1)}`).pop();
      return sms ? /\/join\/manage\/([A-Za-z0-9_-]+)/.exec(sms.body)?.[1] : undefined;
    });
    const asCreator = h.api(VenueService, creator!.accessToken);
    await asCreator.acceptManagerInvitation({ token: back });
    await asCreator.removeManager({ venueId, userId: (await asWairimu.listManagers({ venueId })).managers.find((m) => m.displayName === "Wairimu")!.userId });
    const asked = phone.waitForResponse((r) => r.url().endsWith("/ttip.qr.v1.QrService/ListManagedVenues"));
    await phone.goto(`${h.url}/w`);
    await see(phone, phone.getByRole("link", { name: "Settings" }));
    assert.equal((await asked).status(), 200);
    // Drawn from that answer in the next render.
    await phone.waitForTimeout(300);
    assert.equal(await phone.getByRole("link", { name: "Venues you manage" }).count(), 0, "no venue left to manage");
  });

  test("a manager's invitation whose answer was lost, cancelled from the list, then sent again: says it was withdrawn, not 'is invited'", async () => {
    const venue = await h.venue("Ziwani Lodge");
    const page = await h.signedInAs({ accessToken: venue.managerToken }, { viewport: { width: 1100, height: 900 }, isMobile: false });
    await page.goto(`${h.url}/v/${venue.id}/managers`);
    await loseFirstAnswer(page, "ttip.venue.v1.VenueService/InviteManager");
    await page.getByLabel("Phone number").fill(testPhone({ format: "07" }));
    await page.getByLabel("Name", { exact: true }).fill("Wanjala");
    const sendIt = () => page.getByRole("button", { name: "Send invitation" }).click();
    await sendIt();
    await see(page, page.locator("p.error[role=alert]"));
    await page.getByRole("button", { name: "Cancel Wanjala's invitation" }).click({ timeout: 30_000 });
    await see(page, page.getByRole("status").filter({ hasText: "Wanjala" }));
    await sendIt();
    // Before, "Wanjala is invited, but the SMS could not be sent now": nobody was.
    await see(page, page.getByRole("status").filter({ hasText: "Wanjala's invitation was withdrawn before this answer came: nobody is invited." }));
  });

  test("a manager's invitation is sent again from the managers' page: a new link, the one before no longer works", async () => {
    const venue = await h.venue("Kaloleni Kitchen");
    const phone = testPhone({ format: "07" });
    await h.api(VenueService, venue.managerToken).inviteManager({ venueId: venue.id, phone, displayName: "Kamau", idempotencyKey: randomUUID() });
    const links = () => h.providers.sent.filter((m) => m.to.replace(/^\+/, "") === `254${phone.slice(1)}`).map((m) => /\/join\/manage\/([A-Za-z0-9_-]+)/.exec(m.body)?.[1]);
    const first = await eventually("the invitation SMS", () => links()[0]);
    // A minute on (as if): a new link waits that long after the last texted.
    await h.sql("UPDATE venue.manager_invitations SET sent_at = sent_at - interval '2 minutes' WHERE phone = $1", [`254${phone.slice(1)}`]);
    const page = await h.signedInAs({ accessToken: venue.managerToken }, { viewport: { width: 1100, height: 900 }, isMobile: false });
    await page.goto(`${h.url}/v/${venue.id}/managers`);
    const row = page.getByTestId("manager-invitations").getByRole("row").filter({ hasText: "Kamau" });
    await see(page, row.getByText(/link works until/));
    await row.getByRole("button", { name: "Send Kamau's invitation again" }).click();
    await see(page, page.getByRole("status").filter({ hasText: "Kamau has a new link by SMS; the one before no longer works." }));
    const second = await eventually("the second SMS", () => links()[1]);
    assert.notEqual(second, first);
    const out = await h.phone();
    await out.goto(`${h.url}/join/manage/${first}`);
    await see(out, out.getByRole("alert").filter({ hasText: "This invitation link no longer works" }));
    await out.goto(`${h.url}/join/manage/${second}`);
    await see(out, out.getByRole("heading", { name: "Manage Kaloleni Kitchen on TTIP" }));
    assert.equal(await out.getByRole("alert").filter({ hasText: "no longer works" }).count(), 0, "the new link works");
  });
});
