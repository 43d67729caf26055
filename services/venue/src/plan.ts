// Who is in a period's split and with what weight, from the roster, the
// shifts and the rule. Pure: the service loads the rows, this decides.
import { DistributionNoteKind, DistributionNoteKind as Note, SplitMethod } from "@ttip/proto/ttip/venue/v1/venue_pb.js";
import { formatMoney } from "@ttip/runtime";
import { cutByWeights } from "./split.js";

export interface RosterMember {
  memberId: string;
  /** Null until the invitation is accepted: such a member cannot be paid. */
  workerId: string | null;
  displayName: string;
  roleId: string;
  isManager: boolean;
  points: number;
  joinedAt: Date;
  leftAt: Date | null;
}

export interface ShiftSpan {
  memberId: string;
  start: Date;
  end: Date;
}

export interface Period {
  start: Date;
  end: Date;
}

export interface RuleSpec {
  version: number;
  method: SplitMethod;
  includeManagers: boolean;
  fixedShares: { memberId: string; basisPoints: number }[];
}

export interface PlannedLine {
  memberId: string;
  workerId: string;
  displayName: string;
  roleId: string;
  weight: bigint;
  totalWeight: bigint;
  minutes: bigint;
  amountMinor: bigint;
  remainderMinor: bigint;
  explanation: string;
}

export interface Plan {
  lines: PlannedLine[];
  /** Members left out, and why (shown on the preview). */
  /** Who gets no share: `kind` for screens to word, `reason` in English for the summary. */
  excluded: { memberId: string; displayName: string; kind: DistributionNoteKind; detail: string; reason: string }[];
}

const MINUTE = 60_000;

/** The member's time on the staff that falls in the period: [max(start, joined), min(end, left)). */
function membershipWindow(m: RosterMember, p: Period): Period | undefined {
  const start = Math.max(p.start.getTime(), m.joinedAt.getTime());
  const end = Math.min(p.end.getTime(), m.leftAt ? m.leftAt.getTime() : Infinity);
  return start < end ? { start: new Date(start), end: new Date(end) } : undefined;
}

/** Whole minutes of finished shifts inside the member's window of the period. */
export function minutesWorked(m: RosterMember, shifts: ShiftSpan[], p: Period): bigint {
  const w = membershipWindow(m, p);
  if (!w) return 0n;
  let ms = 0;
  for (const s of shifts) {
    if (s.memberId !== m.memberId) continue;
    const a = Math.max(s.start.getTime(), w.start.getTime());
    const b = Math.min(s.end.getTime(), w.end.getTime());
    if (b > a) ms += b - a;
  }
  return BigInt(Math.floor(ms / MINUTE));
}

/** A member's hours line for a period: minutes worked and shifts counted (hours and period reports). */
export function hoursLine(m: RosterMember, shifts: ShiftSpan[], p: Period) {
  return {
    memberId: m.memberId,
    displayName: m.displayName,
    roleId: m.roleId,
    minutes: minutesWorked(m, shifts, p),
    shifts: shifts.filter((s) => s.memberId === m.memberId).length,
  };
}

/** The English words of the summary (kept for API compatibility) for each reason a member gets no share. */
const EXCLUSION_WORDS: Record<number, (detail: string) => string> = {
  [Note.LEFT_BEFORE_PERIOD]: () => "left before the period",
  [Note.JOINED_AFTER_PERIOD]: () => "joined after the period",
  [Note.MANAGER_NOT_IN_POOL]: () => "managers are not in the pool under this rule",
  [Note.INVITATION_NOT_ACCEPTED]: () => "has not accepted the invitation yet",
  [Note.NO_FINISHED_SHIFT]: () => "no finished shift in the period",
  [Note.ROLE_WITHOUT_POINTS]: (role) => `role ${role} has 0 points`,
  [Note.NO_PERCENTAGE]: () => "has no percentage under this rule",
};

