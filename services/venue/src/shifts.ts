// Shifts: clocked by the worker, recorded by a manager, or imported from CSV.
import { randomUUID } from "node:crypto";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import { VenueShiftRecordedSchema } from "@ttip/proto/ttip/events/v1/events_pb.js";
import { ShiftSource } from "@ttip/proto/ttip/venue/v1/venue_pb.js";
import { emitEvent, fieldError, IdempotencyConflictError, InvalidStateError, lockForTransaction, NAIROBI_OFFSET_MS, NotFoundError, optionalTimestamp, parseKenyanMobile, PermissionDeniedError, type Pool, type Queryable, withTransaction } from "@ttip/runtime";
import { parseCsv } from "./csv.js";
import { audit, currentMemberOf, distributeLock, type MemberRow, OWN_MEMBERSHIP, paidSplitOver, type ShiftRow, type VenueActor } from "./store.js";

const DAY_MS = 24 * 3600_000;
/** Rows one import may carry: a month of a large venue's shifts. */
export const MAX_IMPORT_ROWS = 5_000;
/** Members one import may name: each holds a lock to its commit (PostgreSQL's lock table is shared and small). */
export const MAX_IMPORT_MEMBERS = 500;
/** Venues keep East Africa Time (UTC+3, no daylight saving): local times in a CSV are read in it. */
const EAT_OFFSET = "+03:00";

async function emitFinished(tx: Queryable, s: ShiftRow) {
  await emitEvent(tx, "venue", VenueShiftRecordedSchema, {
    venueId: s.venue_id,
    shiftId: s.shift_id,
    memberId: s.member_id,
    startedAt: timestampFromDate(s.started_at),
    endedAt: optionalTimestamp(s.ended_at),
    source: s.source,
  }, s.shift_id);
}

/**
 * A clock-in left open over 24 hours: its worker forgot to clock out and ClockOut no longer ends it (a
 * day's hours are not taken on the worker's word). A manager's recorded shift replaces it; until then
 * it keeps the worker from clocking in there again.
 */
async function staleOpenShift(db: Queryable, memberId: string): Promise<ShiftRow | undefined> {
  const { rows } = await db.query<ShiftRow>(
    `SELECT * FROM venue.shifts WHERE member_id = $1 AND ended_at IS NULL AND started_at < now() - interval '24 hours' FOR UPDATE`,
    [memberId],
  );
  return rows[0];
}

/**
 * Why a finished shift cannot be recorded for this member, with the time it is about (the screens mark that input),
 * or undefined when it can. `replacing`: a stale open shift it replaces.
 */
async function shiftProblem(db: Queryable, m: MemberRow, start: Date, end: Date, replacing?: string): Promise<{ field: "started_at" | "ended_at"; text: string } | undefined> {
  const atEnd = (text: string) => ({ field: "ended_at" as const, text });
  if (end.getTime() <= start.getTime()) return atEnd("end is not after start");
  if (end.getTime() - start.getTime() > DAY_MS) return atEnd("longer than 24 hours");
  if (end.getTime() > Date.now() + 60_000) return atEnd("ends in the future");
  if (end.getTime() <= m.joined_at.getTime()) return atEnd("ends before the member joined");
  if (m.left_at && start.getTime() >= m.left_at.getTime()) return { field: "started_at", text: "starts after the member left" };
  const { rows } = await db.query<{ shift_id: string; started_at: Date }>(
    `SELECT shift_id, started_at FROM venue.shifts WHERE member_id = $1 AND started_at < $3 AND COALESCE(ended_at, 'infinity') > $2 AND shift_id IS DISTINCT FROM $4 LIMIT 1`,
    [m.member_id, start, end, replacing ?? null],
  );
  // The start inside the other shift names the start; otherwise the end reaches into it.
  if (rows[0]) return { field: start.getTime() >= rows[0].started_at.getTime() ? "started_at" : "ended_at", text: `overlaps shift ${rows[0].shift_id}` };
  return undefined;
}

/**
 * A finished shift in a period already split by hours or points would count in no split, and its hours would never
 * be paid: refused until that split is reversed. The field named is the shift's end that falls in the split.
 */
