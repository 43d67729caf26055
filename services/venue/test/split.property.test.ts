// Shares always add up to the amount distributed: first the split itself over
// many random cases, then the service on real PostgreSQL over random rosters,
// shifts and rules, previewed and confirmed into the real ledger.
import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { after, before, describe, test } from "node:test";
import { SplitMethod } from "@ttip/proto/ttip/venue/v1/venue_pb.js";
import { cutByWeights } from "../src/split.js";
import { planSplit, type RosterMember, type ShiftSpan } from "../src/plan.js";
import { period, startHarness, ts, type Harness } from "./setup.js";

/** A small deterministic generator, so a failure can be replayed from its seed. */
function rng(seed: number) {
  let s = seed >>> 0 || 1;
  const next = () => ((s = (s * 1664525 + 1013904223) >>> 0) / 2 ** 32);
  return { next, int: (lo: number, hi: number) => lo + Math.floor(next() * (hi - lo + 1)) };
}
const HOUR = 3600_000;
const METHODS = [SplitMethod.EQUAL_ON_SHIFT, SplitMethod.BY_HOURS, SplitMethod.BY_ROLE_POINTS, SplitMethod.FIXED_PERCENTAGES];

describe("splits add up", () => {
  test("cutByWeights: shares sum to the amount, differ from the exact share by less than one unit, never negative (20,000 cases)", () => {
    const r = rng(20261129);
    for (let i = 0; i < 20_000; i++) {
      const n = r.int(1, 40);
      const weights: bigint[] = Array.from({ length: n }, () => BigInt(r.int(0, 3) === 0 ? 0 : r.int(1, 100_000)));
      if (!weights.some((w) => w > 0n)) weights[0] = 1n;
      const amount = r.int(0, 3) === 0 ? BigInt(r.int(0, 999)) : BigInt(r.int(0, 5_000_000)) * (r.int(0, 1) ? 100n : 1n);
      const { amounts, unit } = cutByWeights(amount, weights);
      const total = weights.reduce((s, w) => s + w, 0n);
      assert.equal(amounts.reduce((s, a) => s + a, 0n), amount, `seed case ${i}`);
      amounts.forEach((a, j) => {
        assert.ok(a >= 0n);
        if (weights[j] === 0n) assert.equal(a, 0n);
        // |a - amount*w/total| < unit
        const diff = a * total - amount * weights[j];
        assert.ok((diff < 0n ? -diff : diff) < unit * total, `case ${i} member ${j}`);
      });
    }
  });

  test("planSplit: over random rosters (some members came back), shifts and rules the lines sum to the takings or there are none, one line per worker", () => {
    const r = rng(42);
    const start = new Date("2026-11-20T00:00:00Z");
    const end = new Date(start.getTime() + 24 * HOUR);
    for (let i = 0; i < 2_000; i++) {
      const roster: RosterMember[] = Array.from({ length: r.int(1, 15) }, (_, k) => ({
        memberId: `00000000-0000-4000-8000-${String(k).padStart(12, "0")}`,
        workerId: r.int(0, 9) ? randomUUID() : null,
        displayName: `m${k}`,
        roleId: "r",
        isManager: r.int(0, 5) === 0,
        points: r.int(0, 20),
        joinedAt: new Date(start.getTime() + (r.int(-48, 30)) * HOUR),
        leftAt: r.int(0, 4) === 0 ? new Date(start.getTime() + r.int(-10, 30) * HOUR) : null,
      })).map((m) => (m.leftAt && m.leftAt < m.joinedAt ? { ...m, leftAt: m.joinedAt } : m));
      // Some came back: a second membership of the worker before them in the roster.
      for (let k = 1; k < roster.length; k++) if (r.int(0, 3) === 0) roster[k].workerId = roster[k - 1].workerId;
      const shifts: ShiftSpan[] = roster.flatMap((m) =>
        Array.from({ length: r.int(0, 3) }, () => {
          const s = start.getTime() + r.int(-6 * 60, 26 * 60) * 60_000;
          return { memberId: m.memberId, start: new Date(s), end: new Date(s + r.int(1, 12 * 60) * 60_000) };
        }),
      );
      const picked = roster.filter(() => r.int(0, 1));
      const bps = picked.map(() => r.int(1, 100));
      const sum = bps.reduce((a, b) => a + b, 0);
      const fixedShares = picked.map((m, k) => ({ memberId: m.memberId, basisPoints: Math.floor((bps[k] * 10_000) / Math.max(sum, 1)) }));
      const method = METHODS[r.int(0, 3)];
      const amount = BigInt(r.int(0, 2_000_000));
      const plan = planSplit(amount, "KES", { version: 1, method, includeManagers: r.int(0, 1) === 1, fixedShares }, roster, shifts, { start, end });
      const total = plan.lines.reduce((s, l) => s + l.amountMinor, 0n);
      if (plan.lines.length) assert.equal(total, amount, `case ${i}`);
      assert.equal(new Set(plan.lines.map((l) => l.workerId)).size, plan.lines.length, `case ${i}: the wallet pays a worker once per split`);
      for (const l of plan.lines) {
        const m = roster.find((x) => x.memberId === l.memberId)!;
        assert.ok(m.workerId, "an invited member who has not accepted is never paid");
        assert.ok(!(m.leftAt && m.leftAt <= start), "a member who left before the period gets nothing");
        assert.ok(m.joinedAt < end, "a member who joined after the period gets nothing");
      }
    }
  });

  test("planSplit, fixed percentages: a member on the staff for part of the period has their percentage of that part, the rest goes to those there", () => {
    const start = new Date("2026-11-01T00:00:00Z");
    const day = 24 * HOUR;
    const end = new Date(start.getTime() + 30 * day);
    const member = (k: number, leftAt: Date | null): RosterMember => ({
      memberId: `00000000-0000-4000-8000-${String(k).padStart(12, "0")}`, workerId: randomUUID(), displayName: `m${k}`, roleId: "r",
      isManager: false, points: 0, joinedAt: new Date(start.getTime() - day), leftAt,
    });
    const [a, b] = [member(1, new Date(start.getTime() + day)), member(2, null)];
    const rule = { version: 1, method: SplitMethod.FIXED_PERCENTAGES, includeManagers: false, fixedShares: [a, b].map((m) => ({ memberId: m.memberId, basisPoints: 5_000 })) };
    const plan = planSplit(60_000n, "KES", rule, [a, b], [], { start, end });
    // Before, A, gone after the first of 30 days, had her 50% of the whole month: KES 300.
    assert.deepEqual(plan.lines.map((l) => [l.displayName, l.amountMinor, l.weight, l.totalWeight]), [["m1", 1_000n, 1n, 60n], ["m2", 59_000n, 59n, 60n]]);
    assert.match(plan.lines[0].explanation, /^50\.00% fixed, on the staff 24h of 720h: 1 of 60 x KES 600 = KES 10$/);
    // Both there the whole period: their percentages as they are.
    const whole = planSplit(60_000n, "KES", rule, [member(1, null), b], [], { start, end });
    assert.deepEqual(whole.lines.map((l) => [l.amountMinor, l.weight, l.totalWeight]), [[30_000n, 5_000n, 10_000n], [30_000n, 5_000n, 10_000n]]);
  });
});

