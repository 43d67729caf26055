// The staff page's invitation form, in a real browser: the role it offers first is
// never a manager's (the venue's roles list managers first, and a form that picked
// the first one would grant manager rights to a waiter invited without a second look).
import assert from "node:assert/strict";
import { randomInt } from "node:crypto";
import { after, afterEach, before, describe, test } from "node:test";
import { VenueService } from "@ttip/proto/ttip/venue/v1/venue_service_pb.js";
import { WebHarness } from "./harness.js";

describe("the venue's staff invitation form (chromium)", () => {
  const h = new WebHarness();
  before(() => h.start().then(() => undefined));
  afterEach(() => h.closePages());
  after(() => h.stop());

  test("an invitation sent without touching the role invites front of house, not a manager, in English and Swahili", async () => {
    const venue = await h.venue("Baobab Terrace");
    const venueApi = h.api(VenueService, venue.managerToken);
    for (const [locale, phoneLabel, nameLabel, roleLabel, send] of [
      ["en-KE", "Phone number", "Name", "Role", "Send invitation"],
      ["sw-KE", "Namba ya simu", "Jina", "Kazi", "Tuma mwaliko"],
    ] as const) {
      const page = await h.signedInAs({ accessToken: venue.managerToken }, { locale });
      await page.goto(`${h.url}/v/${venue.id}/staff`);
      const role = page.getByLabel(roleLabel, { exact: true });
      // The roles arrive after the form is drawn.
      await role.locator("option").nth(1).waitFor({ state: "attached", timeout: 30_000 });
      assert.equal(await role.inputValue(), "front_of_house", `${locale}: the role offered first`);
      const name = `Waiter ${locale}`;
      await page.getByLabel(phoneLabel, { exact: true }).fill(`07${randomInt(10_000_000, 99_999_999)}`);
      await page.getByLabel(nameLabel, { exact: true }).fill(name);
      await page.getByRole("button", { name: send }).click();
      await page.getByRole("status").filter({ hasText: name }).waitFor({ timeout: 30_000 });
      const invited = (await venueApi.listMembers({ venueId: venue.id })).members.find((m) => m.displayName === name);
      assert.equal(invited?.roleId, "front_of_house", `${locale}: the invited waiter's role`);
      // After sending, the form is ready for the next one, still on a non-manager role.
      assert.equal(await role.inputValue(), "front_of_house", `${locale}: the role after the form resets`);
      await h.screenshot(page, `venue-staff-invited-${locale}`);
    }
  });

  test("inviting a number already on the staff says so, naming the phone, not 'That was already done.'", async () => {
    const venue = await h.venue("Tamarind Dhow");
    const page = await h.signedInAs({ accessToken: venue.managerToken });
    await page.goto(`${h.url}/v/${venue.id}/staff`);
    const phone = `07${randomInt(10_000_000, 99_999_999)}`;
    for (const name of ["Baraka", "Baraka again"]) {
      await page.getByLabel("Phone number", { exact: true }).fill(phone);
      await page.getByLabel("Name", { exact: true }).fill(name);
      await page.getByRole("button", { name: "Send invitation" }).click();
      if (name === "Baraka") await page.getByRole("status").filter({ hasText: "Baraka was invited by SMS." }).waitFor({ timeout: 30_000 });
    }
    await page.getByRole("alert").filter({ hasText: "Please check the phone: this number is already on the venue's staff." }).waitFor();
    const members = (await h.api(VenueService, venue.managerToken).listMembers({ venueId: venue.id })).members;
    assert.deepEqual(members.filter((m) => m.displayName.startsWith("Baraka")).map((m) => m.displayName), ["Baraka"]);
  });

  test("a new venue's split rule page says no rule is in force yet (not a refusal), in English and Swahili", async () => {
    const venue = await h.venue("Jacaranda Lounge");
    for (const [locale, words] of [
      ["en-KE", "No rule is in force yet. Choose how the pool is split below and put it in force."],
      ["sw-KE", "Bado hakuna kanuni inayotumika. Chagua jinsi mfuko unavyogawanywa hapa chini kisha uiweke itumike."],
    ] as const) {
      const page = await h.signedInAs({ accessToken: venue.managerToken }, { locale });
      await page.goto(`${h.url}/v/${venue.id}/rules`);
      await page.getByTestId("rule-in-force").getByText(words).waitFor({ timeout: 30_000 });
      await h.screenshot(page, `venue-no-rule-${locale}`);
    }
  });
});
