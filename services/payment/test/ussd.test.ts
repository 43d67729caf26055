import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { after, before, describe, test } from "node:test";
import { create, toBinary } from "@bufbuild/protobuf";
import { createClient, type Client } from "@connectrpc/connect";
import { createNotificationModule, DEFAULT_RETRY } from "@ttip/notification";
import { ProviderSimulator } from "@ttip/notification/testing";
import { createQrModule } from "@ttip/qr";
import { callerHeaders } from "@ttip/runtime";
import { smsSize } from "@ttip/runtime/sms-size";
import { SmsEncoding } from "@ttip/proto/ttip/notification/v1/notification_pb.js";
import { DynamicParametersSchema, OwnerKind } from "@ttip/proto/ttip/qr/v1/qr_pb.js";
import { QrService } from "@ttip/proto/ttip/qr/v1/qr_service_pb.js";
import { PaymentInternalService, PaymentService } from "@ttip/proto/ttip/payment/v1/payment_service_pb.js";
import { playDialogue, UssdSession, UssdSessionEnded } from "../src/ussd-simulator.js";
import { eventually, KES, phone, startHarness, type Harness } from "./setup.js";

const TOKEN = "ussd-test-path-token-0123456789";

describe("USSD tips (Africa's Talking's callback shape), dial to credited tip, against the real qr, wallet and notification services", () => {
  let h: Harness;
  let qr: Client<typeof QrService>;
  let url: string;
  const providers = new ProviderSimulator();

  before(async () => {
    await providers.start();
    h = await startHarness({}, [
      createQrModule({ env: { QR_ALLOW_DEV_SIGNING_KEY: "true" } }),
      createNotificationModule({ config: { providers: providers.config(), retry: { ...DEFAULT_RETRY, baseDelayMs: 30 }, publicUrl: () => "" } }),
    ]);
    h.config.ussd = { pathToken: TOKEN, sessionTimeoutMs: 60_000, answerWithinMs: 8_000, amountsKes: [50, 100, 200, 500] };
    qr = createClient(QrService, h.t.ctx.peers("qr"));
    url = `${h.config.callbackBaseUrl}/ussd/${TOKEN}`;
  });
  after(async () => {
    await h.close();
    await providers.close();
  });

  const worker = async (name: string) => {
    const id = randomUUID();
    const as = { headers: callerHeaders(id, "worker") };
    await qr.putProfile({ ownerKind: OwnerKind.WORKER, ownerId: id, displayName: name }, as);
    const { qrCode } = await qr.createQrCode({ ownerKind: OwnerKind.WORKER, ownerId: id, idempotencyKey: randomUUID() }, as);
    return { id, code: qrCode!.shortCode, qrCodeId: qrCode!.qrCodeId, as };
  };
  /** Africa's Talking sends +254…; the simulator knows the number as 2547…. */
  const dialler = () => {
    const local = phone();
    return { at: `+254${local.slice(1)}`, msisdn: `254${local.slice(1)}` };
  };
  const pushesTo = (msisdn: string) => h.sim.transactions().filter((t) => t.kind === "stk" && t.phone === msisdn);
  const ussdTip = async (sessionId: string) => (await h.t.db.pool.query("SELECT t.* FROM payment.ussd_sessions s JOIN payment.tips t USING (tip_id) WHERE s.session_id = $1", [sessionId])).rows[0];

  test("in English: code, name, a listed amount, confirm; the dialling phone is pushed, the worker credited, the receipt sent by SMS", async () => {
    const w = await worker("Achieng");
    const p = dialler();
    const s = new UssdSession(url, p.at);
    assert.match(await s.dial(), /^CON Welcome.*\n1\. English\n2\. Kiswahili$/s);
    assert.equal(await s.reply("1"), "CON Enter the worker's code (on their card):");
    const amounts = await s.reply(w.code.toLowerCase());
    assert.equal(amounts, "CON Tip Achieng:\n1. KES 50\n2. KES 100\n3. KES 200\n4. KES 500\n5. Other amount\n0. Back");
    assert.match(await s.reply("2"), /^CON Tip Achieng KES 100 by M-Pesa\?\n1\. Yes, pay\n2\. Cancel\n0\. Back$/);
    assert.match(await s.reply("1"), /^END You will get an M-Pesa prompt for KES 100 to tip Achieng/);
    assert.ok(s.screens.every((x) => x.answer.length <= 182 && x.ms < 5_000));
    assert.equal(pushesTo(p.msisdn).length, 1);
    assert.equal(pushesTo(p.msisdn)[0].amount, 100);
    await eventually(async () => (await h.balance(w.id)) === 9500n, "worker credited KES 95");
    const tip = await ussdTip(s.sessionId);
    assert.equal(tip.channel, "ussd");
    assert.equal(tip.qr_code_id, w.qrCodeId);
    const sms = await eventually(async () => providers.sent.find((m) => m.to.replace(/^\+/, "") === p.msisdn), "SMS receipt to the dialling phone");
    assert.match(sms.body, /KES 100/);
    assert.match(sms.body, new RegExp(tip.mpesa_receipt));
  });

  test("a confirm whose amount changed since its screen (the amount list, worked out again by each request) is shown again, not charged", async () => {
    const w = await worker("Wambui");
    const p = dialler();
    const s = new UssdSession(url, p.at);
    await s.dial();
    await s.reply("1");
    await s.reply(w.code);
    assert.match(await s.reply("2"), /^CON Tip Wambui KES 100 by M-Pesa\?/);
    // By the time the customer answers "1. Yes, pay", the list is another: the worker turned to USD, so qr suggests
    // no shilling amounts and USSD lists its own.
    const amounts = h.config.ussd!.amountsKes;
    h.config.ussd!.amountsKes = [50, 150, 200, 500];
    await qr.putProfile({ ownerKind: OwnerKind.WORKER, ownerId: w.id, displayName: "Wambui", currency: "USD" }, w.as);
    try {
      // Before, "1" charged KES 150, the amount this request worked out, not the KES 100 the customer read.
      assert.match(await s.reply("1"), /^CON This changed since your last screen; check it again\.\nTip Wambui KES 150 by M-Pesa\?/);
      assert.equal(pushesTo(p.msisdn).length, 0);
      assert.match(await s.reply("1"), /^END You will get an M-Pesa prompt for KES 150/);
      assert.deepEqual(pushesTo(p.msisdn).map((t) => t.amount), [150]);
    } finally {
      h.config.ussd!.amountsKes = amounts;
    }
  });

  test("a name outside SMS's plain alphabet (curly apostrophes, ũ, an emoji) is shown in it: one character beyond turns a USSD screen to UCS-2, which networks cut short", async () => {
    const w = await worker("Ng’ang’a Wanjirũ 🌟");
    const s = new UssdSession(url, dialler().at);
    await s.dial();
    await s.reply("1");
    assert.match(await s.reply(w.code), /^CON Tip Ng'ang'a Wanjiru:\n1\. KES 50/);
    assert.match(await s.reply("1"), /^CON Tip Ng'ang'a Wanjiru KES 50 by M-Pesa\?\n1\. Yes, pay\n2\. Cancel\n0\. Back$/);
    assert.match(await s.reply("2"), /^END Cancelled/);
    for (const screen of s.screens) assert.equal(smsSize(screen.answer).encoding, SmsEncoding.GSM7, screen.answer);
    // Nothing of the name left: the worker, in the customer's language.
    const emoji = await worker("🌟🌟");
    const sw = new UssdSession(url, dialler().at);
    await sw.dial();
    await sw.reply("2");
    assert.match(await sw.reply(emoji.code), /^CON Mpe mhudumu tip:\n1\. KES 50/);
  });

  test("the session's record failing after the push went out: the customer still reads that a prompt is coming, never 'nothing was charged'", async () => {
    const w = await worker("Otieno");
    const p = dialler();
    const s = new UssdSession(url, p.at);
    const fn = `payment.refuse_${s.sessionId.replace(/[^A-Za-z0-9]/g, "_")}`.slice(0, 60);
    // The database refuses only this session's last record (the final screen), after the push was sent.
    await h.t.db.pool.query(`CREATE FUNCTION ${fn}() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION 'connection lost'; END $$`);
    await h.t.db.pool.query(`CREATE TRIGGER refuse_final BEFORE UPDATE ON payment.ussd_sessions FOR EACH ROW
      WHEN (NEW.session_id = '${s.sessionId}' AND NEW.last_answer LIKE 'END%') EXECUTE FUNCTION ${fn}()`);
    try {
      await s.dial();
      await s.reply("1");
      await s.reply(w.code);
      await s.reply("2");
      const last = await s.reply("1");
      // Before: "END Sorry, something went wrong. Nothing was charged." with the prompt on the phone: dialled again, tipped twice.
      assert.match(last, /^END You will get an M-Pesa prompt for KES 100 to tip Otieno/);
      assert.equal(pushesTo(p.msisdn).length, 1);
    } finally {
      await h.t.db.pool.query("DROP TRIGGER refuse_final ON payment.ussd_sessions");
      await h.t.db.pool.query(`DROP FUNCTION ${fn}()`);
    }
  });

  test("in Swahili, with a typed amount and a wrong entry on the way", async () => {
    const w = await worker("Baraka");
    const p = dialler();
    const s = new UssdSession(url, p.at);
    await s.dial();
    assert.equal(await s.reply("2"), "CON Weka namba ya mhudumu (iko kwenye kadi yake):");
    assert.equal(await s.reply("XXXXXX"), "CON Namba XXXXXX haikupatikana.\nWeka namba ya mhudumu (iko kwenye kadi yake):");
    assert.match(await s.reply(w.code), /^CON Mpe Baraka tip:\n1\. KES 50\n.*\n5\. Kiasi kingine\n0\. Rudi$/s);
    assert.equal(await s.reply("5"), "CON Weka kiasi kwa KES (1 - 250,000):\n0. Rudi");
    assert.equal(await s.reply("abc"), "CON Kiasi kiwe kati ya KES 1 na 250,000.\nWeka kiasi kwa KES (1 - 250,000):\n0. Rudi");
    assert.match(await s.reply("150"), /^CON Mpe Baraka tip ya KES 150 kwa M-Pesa\?\n1\. Ndiyo, lipa\n2\. Ghairi\n0\. Rudi$/);
    assert.match(await s.reply("1"), /^END Utapokea ombi la M-Pesa la KES 150/);
    assert.equal(pushesTo(p.msisdn).length, 1);
    const tip = await ussdTip(s.sessionId);
    await eventually(async () => (await h.balance(w.id)) === BigInt(tip.worker_receives_minor), "worker credited KES 150 less the fee");
    // The receipt is in the language the customer chose in the menu.
    const sms = await eventually(async () => providers.sent.find((m) => m.to.replace(/^\+/, "") === p.msisdn), "SMS receipt to the dialling phone");
    const { mpesa_receipt } = await ussdTip(s.sessionId);
    assert.equal(sms.body, `Risiti ya TTIP: umetoa bakshishi ya KES 150 kwa Baraka. Kumb. ${mpesa_receipt}. Asante!`);
  });

  test("shillings typed at the amounts instead of an option's number are read as that amount, confirmed before anything is charged; an option's number stays the option", async () => {
    const w = await worker("Imani");
    const p = dialler();
    const s = new UssdSession(url, p.at);
    await s.dial();
    await s.reply("1");
    await s.reply(w.code);
    // Before, "Invalid choice." and the menu again.
    assert.match(await s.reply("100"), /^CON Tip Imani KES 100 by M-Pesa\?\n1\. Yes, pay/);
    assert.match(await s.reply("0"), /^CON Tip Imani:\n1\. KES 50/);
    assert.match(await s.reply("150"), /^CON Tip Imani KES 150 by M-Pesa\?/, "an amount not listed too");
    await s.reply("0");
    assert.equal(await s.reply("300000"), "CON The amount must be from KES 1 to 250,000.\nEnter the amount in KES (1 - 250,000):\n0. Back", "over M-Pesa's limit: said, on the typed-amount screen");
    await s.reply("0");
    assert.match(await s.reply("4"), /^CON Tip Imani KES 500 by M-Pesa\?/, "4 is the fourth option, not KES 4");
    assert.match(await s.reply("1"), /^END You will get an M-Pesa prompt for KES 500/);
    assert.deepEqual(pushesTo(p.msisdn).map((t) => t.amount), [500], "only the amount confirmed is charged");
  });

  test("0 goes back a screen: from the amounts to the code (a wrong but valid code), from the confirmation to the amounts; only the last choice is charged", async () => {
    const wrong = await worker("Gideon");
    const w = await worker("Halima");
    const p = dialler();
    const s = new UssdSession(url, p.at);
    await s.dial();
    await s.reply("1");
    assert.match(await s.reply(wrong.code), /^CON Tip Gideon:\n/);
    assert.equal(await s.reply("0"), "CON Enter the worker's code (on their card):");
    assert.match(await s.reply(w.code), /^CON Tip Halima:\n/);
    assert.match(await s.reply("4"), /^CON Tip Halima KES 500 by M-Pesa\?/);
    assert.match(await s.reply("0"), /^CON Tip Halima:\n1\. KES 50\n/);
    assert.equal(await s.reply("5"), "CON Enter the amount in KES (1 - 250,000):\n0. Back");
    assert.match(await s.reply("0"), /^CON Tip Halima:\n/);
    assert.match(await s.reply("1"), /^CON Tip Halima KES 50 by M-Pesa\?/);
    assert.match(await s.reply("1"), /^END You will get an M-Pesa prompt for KES 50 to tip Halima/);
    assert.deepEqual(pushesTo(p.msisdn).map((t) => t.amount), [50]);
    const tip = await ussdTip(s.sessionId);
    assert.equal(tip.worker_id, w.id);
    assert.ok(s.screens.every((x) => x.answer.length <= 182));
  });

  test("a customer who goes back and corrects several times still pays: 15 steps are not an expired session; a runaway one is told why", async () => {
    const wrong = await worker("Kamau");
    const w = await worker("Lulu");
    const p = dialler();
    const steps = ["1", wrong.code, "0", w.code, "5", "0", "5", "100.50", "0", "0", w.code, "2", "0", "2", "1"];
    const s = await playDialogue(url, p.at, steps);
    assert.equal(s.screens.length, steps.length + 1);
    assert.match(s.screens.at(-1)!.answer, /^END You will get an M-Pesa prompt for KES 100 to tip Lulu/);
    assert.deepEqual(pushesTo(p.msisdn).map((t) => t.amount), [100]);
    const runaway = await playDialogue(url, p.at, ["2", w.code, ...Array.from({ length: 12 }, (_, i) => (i % 2 ? "0" : "5")), "0", "0", "0", "0", "0", "0", "0", "0", "0", "0", "0"]);
    assert.equal(runaway.screens.at(-1)!.answer, "END Hatua nyingi mno katika kipindi kimoja. Hakuna pesa iliyotozwa; tafadhali piga tena.");
    assert.deepEqual(pushesTo(p.msisdn).map((t) => t.amount), [100]);
  });

  test("a typed amount that cannot be paid says why, in the customer's language: cents, zero, over M-Pesa's KES 250,000", async () => {
    const w = await worker("Imani");
    const p = dialler();
    const en = await playDialogue(url, p.at, ["1", w.code, "5", "100.50"]);
    assert.equal(en.screens.at(-1)!.answer, "CON Whole shillings only, no cents.\nEnter the amount in KES (1 - 250,000):\n0. Back");
    const sw = await playDialogue(url, p.at, ["2", w.code, "5", "100,50"]);
    assert.equal(sw.screens.at(-1)!.answer, "CON Shilingi kamili tu, bila senti.\nWeka kiasi kwa KES (1 - 250,000):\n0. Rudi");
    for (const typed of ["00", "250001", "9999999", "250,001", "0.00"]) {
      const s = await playDialogue(url, p.at, ["1", w.code, "5", typed]);
      assert.equal(s.screens.at(-1)!.answer, "CON The amount must be from KES 1 to 250,000.\nEnter the amount in KES (1 - 250,000):\n0. Back", typed);
    }
    assert.equal(pushesTo(p.msisdn).length, 0);
  });

  test("a typed amount grouped in thousands or with no cents is whole shillings: confirmed as typed", async () => {
    const w = await worker("Baraka");
    for (const [typed, kes] of [["1,000", "1,000"], ["12,500", "12,500"], ["150.00", "150"], ["150,0", "150"], ["1,000.00", "1,000"]]) {
      const s = await playDialogue(url, dialler().at, ["1", w.code, "5", typed]);
      // Before, "1,000" was told "Whole shillings only, no cents."
      assert.match(s.screens.at(-1)!.answer, new RegExp(`^CON Tip Baraka KES ${kes} by M-Pesa\\?`), typed);
    }
  });

  test("after M-Pesa refused an amount as a repeat within 2 minutes (result 17), dialling it again says when it can go, not that M-Pesa is down", async () => {
    const w = await worker("Jabali");
    const local = phone("0017"); // the simulator answers result 17 for numbers ending 0017
    const at = `+254${local.slice(1)}`;
    const first = await playDialogue(url, at, ["2", w.code, "1", "1"]);
    assert.match(first.screens.at(-1)!.answer, /^END Utapokea ombi la M-Pesa la KES 50/);
    await eventually(async () => (await ussdTip(first.sessionId))?.result_code === "17", "the push refused by M-Pesa's rule 17");
    const again = await playDialogue(url, at, ["2", w.code, "1", "1"]);
    assert.match(again.screens.at(-1)!.answer, /^END M-Pesa inakataa kiasi kilekile kutoka nambari yako ndani ya dakika 2\. Hakuna pesa iliyotozwa: jaribu tena baada ya sekunde \d+, au toa kiasi kingine\.$/);
    const en = await playDialogue(url, at, ["1", w.code, "1", "1"]);
    assert.match(en.screens.at(-1)!.answer, /^END M-Pesa refuses the same amount from your number within 2 minutes\. Nothing was charged: try again in \d+ seconds, or tip another amount\.$/);
    assert.equal(h.sim.transactions().filter((t) => t.kind === "stk" && t.phone === `254${local.slice(1)}`).length, 1, "one push");
  });

  test("every step tolerates repeats, and a session never charges twice", async () => {
    const w = await worker("Chebet");
    const p = dialler();
    const s = new UssdSession(url, p.at);
    const first = await s.dial();
    assert.equal(await s.repeat(), first);
    await s.reply("1");
    const named = await s.reply(w.code);
    assert.equal(await s.repeat(), named);
    await s.reply("3");
    const paid = await s.reply("1");
    // The gateway lost the answer and sends the last step again, twice, and at once.
    const again = await Promise.all([s.repeat(), s.repeat()]);
    assert.deepEqual(again, [paid, paid]);
    // Even a request replaying the whole dialogue under the same session id finds the tip made.
    const replay = new UssdSession(url, p.at, { sessionId: s.sessionId });
    replay.ended = false;
    assert.equal(await replay.replayText(`1*${w.code}*3*1`), paid);
    assert.equal(pushesTo(p.msisdn).length, 1, "one STK push");
    await eventually(async () => (await h.balance(w.id)) === 19000n, "credited KES 190 once");
    await h.sim.idle();
    assert.equal(await h.walletEntries(w.id), 1);
  });

  test("a push slower than the answer may take: the screen says a prompt may come, in time; the push goes on, once", async () => {
    const w = await worker("Gathoni");
    const p = dialler();
    const within = h.config.ussd!.answerWithinMs;
    h.config.ussd!.answerWithinMs = 200;
    // Daraja takes the push at once and answers a second later: before, the customer waited that second and more.
    h.sim.script({ phone: p.msisdn }, { answerDelayMs: 1_000 });
    try {
      const s = new UssdSession(url, p.at);
      await s.dial();
      await s.reply("1");
      await s.reply(w.code);
      await s.reply("1");
      const answer = await s.reply("1");
      assert.match(answer, /^END We could not confirm your tip\. If an M-Pesa prompt for KES \d+ comes, it is this tip\. Check your M-Pesa SMS before tipping again\.$/);
      await eventually(async () => pushesTo(p.msisdn).length === 1, "the push went on");
      await eventually(async () => (await h.balance(w.id)) > 0n, "credited");
      assert.equal(await s.repeat(), answer, "a repeat answers the same");
      assert.equal(pushesTo(p.msisdn).length, 1, "one push");
    } finally {
      h.config.ussd!.answerWithinMs = within;
    }
  });

  test("dialled with the code in the string, cancelled, unknown and revoked codes: nothing is charged", async () => {
    const w = await worker("Dalmas");
    const p = dialler();
    const direct = new UssdSession(url, p.at);
    // As the card prints it (a keypad dials no letters: the simulator refuses the short code itself).
    const { offline } = await qr.getOfflinePayload({ qrCodeId: w.qrCodeId }, w.as);
    const dialled = /^\*483\*123\*(\d+)#$/.exec(offline!.ussdCode)?.[1];
    assert.ok(dialled, offline!.ussdCode);
    assert.throws(() => new UssdSession(url, p.at).dial(w.code), /only 0-9 and \*/);
    assert.match(await direct.dial(dialled), /^CON Tip Dalmas:/);
    await direct.reply("1");
    assert.equal(await direct.reply("2"), "END Cancelled. Nothing was charged.");
    await assert.rejects(direct.reply("1"), UssdSessionEnded);
    const revoked = await worker("Esther");
    await qr.revokeQrCode({ qrCodeId: revoked.qrCodeId, reason: "left" }, revoked.as);
    const s = await playDialogue(url, p.at, ["1", revoked.code]);
    assert.match(s.screens.at(-1)!.answer, /^CON Code .* is no longer in use\./);
    // The card's digits with one typed wrong name nobody (their check digit), not another worker.
    const slip = dialled.slice(0, 3) + ((Number(dialled[3]) + 1) % 10) + dialled.slice(4);
    const slipped = new UssdSession(url, p.at);
    assert.match(await slipped.dial(slip), new RegExp(`^CON Code ${slip} was not found\\.`));
    assert.equal(slipped.screens.length, 1);
    assert.equal(pushesTo(p.msisdn).length, 0);
  });

  test("a code fixed at USD 10 is refused at once, in the customer's language, not offered as KES 10; nothing is charged", async () => {
    const id = randomUUID();
    const as = { headers: callerHeaders(id, "worker") };
    await qr.putProfile({ ownerKind: OwnerKind.WORKER, ownerId: id, displayName: "Guide", currency: "USD" }, as);
    const { qrCode } = await qr.createQrCode({ ownerKind: OwnerKind.WORKER, ownerId: id, idempotencyKey: randomUUID(), parameters: { fixedAmount: { amountMinor: 10_00n, currency: "USD" } } }, as);
    const p = dialler();
    const en = await playDialogue(url, p.at, ["1", qrCode!.shortCode]);
    const refused = en.screens.at(-1)!.answer;
    assert.equal(refused, `CON Code ${qrCode!.shortCode} is for USD 10. M-Pesa here pays in KES only: scan its QR code to pay by card.\nEnter the worker's code (on their card):`);
    const sw = await playDialogue(url, p.at, ["2", qrCode!.shortCode]);
    assert.match(sw.screens.at(-1)!.answer, /^CON Namba \w+ ni ya USD 10\. M-Pesa hapa inalipa kwa KES tu/);
    for (const s of [en, sw]) assert.ok(s.screens.every((x) => x.answer.length <= 182), "every screen fits USSD's 182 characters");
    // Even dialled straight to "yes" (the old confirm screen's answer), no push goes out.
    await playDialogue(url, p.at, ["1", qrCode!.shortCode, "1"]);
    assert.equal(pushesTo(p.msisdn).length, 0);
  });

  test("a code fixed at KES 150.50 is refused at once, in the customer's language, never charged as KES 150", async () => {
    const id = randomUUID();
    const as = { headers: callerHeaders(id, "worker") };
    await qr.putProfile({ ownerKind: OwnerKind.WORKER, ownerId: id, displayName: "Nuru" }, as);
    const { qrCode } = await qr.createQrCode({ ownerKind: OwnerKind.WORKER, ownerId: id, idempotencyKey: randomUUID(), parameters: { fixedAmount: { amountMinor: 150_00n, currency: "KES" } } }, as);
    // As a code stored before qr refused cents: fixed at KES 150.50.
    const cents = toBinary(DynamicParametersSchema, create(DynamicParametersSchema, { fixedAmount: { amountMinor: 150_50n, currency: "KES" } }));
    await h.t.db.pool.query("UPDATE qr.qr_codes SET parameters = $2 WHERE qr_code_id = $1", [qrCode!.qrCodeId, Buffer.from(cents)]);
    const code = qrCode!.shortCode;
    const p = dialler();
    const en = await playDialogue(url, p.at, ["1", code]);
    assert.equal(en.screens.at(-1)!.answer,
      `CON Code ${code} is for KES 150.50; M-Pesa pays whole shillings from KES 1 to 250,000 only: scan its QR code to pay by card.\nEnter the worker's code (on their card):`);
    const sw = await playDialogue(url, p.at, ["2", code]);
    assert.match(sw.screens.at(-1)!.answer, /^CON Namba \w+ ni ya KES 150\.50; M-Pesa hulipa shilingi kamili/);
    for (const s of [en, sw]) assert.ok(s.screens.every((x) => x.answer.length <= 182), "every screen fits USSD's 182 characters");
    // Dialled straight to "yes" (the old confirm screen's answer): no push.
    await playDialogue(url, p.at, ["1", code, "1"]);
    assert.equal(pushesTo(p.msisdn).length, 0);
  });

  test("a tip that fails part way is told truly: nothing charged when no push can have gone out, never so once one did", async () => {
    const w = await worker("Baraka");
    const p = dialler();
    // Refused by our database before any push (no tip stored): M-Pesa was never asked, and is not blamed.
    const refuse = async (name: string, ddl: string, run: () => Promise<void>) => {
      await h.t.db.pool.query(`CREATE FUNCTION payment.${name}() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION 'refused by the test'; END $$`);
      await h.t.db.pool.query(ddl.replace("$fn", `payment.${name}()`));
      try {
        await run();
      } finally {
        await h.t.db.pool.query(`DROP FUNCTION payment.${name}() CASCADE`);
      }
    };
    await refuse("ussd_test_refuse_tip", `CREATE TRIGGER ussd_test_refuse_tip BEFORE INSERT ON payment.tips FOR EACH ROW WHEN (NEW.phone = '${p.msisdn}') EXECUTE FUNCTION $fn`, async () => {
      for (const [lang, said] of [["1", "END We could not start your tip just now. Nothing was charged; please try again."], ["2", "END Hatukuweza kuanzisha tip yako kwa sasa. Hakuna pesa iliyotozwa; tafadhali jaribu tena."]]) {
        const s = await playDialogue(url, p.at, [lang, w.code, "2", "1"]);
        assert.equal(s.screens.at(-1)!.answer, said);
      }
    });
    assert.equal(pushesTo(p.msisdn).length, 0);
    // Pushed, then the session's record of it failed: the prompt is real, so the customer must not be told nothing was charged.
    await refuse("ussd_test_refuse_record", "CREATE TRIGGER ussd_test_refuse_record BEFORE UPDATE OF tip_id ON payment.ussd_sessions FOR EACH ROW EXECUTE FUNCTION $fn", async () => {
      const en = await playDialogue(url, p.at, ["1", w.code, "2", "1"]);
      assert.equal(en.screens.at(-1)!.answer, "END We could not confirm your tip. If an M-Pesa prompt for KES 100 comes, it is this tip. Check your M-Pesa SMS before tipping again.");
      const sw = await playDialogue(url, p.at, ["2", w.code, "3", "1"]);
      assert.equal(sw.screens.at(-1)!.answer, "END Hatukuweza kuthibitisha tip yako. Ombi la M-Pesa la KES 200 likija, ni la tip hii. Angalia SMS za M-Pesa kabla ya kutoa tip tena.");
    });
    assert.deepEqual(pushesTo(p.msisdn).map((t) => t.amount), [100, 200]);
  });

  test("a tip a fraud rule refuses is told which rule, in the customer's language, and that nothing was charged", async () => {
    const w = await worker("Wanjiru");
    const blocked = dialler();
    await h.t.db.pool.query("INSERT INTO payment.blocked_phones (phone, reason, blocked_by) VALUES ($1, 'ussd test', 'test')", [blocked.msisdn]);
    const en = await playDialogue(url, blocked.at, ["1", w.code, "2", "1"]);
    assert.equal(en.screens.at(-1)!.answer, "END This number cannot be used for tips. Nothing was charged. Please contact TTIP support.");
    const sw = await playDialogue(url, blocked.at, ["2", w.code, "2", "1"]);
    assert.equal(sw.screens.at(-1)!.answer, "END Nambari hii haiwezi kutumika kutoa tip. Hakuna pesa iliyotozwa. Tafadhali wasiliana na huduma kwa wateja ya TTIP.");
    assert.equal(pushesTo(blocked.msisdn).length, 0);
    // One tip per window from this number: the first is pushed, the second refused by the rule, not "try again".
    const busy = dialler();
    const perWindow = h.config.fraud.phonePerWindow;
    h.config.fraud.phonePerWindow = 1;
    try {
      assert.match((await playDialogue(url, busy.at, ["1", w.code, "1", "1"])).screens.at(-1)!.answer, /^END You will get an M-Pesa prompt for KES 50/);
      const again = await playDialogue(url, busy.at, ["2", w.code, "2", "1"]);
      assert.equal(again.screens.at(-1)!.answer, "END Tip nyingi mno kutoka nambari hii kwa sasa. Hakuna pesa iliyotozwa; tafadhali jaribu tena baadaye.");
      const inEnglish = await playDialogue(url, busy.at, ["1", w.code, "2", "1"]);
      assert.equal(inEnglish.screens.at(-1)!.answer, "END Too many tips from this number for now. Nothing was charged; please try again later.");
    } finally {
      h.config.fraud.phonePerWindow = perWindow;
    }
    assert.deepEqual(pushesTo(busy.msisdn).map((t) => t.amount), [50]);
  });

  test("a session's text over 200 characters ends in the customer's language", async () => {
    const p = dialler();
    const steps = Array.from({ length: 20 }, () => "123456789");
    assert.equal(await new UssdSession(url, p.at).dial(["2", ...steps].join("*")), "END Hatua nyingi mno katika kipindi kimoja. Hakuna pesa iliyotozwa; tafadhali piga tena.");
    assert.equal(await new UssdSession(url, p.at).dial(["1", ...steps].join("*")), "END Too many steps in one session. Nothing was charged; please dial again.");
  });

  test("sessions time out: the network ends an idle one, and the service refuses a stale one; a late repeat of the last request gets its screen", async () => {
    const w = await worker("Faith");
    const p = dialler();
    const network = new UssdSession(url, p.at, { networkTimeoutMs: 50 });
    await network.dial();
    await new Promise((r) => setTimeout(r, 80));
    await assert.rejects(network.reply("1"), UssdSessionEnded);
    const stale = new UssdSession(url, p.at, { networkTimeoutMs: 60_000 });
    await stale.dial();
    await stale.reply("1");
    await stale.reply(w.code);
    await stale.reply("1");
    h.clock.advance(h.config.ussd!.sessionTimeoutMs + 50); // past the service's timeout, no sleep
    assert.match(await stale.reply("1"), /^END This session has expired/);
    assert.equal(pushesTo(p.msisdn).length, 0);
    // A confirm whose answer was lost, sent again past the timeout: the screen it had, not "expired, dial again".
    const late = new UssdSession(url, p.at, { networkTimeoutMs: 60_000 });
    await late.dial();
    await late.reply("1");
    await late.reply(w.code);
    await late.reply("1");
    const paid = await late.reply("1");
    assert.doesNotMatch(paid, /expired/);
    h.clock.advance(h.config.ussd!.sessionTimeoutMs + 50);
    assert.equal(await late.repeat(), paid);
    assert.equal(pushesTo(p.msisdn).length, 1);
    // A screen that goes on (the confirm), repeated past the timeout, is not revived: its next step would push.
    const idle = new UssdSession(url, p.at, { networkTimeoutMs: 60_000 });
    await idle.dial();
    await idle.reply("1");
    await idle.reply(w.code);
    await idle.reply("2");
    h.clock.advance(h.config.ussd!.sessionTimeoutMs + 50);
    assert.match(await idle.repeat(), /^END This session has expired/);
    assert.equal(pushesTo(p.msisdn).length, 1);
    const wrong = await fetch(`${h.config.callbackBaseUrl}/ussd/not-the-real-token-000`, { method: "POST", body: "sessionId=x&phoneNumber=%2B254712345678&text=" });
    assert.equal(wrong.status, 404);
  });
  /** Of these tips, those credited whose receipt is no longer owed: owed in the credit's statement, so sent since. */
  const sentReceipts = async (tips: string[]) =>
    (await h.t.db.pool.query<{ n: number }>(
      "SELECT count(*)::int AS n FROM payment.tips t WHERE t.tip_id = ANY($1::uuid[]) AND t.credit_entry_id IS NOT NULL AND NOT EXISTS (SELECT 1 FROM payment.receipts r WHERE r.tip_id = t.tip_id)",
      [tips],
    )).rows[0].n;
  test("the receipts of tips credited together are each sent and marked sent once, whether a later tip's credit carries the mark or it is written alone", async () => {
    const pay = h.t.client(PaymentService);
    const tips = await Promise.all([1, 2, 3, 4, 5].map(async () =>
      (await pay.createTip({ idempotencyKey: randomUUID(), recipient: { case: "workerId", value: randomUUID() }, amount: KES(100), payment: { case: "mpesaPhone", value: phone() } })).tip!.tipId));
    // Each owed once credited (in the credit's statement), then marked sent: its row deleted.
    await eventually(async () => (await sentReceipts(tips)) === tips.length, "every receipt marked sent");
    const { rows: sent } = await h.t.db.pool.query("SELECT count(*)::int AS n FROM notification.deliveries WHERE source_key = ANY($1::text[])", [tips.map((id) => `rpc:receipt:${id}`)]);
    assert.equal(sent[0].n, tips.length, "one receipt each");
  });
  test("a web tip's receipt is in the language its request names (CreateTipRequest.locale): Swahili for sw, English without; a malformed locale is refused naming it", async () => {
    const pay = h.t.client(PaymentService);
    const w = await worker("Wanjiru");
    const tipIn = async (locale: string) => {
      const customer = dialler();
      const { tip } = await pay.createTip({ idempotencyKey: randomUUID(), recipient: { case: "qrCode", value: w.code }, amount: KES(100), payment: { case: "mpesaPhone", value: customer.at }, locale });
      const sms = await eventually(async () => providers.sent.find((m) => m.to.replace(/^\+/, "") === customer.msisdn), "SMS receipt to the paying phone");
      const { rows } = await h.t.db.pool.query("SELECT mpesa_receipt FROM payment.tips WHERE tip_id = $1", [tip!.tipId]);
      return { body: sms.body, receipt: rows[0].mpesa_receipt as string };
    };
    const sw = await tipIn("sw");
    assert.equal(sw.body, `Risiti ya TTIP: umetoa bakshishi ya KES 100 kwa Wanjiru. Kumb. ${sw.receipt}. Asante!`);
    const en = await tipIn("");
    assert.equal(en.body, `TTIP receipt: you tipped Wanjiru KES 100. Ref ${en.receipt}. Thank you!`);
    await assert.rejects(
      pay.createTip({ idempotencyKey: randomUUID(), recipient: { case: "qrCode", value: w.code }, amount: KES(100), payment: { case: "mpesaPhone", value: phone() }, locale: "sw-KE" }),
      (e: Error) => /^\[invalid_argument\] locale: /.test(e.message),
    );
  });
  test("a reconciliation pass sending owed receipts marks them together, not one statement (and one wait) per receipt", async () => {
    const pay = h.t.client(PaymentService);
    const tips = await Promise.all([1, 2, 3, 4, 5].map(async () =>
      (await pay.createTip({ idempotencyKey: randomUUID(), recipient: { case: "workerId", value: randomUUID() }, amount: KES(100), payment: { case: "mpesaPhone", value: phone() } })).tip!.tipId));
    const owed = async () => (await h.t.db.pool.query("SELECT count(*)::int AS n FROM payment.receipts WHERE tip_id = ANY($1::uuid[])", [tips])).rows[0].n;
    await eventually(async () => (await sentReceipts(tips)) === tips.length, "every receipt marked sent");
    await h.t.db.pool.query("INSERT INTO payment.receipts (tip_id) SELECT unnest($1::uuid[])", [tips]); // owed again, as after a lost mark
    const pool = h.t.db.pool;
    const query = pool.query;
    let markStatements = 0;
    pool.query = ((...args: Parameters<typeof query>) => {
      // The marks' own statement (receipts.ts); a credit carrying them starts otherwise and is not counted.
      if (typeof args[0] === "string" && args[0].startsWith("SELECT payment.mark_receipts_sent(")) markStatements++;
      return query.apply(pool, args);
    }) as typeof query;
    try {
      await createClient(PaymentInternalService, h.t.ctx.peers("payment")).reconcilePending({ limit: 100 });
    } finally {
      pool.query = query;
    }
    assert.equal(await owed(), 0, "the pass marked every receipt it sent");
    assert.ok(markStatements <= 1, `${markStatements} statements marked ${tips.length} receipts`); // none when a credit carried them
  });
});