async function splitProblem(db: Queryable, venueId: string, start: Date, end: Date): Promise<{ field: "started_at" | "ended_at"; text: string } | undefined> {
  const paid = await paidSplitOver(db, venueId, start, end);
  if (!paid) return undefined;
  const field = start.getTime() >= paid.period_start.getTime() ? "started_at" : "ended_at";
  return { field, text: `falls in ${eatTime(paid.period_start)} to ${eatTime(paid.period_end)}, split already (distribution ${paid.distribution_id}): reverse that split first, then split the period again with this shift` };
}

/** `now`: the service's clock, which set the member's start date. */
export async function clockIn(pool: Pool, venueId: string, workerId: string, now: number): Promise<ShiftRow> {
  return withTransaction(pool, async (tx) => {
    // Locked: a removal committing meanwhile closed the open shifts before this one was in, which stayed open
    // for a worker no longer on the staff, who could not clock it out, and held every confirm of the period.
    const m = await currentMemberOf(tx, venueId, workerId, "share");
    if (!m) throw new PermissionDeniedError("venue_id: you are not on this venue's staff");
    // Minutes before the start date count for nothing in a split (clipped to the membership): said now, not after.
    if (m.joined_at.getTime() > now) throw new InvalidStateError(`venue_id: you start here on ${eatTime(m.joined_at)}; clock in from then`);
    // Removed with a leaving time just ahead (up to a minute): the removal closed the open shift at that time. A new one
    // would overlap it, and stay open past the leaving, for a worker who could no longer clock it out.
    if (m.left_at) throw new InvalidStateError(`venue_id: you leave this venue's staff at ${eatTime(m.left_at)}; no new shift starts`);
    await lockForTransaction(tx, `venue.shifts.${m.member_id}`);
    const { rows: open } = await tx.query<ShiftRow>(`SELECT * FROM venue.shifts WHERE member_id = $1 AND ended_at IS NULL`, [m.member_id]);
    if (open[0] && Date.now() - open[0].started_at.getTime() > DAY_MS) {
      throw new InvalidStateError(`venue_id: your clock-in of ${eatTime(open[0].started_at)} was never clocked out; ask a manager to record that shift, then clock in`);
    }
    if (open[0]) throw new InvalidStateError("venue_id: you are already clocked in here; clock out first");
    const { rows } = await tx.query<ShiftRow>(
      `INSERT INTO venue.shifts (shift_id, venue_id, member_id, started_at, source, recorded_by) VALUES ($1, $2, $3, now(), $4, $5) RETURNING *`,
      [randomUUID(), venueId, m.member_id, ShiftSource.CLOCK, workerId],
    );
    return rows[0];
  });
}

export async function clockOut(pool: Pool, venueId: string, workerId: string): Promise<ShiftRow> {
  return withTransaction(pool, async (tx) => {
    const m = await currentMemberOf(tx, venueId, workerId);
    if (!m) throw new PermissionDeniedError("venue_id: you are not on this venue's staff");
    const { rows: open } = await tx.query<ShiftRow>(`SELECT * FROM venue.shifts WHERE member_id = $1 AND ended_at IS NULL FOR UPDATE`, [m.member_id]);
    if (!open[0]) throw new InvalidStateError("venue_id: you are not clocked in here");
    if (Date.now() - open[0].started_at.getTime() > DAY_MS) {
      throw new InvalidStateError("venue_id: this shift has been open for more than 24 hours; ask a manager to record it");
    }
    const { rows } = await tx.query<ShiftRow>(
      `UPDATE venue.shifts SET ended_at = GREATEST(now(), started_at + interval '1 millisecond') WHERE shift_id = $1 RETURNING *`,
      [open[0].shift_id],
    );
    await emitFinished(tx, rows[0]);
    return rows[0];
  });
}

