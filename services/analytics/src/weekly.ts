// The weekly summary: once a week, each worker gets last week's tips through
// notification, in their language (notification knows it). One replica at a
// time runs it (a lease row), and each (worker, week) is sent once: recorded
// here, and keyed by the same idempotency key at notification should a crash
// fall between the send and the record.
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { TemplateKey } from "@ttip/proto/ttip/notification/v1/notification_pb.js";
import { NotificationInternalService } from "@ttip/proto/ttip/notification/v1/notification_service_pb.js";
import { repeating, type ServiceContext, withTransaction } from "@ttip/runtime";
import { DAY_MS, Dim, EAT_OFFSET_MS, HOUR_MS } from "./facts.js";
import { REBUILD_LOCK } from "./ingest.js";
import { periodStarts } from "./queries.js";

export interface WeeklyOptions {
  /** How often a replica checks whether a week is owed (default 10 minutes). */
  intervalMs: number;
  /** Hours after Monday 00:00 EAT before sending (default 8: people read it over breakfast). */
  sendAtHour: number;
  /** How long the lease lasts; renewed every batch (default 2 minutes). */
  leaseMs: number;
  /** Workers per batch (default 200). */
  batchSize: number;
  now: () => Date;
  /** This replica's name in the lease. */
  holder: string;
}

const MONTHS = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];

/** "24 Nov – 30 Nov 2026" for the week starting at `monday` (midnight EAT). */
export function weekLabel(monday: Date): string {
  const local = (d: Date) => new Date(d.getTime() + EAT_OFFSET_MS);
  const a = local(monday);
  const b = local(new Date(monday.getTime() + 6 * DAY_MS));
  return `${a.getUTCDate()} ${MONTHS[a.getUTCMonth()]} – ${b.getUTCDate()} ${MONTHS[b.getUTCMonth()]} ${b.getUTCFullYear()}`;
}

/** "KES 1,234.50": whole units with thousands separators and the cents. */
export function formatKes(minor: bigint, currency = "KES"): string {
  const sign = minor < 0n ? "-" : "";
  const abs = minor < 0n ? -minor : minor;
  const units = (abs / 100n).toString().replace(/\B(?=(\d{3})+(?!\d))/g, ",");
  return `${currency} ${sign}${units}.${(abs % 100n).toString().padStart(2, "0")}`;
}

/** The week owed now: last week, once its summary time has come (else undefined). */
export function weekOwed(now: Date, sendAtHour: number): Date | undefined {
  const { week } = periodStarts(now);
  if (now.getTime() < week.getTime() + sendAtHour * HOUR_MS) return undefined;
  return new Date(week.getTime() - 7 * DAY_MS);
}

async function takeLease(ctx: ServiceContext, o: WeeklyOptions): Promise<boolean> {
  const { rows } = await ctx.pool.query(
    `INSERT INTO analytics.leases (name, holder, until) VALUES ('weekly_summary', $1, now() + make_interval(secs => $2::double precision / 1000))
     ON CONFLICT (name) DO UPDATE SET holder = EXCLUDED.holder, until = EXCLUDED.until
       WHERE leases.until < now() OR leases.holder = EXCLUDED.holder
     RETURNING holder`,
    [o.holder, o.leaseMs],
  );
  return rows.length > 0;
}

/** How long a pass waits for the live consumers' batches to let go of the rebuild lock; longer, a rebuild holds it. */
const REBUILD_WAIT_MS = 2_000;

/**
 * The next batch of workers owed last week's summary, with its figures; undefined while a rebuild of the rollups
 * (replay.ts) holds REBUILD_LOCK: its figures are partial until it ends, and a summary goes out once, for good.
 */
