"use client";
import { useQuery } from "@connectrpc/connect-query";
import Link from "next/link";
import { usePathname } from "next/navigation";
import { useState } from "react";
import { QrService } from "@ttip/proto/ttip/qr/v1/qr_service_pb.js";
import { loadSession, sessionRoles } from "../../lib/session";
import { useSignedIn } from "../../lib/use-signed-in";
import { ContentStart, SkipToContent } from "../skip-to-content";
import { useT } from "./use-t";

/** The worker's tabs and the language switch; sends a visitor without a session to sign in. */
export function WorkerNav() {
  const path = usePathname();
  const { t, locale } = useT();
  // A worker who also manages a venue (a manager's invitation accepted) finds its screens from here; asked only of a
  // session with the role, which stays after the last venue is gone (it grants nothing by itself).
  const [managerRole] = useState(() => sessionRoles(loadSession()).includes("venue_manager"));
  const managed = useQuery(QrService.method.listManagedVenues, {}, { enabled: managerRole });
  const manages = (managed.data?.venues.length ?? 0) > 0;
  useSignedIn("/w/signin");
  return (
    <>
      <SkipToContent label={t("skipToContent")} />
      <nav className="tabs" aria-label={t("navLabel")}>
        <Link href="/w">{t("navHome")}</Link>
        <Link href="/w/history">{t("navHistory")}</Link>
        <Link href="/w/withdraw">{t("navWithdraw")}</Link>
        <Link href="/w/statements">{t("navStatements")}</Link>
        <Link href="/w/qr">{t("navQr")}</Link>
        <Link href="/w/shares">{t("navShares")}</Link>
        <Link href="/w/settings">{t("navSettings")}</Link>
        {manages ? <Link href="/v">{t("navVenues")}</Link> : null}
        <a href={`/lang?to=${locale === "sw" ? "en" : "sw"}&back=${encodeURIComponent(path)}`} lang={locale === "sw" ? "en" : "sw"}>{t("switchLanguage")}</a>
      </nav>
      <ContentStart />
    </>
  );
}
