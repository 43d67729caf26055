// The worker's screens in Swahili, their settings, the payout fee before
// withdrawing, the statement as PDF, the home's live stream and its charts:
// a real browser at phone size against the platform as make run serves it.
import assert from "node:assert/strict";
import { generateKeyPairSync, randomUUID, sign } from "node:crypto";
import { readFileSync } from "node:fs";
import { after, afterEach, before, describe, test } from "node:test";
import { timestampDate, timestampFromDate } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError } from "@connectrpc/connect";
import { AnalyticsService } from "@ttip/proto/ttip/analytics/v1/analytics_service_pb.js";
import { Locale } from "@ttip/proto/ttip/auth/v1/auth_pb.js";
import { AuthService } from "@ttip/proto/ttip/auth/v1/auth_service_pb.js";
import { Channel, TemplateKey } from "@ttip/proto/ttip/notification/v1/notification_pb.js";
import { NotificationService } from "@ttip/proto/ttip/notification/v1/notification_service_pb.js";
import { PaymentService } from "@ttip/proto/ttip/payment/v1/payment_service_pb.js";
import { OwnerKind } from "@ttip/proto/ttip/qr/v1/qr_pb.js";
import { QrService } from "@ttip/proto/ttip/qr/v1/qr_service_pb.js";
import { WalletService } from "@ttip/proto/ttip/wallet/v1/wallet_service_pb.js";
import type { Page } from "playwright-core";
import { testPhone } from "@ttip/runtime/testing";
import { nairobiDateTime, nairobiMonthOf, nairobiMonthStart } from "../src/lib/nairobi-time.js";
import { eventually, WebHarness } from "./harness.js";
import { drawPng } from "./pictures.js";
import { formatMoney } from "../src/lib/money.js";

/** Waits for a settings form's "Saved."; on a timeout, says what the form showed instead. */
async function saved(page: Page, form: string): Promise<void> {
  await page.getByTestId(form).getByRole("status").waitFor({ timeout: 10_000 }).catch(async (err) => {
    await page.screenshot({ path: "/tmp/wt-web-fail.png", fullPage: true });
    throw new Error(`${(err as Error).message}\nthe page says: ${await page.locator("main").innerText()}`);
  });
}

