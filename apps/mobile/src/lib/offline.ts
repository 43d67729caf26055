// The offline copies: the last balance, tips and QR image the app saw, each with the
// time it was fetched, so a worker without a network still sees them, marked as old.
import { fromJson, toJson, type DescMessage, type MessageShape } from "@bufbuild/protobuf";
import type { DescMethodUnary } from "@bufbuild/protobuf";
import { Code, ConnectError } from "@connectrpc/connect";
import { useQuery } from "@connectrpc/connect-query";
import { useEffect, useState } from "react";
import { useApp } from "../app-context";
import type { KeyValue } from "./key-value";

export interface Saved<T> {
  savedAt: Date;
  value: T;
}

/** Bigger copies are not kept: the cache is for a screenful, not an archive. */
const MAX_COPY_CHARS = 512 * 1024;

export async function saveCopy<S extends DescMessage>(store: KeyValue, key: string, schema: S, value: MessageShape<S>, savedAt: Date): Promise<void> {
  const text = JSON.stringify({ savedAt: savedAt.toISOString(), value: toJson(schema, value) });
  if (text.length <= MAX_COPY_CHARS) await store.set(key, text);
}

export async function loadCopy<S extends DescMessage>(store: KeyValue, key: string, schema: S): Promise<Saved<MessageShape<S>> | undefined> {
  const raw = await store.get(key);
  if (!raw) return undefined;
  try {
    const parsed = JSON.parse(raw) as { savedAt: string; value: unknown };
    return { savedAt: new Date(parsed.savedAt), value: fromJson(schema, parsed.value as never, { ignoreUnknownFields: true }) };
  } catch {
    return undefined; // a copy from an older app version: ignore it, the next fetch replaces it
  }
}

/** No answer from the gateway at all (no network, DNS, timeout), as opposed to an answer that refuses. */
export function isUnreachable(err: unknown): boolean {
  const e = ConnectError.from(err);
  if (e.code === Code.Unavailable || e.code === Code.DeadlineExceeded) return true;
  return e.code === Code.Unknown && /network|fetch|load failed/i.test(`${e.rawMessage} ${String(e.cause)}`);
}

export interface OfflineResult<T> {
  data: T | undefined;
  /** When the data shown was fetched, set when it may be old (offline). */
  savedAt: Date | undefined;
  offline: boolean;
  /** An error the gateway answered with (not a lost connection). */
  error: unknown;
  isLoading: boolean;
  refetch(): Promise<unknown>;
}

/** A query whose last answer is kept per signed-in worker and shown, with its time, when offline. */
export function useOfflineQuery<I extends DescMessage, O extends DescMessage>(
  method: DescMethodUnary<I, O>,
  input: Parameters<typeof useQuery<I, O>>[1],
  name: string,
  options: { refetchInterval?: number } = {},
): OfflineResult<MessageShape<O>> {
  const { cache, sessions } = useApp();
  const key = `${sessions.get()?.userId ?? "anonymous"}:${name}`;
  const live = useQuery(method, input, { refetchInterval: options.refetchInterval, retry: false });
  const [saved, setSaved] = useState<Saved<MessageShape<O>>>();
  useEffect(() => {
    let alive = true;
    void loadCopy(cache, key, method.output).then((s) => alive && setSaved(s));
    return () => void (alive = false);
  }, [cache, key, method]);
  useEffect(() => {
    // A copy not saved (the storage full) is only one fewer to show offline.
    if (live.data) void saveCopy(cache, key, method.output, live.data, new Date(live.dataUpdatedAt)).catch(() => undefined);
  }, [cache, key, method, live.data, live.dataUpdatedAt]);
  const offline = live.error != null && isUnreachable(live.error);
  const data = live.data ?? (offline ? saved?.value : undefined);
  const savedAt = offline ? (live.data ? new Date(live.dataUpdatedAt) : saved?.savedAt) : undefined;
  return { data, savedAt, offline, error: offline ? undefined : live.error, isLoading: live.isLoading, refetch: live.refetch };
}
