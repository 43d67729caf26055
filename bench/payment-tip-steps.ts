// The JavaScript payment spends per M-Pesa tip around its group statements and its calls,
// without PostgreSQL: placing tips, deciding their success callbacks and recording their
// credits, each against a stand-in database that answers at once with the rows PostgreSQL
// would (the columns each statement returns, as text, made into rows by pg's own Result as the
// driver does), and a call to qr (a partner's link: CreateTip's QR resolution and a receipt's
// names call qr the same way) against a transport that answers at once. CPU and bytes allocated
// per tip, for this tree and, given BENCH_OTHER_TREE=<another checkout of the repo, with its
// node_modules>, for that one in alternated rounds: the ratio this/other in the same run is the
// figure to read, as the machine's load moves both alike.
//   node --import tsx bench/payment-tip-steps.ts [tips per step=20000] [rounds=3] [group=8]
import { randomBytes, randomUUID } from "node:crypto";
import { Session } from "node:inspector/promises";
import { resolve } from "node:path";
import { fileURLToPath } from "node:url";
import pg from "pg";

const count = Number(process.argv[2] ?? 20_000);
const rounds = Number(process.argv[3] ?? 3);
/** Tips per group statement: a busy replica's groups at concurrency 16 hold a few. */
const group = Number(process.argv[4] ?? 8);

const here = resolve(fileURLToPath(new URL("..", import.meta.url)));
const trees = [{ name: "this", root: here }, ...(process.env.BENCH_OTHER_TREE ? [{ name: "other", root: resolve(process.env.BENCH_OTHER_TREE) }] : [])];

/** The columns a tip's statements answer, with their types (OIDs) and a text value as PostgreSQL sends it (null: NULL). */
const TS = "2026-11-30 21:20:54.123456+00";
const COLUMNS: Record<string, [number, string | null]> = {
  idempotency_key: [25, randomUUID()], request_fingerprint: [25, randomBytes(32).toString("hex")], worker_id: [2950, randomUUID()], venue_id: [25, randomUUID()],
  qr_code_id: [25, randomUUID()], customer_subject: [25, ""], method: [25, "mpesa"], currency: [1042, "KES"], amount_minor: [20, "50000"], fee_minor: [20, "1500"],
  charged_minor: [20, "51500"], worker_receives_minor: [20, "50000"], fee_schedule_version: [23, "3"], customer_covers_fee: [16, "t"], phone: [25, "254712345678"],
  phone_masked: [25, "2547****678"], rating: [23, "5"], message: [25, "asante"], customer_email: [25, null], status: [25, "succeeded"], fraud_action: [25, "none"],
  result_code: [25, "0"], result_message: [25, "Payment received. Thank you!"], callback_token: [25, randomBytes(24).toString("base64url")],
  merchant_request_id: [25, "29115-34620561-1"], checkout_request_id: [25, "ws_CO_191220191020363925"], mpesa_receipt: [25, "NLJ7RT61SV"], credit_key: [25, "NLJ7RT61SV"],
  credit_kind: [25, "worker"], credit_entry_id: [2950, null], credited_at: [1184, null], deadline_at: [1184, TS], next_check_at: [1184, TS], checks: [23, "0"],
  lease_until: [1184, null], auto_payout_done: [16, "f"], created_at: [1184, TS], completed_at: [1184, TS], account_reference: [25, "TT12345"], channel: [25, "web"],
  fx_rate: [1700, null], fx_rate_time: [1184, null], card_state: [25, "none"], refunded_minor: [20, "0"], reversed_wallet_minor: [20, "0"], rated_at: [1184, null],
  received_minor: [20, null], blocked: [16, "f"], pin_failures: [20, "0"], phone_recent: [20, "1"], worker_recent: [20, "3"], median_minor: [20, "50000"],
  limited_charged: [1009, null], limited_wait: [1007, null], pin_limited: [16, "f"], phone_limited: [16, "f"], worker_limited: [16, "f"], median_outlier: [16, "f"],
  payout_phone_match: [16, "f"], payout_auto_payout: [16, "t"], payout_auto_payout_minimum_minor: [20, "0"], payout_payout_phone: [25, "254712345678"], payout_payouts_on_hold: [16, "f"],
};
/** Columns of the ids each row has its own of (the tip's, and the group's key of it). */
const ID_COLUMNS = new Set(["tip_id", "placement", "decided_by"]);
type PgResult = { addFields(fields: unknown[]): void; parseRow(values: (string | null)[]): Record<string, unknown> };
const PgResultClass = (pg as unknown as { Result: new () => PgResult }).Result;
pg.types.setTypeParser(pg.types.builtins.INT8, (v) => BigInt(v)); // as the runtime's db.ts