describe("the worker's screens in Swahili, settings, fee, PDF statement, live home and charts (chromium at phone size)", () => {
  const h = new WebHarness();
  before(() => h.start().then(() => undefined));
  afterEach(() => h.closePages());
  after(() => h.stop());

  test("a Swahili phone: the home goes live over the stream, a tip arrives, the charts equal the CSV, the fee is quoted, the statement comes as PDF", async () => {
    const worker = await h.worker("Amina");
    const page = await h.signedInPhone(worker, { locale: "sw-KE", acceptDownloads: true });
    // The page's timers on a clock the test can run ahead: a poll, were one set up at load, falls due without waiting for it.
    await page.clock.install();
    await page.goto(`${h.url}/w`);
    await page.getByRole("heading", { name: "Tips zako" }).waitFor();
    // Live over analytics' WatchDashboard stream: no polling while it is up.
    const liveState = page.getByTestId("live-state");
    await liveState.filter({ hasText: "Moja kwa moja" }).waitFor({ timeout: 20_000 });
    const snapshots = async () => Number(await liveState.getAttribute("data-snapshots"));
    const listCalls: string[] = [];
    page.on("request", (r) => r.url().endsWith("/ttip.payment.v1.PaymentService/ListTips") && listCalls.push(r.url()));
    const before = await snapshots();
    await page.clock.runFor(6_000); // longer than the 5 s poll
    // A snapshot the stream sends (a late event of the sign-up, say) refreshes the list once; a poll would add more.
    assert.match((await liveState.textContent()) ?? "", /^Moja kwa moja/, "still live");
    assert.ok(listCalls.length <= (await snapshots()) - before, `the tips are not polled while the stream is live: ${listCalls.length} calls`);

    await h.api(PaymentService).createTip({
      idempotencyKey: randomUUID(),
      recipient: { case: "workerId", value: worker.id },
      amount: { amountMinor: 30_000n, currency: "KES" },
      payment: { case: "mpesaPhone", value: testPhone({ format: "07" }) },
    });
    await page.getByTestId("latest-tips").getByText("KES 300 · imepokelewa").waitFor({ timeout: 20_000 });
    assert.ok(listCalls.length >= 1, "the stream's snapshot made the list refresh");

    // The charts show analytics' own figures: each bar equals its row of the CSV export.
    await page.getByTestId("chart-hours").locator('g[data-value="30000"]').waitFor({ timeout: 20_000 });
    await h.screenshot(page, "worker-home-sw");
    // One tip today, this week and this month: "tip 1", never the plural "tips 1".
    assert.deepEqual(await page.getByTestId("earnings-periods").locator(".muted").allInnerTexts(), ["tip 1", "tip 1", "tip 1"]);
    const from = nairobiMonthStart(new Date()); // the home's range: statements and "this month" are Nairobi months
    const { csv } = await h.api(AnalyticsService, worker.token).exportEarnings({
      range: { from: timestampFromDate(from), to: timestampFromDate(new Date(Date.now() + 86_400_000)) },
      scope: { case: "workerId", value: worker.id },
    });
    const rows = new TextDecoder().decode(csv).trim().split("\n").map((l) => l.split(","));
    const bars = async (testId: string) => page.getByTestId(testId).locator("g[data-value]").evaluateAll((gs) => gs.map((g) => g.getAttribute("data-value")));
    assert.deepEqual(await bars("chart-hours"), rows.filter((r) => r[0] === "hour_of_day").map((r) => r[3]));
    assert.deepEqual(await bars("chart-weekdays"), rows.filter((r) => r[0] === "weekday").map((r) => r[3]));
    // Money on the home is what the worker received (net_minor), as the balance shows it, not what the customer tipped.
    const period = (k: string) => rows.find((r) => r[0] === "period" && r[1] === k)!;
    assert.deepEqual(await bars("chart-periods"), ["today", "this_week", "this_month"].map((k) => period(k)[4]));
    const average = await page.getByTestId("average-tip").getAttribute("data-value");
    assert.equal(average, String(BigInt(period("in_range")[4]) / BigInt(period("in_range")[2])));
    const balance = (await h.api(WalletService, worker.token).getBalance({ currency: "KES" })).balances[0];
    const received = balance.ledger!.amountMinor;
    assert.ok(received > 0n && received < 30_000n, `the fee came off the KES 300 tip: ${received}`);
    assert.equal(average, String(received), "one tip: its average is the balance it made");
    assert.equal(await bars("chart-periods").then((b) => b[0]), String(received), "today's bar is the balance too");
    await page.getByTestId("periods").filter({ hasText: `Leo: ${formatMoney(received, "KES")} ·` }).waitFor();

    // The payout fee, quoted as the amount is typed, equals the wallet's quote.
    await page.getByRole("link", { name: "Toa pesa" }).click();
    await page.getByLabel("Kiasi (KES, shilingi kamili)").fill("200");
    const { fee } = await h.api(WalletService, worker.token).quoteWithdrawalFee({ amount: { amountMinor: 20_000n, currency: "KES" } });
    const feeText = `KES ${fee!.amountMinor / 100n}`;
    await page.getByTestId("withdraw-fee").filter({ hasText: `Ada ya M-Pesa kwa KES 200: ${feeText}` }).waitFor();
    await page.getByLabel("Kiasi (KES, shilingi kamili)").fill("0");
    await page.getByRole("button", { name: "Toa", exact: true }).click();
    // The most one withdrawal may be: the per-withdrawal limit the screen shows above (KES 20,000 for a new worker).
    await page.getByRole("alert").filter({ hasText: "Weka shilingi kamili, kuanzia 10 hadi 20,000." }).waitFor();
    await h.screenshot(page, "worker-withdraw-sw");

    // This month's statement as PDF, in Swahili, with the tip's row.
    await page.getByRole("link", { name: "Taarifa" }).click();
    const [download] = await Promise.all([page.waitForEvent("download"), page.getByRole("button", { name: "Pakua PDF" }).click()]);
    assert.match(download.suggestedFilename(), /^ttip-statement-\d{4}-\d{2}\.pdf$/);
    const pdf = readFileSync((await download.path())!).toString("latin1");
    assert.ok(pdf.startsWith("%PDF-1.4") && pdf.endsWith("%%EOF\n"));
    assert.match(pdf, /\(Taarifa ya TTIP \d{4}-\d{2}\) Tj/);
    const { rows: statement, closingBalance } = await h.api(WalletService, worker.token).getStatement({ ...nairobiMonthOf(from), currency: "KES", format: 1 });
    assert.ok(statement.length >= 1);
    assert.ok(pdf.includes(`(Salio la mwisho: KES ${closingBalance!.amountMinor / 100n})`), "the closing balance the wallet gives");
    await h.screenshot(page, "worker-statements-sw");
  });

  test("signing in on a Swahili phone: a wrong code and a wrong PIN are said in Swahili with the tries left, and the code step has a way back to the number", async () => {
    const worker = await h.worker("Zawadi");
    const page = await h.phone({ locale: "sw-KE" });
    await page.goto(`${h.url}/w/signin`);
    const sms = () => h.sms.lastTo(worker.phone.replace(/^0/, "254"))?.message;
    const askCode = async () => {
      const before = sms();
      h.clock.advance(1_100); // past the resend wait after the code before
      await page.getByLabel("Namba yako ya simu").fill(worker.phone);
      await page.getByRole("button", { name: "Nitumie namba" }).click();
      await page.getByLabel("Namba ya tarakimu 6 tuliyotuma kwa SMS").waitFor();
      await eventually("a new code by SMS", () => sms() !== before);
    };
    await askCode();
    await page.getByLabel("Namba ya tarakimu 6 tuliyotuma kwa SMS").fill(h.otpFor(worker.phone) === "000000" ? "111111" : "000000");
    await page.getByRole("button", { name: "Endelea" }).click();
    // The form's own refusal (Next's route announcer is an alert too).
    const alert = page.locator("form").getByRole("alert");
    await alert.filter({ hasText: "Hiyo si namba tuliyotuma. Umebakiwa na majaribio 4." }).waitFor();
    await h.screenshot(page, "worker-signin-wrong-code-sw");
    // Back to the number, and a new code.
    await page.getByRole("button", { name: "Tumia namba nyingine au pata namba mpya" }).click();
    await eventually("the old refusal gone", async () => (await alert.count()) === 0);
    await askCode();
    await page.getByLabel("Namba ya tarakimu 6 tuliyotuma kwa SMS").fill(h.otpFor(worker.phone));
    await page.getByRole("button", { name: "Endelea" }).click();
    await page.getByLabel("PIN yako").fill("1357");
    await page.getByRole("button", { name: "Endelea" }).click();
    await alert.filter({ hasText: "PIN si sahihi. Umebakiwa na majaribio 4 kabla PIN yako haijafungwa." }).waitFor();
    assert.doesNotMatch((await alert.textContent()) ?? "", /wrong|tries|left/, "no English inside the Swahili");
    // The PIN step ends (five minutes after the code): back to the number, said why. Before, each Continue was refused
    // with a general sentence, and the step offered no way back to the number.
    await h.sql("UPDATE auth.pin_sessions SET expires_at = now() - interval '1 hour' WHERE user_id = $1", [worker.id]);
    await page.getByLabel("PIN yako").fill(worker.pin);
    await page.getByRole("button", { name: "Endelea" }).click();
    await alert.filter({ hasText: "Muda wa kuingia umekwisha (dakika 5 baada ya namba)" }).waitFor();
    // The PIN typed is not carried into the number's field, shown there in plain text.
    assert.equal(await page.getByLabel("Namba yako ya simu").inputValue(), "");
    await askCode();
    await page.getByLabel("Namba ya tarakimu 6 tuliyotuma kwa SMS").fill(h.otpFor(worker.phone));
    await page.getByRole("button", { name: "Endelea" }).click();
    await page.getByLabel("PIN yako").fill(worker.pin);
    await page.getByRole("button", { name: "Endelea" }).click();
    await page.waitForURL(/\/w$/);
  });

  test("before the screens' script has run (a slow phone), their placeholder is in the page's language", async () => {
    for (const [locale, word] of [["sw-KE", "Inapakia…"], ["en-KE", "Loading…"]]) {
      const page = await h.phone({ locale, javaScriptEnabled: false });
      for (const path of ["/w", "/v", "/join/some-invitation"]) {
        await page.goto(`${h.url}${path}`);
        assert.equal((await page.locator("main").innerText()).trim(), word, `${path} in ${locale}`);
      }
    }
  });

  test("settings: each form checks as the contract does before calling, then saves name, payout number, PIN, notifications and language where they belong", async () => {
    const worker = await h.worker("Baraka");
    const page = await h.signedInPhone(worker);
    await page.goto(`${h.url}/w/settings`);
    await page.getByRole("heading", { name: "Settings" }).waitFor();
    const notifications = h.api(NotificationService, worker.token);
    const before = await notifications.getPreferences({});

    // Refused in the browser, nothing sent: quiet hours need both ends.
    await page.getByLabel("Quiet hours from (HH:MM, East Africa Time)").fill("22:00");
    await page.getByRole("button", { name: "Save notifications" }).click();
    await page.getByTestId("form-notifications").getByRole("alert").filter({ hasText: "Give quiet hours as HH:MM" }).waitFor();
    assert.deepEqual(await notifications.getPreferences({}), before, "nothing changed");

    await page.getByLabel("Quiet hours until (HH:MM)").fill("06:30");
    await page.getByLabel("E-mail for messages (optional)").fill("baraka@example.com");
    await page.getByLabel("A tip arrives: E-mail").check();
    await page.getByLabel("Weekly summary: SMS").uncheck();
    // A pool share's channels are chosen too (before, not offered: the service refused the kind).
    await page.getByLabel("A share of the venue's pool arrives: SMS").uncheck();
    await page.getByRole("button", { name: "Save notifications" }).click();
    await saved(page, "form-notifications");
    const prefs = (await notifications.getPreferences({})).preferences!;
    assert.equal(prefs.quietHoursStart, "22:00");
    assert.equal(prefs.quietHoursEnd, "06:30");
    assert.equal(prefs.email, "baraka@example.com");
    assert.ok(prefs.kinds.find((k) => k.key === TemplateKey.TIP_RECEIVED)!.channels.includes(Channel.EMAIL));
    assert.ok(!prefs.kinds.find((k) => k.key === TemplateKey.WEEKLY_SUMMARY)!.channels.includes(Channel.SMS));
    assert.deepEqual(prefs.kinds.find((k) => k.key === TemplateKey.POOL_SHARE)?.channels, [Channel.PUSH, Channel.IN_APP]);
    // The field emptied removes the address (before: "Saved.", and the address kept).
    await page.getByLabel("E-mail for messages (optional)").fill("");
    await page.getByRole("button", { name: "Save notifications" }).click();
    await eventually("the address removed", async () => (await notifications.getPreferences({})).preferences!.email === "");
    await saved(page, "form-notifications");

    // Profile: auth's and the tip page's (qr) names change together. The tip page's profile unread when the page
    // opened (qr out of reach): read again before the save, its city kept (before, saved as none: the city wiped).
    await h.api(QrService, worker.token).putProfile({ ownerKind: OwnerKind.WORKER, ownerId: worker.id, displayName: "Baraka", currency: "KES", city: "Kisumu" });
    await page.route("**/ttip.qr.v1.QrService/GetProfile", (route) =>
      route.fulfill({ status: 503, contentType: "application/json", body: JSON.stringify({ code: "unavailable", message: "upstream unavailable" }) }), { times: 1 });
    await page.reload();
    await page.getByRole("heading", { name: "Settings" }).waitFor();
    await page.getByLabel("Your name (as customers see it)").fill("Baraka O.");
    await page.getByLabel("Photo (a link starting with https://)").fill("http://insecure.example/p.jpg");
    await page.getByRole("button", { name: "Save profile" }).click();
    await page.getByTestId("form-profile").getByRole("alert").filter({ hasText: "https://" }).waitFor();
    await page.getByLabel("Photo (a link starting with https://)").fill("");
    await page.getByRole("button", { name: "Save profile" }).click();
    await saved(page, "form-profile");
    assert.equal((await h.api(AuthService, worker.token).getMe({})).user!.displayName, "Baraka O.");
    const kept = (await h.api(QrService, worker.token).getProfile({ ownerKind: OwnerKind.WORKER, ownerId: worker.id })).profile!;
    assert.deepEqual([kept.displayName, kept.city], ["Baraka O.", "Kisumu"]);

    // Payout number and automatic payout.
    // The sign-in phone first: a first number other than it waits a day for automatic payouts.
    await page.getByLabel("Payout M-Pesa number").fill(worker.phone);
    await page.getByLabel("Pay out automatically").check();
    await page.getByLabel("Minimum balance for automatic payout (KES)").fill("500");
    await page.getByRole("button", { name: "Save payout settings" }).click();
    await saved(page, "form-payout");
    await page.getByTestId("payout-phone").waitFor();
    const payout = (await h.api(PaymentService, worker.token).getPayoutSettings({})).settings!;
    assert.equal(payout.autoPayout, true);
    assert.equal(payout.autoPayoutMinimum!.amountMinor, 50_000n);
    assert.equal(payout.payoutPhoneMasked, `2547******${worker.phone.slice(-2)}`);
    // A number replacing it: automatic payouts to it wait a day, and the screen says until when.
    assert.equal(await page.getByTestId("payout-cooling").count(), 0, "the sign-in phone as first number waits for nothing");
    await page.getByLabel("Payout M-Pesa number").fill("0722 345 679");
    await page.getByRole("button", { name: "Save payout settings" }).click();
    const cooling = page.getByTestId("payout-cooling");
    await h.pinIfAsked(page, worker.pin, cooling);
    await cooling.filter({ hasText: "Automatic payouts to this new number start" }).waitFor();
    // Replaced with this browser's device proof for that number (before, the session alone redirected the payouts).
    const { rows: proofs } = await h.sql("SELECT count(*)::int AS n FROM auth.step_up_tokens WHERE user_id = $1 AND purpose = 'payout_number' AND used_at IS NOT NULL", [worker.id]);
    assert.equal(proofs[0].n, 1, "one payout_number step-up spent");
    const from = (await h.api(PaymentService, worker.token).getPayoutSettings({})).settings!.automaticPayoutsFrom!;
    assert.ok((await cooling.textContent())!.includes(nairobiDateTime(timestampDate(from)).slice(0, 16)), "the time the service gave, in Nairobi");

    // PIN: a wrong current PIN is a sentence from auth; the right one changes it.
    await page.getByLabel("Current PIN").fill("1357");
    await page.getByLabel("New PIN (4 to 6 digits)").fill("5931");
    await page.getByLabel("The same PIN again").fill("5931");
    await page.getByRole("button", { name: "Change PIN" }).click();
    const wrong = await page.getByTestId("form-pin").getByRole("alert").textContent();
    assert.ok(wrong && !/\b[A-Z_]{5,}\b/.test(wrong), `a plain sentence, no code: ${wrong}`);
    await page.getByLabel("Current PIN").fill(worker.pin);
    await page.getByRole("button", { name: "Change PIN" }).click();
    await saved(page, "form-pin");
    const signedInAgain = await h.tokens({ phone: worker.phone, pin: "5931" });
    // The worker's other session (the test's own) ended with the change; this browser's, which made it, goes on.
    assert.equal(await h.api(AuthService, worker.token).getMe({}).then(() => undefined, (e) => ConnectError.from(e).code), Code.Unauthenticated);
    await h.screenshot(page, "worker-settings");

    // Language: the screens, auth's profile and notification's messages.
    await page.getByLabel("Language for the app and messages").selectOption("sw");
    await page.getByRole("button", { name: "Save language" }).click();
    await page.getByRole("heading", { name: "Mipangilio" }).waitFor();
    assert.equal((await h.api(AuthService, signedInAgain.accessToken).getMe({})).user!.locale, Locale.SW);
    await eventually("messages in Swahili", async () => (await h.api(NotificationService, signedInAgain.accessToken).getPreferences({})).preferences!.locale === "sw");
    // The alerts table's Swahili headings ("Ndani ya programu") are wider than the English: the page still fits a 360 px phone.
    await page.getByRole("columnheader", { name: "Ndani ya programu" }).waitFor();
    assert.deepEqual(await page.evaluate(() => ({ page: document.documentElement.scrollWidth, screen: document.documentElement.clientWidth })), { page: 360, screen: 360 });
    await h.screenshot(page, "worker-settings-sw");
  });

  test("another tab signing in someone else loads this one again for them, whose save changed the second's account with the first's details; signing out there sends this one to sign in", async () => {
    const [first, second] = [await h.worker("Amani"), await h.worker("Zawadi")];
    const page = await h.signedInPhone(first);
    await page.goto(`${h.url}/w/settings`);
    const name = page.getByLabel("Your name (as customers see it)");
    await eventually("the first worker's name", async () => (await name.inputValue()) === "Amani");
    // Another tab of this browser, where the second worker signs in (the session the sign-in screen saves).
    const other = await page.context().newPage();
    try {
      await other.goto(`${h.url}/w/signin`);
      const { accessToken, refreshToken } = await h.tokens(second);
      const session = JSON.stringify({ accessToken, refreshToken, userId: second.id });
      await other.evaluate((s) => localStorage.setItem("ttip_session", s), session);
      // Before, this tab kept the first worker's settings, saved then as the second's.
      await eventually("this tab shows the second worker", async () => (await name.inputValue()) === "Zawadi");
      await other.evaluate(() => localStorage.removeItem("ttip_session"));
      // Before, it kept the second worker's settings up, beside errors.
      await page.waitForURL(`${h.url}/w/signin`);
    } finally {
      await other.close();
    }
  });

  test("settings whose read failed are not offered to save: drawn empty, saving the payout number switched automatic payouts off", async () => {
    const worker = await h.worker("Wairimu");
    await h.api(PaymentService, worker.token).updatePayoutSettings({ payoutPhone: worker.phone, autoPayout: true, autoPayoutMinimum: { amountMinor: 50_000n, currency: "KES" } });
    const page = await h.signedInPhone(worker);
    // The read fails, and its one retry too (a network blip).
    let refused = 0;
    await page.route("**/ttip.payment.v1.PaymentService/GetPayoutSettings", (route) => (refused++ < 2 ? route.abort("connectionreset") : route.continue()));
    await page.goto(`${h.url}/w/settings`);
    const payout = page.getByTestId("form-payout");
    await payout.getByRole("alert").filter({ hasText: "These settings could not be read, so they cannot be changed now" }).waitFor();
    assert.equal(await payout.getByRole("button", { name: "Save payout settings" }).count(), 0);
    await payout.getByRole("button", { name: "Read them again" }).click();
    await payout.getByRole("button", { name: "Save payout settings" }).waitFor();
    assert.equal(await payout.getByLabel("Pay out automatically").isChecked(), true, "drawn from what was read");
    assert.equal(await payout.getByLabel("Minimum balance for automatic payout (KES)").inputValue(), "500");
  });

  test("role and photo: set in settings (a photo too big or of the wrong type is refused by name), shown on the tip page in the first HTML, in both languages, from the platform's own host", async () => {
    const worker = await h.worker("Neema");
    const page = await h.signedInPhone(worker);
    await page.goto(`${h.url}/w/settings`);
    await page.getByRole("heading", { name: "Settings" }).waitFor();
    const qr = h.api(QrService, worker.token);
    const mine = { ownerKind: OwnerKind.WORKER, ownerId: worker.id };

    await page.getByLabel("What you do (shown under your name)").selectOption("bartender");
    await page.getByRole("button", { name: "Save profile" }).click();
    await saved(page, "form-profile");
    assert.equal((await qr.getProfile(mine)).profile!.role, "bartender");

    const photo = page.getByTestId("form-photo-upload");
    const upload = async (file: { name: string; mimeType: string; buffer: Buffer }, alert?: string) => {
      await page.getByLabel("Photo from your phone (JPEG, PNG or WebP, at most 2 MB)").setInputFiles(file);
      await page.getByRole("button", { name: "Save photo" }).click();
      if (alert) await photo.getByRole("alert").filter({ hasText: alert }).waitFor();
    };
    await upload({ name: "me.gif", mimeType: "image/gif", buffer: Buffer.from("GIF89a") }, "Photo: choose a JPEG, PNG or WebP picture.");
    await upload({ name: "big.jpg", mimeType: "image/jpeg", buffer: Buffer.alloc(2 * 1024 * 1024 + 1, 0xff) }, "Photo: this picture is larger than 2 MB; choose a smaller one.");
    await upload({ name: "broken.png", mimeType: "image/png", buffer: Buffer.from("not a picture at all") }, "Photo: this picture could not be read; choose another one.");
    assert.equal((await qr.getProfile(mine)).profile!.uploadedPhotoUrl, "", "nothing was stored");

    // A 1200x800 PNG the browser draws, as a phone's camera roll would hold: it is cropped and scaled before it is sent.
    const png = await page.evaluate(drawPng, { width: 1200, height: 800, fill: "#2a7" });
    await upload({ name: "me.png", mimeType: "image/png", buffer: Buffer.from(png, "base64") });
    await saved(page, "form-photo-upload");
    const url = (await qr.getProfile(mine)).profile!.uploadedPhotoUrl;
    assert.ok(url.startsWith(`${h.url}/photos/worker/${worker.id}?v=`), url);
    await page.getByTestId("photo-now").waitFor();
    const stored = await qr.getProfilePhoto(mine);
    assert.equal(stored.contentType, "image/jpeg");
    assert.ok(stored.image.length < 64 * 1024, `scaled down to ${stored.image.length} bytes`);
    const served = await fetch(url);
    assert.equal(served.headers.get("content-type"), "image/jpeg");
    assert.match(served.headers.get("cache-control") ?? "", /immutable/);
    // Never run by a browser, nor framed: the site-wide frame header must not replace the route's sandbox.
    assert.equal(served.headers.get("content-security-policy"), "default-src 'none'; sandbox; frame-ancestors 'none'");
    assert.deepEqual(Buffer.from(await served.arrayBuffer()), Buffer.from(stored.image));
    // Without its version, or under another, the same photo is not kept: a replaced one would show for a year.
    for (const other of [url.replace(/\?v=.*$/, ""), url.replace(/\?v=.*$/, "?v=0123456789abcdef")]) {
      const res = await fetch(other);
      assert.equal(res.status, 200, other);
      assert.equal(res.headers.get("cache-control"), "no-cache", other);
    }
    await h.screenshot(page, "worker-settings-photo");

    // The tip page: role and photo in the first HTML (no script needed), the photo from this host, square at 288 px.
    const code = await h.qrCode(worker);
    const html = await (await fetch(code.url)).text();
    assert.match(html, /data-testid="role">Bartender</);
    assert.ok(html.includes(`src="${url.replace(/&/g, "&amp;")}"`), "the uploaded photo's URL");
    for (const [locale, label] of [["en-KE", "Bartender"], ["sw-KE", "Mhudumu wa baa"]] as const) {
      const customer = await h.phone({ locale, javaScriptEnabled: false });
      const hosts = new Set<string>();
      customer.on("request", (r) => hosts.add(new URL(r.url()).host));
      await customer.goto(code.url);
      await customer.getByTestId("role").filter({ hasText: label }).waitFor();
      const img = customer.locator(".who img");
      await img.evaluate((el: HTMLImageElement) => el.complete || new Promise((done) => el.addEventListener("load", done, { once: true })));
      assert.deepEqual(await img.evaluate((el: HTMLImageElement) => [el.naturalWidth, el.naturalHeight]), [288, 288]);
      assert.deepEqual([...hosts], [new URL(h.url).host], "nothing from another host");
      await h.screenshot(customer, `tip-page-role-photo-${locale}`);
    }
  });

  test("settings: the devices that can approve withdrawals and the places signed in, this browser's marked; another phone's key and session taken away", async () => {
    const worker = await h.worker("Imani");
    // Just the two sessions below: the sign-up's own goes first.
    await h.api(AuthService, worker.token).revokeAllSessions({});
    const other = await h.tokens(worker);
    const otherAuth = h.api(AuthService, other.accessToken);
    const { publicKey, privateKey } = generateKeyPairSync("ec", { namedCurve: "P-256" });
    // As the withdraw screen registers a phone: its user agent's first 60 characters.
    const androidAgent = "Mozilla/5.0 (Linux; Android 13; SM-A145F) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0 Mobile Safari/537.36";
    const { device: otherDevice } = await otherAuth.registerDevice({ name: androidAgent.slice(0, 60), publicKeyJwk: JSON.stringify(publicKey.export({ format: "jwk" })), pin: worker.pin });
    const stepUp = async () => {
      const c = await otherAuth.createDeviceChallenge({ deviceId: otherDevice!.deviceId, purpose: "payout" });
      return otherAuth.verifyDeviceChallenge({ challengeId: c.challengeId, signature: sign("sha256", c.challenge, { key: privateKey, dsaEncoding: "ieee-p1363" }) });
    };
    assert.ok((await stepUp()).stepUpToken, "the other phone's key approves before it is removed");

    // This browser's key: its first withdrawal registers it (a tip first, so there is something to withdraw).
    await h.api(PaymentService).createTip({
      idempotencyKey: randomUUID(),
      recipient: { case: "workerId", value: worker.id },
      amount: { amountMinor: 100_000n, currency: "KES" },
      payment: { case: "mpesaPhone", value: testPhone({ format: "07" }) },
    });
    const mine = await h.tokens(worker);
    const wallet = h.api(WalletService, mine.accessToken);
    await eventually("the tip available", async () => ((await wallet.getBalance({ currency: "KES" })).balances[0]?.available?.amountMinor ?? 0n) >= 10_000n);
    const page = await h.signedInAs(mine);
    const withdraw = async () => {
      await page.goto(`${h.url}/w/withdraw`);
      await page.getByLabel("Amount (KES, whole shillings)").fill("100");
      await page.getByLabel("M-Pesa number (empty: your payout number)").fill(worker.phone);
      await page.getByRole("button", { name: "Withdraw" }).click();
      await h.pinIfAsked(page, worker.pin, page.getByTestId("payout-status"));
      await page.getByTestId("payout-status").waitFor({ timeout: 20_000 }).catch(async (e) => {
        throw new Error(`${(e as Error).message}\nthe page says: ${await page.locator("main").innerText()}`);
      });
    };
    await withdraw();
    const auth = h.api(AuthService, mine.accessToken);
    const ownDevice = (await auth.listDevices({})).devices.find((d) => d.deviceId !== otherDevice!.deviceId);
    assert.ok(ownDevice, "the withdrawal registered this browser's key");

    await page.goto(`${h.url}/w/settings`);
    const devices = page.getByTestId("list-devices");
    const deviceRows = devices.getByTestId("devices-row");
    await deviceRows.nth(1).waitFor();
    assert.equal(await deviceRows.count(), 2);
    const otherRow = deviceRows.filter({ hasNotText: "(this browser)" });
    assert.match(await otherRow.innerText(), /^Android\nAdded .+\nLast used .+/, "the phone's name, readable, and when");
    assert.match(await deviceRows.filter({ hasText: "(this browser)" }).innerText(), /\nLast used .+/, "its withdrawal used it");
    const sessionRows = page.getByTestId("list-sessions").getByTestId("sessions-row");
    assert.equal(await sessionRows.count(), 2);
    assert.equal(await sessionRows.filter({ hasText: "(this one)" }).count(), 1);
    assert.equal(await sessionRows.filter({ hasText: "(this one)" }).getByRole("button").count(), 0, "this session signs out from the home");
    await h.screenshot(page, "worker-settings-devices");

    // Asked once more; "No" keeps it.
    await otherRow.getByRole("button", { name: "Remove" }).click();
    await otherRow.getByRole("button", { name: "No, keep it" }).click();
    assert.equal((await auth.listDevices({})).devices.length, 2, "kept");
    await otherRow.getByRole("button", { name: "Remove" }).click();
    await otherRow.getByText("Remove Android? It is signed out and can no longer approve withdrawals.").waitFor();
    await otherRow.getByRole("button", { name: "Yes, remove it" }).click();
    await eventually("one device listed", async () => (await deviceRows.count()) === 1);
    assert.deepEqual((await auth.listDevices({})).devices.map((d) => d.deviceId), [ownDevice.deviceId]);
    // The removed phone is signed out with it (the session that added its key): no step-up, no refresh, off the list.
    await assert.rejects(stepUp(), (e) => ConnectError.from(e).code === Code.Unauthenticated, "a step-up from the removed phone is refused");
    await assert.rejects(h.api(AuthService).refreshSession({ refreshToken: other.refreshToken }), (e) => ConnectError.from(e).code === Code.Unauthenticated);
    await eventually("the removed phone's session off the list", async () => (await sessionRows.count()) === 1);

    // Another session: signed out, its refresh token refused.
    const laptop = await h.tokens(worker);
    await page.reload();
    await eventually("two sessions listed", async () => (await sessionRows.count()) === 2);
    await sessionRows.filter({ hasNotText: "(this one)" }).getByRole("button", { name: "Sign out" }).click();
    await page.getByRole("button", { name: "Yes, sign it out" }).click();
    await eventually("one session listed", async () => (await sessionRows.count()) === 1);
    await assert.rejects(h.api(AuthService).refreshSession({ refreshToken: laptop.refreshToken }), (e) => ConnectError.from(e).code === Code.Unauthenticated);
    assert.deepEqual((await auth.listSessions({})).sessions.map((s) => s.current), [true]);

    // This browser's own key: removed at auth and forgotten here, so the next withdrawal registers a new one.
    await deviceRows.getByRole("button", { name: "Remove" }).click();
    await devices.getByText("Remove this browser? It can no longer approve withdrawals; your next withdrawal here adds it again.").waitFor();
    await devices.getByRole("button", { name: "Yes, remove it" }).click();
    await devices.getByText("None yet: your first withdrawal from a phone or browser adds it here.").waitFor();
    assert.equal((await auth.listDevices({})).devices.length, 0);
    const kept = await page.evaluate((userId) => new Promise<unknown>((resolve, reject) => {
      const open = indexedDB.open("ttip-device", 1);
      open.onsuccess = () => {
        const get = open.result.transaction("keys", "readonly").objectStore("keys").get(userId);
        get.onsuccess = () => resolve(get.result ?? null);
        get.onerror = () => reject(get.error);
      };
      open.onerror = () => reject(open.error);
    }), worker.id);
    assert.equal(kept, null, "the key is forgotten in this browser");

    // The next withdrawal here registers a new key. Removed from elsewhere, it takes this browser's session with it
    // (the session that added it and proved with it): this browser is signed out.
    await withdraw();
    const [second] = (await auth.listDevices({})).devices;
    assert.ok(second && second.deviceId !== ownDevice.deviceId, "a new key for this browser");
    const elsewhere = h.api(AuthService, (await h.tokens(worker)).accessToken);
    await elsewhere.removeDevice({ deviceId: second.deviceId });
    await assert.rejects(auth.listDevices({}), (e) => ConnectError.from(e).code === Code.Unauthenticated);
  });
});
