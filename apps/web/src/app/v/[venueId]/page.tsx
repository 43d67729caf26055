"use client";
import { createClient } from "@connectrpc/connect";
import { useMutation, useQuery, useTransport } from "@connectrpc/connect-query";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import { keepPreviousData } from "@tanstack/react-query";
import { useParams } from "next/navigation";
import { useState } from "react";
import { Granularity } from "@ttip/proto/ttip/analytics/v1/analytics_pb.js";
import { AnalyticsService } from "@ttip/proto/ttip/analytics/v1/analytics_service_pb.js";
import { ImageFormat, OwnerKind, QrCodeStatus } from "@ttip/proto/ttip/qr/v1/qr_pb.js";
import { QrService } from "@ttip/proto/ttip/qr/v1/qr_service_pb.js";
import { VenueService } from "@ttip/proto/ttip/venue/v1/venue_service_pb.js";
import { RowChart } from "../../../components/charts";
import { saveBytes } from "../../../lib/download";
import { useLiveFigures } from "../../../lib/live-figures";
import { formatAmount, WALLET_CURRENCY } from "../../../lib/money";
import { useWrite } from "../../../lib/use-write";
import { VenueNav } from "../nav";
import { focusField, funnelFigure } from "../util";
import { useVT } from "../use-vt";
import type { VenueKey } from "../../../lib/venue-i18n";

const FUNNEL: Record<string, VenueKey> = { scanned: "v_scanned", amount_chosen: "v_amountChosen", payment_started: "v_paymentStarted", paid: "v_paid" };

/**
 * The venue's dashboard over the last 30 days: tips per staff member, per
 * table (each table's code), the funnel from scan to paid with the failure
 * reasons (analytics' figures, the same as its CSV), in the currency chosen
 * among those the venue was tipped in (KES first), and the table codes.
 */
