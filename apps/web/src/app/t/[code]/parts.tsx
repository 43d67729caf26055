import type { TipTarget } from "@ttip/proto/ttip/qr/v1/qr_pb.js";
import type { Locale, Translate } from "../../../lib/i18n";
import { roleLabel } from "../../../lib/roles";

/** The language switch: a plain link, so it works without scripts. */
export function LanguageSwitch({ locale, back, t }: { locale: Locale; back: string; t: Translate }) {
  const to = locale === "sw" ? "en" : "sw";
  return (
    <div className="top">
      <a href={`/lang?to=${to}&back=${encodeURIComponent(back)}`} hrefLang={to} lang={to}>
        {t("languageLink")}
      </a>
    </div>
  );
}

/** Who is tipped: photo (or initial), name, role, venue and table; in the first HTML. */
export function WhoCard({ target, t, locale, heading }: { target: TipTarget; t: Translate; locale: Locale; heading: string }) {
  return (
    <div className="who">
      {target.photoUrl ? (
        // A plain img: the platform's own copy of an uploaded photo (or the worker's link), no optimiser in between.
        // Fetched first: at 72 px it may be the page's largest paint, and an upload is small (scaled before it is sent).
        // eslint-disable-next-line @next/next/no-img-element
        <img src={target.photoUrl} alt="" width={72} height={72} fetchPriority="high" />
      ) : (
        <span className="avatar" aria-hidden="true">
          {target.displayName.slice(0, 1).toUpperCase()}
        </span>
      )}
      <div>
        <p className="muted" style={{ margin: 0 }}>{heading}</p>
        <h1>{target.displayName}</h1>
        {target.role ? <div data-testid="role">{roleLabel(target.role, locale)}</div> : null}
        {target.venueName ? <div className="muted">{t("atVenue", { venue: target.venueName })}</div> : null}
        {target.table ? <div className="muted">{t("table", { table: target.table })}</div> : null}
      </div>
    </div>
  );
}
