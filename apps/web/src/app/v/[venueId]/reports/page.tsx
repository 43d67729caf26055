"use client";
import { useInfiniteQuery, useQuery, useTransport } from "@connectrpc/connect-query";
import { createClient } from "@connectrpc/connect";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import { useParams } from "next/navigation";
import { useState } from "react";
import { ReportFormat, VenueService } from "@ttip/proto/ttip/venue/v1/venue_service_pb.js";
import { saveBytes } from "../../../../lib/download";
import { formatAmount, WALLET_CURRENCY } from "../../../../lib/money";
import { VenueNav } from "../../nav";
import { nairobiDayStart, nairobiMonthStart } from "../../../../lib/nairobi-time";
import { hours, inputTime, localTime, shown } from "../../util";
import { useVT } from "../../use-vt";
import { useRoleName } from "../../use-role-name";
import { loadSession } from "../../../../lib/session";
import { auditActor, auditText, type AuditNames } from "../../audit-words";

/** Hours and confirmed shares per member over a period (rows and CSV), and the audit trail. */
export default function Reports() {
  const { venueId } = useParams<{ venueId: string }>();
  const { t, err: plainError, locale } = useVT();
  const roleName = useRoleName(venueId);
  const transport = useTransport();
  // This month in Nairobi, to the end of today there.
  const [start, setStart] = useState(() => inputTime(nairobiMonthStart(new Date())));
  const [end, setEnd] = useState(() => inputTime(new Date(nairobiDayStart(new Date()).getTime() + 86_400_000)));
  const [error, setError] = useState("");
  const s = localTime(start);
  const e = localTime(end);
  const period = s && e ? { start: s, end: e } : { start: timestampFromDate(new Date(0)), end: timestampFromDate(new Date(1)) };
  // A period typed backwards is said here, as the manager types it; the server is not asked.
  const backwards = !!(s && e) && s.seconds >= e.seconds;
  const report = useQuery(VenueService.method.getPeriodReport, { venueId, period, format: ReportFormat.ROWS }, { enabled: !!(s && e) && !backwards });
  // "Older" continues from the last page's token.
  const audit = useInfiniteQuery(
    VenueService.method.listAuditRecords,
    { venueId, page: { pageSize: 50, pageToken: "" } },
    { pageParamKey: "page.pageToken", getNextPageParam: (last) => last.page?.nextPageToken || undefined },
  );
  const members = useQuery(VenueService.method.listMembers, { venueId, includeLeft: true });
  const managers = useQuery(VenueService.method.listManagers, { venueId });
  const [me] = useState(() => loadSession()?.userId);
  const names: AuditNames = {
    member: (id) => members.data?.members.find((m) => m.memberId === id)?.displayName,
    user: (id) => (id === me ? t("v_aYou") : members.data?.members.find((m) => m.workerId === id)?.displayName
      ?? (managers.data?.managers.find((m) => m.userId === id)?.displayName || undefined)),
    role: roleName,
  };
  const csv = async () => {
    setError("");
    try {
      const res = await createClient(VenueService, transport).getPeriodReport({ venueId, period, format: ReportFormat.CSV });
      saveBytes(res.csv, "text/csv", `ttip-venue-report-${start.slice(0, 10)}_${end.slice(0, 10)}.csv`);
    } catch (x) {
      setError(plainError(x));
    }
  };
  return (
    <>
      <VenueNav venueId={venueId} />
      <h1>{t("v_reports")}</h1>
      <label className="field" htmlFor="start">{t("v_from")}</label>
      <input id="start" type="datetime-local" value={start} onChange={(x) => setStart(x.target.value)} />
      <label className="field" htmlFor="end">{t("v_until")}</label>
      <input id="end" type="datetime-local" value={end} onChange={(x) => setEnd(x.target.value)} />
      {backwards ? <p className="error" role="alert">{t("v_errPeriodOrder")}</p> : report.error ? <p className="error" role="alert">{plainError(report.error)}</p> : null}
      {error ? <p className="error" role="alert">{error}</p> : null}
      <p>{t("v_collectedDistributed", { collected: formatAmount(report.data?.collected, WALLET_CURRENCY), distributed: formatAmount(report.data?.distributed, WALLET_CURRENCY) })}</p>
      <div className="table-box"><table data-testid="report">
        <thead><tr><th>{t("v_member")}</th><th>{t("v_role")}</th><th>{t("v_shifts")}</th><th>{t("v_hours")}</th><th>{t("v_shares")}</th><th>{t("v_distributions")}</th></tr></thead>
        <tbody>
          {(report.data?.lines ?? []).map((l) => (
            <tr key={l.memberId}><td>{l.displayName}</td><td>{roleName(l.roleId)}</td><td>{l.shifts}</td><td>{hours(l.minutes, locale)}</td><td data-minor={String(l.shares?.amountMinor ?? 0n)}>{formatAmount(l.shares, WALLET_CURRENCY)}</td><td>{l.distributions}</td></tr>
          ))}
        </tbody>
      </table></div>
      <button type="button" className="secondary" onClick={csv}>{t("v_downloadCsv")}</button>
      <h2>{t("v_audit")}</h2>
      <div className="table-box"><table data-testid="audit">
        <thead><tr><th>{t("v_when")}</th><th>{t("v_what")}</th><th>{t("v_who")}</th></tr></thead>
        <tbody>
          {(audit.data?.pages ?? []).flatMap((p) => p.records).map((r) => (
            <AuditRow key={String(r.sequence)} at={shown(r.at, locale)} text={auditText(t, r, names, locale)} who={auditActor(t, r.actor, names)} action={r.action} detail={r.detail} />
          ))}
        </tbody>
      </table></div>
      {audit.hasNextPage ? (
        <button type="button" className="secondary" disabled={audit.isFetching} onClick={() => void audit.fetchNextPage({ cancelRefetch: false })}>{t("v_more")}</button>
      ) : null}
    </>
  );
}

/** A known action as a sentence; another as the service recorded it. */
function AuditRow({ at, text, who, action, detail }: { at: string; text: string | undefined; who: string; action: string; detail: string }) {
  return <tr><td>{at}</td><td>{text ?? <>{action} <code>{detail.slice(0, 160)}</code></>}</td><td>{who}</td></tr>;
}
