// Splitting a finished period's pool takings: preview, confirm (one ledger
// entry, once per venue and period), reverse (a reversing entry with a reason).
import { createHash, randomUUID } from "node:crypto";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError, createClient, type Client } from "@connectrpc/connect";
import { VenueDistributionConfirmedSchema, VenueDistributionReversedSchema, VenueShareAllocatedSchema } from "@ttip/proto/ttip/events/v1/events_pb.js";
import { create, type MessageInitShape } from "@bufbuild/protobuf";
import { DistributionNoteKind as Note, DistributionSchema, DistributionStatus, SplitMethod, type Distribution, type DistributionNoteSchema } from "@ttip/proto/ttip/venue/v1/venue_pb.js";
import { DomainErrorInfoSchema } from "@ttip/proto/ttip/common/v1/errors_pb.js";
import { WalletInternalService } from "@ttip/proto/ttip/wallet/v1/wallet_service_pb.js";
import { DependencyUnavailableError, emitEvent, fieldError, formatMoney, InvalidStateError, lockForTransaction, type Logger, NotFoundError, PermissionDeniedError, type Pool, type Queryable, type ServiceContext, withTransaction } from "@ttip/runtime";
import type { VenueInfo } from "./access.js";
import { METHOD_WORDS, planSplit, type Period, type Plan } from "./plan.js";
import { eatTime } from "./shifts.js";
import { REMAINDER_RULE } from "./split.js";
import {
  audit,
  auditInConsole,
  loadDistribution,
  money,
  rosterFor,
  ruleInForce,
  ruleSpec,
  distributeLock,
  shiftsOfPeriod,
  toDistribution,
  toShareLine,
  type DistributionRow,
  type ShareRow,
  type VenueActor,
} from "./store.js";

/** How many plans left 'posting' one background pass finishes. */
const FINISH_BATCH = 20;
/** How long a confirm waits for another finish of its plan (the ledger call, 15 s at most, and its record). */
const FINISH_WAIT_MS = 20_000;

/** The wallet posts at most 100 lines per entry: the pool's and 98 shares, with room to spare. */
export const MAX_PAID_MEMBERS = 98;

export class Distributions {
  private readonly wallet: Client<typeof WalletInternalService>;
  private readonly pool: Pool;
  private readonly logger: Logger;

  /** `nameOf`: the venue's display name (for the share messages) when finishing a plan in the background. */
  constructor(ctx: ServiceContext, private readonly nameOf: (venueId: string) => Promise<string> = async () => "") {
    this.wallet = createClient(WalletInternalService, ctx.peers("wallet"));
    this.pool = ctx.pool;
    this.logger = ctx.logger;
  }

  private async takings(venue: VenueInfo, p: Period) {
    try {
      return await this.wallet.getPoolTakings({ venueId: venue.venueId, currency: venue.currency, start: timestampFromDate(p.start), end: timestampFromDate(p.end) }, { timeoutMs: 10_000 });
    } catch (err) {
      const e = ConnectError.from(err);
      if (e.code === Code.InvalidArgument) throw fieldError("period", e.rawMessage);
      throw new DependencyUnavailableError(`the ledger cannot be read now (${e.rawMessage})`);
    }
  }

  /** Net tips the pool took in the period (for reports). */
  async takingsFor(venue: VenueInfo, p: Period): Promise<bigint> {
    return (await this.takings(venue, p)).collected?.amountMinor ?? 0n;
  }

  private async plan(db: Queryable, venue: VenueInfo, p: Period) {
    const rule = await ruleInForce(db, venue.venueId);
    if (!rule) throw new InvalidStateError("venue_id: set a split rule first (SetSplitRule)");
    const t = await this.takings(venue, p);
    const collected = t.collected?.amountMinor ?? 0n;
    const shifts = await shiftsOfPeriod(db, venue.venueId, p.start, p.end);
    const plan = planSplit(collected, venue.currency, ruleSpec(rule), await rosterFor(db, venue.venueId, p.end), shifts.finished, p);
    // Hours still running count for nothing (only finished shifts are split): said, and a confirm waits for them.
    const stillOpen = rule.method === SplitMethod.FIXED_PERCENTAGES ? [] : shifts.open;
    // An older wallet does not say what the pool holds: nothing is known to be owed.
    const available = t.available?.amountMinor ?? collected;
    const owes = collected > 0n && available < collected ? collected - available : 0n;
    return { rule, plan, collected, credits: t.credits, overlapping: t.overlappingDistributionId, owes, stillOpen };
  }

