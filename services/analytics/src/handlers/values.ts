import { timestampDate, type Timestamp } from "@bufbuild/protobuf/wkt";
import { Granularity } from "@ttip/proto/ttip/analytics/v1/analytics_pb.js";
import { assertCurrency, fieldError } from "@ttip/runtime";
import * as q from "../queries.js";

/** A Money message's fields. */
export const money = (amountMinor: bigint, currency: string) => ({ amountMinor, currency });

/** A request's range (checked by protovalidate). */
export function rangeOf(r: { from?: Timestamp; to?: Timestamp } | undefined): q.Range {
  // protovalidate has checked presence, order and the 366-day limit.
  return { from: timestampDate(r!.from!), to: timestampDate(r!.to!) };
}

const PERIODS: Record<number, q.Period> = {
  [Granularity.HOUR]: "hour",
  [Granularity.DAY]: "day",
  [Granularity.WEEK]: "week",
  [Granularity.MONTH]: "month",
};

/** A request's granularity as a query period; hourly only over short ranges. */
export function periodOf(g: Granularity, range: q.Range): q.Period {
  const p = PERIODS[g];
  // Hourly series over a long range would be thousands of points per call.
  if (p === "hour" && range.to.getTime() - range.from.getTime() > 31 * 24 * 3_600_000) {
    throw fieldError("granularity", "hourly figures are served for ranges of at most 31 days");
  }
  return p;
}

/** A request's currency (protovalidate has checked its shape): KES when empty, else one the platform serves, or INVALID_ARGUMENT naming currency. */
export function currencyOf(req: { currency: string }): string {
  if (!req.currency) return q.HOME_CURRENCY;
  assertCurrency(req.currency, "currency");
  return req.currency;
}
