import { timestampDate, type Timestamp } from "@bufbuild/protobuf/wkt";
import type { Locale } from "../../lib/i18n";
import { nairobiShown } from "../../lib/nairobi-time";
import type { WorkerT } from "../../lib/worker-i18n";

/**
 * What an invitation page says of an expired link (the lookup's `expired`), with its date; "" while it works. The
 * page then shows no accept button: accepting can only be refused.
 */
export function linkExpiredSentence(t: WorkerT, locale: Locale, venue: string, lookup?: { expired: boolean; expiresAt?: Timestamp }): string {
  if (!lookup?.expired) return "";
  return t("inviteExpired", { venue, date: lookup.expiresAt ? nairobiShown(timestampDate(lookup.expiresAt), locale) : "" });
}
