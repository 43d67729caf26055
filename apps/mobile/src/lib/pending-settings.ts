// Settings changed without a network wait on the phone (the latest change only) and
// are sent when the gateway answers again; nothing the worker chose is lost. What is
// sent is that choice (tip SMS on or off) on the preferences as they are then: the
// copy kept is the whole preferences of the time, and sent as it was, it undid what
// the worker changed elsewhere meanwhile (an e-mail address removed came back).
import { clone, create, fromJson, toJson } from "@bufbuild/protobuf";
import type { Client } from "@connectrpc/connect";
import { Channel, KindPreferenceSchema, PreferencesSchema, TemplateKey, type Preferences } from "@ttip/proto/ttip/notification/v1/notification_pb.js";
import type { NotificationService } from "@ttip/proto/ttip/notification/v1/notification_service_pb.js";
import type { KeyValue } from "./key-value";

const slot = (userId: string) => `${userId}:pending:preferences`;
const serialised = (prefs: Preferences) => JSON.stringify(toJson(PreferencesSchema, prefs));

/** Whether tips are texted: unset (no choice made) is on. */
export const smsOn = (p: Preferences | undefined) => p?.kinds.find((k) => k.key === TemplateKey.TIP_RECEIVED)?.channels.includes(Channel.SMS) ?? true;

/** `p` with tips texted or not, the rest as it is. */
export function withTipSms(p: Preferences, on: boolean): Preferences {
  // A copy: create() hands back a message it is given as it is, and the screen's own (its state) was changed in place.
  const next = clone(PreferencesSchema, p);
  let kind = next.kinds.find((k) => k.key === TemplateKey.TIP_RECEIVED);
  if (!kind) {
    kind = create(KindPreferenceSchema, { key: TemplateKey.TIP_RECEIVED, channels: [Channel.SMS, Channel.PUSH, Channel.IN_APP] });
    next.kinds.push(kind);
  }
  kind.channels = on ? [...new Set([...kind.channels, Channel.SMS])] : kind.channels.filter((c) => c !== Channel.SMS);
  return next;
}

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

/** Each user's flush under way: flushes run one after another, so an older choice's update never lands after a newer one's. */
const flushing = new Map<string, Promise<unknown>>();
/**
 * Each user's flush not yet begun. A later call shares it: it sends the choice that is latest when it begins. On a
 * network that hangs rather than fails, the retry timer's calls (one every few seconds) queued up behind one another.
 */
const waiting = new Map<string, Promise<boolean>>();

/**
 * Sends the waiting change, if any, on the preferences as they are now; throws (and keeps it) when the gateway
 * cannot be reached. Once sent, the copy goes only if it is still the one sent: a choice made meanwhile waits to be
 * sent in turn, not deleted unsent. `signedIn` names who the client's calls are made as now: a flush of a worker
 * signed out since sends nothing (their choice waits for them), as its calls would be made as the next worker.
 */
export function flushPreferences(cache: KeyValue, userId: string, client: Client<typeof NotificationService>, signedIn: () => string | undefined): Promise<boolean> {
  const queued = waiting.get(userId);
  if (queued) return queued;
  const turn: Promise<boolean> = (flushing.get(userId) ?? Promise.resolve()).catch(() => undefined).then(() => {
    waiting.delete(userId);
    return flushOnce(cache, userId, client, () => signedIn() === userId);
  });
  waiting.set(userId, turn);
  flushing.set(userId, turn);
  void turn.finally(() => flushing.get(userId) === turn && flushing.delete(userId)).catch(() => undefined);
  return turn;
}

async function flushOnce(cache: KeyValue, userId: string, client: Client<typeof NotificationService>, stillSignedIn: () => boolean): Promise<boolean> {
  if (!stillSignedIn() || !(await cache.get(slot(userId)))) return false;
  const { preferences: now } = await client.getPreferences({});
  // Signed out while it was asked: the answer, and the update, could be the next worker's.
  if (!stillSignedIn()) return false;
  // Read after the answer: a choice made while it was asked is the one sent.
  const raw = await cache.get(slot(userId));
  if (!raw) return false;
  const chosen = fromJson(PreferencesSchema, JSON.parse(raw), { ignoreUnknownFields: true });
  await client.updatePreferences({ preferences: withTipSms(now ?? create(PreferencesSchema), smsOn(chosen)) });
  if ((await cache.get(slot(userId))) === raw) await cache.delete(slot(userId));
  return true;
}
