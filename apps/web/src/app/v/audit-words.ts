// The venue's audit trail as sentences in the screen's language: the service
// records each action's detail as JSON with ids; the manager reads names.
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import type { AuditRecord } from "@ttip/proto/ttip/venue/v1/venue_pb.js";
import type { Locale } from "../../lib/i18n";
import { formatMoney } from "../../lib/money";
import type { VenueKey } from "../../lib/venue-i18n";
import { methodName, shown } from "./util";

type T = (key: VenueKey, vars?: Record<string, string | number>) => string;

export interface AuditNames {
  /** A member's name by member id (undefined: not on the list). */
  member(memberId: string): string | undefined;
  /** A user's name by user id: the signed-in manager, a member. */
  user(userId: string): string | undefined;
  role(roleId: string): string;
}

type Detail = Record<string, unknown>;
const str = (d: Detail, k: string) => (typeof d[k] === "string" || typeof d[k] === "number" ? String(d[k]) : "");

function when(d: Detail, k: string, locale: Locale): string {
  const at = new Date(str(d, k));
  return Number.isNaN(at.getTime()) ? "" : shown(timestampFromDate(at), locale);
}

function amount(d: Detail, k: string): string {
  const minor = str(d, k);
  return /^-?\d{1,19}$/.test(minor) && str(d, "currency") ? formatMoney(BigInt(minor), str(d, "currency")) : "";
}

/** Each known action's sentence; an action without one is shown as the service wrote it. */
const SENTENCES: Partial<Record<string, (t: T, d: Detail, n: AuditNames, locale: Locale) => string>> = {
  "rule.changed": (t, d) => t("v_aRuleChanged", { v: str(d, "version"), method: t(methodName(Number(d.method))) }),
  "role.changed": (t, d, n) => t("v_aRoleChanged", { role: n.role(str(d, "role_id")), points: str(d, "points") }),
  "member.invited": (t, d, n) => t("v_aInvited", { name: memberName(t, d, n), role: n.role(str(d, "role_id")) }),
  "member.invitation_resent": (t, d, n) => t("v_aInvitationResent", { name: memberName(t, d, n) }),
  "member.invitation_cancelled": (t, d, n) => t("v_aInvitationCancelled", { name: memberName(t, d, n) }),
  "member.joined": (t, d, n) => t("v_aJoined", { name: memberName(t, d, n) }),
  "member.updated": (t, d, n) => t("v_aRoleOf", { name: memberName(t, d, n), from: n.role(str(d, "from_role_id")), role: n.role(str(d, "role_id")) }),
  "member.left": (t, d, n) => (leftReason(d) ? t("v_aLeftWhy", { name: memberName(t, d, n), reason: leftReason(d) }) : t("v_aLeft", { name: memberName(t, d, n) })),
  "shift.recorded": (t, d, n, l) => t("v_aShift", { name: memberName(t, d, n), start: when(d, "started_at", l), end: when(d, "ended_at", l) }),
  "shifts.imported": (t, d) => t("v_aImported", { n: str(d, "imported"), refused: str(d, "rejected") }),
  "distribution.confirmed": (t, d, _n, l) => t("v_aConfirmed", { amount: amount(d, "collected_minor"), start: when(d, "period_start", l), end: when(d, "period_end", l) }),
  "distribution.reversed": (t, d) => t("v_aReversed", { reason: str(d, "reason") }),
  "distribution.abandoned": (t) => t("v_aAbandoned"),
  "manager.invited": (t, d) => t("v_aManagerInvited", { name: str(d, "display_name") }),
  "manager.joined": (t, d) => t("v_aManagerJoined", { name: str(d, "display_name") }),
  "manager.invitation_cancelled": (t, d) => t("v_aManagerInvitationCancelled", { name: str(d, "display_name") }),
  "manager.invitation_resent": (t, d) => t("v_aManagerInvitationResent", { name: str(d, "display_name") }),
  "manager.removed": (t, d, n) => t("v_aManagerRemoved", { name: n.user(str(d, "user_id")) ?? t("v_aSomeManager") }),
};

/**
 * Why a member left, as the manager typed it. The one-tap "Left the staff" button of earlier versions
 * wrote the same English words as the reason of every leave: the sentence says that already (it read
 * "Achieng left the staff: “left the staff”."), so those records read as having no reason.
 */
function leftReason(d: Detail): string {
  const reason = str(d, "reason");
  return reason === "left the staff" ? "" : reason;
}

function memberName(t: T, d: Detail, n: AuditNames): string {
  return n.member(str(d, "member_id")) ?? t("v_aSomeMember");
}

function parsed(detail: string): Detail | undefined {
  try {
    const d: unknown = JSON.parse(detail);
    return d && typeof d === "object" && !Array.isArray(d) ? (d as Detail) : undefined;
  } catch {
    return undefined;
  }
}

/** What happened, as a sentence; undefined when the screen has no words for the action (the raw record is shown). */
export function auditText(t: T, r: Pick<AuditRecord, "action" | "detail">, names: AuditNames, locale: Locale): string | undefined {
  const sentence = SENTENCES[r.action];
  const d = parsed(r.detail);
  return sentence && d ? sentence(t, d, names, locale) : undefined;
}

/** Who did it: a name, "you", or "another manager" (never an id). */
export function auditActor(t: T, actor: string, names: AuditNames): string {
  return names.user(actor) ?? t("v_aAnotherManager");
}