describe("splits add up in the service, on PostgreSQL and the ledger", () => {
  let h: Harness;
  before(async () => {
    h = await startHarness();
  });
  after(async () => {
    await h.close();
  });

  test("random venues: every preview's shares sum to its takings; confirmed, the ledger moves exactly that and the pool is empty", async () => {
    const r = rng(7);
    const base = new Date(Date.now() - 30 * HOUR);
    let confirmed = 0;
    for (let v = 0; v < 6; v++) {
      const venue = await h.newVenue(`Venue ${v}`);
      const people = [];
      for (let k = 0; k < r.int(1, 5); k++) {
        const role = ["front_of_house", "kitchen", "bar", "manager"][r.int(0, 3)];
        people.push({ role, ...(await h.join(venue, `P${k}`, role, new Date(base.getTime() - HOUR))) });
      }
      for (const p of people) {
        let t = base.getTime() + r.int(0, 120) * 60_000;
        for (let s = 0; s < r.int(0, 3); s++) {
          const len = r.int(30, 9 * 60) * 60_000;
          await venue.api.recordShift({ venueId: venue.venueId, memberId: p.memberId, startedAt: ts(new Date(t)), endedAt: ts(new Date(t + len)), idempotencyKey: randomUUID() });
          t += len + r.int(10, 120) * 60_000;
        }
      }
      const method = METHODS[r.int(0, 3)];
      const fixedShares = method === SplitMethod.FIXED_PERCENTAGES ? people.map((p, k) => ({ memberId: p.memberId, basisPoints: k === 0 ? 10_000 - 100 * (people.length - 1) : 100 })) : [];
      await venue.api.setSplitRule({ venueId: venue.venueId, method, includeManagers: r.int(0, 1) === 1, fixedShares, idempotencyKey: randomUUID() });
      let takings = 0n;
      for (let k = 0; k < r.int(1, 6); k++) {
        const minor = BigInt(r.int(1, 3000)) * (r.int(0, 3) ? 100n : 1n);
        takings += minor;
        await h.tipPool(venue.venueId, minor);
      }
      const p = period(base, new Date());
      const preview = (await venue.api.previewDistribution({ venueId: venue.venueId, period: p })).distribution!;
      assert.equal(preview.collected!.amountMinor, takings);
      const sum = preview.shares.reduce((s, x) => s + x.amount!.amountMinor, 0n);
      if (!preview.shares.length) continue;
      assert.equal(sum, takings, `venue ${v}: ${preview.summary}`);
      const { distribution } = await venue.api.confirmDistribution({ venueId: venue.venueId, period: p, expectedCollected: preview.collected });
      assert.deepEqual(distribution!.shares.map((s) => s.amount!.amountMinor), preview.shares.map((s) => s.amount!.amountMinor));
      for (const s of distribution!.shares) assert.equal(await h.walletBalance(s.workerId), s.amount!.amountMinor);
      assert.equal(await h.poolBalance(venue.venueId), 0n);
      confirmed++;
    }
    assert.ok(confirmed >= 3, `only ${confirmed} of 6 random venues had anyone to pay`);
    assert.equal(await h.trialBalanced(), true);
  });
});
