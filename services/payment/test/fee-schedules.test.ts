// Payment quotes tips from its copy of wallet's fee schedules: the same
// answers as wallet's QuoteTipFees, a new version after its event, a future
// version when its time comes without any reload, wallet asked when the tip
// needs converting.
import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { once } from "node:events";
import http2 from "node:http2";
import type { AddressInfo } from "node:net";
import { after, before, describe, test } from "node:test";
import { create, toJson } from "@bufbuild/protobuf";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import { Code, createClient, type Client } from "@connectrpc/connect";
import { AccountKind, FeeQuoteSchema, FeeScheduleSchema, OwnerKind, PaymentRail, type FeeQuote, type FeeSchedule } from "@ttip/proto/ttip/wallet/v1/wallet_pb.js";
import { WalletAdminService, WalletInternalService } from "@ttip/proto/ttip/wallet/v1/wallet_service_pb.js";
import { TipStatus } from "@ttip/proto/ttip/payment/v1/payment_pb.js";
import { PaymentService } from "@ttip/proto/ttip/payment/v1/payment_service_pb.js";
import { asConnectError, CARD_MAX_MINOR, callerHeaders, createPeers, systemClock, type MoneyAmount, MPESA_LIMITS, stepUpHeaders } from "@ttip/runtime";
import { FeeSchedules } from "../src/fee-schedules.js";
import { Ledger } from "../src/ledger.js";
import { eventually, KES, phone, startHarness, type Harness } from "./setup.js";

