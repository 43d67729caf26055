"use client";
import Link from "next/link";
import { usePathname, useRouter } from "next/navigation";
import { useEffect, useState } from "react";
import { loadSession, sessionRoles } from "../../lib/session";
import { ContentStart, SkipToContent } from "../skip-to-content";
import { useT } from "./use-t";

/** The worker's tabs and the language switch; sends a visitor without a session to sign in. */
export function WorkerNav() {
  const router = useRouter();
  const path = usePathname();
  const { t, locale } = useT();
  // A worker who also manages a venue (a manager's invitation accepted) finds its screens from here.
  const [manages] = useState(() => sessionRoles(loadSession()).includes("venue_manager"));
  useEffect(() => {
    if (!loadSession()) router.replace("/w/signin");
  }, [router]);
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
