"use client";
import { Code, ConnectError } from "@connectrpc/connect";
import { useInfiniteQuery, useMutation, useQuery } from "@connectrpc/connect-query";
import { timestampDate, timestampFromDate } from "@bufbuild/protobuf/wkt";
import { useEffect, useMemo, useState } from "react";
import { DistributionStatus, MemberStatus, type Member, type MyShare } from "@ttip/proto/ttip/venue/v1/venue_pb.js";
import { VenueService, type ListMySharesResponse } from "@ttip/proto/ttip/venue/v1/venue_service_pb.js";
import { formatAmount, WALLET_CURRENCY } from "../../../lib/money";
import { NAIROBI_ZONE, nairobiShown } from "../../../lib/nairobi-time";
import { useWrite } from "../../../lib/use-write";
import { venueT } from "../../../lib/venue-i18n";
import { ruleText, shareHow } from "../../v/share-words";
import { hours, methodName } from "../../v/util";
import { WorkerNav } from "../nav";
import { useT } from "../use-t";

/** Shares asked for at a time (over a month of one venue's daily splits): bounds each answer; "More" asks for the next as many. */
const PAGE_SIZE = 50;

/** A share is a distribution's line for one membership: a worker who left and came back in one period holds two. */
const shareKey = (s: MyShare) => `${s.distributionId}/${s.line?.memberId ?? ""}`;

/**
 * The pages' shares in order, each once: the service's pages do not overlap, but a row shown twice would be a
 * share read as paid twice. Once by distribution alone, a worker's second share in one distribution was not shown.
 */
function distinctShares(pages: readonly ListMySharesResponse[]): MyShare[] {
  const seen = new Set<string>();
  return pages.flatMap((p) => p.shares).filter((s) => !seen.has(shareKey(s)) && Boolean(seen.add(shareKey(s))));
}

/** How long the service lets a clock-in run before only a manager may end it (venue's shifts.ts). */
const CLOCK_OUT_WITHIN_MS = 24 * 3_600_000;

/**
 * The member's open shift as the service has it: clocked in on another visit, another device or
 * yesterday. Every open shift touches a period from a moment before the screen's read to a day
 * after: one started later (on another device, then the screen read again on focus) is in it too.
 * A moment only, kept from the screen's opening, missed it, and the screen offered a Clock in the
 * service refused. Read again after a refusal from a new moment.
 */
function useOpenShift(venueId: string) {
  const [asOf, setAsOf] = useState(() => Date.now());
  const period = useMemo(() => ({ start: timestampFromDate(new Date(asOf - 1_000)), end: timestampFromDate(new Date(asOf + CLOCK_OUT_WITHIN_MS)) }), [asOf]);
  const shifts = useQuery(VenueService.method.listShifts, { venueId, period }, { retry: false });
  const open = shifts.data?.shifts.find((s) => !s.endedAt)?.startedAt;
  // Known only once read: a failed read has no open shift to show, and offered "Clock in" to one clocked in.
  return { known: shifts.isSuccess, open: open ? timestampDate(open) : undefined, error: shifts.error, readAt: shifts.dataUpdatedAt, refetch: () => setAsOf(Date.now()) };
}

