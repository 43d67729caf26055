import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { after, before, describe, test } from "node:test";
import { create } from "@bufbuild/protobuf";
import { Code, ConnectError, type Client } from "@connectrpc/connect";
import { AccountKind, EntryCauseSchema, OwnerKind } from "@ttip/proto/ttip/wallet/v1/wallet_pb.js";
import { WalletAdminService, WalletInternalService } from "@ttip/proto/ttip/wallet/v1/wallet_service_pb.js";
import { kesMinor, startTestService, type TestService } from "@ttip/runtime/testing";
import type { MessageInitShape } from "@bufbuild/protobuf";
import { PostEntryRequestSchema } from "@ttip/proto/ttip/wallet/v1/wallet_service_pb.js";
import { wallet } from "../src/index.js";

/** mulberry32: a small seeded generator, so a failing sequence can be replayed from its seed. */
function rng(seed: number) {
  let a = seed >>> 0;
  const next = () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  return { next, int: (lo: number, hi: number) => lo + Math.floor(next() * (hi - lo + 1)), pick: <T>(xs: T[]) => xs[Math.floor(next() * xs.length)] };
}

/** A call's result or its error code, so assertions run outside any catch. */
const attempt = <T>(p: Promise<T>) => p.then((ok) => ({ ok }), (e: unknown) => ({ code: Code[ConnectError.from(e).code] }));

interface Model {
  balance: Map<string, bigint>;
  held: Map<string, bigint>;
  /** Non-released holds per account, for the daily limit (KES 50,000 for basic). */
  used: Map<string, bigint>;
  holds: Map<string, { accountId: string; amount: bigint; state: "held" | "settled" | "released" }>;
  entries: { request: MessageInitShape<typeof PostEntryRequestSchema>; entryId: string; worker: string; net: bigint; reversedWith?: string }[];
}

const SEEDS = (process.env.WALLET_PROPERTY_SEEDS ?? "1,2,3").split(",").map(Number);
const STEPS = Number(process.env.WALLET_PROPERTY_STEPS ?? 120);
const DAILY_LIMIT = 5_000_000n;

