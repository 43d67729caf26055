"use client";
import { timestampDate, type Timestamp } from "@bufbuild/protobuf/wkt";
import { shown } from "./util";
import { useVT } from "./use-vt";

/**
 * Whether a pending invitation's link still works, and until when; an expired one says to send it again. Read
 * against the browser's clock when the list was drawn: the service decides, this only tells the manager.
 */
export function LinkState({ expiresAt }: { expiresAt?: Timestamp }) {
  const { t, locale } = useVT();
  if (!expiresAt) return null;
  const date = shown(expiresAt, locale);
  return timestampDate(expiresAt).getTime() <= Date.now()
    ? <small className="error" data-testid="link-expired">{t("v_linkExpired", { date })}</small>
    : <small className="muted">{t("v_linkUntil", { date })}</small>;
}