  /** Who would get what; saves nothing. */
  async preview(venue: VenueInfo, p: Period): Promise<Distribution> {
    const { rule, plan, collected, credits, overlapping, owes, stillOpen } = await this.plan(this.pool, venue, p);
    const shown = (minor: bigint) => formatMoney(minor, venue.currency);
    // Each note as a fact for screens to word, and in English for the summary.
    const notes: Array<{ note: MessageInitShape<typeof DistributionNoteSchema>; words: string }> = [
      ...plan.excluded.map((x) => ({ note: { kind: x.kind, displayName: x.displayName, detail: x.detail }, words: `${x.displayName}: ${x.reason}` })),
      ...stillOpen.map((o) => ({ note: { kind: Note.SHIFT_STILL_OPEN, displayName: o.displayName, detail: eatTime(o.startedAt) }, words: openShiftWords(o) })),
      ...(overlapping ? [{ note: { kind: Note.OVERLAPS, detail: overlapping }, words: `distribution ${overlapping} already covers part of this period` }] : []),
      ...(p.end.getTime() > Date.now() ? [{ note: { kind: Note.PERIOD_NOT_OVER }, words: "the period is not over: more tips may still arrive in it" }] : []),
      ...(collected > 0n && !plan.lines.length ? [{ note: { kind: Note.NOBODY_ELIGIBLE }, words: "nobody is eligible: record shifts or change the rule" }] : []),
      ...(owes ? [{
        note: { kind: Note.POOL_OWES, amount: money(owes, venue.currency) },
        words: `the pool holds ${shown(collected - owes)} but the period took ${shown(collected)}: it owes ${shown(owes)} from refunds or chargebacks after earlier splits; split a period that also covers them`,
      }] : []),
    ];
    const shares = plan.lines.map((l, i) => toShareLine(shareRow("", i, l), venue.currency));
    return create(DistributionSchema, {
      venueId: venue.venueId,
      period: { start: timestampFromDate(p.start), end: timestampFromDate(p.end) },
      ruleVersion: rule.version,
      method: rule.method,
      collected: money(collected, venue.currency),
      distributed: money(plan.lines.reduce((s, l) => s + l.amountMinor, 0n), venue.currency),
      tipCount: credits,
      shares,
      remainderRule: REMAINDER_RULE,
      status: DistributionStatus.PREVIEW,
      summary: [`${METHOD_WORDS[rule.method]} (rule v${rule.version})`, ...notes.map((n) => n.words)].join("; "),
      // Paid ones: a line rounded to nothing (KES 2 among five) is shown, but the wallet pays it nothing.
      memberCount: plan.lines.filter((l) => l.amountMinor > 0n).length,
      roundingRemainderMinor: plan.lines.reduce((s, l) => s + l.remainderMinor, 0n),
      notes: notes.map((n) => n.note),
      sharesDigest: sharesDigest(rule.version, plan),
    });
  }