describe("payment's copy of the fee schedules, against the real wallet", () => {
  let h: Harness;
  let wallet: Client<typeof WalletInternalService>;
  let walletAdmin: Client<typeof WalletAdminService>;
  const adminHeaders = () => ({ ...callerHeaders(randomUUID(), "admin"), ...stepUpHeaders() });

  before(async () => {
    h = await startHarness();
    wallet = createClient(WalletInternalService, h.t.ctx.peers("wallet"));
    walletAdmin = createClient(WalletAdminService, h.t.ctx.peers("wallet"));
  });
  after(async () => {
    await h.close();
  });

  /** Calls wallet served so far, of `method` (WalletInternalService). */
  const served = async (method: string): Promise<number> => {
    const values = (await h.t.ctx.metrics.registry.getSingleMetric("grpc_server_started_total")!.get()).values;
    return values.filter((v) => v.labels.grpc_method === method && v.labels.grpc_service === "ttip.wallet.v1.WalletInternalService").reduce((n, v) => n + v.value, 0);
  };
  const newVersion = async (change: Partial<FeeSchedule>, effectiveFrom?: Date): Promise<FeeSchedule> => {
    const { schedules } = await walletAdmin.listFeeSchedules({ currency: "KES" }, { headers: adminHeaders() });
    const current = schedules.at(-1)!;
    const { schedule } = await walletAdmin.createFeeSchedule(
      { idempotencyKey: `fees-${randomUUID()}`, schedule: { ...current, ...change, effectiveFrom: effectiveFrom ? timestampFromDate(effectiveFrom) : undefined } },
      { headers: adminHeaders() },
    );
    return schedule!;
  };
  /** The answer, or the error's code and words: both sides must fail alike too. */
  const outcome = async <T>(answer: () => Promise<T>): Promise<{ value: T } | { code: number; message: string }> => {
    try {
      return { value: await answer() };
    } catch (err) {
      const e = asConnectError(err); // as the server answers it: a domain error with its code
      return { code: e.code, message: e.rawMessage };
    }
  };
  const quoteOutcome = (quote: () => Promise<FeeQuote | undefined>) => outcome(async () => toJson(FeeQuoteSchema, (await quote())!));

  /** `count` random KES tips on both rails, with and without the customer covering, quoted here and by wallet: how many were quotes (not refusals). */
  async function compareRandomQuotes(ledger: Ledger, workerId: string, count: number, seed: number) {
    // A small seeded generator: a failure names its seed and the tip.
    let state = seed >>> 0;
    const next = () => ((state = (Math.imul(state ^ (state >>> 15), 0x2c1b3c6d) + 0x6d2b79f5) >>> 0) / 2 ** 32);
    const between = (min: bigint, max: bigint) => min + BigInt(Math.floor(next() * Number(max - min + 1n)));
    let quoted = 0;
    for (let i = 0; i < count; i++) {
      const rail = next() < 0.5 ? PaymentRail.MPESA : PaymentRail.CARD;
      // Small tips most of the time (where minimums and rounding bite), any size otherwise.
      const top = rail === PaymentRail.MPESA ? MPESA_LIMITS.perTransactionMinor / 100n : CARD_MAX_MINOR.KES;
      const small = next() < 0.6;
      const raw = between(1n, small ? (rail === PaymentRail.MPESA ? 300n : 30_000n) : top);
      const amount: MoneyAmount = { currency: "KES", amountMinor: rail === PaymentRail.MPESA ? raw * 100n : raw };
      const covers = next() < 0.5;
      const here = await quoteOutcome(() => ledger.quote(amount, rail, { workerId }, covers));
      const there = await quoteOutcome(async () => (await wallet.quoteTipFees({ amount, rail, customerCoversFee: covers, workerId })).quote);
      assert.deepEqual(here, there, `seed ${seed}, tip ${i}: ${amount.amountMinor} KES minor, rail ${rail}, customer covers ${covers}`);
      if ("value" in here) quoted++;
    }
    return quoted;
  }

  test("quotes equal wallet's QuoteTipFees over many random tips, under the seeded schedule and an odd one, without a call per tip", async () => {
    const ledger = new Ledger(h.t.ctx);
    const stopFollowing = await ledger.feeSchedules.follow(h.t.ctx.bus, h.t.ctx.logger);
    try {
      const workerId = randomUUID();
      await ledger.account(AccountKind.WORKER_WALLET, workerId); // the worker's KES wallet, now known here
      const seed = Number(process.env.FEE_QUOTE_SEED ?? Date.now() % 2 ** 31);
      const [asked, loaded] = [await served("QuoteTipFees"), await served("LoadFeeSchedules")];
      assert.ok((await compareRandomQuotes(ledger, workerId, 250, seed)) > 200, "mostly quotes, a few tips too small for their fees");
      assert.equal(await served("QuoteTipFees"), asked + 250, "only the comparison's own calls reached wallet's QuoteTipFees");
      assert.equal(await served("LoadFeeSchedules"), loaded + 1, "the copy was loaded once");
      // A venue's pool is quoted here too (wallet finds no worker wallet for a venue's id: KES).
      const venueId = randomUUID();
      const venue = await ledger.quote(KES(123), PaymentRail.MPESA, { venueId }, true);
      assert.deepEqual(toJson(FeeQuoteSchema, venue), toJson(FeeQuoteSchema, (await wallet.quoteTipFees({ amount: KES(123), rail: PaymentRail.MPESA, customerCoversFee: true, workerId: venueId })).quote!));
      assert.equal(await served("QuoteTipFees"), asked + 251);

      const paidOutAsked = await served("QuotePayoutFee");
      // A payout's B2C charge too: the band of the amount, or OUT_OF_RANGE beyond the bands, as wallet answers.
      for (const amountMinor of [100n, 10_000n, 10_001n, 150_000n, 150_100n, 1_500_000n, 25_000_000n, 25_000_100n, 99n, 1n + BigInt(seed % 20_000_000)]) {
        const here = await outcome(() => ledger.payoutFee(amountMinor));
        const there = await outcome(async () => (await wallet.quotePayoutFee({ amount: { currency: "KES", amountMinor } })).fee!.amountMinor);
        assert.deepEqual(here, there, `payout of ${amountMinor} KES minor`);
      }
      assert.equal(await served("QuotePayoutFee"), paidOutAsked + 10, "only the comparison's own calls reached wallet's QuotePayoutFee");

      // Odd figures (rounding on every line, a fixed card part, a low cap), effective at once.
      const odd = await newVersion({ platformFeeBps: 333, platformFeeMinMinor: 7n, platformFeeCapMinor: 12_345n, cardFeeBps: 271, cardFeeFixedMinor: 13n });
      await eventually(async () => (await ledger.feeSchedules.inForce("KES")).version === odd.version, "the copy has the odd version");
      assert.ok((await compareRandomQuotes(ledger, workerId, 250, seed + 1)) > 200);
    } finally {
      await stopFollowing();
    }
  });

  // Before the next test moves the services' clock (wallet's quotes read the real time).
  test("an M-Pesa tip to a worker whose only wallet is in dollars is quoted and credited in KES, here; a card tip to them is quoted by wallet with the conversion", async () => {
    const ledger = new Ledger(h.t.ctx);
    const workerId = randomUUID();
    await wallet.ensureAccount({ kind: AccountKind.WORKER_WALLET, ownerKind: OwnerKind.WORKER, ownerId: workerId, currency: "USD" });
    // What a KES wallet gets from KES 500 (wallet quotes an id with no wallets in KES).
    const inKes = (await wallet.quoteTipFees({ amount: KES(500), rail: PaymentRail.MPESA, customerCoversFee: false, workerId: randomUUID() })).quote!;
    const asked = await served("QuoteTipFees");
    const mpesa = await ledger.quoteTip(50_000n, false);
    assert.equal(await served("QuoteTipFees"), asked, "an M-Pesa tip is quoted without asking wallet");
    assert.deepEqual(toJson(FeeQuoteSchema, mpesa), toJson(FeeQuoteSchema, inKes), "in KES, with no conversion to the dollar wallet");
    // A card tip is credited in the worker's wallet currency: wallet quotes it, converted to dollars.
    const card = await ledger.quote(KES(500), PaymentRail.CARD, { workerId }, false);
    assert.equal(await served("QuoteTipFees"), asked + 1, "a card tip to them asks wallet");
    assert.equal(card.conversion?.to?.currency, "USD");
    assert.equal(card.workerReceives!.currency, "USD");

    // Through the service: the tip's split and the money posted are in KES (its KES wallet is made for it).
    const pay = h.t.client(PaymentService);
    const { tip } = await pay.createTip({ idempotencyKey: randomUUID(), recipient: { case: "workerId", value: workerId }, amount: KES(500), payment: { case: "mpesaPhone", value: phone() } });
    await eventually(async () => (await pay.getTip({ tipId: tip!.tipId })).tip!.status === TipStatus.SUCCEEDED, "the tip credited");
    const { rows } = await h.t.db.pool.query<{ worker_receives_minor: bigint }>("SELECT worker_receives_minor FROM payment.tips WHERE tip_id = $1", [tip!.tipId]);
    assert.equal(rows[0].worker_receives_minor, inKes.workerReceives!.amountMinor);
    const balances = async () => (await h.t.db.pool.query<{ currency: string; balance_minor: string }>(
      "SELECT trim(currency) AS currency, balance_minor::text FROM wallet.accounts WHERE owner_id = $1 ORDER BY currency", [workerId])).rows;
    await eventually(async () => (await balances()).some((b) => b.currency === "KES" && BigInt(b.balance_minor) > 0n), "the KES wallet credited");
    assert.deepEqual(await balances(), [{ currency: "KES", balance_minor: String(inKes.workerReceives!.amountMinor) }, { currency: "USD", balance_minor: "0" }]);

    // Card tips: a worker without a wallet is asked about every time, one with a KES wallet once.
    const walletless = randomUUID();
    const cardAsked = await served("QuoteTipFees");
    for (const id of [walletless, walletless]) await ledger.quote(KES(500), PaymentRail.CARD, { workerId: id }, false);
    assert.equal(await served("QuoteTipFees"), cardAsked + 2, "a worker without a wallet is asked about every time (their first could be in any currency)");
    const kesWorker = randomUUID();
    await wallet.ensureAccount({ kind: AccountKind.WORKER_WALLET, ownerKind: OwnerKind.WORKER, ownerId: kesWorker, currency: "KES" });
    const first = await ledger.quote(KES(500), PaymentRail.CARD, { workerId: kesWorker }, false);
    const second = await ledger.quote(KES(500), PaymentRail.CARD, { workerId: kesWorker }, false);
    assert.equal(await served("QuoteTipFees"), cardAsked + 3, "a worker with a KES wallet asked once, then quoted here");
    assert.deepEqual(toJson(FeeQuoteSchema, second), toJson(FeeQuoteSchema, first));
  });

  test("a new version is used after its event; a later version's effective_from passing needs no event and no reload", async () => {
    let loads = 0;
    // An age bound of an hour: within this test only wallet's event can bring a new version.
    const copy = new FeeSchedules(async (currency) => {
      loads++;
      return (await wallet.loadFeeSchedules({ currency })).schedules;
    }, h.clock, undefined, 3_600_000);
    const stopFollowing = await copy.follow(h.t.ctx.bus, h.t.ctx.logger);
    try {
      const first = await copy.inForce("KES");
      assert.equal(loads, 1);
      const now = await newVersion({ platformFeeBps: 700 });
      assert.ok(now.version > first.version);
      await eventually(async () => (await copy.inForce("KES")).version === now.version, "the copy has the version after its event");
      assert.equal(loads, 2, "one reload, on the event");

      // A version effective in ten minutes: the copy holds it at once and keeps charging the one in force.
      const later = await newVersion({ platformFeeBps: 900 }, new Date(h.clock.now() + 600_000));
      // One follower takes the event from the durable consumer and tells the other (this copy and the service's, like two replicas).
      await eventually(async () => loads === 3, "the copy reloaded on the later version's event");
      await eventually(async () => (await h.copiedFeeScheduleVersion("KES")) === later.version, "the service's copy reloaded too");
      assert.equal((await copy.inForce("KES")).version, now.version, "not in force yet");

      // The service charges through the same kind of copy: a worker it has credited once is quoted there.
      const pay = h.t.client(PaymentService);
      const workerId = randomUUID();
      const tip = async () => (await pay.createTip({ idempotencyKey: randomUUID(), recipient: { case: "workerId", value: workerId }, amount: KES(200), payment: { case: "mpesaPhone", value: phone() } })).tip!;
      const firstTip = await tip();
      await eventually(async () => (await pay.getTip({ tipId: firstTip.tipId })).tip!.status === TipStatus.SUCCEEDED, "the first tip credited");
      const version = async (tipId: string) => (await h.t.db.pool.query("SELECT fee_schedule_version, fee_minor FROM payment.tips WHERE tip_id = $1", [tipId])).rows[0];
      assert.equal((await version(firstTip.tipId)).fee_schedule_version, now.version);

      h.clock.advance(601_000);
      assert.equal((await copy.inForce("KES")).version, later.version, "in force once its time has come");
      assert.equal(loads, 3, "without a reload");
      const asked = await served("QuoteTipFees");
      const secondTip = await tip();
      assert.deepEqual(await version(secondTip.tipId), { fee_schedule_version: later.version, fee_minor: 1_800n }, "9% of KES 200, quoted by the service at its time");
      assert.equal(await served("QuoteTipFees"), asked, "quoted without asking wallet");
    } finally {
      await stopFollowing();
    }
  });

  test("a wallet that answers nothing: a card tip's quote, a conversion and the fee schedules' load each give up UNAVAILABLE naming the call (QuoteTipFees, ConvertAmount, LoadFeeSchedules)", { timeout: 60_000 }, async () => {
    const wallet = await silentWallet();
    try {
      const ledger = new Ledger({ ...h.t.ctx, peers: wallet.peers });
      const outcomes = await Promise.all([
        ledger.quote({ currency: "USD", amountMinor: 1_000n }, PaymentRail.CARD, { workerId: randomUUID() }, false),
        ledger.inKes({ currency: "USD", amountMinor: 1_000n }),
        ledger.feeSchedules.inForce("KES"),
      ].map((asked) => asked.then(() => undefined, (err: unknown) => asConnectError(err))));
      assert.deepEqual(
        outcomes.map((e) => e && [Code[e.code], /^wallet did not answer (\w+) within 5000 ms; retry$/.exec(e.rawMessage)?.[1]]),
        [["Unavailable", "QuoteTipFees"], ["Unavailable", "ConvertAmount"], ["Unavailable", "LoadFeeSchedules"]],
      );
      assert.equal(wallet.calls(), 3, "each asked of wallet");
    } finally {
      await wallet.stop();
    }
  });
});

