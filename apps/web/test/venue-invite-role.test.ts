// The staff page's invitation form, in a real browser: the role it offers first is
// never a manager's (the venue's roles list managers first, and a form that picked
// the first one would grant manager rights to a waiter invited without a second look).
import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { after, afterEach, before, describe, test } from "node:test";
import { MemberStatus, SplitMethod } from "@ttip/proto/ttip/venue/v1/venue_pb.js";
import { VenueService } from "@ttip/proto/ttip/venue/v1/venue_service_pb.js";
import type { Page } from "playwright-core";
import { eventually, loseFirstAnswer, WebHarness } from "./harness.js";
import { testPhone } from "@ttip/runtime/testing";

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
      await page.getByLabel(phoneLabel, { exact: true }).fill(testPhone({ format: "07" }));
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

  test("inviting a number already invited says so, naming the phone and where to send it again, not 'That was already done.'", async () => {
    const venue = await h.venue("Tamarind Dhow");
    const page = await h.signedInAs({ accessToken: venue.managerToken });
    await page.goto(`${h.url}/v/${venue.id}/staff`);
    const phone = testPhone({ format: "07" });
    for (const name of ["Baraka", "Baraka again"]) {
      await page.getByLabel("Phone number", { exact: true }).fill(phone);
      await page.getByLabel("Name", { exact: true }).fill(name);
      await page.getByRole("button", { name: "Send invitation" }).click();
      if (name === "Baraka") await page.getByRole("status").filter({ hasText: "Baraka was invited by SMS." }).waitFor({ timeout: 30_000 });
    }
    await page.getByRole("alert").filter({ hasText: "Please check the phone: this number is already invited to the venue's staff: send its invitation again from the staff list." }).waitFor();
    const members = (await h.api(VenueService, venue.managerToken).listMembers({ venueId: venue.id })).members;
    assert.deepEqual(members.filter((m) => m.displayName.startsWith("Baraka")).map((m) => m.displayName), ["Baraka"]);
  });

  test("an invitation whose answer was lost, then another person's, invites the other person: not 'check the idempotency key'", async () => {
    const venue = await h.venue("Mvule Grill");
    const page = await h.signedInAs({ accessToken: venue.managerToken });
    await page.goto(`${h.url}/v/${venue.id}/staff`);
    await loseFirstAnswer(page, "ttip.venue.v1.VenueService/InviteMember");
    for (const name of ["Neema", "Jabari"]) {
      await page.getByLabel("Phone number", { exact: true }).fill(testPhone({ format: "07" }));
      await page.getByLabel("Name", { exact: true }).fill(name);
      await page.getByRole("button", { name: "Send invitation" }).click();
      // The form's error, not Next's route announcer (also role=alert): both present, the locator matched two and threw.
      if (name === "Neema") await page.locator("p.error[role=alert]").waitFor({ timeout: 30_000 });
    }
    // Before, the second form went under the first's key: refused, naming a field the manager cannot see.
    await page.getByRole("status").filter({ hasText: "Jabari" }).waitFor({ timeout: 30_000 });
    const members = (await h.api(VenueService, venue.managerToken).listMembers({ venueId: venue.id })).members;
    assert.deepEqual(members.map((m) => m.displayName).filter((n) => n === "Neema" || n === "Jabari").sort(), ["Jabari", "Neema"]);
  });

  test("an invitation whose answer was lost, withdrawn from the list, then sent again: says it was withdrawn, not 'is invited'; sent once more, a new invitation", async () => {
    const venue = await h.venue("Msafiri Inn");
    const page = await h.signedInAs({ accessToken: venue.managerToken });
    await page.goto(`${h.url}/v/${venue.id}/staff`);
    await loseFirstAnswer(page, "ttip.venue.v1.VenueService/InviteMember");
    await page.getByLabel("Phone number", { exact: true }).fill(testPhone({ format: "07" }));
    await page.getByLabel("Name", { exact: true }).fill("Zawadi");
    const sendIt = () => page.getByRole("button", { name: "Send invitation" }).click();
    await sendIt();
    await page.locator("p.error[role=alert]").waitFor({ timeout: 30_000 });
    await page.getByRole("button", { name: "Cancel Zawadi's invitation" }).click({ timeout: 30_000 });
    await page.getByRole("status").filter({ hasText: "Zawadi" }).waitFor({ timeout: 30_000 });
    await sendIt();
    // Before, "Zawadi is invited, but the SMS could not be sent now": nobody was.
    await page.getByRole("status").filter({ hasText: "Zawadi's invitation was withdrawn before this answer came: nobody is invited." }).waitFor({ timeout: 30_000 });
    await sendIt();
    await page.getByRole("status").filter({ hasText: "Zawadi was invited by SMS." }).waitFor({ timeout: 30_000 });
    const members = (await h.api(VenueService, venue.managerToken).listMembers({ venueId: venue.id, includeLeft: true })).members;
    assert.deepEqual(members.filter((m) => m.displayName === "Zawadi").map((m) => MemberStatus[m.status]).sort(), ["CANCELLED", "INVITED"]);
  });

  test("a split rule whose answer was lost, then another method put in force, is that method: not 'check the idempotency key'", async () => {
    const venue = await h.venue("Mninga Cafe");
    const page = await h.signedInAs({ accessToken: venue.managerToken });
    await page.goto(`${h.url}/v/${venue.id}/rules`);
    await loseFirstAnswer(page, "ttip.venue.v1.VenueService/SetSplitRule");
    const method = page.getByLabel("How the pool is split");
    const putInForce = page.getByRole("button", { name: "Put this rule in force" });
    await putInForce.click();
    await page.locator("p.error[role=alert]").waitFor({ timeout: 30_000 });
    await method.selectOption({ label: "By hours worked" });
    await putInForce.click();
    // Before, the method was not part of what the form asked: the same key for another rule, refused.
    await eventually("the rule by hours in force", async () => (await h.api(VenueService, venue.managerToken).getSplitRule({ venueId: venue.id, version: 0 })).rule?.method === SplitMethod.BY_HOURS);
    await eventually("the lost answer's error gone, and none in its place", async () => (await page.locator("p.error").count()) === 0);
  });

  test("a new version of the split rule starts as the rule in force: saved to add a note, it changes nothing else; with the rule unread, nothing is saved", async () => {
    const venue = await h.venue("Baobab Terrace");
    const api = h.api(VenueService, venue.managerToken);
    await api.setSplitRule({ venueId: venue.id, method: SplitMethod.BY_HOURS, includeManagers: true, idempotencyKey: randomUUID() });
    const page = await h.signedInAs({ accessToken: venue.managerToken });
    const ruleRead = "**/ttip.venue.v1.VenueService/GetSplitRule";
    await page.route(ruleRead, (route) => route.fulfill({ status: 503, contentType: "application/json", body: JSON.stringify({ code: "unavailable", message: "venue is restarting" }) }));
    await page.goto(`${h.url}/v/${venue.id}/rules`);
    await page.getByTestId("rule-in-force").getByText("We cannot reach TTIP", { exact: false }).waitFor({ timeout: 30_000 });
    // Not read: nothing to start from, so nothing is saved (it would start from blank defaults).
    assert.equal(await page.getByRole("button", { name: "Put this rule in force" }).isDisabled(), true);
    await page.unroute(ruleRead);
    await page.reload();
    await page.getByTestId("rule-words").waitFor({ timeout: 30_000 });
    await page.getByLabel("Why it changes (kept in the audit trail)").fill("same rule, noted");
    await page.getByRole("button", { name: "Put this rule in force" }).click();
    await eventually("version 2 in force", async () => (await api.getSplitRule({ venueId: venue.id, version: 0 })).rule?.version === 2);
    const { rule } = await api.getSplitRule({ venueId: venue.id, version: 0 });
    // Before, equal shares among those on shift, managers left out: the form's blank defaults.
    assert.deepEqual([SplitMethod[rule!.method], rule!.includeManagers, rule!.note], ["BY_HOURS", true, "same rule, noted"]);
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

  test("a start date years ahead is refused in the form, and the manager's own number by the server, each naming its field with the focus on it; nothing is added", async () => {
    const venue = await h.venue("Acacia Court");
    const page = await h.signedInAs({ accessToken: venue.managerToken });
    await page.goto(`${h.url}/v/${venue.id}/staff`);
    await page.getByLabel("Role", { exact: true }).locator("option").nth(1).waitFor({ state: "attached", timeout: 30_000 });
    const focusedOn = (p: Page) => p.evaluate(() => document.activeElement?.getAttribute("name"));
    await page.getByLabel("Phone number", { exact: true }).fill(testPhone({ format: "07" }));
    await page.getByLabel("Name", { exact: true }).fill("Wanjiku");
    // A typo'd year: before, the invitation was sent and she counted for no split for years.
    await page.getByLabel("Counts for splits from (empty: now)", { exact: true }).fill(`${new Date().getUTCFullYear() + 3}-01-05T08:00`);
    await page.getByRole("button", { name: "Send invitation" }).click();
    await page.getByRole("alert").filter({ hasText: "They can start at most 90 days from today" }).waitFor();
    assert.equal(await focusedOn(page), "joinedAt");

    // Their own number (as the SMS to them was addressed): refused by the server, naming the phone.
    await page.getByLabel("Counts for splits from (empty: now)", { exact: true }).fill("");
    await page.getByLabel("Phone number", { exact: true }).fill(venue.managerPhone);
    await page.getByRole("button", { name: "Send invitation" }).click();
    await page.getByRole("alert").filter({ hasText: "Please check the phone: this is your own number" }).waitFor({ timeout: 30_000 });
    assert.equal(await focusedOn(page), "phone");
    assert.deepEqual((await h.api(VenueService, venue.managerToken).listMembers({ venueId: venue.id })).members, [], "nothing added");
  });

  test("a worker who opens a second invitation to a venue whose staff they are on reads a worker's sentence and a link home, not a token to check", async () => {
    const venue = await h.venue("Mango Tree Cafe");
    const venueApi = h.api(VenueService, venue.managerToken);
    const akinyi = await h.worker("Akinyi");
    const tokenFor = (phone: string) => eventually("the invitation SMS", () => {
      const sms = h.providers.sent.filter((m) => m.to.replace(/^\+/, "") === `254${phone.slice(1)}`).pop();
      return sms ? /\/join\/([A-Za-z0-9_-]+)/.exec(sms.body)?.[1] : undefined;
    });
    await venueApi.inviteMember({ venueId: venue.id, phone: akinyi.phone, displayName: "Akinyi", roleId: "front_of_house", idempotencyKey: randomUUID() });
    await h.api(VenueService, akinyi.token).acceptInvitation({ token: await tokenFor(akinyi.phone) });
    // The manager invited her other number too; she opens that link signed in as herself.
    const other = testPhone({ format: "07" });
    await venueApi.inviteMember({ venueId: venue.id, phone: other, displayName: "Akinyi (2nd line)", roleId: "front_of_house", idempotencyKey: randomUUID() });
    for (const [locale, join, said, home] of [
      ["en-KE", "Join Mango Tree Cafe", "You're already on Mango Tree Cafe's staff.", "Go to your home"],
      ["sw-KE", "Jiunge na Mango Tree Cafe", "Tayari uko kwenye wafanyakazi wa Mango Tree Cafe.", "Nenda mwanzo"],
    ] as const) {
      const page = await h.signedInPhone(akinyi, { locale });
      await page.goto(`${h.url}/join/${await tokenFor(other)}`);
      await page.getByRole("button", { name: join }).click({ timeout: 30_000 });
      // Before: "Please check the token: you are already on this venue's staff."
      const status = page.getByRole("status").filter({ hasText: said });
      await status.waitFor();
      assert.equal(await page.getByRole("alert").filter({ hasText: /token|staff|wafanyakazi/ }).count(), 0, `${locale}: no refusal`);
      assert.equal(await status.getByRole("link", { name: home }).getAttribute("href"), "/w");
    }
  });

  test("the venue's forms put the focus on the field to correct; a period typed backwards is said at once on Shifts and Reports, and the server is not asked", async () => {
    const venue = await h.venue("Savannah Grill");
    const page = await h.signedInAs({ accessToken: venue.managerToken });
    const focusedId = () => page.evaluate(() => document.activeElement?.id);
    const refused = async (said: string, id: string) => {
      await page.getByRole("alert").filter({ hasText: said }).waitFor({ timeout: 30_000 });
      // Before, the focus stayed on the button that sent the form.
      assert.equal(await focusedId(), id, `${said}: the focus`);
    };
    await page.goto(`${h.url}/v/${venue.id}/staff`);
    await page.getByLabel("Role id").fill("Bar Staff");
    await page.getByRole("button", { name: "Save role" }).click();
    await refused("A role's id is 2 to 32 lower-case letters", "roleId");
    for (const typed of ["2.5", ""]) {
      // Cleared, the role was saved at 0 points before (Number("") is 0): its members were paid nothing from the pool.
      if (!typed) await page.reload();
      await page.getByLabel("Role id").fill("barista");
      await page.getByLabel("Points").fill(typed);
      await page.getByRole("button", { name: "Save role" }).click();
      await refused("Points are a whole number from 0 to 1000.", "points");
    }

    await page.goto(`${h.url}/v/${venue.id}/shifts`);
    await page.getByLabel("Start", { exact: true }).fill("2026-12-02T18:00");
    await page.getByLabel("End", { exact: true }).fill("2026-12-02T10:00");
    await page.getByRole("button", { name: "Record shift" }).click();
    await refused("The shift must end after it starts.", "end");
    // Before: "Please check the period end: must be after period.start.", from the server at each keystroke.
    const periodCalls: string[] = [];
    page.on("request", (r) => /GetHours|ListShifts|GetPeriodReport/.test(r.url()) && periodCalls.push(r.url()));
    for (const screen of ["shifts", "reports"]) {
      if (screen === "reports") {
        await page.goto(`${h.url}/v/${venue.id}/reports`);
        await page.getByText("Collected KES 0").waitFor({ timeout: 30_000 });
      }
      periodCalls.length = 0;
      await page.getByLabel("Until", { exact: true }).fill("2020-01-01T00:00");
      await page.getByRole("alert").filter({ hasText: "The period must end after it starts." }).waitFor();
      await page.waitForTimeout(300);
      assert.deepEqual(periodCalls, [], `${screen}: the server not asked`);
      assert.equal(await page.getByRole("alert").filter({ hasText: "period.start" }).count(), 0);
    }

    await page.goto(`${h.url}/v/${venue.id}/distributions`);
    await page.getByLabel(/Period until/).fill("2020-01-01T00:00:00");
    await page.getByRole("button", { name: "Preview the split" }).click();
    await refused("The period must end after it starts.", "end");

    await page.goto(`${h.url}/v/${venue.id}`);
    await page.getByRole("button", { name: "Make a table code" }).click();
    await refused("Name the table (1 to 20 characters)", "table");
  });

  test("fixed percentages: a percentage that is not one, or a total that is not 100%, is said with the focus on the member's box", async () => {
    const venue = await h.venue("Baobab Court");
    const venueApi = h.api(VenueService, venue.managerToken);
    const zawadi = await h.worker("Zawadi");
    await venueApi.inviteMember({ venueId: venue.id, phone: zawadi.phone, displayName: "Zawadi", roleId: "front_of_house", idempotencyKey: randomUUID() });
    const token = await eventually("the invitation SMS", () => {
      const sms = h.providers.sent.filter((m) => m.to.replace(/^\+/, "") === `254${zawadi.phone.slice(1)}`).pop();
      return sms ? /\/join\/([A-Za-z0-9_-]+)/.exec(sms.body)?.[1] : undefined;
    });
    await h.api(VenueService, zawadi.token).acceptInvitation({ token });
    const page = await h.signedInAs({ accessToken: venue.managerToken });
    await page.goto(`${h.url}/v/${venue.id}/rules`);
    await page.getByLabel("How the pool is split").selectOption({ label: "Fixed percentages" });
    const box = page.getByLabel("Zawadi", { exact: true });
    const focused = () => box.evaluate((el) => el === document.activeElement);
    await box.fill("12.345");
    await page.getByRole("button", { name: "Put this rule in force" }).click();
    await page.getByRole("alert").filter({ hasText: "Zawadi's percentage: a number from 0 to 100" }).waitFor({ timeout: 30_000 });
    assert.ok(await focused(), "the focus on Zawadi's percentage");
    await box.fill("60");
    await page.getByRole("button", { name: "Put this rule in force" }).click();
    await page.getByRole("alert").filter({ hasText: "The percentages add up to 60%" }).waitFor();
    assert.ok(await focused(), "the focus on the first percentage");
  });

  test("a clock-in left open by a member removed over a day after it is replaced from Shifts: a member who left is offered there, where before none was (each split over it held back, the pool's money in it)", async () => {
    const HOUR = 3_600_000;
    const venue = await h.venue("Harbour Cafe");
    const venueApi = h.api(VenueService, venue.managerToken);
    const akinyi = await h.worker("Akinyi");
    const { member } = await venueApi.inviteMember({ venueId: venue.id, phone: akinyi.phone, displayName: "Akinyi", roleId: "front_of_house", idempotencyKey: randomUUID() });
    const msisdn = `254${akinyi.phone.slice(1)}`;
    const token = await eventually("the invitation SMS", () => {
      const sms = h.providers.sent.filter((m) => m.to.replace(/^\+/, "") === msisdn).pop();
      return sms ? /\/join\/([A-Za-z0-9_-]+)/.exec(sms.body)?.[1] : undefined;
    });
    await h.api(VenueService, akinyi.token).acceptInvitation({ token });
    const { shift } = await h.api(VenueService, akinyi.token).clockIn({ venueId: venue.id });
    const clockedIn = new Date(Math.floor((Date.now() - 30 * HOUR) / HOUR) * HOUR);
    // On the staff for days, clocked in 30 hours ago and never out.
    await h.sql("UPDATE venue.members SET joined_at = $2 WHERE member_id = $1", [member!.memberId, new Date(Date.now() - 72 * HOUR)]);
    await h.sql("UPDATE venue.shifts SET started_at = $2 WHERE shift_id = $1", [shift!.shiftId, clockedIn]);
    await venueApi.removeMember({ venueId: venue.id, memberId: member!.memberId, reason: "left" });

    const page = await h.signedInAs({ accessToken: venue.managerToken });
    await page.goto(`${h.url}/v/${venue.id}/shifts`);
    await page.getByLabel("Member", { exact: true }).selectOption({ label: "Akinyi (left)" }, { timeout: 30_000 });
    const nairobiWall = (at: Date) => new Date(at.getTime() + 3 * HOUR).toISOString().slice(0, 16);
    const ended = new Date(clockedIn.getTime() + 6 * HOUR);
    await page.getByLabel("Start", { exact: true }).fill(nairobiWall(clockedIn));
    await page.getByLabel("End", { exact: true }).fill(nairobiWall(ended));
    await page.getByRole("button", { name: "Record shift" }).click();
    await page.getByRole("status").filter({ hasText: "Shift recorded." }).or(page.locator("p.error")).first().waitFor();
    assert.equal(await page.locator("p.error").count(), 0, await page.locator("p.error").first().innerText().catch(() => ""));
    const period = { start: { seconds: BigInt((clockedIn.getTime() - HOUR) / 1000) }, end: { seconds: BigInt(Math.floor(Date.now() / 1000) + 60) } };
    const { shifts } = await venueApi.listShifts({ venueId: venue.id, period });
    assert.equal(shifts.find((s) => s.shiftId === shift!.shiftId)?.endedAt?.seconds, BigInt(ended.getTime() / 1000), "the clock-in's row, now the shift recorded");
  });

  test("a new venue's empty screens say what is empty, in English and Swahili; Record shift with no one on the staff says so, not \"member id: must be a valid UUID\"", async () => {
    const venue = await h.venue("Mvule Terrace");
    for (const [locale, staff, shifts, noMember, distributions, record] of [
      ["en-KE", "No one is on the staff yet: invite them by phone below.", "No shifts in this period.", "No one has joined the staff yet", "No distribution yet: preview a period above, then confirm it.", "Record shift"],
      ["sw-KE", "Bado hakuna mfanyakazi: waalike kwa namba ya simu hapa chini.", "Hakuna zamu katika kipindi hiki.", "Bado hakuna aliyejiunga na wafanyakazi", "Bado hakuna mgao: hakiki kipindi hapo juu, kisha ukithibitishe.", undefined],
    ] as const) {
      const page = await h.signedInAs({ accessToken: venue.managerToken }, { locale });
      // Before, empty tables with their headings only.
      await page.goto(`${h.url}/v/${venue.id}/staff`);
      await page.getByTestId("no-staff").filter({ hasText: staff }).waitFor({ timeout: 30_000 });
      await page.goto(`${h.url}/v/${venue.id}/shifts`);
      // The hours and the shifts load apart: both said, and no third.
      await page.getByText(shifts).nth(1).waitFor({ timeout: 30_000 });
      assert.equal(await page.getByText(shifts).count(), 2, `${locale}: the hours and the shifts`);
      // Before, Record shift sent an empty member and read "Please check the member id: must be a valid UUID".
      await page.getByTestId("no-member-to-record").filter({ hasText: noMember }).waitFor();
      if (record) {
        await page.getByLabel("Start", { exact: true }).fill("2026-12-02T08:00");
        await page.getByLabel("End", { exact: true }).fill("2026-12-02T16:00");
        await page.getByRole("button", { name: record }).click();
        await page.getByRole("alert").filter({ hasText: noMember }).waitFor();
        assert.equal(await page.getByRole("alert").filter({ hasText: "member id" }).count(), 0);
      }
      await page.goto(`${h.url}/v/${venue.id}/distributions`);
      await page.getByTestId("no-distributions").filter({ hasText: distributions }).waitFor({ timeout: 30_000 });
    }
  });

  test("a staff link accepted from another number than the invited one: the staff list says which number joined", async () => {
    const venue = await h.venue("Mama Rocks");
    const invited = testPhone({ format: "07" });
    await h.api(VenueService, venue.managerToken).inviteMember({ venueId: venue.id, phone: invited, displayName: "Achieng", roleId: "bar", idempotencyKey: randomUUID() });
    const token = await eventually("the invitation SMS", () => {
      const sms = h.providers.sent.filter((m) => m.to.replace(/^\+/, "") === `254${invited.slice(1)}`).pop();
      return sms ? /\/join\/([A-Za-z0-9_-]+)/.exec(sms.body)?.[1] : undefined;
    });
    // Her account is on her other SIM.
    const achieng = await h.worker("Achieng");
    await h.api(VenueService, achieng.token).acceptInvitation({ token });
    const page = await h.signedInAs({ accessToken: venue.managerToken }, { viewport: { width: 1000, height: 900 }, isMobile: false });
    await page.goto(`${h.url}/v/${venue.id}/staff`);
    const row = page.getByTestId("staff").getByRole("row").filter({ hasText: "Achieng" });
    await row.getByText(`accepted from 2547******${achieng.phone.slice(-2)}`).waitFor({ timeout: 30_000 });
    assert.match(await row.innerText(), new RegExp(`2547\\*{6}${invited.slice(-2)}`), "the invited number still shown");
  });

  test("an invitation is sent again from the staff list: a new link, the old one no longer works; an expired link says when it stopped, with no button to press; then it is cancelled", async () => {
    const venue = await h.venue("Pilipili Grill");
    const phone = testPhone({ format: "07" });
    await h.api(VenueService, venue.managerToken).inviteMember({ venueId: venue.id, phone, displayName: "Pendo", roleId: "bar", idempotencyKey: randomUUID() });
    const links = () => h.providers.sent.filter((m) => m.to.replace(/^\+/, "") === `254${phone.slice(1)}`).map((m) => /\/join\/([A-Za-z0-9_-]+)/.exec(m.body)?.[1]);
    const first = await eventually("the invitation SMS", () => links()[0]);
    const page = await h.signedInAs({ accessToken: venue.managerToken }, { viewport: { width: 1100, height: 900 }, isMobile: false });
    await page.goto(`${h.url}/v/${venue.id}/staff`);
    const row = page.getByTestId("staff").getByRole("row").filter({ hasText: "Pendo" });
    await row.getByText(/link works until/).waitFor({ timeout: 30_000 });
    // Within a minute of the first SMS: refused in words, nothing sent.
    await row.getByRole("button", { name: "Send Pendo's invitation again" }).click();
    await page.locator("p.error[role=alert]").filter({ hasText: "less than a minute ago" }).waitFor({ timeout: 30_000 });
    assert.equal(links().length, 1);

    // A minute on (as if), the manager sends it again: a new link, and the first says it no longer works.
    await h.sql("UPDATE venue.members SET invite_sent_at = invite_sent_at - interval '2 minutes' WHERE phone = $1", [`254${phone.slice(1)}`]);
    await row.getByRole("button", { name: "Send Pendo's invitation again" }).click();
    await page.getByRole("status").filter({ hasText: "Pendo has a new link by SMS; the one before no longer works." }).waitFor({ timeout: 30_000 });
    const onPhone = await h.signedInAs({ accessToken: venue.managerToken });
    await onPhone.goto(`${h.url}/v/${venue.id}/staff`);
    await onPhone.getByTestId("staff").getByRole("button", { name: "Send Pendo's invitation again" }).waitFor({ timeout: 30_000 });
    await h.screenshot(onPhone, "venue-staff-invited-phone");
    await onPhone.getByTestId("staff").evaluate((t) => t.parentElement!.scrollBy(1000, 0));
    await h.screenshot(onPhone, "venue-staff-invited-phone-scrolled");
    const second = await eventually("the second SMS", () => links()[1]);
    assert.notEqual(second, first);
    const worker = await h.worker("Pendo");
    const joining = await h.signedInPhone(worker);
    await joining.goto(`${h.url}/join/${first}`);
    await joining.getByText("This invitation link no longer works").waitFor({ timeout: 30_000 });

    // Fourteen days on (as if): the list says so, and the link's page says since when, in English and Swahili.
    await h.sql("UPDATE venue.members SET invite_expires_at = now() - interval '1 day' WHERE phone = $1", [`254${phone.slice(1)}`]);
    await page.reload();
    await row.getByTestId("link-expired").filter({ hasText: "link stopped working" }).waitFor({ timeout: 30_000 });
    await joining.goto(`${h.url}/join/${second}`);
    await joining.getByRole("alert").filter({ hasText: /This invitation's link stopped working on .+\. Ask Pilipili Grill's manager to send it again/ }).waitFor({ timeout: 30_000 });
    assert.equal(await joining.getByRole("button", { name: "Join Pilipili Grill" }).count(), 0, "no accept button under an expired link");
    await h.screenshot(joining, "join-expired-en");
    const swahili = await h.phone({ locale: "sw-KE" });
    await swahili.goto(`${h.url}/join/${second}`);
    await swahili.getByRole("alert").filter({ hasText: /Kiungo cha mwaliko huu kiliacha kufanya kazi tarehe .+\. Muombe meneja wa Pilipili Grill akutumie tena/ }).waitFor({ timeout: 30_000 });
    const members = (await h.api(VenueService, venue.managerToken).listMembers({ venueId: venue.id })).members;
    assert.deepEqual(members.map((m) => [m.displayName, m.workerId]), [["Pendo", ""]], "nothing accepted");

    // Withdrawn from the list: the row says so, with nothing left to press.
    await row.getByRole("button", { name: "Cancel Pendo's invitation" }).click();
    await page.getByRole("status").filter({ hasText: "Pendo's invitation is cancelled: its link no longer works." }).waitFor({ timeout: 30_000 });
    await row.getByText("invitation cancelled").waitFor({ timeout: 30_000 });
    assert.equal(await row.getByRole("button").count(), 0, "nothing to send again or cancel");
  });
});