export default function Dashboard() {
  const { venueId } = useParams<{ venueId: string }>();
  const { t, err: plainError } = useVT();
  const transport = useTransport();
  const [range] = useState(() => ({ from: timestampFromDate(new Date(Date.now() - 30 * 86_400_000)), to: timestampFromDate(new Date(Date.now() + 3_600_000)) }));
  const profile = useQuery(QrService.method.getProfile, { ownerKind: OwnerKind.VENUE, ownerId: venueId });
  // Each currency's figures on their own (card tips come in USD, EUR, GBP): never summed into KES.
  const [currency, setCurrency] = useState<string>(WALLET_CURRENCY);
  // The figures shown stay on screen while another currency's load (the chooser with them).
  const figures = useQuery(AnalyticsService.method.getVenueAnalytics, { venueId, range, granularity: Granularity.DAY, currency }, { placeholderData: keepPreviousData });
  // Staff are named as the venue knows them (analytics keeps ids only); those who left still have their tips in the range.
  const members = useQuery(VenueService.method.listMembers, { venueId, includeLeft: true });
  const staffName = (workerId: string) => members.data?.members.find((m) => m.workerId === workerId)?.displayName || workerId.slice(0, 8);
  const codes = useQuery(QrService.method.listQrCodes, { ownerKind: OwnerKind.VENUE, ownerId: venueId, includeInactive: true, page: { pageSize: 100 } });
  const createCode = useMutation(QrService.method.createQrCode);
  const [error, setError] = useState("");
  const { figures: live } = useLiveFigures(venueId);
  const f = figures.data;
  const scans = f?.funnel.find((s) => s.step === "scanned")?.count ?? 0n;
  const codeName = (id: string) => {
    const c = codes.data?.qrCodes.find((q) => q.qrCodeId === id);
    return c ? (c.parameters?.table ? t("v_table", { table: c.parameters.table }) : c.shortCode) : id.slice(0, 8);
  };
  const run = async (x: () => Promise<void>) => {
    setError("");
    try {
      await x();
    } catch (e) {
      setError(plainError(e));
    }
  };
  const csv = () =>
    run(async () => {
      const res = await createClient(AnalyticsService, transport).exportEarnings({ range, scope: { case: "venueId", value: venueId } });
      saveBytes(res.csv, "text/csv", res.fileName || "ttip-venue.csv");
    });
  const card = (id: string) =>
    run(async () => {
      const res = await createClient(QrService, transport).renderQrCode({ qrCodeId: id, format: ImageFormat.PDF, caption: true });
      saveBytes(res.content, res.contentType, `ttip-table-${id.slice(0, 8)}.pdf`);
    });
  const tableWrite = useWrite();
  const addTable = tableWrite.onSubmit(async (f, send) => {
    setError("");
    const table = String(f.get("table") ?? "").trim();
    if (!table || table.length > 20) return (setError(t("v_errTable")), focusField("table"));
    await send((key) => createCode.mutateAsync({ ownerKind: OwnerKind.VENUE, ownerId: venueId, idempotencyKey: key, parameters: { table } }));
    await codes.refetch();
  }, (e) => setError(plainError(e)));

  return (
    <>
      <VenueNav venueId={venueId} />
      <h1>{profile.data?.profile?.displayName ?? t("v_venue")}</h1>
      {live.length ? (
        // Each currency's amount on its own (KES first), never summed; tips are counted across currencies, scans have none.
        <section className="figures" aria-label={t("v_todayLive")} data-testid="venue-live">
          <div>{t("v_tipsToday")}<strong>{String(live.reduce((n, f) => n + f.snapshot.tipsToday, 0n))}</strong></div>
          {live.map((f) => <div key={f.currency}>{t("v_today")}<strong>{formatAmount(f.snapshot.volumeToday, f.currency)}</strong></div>)}
          <div>{t("v_scansToday")}<strong>{String(live[0]!.snapshot.scansToday)}</strong></div>
        </section>
      ) : null}
      {figures.error ? <p className="error" role="alert">{plainError(figures.error)}</p> : null}
      {error ? <p className="error" role="alert">{error}</p> : null}
      {f ? (
        <>
          <p className="muted">{t("v_last30")}</p>
          {f.currencies.length > 1 ? (
            <>
              <label className="field" htmlFor="currency">{t("v_currency")}</label>
              <select id="currency" value={currency} onChange={(e) => setCurrency(e.target.value)}>
                {f.currencies.map((c) => <option key={c} value={c}>{c}</option>)}
              </select>
            </>
          ) : null}
          <RowChart
            title={t("v_perStaff")}
            testId="chart-staff"
            empty={t("v_noStaffTips")}
            bars={f.workers.map((w) => ({ label: w.displayName || staffName(w.workerId), value: w.volume?.amountMinor ?? 0n, text: `${formatAmount(w.volume, currency)} (${w.tips})` }))}
          />
          <RowChart
            title={t("v_perTable")}
            testId="chart-tables"
            empty={t("v_noTableTips")}
            bars={f.codes.map((c) => ({ label: codeName(c.qrCodeId), value: c.volume?.amountMinor ?? 0n, text: `${formatAmount(c.volume, currency)} · ${c.scans === 1n ? t("v_scanOne") : t("v_scans", { n: String(c.scans) })}` }))}
          />
          <RowChart
            title={t("v_funnel")}
            testId="chart-funnel"
            bars={f.funnel.map((s) => ({ label: FUNNEL[s.step] ? t(FUNNEL[s.step]) : s.step, value: s.count, text: funnelFigure(s.count, s.ofFirstBps, scans) }))}
          />
          {scans === 0n && f.funnel.some((s) => s.count > 0n) ? <p className="muted" data-testid="funnel-no-scans">{t("v_funnelNoScans")}</p> : null}
          {f.failures.length ? (
            <div className="table-box"><table aria-label={t("v_whyFailed")}>
              <thead><tr><th>{t("v_why")}</th><th>{t("v_times")}</th></tr></thead>
              <tbody>{f.failures.map((x) => <tr key={x.resultCode}><td>{x.reason || x.resultCode}</td><td>{String(x.count)}</td></tr>)}</tbody>
            </table></div>
          ) : null}
          <button type="button" className="secondary" onClick={csv}>{t("v_downloadFigures")}</button>
        </>
      ) : null}

      <h2>{t("v_tableCodes")}</h2>
      <ul data-testid="table-codes">
        {(codes.data?.qrCodes ?? []).filter((c) => c.status === QrCodeStatus.ACTIVE).map((c) => (
          <li key={c.qrCodeId}>
            {codeName(c.qrCodeId)} · <a href={c.url}>{c.shortCode}</a>{" "}
            <button type="button" className="secondary" onClick={() => card(c.qrCodeId)}>{t("v_tableCard", { name: codeName(c.qrCodeId) })}</button>
          </li>
        ))}
      </ul>
      <form onSubmit={addTable} noValidate>
        <label className="field" htmlFor="table">{t("v_newTable")}</label>
        <input id="table" name="table" type="text" maxLength={20} />
        <button type="submit" className="secondary" disabled={tableWrite.busy}>{t("v_makeTable")}</button>
      </form>
    </>
  );
}
