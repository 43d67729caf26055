// Settings changed without a network wait on the phone (the latest change only:
// a settings write replaces the whole preferences, so replaying it twice is harmless)
// and are sent when the gateway answers again; nothing the worker chose is lost.
import { create, fromJson, toJson } from "@bufbuild/protobuf";
import type { Client } from "@connectrpc/connect";
import { PreferencesSchema, type Preferences } from "@ttip/proto/ttip/notification/v1/notification_pb.js";
import type { NotificationService } from "@ttip/proto/ttip/notification/v1/notification_service_pb.js";
import type { KeyValue } from "./key-value";

const slot = (userId: string) => `${userId}:pending:preferences`;
const serialised = (prefs: Preferences) => JSON.stringify(toJson(PreferencesSchema, prefs));

/** Keeps `prefs` as the latest choice, replacing any older one waiting. */
export async function queuePreferences(cache: KeyValue, userId: string, prefs: Preferences): Promise<void> {
  await cache.set(slot(userId), serialised(prefs));
}

export async function pendingPreferences(cache: KeyValue, userId: string): Promise<Preferences | undefined> {
  const raw = await cache.get(slot(userId));
  return raw ? fromJson(PreferencesSchema, JSON.parse(raw), { ignoreUnknownFields: true }) : undefined;
}

/** Drops `prefs` if it is still the one waiting (the service refused it); a newer choice stays. */
export async function dropPreferences(cache: KeyValue, userId: string, prefs: Preferences): Promise<void> {
  if ((await cache.get(slot(userId))) === serialised(prefs)) await cache.delete(slot(userId));
}

/**
 * Sends the waiting change, if any; throws (and keeps it) when the gateway cannot be reached. Once sent, the copy
 * goes only if it is still the one sent: a choice made meanwhile waits to be sent in turn, not deleted unsent.
 */
export async function flushPreferences(cache: KeyValue, userId: string, client: Client<typeof NotificationService>): Promise<boolean> {
  const raw = await cache.get(slot(userId));
  if (!raw) return false;
  const prefs = fromJson(PreferencesSchema, JSON.parse(raw), { ignoreUnknownFields: true });
  await client.updatePreferences({ preferences: create(PreferencesSchema, prefs) });
  if ((await cache.get(slot(userId))) === raw) await cache.delete(slot(userId));
  return true;
}
