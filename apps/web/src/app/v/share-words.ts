// A distribution's facts in the screen's language, from the service's fields (never its English
// summary or explanations, which stay for API clients): the venue's Distributions screen and the
// worker's shares screen word a share, a note, the rule and the rounding alike.
import { DistributionNoteKind, SplitMethod, type DistributionNote, type ShareLine, type SplitRule } from "@ttip/proto/ttip/venue/v1/venue_pb.js";
import { formatMoney, WALLET_CURRENCY, type Amount } from "../../lib/money";
import { venueDictionaries, type venueT, type VenueKey } from "../../lib/venue-i18n";
import { methodName, shareSign } from "./util";

type VenueT = ReturnType<typeof venueT>;

/** "1 of 3 x KES 500 ≈ KES 166 (incl. KES 0.01 from rounding)": the line's weight's part of the pool. */
export function shareHow(t: VenueT, line: ShareLine, pool: Amount | undefined): string {
  const currency = pool?.currency || line.amount?.currency || WALLET_CURRENCY;
  const poolMinor = pool?.amountMinor ?? 0n;
  const share = line.amount?.amountMinor ?? 0n;
  const how = t("v_howLine", {
    w: String(line.weight),
    total: String(line.totalWeight),
    pool: formatMoney(poolMinor, currency),
    eq: shareSign(line.weight, line.totalWeight, poolMinor, share),
    share: formatMoney(share, currency),
  });
  return line.remainderMinor ? how + t("v_fromRounding", { amount: formatMoney(line.remainderMinor, currency) }) : how;
}

/**
 * A note in words. A kind this screen has no words for (a newer service's) is still shown, with its
 * number, the member and the detail: a note dropped in silence would hide why someone got nothing.
 */
export function noteText(t: VenueT, note: DistributionNote): string {
  const key = `v_note_${DistributionNoteKind[note.kind]}`;
  const amount = note.amount ? formatMoney(note.amount.amountMinor, note.amount.currency) : "";
  if (key in venueDictionaries.en) return t(key as VenueKey, { name: note.displayName, detail: note.detail, amount });
  const text = [note.displayName, t("v_noteOther", { kind: note.kind }), note.detail].filter(Boolean).join(": ");
  return text.charAt(0).toUpperCase() + text.slice(1);
}

/**
 * Whose a fixed percentage is: the member's name, or undefined where this screen may not name them (a
 * worker sees their own share as "you", never their colleagues' names).
 */
export type MemberName = (memberId: string) => string | undefined;

const percent = (basisPoints: number) => `${(basisPoints / 100).toFixed(2)}%`;

/**
 * " (Akinyi 60.00%, Baraka 40.00%)" for a fixed-percentages rule, "" for another: each percentage with
 * whose it is (a bare list says nothing to the people it splits); members not named are summed as others.
 */
function fixedText(t: VenueT, rule: SplitRule, nameOf: MemberName): string {
  if (rule.method !== SplitMethod.FIXED_PERCENTAGES) return "";
  const named: string[] = [];
  let others = 0;
  let othersBasisPoints = 0;
  for (const f of rule.fixedShares) {
    const name = nameOf(f.memberId);
    if (name) named.push(t("v_fixedOne", { name, pct: percent(f.basisPoints) }));
    else (others++, (othersBasisPoints += f.basisPoints));
  }
  if (others) named.push(t(others === 1 ? "v_fixedOther" : "v_fixedOthers", { n: others, pct: percent(othersBasisPoints) }));
  return ` (${named.join(", ")})`;
}

/** "By hours worked; managers not included": how the rule splits, from its fields. */
export function ruleHow(t: VenueT, rule: SplitRule, nameOf: MemberName): string {
  return t("v_ruleHow", { method: t(methodName(rule.method)), fixed: fixedText(t, rule, nameOf), managers: t(rule.includeManagers ? "v_managersIn" : "v_managersOut") });
}

/** "Version 2: By hours worked; managers not included; …": the rule from its fields. */
export function ruleText(t: VenueT, rule: SplitRule, nameOf: MemberName): string {
  return t("v_ruleWords", { v: rule.version, how: ruleHow(t, rule, nameOf) });
}
