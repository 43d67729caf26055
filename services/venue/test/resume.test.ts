// A distribution whose ledger call fails or whose answer is lost is finished
// later, once: the saved plan is posted under the same key, one entry, one set
// of share events, whoever finishes it (a repeated confirm or the background pass).
import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { after, before, describe, test } from "node:test";
import { Code, ConnectError, type Transport } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import { DistributionStatus, SplitMethod } from "@ttip/proto/ttip/venue/v1/venue_pb.js";
import type { ServiceContext } from "@ttip/runtime";
import { Distributions } from "../src/distributions.js";
import { period, startHarness, ts, type Harness } from "./setup.js";

const HOUR = 3600_000;

describe("distributions finished after a failure, once", () => {
  let h: Harness;
  before(async () => {
    h = await startHarness();
  });
  after(async () => {
    await h.close();
  });

  /** The venue service's distribution logic with the wallet's posting out of reach (a dead port); reads still work. */
  const withoutWallet = (): Distributions => {
    const dead: Transport = createGrpcTransport({ baseUrl: "http://127.0.0.1:9" });
    const wallet = (): Transport => {
      const live = h.t.ctx.peers("wallet");
      return { unary: (method, ...rest) => (method.name === "PostPoolDistribution" ? dead : live).unary(method, ...rest), stream: live.stream };
    };
    const ctx: ServiceContext = { ...h.t.ctx, peers: (name: string) => (name === "wallet" ? wallet() : h.t.ctx.peers(name)) };
    return new Distributions(ctx);
  };

  const readyVenue = async () => {
    const start = new Date(Date.now() - 6 * HOUR);
    const v = await h.newVenue("Resume Bar");
    const a = await h.join(v, "Achieng", "bar", new Date(start.getTime() - HOUR));
    const b = await h.join(v, "Brian", "bar", new Date(start.getTime() - HOUR));
    for (const m of [a, b]) {
      await v.api.recordShift({ venueId: v.venueId, memberId: m.memberId, startedAt: ts(start), endedAt: ts(new Date(start.getTime() + 2 * HOUR)), idempotencyKey: randomUUID() });
    }
    await v.api.setSplitRule({ venueId: v.venueId, method: SplitMethod.EQUAL_ON_SHIFT, idempotencyKey: randomUUID() });
    await h.tipPool(v.venueId, 30_000n);
    return { v, a, b, p: { start, end: new Date() } };
  };
  const entries = async (distributionId: string) =>
    Number((await h.t.db.pool.query("SELECT count(*) FROM wallet.entries WHERE cause_kind = 'poolDistributionId' AND cause_ref = $1", [distributionId])).rows[0].count);
  const shareEvents = async (distributionId: string) =>
    Number((await h.t.db.pool.query("SELECT count(*) FROM venue.outbox WHERE subject = 'ttip.venue.share_allocated' AND position($1 in encode(payload, 'escape')) > 0", [distributionId])).rows[0].count);

  test("the ledger unreachable when posting: the plan stays 'posting'; confirming again posts it once", async () => {
    const { v, a, p } = await readyVenue();
    const venue = { venueId: v.venueId, name: "Resume Bar", currency: "KES", active: true };
    await assert.rejects(withoutWallet().confirm(venue, p, { subject: "manager-1" }), (e: ConnectError) => e.code === Code.Unavailable);
    const { rows } = await h.t.db.pool.query("SELECT distribution_id, status FROM venue.distributions WHERE venue_id = $1", [v.venueId]);
    assert.deepEqual(rows.map((r) => r.status), ["posting"]);
    assert.equal(await h.walletBalance(a.workerId), 0n, "nothing moved yet");
    const again = await v.api.confirmDistribution({ venueId: v.venueId, period: period(p.start, p.end) });
    assert.equal(again.created, false, "the saved plan was finished, not a new one made");
    assert.equal(again.distribution!.distributionId, rows[0].distribution_id);
    assert.equal(again.distribution!.status, DistributionStatus.CONFIRMED);
    assert.equal(await entries(rows[0].distribution_id), 1);
    assert.equal(await shareEvents(rows[0].distribution_id), 2);
    assert.equal(await h.walletBalance(a.workerId), 15_000n);
  });

  test("the ledger posted but its answer was lost: the background pass records the same entry, no second one", async () => {
    const { v, a, b, p } = await readyVenue();
    const venue = { venueId: v.venueId, name: "Resume Bar", currency: "KES", active: true };
    await assert.rejects(withoutWallet().confirm(venue, p, { subject: "manager-1" }), (e: ConnectError) => e.code === Code.Unavailable);
    const { rows: [d] } = await h.t.db.pool.query("SELECT * FROM venue.distributions WHERE venue_id = $1", [v.venueId]);
    const { rows: shares } = await h.t.db.pool.query("SELECT worker_id, amount_minor FROM venue.shares WHERE distribution_id = $1 ORDER BY line", [d.distribution_id]);
    // What the first call would have done had its answer reached us.
    const first = await h.walletInternal.postPoolDistribution({
      venueId: v.venueId, currency: "KES", start: timestampFromDate(d.period_start), end: timestampFromDate(d.period_end), distributionId: d.distribution_id,
      shares: shares.map((s) => ({ workerId: s.worker_id, amount: { amountMinor: BigInt(s.amount_minor), currency: "KES" }, memo: "" })),
      idempotencyKey: `venue-distribution:${d.distribution_id}`, description: "lost answer",
    });
    assert.equal(first.created, true);
    const finished = await new Distributions(h.t.ctx).finishPending(0);
    assert.equal(finished, 1);
    const { rows: [after] } = await h.t.db.pool.query("SELECT status, entry_id FROM venue.distributions WHERE distribution_id = $1", [d.distribution_id]);
    assert.deepEqual([after.status, after.entry_id], ["confirmed", first.entry!.entryId]);
    assert.equal(await entries(d.distribution_id), 1);
    assert.equal(await h.walletBalance(a.workerId) + (await h.walletBalance(b.workerId)), 30_000n);
    assert.equal(await h.poolBalance(v.venueId), 0n);
    assert.equal(await shareEvents(d.distribution_id), 2);
  });

  test("plans the ledger refuses under their key are tried again later and later, so a pass's batch is left to newer plans", async () => {
    const asked = new Map<string, number>();
    // The venue's distribution logic, counting the plans it asks the ledger to post.
    const counting = (): Distributions => {
      const live = h.t.ctx.peers("wallet");
      const wallet: Transport = {
        unary: (method, signal, timeoutMs, header, input, ...rest) => {
          if (method.name === "PostPoolDistribution") {
            const id = (input as { distributionId: string }).distributionId;
            asked.set(id, (asked.get(id) ?? 0) + 1);
          }
          return live.unary(method, signal, timeoutMs, header, input, ...rest);
        },
        stream: live.stream,
      };
      return new Distributions({ ...h.t.ctx, peers: (name: string) => (name === "wallet" ? wallet : h.t.ctx.peers(name)) });
    };
    const stuck = await readyVenue();
    await assert.rejects(withoutWallet().confirm({ venueId: stuck.v.venueId, name: "Resume Bar", currency: "KES", active: true }, stuck.p, { subject: "manager-1" }));
    const { rows: [d] } = await h.t.db.pool.query("SELECT * FROM venue.distributions WHERE venue_id = $1", [stuck.v.venueId]);
    await h.walletInternal.postPoolDistribution({
      venueId: stuck.v.venueId, currency: "KES", start: timestampFromDate(d.period_start), end: timestampFromDate(d.period_end), distributionId: d.distribution_id,
      shares: [{ workerId: stuck.a.workerId, amount: { amountMinor: 30_000n, currency: "KES" }, memo: "" }],
      idempotencyKey: `venue-distribution:${d.distribution_id}`, description: "another split",
    });
    const newer = await readyVenue();
    await assert.rejects(withoutWallet().confirm({ venueId: newer.v.venueId, name: "Resume Bar", currency: "KES", active: true }, newer.p, { subject: "manager-1" }));
    const { rows: [n] } = await h.t.db.pool.query("SELECT distribution_id FROM venue.distributions WHERE venue_id = $1", [newer.v.venueId]);
    const statusOf = async (id: string) => (await h.t.db.pool.query("SELECT status FROM venue.distributions WHERE distribution_id = $1", [id])).rows[0].status;
    // Passes of one plan each: the first takes the older, refused; the next finishes the newer, not the refused one again.
    assert.equal(await counting().finishPending(0, 1), 0);
    assert.equal(asked.get(d.distribution_id), 1);
    assert.equal(await counting().finishPending(0, 1), 1);
    assert.equal(asked.get(d.distribution_id), 1, "the refused plan not asked about again at once");
    assert.equal(asked.get(n.distribution_id), 1);
    assert.equal(await statusOf(n.distribution_id), "confirmed");
    // Its wait over, it is asked again; refused again, it waits longer.
    const wait = async () => (await h.t.db.pool.query<{ s: number }>(
      "SELECT extract(epoch FROM next_try_at - now())::float8 AS s FROM venue.distributions WHERE distribution_id = $1", [d.distribution_id])).rows[0].s;
    const first = await wait();
    await h.t.db.pool.query("UPDATE venue.distributions SET next_try_at = now() WHERE distribution_id = $1", [d.distribution_id]);
    assert.equal(await counting().finishPending(0, 1), 0);
    assert.equal(asked.get(d.distribution_id), 2);
    assert.ok(await wait() > first, "a longer wait after the second refusal");
    assert.equal(await statusOf(d.distribution_id), "posting", "the period stays taken");
    assert.equal(await entries(d.distribution_id), 1);
  });

  test("the ledger holds another split under the distribution's key: the plan is not abandoned (its key's money moved), nothing more is posted", async () => {
    const { v, a, b, p } = await readyVenue();
    const venue = { venueId: v.venueId, name: "Resume Bar", currency: "KES", active: true };
    await assert.rejects(withoutWallet().confirm(venue, p, { subject: "manager-1" }), (e: ConnectError) => e.code === Code.Unavailable);
    const { rows: [d] } = await h.t.db.pool.query("SELECT * FROM venue.distributions WHERE venue_id = $1", [v.venueId]);
    // Posted under the plan's key with other shares than the plan saved (15 000 each): the ledger refuses the plan's as a reuse of the key.
    const posted = await h.walletInternal.postPoolDistribution({
      venueId: v.venueId, currency: "KES", start: timestampFromDate(d.period_start), end: timestampFromDate(d.period_end), distributionId: d.distribution_id,
      shares: [{ workerId: a.workerId, amount: { amountMinor: 20_000n, currency: "KES" }, memo: "" }, { workerId: b.workerId, amount: { amountMinor: 10_000n, currency: "KES" }, memo: "" }],
      idempotencyKey: `venue-distribution:${d.distribution_id}`, description: "another split",
    });
    assert.equal(posted.created, true);
    await assert.rejects(new Distributions(h.t.ctx).finish(d.distribution_id, "Resume Bar"), (e: ConnectError) => e.code === Code.FailedPrecondition && /idempotency_key/.test(e.message));
    assert.equal(await new Distributions(h.t.ctx).finishPending(0), 0);
    const { rows: [after] } = await h.t.db.pool.query("SELECT status FROM venue.distributions WHERE distribution_id = $1", [d.distribution_id]);
    assert.equal(after.status, "posting", "the period stays taken: the ledger's entry under its key covers it");
    assert.equal(await entries(d.distribution_id), 1);
    assert.deepEqual([await h.walletBalance(a.workerId), await h.walletBalance(b.workerId)], [20_000n, 10_000n]);
    assert.equal(await shareEvents(d.distribution_id), 0);
  });

  test("two finishes of one plan at once: one asks the ledger and records its answer; a refusal never abandons a plan whose money moved", async () => {
    const { v, p } = await readyVenue();
    await assert.rejects(withoutWallet().confirm({ venueId: v.venueId, name: "Resume Bar", currency: "KES", active: true }, p, { subject: "manager-1" }));
    const { rows: [d] } = await h.t.db.pool.query("SELECT distribution_id FROM venue.distributions WHERE venue_id = $1", [v.venueId]);
    // The first post waits, then is refused (as a pool owing money is); a second goes to the ledger, and its answer
    // waits until the first's refusal is recorded.
    let posts = 0;
    let refuseFirst = () => undefined as void;
    let answerSecond = () => undefined as void;
    const [firstHeld, secondHeld] = [new Promise<void>((r) => (refuseFirst = r)), new Promise<void>((r) => (answerSecond = r))];
    const live = h.t.ctx.peers("wallet");
    const wallet: Transport = {
      unary: async (method, signal, timeoutMs, header, input, ...rest) => {
        if (method.name !== "PostPoolDistribution") return live.unary(method, signal, timeoutMs, header, input, ...rest);
        if (++posts === 1) {
          await firstHeld;
          throw new ConnectError("the pool owes KES 50", Code.FailedPrecondition);
        }
        const answer = await live.unary(method, signal, timeoutMs, header, input, ...rest);
        await secondHeld;
        return answer;
      },
      stream: live.stream,
    };
    const distributions = new Distributions({ ...h.t.ctx, peers: (name: string) => (name === "wallet" ? wallet : h.t.ctx.peers(name)) });
    const first = distributions.finish(d.distribution_id, "Resume Bar").catch(() => undefined);
    while (posts === 0) await new Promise((r) => setTimeout(r, 10));
    const second = distributions.finish(d.distribution_id, "Resume Bar").then((x) => x, (e: Error & { code: Code }) => e);
    await new Promise((r) => setTimeout(r, 300));
    refuseFirst();
    await first;
    answerSecond();
    const waited = await second;
    const { rows: [after] } = await h.t.db.pool.query("SELECT status FROM venue.distributions WHERE distribution_id = $1", [d.distribution_id]);
    // Before, the first's refusal abandoned the plan after the second had posted it: workers paid, never told, the period stuck.
    assert.deepEqual([after.status, await entries(d.distribution_id)], ["abandoned", 0]);
    assert.equal(posts, 1, "one finish at a time asks the ledger");
    // Before, the finish that waited answered the abandoned plan as a distribution: a double tap read "already confirmed".
    assert.ok(waited instanceof Error, "the waiting finish answers the refusal");
    assert.equal(Code[waited.code], Code[Code.FailedPrecondition]);
    assert.match(waited.message, /the ledger refused the distribution: .*the pool owes KES 50/);
  });

  test("a refusal whose finish's claim lapsed (its statement stalled a minute) does not abandon the plan: another finish holds it now, and the ledger may have taken it", async () => {
    const { v, p } = await readyVenue();
    await assert.rejects(withoutWallet().confirm({ venueId: v.venueId, name: "Resume Bar", currency: "KES", active: true }, p, { subject: "manager-1" }));
    const { rows: [d] } = await h.t.db.pool.query("SELECT distribution_id FROM venue.distributions WHERE venue_id = $1", [v.venueId]);
    const live = h.t.ctx.peers("wallet");
    const wallet: Transport = {
      unary: async (method, ...rest) => {
        if (method.name !== "PostPoolDistribution") return live.unary(method, ...rest);
        // While this finish waited, its claim lapsed and another finish claimed the plan.
        await h.t.db.pool.query("UPDATE venue.distributions SET finishing_until = now() + interval '50 seconds' WHERE distribution_id = $1", [d.distribution_id]);
        throw new ConnectError("the pool owes KES 50", Code.FailedPrecondition);
      },
      stream: live.stream,
    };
    const distributions = new Distributions({ ...h.t.ctx, peers: (name: string) => (name === "wallet" ? wallet : h.t.ctx.peers(name)) });
    await assert.rejects(distributions.finish(d.distribution_id, "Resume Bar"), (e: ConnectError) => e.code === Code.FailedPrecondition && /the pool owes KES 50/.test(e.message));
    const { rows: [after] } = await h.t.db.pool.query("SELECT status FROM venue.distributions WHERE distribution_id = $1", [d.distribution_id]);
    // Before, 'abandoned': had the other finish's post been taken, the workers were paid and the period stuck for good.
    assert.equal(after.status, "posting", "left to the finish that holds it");
  });

  test("a reversal whose answer was lost, asked again in other words: the ledger's reversal is recorded, not refused as another request", async () => {
    const { v, a, p } = await readyVenue();
    const { distribution: d } = await v.api.confirmDistribution({ venueId: v.venueId, period: period(p.start, p.end) });
    // What the first ReverseDistribution did before its answer was lost: the shares back in the pool, the venue not told.
    const { reversal } = await h.walletInternal.reversePoolDistribution({ entryId: d!.entryId, idempotencyKey: `venue-reversal:${d!.distributionId}`, reason: "Brian's shift was wrong" });
    assert.equal(await h.poolBalance(v.venueId), 30_000n);
    // Before, ALREADY_EXISTS (another reason, another request) answered as "try again", for good: the split stayed confirmed.
    const again = (await v.api.reverseDistribution({ venueId: v.venueId, distributionId: d!.distributionId, reason: "wrong shift" })).distribution!;
    assert.equal(DistributionStatus[again.status], DistributionStatus[DistributionStatus.REVERSED]);
    assert.equal(again.reversalEntryId, reversal!.entryId, "the reversal the first call posted, not a second");
    assert.equal(await h.poolBalance(v.venueId), 30_000n);
    assert.equal(await h.walletBalance(a.workerId), 0n);
    const redo = await v.api.confirmDistribution({ venueId: v.venueId, period: period(p.start, p.end) });
    assert.equal(redo.created, true, "the period freed to be split again");
  });

  test("a second, overlapping distribution is refused by the ledger itself, even past the venue service's own check", async () => {
    const { v, p } = await readyVenue();
    await v.api.confirmDistribution({ venueId: v.venueId, period: period(p.start, p.end) });
    await assert.rejects(
      h.walletInternal.postPoolDistribution({
        venueId: v.venueId, currency: "KES", start: timestampFromDate(new Date(p.start.getTime() + HOUR)), end: timestampFromDate(p.end),
        distributionId: randomUUID(), shares: [{ workerId: randomUUID(), amount: { amountMinor: 100n, currency: "KES" } }], idempotencyKey: randomUUID(),
      }),
      (e: ConnectError) => e.code === Code.FailedPrecondition && /already covers/.test(e.message),
    );
  });
});
