import { create } from "@bufbuild/protobuf";
import type { ServiceImpl } from "@connectrpc/connect";
import { Channel, KindPreferenceSchema, PreferencesSchema, TemplateKey, type Preferences } from "@ttip/proto/ttip/notification/v1/notification_pb.js";
import { NotificationService } from "@ttip/proto/ttip/notification/v1/notification_service_pb.js";
import { fieldError, type Pool, requireCaller } from "@ttip/runtime";
import { DEFAULT_CHANNELS } from "../delivery.js";
import { findRecipient, upsertPreferences } from "../stores/recipients.js";
import type { NotificationHandlerContext } from "./context.js";

/** A user's preferences: which channels each kind of message uses, quiet hours, locale and e-mail. */
export function preferenceHandlers(h: NotificationHandlerContext): Partial<ServiceImpl<typeof NotificationService>> {
  return {
    getPreferences: getPreferencesHandler(h),
    updatePreferences: updatePreferencesHandler(h),
  };
}

function getPreferencesHandler(h: NotificationHandlerContext): ServiceImpl<typeof NotificationService>["getPreferences"] {
  const { pool } = h;
  return async function (_req, hc) {
    const caller = requireCaller(hc);
    return { preferences: await preferencesOf(pool, caller.subject) };
  };
}

function updatePreferencesHandler(h: NotificationHandlerContext): ServiceImpl<typeof NotificationService>["updatePreferences"] {
  const { pool } = h;
  return async function (req, hc) {
    const caller = requireCaller(hc);
    const p = req.preferences!;
    const start = p.quietHoursStart;
    const end = p.quietHoursEnd;
    if (start && !HHMM.test(start)) throw fieldError("preferences.quiet_hours_start", 'must be "HH:MM" (East Africa Time)');
    if (end && !HHMM.test(end)) throw fieldError("preferences.quiet_hours_end", 'must be "HH:MM" (East Africa Time)');
    if (!start !== !end) throw fieldError(start ? "preferences.quiet_hours_end" : "preferences.quiet_hours_start", "quiet hours need both a start and an end");
    if (p.locale && !["en", "sw"].includes(p.locale)) throw fieldError("preferences.locale", 'must be "en" or "sw"');
    if (p.email && (p.email.length > EMAIL_MAX || !EMAIL.test(p.email))) throw fieldError("preferences.email", `not an e-mail address (at most ${EMAIL_MAX} characters)`);
    if (p.email && req.removeEmail) throw fieldError("remove_email", "removes the e-mail address stored: give no preferences.email with it");
    const kinds: Record<string, number[]> = {};
    for (const [i, k] of p.kinds.entries()) {
      if (!KEYS.includes(k.key)) throw fieldError(`preferences.kinds[${i}].key`, "must be a defined template key");
      if (k.channels.some((c) => c === Channel.UNSPECIFIED || !Channel[c])) throw fieldError(`preferences.kinds[${i}].channels`, "must be defined channels");
      if (k.key === TemplateKey.OTP && !k.channels.includes(Channel.SMS)) throw fieldError(`preferences.kinds[${i}].channels`, "sign-in codes always go by SMS");
      kinds[String(k.key)] = [...new Set(k.channels)];
    }
    await upsertPreferences(pool, caller.subject, { email: p.email, removeEmail: req.removeEmail, locale: p.locale, kinds, quietStart: start, quietEnd: end });
    return { preferences: await preferencesOf(pool, caller.subject) };
  };
}

/** The kinds a user chooses channels for (a pool share too); invitations, admin notices and security notices are not chosen. */
const KEYS = [
  TemplateKey.OTP, TemplateKey.TIP_RECEIVED, TemplateKey.RECEIPT, TemplateKey.PAYOUT_SENT, TemplateKey.PAYOUT_FAILED,
  TemplateKey.FRAUD_HOLD, TemplateKey.WEEKLY_SUMMARY, TemplateKey.POOL_SHARE,
];

async function preferencesOf(pool: Pool, userId: string): Promise<Preferences> {
  const r = await findRecipient(pool, userId);
  return create(PreferencesSchema, {
    kinds: KEYS.map((key) => create(KindPreferenceSchema, { key, channels: r?.kinds[String(key)] ?? DEFAULT_CHANNELS[key] })),
    quietHoursStart: r?.quiet_start ?? "",
    quietHoursEnd: r?.quiet_end ?? "",
    locale: r?.locale ?? "",
    email: r?.email ?? "",
  });
}

const HHMM = /^([01]\d|2[0-3]):[0-5]\d$/;

/** No spaces or control characters, at most RFC 5321's 254 characters. */
const EMAIL = /^[^\s@\p{Cc}]+@[^\s@\p{Cc}]+\.[^\s@\p{Cc}]+$/u;
const EMAIL_MAX = 254;