/** A manager records a finished shift; the same key returns the same shift. */
export async function recordShift(pool: Pool, venueId: string, actor: VenueActor, memberId: string, start: Date, end: Date, key: string): Promise<ShiftRow> {
  return withTransaction(pool, async (tx) => {
    const { rows: ms } = await tx.query<MemberRow>(`SELECT * FROM venue.members WHERE venue_id = $1 AND member_id = $2`, [venueId, memberId]);
    if (!ms[0]) throw new NotFoundError(`member_id: no member ${memberId} at this venue`);
    if (ms[0].worker_id === actor.subject) throw new PermissionDeniedError(`member_id: ${OWN_MEMBERSHIP}`);
    await lockForTransaction(tx, distributeLock(venueId), "shared");
    await lockForTransaction(tx, `venue.shifts.${memberId}`);
    // Under the member's lock: a retry racing its first attempt waits for it and finds its shift (before, it was
    // refused as overlapping that very shift).
    const { rows: prior } = await tx.query<ShiftRow>(`SELECT * FROM venue.shifts WHERE venue_id = $1 AND idempotency_key = $2`, [venueId, key]);
    if (prior[0]) {
      if (prior[0].member_id !== memberId || prior[0].started_at.getTime() !== start.getTime() || prior[0].ended_at?.getTime() !== end.getTime()) {
        throw new IdempotencyConflictError(key, "shift");
      }
      return prior[0];
    }
    // The stale clock-in this shift covers (it ends after the clock-in began) becomes this shift.
    const stale = await staleOpenShift(tx, memberId);
    const replaced = stale && end.getTime() > stale.started_at.getTime() ? stale : undefined;
    const problem = await shiftProblem(tx, ms[0], start, end, replaced?.shift_id);
    if (problem) throw fieldError(problem.field, problem.text);
    const split = await splitProblem(tx, venueId, start, end);
    if (split) throw new InvalidStateError(`${split.field}: ${split.text}`);
    const { rows } = replaced
      ? await tx.query<ShiftRow>(
        `UPDATE venue.shifts SET started_at = $2, ended_at = $3, source = $4, recorded_by = $5, idempotency_key = $6 WHERE shift_id = $1 RETURNING *`,
        [replaced.shift_id, start, end, ShiftSource.MANAGER, actor.subject, key],
      )
      : await tx.query<ShiftRow>(
        `INSERT INTO venue.shifts (shift_id, venue_id, member_id, started_at, ended_at, source, recorded_by, idempotency_key)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING *`,
        [randomUUID(), venueId, memberId, start, end, ShiftSource.MANAGER, actor.subject, key],
      );
    await emitFinished(tx, rows[0]);
    await audit(tx, venueId, actor, "shift.recorded", {
      shift_id: rows[0].shift_id, member_id: memberId, started_at: start, ended_at: end, ...(replaced ? { replaced_clock_in_at: replaced.started_at } : {}),
    });
    return rows[0];
  });
}

/** "2026-11-24 08:00 EAT": a time as the venue keeps it. */
export function eatTime(d: Date): string {
  return `${new Date(d.getTime() + NAIROBI_OFFSET_MS).toISOString().slice(0, 16).replace("T", " ")} EAT`;
}

/** ISO 8601 with an offset, or "YYYY-MM-DD HH:MM[:SS]" read in East Africa Time. */
export function parseTime(text: string): Date | undefined {
  const t = text.trim();
  const local = /^(\d{4}-\d{2}-\d{2})[ T](\d{2}:\d{2})(:\d{2})?$/.exec(t);
  const iso = local ? `${local[1]}T${local[2]}${local[3] ?? ":00"}${EAT_OFFSET}` : t;
  const parts = /^(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2})(:(\d{2})(\.\d+)?)?(Z|[+-]\d{2}:\d{2})$/.exec(iso);
  if (!parts) return undefined;
  // Date reads 2026-04-31 as 1 May and 24:00 as the next midnight: a day or time that doesn't exist is a typo.
  const [year, month, day, hour, minute, second] = [1, 2, 3, 4, 5, 7].map((i) => Number(parts[i] ?? 0));
  const days = new Date(Date.UTC(year, month, 0)).getUTCDate();
  if (month < 1 || month > 12 || day < 1 || day > days || hour > 23 || minute > 59 || second > 59) return undefined;
  const d = new Date(iso);
  return Number.isNaN(d.getTime()) ? undefined : d;
}

export interface ImportResult {
  imported: number;
  rejected: { line: number; content: string; reason: string }[];
}

/**
 * Imports finished shifts: every row is checked like a recorded shift (and
 * against the rows before it); good rows go in, in one transaction, the others
 * are reported. A dry run checks and reports only.
 */
