import { create } from "@bufbuild/protobuf";
import { type Timestamp, timestampFromDate, TimestampSchema } from "@bufbuild/protobuf/wkt";

/**
 * A nullable column (`resolved_at`, `left_at`, …) as an optional protobuf Timestamp:
 * an absent time stays unset on the wire rather than becoming the epoch.
 */
export function optionalTimestamp(date: Date | null | undefined): Timestamp | undefined {
  return date ? timestampFromDate(date) : undefined;
}

/**
 * A protobuf Timestamp to the microsecond, as PostgreSQL keeps time: through a JavaScript Date two changes in one
 * millisecond compare equal. Read back in SQL with microsTimestamptz.
 */
export function timestampMicros(ts: Timestamp): bigint {
  return ts.seconds * 1_000_000n + BigInt(Math.floor(ts.nanos / 1000));
}

/** timestampMicros undone: microseconds since the epoch (a row's time read as such) as a Timestamp. */
export function microsTimestamp(us: bigint): Timestamp {
  return create(TimestampSchema, { seconds: us / 1_000_000n, nanos: Number(us % 1_000_000n) * 1000 });
}

/** SQL: the int8 of microseconds since the epoch in `param` (a placeholder, "$3") as a timestamptz. */
export function microsTimestamptz(param: string): string {
  return `'epoch'::timestamptz + ${param}::int8 * interval '1 microsecond'`;
}