export const METHOD_WORDS: Record<number, string> = {
  [SplitMethod.EQUAL_ON_SHIFT]: "equal shares among those who worked",
  [SplitMethod.BY_HOURS]: "by hours worked",
  [SplitMethod.BY_ROLE_POINTS]: "by role points x hours worked",
  [SplitMethod.FIXED_PERCENTAGES]: "by fixed percentages",
};


const hours = (minutes: bigint) => {
  const h = minutes / 60n;
  const m = minutes % 60n;
  return m ? `${h}h${m.toString().padStart(2, "0")}` : `${h}h`;
};

/**
 * The split of `amountMinor` for the period. Members are taken in the
 * roster's order (joining date): it breaks the last rounding ties.
 */
export function planSplit(amountMinor: bigint, currency: string, rule: RuleSpec, roster: RosterMember[], shifts: ShiftSpan[], period: Period): Plan {
  const excluded: Plan["excluded"] = [];
  const candidates: Candidate[] = [];
  const fixed = new Map(rule.fixedShares.map((f) => [f.memberId, f.basisPoints]));
  for (const m of roster) {
    const minutes = minutesWorked(m, shifts, period);
    const out = (kind: DistributionNoteKind, detail = "") => excluded.push({ memberId: m.memberId, displayName: m.displayName, kind, detail, reason: EXCLUSION_WORDS[kind](detail) });
    if (!membershipWindow(m, period)) {
      out(m.leftAt && m.leftAt.getTime() <= period.start.getTime() ? Note.LEFT_BEFORE_PERIOD : Note.JOINED_AFTER_PERIOD);
      continue;
    }
    if (m.isManager && !rule.includeManagers) {
      out(Note.MANAGER_NOT_IN_POOL);
      continue;
    }
    if (!m.workerId) {
      if (minutes > 0n || fixed.has(m.memberId)) out(Note.INVITATION_NOT_ACCEPTED);
      continue;
    }
    switch (rule.method) {
      case SplitMethod.EQUAL_ON_SHIFT:
        if (minutes > 0n) candidates.push({ m, weight: 1n, minutes, basis: `worked ${hours(minutes)}; one equal share` });
        else out(Note.NO_FINISHED_SHIFT);
        break;
      case SplitMethod.BY_HOURS:
        if (minutes > 0n) candidates.push({ m, weight: minutes, minutes, basis: `${minutes} minutes worked` });
        else out(Note.NO_FINISHED_SHIFT);
        break;
      case SplitMethod.BY_ROLE_POINTS:
        if (minutes === 0n) out(Note.NO_FINISHED_SHIFT);
        else if (m.points <= 0) out(Note.ROLE_WITHOUT_POINTS, m.roleId);
        else candidates.push({ m, weight: BigInt(m.points) * minutes, minutes, basis: `${m.points} points x ${minutes} minutes` });
        break;
      case SplitMethod.FIXED_PERCENTAGES: {
        // Weighed by the time on the staff below (onTheStaff): nothing after leaving is theirs.
        const bps = fixed.get(m.memberId) ?? 0;
        if (bps > 0) candidates.push({ m, weight: BigInt(bps), minutes, basis: `${(bps / 100).toFixed(2)}% fixed` });
        else out(Note.NO_PERCENTAGE);
        break;
      }
      default:
        throw new Error(`unknown split method ${rule.method}`);
    }
  }
  const merged = onePerWorker(rule.method === SplitMethod.FIXED_PERCENTAGES ? onTheStaff(candidates, period) : candidates, rule.method);
  // A worker with a line is not also "excluded" for another of their memberships (one they left, say).
  const paid = new Set(merged.map((c) => c.m.workerId));
  const notes = excluded.filter((e) => !paid.has(roster.find((m) => m.memberId === e.memberId)?.workerId ?? null));
  return cutPlan(amountMinor, currency, merged, notes);
}

type Candidate = { m: RosterMember; weight: bigint; minutes: bigint; basis: string };