/** One venue: the rule in force (every member may read it) and clocking in and out. */
function VenueCard({ m }: { m: Member }) {
  const { t, err, locale } = useT();
  const vt = useMemo(() => venueT(locale), [locale]);
  const rule = useQuery(VenueService.method.getSplitRule, { venueId: m.venueId, version: 0 }, { retry: false });
  const shift = useOpenShift(m.venueId);
  // What this screen's own clocking did, until the service is asked again (on a refusal, or the screen's focus).
  const [clocked, setClocked] = useState<{ open?: Date }>();
  useEffect(() => setClocked(undefined), [shift.readAt]);
  const open = clocked ? clocked.open : shift.open;
  const [error, setError] = useState("");
  const clockIn = useMutation(VenueService.method.clockIn);
  const clockOut = useMutation(VenueService.method.clockOut);
  const write = useWrite();
  const clock = (inOut: "in" | "out") => write.run(async () => {
    setError("");
    if (inOut === "in") {
      const { shift } = await clockIn.mutateAsync({ venueId: m.venueId });
      setClocked({ open: shift?.startedAt ? timestampDate(shift.startedAt) : new Date() });
    } else {
      await clockOut.mutateAsync({ venueId: m.venueId });
      setClocked({});
    }
  }, (x) => {
    // Refused (clocked in or out elsewhere meanwhile): the service's state is shown again, with why.
    setError(err(x));
    setClocked(undefined);
    void shift.refetch();
  });
  const stale = open && Date.now() - open.getTime() > CLOCK_OUT_WITHIN_MS;
  const since = open?.toLocaleString(locale === "sw" ? "sw-KE" : "en-KE", { timeZone: NAIROBI_ZONE, ...(stale ? { dateStyle: "medium", timeStyle: "short" } : { timeStyle: "short" }) });
  const r = rule.data?.rule;
  return (
    <section className="notice" data-testid={`venue-${m.venueId}`}>
      <h2>{t("ruleInForce", { venue: m.venueName })}</h2>
      {r ? <p data-testid="rule-summary">{ruleText(vt, r, (memberId) => (memberId === m.memberId ? vt("v_fixedYou") : undefined))}</p> : null}
      {/* A venue without a rule yet is no error to its members. */}
      {rule.error ? (ConnectError.from(rule.error).code === Code.NotFound ? <p data-testid="rule-none">{t("ruleNone")}</p> : <p className="error">{err(rule.error)}</p>) : null}
      {shift.error ? <p className="error" role="alert">{err(shift.error)}</p> : null}
      {open ? <p role="status" data-testid="clocked-in">{t(stale ? "clockedInStale" : "clockedIn", { time: since! })}</p> : null}
      {error ? <p className="error" role="alert">{error}</p> : null}
      {/* No button the service would refuse: a stale clock-in is ended by the manager's record. */}
      {stale ? null : (
        <button type="button" className="secondary" disabled={write.busy || !shift.known} onClick={() => clock(open ? "out" : "in")}>{open ? t("clockOut") : t("clockIn")}</button>
      )}
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
  // "More" continues the same request from the last page's token; a failed one keeps the pages shown.
  const shares = useInfiniteQuery(
    VenueService.method.listMyShares,
    { page: { pageSize: PAGE_SIZE, pageToken: "" } },
    { pageParamKey: "page.pageToken", getNextPageParam: (last) => last.page?.nextPageToken || undefined },
  );
  const rows = useMemo(() => distinctShares(shares.data?.pages ?? []), [shares.data]);
  const date = (ts?: { seconds: bigint; nanos: number }) => (ts ? nairobiShown(timestampDate(ts as never), locale) : "");
  const current = (venues.data?.memberships ?? []).filter((m) => m.status === MemberStatus.ACTIVE);
  return (
    <>
      <WorkerNav />
      <h1>{t("shares")}</h1>
      {venues.isPending || shares.isPending ? <p role="status">{t("loading")}</p> : null}
      {venues.error ? <p className="error" role="alert">{err(venues.error)}</p> : null}
      {venues.isFetched && current.length === 0 ? <p>{t("venuesNone")}</p> : null}
      {current.map((m) => <VenueCard key={m.memberId} m={m} />)}
      <ul data-testid="my-shares" className="plain">
        {rows.map((s) => (
          <li key={shareKey(s)} className="notice" data-testid="share">
            <strong>{t("shareLine", { amount: formatAmount(s.line?.amount, WALLET_CURRENCY), venue: s.venueName, start: date(s.period?.start), end: date(s.period?.end) })}</strong>
            {s.status === DistributionStatus.REVERSED ? <span className="error"> · {t("shareReversed")}</span> : null}
            {s.line ? <p data-testid="share-how">{vt("v_how")}: {shareHow(vt, s.line, s.poolTotal)}</p> : null}
            <p className="muted" data-testid="share-basis">{t("shareBasis", { method: vt(methodName(s.method)), time: hours(s.line?.minutes ?? 0n, locale) })}</p>
            <p className="muted" data-testid="share-pool">{t("sharePool", { total: formatAmount(s.poolTotal, WALLET_CURRENCY), n: s.membersPaid, v: s.ruleVersion })}</p>
          </li>
        ))}
        {shares.isSuccess && rows.length === 0 ? <li>{t("noShares")}</li> : null}
      </ul>
      {shares.error ? <p className="error" role="alert" data-testid="shares-error">{err(shares.error)}</p> : null}
      {/* One page on its way at a time: a second tap while it comes sends nothing (cancelRefetch: false). */}
      {shares.hasNextPage ? (
        <button type="button" className="secondary" disabled={shares.isFetching} onClick={() => void shares.fetchNextPage({ cancelRefetch: false })}>{t("sharesMore")}</button>
      ) : null}
      {rows.length ? <p className="muted" data-testid="rounding">{vt("v_rounding")}: {vt("v_roundingRule")}</p> : null}
    </>
  );
}