describe("ledger invariants under random sequences (real PostgreSQL)", () => {
  let t: TestService;
  let internal: Client<typeof WalletInternalService>;
  let admin: Client<typeof WalletAdminService>;
  before(async () => {
    t = await startTestService(wallet, { bus: "in-process" });
    internal = t.client(WalletInternalService);
    admin = t.client(WalletAdminService, { subject: randomUUID(), roles: ["admin"], stepUp: true });
  });
  after(() => t.close());

  for (const seed of SEEDS) {
    test(`seed ${seed}: ${STEPS} random postings, duplicates, holds, settlements, releases and reversals keep every invariant`, async () => {
      const r = rng(seed);
      const clearing = (await internal.ensureAccount({ kind: AccountKind.MPESA_CLEARING, ownerKind: OwnerKind.PLATFORM, currency: "KES" })).account!.accountId;
      const fees = (await internal.ensureAccount({ kind: AccountKind.PLATFORM_FEES, ownerKind: OwnerKind.PLATFORM, currency: "KES" })).account!.accountId;
      const workers: string[] = [];
      for (let i = 0; i < 4; i++) {
        workers.push((await internal.ensureAccount({ kind: AccountKind.WORKER_WALLET, ownerKind: OwnerKind.WORKER, ownerId: randomUUID(), currency: "KES" })).account!.accountId);
      }
      const m: Model = { balance: new Map(workers.map((w) => [w, 0n])), held: new Map(workers.map((w) => [w, 0n])), used: new Map(workers.map((w) => [w, 0n])), holds: new Map(), entries: [] };
      const available = (w: string) => m.balance.get(w)! - m.held.get(w)!;
      const counts: Record<string, number> = {};
      const count = (k: string) => (counts[k] = (counts[k] ?? 0) + 1);

      const step = async () => {
        const op = r.int(0, 99);
        if (op < 35 || m.entries.length === 0) {
          const w = r.pick(workers);
          const gross = BigInt(r.int(1, 500) * 100);
          const fee = (gross * 5n) / 100n;
          const request = {
            idempotencyKey: `mpesa:${randomUUID()}`,
            cause: create(EntryCauseSchema, { cause: { case: "mpesaReceipt", value: `R${r.int(1e6, 9e6)}` } }),
            postings: [
              { accountId: clearing, amount: kesMinor(-gross) },
              { accountId: w, amount: kesMinor(gross - fee) },
              ...(fee ? [{ accountId: fees, amount: kesMinor(fee) }] : []),
            ],
          };
          const res = await internal.postEntry(request);
          assert.equal(res.created, true);
          m.balance.set(w, m.balance.get(w)! + gross - fee);
          m.entries.push({ request, entryId: res.entry!.entryId, worker: w, net: gross - fee });
          count("tip");
        } else if (op < 50) {
          // A duplicate delivery: the very same request again.
          const e = r.pick(m.entries);
          const res = await internal.postEntry(e.request);
          assert.equal(res.created, false);
          assert.equal(res.entry!.entryId, e.entryId);
          count("duplicate");
        } else if (op < 70) {
          const w = r.pick(workers);
          const amount = BigInt(r.int(1, 300) * 100);
          const payoutId = randomUUID();
          const res = await attempt(internal.placeHold({ accountId: w, amount: kesMinor(amount), payoutId, idempotencyKey: `hold:${payoutId}` }));
          if ("ok" in res) {
            assert.ok(amount <= available(w), "a hold beyond the available balance was accepted");
            assert.ok(m.used.get(w)! + amount <= DAILY_LIMIT, "a hold beyond the daily limit was accepted");
            m.held.set(w, m.held.get(w)! + amount);
            m.used.set(w, m.used.get(w)! + amount);
            m.holds.set(res.ok.hold!.holdId, { accountId: w, amount, state: "held" });
            count("hold");
          } else {
            if (res.code === "FailedPrecondition") assert.ok(amount > available(w), `refused a hold of ${amount} with ${available(w)} available`);
            else assert.equal(res.code, "ResourceExhausted");
            if (res.code === "ResourceExhausted") assert.ok(m.used.get(w)! + amount > DAILY_LIMIT);
            count(`hold refused (${res.code})`);
          }
        } else if (op < 82 && m.holds.size) {
          const [holdId, h] = r.pick([...m.holds]);
          const settle = r.next() < 0.5;
          const res = await attempt(
            settle ? internal.settleHold({ holdId, externalReference: `B2C${r.int(1e6, 9e6)}` }) : (internal.releaseHold({ holdId, reason: "b2c failed" }) as Promise<unknown>),
          );
          if ("ok" in res) {
            assert.ok(h.state === "held" || h.state === (settle ? "settled" : "released"), "a resolved hold changed its outcome");
            if (h.state === "held") {
              m.held.set(h.accountId, m.held.get(h.accountId)! - h.amount);
              if (settle) m.balance.set(h.accountId, m.balance.get(h.accountId)! - h.amount);
              else m.used.set(h.accountId, m.used.get(h.accountId)! - h.amount);
              h.state = settle ? "settled" : "released";
            }
            count(settle ? "settle" : "release");
          } else {
            assert.equal(res.code, "FailedPrecondition");
            assert.equal(h.state, settle ? "released" : "settled");
            count("resolve refused");
          }
        } else {
          const e = r.pick(m.entries);
          const key = `rev:${e.entryId}:${r.int(0, 1)}`;
          const res = await attempt(admin.reverseEntry({ entryId: e.entryId, idempotencyKey: key, reason: "property test" }));
          if ("ok" in res) {
            if (e.reversedWith) {
              assert.equal(key, e.reversedWith, "an entry was reversed twice");
              count("reversal replayed");
            } else {
              assert.ok(available(e.worker) >= e.net, "a reversal took a wallet below its holds");
              m.balance.set(e.worker, m.balance.get(e.worker)! - e.net);
              e.reversedWith = key;
              count("reversal");
            }
          } else {
            assert.equal(res.code, "FailedPrecondition");
            assert.ok((e.reversedWith && e.reversedWith !== key) || available(e.worker) < e.net);
            count("reversal refused");
          }
        }
      };

      for (let i = 0; i < STEPS; i++) {
        await step();
        if (i % 10 === 9 || i === STEPS - 1) {
          const tb = await admin.getTrialBalance({});
          assert.equal(tb.balanced, true, `seed ${seed} step ${i}: the ledger does not balance`);
          assert.ok(tb.lines.every((l) => l.netMinor === 0n));
          for (const w of workers) {
            const b = (await admin.getAccount({ accountId: w })).balance!;
            assert.equal(b.ledger!.amountMinor, m.balance.get(w), `seed ${seed} step ${i}: balance of ${w}`);
            assert.equal(b.held!.amountMinor, m.held.get(w), `seed ${seed} step ${i}: held of ${w}`);
            assert.ok(b.available!.amountMinor >= 0n);
          }
        }
      }
      const keys = await t.db.pool.query(`SELECT count(*) AS n, count(DISTINCT idempotency_key) AS k FROM wallet.entries`);
      assert.equal(keys.rows[0].n, keys.rows[0].k);
      // Postings keep no foreign keys (migration 0006): the posting statement alone guarantees what they name.
      const orphans = await t.db.pool.query(
        `SELECT count(*)::int AS n FROM wallet.postings p LEFT JOIN wallet.entries e USING (entry_id) LEFT JOIN wallet.accounts a USING (account_id)
          WHERE e.entry_id IS NULL OR a.account_id IS NULL OR a.currency <> p.currency`,
      );
      assert.equal(orphans.rows[0].n, 0, "a posting names a missing entry or account, or another currency than its account's");
      console.log(`seed ${seed}: ${JSON.stringify(counts)}`);
    });
  }
});