  /**
   * Confirms the period's split: the plan is saved ('posting') under a
   * per-venue lock, then posted to the wallet under a key of its own id (the
   * wallet also refuses a second unreversed distribution of any part of the
   * period), then recorded with its events. A repeat, or a retry after a
   * crash in between, finds the saved plan and finishes it: one entry, one set of events.
   */
  async confirm(venue: VenueInfo, p: Period, actor: VenueActor, expected: { collected?: bigint; shares?: string } = {}): Promise<{ distribution: Distribution; created: boolean }> {
    if (p.end.getTime() > Date.now()) {
      throw new InvalidStateError(`period.end: the period is not over yet (ends ${p.end.toISOString()}); tips may still arrive in it`);
    }
    const saved = await withTransaction(this.pool, async (tx) => {
      await lockForTransaction(tx, distributeLock(venue.venueId));
      const { rows: existing } = await tx.query<DistributionRow>(
        `SELECT * FROM venue.distributions WHERE venue_id = $1 AND status IN ('posting', 'confirmed') AND period_start < $3 AND period_end > $2`,
        [venue.venueId, p.start, p.end],
      );
      const same = existing.find((d) => d.period_start.getTime() === p.start.getTime() && d.period_end.getTime() === p.end.getTime());
      if (same) return { id: same.distribution_id, fresh: false };
      if (existing[0]) {
        throw new InvalidStateError(`period: distribution ${existing[0].distribution_id} already covers part of this period; reverse it first`);
      }
      const { rule, plan, collected, credits, overlapping, stillOpen } = await this.plan(tx, venue, p);
      if (overlapping) throw new InvalidStateError(`period: distribution ${overlapping} already covers part of this period; reverse it first`);
      if (stillOpen.length) throw new InvalidStateError(`period: ${stillOpen.map(openShiftWords).join("; ")}`);
      if (expected.collected !== undefined && expected.collected !== collected) {
        throw new InvalidStateError(`expected_collected: the pool took ${collected} minor units in the period, not ${expected.collected}; preview again`);
      }
      if (expected.shares && expected.shares !== sharesDigest(rule.version, plan)) {
        throw new InvalidStateError("expected_shares: the split comes out otherwise than the preview (a rule, a role's points, a shift or a member changed since); preview again");
      }
      if (collected <= 0n) throw new InvalidStateError("period: the pool took nothing in this period; nothing to distribute");
      if (!plan.lines.length) throw new InvalidStateError("period: nobody is eligible under the rule in force (no finished shifts?)");
      // A manager's membership from their days on the staff is split with the rest; not by them (its weights are theirs to
      // move: other roles' points, the rule), as its hours and role are not.
      if (plan.lines.some((l) => l.workerId === actor.subject && l.amountMinor > 0n)) {
        throw new PermissionDeniedError("period: this split pays you (your membership from your days on the staff): another manager of the venue or an admin confirms it");
      }
      if (plan.lines.filter((l) => l.amountMinor > 0n).length > MAX_PAID_MEMBERS) {
        throw new InvalidStateError(`period: more than ${MAX_PAID_MEMBERS} members to pay in one distribution; use shorter periods`);
      }
      const { rows: [{ revision }] } = await tx.query<{ revision: number }>(
        `SELECT count(*)::int AS revision FROM venue.distributions WHERE venue_id = $1 AND period_start = $2 AND period_end = $3 AND status = 'reversed'`,
        [venue.venueId, p.start, p.end],
      );
      const id = randomUUID();
      await tx.query(
        `INSERT INTO venue.distributions (distribution_id, venue_id, period_start, period_end, revision, currency, rule_version, method,
           collected_minor, tip_count, status, confirmed_by)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, 'posting', $11)`,
        [id, venue.venueId, p.start, p.end, revision, venue.currency, rule.version, rule.method, collected, credits, actor.subject],
      );
      for (const [i, l] of plan.lines.entries()) {
        const s = shareRow(id, i, l);
        await tx.query(
          `INSERT INTO venue.shares (distribution_id, line, member_id, worker_id, display_name, role_id, weight, total_weight, minutes, amount_minor, remainder_minor, explanation)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)`,
          [id, i, s.member_id, s.worker_id, s.display_name, s.role_id, s.weight, s.total_weight, s.minutes, s.amount_minor, s.remainder_minor, s.explanation],
        );
      }
      // The venue's own trail records the confirmation once the wallet has posted it (finish); an admin's decision
      // is in the console's with the plan it saved, whatever the posting's fate.
      await auditInConsole(tx, venue.venueId, actor, "distribution.confirmed", { distribution_id: id, period_start: p.start, period_end: p.end, collected_minor: collected });
      return { id, fresh: true };
    });
    const distribution = await this.finish(saved.id, venue.name);
    return { distribution, created: saved.fresh };
  }