/** A wallet process that is stuck: an HTTP/2 server that takes every call and never answers. */
async function silentWallet() {
  const server = http2.createServer();
  const sessions: http2.ServerHttp2Session[] = [];
  let calls = 0;
  server.on("session", (s) => sessions.push(s));
  server.on("stream", (stream) => {
    calls++;
    stream.on("error", () => {});
  });
  server.listen(0, "127.0.0.1");
  await once(server, "listening");
  const peers = createPeers(() => `http://127.0.0.1:${(server.address() as AddressInfo).port}`);
  return {
    peers,
    calls: () => calls,
    stop: async () => {
      peers.close();
      for (const s of sessions) s.destroy();
      await new Promise((resolve) => server.close(resolve));
    },
  };
}

test("a reload ordered while a load runs does not join it: the copy kept is the one loaded after the order", async () => {
  const answers: Array<(version: number) => void> = [];
  const copy = new FeeSchedules(
    () => new Promise((resolve) => answers.push((version) => resolve([create(FeeScheduleSchema, { currency: "KES", version, platformFeeCapMinor: 1n })]))),
    systemClock,
  );
  const before = copy.inForce("KES"); // load 1, begun before the new version
  const reloaded = copy.reloadAll("KES"); // load 2
  assert.equal(answers.length, 2, "a second load, not the first joined");
  answers[1](2);
  answers[0](1);
  await reloaded;
  assert.equal((await before).version, 1, "a quote asked before the order may have the old version");
  assert.equal((await copy.inForce("KES")).version, 2, "the copy kept is the new one");
  assert.equal(answers.length, 2, "and it is fresh: no third load");
});

test("a reload order names a currency to load only when the platform handles it", async () => {
  const loaded: string[] = [];
  const copy = new FeeSchedules(async (currency) => {
    loaded.push(currency);
    return [create(FeeScheduleSchema, { currency, version: 1, platformFeeCapMinor: 1n })];
  }, systemClock);
  await copy.reloadAll("XYZ"); // three capitals, but no currency the platform knows
  assert.deepEqual(loaded, [], "nothing loaded for an unknown code");
  await copy.reloadAll("UGX");
  assert.deepEqual(loaded, ["UGX"]);
});