/**
 * The rows of a statement answering `columns`, made by pg's own Result from text values as
 * PostgreSQL sends them (the runtime keeps one Result's empty row per prepared statement).
 */
function rowsOf(columns: string[]): (ids: Record<string, string>) => Record<string, unknown> {
  const result = new PgResultClass();
  result.addFields(columns.map((name) => ({ name, dataTypeID: ID_COLUMNS.has(name) ? 2950 : (COLUMNS[name]?.[0] ?? 25), format: "text" })));
  return (ids) => result.parseRow(columns.map((c) => (ID_COLUMNS.has(c) ? ids[c] : (COLUMNS[c]?.[1] ?? null))));
}

interface Tree {
  name: string;
  steps: { name: string; run: () => Promise<unknown> }[];
}

async function load(name: string, root: string): Promise<Tree> {
  const mod = async <T>(path: string) => (await import(`${root}/${path}`)) as T;
  const tips = await mod<typeof import("../services/payment/src/tips.js")>("services/payment/src/tips.ts");
  const placements = await mod<typeof import("../services/payment/src/tip-placements.js")>("services/payment/src/tip-placements.ts");
  const callbacks = await mod<typeof import("../services/payment/src/stk-callbacks.js")>("services/payment/src/stk-callbacks.ts");
  const credits = await mod<typeof import("../services/payment/src/credits.js")>("services/payment/src/credits.ts");
  const partners = await mod<typeof import("../services/payment/src/partner-access.js")>("services/payment/src/partner-access.ts");
  const tipColumns = tips.TIP_COLUMNS.split(", ");
  const payoutColumns = ["payout_auto_payout", "payout_auto_payout_minimum_minor", "payout_payout_phone", "payout_payouts_on_hold"];
  const facts = ["blocked", "pin_failures", "phone_recent", "worker_recent", "median_minor", "limited_charged", "limited_wait", "pin_limited", "phone_limited", "worker_limited", "median_outlier", "payout_phone_match"];

  // The stand-in database: each group statement answered with one row per item, as PostgreSQL would.
  const placedRow = rowsOf(["placement", ...facts, ...tipColumns]);
  const decidedRow = rowsOf([...tipColumns, "decided_by"]);
  const recordedRow = rowsOf([...tipColumns, ...payoutColumns]);
  const db = {
    query: async (text: string, values: unknown[]) => {
      if (text.includes("AS placement")) return { rows: (values[4] as string[]).map((id) => placedRow({ placement: id, tip_id: id })) };
      if (text.includes("decided_by")) return { rows: (values[0] as string[]).map((id) => decidedRow({ decided_by: id, tip_id: randomUUID() })) };
      if (text.includes("payout_auto_payout")) return { rows: (values[0] as string[]).map((id) => recordedRow({ tip_id: id })) };
      throw new Error(`unexpected statement: ${text.slice(0, 80)}`);
    },
  };
  const config = {
    stkDeadlineMs: 90_000,
    fraud: { phonePerWindow: 1_000_000, workerPerWindow: 1_000_000, windowMs: 600_000, outlierMinor: 10n ** 12n, pinFailures: 1_000_000 },
  } as never;
  const quote = { workerReceives: { currency: "KES", amountMinor: 50_000n }, customerPays: { currency: "KES", amountMinor: 51_500n }, feeScheduleVersion: 3 } as never;
  const place = () => {
    const t = { idempotencyKey: randomUUID(), workerId: randomUUID(), venueId: randomUUID(), qrCodeId: randomUUID(), amountMinor: 50_000n, phone: "254712345678", customerCoversFee: true, rating: 5, message: "asante", customerEmail: "" };
    return placements.placeTip(db as never, placements.placement(t, { tipId: randomUUID(), fp: "ab", charged: 51_500n, quote, phoneMasked: "2547****678", config, clock: { now: () => Date.now() } }), false);
  };
  const callback = () => {
    const body = Buffer.from("{}");
    return callbacks.storeStkSuccess(db as never, {
      raw: { callbackId: randomUUID(), source: "mpesa_stk", path: "/callbacks/stk/[token]", remoteAddress: "127.0.0.1", body },
      token: randomBytes(24).toString("base64url"),
      success: { source: "callback", checkoutRequestId: "ws_CO_1", merchantRequestId: "m-1", resultCode: "0", resultDesc: "ok", receipt: randomBytes(5).toString("hex").toUpperCase(), amountMinor: 51500n, phone: "254712345678" },
    });
  };
  const record = (n: number) => {
    const credit = () => ({ tip: decidedRow({ decided_by: "", tip_id: randomUUID() }) as never, entryId: randomUUID(), traceparent: null, autoPayoutCheckAt: new Date() });
    return credits.recordCredits(db as never, Array.from({ length: n }, credit));
  };
  // A transport answering qr's CheckPartnerLink at once; the call is what CreateTip's QR resolution and a receipt's names make too.
  const transport = {
    unary: async (method: { output: unknown }) => ({ stream: false, service: {}, method, header: new Headers(), trailer: new Headers(), message: { linked: true } }),
    stream: () => {
      throw new Error("no streams here");
    },
  };
  const ctx = { peers: () => transport };
  const inGroups = (make: () => Promise<unknown>) => () => Promise.all(Array.from({ length: group }, make));
  return {
    name,
    steps: [
      { name: "placing tips (tip_created)", run: inGroups(place) },
      { name: "deciding success callbacks", run: inGroups(callback) },
      { name: "recording credits", run: () => record(group) },
      { name: "a call to qr (partner link)", run: inGroups(() => partners.partnerLinked({ ctx } as never, randomUUID(), randomUUID(), randomUUID())) },
    ],
  };
}

