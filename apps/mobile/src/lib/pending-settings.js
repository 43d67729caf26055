// Settings changed without a network wait on the phone (the latest change only:
// a settings write replaces the whole preferences, so replaying it twice is harmless)
// and are sent when the gateway answers again; nothing the worker chose is lost.
import { create, fromJson, toJson } from "@bufbuild/protobuf";
import { PreferencesSchema } from "@ttip/proto/ttip/notification/v1/notification_pb.js";
const slot = (userId) => `${userId}:pending:preferences`;
export async function queuePreferences(cache, userId, prefs) {
    await cache.set(slot(userId), JSON.stringify(toJson(PreferencesSchema, prefs)));
}
export async function pendingPreferences(cache, userId) {
    const raw = await cache.get(slot(userId));
    return raw ? fromJson(PreferencesSchema, JSON.parse(raw), { ignoreUnknownFields: true }) : undefined;
}
/** Sends the waiting change, if any; throws (and keeps it) when the gateway cannot be reached. */
export async function flushPreferences(cache, userId, client) {
    const prefs = await pendingPreferences(cache, userId);
    if (!prefs)
        return false;
    await client.updatePreferences({ preferences: create(PreferencesSchema, prefs) });
    await cache.delete(slot(userId));
    return true;
}
