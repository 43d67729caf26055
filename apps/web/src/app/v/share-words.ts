// A distribution's facts in the screen's language, from the service's fields (never its English
// summary or explanations, which stay for API clients): the venue's Distributions screen and the
// worker's shares screen word a share, a note, the rule and the rounding alike.
import { DistributionNoteKind, SplitMethod, type DistributionNote, type ShareLine, type SplitRule } from "@ttip/proto/ttip/venue/v1/venue_pb.js";
import { formatMoney } from "../../lib/money";
import { venueDictionaries, type venueT, type VenueKey } from "../../lib/venue-i18n";
import { methodName, shareSign } from "./util";

type VenueT = ReturnType<typeof venueT>;

/** "1 of 3 x KES 500 ≈ KES 166 (incl. KES 0.01 from rounding)": the line's weight's part of the pool. */
export function shareHow(t: VenueT, line: ShareLine, poolMinor: bigint): string {
  const share = line.amount?.amountMinor ?? 0n;
  const how = t("v_howLine", {
    w: String(line.weight),
    total: String(line.totalWeight),
    pool: formatMoney(poolMinor),
    eq: shareSign(line.weight, line.totalWeight, poolMinor, share),
    share: formatMoney(share),
  });
  return line.remainderMinor ? how + t("v_fromRounding", { amount: formatMoney(line.remainderMinor) }) : how;
}

/**
 * A note in words. A kind this screen has no words for (a newer service's) is still shown, with its
 * number, the member and the detail: a note dropped in silence would hide why someone got nothing.
 */
export function noteText(t: VenueT, note: DistributionNote): string {
  const key = `v_note_${DistributionNoteKind[note.kind]}`;
  if (key in venueDictionaries.en) return t(key as VenueKey, { name: note.displayName, detail: note.detail });
  const text = [note.displayName, t("v_noteOther", { kind: note.kind }), note.detail].filter(Boolean).join(": ");
  return text.charAt(0).toUpperCase() + text.slice(1);
}

/** "Version 2: By hours worked; managers not included; …": the rule from its fields. */
export function ruleText(t: VenueT, rule: SplitRule): string {
  const fixed = rule.method === SplitMethod.FIXED_PERCENTAGES ? ` (${rule.fixedShares.map((f) => `${(f.basisPoints / 100).toFixed(2)}%`).join(", ")})` : "";
  return t("v_ruleWords", { v: rule.version, method: t(methodName(rule.method)), fixed, managers: t(rule.includeManagers ? "v_managersIn" : "v_managersOut") });
}