  /** Posts a saved plan to the wallet (idempotent on its id) and records the entry and its events, once. */
  async finish(distributionId: string, venueName: string, waitForOther = true): Promise<Distribution> {
    const loaded = await loadDistribution(this.pool, distributionId);
    if (!loaded) throw new NotFoundError(`distribution_id: no distribution ${distributionId}`);
    const { d, shares } = loaded;
    if (d.status !== "posting") return finished(d, shares);
    // Another finish asking the ledger now records its answer (this one's refusal could abandon a plan it posted):
    // a confirm waits for it (a double tap answers the outcome); the background pass moves on.
    let claim = await this.claimFinish(distributionId);
    for (const until = Date.now() + FINISH_WAIT_MS; !claim && waitForOther && Date.now() < until;) {
      await new Promise((r) => setTimeout(r, 100));
      const now = (await loadDistribution(this.pool, distributionId))!;
      if (now.d.status !== "posting") return finished(now.d, now.shares);
      claim = await this.claimFinish(distributionId);
    }
    if (!claim) return toDistribution(d, shares);
    let entryId: string;
    try {
      const { entry } = await this.wallet.postPoolDistribution(
        {
          venueId: d.venue_id,
          currency: d.currency,
          start: timestampFromDate(d.period_start),
          end: timestampFromDate(d.period_end),
          distributionId: d.distribution_id,
          shares: shares.filter((s) => s.amount_minor > 0n).map((s) => ({ workerId: s.worker_id, amount: money(s.amount_minor, d.currency), memo: `${s.display_name}: ${s.weight}/${s.total_weight}` })),
          idempotencyKey: `venue-distribution:${d.distribution_id}`,
          description: `Tip pool ${d.period_start.toISOString()} - ${d.period_end.toISOString()} (rule v${d.rule_version})`,
        },
        { timeoutMs: 15_000 },
      );
      entryId = entry!.entryId;
    } catch (err) {
      const e = ConnectError.from(err);
      // The key holds another split (the ledger compares a retry's money and period with what it posted, not its
      // wording): money moved under it, and the ledger refuses any other split of the period, so the plan keeps the
      // period (left 'posting', for support). Only a bug gets here: the saved shares changed after they were posted
      // (they are immutable), or something else posted under the key. Every retry is refused alike: backed off.
      if (e.code === Code.AlreadyExists) {
        await this.deferKeyConflict(d.distribution_id, claim, e.rawMessage);
        throw new InvalidStateError(`period: the ledger holds another split under this distribution's key: ${e.rawMessage}`);
      }
      if (e.code === Code.FailedPrecondition || e.code === Code.InvalidArgument) {
        // The ledger will never take this plan (takings changed, overlap): give the period back. Only under this
        // finish's claim: one that lapsed meanwhile (a stalled statement) may belong to a finish the ledger took.
        const abandoned = await withTransaction(this.pool, async (tx) => {
          const { rowCount } = await tx.query(
            `UPDATE venue.distributions SET status = 'abandoned', abandon_reason = $2 WHERE distribution_id = $1 AND status = 'posting' AND finishing_until = $3::timestamptz`,
            [d.distribution_id, e.rawMessage.slice(0, 500), claim]);
          if (rowCount) await audit(tx, d.venue_id, d.confirmed_by, "distribution.abandoned", { distribution_id: d.distribution_id, reason: e.rawMessage });
          return rowCount === 1;
        });
        const now = abandoned ? undefined : await loadDistribution(this.pool, distributionId);
        if (now && now.d.status !== "posting") return finished(now.d, now.shares);
        throw new InvalidStateError(`period: the ledger refused the distribution: ${e.rawMessage}`);
      }
      // Unknown outcome (timeout, wallet down): left 'posting' and let go; a retry or the background pass finishes it.
      await this.pool.query("UPDATE venue.distributions SET finishing_until = NULL WHERE distribution_id = $1 AND finishing_until = $2::timestamptz", [distributionId, claim]);
      throw new DependencyUnavailableError(`the distribution is saved but not posted yet (${e.rawMessage}); confirming again finishes it`);
    }
    return withTransaction(this.pool, async (tx) => {
      const { rows } = await tx.query<DistributionRow>(
        `UPDATE venue.distributions SET status = 'confirmed', entry_id = $2, confirmed_at = now() WHERE distribution_id = $1 AND status = 'posting' RETURNING *`,
        [d.distribution_id, entryId],
      );
      const done = rows[0];
      if (!done) return finished((await loadDistribution(tx, d.distribution_id))!.d, shares);
      const total = shares.reduce((s, x) => s + x.amount_minor, 0n);
      const paid = shares.filter((s) => s.amount_minor > 0n);
      const period = { periodStart: timestampFromDate(done.period_start), periodEnd: timestampFromDate(done.period_end) };
      await emitEvent(tx, "venue", VenueDistributionConfirmedSchema, {
        venueId: done.venue_id, distributionId: done.distribution_id, ...period, ruleVersion: done.rule_version, method: done.method,
        distributed: money(total, done.currency), membersPaid: paid.length, tipCount: done.tip_count, entryId,
      }, done.distribution_id);
      for (const s of paid) {
        await emitEvent(tx, "venue", VenueShareAllocatedSchema, {
          venueId: done.venue_id, venueName, distributionId: done.distribution_id, memberId: s.member_id, workerId: s.worker_id,
          amount: money(s.amount_minor, done.currency), poolTotal: money(total, done.currency), ...period, ruleVersion: done.rule_version,
          method: done.method, explanation: s.explanation,
        }, done.distribution_id);
      }
      await audit(tx, done.venue_id, done.confirmed_by, "distribution.confirmed", {
        distribution_id: done.distribution_id, period_start: done.period_start, period_end: done.period_end, rule_version: done.rule_version,
        collected_minor: done.collected_minor, currency: done.currency, entry_id: entryId, shares: paid.map((s) => ({ member_id: s.member_id, amount_minor: s.amount_minor })),
      });
      return toDistribution(done, shares);
    });
  }