/** CPU per tip (us) of `run`, called count/group times (each call is `group` tips). */
async function cpuUsPerTip(run: () => Promise<unknown>): Promise<number> {
  const calls = Math.max(1, Math.round(count / group));
  const t0 = process.cpuUsage();
  for (let i = 0; i < calls; i++) await run();
  const t = process.cpuUsage(t0);
  return (t.user + t.system) / (calls * group);
}

/** Bytes allocated per tip, from V8's allocation sampling (collected objects counted). */
async function bytesPerTip(session: Session, run: () => Promise<unknown>): Promise<number> {
  const calls = Math.max(1, Math.round(Math.min(count, 5_000) / group));
  await session.post("HeapProfiler.startSampling", { samplingInterval: 512, includeObjectsCollectedByMajorGC: true, includeObjectsCollectedByMinorGC: true });
  for (let i = 0; i < calls; i++) await run();
  const { profile } = await session.post("HeapProfiler.stopSampling");
  type Node = { selfSize: number; children: Node[] };
  const sum = (node: Node): number => node.children.reduce((total, child) => total + sum(child), node.selfSize);
  return sum(profile.head as Node) / (calls * group);
}

const loaded = [];
for (const t of trees) loaded.push(await load(t.name, t.root));
const session = new Session();
session.connect();
console.log(`${count} tips per step, groups of ${group}; trees: ${trees.map((t) => `${t.name} ${t.root}`).join(", ")}`);
for (let round = 1; round <= rounds; round++) {
  console.log(`round ${round}`);
  // Alternated: this, other, then other, this in the next round.
  const order = round % 2 ? loaded : [...loaded].reverse();
  const figures = new Map<string, Map<string, { us: number; bytes: number }>>();
  for (const tree of order) {
    const mine = new Map<string, { us: number; bytes: number }>();
    for (const s of tree.steps) {
      await cpuUsPerTip(s.run); // warm
      mine.set(s.name, { us: await cpuUsPerTip(s.run), bytes: await bytesPerTip(session, s.run) });
    }
    figures.set(tree.name, mine);
  }
  for (const s of loaded[0].steps) {
    const a = figures.get("this")!.get(s.name)!;
    const b = figures.get("other")?.get(s.name);
    const vs = b ? `   other ${b.us.toFixed(2).padStart(6)} us ${(b.bytes / 1024).toFixed(2).padStart(6)} KiB   this/other CPU ${(a.us / b.us).toFixed(2)}x, bytes ${(a.bytes / b.bytes).toFixed(2)}x` : "";
    console.log(`  ${s.name.padEnd(30)} this ${a.us.toFixed(2).padStart(6)} us ${(a.bytes / 1024).toFixed(2).padStart(6)} KiB per tip${vs}`);
  }
}
session.disconnect();