export async function importShifts(pool: Pool, venueId: string, actor: VenueActor, csv: string, dryRun: boolean): Promise<ImportResult> {
  const { rows, truncated } = parseCsv(csv, MAX_IMPORT_ROWS + 1);
  if (truncated) throw fieldError("csv", `at most ${MAX_IMPORT_ROWS} rows per import`);
  const header = rows.shift();
  const cols = header?.fields.map((f) => f.trim().toLowerCase()) ?? [];
  const [mi, si, ei] = ["member", "start", "end"].map((c) => cols.indexOf(c));
  if (mi < 0 || si < 0 || ei < 0) throw fieldError("csv", 'the first line must name the columns "member", "start" and "end"');
  return withTransaction(pool, async (tx) => {
    await lockForTransaction(tx, `venue.import.${venueId}`);
    await lockForTransaction(tx, distributeLock(venueId), "shared");
    const { rows: staff } = await tx.query<MemberRow>(`SELECT * FROM venue.members WHERE venue_id = $1 ORDER BY joined_at DESC`, [venueId]);
    const byId = new Map(staff.map((m) => [m.member_id, m]));
    const result: ImportResult = { imported: 0, rejected: [] };
    const accepted: { member: string; start: number; end: number }[] = [];
    // Each member's shift lock, as RecordShift and ClockIn take it, before the overlap check reads their shifts:
    // one of theirs committing meanwhile is seen, not imported beside. Taken in the file's order; nothing else
    // holds two of them, and imports of a venue wait for each other (the lock above): no deadlock.
    const locked = new Set<string>();
    for (const r of rows) {
      const reject = (reason: string) => result.rejected.push({ line: r.line, content: r.raw, reason });
      const who = (r.fields[mi] ?? "").trim();
      let m = byId.get(who);
      if (!m) {
        const phone = parseKenyanMobile(who);
        // The current membership for a phone, else the latest one.
        m = phone ? (staff.find((s) => s.phone === phone && !s.left_at) ?? staff.find((s) => s.phone === phone)) : undefined;
      }
      if (!m) {
        reject(`member: "${who}" is neither a member id nor the phone number of anyone on the staff`);
        continue;
      }
      if (m.worker_id === actor.subject) {
        reject(`member: "${who}" ${OWN_MEMBERSHIP}`);
        continue;
      }
      const start = parseTime(r.fields[si] ?? "");
      const end = parseTime(r.fields[ei] ?? "");
      if (!start) {
        reject(`start: "${(r.fields[si] ?? "").trim()}" is not a time like 2026-11-24 08:00 or 2026-11-24T08:00:00+03:00`);
        continue;
      }
      if (!end) {
        reject(`end: "${(r.fields[ei] ?? "").trim()}" is not a time like 2026-11-24 17:00 or 2026-11-24T17:00:00+03:00`);
        continue;
      }
      if (!locked.has(m.member_id)) {
        if (locked.size === MAX_IMPORT_MEMBERS) throw fieldError("csv", `at most ${MAX_IMPORT_MEMBERS} members per import; split the file`);
        await lockForTransaction(tx, `venue.shifts.${m.member_id}`);
        locked.add(m.member_id);
      }
      const problem = (await shiftProblem(tx, m, start, end))?.text ?? (await splitProblem(tx, venueId, start, end))?.text;
      if (problem) {
        reject(problem);
        continue;
      }
      const twin = accepted.find((a) => a.member === m!.member_id && a.start < end.getTime() && a.end > start.getTime());
      if (twin) {
        reject("overlaps an earlier row of this file for the same member");
        continue;
      }
      accepted.push({ member: m.member_id, start: start.getTime(), end: end.getTime() });
    }
    if (!dryRun) {
      for (const a of accepted) {
        const { rows: ins } = await tx.query<ShiftRow>(
          `INSERT INTO venue.shifts (shift_id, venue_id, member_id, started_at, ended_at, source, recorded_by) VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING *`,
          [randomUUID(), venueId, a.member, new Date(a.start), new Date(a.end), ShiftSource.IMPORT, actor.subject],
        );
        await emitFinished(tx, ins[0]);
      }
      await audit(tx, venueId, actor, "shifts.imported", { imported: accepted.length, rejected: result.rejected.length });
    }
    result.imported = accepted.length;
    return result;
  });
}