  /**
   * A plan whose key holds another split in the ledger: tried again after a wait that doubles with each refusal
   * (a minute, up to a day), so that such plans do not take every background pass's batch ahead of newer ones.
   */
  private async deferKeyConflict(distributionId: string, claim: string, reason: string): Promise<void> {
    const { rows: [r] } = await this.pool.query<{ key_conflicts: number; next_try_at: Date }>(
      `UPDATE venue.distributions SET key_conflicts = key_conflicts + 1, finishing_until = NULL,
         next_try_at = now() + least(interval '1 day', interval '1 minute' * power(2, least(key_conflicts, 11)))
        WHERE distribution_id = $1 AND status = 'posting' AND finishing_until = $2::timestamptz RETURNING key_conflicts, next_try_at`,
      [distributionId, claim],
    );
    if (r) this.logger.error({ distributionId, refusals: r.key_conflicts, nextTryAt: r.next_try_at, reason }, "the ledger holds another split under this distribution's key; support must look");
  }

  /**
   * Claims the plan's finish: the ledger call (15 s at most) and its record. Lapses after a minute, should the process
   * stop in between. The claim (its time), or undefined when another finish holds it or the plan is no longer posting.
   */
  private async claimFinish(distributionId: string): Promise<string | undefined> {
    // As text, to the microsecond: it names this claim when it is let go.
    const { rows } = await this.pool.query<{ claim: string }>(
      `UPDATE venue.distributions SET finishing_until = now() + interval '1 minute'
        WHERE distribution_id = $1 AND status = 'posting' AND (finishing_until IS NULL OR finishing_until < now()) RETURNING finishing_until::text AS claim`,
      [distributionId],
    );
    return rows[0]?.claim;
  }

  /** Finishes plans left 'posting' by a crash or a wallet outage, oldest first; at most `limit` per pass. */
  async finishPending(olderThanMs: number, limit = FINISH_BATCH): Promise<number> {
    const { rows } = await this.pool.query<{ distribution_id: string; venue_id: string }>(
      `SELECT distribution_id, venue_id FROM venue.distributions
        WHERE status = 'posting' AND created_at < now() - make_interval(secs => $1::double precision / 1000) AND (next_try_at IS NULL OR next_try_at <= now())
        ORDER BY created_at LIMIT $2`,
      [olderThanMs, limit],
    );
    let done = 0;
    for (const r of rows) {
      try {
        await this.finish(r.distribution_id, await this.nameOf(r.venue_id).catch(() => ""), false);
        done++;
      } catch (err) {
        this.logger.warn({ distributionId: r.distribution_id, err: (err as Error).message }, "pending distribution not finished yet");
      }
    }
    return done;
  }

