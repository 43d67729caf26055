"use client";
import { useMutation, useQuery } from "@connectrpc/connect-query";
import { timestampDate } from "@bufbuild/protobuf/wkt";
import { useMemo, useState } from "react";
import { DistributionStatus, MemberStatus, type Member } from "@ttip/proto/ttip/venue/v1/venue_pb.js";
import { VenueService } from "@ttip/proto/ttip/venue/v1/venue_service_pb.js";
import { formatMoney } from "../../../lib/money";
import { NAIROBI_ZONE } from "../../../lib/nairobi-time";
import { venueT } from "../../../lib/venue-i18n";
import { ruleText, shareHow } from "../../v/share-words";
import { hours, methodName } from "../../v/util";
import { WorkerNav } from "../nav";
import { useT } from "../use-t";

/** One venue: the rule in force (every member may read it) and clocking in and out. */
function VenueCard({ m }: { m: Member }) {
  const { t, err, locale } = useT();
  const vt = useMemo(() => venueT(locale), [locale]);
  const rule = useQuery(VenueService.method.getSplitRule, { venueId: m.venueId, version: 0 }, { retry: false });
  const [open, setOpen] = useState<Date>();
  const [error, setError] = useState("");
  const clockIn = useMutation(VenueService.method.clockIn);
  const clockOut = useMutation(VenueService.method.clockOut);
  const clock = async (inOut: "in" | "out") => {
    setError("");
    try {
      if (inOut === "in") {
        const { shift } = await clockIn.mutateAsync({ venueId: m.venueId });
        setOpen(shift?.startedAt ? timestampDate(shift.startedAt) : new Date());
      } else {
        await clockOut.mutateAsync({ venueId: m.venueId });
        setOpen(undefined);
      }
    } catch (x) {
      setError(err(x));
    }
  };
  const r = rule.data?.rule;
  return (
    <section className="notice" data-testid={`venue-${m.venueId}`}>
      <h2>{t("ruleInForce", { venue: m.venueName })}</h2>
      {r ? <p data-testid="rule-summary">{ruleText(vt, r)}</p> : null}
      {rule.error ? <p className="error">{err(rule.error)}</p> : null}
      {open ? <p role="status">{t("clockedIn", { time: open.toLocaleTimeString(locale === "sw" ? "sw-KE" : "en-KE", { timeZone: NAIROBI_ZONE }) })}</p> : null}
      {error ? <p className="error" role="alert">{error}</p> : null}
      <button type="button" className="secondary" onClick={() => clock(open ? "out" : "in")}>{open ? t("clockOut") : t("clockIn")}</button>
    </section>
  );
}

/**
 * "Does the tip reach me?": each venue's rule in force, and each share with how it was reached, worded
 * here from the service's fields in the worker's language, as the venue's Distributions screen words
 * them (the service's English explanation is left for API clients).
 */
export default function Shares() {
  const { t, err, locale } = useT();
  const vt = useMemo(() => venueT(locale), [locale]);
  const venues = useQuery(VenueService.method.listMyVenues, {});
  const shares = useQuery(VenueService.method.listMyShares, { page: { pageSize: 50 } });
  const date = (ts?: { seconds: bigint; nanos: number }) => (ts ? timestampDate(ts as never).toLocaleString(locale === "sw" ? "sw-KE" : "en-KE", { dateStyle: "medium", timeStyle: "short", timeZone: NAIROBI_ZONE }) : "");
  const current = (venues.data?.memberships ?? []).filter((m) => m.status === MemberStatus.ACTIVE);
  return (
    <>
      <WorkerNav />
      <h1>{t("shares")}</h1>
      {venues.error ? <p className="error" role="alert">{err(venues.error)}</p> : null}
      {venues.isFetched && current.length === 0 ? <p>{t("venuesNone")}</p> : null}
      {current.map((m) => <VenueCard key={m.memberId} m={m} />)}
      <ul data-testid="my-shares" className="plain">
        {(shares.data?.shares ?? []).map((s) => (
          <li key={s.distributionId} className="notice" data-testid="share">
            <strong>{t("shareLine", { amount: formatMoney(s.line?.amount?.amountMinor ?? 0n), venue: s.venueName, start: date(s.period?.start), end: date(s.period?.end) })}</strong>
            {s.status === DistributionStatus.REVERSED ? <span className="error"> · {t("shareReversed")}</span> : null}
            {s.line ? <p data-testid="share-how">{vt("v_how")}: {shareHow(vt, s.line, s.poolTotal?.amountMinor ?? 0n)}</p> : null}
            <p className="muted" data-testid="share-basis">{t("shareBasis", { method: vt(methodName(s.method)), time: hours(s.line?.minutes ?? 0n, locale) })}</p>
            <p className="muted" data-testid="share-pool">{t("sharePool", { total: formatMoney(s.poolTotal?.amountMinor ?? 0n), n: s.membersPaid, v: s.ruleVersion })}</p>
          </li>
        ))}
        {shares.isFetched && (shares.data?.shares.length ?? 0) === 0 ? <li>{t("noShares")}</li> : null}
      </ul>
      {shares.data?.shares.length ? <p className="muted" data-testid="rounding">{vt("v_rounding")}: {vt("v_roundingRule")}</p> : null}
    </>
  );
}
