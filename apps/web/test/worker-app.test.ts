// The worker's web app in a real browser at phone size, against the platform
// as make run serves it.
import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { readFileSync } from "node:fs";
import { after, afterEach, before, describe, test } from "node:test";
import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError } from "@connectrpc/connect";
import { AuthService } from "@ttip/proto/ttip/auth/v1/auth_service_pb.js";
import { CardTipState, MpesaReversalState, PaymentMethodKind, TipSchema, TipStatus } from "@ttip/proto/ttip/payment/v1/payment_pb.js";
import { GetTipResponseSchema, ListTipsResponseSchema, PaymentService } from "@ttip/proto/ttip/payment/v1/payment_service_pb.js";
import { DistributionStatus, MemberSchema, MemberStatus, MyShareSchema, SplitMethod, type MyShare } from "@ttip/proto/ttip/venue/v1/venue_pb.js";
import { ListMySharesRequestSchema, ListMySharesResponseSchema, ListMyVenuesResponseSchema, ListShiftsResponseSchema, VenueService } from "@ttip/proto/ttip/venue/v1/venue_service_pb.js";
import { eventually as waitUntil, testPhone } from "@ttip/runtime/testing";
import { loseFirstAnswer, WebHarness } from "./harness.js";

describe("the worker's web app (chromium at phone size)", () => {
  const h = new WebHarness();
  before(() => h.start().then(() => undefined));
  afterEach(() => h.closePages());
  after(() => h.stop());

  test("Home whose tips and earnings reads fail says so: never \"No tips yet\" to a worker who may have tips, nor \"…\" for ever", async () => {
    const page = await h.signedInPhone(await h.worker("Chebet"));
    const down = (rpc: string) => page.route(`**/${rpc}`, (route) => route.fulfill({ status: 503, contentType: "application/json", body: JSON.stringify({ code: "unavailable", message: "payment is restarting" }) }));
    await down("ttip.payment.v1.PaymentService/ListTips");
    await down("ttip.analytics.v1.AnalyticsService/GetWorkerEarnings");
    await page.goto(`${h.url}/w`);
    const latest = page.getByTestId("latest-tips");
    await latest.getByRole("alert").filter({ hasText: "We cannot reach TTIP right now" }).waitFor();
    assert.equal(await latest.getByText("No tips yet").count(), 0);
    await page.getByTestId("periods").filter({ hasText: "Today: — · This week: —" }).waitFor();
    await h.screenshot(page, "worker-home-unread");
  });

  test("the live figures' stream refused for its token (it ended after its hour, the token expired meanwhile) refreshes the session itself and goes live again", async () => {
    const page = await h.signedInPhone(await h.worker("Kiprop"));
    const watches: string[] = [];
    let refreshes = 0;
    page.on("request", (r) => /AuthService\/RefreshSession$/.test(r.url()) && refreshes++);
    await page.route("**/ttip.analytics.v1.AnalyticsService/WatchDashboard", async (route) => {
      watches.push(route.request().headers().authorization ?? "");
      if (watches.length > 1) return route.continue();
      await route.fulfill({ status: 401, contentType: "application/json", body: JSON.stringify({ code: "unauthenticated", message: "the access token has expired" }) });
    });
    await page.goto(`${h.url}/w`);
    await page.getByTestId("live-state").filter({ hasText: "Live: new tips appear here" }).waitFor({ timeout: 20_000 });
    // Before, retried every 3 s with the refused token: Home's unary reads refreshed it, a venue's dashboard had none.
    assert.equal(refreshes, 1, "the stream's refusal refreshed the session");
    assert.notEqual(watches[1], watches[0], "and the stream came back under the new token");
  });

  test("more than the balance is refused at once, naming it: no device key made, no challenge signed, nothing sent; a balance not read is not KES 0", async () => {
    const worker = await h.worker("Mwangi");
    const page = await h.signedInPhone(worker);
    const balance = "**/ttip.wallet.v1.WalletService/GetBalance";
    await page.route(balance, (route) => route.fulfill({ status: 503, contentType: "application/json", body: JSON.stringify({ code: "unavailable", message: "wallet is restarting" }) }));
    await page.goto(`${h.url}/w/withdraw`);
    // Before, "KES 0": to a worker who lives on tips, their money gone.
    await page.getByTestId("withdraw-available").filter({ hasText: "not known right now" }).waitFor({ timeout: 20_000 });
    await page.unroute(balance);
    const keyCalls: string[] = [];
    page.on("request", (r) => /AuthService\/(RegisterDevice|CreateDeviceChallenge)$|PaymentService\/RequestPayout$/.test(r.url()) && keyCalls.push(r.url().split("/").at(-1)!));
    await page.goto(`${h.url}/w/withdraw`);
    await page.getByRole("table", { name: /limits/i }).waitFor();
    await page.waitForLoadState("networkidle");
    await page.getByLabel("Amount (KES, whole shillings)").fill("500");
    await page.getByLabel("M-Pesa number (empty: your payout number)").fill("0712345678");
    await page.getByRole("button", { name: "Withdraw" }).click();
    // Not "enter KES 0 or less": no amount would do.
    await page.getByRole("alert").filter({ hasText: "Your available balance is KES 0, less than the least M-Pesa pays out (KES 10): nothing can be withdrawn yet." }).waitFor();
    assert.deepEqual(keyCalls, []);
    assert.equal(await page.evaluate(() => document.activeElement?.id), "amount");
  });

  test("a worker signs in (OTP, then a new PIN), sees a tip arrive live, withdraws with the browser's device key and downloads a statement", async () => {
    const phone = testPhone({ format: "07" });
    const page = await h.phone({ acceptDownloads: true });
    await page.goto(`${h.url}/w`);
    await page.waitForURL(/\/w\/signin/);
    await page.getByLabel("Your phone number").fill(phone);
    await page.getByRole("button", { name: "Send me a code" }).click();
    await page.getByLabel("The 6-digit code we sent by SMS").fill(await waitForOtp(h, phone));
    await h.screenshot(page, "worker-otp");
    await page.getByRole("button", { name: "Continue" }).click();
    await page.getByLabel("New PIN (4 to 6 digits)").fill("4826");
    await page.getByLabel("The same PIN again").fill("4826");
    await page.getByRole("button", { name: "Continue" }).click();
    await page.waitForURL(`${h.url}/w`);
    await page.getByText("No tips yet. Share your QR code!").waitFor();
    const workerId = await page.evaluate(() => JSON.parse(localStorage.getItem("ttip_session")!).userId as string);

    // A customer tips while the home screen is open: it appears without a reload.
    const { tip } = await h.api(PaymentService).createTip({
      idempotencyKey: randomUUID(),
      recipient: { case: "workerId", value: workerId },
      amount: { amountMinor: 30_000n, currency: "KES" },
      payment: { case: "mpesaPhone", value: testPhone({ format: "07" }) },
    });
    await page.getByTestId("latest-tips").getByText("KES 300 · received").waitFor({ timeout: 20_000 });
    await page.getByTestId("available").filter({ hasNotText: "KES 0" }).waitFor();
    const available = (await page.getByTestId("available").textContent())!;
    await h.screenshot(page, "worker-home");

    // The tip's detail.
    await page.getByTestId("latest-tips").getByText("KES 300 · received").click();
    await page.getByRole("cell", { name: tip!.customerPhoneMasked }).waitFor();

    // Withdraw with a device key made in this browser; its status arrives over WatchPayout, never asked for each second.
    const payoutCalls: string[] = [];
    page.on("request", (r) => /PaymentService\/(GetPayout|WatchPayout)$/.test(r.url()) && payoutCalls.push(r.url().split("/").at(-1)!));
    await page.getByRole("link", { name: "Withdraw" }).click();
    await page.getByLabel("Amount (KES, whole shillings)").fill("200");
    await page.getByLabel("M-Pesa number (empty: your payout number)").fill(phone);
    await page.getByRole("button", { name: "Withdraw" }).click();
    // The browser's first key takes the PIN.
    await h.pinIfAsked(page, "4826", page.getByTestId("payout-status"));
    await page.getByTestId("payout-status").filter({ hasText: "succeeded" }).waitFor({ timeout: 30_000 }).catch(async (err) => {
      await h.screenshot(page, "worker-withdraw-failed");
      throw new Error(`${(err as Error).message}\npage says: ${await page.locator("main").innerText()}`);
    });
    await h.screenshot(page, "worker-withdrawn");
    assert.ok(payoutCalls.includes("WatchPayout"), `the status was streamed: ${payoutCalls.join(", ")}`);
    assert.ok(!payoutCalls.includes("GetPayout"), `no polling while the stream is up: ${payoutCalls.join(", ")}`);
    const key = await page.evaluate(
      (userId) =>
        new Promise<{ extractable: boolean; algorithm: string; curve: string }>((resolve, reject) => {
          const open = indexedDB.open("ttip-device", 1);
          open.onerror = () => reject(open.error);
          open.onsuccess = () => {
            const get = open.result.transaction("keys").objectStore("keys").get(userId);
            get.onsuccess = () => {
              const k = get.result.privateKey as CryptoKey;
              resolve({ extractable: k.extractable, algorithm: k.algorithm.name, curve: (k.algorithm as EcKeyAlgorithm).namedCurve });
            };
          };
        }),
      workerId,
    );
    assert.deepEqual(key, { extractable: false, algorithm: "ECDSA", curve: "P-256" }, "the private key stays in the browser, not extractable");
    const b2c = h.payoutsTo(phone).filter((t) => t.amount === 200);
    assert.equal(b2c.length, 1, "one B2C payout of KES 200");
    assert.notEqual(available, "KES 0");
    // Its words are the app's ("succeeded" says it; not M-Pesa's or payment's English), and the balance is read again.
    assert.equal(await page.getByTestId("payout-outcome").count(), 0);
    await page.getByTestId("withdraw-available").filter({ hasText: "KES 85" }).waitFor({ timeout: 20_000 });

    // Another withdrawal, which M-Pesa fails on TTIP's side (its account short): said so, not "The balance is insufficient".
    h.daraja.script({ phone: `254${phone.slice(1)}` }, { b2c: "insufficient_funds" });
    await page.getByRole("button", { name: "Make another withdrawal" }).click();
    await page.getByLabel("Amount (KES, whole shillings)").fill("50");
    await page.getByLabel("M-Pesa number (empty: your payout number)").fill(phone);
    await page.getByRole("button", { name: "Withdraw" }).click();
    await page.getByTestId("payout-status").filter({ hasText: "failed" }).waitFor({ timeout: 30_000 });
    assert.equal(await page.getByTestId("payout-outcome").innerText(), "M-Pesa could not send it from TTIP's account; this is not about your balance. The amount is back in your balance; try again later.");
    await page.getByTestId("withdraw-available").filter({ hasText: "KES 85" }).waitFor({ timeout: 20_000 });

    // One M-Pesa reports sent in another amount: on hold while support checks it, maybe for days.
    h.daraja.script({ phone: `254${phone.slice(1)}` }, { b2c: "amount_mismatch" });
    await page.getByRole("button", { name: "Make another withdrawal" }).click();
    await page.getByLabel("Amount (KES, whole shillings)").fill("20");
    await page.getByLabel("M-Pesa number (empty: your payout number)").fill(phone);
    await page.getByRole("button", { name: "Withdraw" }).click();
    await page.getByTestId("payout-outcome").filter({ hasText: "Support is checking it" }).waitFor({ timeout: 30_000 });
    // Before, the screen kept only that payout, with no way back to the form until the page was loaded again.
    await page.getByRole("button", { name: "Make another withdrawal" }).click();
    await page.getByLabel("Amount (KES, whole shillings)").waitFor();
    // Its amount still held: the balance is read again, not the KES 85 read before it.
    await page.getByTestId("withdraw-available").filter({ hasText: /^KES \d/, hasNotText: "KES 85" }).waitFor({ timeout: 20_000 });

    // This month's statement as CSV.
    await page.getByRole("link", { name: "Statements" }).click();
    const [download] = await Promise.all([page.waitForEvent("download"), page.getByRole("button", { name: "Download CSV" }).click()]);
    const csv = readFileSync((await download.path())!, "utf8");
    assert.match(download.suggestedFilename(), /^ttip-statement-\d{4}-\d{2}\.csv$/);
    assert.ok(csv.split("\n").length >= 3, `a header and at least the tip and the withdrawal:\n${csv}`);
    assert.match(csv, /300|285/);
    await h.screenshot(page, "worker-statements");

    // The code as a PNG (before, it asked a caption qr refuses on PNG: the download failed) and as a table card, under the name given.
    await page.getByRole("link", { name: "My QR" }).click();
    // A new sign-up has no name on a tip page yet: it is asked with the first code (before, "has no profile yet; set one with PutProfile first").
    await page.getByRole("button", { name: "Make my QR code" }).click();
    await page.getByRole("alert").filter({ hasText: "Enter your name" }).waitFor();
    await h.screenshot(page, "worker-qr-first-code");
    await page.getByLabel("Your name (as customers see it)").fill("Wanjiru K");
    await page.getByRole("button", { name: "Make my QR code" }).click();
    for (const [button, magic] of [["Download PNG", "\x89PNG"], ["Download Table card (PDF)", "%PDF"]]) {
      const [file] = await Promise.all([page.waitForEvent("download"), page.getByRole("button", { name: button }).click()]);
      assert.equal(readFileSync((await file.path())!).subarray(0, magic.length).toString("latin1"), magic, button);
    }
    await h.screenshot(page, "worker-qr");
  });

  test("a worker who forgot the PIN locks it with wrong tries, then chooses a new one on the code just sent: signed in, and the old sessions are signed out", async () => {
    const worker = await h.worker("Akinyi");
    const old = await h.tokens(worker);
    const page = await h.phone();
    await page.goto(`${h.url}/w/signin`);
    await page.getByLabel("Your phone number").fill(worker.phone);
    const sent = h.sms.lastTo(worker.phone.replace(/^0/, "254"))?.message;
    h.clock.advance(1_100); // the OTP resend wait after the last code
    await page.getByRole("button", { name: "Send me a code" }).click();
    await waitUntil("a new OTP", () => h.sms.lastTo(worker.phone.replace(/^0/, "254"))?.message !== sent);
    await page.getByLabel("The 6-digit code we sent by SMS").fill(h.otpFor(worker.phone));
    await page.getByRole("button", { name: "Continue" }).click();
    for (const left of [4, 3, 2, 1]) {
      await page.getByLabel("Your PIN").fill("1397");
      await page.getByRole("button", { name: "Continue" }).click();
      await page.getByRole("alert").filter({ hasText: `Wrong PIN. ${left} tries left` }).waitFor();
    }
    await page.getByLabel("Your PIN").fill("1397");
    await page.getByRole("button", { name: "Continue" }).click();
    await page.getByRole("alert").filter({ hasText: "Your PIN is locked" }).filter({ hasText: "Forgot your PIN?" }).waitFor();

    await page.getByRole("button", { name: "Forgot your PIN?" }).click();
    await page.getByText("Choose a new PIN. It signs you out on every other phone and browser.").waitFor();
    await page.getByLabel("New PIN (4 to 6 digits)").fill("5937");
    await page.getByLabel("The same PIN again").fill("5938");
    await page.getByRole("button", { name: "Continue" }).click();
    await page.getByRole("alert").filter({ hasText: "The two PINs are not the same." }).waitFor();
    await page.getByLabel("The same PIN again").fill("5937");
    await page.getByRole("button", { name: "Continue" }).click();
    await page.waitForURL(`${h.url}/w`);
    await page.getByTestId("available").waitFor();
    await h.screenshot(page, "worker-pin-reset");

    // The session opened with the old PIN is gone; the new PIN signs in (the lockout is lifted).
    const refused = await h.api(AuthService).refreshSession({ refreshToken: old.refreshToken }).then(() => undefined, (e: unknown) => ConnectError.from(e));
    assert.equal(refused?.code, Code.Unauthenticated);
    h.clock.advance(1_100);
    const fresh = await h.tokens({ phone: worker.phone, pin: "5937" });
    assert.ok(fresh.accessToken);
  });

  test("the next worker signed in on the same browser never sees the one before's balance", async () => {
    const first = await h.worker("Njeri");
    await h.api(PaymentService).createTip({
      idempotencyKey: randomUUID(), recipient: { case: "workerId", value: first.id }, amount: { amountMinor: 300_000n, currency: "KES" },
      payment: { case: "mpesaPhone", value: testPhone({ format: "07" }) },
    });
    const page = await h.signedInPhone(first);
    await page.goto(`${h.url}/w`);
    const available = page.getByTestId("available");
    await available.filter({ hasText: /KES 2,\d{3}/ }).waitFor({ timeout: 20_000 });
    const shownFirst = await available.innerText();
    await page.getByRole("button", { name: "Sign out of every device" }).click();
    await page.waitForURL(`${h.url}/w/signin`);

    // The next worker's balance is slow to come: until it does, the screen has none to show, not the first one's.
    const next = await h.worker("Otieno");
    let answer = () => {};
    const slow = new Promise<void>((resolve) => (answer = resolve));
    await page.route("**/ttip.wallet.v1.WalletService/GetBalance", async (route) => (await slow, route.continue()));
    await page.getByLabel("Your phone number").fill(next.phone);
    const sent = h.sms.lastTo(next.phone.replace(/^0/, "254"))?.message;
    h.clock.advance(1_100); // the OTP resend wait after the code of the sign-up
    await page.getByRole("button", { name: "Send me a code" }).click();
    await waitUntil("a new OTP", () => h.sms.lastTo(next.phone.replace(/^0/, "254"))?.message !== sent);
    await page.getByLabel("The 6-digit code we sent by SMS").fill(h.otpFor(next.phone));
    await page.getByRole("button", { name: "Continue" }).click();
    await page.getByLabel("Your PIN").fill(next.pin);
    await page.getByRole("button", { name: "Continue" }).click();
    await page.waitForURL(`${h.url}/w`);
    await available.waitFor();
    // Before, the first worker's cached balance was on the next one's screen until the fetch answered.
    assert.notEqual(await available.innerText(), shownFirst);
    answer();
    await available.filter({ hasText: "KES 0" }).waitFor({ timeout: 20_000 });
  });

  test("an access token refused in two tabs at once: one tab rotates the session, the other takes its tokens, and the worker stays signed in; a refresh that cannot reach the server signs nobody out", async () => {
    const worker = await h.worker("Nyambura");
    const tokens = await h.tokens(worker);
    // Signed, but not by auth: the gateway refuses it, as an expired one.
    const stale = { ...tokens, accessToken: `${tokens.accessToken.slice(0, -8)}AAAAAAAA` };
    const first = await h.signedInAs(stale);
    const second = await first.context().newPage();
    // Each refresh held until the other tab's comes (at most 1.5 s): before, both tabs sent the one refresh token,
    // auth took the second for a stolen token's reuse and ended the session, and both tabs were signed out.
    const held: (() => void)[] = [];
    let refreshes = 0;
    await first.context().route("**/ttip.auth.v1.AuthService/RefreshSession", async (route) => {
      refreshes++;
      await new Promise<void>((resolve) => {
        held.push(resolve);
        if (held.length === 2) for (const go of held) go();
        setTimeout(resolve, 1_500);
      });
      await route.continue();
    });
    // Each tab's balance read answered (200): signed in, with tokens auth took.
    const answered = new Set<unknown>();
    first.context().on("response", (r) => {
      if (r.url().endsWith("/ttip.wallet.v1.WalletService/GetBalance") && r.status() === 200) answered.add(r.frame().page());
    });
    await Promise.all([first.goto(`${h.url}/w`), second.goto(`${h.url}/w`)]);
    await waitUntil("both tabs read the balance", () => answered.has(first) && answered.has(second));
    assert.equal(refreshes, 1, "one rotation for both tabs");
    const kept = JSON.parse((await second.evaluate(() => localStorage.getItem("ttip_session")))!) as { refreshToken: string };
    assert.notEqual(kept.refreshToken, tokens.refreshToken, "rotated");
    assert.ok((await h.api(AuthService).refreshSession({ refreshToken: kept.refreshToken })).tokens, "the session lives on at auth");

    // A refresh whose connection drops: the session stays (before, any failure cleared it), and the next visit works.
    h.clock.advance(1_100);
    const offline = await h.signedInAs({ ...(await h.tokens(worker)), accessToken: stale.accessToken });
    let dropped = 0;
    await offline.context().route("**/ttip.auth.v1.AuthService/RefreshSession", (route) => (dropped++, route.abort("connectionreset")));
    await offline.goto(`${h.url}/w`);
    await waitUntil("the refresh tried", () => dropped > 0);
    await offline.waitForLoadState("networkidle");
    assert.ok(await offline.evaluate(() => localStorage.getItem("ttip_session")), "still signed in");
    await offline.context().unroute("**/ttip.auth.v1.AuthService/RefreshSession");
    const back = offline.waitForResponse((r) => r.url().endsWith("/ttip.wallet.v1.WalletService/GetBalance") && r.status() === 200);
    await offline.reload();
    await back;
  });

  test("venue shares: More continues the same request from the page token; a failed More says so and keeps the rows; each share shown once, in English and Swahili at 360 px", async () => {
    const worker = await h.worker("Wanjiku");
    const page = await h.signedInPhone(worker);
    // The service's answer replaced: a first page that says there is more, then the rest (after one failure).
    const first = [share("Cafe A", 30_000n, 1), share("Cafe B", 20_000n, 2)];
    // Left Cafe B and came back in the same period: a second share of that distribution, for the second membership.
    first.push(Object.assign(share("Cafe B", 5_000n, 2), { distributionId: first[1].distributionId, period: first[1].period }));
    const rest = [share("Cafe C", 10_000n, 3)];
    const asked: { pageSize: number; pageToken: string }[] = [];
    let failNext = true;
    await page.route("**/ttip.venue.v1.VenueService/ListMyShares", async (route) => {
      const { page: ask } = fromBinary(ListMySharesRequestSchema, route.request().postDataBuffer() ?? new Uint8Array());
      asked.push({ pageSize: ask?.pageSize ?? 0, pageToken: ask?.pageToken ?? "" });
      if (ask?.pageToken && failNext) {
        await route.fulfill({ status: 503, contentType: "application/json", body: JSON.stringify({ code: "unavailable", message: "down for a moment" }) });
        return;
      }
      const answer = ask?.pageToken === "after-b" ? { shares: rest, page: { nextPageToken: "" } } : { shares: first, page: { nextPageToken: "after-b" } };
      const body = toBinary(ListMySharesResponseSchema, create(ListMySharesResponseSchema, answer));
      await route.fulfill({ status: 200, contentType: "application/proto", body: Buffer.from(body) });
    });
    const shown = () => page.getByTestId("share").evaluateAll((rows) => rows.map((r) => r.querySelector("strong")!.textContent!.split(",")[0]));
    await page.goto(`${h.url}/w/shares`);
    await page.getByTestId("my-shares").getByText(/KES 200 from Cafe B/).waitFor();
    // Before, the second share of Cafe B's distribution was not shown.
    assert.deepEqual(await shown(), ["KES 300 from Cafe A", "KES 200 from Cafe B", "KES 50 from Cafe B"]);

    // A failed More: the error in words, the rows kept, More still offered.
    const more = page.getByRole("button", { name: "More", exact: true });
    await more.click();
    await page.getByTestId("shares-error").waitFor({ timeout: 20_000 });
    assert.equal(await page.getByTestId("shares-error").innerText(), "We cannot reach TTIP right now. Check your connection and try again.");
    assert.deepEqual(await shown(), ["KES 300 from Cafe A", "KES 200 from Cafe B", "KES 50 from Cafe B"], "the rows shown are kept");
    failNext = false;
    const failed = asked.length;
    // A double tap asks once.
    await more.dblclick();
    await page.getByTestId("my-shares").getByText(/KES 100 from Cafe C/).waitFor();
    assert.deepEqual(await shown(), ["KES 300 from Cafe A", "KES 200 from Cafe B", "KES 50 from Cafe B", "KES 100 from Cafe C"], "each share once");
    assert.equal(asked.length, failed + 1, `one request for the double tap: ${JSON.stringify(asked.slice(failed))}`);
    assert.equal(await page.getByTestId("shares-error").count(), 0, "the error is gone once the page came");
    assert.equal(await more.count(), 0, "no More after the last page");
    const nextPages = asked.filter((a) => a.pageToken);
    assert.ok(nextPages.length >= 2, `a failed More and a good one: ${JSON.stringify(asked)}`);
    for (const a of nextPages) assert.deepEqual(a, { pageSize: 50, pageToken: "after-b" }, "the same request, from the page token");
    assert.deepEqual(asked[0], { pageSize: 50, pageToken: "" });
    await h.screenshot(page, "worker-shares-more");

    // In Swahili, on a 360 px screen.
    failNext = true;
    await page.context().addCookies([{ name: "ttip_lang", value: "sw", url: h.url }]);
    await page.reload();
    await page.getByTestId("my-shares").getByText(/KES 200 kutoka Cafe B/).waitFor();
    await page.getByRole("button", { name: "Zaidi", exact: true }).click();
    await page.getByTestId("shares-error").waitFor({ timeout: 20_000 });
    assert.equal(await page.getByTestId("shares-error").innerText(), "Hatuwezi kufikia TTIP sasa. Angalia mtandao wako ujaribu tena.");
    assert.equal(await page.getByTestId("share").count(), 3);
    const widths = await page.evaluate(() => ({ page: document.documentElement.scrollWidth, screen: document.documentElement.clientWidth }));
    assert.equal(widths.screen, 360);
    assert.ok(widths.page <= widths.screen, `the page is ${widths.page} px wide on a ${widths.screen} px screen`);
    await h.screenshot(page, "worker-shares-more-sw");
  });

  test("sign out of every device that does not reach auth says so and keeps the worker signed in to try again; done, the old session is refused", async () => {
    const worker = await h.worker("Chebet");
    const page = await h.signedInPhone(worker);
    await page.goto(`${h.url}/w`);
    await page.route("**/ttip.auth.v1.AuthService/RevokeAllSessions", (route) =>
      route.fulfill({ status: 503, contentType: "application/json", body: JSON.stringify({ code: "unavailable", message: "upstream unavailable" }) }), { times: 1 });
    await page.getByRole("button", { name: "Sign out of every device" }).click();
    // Before, the error was dropped and the browser signed out as if every device had been.
    await page.getByRole("alert").filter({ hasText: /^The other devices were not signed out: .+ You are still signed in here; try again\.$/ }).waitFor();
    assert.match(page.url(), /\/w$/);
    // This browser holds a key that approves the worker's withdrawals (as after a first withdrawal here).
    const keyHere = (put: boolean) =>
      page.evaluate(
        ({ userId, put }) =>
          new Promise<boolean>((resolve, reject) => {
            const open = indexedDB.open("ttip-device", 1);
            open.onupgradeneeded = () => open.result.createObjectStore("keys");
            open.onerror = () => reject(open.error);
            open.onsuccess = () => {
              const store = open.result.transaction("keys", "readwrite").objectStore("keys");
              const req = put ? store.put({ deviceId: "d-1" }, userId) : store.get(userId);
              req.onsuccess = () => resolve(put || req.result !== undefined);
            };
          }),
        { userId: worker.id, put },
      );
    await keyHere(true);
    let asked = 0;
    page.on("request", (r) => void (r.url().endsWith("/ttip.auth.v1.AuthService/RevokeAllSessions") && asked++));
    // A double tap signs out once (before, twice: the second refused, "not signed out" said of a sign-out done).
    await page.getByRole("button", { name: "Sign out of every device" }).dblclick();
    await page.waitForURL(/\/w\/signin$/);
    assert.equal(asked, 1);
    // Kept, whoever signed in here next as this worker would withdraw with it.
    assert.equal(await keyHere(false), false, "the browser's key is forgotten");
  });

  test("venue shares: a venue whose manager has set no rule yet says so to its member, not 'We could not find that.', in English and Swahili", async () => {
    const worker = await h.worker("Nyokabi");
    const page = await h.signedInPhone(worker);
    const member = create(MemberSchema, { memberId: randomUUID(), venueId: randomUUID(), workerId: worker.id, displayName: "Nyokabi", status: MemberStatus.ACTIVE, venueName: "Cafe Rule-less" });
    // The service's answers: one venue, and the venue's own refusal for a rule it does not have yet.
    await page.route("**/ttip.venue.v1.VenueService/ListMyVenues", (route) =>
      route.fulfill({ status: 200, contentType: "application/proto", body: Buffer.from(toBinary(ListMyVenuesResponseSchema, create(ListMyVenuesResponseSchema, { memberships: [member] }))) }));
    await page.route("**/ttip.venue.v1.VenueService/GetSplitRule", (route) =>
      route.fulfill({ status: 404, contentType: "application/json", body: JSON.stringify({ code: "not_found", message: "venue_id: the venue has no split rule yet" }) }));
    await page.route("**/ttip.venue.v1.VenueService/ListShifts", (route) =>
      route.fulfill({ status: 200, contentType: "application/proto", body: Buffer.from(toBinary(ListShiftsResponseSchema, create(ListShiftsResponseSchema, {}))) }));
    await page.goto(`${h.url}/w/shares`);
    const card = page.getByTestId(`venue-${member.venueId}`);
    await card.getByText("No rule is in force yet: the venue's manager sets how the pool is split.").waitFor({ timeout: 20_000 });
    assert.equal(await card.locator(".error").count(), 0, "no refusal shown");
    await page.context().addCookies([{ name: "ttip_lang", value: "sw", url: h.url }]);
    await page.reload();
    await card.getByText("Bado hakuna kanuni inayotumika: meneja wa eneo huweka jinsi mfuko unavyogawanywa.").waitFor({ timeout: 20_000 });
  });

  test("tips refunded, charged back or reversed read so in the history and the tip's detail, not \"received\", in English and Swahili", async () => {
    const worker = await h.worker("Njeri");
    const page = await h.signedInPhone(worker);
    const card = (cardState: CardTipState, refundedMinor = 0n) => create(TipSchema, {
      tipId: randomUUID(), workerId: worker.id, status: TipStatus.SUCCEEDED, cardState, amount: { amountMinor: 10_00n, currency: "USD" },
      refunded: { amountMinor: refundedMinor, currency: "USD" }, createdAt: timestampFromDate(new Date()),
    });
    const mpesa = (mpesaReversal: MpesaReversalState) => create(TipSchema, {
      tipId: randomUUID(), workerId: worker.id, status: TipStatus.SUCCEEDED, method: PaymentMethodKind.MPESA, mpesaReversal, amount: { amountMinor: 100_00n, currency: "KES" },
      refunded: { amountMinor: mpesaReversal === MpesaReversalState.FAILED ? 0n : 100_00n, currency: "KES" }, createdAt: timestampFromDate(new Date()),
    });
    const tips = [card(CardTipState.REFUNDED, 10_00n), card(CardTipState.REFUNDED, 4_00n), card(CardTipState.DISPUTED), card(CardTipState.DISPUTE_LOST), card(CardTipState.DISPUTE_WON),
      mpesa(MpesaReversalState.PENDING), mpesa(MpesaReversalState.REVERSED), mpesa(MpesaReversalState.FAILED)];
    // The service's answers replaced: these tips are the worker's.
    await page.route("**/ttip.payment.v1.PaymentService/ListTips", (route) =>
      route.fulfill({ status: 200, contentType: "application/proto", body: Buffer.from(toBinary(ListTipsResponseSchema, create(ListTipsResponseSchema, { tips }))) }));
    await page.route("**/ttip.payment.v1.PaymentService/GetTip", (route) =>
      route.fulfill({ status: 200, contentType: "application/proto", body: Buffer.from(toBinary(GetTipResponseSchema, create(GetTipResponseSchema, { tip: tips[1] }))) }));
    await page.goto(`${h.url}/w/history`);
    const states = () => page.locator("tbody tr td:nth-child(3)").allInnerTexts();
    await page.getByText("refunded to the customer").first().waitFor({ timeout: 20_000 });
    assert.deepEqual(await states(), ["refunded to the customer", "partly refunded (USD 4)", "disputed by the card holder: set aside", "taken back: the card holder won a dispute", "received",
      "being given back to the customer's M-Pesa", "refunded to the customer", "received"]);
    await h.screenshot(page, "worker-history-refunded-reversed");
    await page.goto(`${h.url}/w/tips/${tips[1].tipId}`);
    assert.equal(await page.getByTestId("tip-state").innerText({ timeout: 20_000 }), "partly refunded (USD 4)");
    await page.context().addCookies([{ name: "ttip_lang", value: "sw", url: h.url }]);
    await page.goto(`${h.url}/w/history`);
    await page.getByText("imerudishwa kwa mteja").first().waitFor({ timeout: 20_000 });
    assert.deepEqual((await states()).slice(0, 2), ["imerudishwa kwa mteja", "imerudishwa kwa sehemu (USD 4)"]);
    assert.deepEqual((await states()).slice(5, 7), ["inarudishwa kwa M-Pesa ya mteja", "imerudishwa kwa mteja"]);
  });

  test("venue shares: a clock-in is read back from the service (the page opened again), so the worker can clock out; one left open over 24 hours says to ask the manager, offers no button, in English and Swahili", async () => {
    const venue = await h.venue("Mama Oliech");
    const worker = await h.worker("Atieno");
    const { member } = await h.api(VenueService, venue.managerToken).inviteMember({ venueId: venue.id, phone: worker.phone, displayName: "Atieno", roleId: "front_of_house", idempotencyKey: randomUUID() });
    assert.ok(member);
    const token = await waitUntil("the invitation SMS", () => {
      const sms = h.providers.sent.filter((m) => m.to.replace(/^\+/, "") === `254${worker.phone.slice(1)}`).pop();
      return sms ? /\/join\/([A-Za-z0-9_-]+)/.exec(sms.body)?.[1] : undefined;
    });
    await h.api(VenueService, worker.token).acceptInvitation({ token });
    const page = await h.signedInPhone(worker);
    const card = page.getByTestId(`venue-${venue.id}`);
    await page.goto(`${h.url}/w/shares`);
    await card.getByRole("button", { name: "Clock in" }).click();
    await card.getByTestId("clocked-in").waitFor({ timeout: 20_000 });

    // Opened again: still clocked in, and the way out offered.
    await page.reload();
    await card.getByRole("button", { name: "Clock out" }).waitFor({ timeout: 20_000 });
    assert.match(await card.getByTestId("clocked-in").innerText(), /^Clocked in since /);
    // The shifts not read (venue restarting): before, "Clock in" was offered to one clocked in, which the service refused.
    const shiftsRead = "**/ttip.venue.v1.VenueService/ListShifts";
    await page.route(shiftsRead, (route) => route.fulfill({ status: 503, contentType: "application/json", body: JSON.stringify({ code: "unavailable", message: "venue is restarting" }) }));
    await page.reload();
    await card.getByRole("alert").first().waitFor({ timeout: 20_000 });
    assert.equal(await card.getByRole("button", { name: /^Clock (in|out)$/ }).isDisabled(), true);
    await page.unroute(shiftsRead);
    await page.reload();
    await card.getByRole("button", { name: "Clock out" }).click({ timeout: 20_000 });
    await card.getByRole("button", { name: "Clock in" }).waitFor({ timeout: 20_000 });
    const window = { start: timestampFromDate(new Date(Date.now() - 3_600_000)), end: timestampFromDate(new Date(Date.now() + 60_000)) };
    const { shifts } = await h.api(VenueService, worker.token).listShifts({ venueId: venue.id, period: window });
    assert.deepEqual(shifts.map((s) => Boolean(s.endedAt)), [true], "the shift ended by the screen");

    // A clock-in whose answer is lost, well after the screen opened: read again, the shift the service has is shown,
    // with the way out. Before, the read again asked about the moment the screen opened, found none, and offered a
    // Clock in the service refused.
    const opened = Date.now();
    await page.reload();
    await card.getByRole("button", { name: "Clock in" }).waitFor({ timeout: 20_000 });
    await waitUntil("past the moment the screen opened", () => Date.now() - opened > 2_500, { timeoutMs: 5_000, everyMs: 100 });
    await loseFirstAnswer(page, "ttip.venue.v1.VenueService/ClockIn");
    await card.getByRole("button", { name: "Clock in" }).click();
    await card.getByRole("alert").waitFor({ timeout: 20_000 });
    await card.getByRole("button", { name: "Clock out" }).click({ timeout: 20_000 });
    await card.getByRole("button", { name: "Clock in" }).waitFor({ timeout: 20_000 });

    // Clocked in two days ago and never out: only the manager can end it, and the screen says so.
    const { shift } = await h.api(VenueService, worker.token).clockIn({ venueId: venue.id });
    await h.sql("UPDATE venue.shifts SET started_at = now() - interval '2 days' WHERE shift_id = $1", [shift!.shiftId]);
    await page.reload();
    await card.getByText(/did not clock out within 24 hours/).waitFor({ timeout: 20_000 });
    assert.match(await card.getByTestId("clocked-in").innerText(), /^You clocked in on \d{1,2} \w{3} \d{4}, \d{2}:\d{2} and did not clock out within 24 hours, so that shift cannot be ended here: ask your manager/);
    assert.equal(await card.getByRole("button").count(), 0, "no Clock out the service would refuse, no Clock in");
    await page.context().addCookies([{ name: "ttip_lang", value: "sw", url: h.url }]);
    await page.reload();
    await card.getByText(/hukuimaliza ndani ya saa 24/).waitFor({ timeout: 20_000 });
    await h.screenshot(page, "worker-shares-stale-clock-in-sw");
  });
});

/** A confirmed share of `amountMinor` (all of a one-member pool), confirmed `daysAgo`. */
function share(venueName: string, amountMinor: bigint, daysAgo: number): MyShare {
  const end = new Date(Date.now() - daysAgo * 86_400_000);
  const amount = { amountMinor, currency: "KES" };
  return create(MyShareSchema, {
    venueId: randomUUID(),
    venueName,
    distributionId: randomUUID(),
    period: { start: timestampFromDate(new Date(end.getTime() - 8 * 3_600_000)), end: timestampFromDate(end) },
    method: SplitMethod.BY_HOURS,
    ruleVersion: 1,
    poolTotal: amount,
    membersPaid: 1,
    line: { memberId: randomUUID(), weight: 480n, totalWeight: 480n, amount, minutes: 480n },
    status: DistributionStatus.CONFIRMED,
    confirmedAt: timestampFromDate(end),
  });
}

function waitForOtp(h: WebHarness, phone: string): Promise<string> {
  // otpFor throws until the SMS has arrived.
  return waitUntil("the OTP SMS", () => h.otpFor(phone), { timeoutMs: 10_000, everyMs: 100, retryErrors: true });
}