/**
 * Fixed percentages (each candidate's weight its basis points) weighed by time: the period is cut where a member
 * joined or left; in each piece the members on the staff share it by their percentages, scaled to the whole
 * (what an absent member would have had is spread over those present in proportion to theirs). A weight is the
 * sum over the pieces of milliseconds x the scaled basis points (rounded down: under 1/10 000 of a piece).
 * When everyone with a percentage was there the whole period, the weights stay their basis points.
 */
function onTheStaff(candidates: Candidate[], period: Period): Candidate[] {
  const windows = candidates.map((c) => membershipWindow(c.m, period)!);
  const cuts = [...new Set([period.start, period.end, ...windows.flatMap((w) => [w.start, w.end])].map((d) => d.getTime()))].sort((a, b) => a - b);
  if (cuts.length === 2) return candidates;
  const weights = candidates.map(() => 0n);
  for (let k = 0; k + 1 < cuts.length; k++) {
    const [from, to] = [cuts[k], cuts[k + 1]];
    const present = candidates.flatMap((c, i) => (windows[i].start.getTime() <= from && windows[i].end.getTime() >= to ? [i] : []));
    const sum = present.reduce((s, i) => s + candidates[i].weight, 0n);
    for (const i of present) weights[i] += BigInt(to - from) * ((candidates[i].weight * 10_000n) / sum);
  }
  // In lowest terms, so that a line reads "1 of 60", not in milliseconds x basis points.
  const common = weights.reduce((g, w) => gcd(g, w), 0n);
  const whole = period.end.getTime() - period.start.getTime();
  return candidates.map((c, i) => {
    const onStaff = windows[i].end.getTime() - windows[i].start.getTime();
    const basis = onStaff === whole ? c.basis : `${c.basis}, on the staff ${hours(BigInt(Math.floor(onStaff / MINUTE)))} of ${hours(BigInt(Math.floor(whole / MINUTE)))}`;
    return { ...c, weight: weights[i] / common, basis };
  });
}

const gcd = (a: bigint, b: bigint): bigint => (b === 0n ? a : gcd(b, a % b));

/**
 * A worker who left and rejoined holds two memberships, and the wallet pays a
 * worker once per split: their memberships become one line, under the latest
 * (the roster is in joining order), with minutes and weights added. An equal
 * share stays one share: it is per person, not per membership.
 */
function onePerWorker(candidates: Candidate[], method: SplitMethod): Candidate[] {
  const byWorker = new Map<string, Candidate>();
  for (const c of candidates) {
    const prior = byWorker.get(c.m.workerId!);
    if (!prior) {
      byWorker.set(c.m.workerId!, c);
      continue;
    }
    const minutes = prior.minutes + c.minutes;
    byWorker.set(
      c.m.workerId!,
      method === SplitMethod.EQUAL_ON_SHIFT
        ? { m: c.m, weight: 1n, minutes, basis: `worked ${hours(minutes)}; one equal share` }
        : { m: c.m, weight: prior.weight + c.weight, minutes, basis: `${prior.basis} + ${c.basis}` },
    );
  }
  return [...byWorker.values()];
}

function cutPlan(amountMinor: bigint, currency: string, candidates: Candidate[], excluded: Plan["excluded"]): Plan {
  if (!candidates.length || amountMinor <= 0n) return { lines: [], excluded };
  const totalWeight = candidates.reduce((s, c) => s + c.weight, 0n);
  const cut = cutByWeights(amountMinor, candidates.map((c) => c.weight));
  const lines = candidates.map((c, i) => ({
    memberId: c.m.memberId,
    workerId: c.m.workerId!,
    displayName: c.m.displayName,
    roleId: c.m.roleId,
    weight: c.weight,
    totalWeight,
    minutes: c.minutes,
    amountMinor: cut.amounts[i],
    remainderMinor: cut.fromRemainder[i],
    explanation:
      `${c.basis}: ${c.weight} of ${totalWeight} x ${formatMoney(amountMinor, currency)} = ${formatMoney(cut.amounts[i], currency)}` +
      (cut.fromRemainder[i] ? ` (incl. ${formatMoney(cut.fromRemainder[i], currency)} from rounding)` : ""),
  }));
  return { lines, excluded };
}