async function owedSummaries(ctx: ServiceContext, monday: Date, weekStart: string, batchSize: number): Promise<{ worker_id: string; tips: bigint; net: bigint }[] | undefined> {
  return withTransaction(ctx.pool, async (tx) => {
    for (let waited = 0; ; waited += 50) {
      const held = await tx.query<{ held: boolean }>("SELECT pg_try_advisory_xact_lock_shared(hashtext($1)) AS held", [REBUILD_LOCK]);
      if (held.rows[0].held) break;
      if (waited >= REBUILD_WAIT_MS) return undefined;
      await new Promise((r) => setTimeout(r, 50));
    }
    // Tips in any currency (a USD card tip too), and what reached the worker in KES (a card tip's net is in the KES
    // rows, its count in its own currency's) with their pool shares, as the apps show earnings.
    const { rows } = await tx.query<{ worker_id: string; tips: bigint; net: bigint }>(
      `SELECT w.worker_id, COALESCE(sum(r.succeeded), 0)::int8 AS tips, COALESCE(sum(r.net_minor + r.pooled_minor) FILTER (WHERE r.currency = 'KES'), 0)::int8 AS net
         FROM (SELECT worker_id FROM analytics.workers
                WHERE COALESCE(registered_at, first_seen_at) < $2
                  AND NOT EXISTS (SELECT 1 FROM analytics.weekly_summaries s WHERE s.worker_id = workers.worker_id AND s.week_start = $3)
                ORDER BY worker_id LIMIT $4) w
         LEFT JOIN analytics.rollups r
           ON r.dim = ${Dim.Worker} AND r.id = w.worker_id AND r.grain = 'h' AND r.bucket >= $1 AND r.bucket < $2 AND (r.succeeded > 0 OR r.net_minor <> 0 OR r.pooled_minor <> 0)
        GROUP BY w.worker_id ORDER BY w.worker_id`,
      [monday, new Date(monday.getTime() + 7 * DAY_MS), weekStart, batchSize],
    );
    return rows;
  });
}

/** One pass: sends what is owed while this replica holds the lease; returns how many went out. */
export async function runWeeklySummary(ctx: ServiceContext, o: WeeklyOptions): Promise<number> {
  const monday = weekOwed(o.now(), o.sendAtHour);
  if (!monday) return 0;
  const weekStart = new Date(monday.getTime() + EAT_OFFSET_MS).toISOString().slice(0, 10);
  const client = createClient(NotificationInternalService, ctx.peers("notification"));
  const sent = ctx.metrics.counter("ttip_analytics_weekly_summaries_total", "Weekly summaries handed to notification, by outcome.", ["outcome"]);
  let total = 0;
  for (;;) {
    if (!(await takeLease(ctx, o))) return total;
    const rows = await owedSummaries(ctx, monday, weekStart, o.batchSize);
    if (!rows) {
      ctx.logger.info({ weekStart }, "a rebuild of the rollups is running: weekly summaries wait for it");
      return total;
    }
    if (!rows.length) return total;
    for (const r of rows) {
      try {
        await client.sendNotification({
          idempotencyKey: `weekly-summary:${r.worker_id}:${weekStart}`,
          recipient: { case: "userId", value: r.worker_id },
          templateKey: TemplateKey.WEEKLY_SUMMARY,
          variables: { week: weekLabel(monday), count: String(r.tips), total: formatKes(r.net) },
        }).catch((err) => {
          // ALREADY_EXISTS: an earlier pass sent this week's summary (its figures since grew) and lost the answer.
          if (ConnectError.from(err).code !== Code.AlreadyExists) throw err;
        });
      } catch (err) {
        sent.inc({ outcome: "failed" });
        ctx.logger.warn({ err, workerId: r.worker_id, weekStart }, "weekly summary not sent; retried next pass");
        return total;
      }
      await ctx.pool.query(`INSERT INTO analytics.weekly_summaries (worker_id, week_start) VALUES ($1, $2) ON CONFLICT DO NOTHING`, [r.worker_id, weekStart]);
      sent.inc({ outcome: "sent" });
      total++;
    }
  }
}

export function startWeeklySummary(ctx: ServiceContext, o: WeeklyOptions): () => Promise<void> {
  return repeating(() => runWeeklySummary(ctx, o), { everyMs: o.intervalMs, firstAfterMs: Math.min(o.intervalMs, 1_000), logger: ctx.logger, failed: "weekly summary pass failed; next pass retries" });
}
