"use client";
import Link from "next/link";
import { useSignedIn } from "../../lib/use-signed-in";
import { ContentStart, SkipToContent } from "../skip-to-content";
import { useVT } from "./use-vt";

/** The venue's tabs; sends a visitor without a session to the managers' sign-in. */
export function VenueNav({ venueId }: { venueId?: string }) {
  const { t, locale } = useVT();
  useSignedIn("/w/signin?as=manager");
  return (
    <>
      <SkipToContent label={t("v_skipToContent")} />
      <nav className="tabs" aria-label={t("v_venue")}>
        <Link href="/v">{t("v_venues")}</Link>
        {venueId ? (
          <>
            <Link href={`/v/${venueId}`}>{t("v_dashboard")}</Link>
            <Link href={`/v/${venueId}/staff`}>{t("v_staff")}</Link>
            <Link href={`/v/${venueId}/managers`}>{t("v_managers")}</Link>
            <Link href={`/v/${venueId}/shifts`}>{t("v_shifts")}</Link>
            <Link href={`/v/${venueId}/rules`}>{t("v_rule")}</Link>
            <Link href={`/v/${venueId}/distributions`}>{t("v_distributions")}</Link>
            <Link href={`/v/${venueId}/reports`}>{t("v_reports")}</Link>
          </>
        ) : null}
        <a href={`/lang?to=${locale === "sw" ? "en" : "sw"}&back=${encodeURIComponent(typeof window === "undefined" ? "/v" : window.location.pathname)}`} lang={locale === "sw" ? "en" : "sw"}>{t("v_switch")}</a>
      </nav>
      <ContentStart />
    </>
  );
}
