// Platform figures as charts (the web app's SVG charts): tips, volume and fees
// per day from GetRevenueMetrics, success rate per day and method from
// GetPaymentSuccessRates, and GetPlatformSummary's rates, failures by
// result code, payout latency, growth and SMS spend. Each bar carries the RPC's
// exact figure (data-value), so a test can hold the chart to the API.
import { useEffect, useState } from "react";
import { timestampDate, timestampFromDate } from "@bufbuild/protobuf/wkt";
import { Granularity, type PlatformSummary, type RevenuePoint, type SuccessRatePoint } from "@ttip/proto/ttip/analytics/v1/analytics_pb.js";
import { AnalyticsAdminService } from "@ttip/proto/ttip/analytics/v1/analytics_service_pb.js";
import { ColumnChart, RowChart, type Bar } from "../../web/src/components/charts";
import { api, errorText } from "./api";
import { CHART_DAYS, chartDayLabel, chartRange } from "./chart-range";
import { money, Section } from "./ui";

const count = (label: string, n: bigint, unit = ""): Bar => ({ label, value: n, text: `${n.toLocaleString("en-KE")}${unit}` });
const kes = (label: string, m: { currency: string; amountMinor: bigint } | undefined): Bar => ({ label, value: m?.amountMinor ?? 0n, text: money(m) || "KES 0.00" });
const percent = (label: string, bps: number): Bar => ({ label, value: BigInt(bps), text: `${(bps / 100).toFixed(2)}%` });

export function PlatformCharts() {
  const [series, setSeries] = useState<RevenuePoint[]>([]);
  const [rates, setRates] = useState<SuccessRatePoint[]>([]);
  const [summary, setSummary] = useState<PlatformSummary>();
  const [error, setError] = useState("");
  useEffect(() => {
    const { from, to } = chartRange();
    const range = { from: timestampFromDate(from), to: timestampFromDate(to) };
    const analytics = api(AnalyticsAdminService);
    Promise.all([
      analytics.getRevenueMetrics({ range, granularity: Granularity.DAY, currency: "KES" }),
      analytics.getPlatformSummary({ range, currency: "KES" }),
      analytics.getPaymentSuccessRates({ range, granularity: Granularity.DAY }),
    ]).then(([r, s, ok]) => {
      setSeries(r.series);
      setSummary(s.summary);
      setRates(ok.series);
    }, (err) => setError(errorText(err)));
  }, []);
  const day = (p: { periodStart?: RevenuePoint["periodStart"] }) => (p.periodStart ? chartDayLabel(timestampDate(p.periodStart)) : "");
  return (
    <Section title={`Platform charts (${CHART_DAYS} days)`}>
      {error && <p role="alert" className="error">{error}</p>}
      <div aria-label="Platform charts" className="charts">
        <ColumnChart title="Tips per day" testId="chart-tips" bars={series.map((p) => count(day(p), p.tips, " tips"))} />
        <ColumnChart title="Tip volume per day" testId="chart-volume" bars={series.map((p) => kes(day(p), p.tipVolume))} />
        <ColumnChart title="Platform fees per day" testId="chart-fees" bars={series.map((p) => kes(day(p), p.platformFees))} />
        {["mpesa", "card"].map((method) => {
          const title = `${method === "mpesa" ? "M-Pesa" : "Card"} success rate per day`;
          const points = rates.filter((p) => p.method === method && p.attempted > 0n);
          // No attempt, no rate: an empty frame read as a chart of zeros.
          return points.length ? (
            <ColumnChart key={method} title={title} testId={`chart-success-${method}`} bars={points.map((p) => percent(day(p), p.successRateBps))} />
          ) : (
            <RowChart key={method} title={title} testId={`chart-success-${method}`} bars={[]} empty={`No ${method === "mpesa" ? "M-Pesa" : "card"} payments in these ${CHART_DAYS} days.`} />
          );
        })}
        {summary && (
          <>
            <RowChart title="Rates" testId="chart-rates" bars={[percent("Take rate", summary.takeRateBps), percent("Success rate", summary.successRateBps)]} />
            <RowChart
              title="Failed tips by result code"
              testId="chart-failures"
              empty="No failed tips."
              bars={summary.failures.map((f) => count(f.resultCode || "(none)", f.count))}
            />
            <RowChart
              title="Payout latency"
              testId="chart-latency"
              empty={`No payouts ended in these ${CHART_DAYS} days.`}
              bars={summary.payoutsSucceeded + summary.payoutsFailed > 0n ? [count("p50", summary.payoutLatencyP50Ms, " ms"), count("p95", summary.payoutLatencyP95Ms, " ms")] : []}
            />
            <RowChart
              title="Growth"
              testId="chart-growth"
              bars={[count("New workers", summary.newWorkers), count("Active workers", summary.activeWorkers), count("Active venues", summary.activeVenues)]}
            />
            <RowChart title="Money out" testId="chart-money" bars={[kes("Payouts", summary.payouts), kes("SMS spend", summary.smsSpend), kes("Pools paid", summary.poolsDistributed)]} />
          </>
        )}
      </div>
    </Section>
  );
}