  /** The ledger's reversal of the distribution's entry: posted now, or found if an admin reversed the entry in the wallet. */
  private async reverseInLedger(distributionId: string, entryId: string, reason: string): Promise<string> {
    try {
      const { reversal } = await this.wallet.reversePoolDistribution({ entryId, idempotencyKey: `venue-reversal:${distributionId}`, reason }, { timeoutMs: 15_000 });
      return reversal!.entryId;
    } catch (err) {
      const e = ConnectError.from(err);
      const info = e.findDetails(DomainErrorInfoSchema)[0];
      // The money is back in the pool already; recording that reversal frees the period to be split again.
      if (info?.reason === "ALREADY_REVERSED" && info.metadata.reversal_entry_id) return info.metadata.reversal_entry_id;
      if (e.code === Code.FailedPrecondition) {
        throw new InvalidStateError(`distribution_id: cannot be reversed: ${e.rawMessage} (a member may have withdrawn their share already)`);
      }
      throw new DependencyUnavailableError(`the ledger cannot reverse it now (${e.rawMessage}); try again`);
    }
  }

  /** Undoes a confirmed distribution with a reversing entry; the period may be split again. */
  async reverse(venueId: string, distributionId: string, reason: string, actor: VenueActor): Promise<Distribution> {
    const loaded = await loadDistribution(this.pool, distributionId);
    if (!loaded || loaded.d.venue_id !== venueId) throw new NotFoundError(`distribution_id: no distribution ${distributionId} at this venue`);
    const { d, shares } = loaded;
    if (d.status === "reversed") return toDistribution(d, shares);
    if (d.status !== "confirmed" || !d.entry_id) throw new InvalidStateError(`distribution_id: only a confirmed distribution can be reversed (this one is ${d.status})`);
    const reversalId = await this.reverseInLedger(d.distribution_id, d.entry_id, reason);
    return withTransaction(this.pool, async (tx) => {
      const { rows } = await tx.query<DistributionRow>(
        `UPDATE venue.distributions SET status = 'reversed', reversal_entry_id = $2, reversal_reason = $3, reversed_at = now(), reversed_by = $4
          WHERE distribution_id = $1 AND status = 'confirmed' RETURNING *`,
        [d.distribution_id, reversalId, reason, actor.subject],
      );
      const done = rows[0];
      if (!done) return toDistribution((await loadDistribution(tx, d.distribution_id))!.d, shares);
      const total = shares.reduce((s, x) => s + x.amount_minor, 0n);
      await emitEvent(tx, "venue", VenueDistributionReversedSchema, {
        venueId, distributionId: d.distribution_id, reversalEntryId: reversalId, reason, amount: money(total, d.currency),
        shares: shares.filter((x) => x.amount_minor > 0n).map((x) => ({ memberId: x.member_id, workerId: x.worker_id, amount: money(x.amount_minor, d.currency) })),
      }, d.distribution_id);
      await audit(tx, venueId, actor, "distribution.reversed", { distribution_id: d.distribution_id, reversal_entry_id: reversalId, reason });
      return toDistribution(done, shares);
    });
  }
}

/**
 * A plan no longer posting, as its finish ended it: a plan the ledger refused is that refusal again. Before, a
 * confirm that waited on another's finish answered an abandoned plan as a distribution ("already confirmed").
 */
function finished(d: DistributionRow, shares: ShareRow[]): Distribution {
  if (d.status === "abandoned") throw new InvalidStateError(`period: the ledger refused the distribution: ${d.abandon_reason}`);
  return toDistribution(d, shares);
}

const openShiftWords = (o: { displayName: string; startedAt: Date }) =>
  `${o.displayName} clocked in at ${eatTime(o.startedAt)} and not out: those hours count for nothing until the shift is closed (a clock-out, or RecordShift)`;

/** What a preview's split pays whom under which rule, as a digest its confirm compares (shares_digest). */
function sharesDigest(ruleVersion: number, plan: Plan): string {
  const lines = plan.lines.map((l) => `${l.memberId}:${l.amountMinor}`).sort();
  return createHash("sha256").update(`${ruleVersion}|${lines.join(",")}`).digest("hex").slice(0, 32);
}

function shareRow(distributionId: string, line: number, l: Plan["lines"][number]): ShareRow {
  return {
    distribution_id: distributionId,
    line,
    member_id: l.memberId,
    worker_id: l.workerId,
    display_name: l.displayName,
    role_id: l.roleId,
    weight: l.weight,
    total_weight: l.totalWeight,
    minutes: l.minutes,
    amount_minor: l.amountMinor,
    remainder_minor: l.remainderMinor,
    explanation: l.explanation,
  };
}
