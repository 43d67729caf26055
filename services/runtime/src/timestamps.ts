import { type Timestamp, timestampFromDate } from "@bufbuild/protobuf/wkt";

/**
 * A nullable column (`resolved_at`, `left_at`, …) as an optional protobuf Timestamp:
 * an absent time stays unset on the wire rather than becoming the epoch.
 */
export function optionalTimestamp(date: Date | null | undefined): Timestamp | undefined {
  return date ? timestampFromDate(date) : undefined;
}
