import { create } from "@bufbuild/protobuf";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import type { ConnectRouter, HandlerContext, ServiceImpl } from "@connectrpc/connect";
import { AuditAction } from "@ttip/proto/ttip/auth/v1/auth_pb.js";
import {
  Channel,
  DeliveryAttemptSchema,
  DeliverySchema,
  DeliveryStatus,
  InAppNotificationSchema,
  KindPreferenceSchema,
  PreferencesSchema,
  SmsEncoding,
  TemplateKey,
  TemplateSchema,
  type Delivery,
  type InAppNotification,
  type Preferences,
} from "@ttip/proto/ttip/notification/v1/notification_pb.js";
import {
  NotificationAdminService,
  NotificationInternalService,
  NotificationService,
} from "@ttip/proto/ttip/notification/v1/notification_service_pb.js";
import { auditAdminAction, maskPhone, claimIdempotencyKey, decodeTimeIdToken, encodePageToken, fieldError, idempotentRequest, keysetTime, normalisePhone, NotFoundError, pageSize, type Pool, requireCaller, type ServiceContext, withTransaction } from "@ttip/runtime";
import { DEFAULT_CHANNELS, enqueue, inAppSignals, type Recipient } from "./delivery.js";
import { findRecipient, findTemplate, forgetActiveTemplates, type TemplateRecord } from "./store.js";
import { MissingVariablesError, render, resolveLocale, smsSize, TEMPLATE_VARIABLES, unknownVariables, withDefaults } from "./templates.js";

const KEYS = [1, 2, 3, 4, 5, 6, 7] as TemplateKey[];
const STATUS: Record<string, DeliveryStatus> = {
  queued: DeliveryStatus.QUEUED,
  sent: DeliveryStatus.SENT,
  delivered: DeliveryStatus.DELIVERED,
  failed: DeliveryStatus.FAILED,
  retrying: DeliveryStatus.RETRYING,
  sending: DeliveryStatus.QUEUED,
  in_doubt: DeliveryStatus.FAILED,
};
const STATUS_NAME = Object.fromEntries(Object.entries(STATUS).slice(0, 5).map(([k, v]) => [v, k])) as Record<DeliveryStatus, string>;


function toTemplate(t: TemplateRecord) {
  return create(TemplateSchema, {
    key: t.key,
    locale: t.locale,
    channel: t.channel,
    version: t.version,
    subject: t.subject,
    body: t.body,
    active: t.active,
    createdAt: timestampFromDate(t.created_at),
  });
}

interface InAppRow {
  id: string;
  template_key: TemplateKey;
  title: string;
  body: string;
  created_at: Date;
  read_at: Date | null;
}
function toInApp(r: InAppRow): InAppNotification {
  return create(InAppNotificationSchema, {
    notificationId: r.id,
    templateKey: r.template_key,
    title: r.title,
    body: r.body,
    createdAt: timestampFromDate(r.created_at),
    readAt: r.read_at ? timestampFromDate(r.read_at) : undefined,
  });
}

async function loadDeliveries(pool: Pool, where: string, params: unknown[], limit: number): Promise<(Delivery & { _pageAt: string })[]> {
  const { rows } = await pool.query(
    `SELECT id, user_id, channel, template_key, template_version, address_masked, status, created_at,
            ${keysetTime("created_at")} AS page_at
       FROM notification.deliveries WHERE ${where} ORDER BY created_at DESC, id DESC LIMIT ${limit}`,
    params,
  );
  if (!rows.length) return [];
  const attempts = await pool.query(
    `SELECT delivery_id, attempt, provider, provider_message_id, status, error, COALESCE(finished_at, started_at) AS at
       FROM notification.delivery_attempts WHERE delivery_id = ANY($1::uuid[]) ORDER BY attempt`,
    [rows.map((r) => r.id)],
  );
  return rows.map((r) =>
    Object.assign(
      create(DeliverySchema, {
        deliveryId: r.id,
        userId: r.user_id ?? "",
        channel: r.channel,
        templateKey: r.template_key,
        templateVersion: r.template_version,
        recipientMasked: r.address_masked,
        status: STATUS[r.status],
        createdAt: timestampFromDate(r.created_at),
        attempts: attempts.rows
          .filter((a) => a.delivery_id === r.id)
          .map((a) =>
            create(DeliveryAttemptSchema, {
              attempt: a.attempt,
              provider: a.provider,
              providerMessageId: a.provider_message_id,
              status: STATUS[a.status],
              error: a.status === "in_doubt" ? `in doubt: ${a.error}` : a.error,
              at: timestampFromDate(a.at),
            }),
          ),
      }),
      { _pageAt: r.page_at as string },
    ),
  );
}

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
const EMAIL = /^[^\s@]+@[^\s@]+\.[^\s@]+$/;

/** Every RPC of the notification services, one factory per RPC below; the service's context is the handlers' context. */
export function registerHandlers(router: ConnectRouter, h: ServiceContext): void {
  router.service(NotificationService, {
    getPreferences: getPreferencesHandler(h),
    updatePreferences: updatePreferencesHandler(h),
    listInAppNotifications: listInAppNotificationsHandler(h),
    watchInAppNotifications: watchInAppNotificationsHandler(h),
    markRead: markReadHandler(h),
    registerPushToken: registerPushTokenHandler(h),
    unregisterPushToken: unregisterPushTokenHandler(h),
  });

  router.service(NotificationAdminService, {
    listTemplates: listTemplatesHandler(h),
    createTemplateVersion: createTemplateVersionHandler(h),
    activateTemplateVersion: activateTemplateVersionHandler(h),
    renderTemplate: renderTemplateHandler(h),
    getDelivery: getDeliveryHandler(h),
    listDeliveries: listDeliveriesHandler(h),
    getProviderHealth: getProviderHealthHandler(h),
  });

  router.service(NotificationInternalService, {
    sendNotification: sendNotificationHandler(h),
    upsertContact: upsertContactHandler(h),
  });
}

function getPreferencesHandler(h: ServiceContext): ServiceImpl<typeof NotificationService>["getPreferences"] {
  const { pool } = h;
  return async function (_req, hc) {
    const caller = requireCaller(hc);
    return { preferences: await preferencesOf(pool, caller.subject) };
  };
}

function updatePreferencesHandler(h: ServiceContext): ServiceImpl<typeof NotificationService>["updatePreferences"] {
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
    if (p.email && !EMAIL.test(p.email)) throw fieldError("preferences.email", "not an e-mail address");
    const kinds: Record<string, number[]> = {};
    for (const [i, k] of p.kinds.entries()) {
      if (!KEYS.includes(k.key)) throw fieldError(`preferences.kinds[${i}].key`, "must be a defined template key");
      if (k.channels.some((c) => c === Channel.UNSPECIFIED || !Channel[c])) throw fieldError(`preferences.kinds[${i}].channels`, "must be defined channels");
      if (k.key === TemplateKey.OTP && !k.channels.includes(Channel.SMS)) throw fieldError(`preferences.kinds[${i}].channels`, "sign-in codes always go by SMS");
      kinds[String(k.key)] = [...new Set(k.channels)];
    }
    await pool.query(
      `INSERT INTO notification.recipients (user_id, email, locale, kinds, quiet_start, quiet_end) VALUES ($1, NULLIF($2, ''), $3, $4, $5, $6)
       ON CONFLICT (user_id) DO UPDATE SET email = COALESCE(NULLIF($2, ''), recipients.email),
         locale = CASE WHEN $3 = '' THEN recipients.locale ELSE $3 END,
         kinds = recipients.kinds || $4::jsonb, quiet_start = $5, quiet_end = $6, updated_at = now()`,
      [caller.subject, p.email, p.locale, JSON.stringify(kinds), start, end],
    );
    return { preferences: await preferencesOf(pool, caller.subject) };
  };
}

function listInAppNotificationsHandler(h: ServiceContext): ServiceImpl<typeof NotificationService>["listInAppNotifications"] {
  const { pool } = h;
  return async function (req, hc) {
    const caller = requireCaller(hc);
    const cursor = decodeTimeIdToken(req.page?.pageToken);
    const size = pageSize(req.page);
    const { rows } = await pool.query<InAppRow & { page_at: string }>(
      `SELECT id, template_key, title, body, created_at, read_at, ${keysetTime("created_at")} AS page_at FROM notification.inapp_notifications
        WHERE user_id = $1 AND ($2::boolean = false OR read_at IS NULL)
          AND ($3::timestamptz IS NULL OR (created_at, id) < ($3::timestamptz, $4::uuid))
        ORDER BY created_at DESC, id DESC LIMIT $5`,
      [caller.subject, req.unreadOnly, cursor?.at ?? null, cursor?.id ?? null, size + 1],
    );
    const unread = await pool.query<{ n: number }>(
      "SELECT count(*)::int AS n FROM notification.inapp_notifications WHERE user_id = $1 AND read_at IS NULL",
      [caller.subject],
    );
    const page = rows.slice(0, size);
    const last = page[page.length - 1];
    return {
      notifications: page.map(toInApp),
      unreadCount: unread.rows[0].n,
      page: { nextPageToken: rows.length > size && last ? encodePageToken([last.page_at, last.id]) : "" },
    };
  };
}

function watchInAppNotificationsHandler(h: ServiceContext): ServiceImpl<typeof NotificationService>["watchInAppNotifications"] {
  const { pool } = h;
  return async function* (_req, hc: HandlerContext) {
    const caller = requireCaller(hc);
    // Reads the table (so a notification made by another replica shows up
    // too); a local signal only shortens the wait. The look-back window
    // catches rows whose transaction committed after a later one's.
    const seen = new Map<string, number>();
    let since = (await pool.query<{ now: Date }>("SELECT now() AS now")).rows[0].now;
    while (!hc.signal.aborted) {
      const { rows } = await pool.query<InAppRow>(
        `SELECT id, template_key, title, body, created_at, read_at FROM notification.inapp_notifications
          WHERE user_id = $1 AND created_at > $2::timestamptz - interval '10 seconds' ORDER BY created_at, id LIMIT 100`,
        [caller.subject, since],
      );
      for (const r of rows) {
        if (seen.has(r.id)) continue;
        seen.set(r.id, r.created_at.getTime());
        if (r.created_at > since) since = r.created_at;
        yield { notification: toInApp(r) };
      }
      for (const [id, t] of seen) if (t < since.getTime() - 20_000) seen.delete(id);
      await new Promise<void>((resolve) => {
        const done = () => {
          clearTimeout(timer);
          inAppSignals.off(caller.subject, wake);
          hc.signal.removeEventListener("abort", done);
          resolve();
        };
        // Give the creating transaction a moment to commit after the signal.
        const wake = () => setTimeout(done, 20);
        const timer = setTimeout(done, 1_000);
        inAppSignals.on(caller.subject, wake);
        hc.signal.addEventListener("abort", done);
      });
    }
  };
}

function markReadHandler(h: ServiceContext): ServiceImpl<typeof NotificationService>["markRead"] {
  const { pool } = h;
  return async function (req, hc) {
    const caller = requireCaller(hc);
    // Ids of other users' notifications match nothing: no hint that they exist.
    await pool.query(
      "UPDATE notification.inapp_notifications SET read_at = now() WHERE user_id = $1 AND id = ANY($2::uuid[]) AND read_at IS NULL",
      [caller.subject, req.notificationIds],
    );
    return {};
  };
}

function registerPushTokenHandler(h: ServiceContext): ServiceImpl<typeof NotificationService>["registerPushToken"] {
  const { pool } = h;
  return async function (req, hc) {
    const caller = requireCaller(hc);
    // A device that changes hands follows its new owner.
    await pool.query(
      `INSERT INTO notification.push_tokens (token, user_id, platform) VALUES ($1, $2, $3)
       ON CONFLICT (token) DO UPDATE SET user_id = $2, platform = $3, created_at = now()`,
      [req.token, caller.subject, req.platform],
    );
    return {};
  };
}

function unregisterPushTokenHandler(h: ServiceContext): ServiceImpl<typeof NotificationService>["unregisterPushToken"] {
  const { pool } = h;
  return async function (req, hc) {
    const caller = requireCaller(hc);
    await pool.query("DELETE FROM notification.push_tokens WHERE token = $1 AND user_id = $2", [req.token, caller.subject]);
    return {};
  };
}

function listTemplatesHandler(h: ServiceContext): ServiceImpl<typeof NotificationAdminService>["listTemplates"] {
  const { pool } = h;
  return async function (req) {
    const { rows } = await pool.query<TemplateRecord>(
      `SELECT key, locale, channel, version, subject, body, active, created_at FROM notification.templates
        WHERE ($1::smallint = 0 OR key = $1) AND ($2 = '' OR locale = $2) ORDER BY key, locale, channel, version`,
      [req.key, req.locale],
    );
    return { templates: rows.map(toTemplate) };
  };
}

function createTemplateVersionHandler(h: ServiceContext): ServiceImpl<typeof NotificationAdminService>["createTemplateVersion"] {
  const { pool } = h;
  return async function (req, hc) {
    const unknown = unknownVariables(req.key, req.subject, req.body);
    if (unknown.length) {
      throw fieldError("body", `unknown variables ${unknown.map((v) => `{{${v}}}`).join(", ")}; ${TemplateKey[req.key]} allows ${TEMPLATE_VARIABLES[req.key].map((v) => `{{${v}}}`).join(", ")}`);
    }
    const row = await withTransaction(pool, async (tx) => {
      // Serialises concurrent creations for the same template so versions stay gapless.
      await tx.query("SELECT pg_advisory_xact_lock(hashtext($1))", [`template:${req.key}:${req.locale}:${req.channel}`]);
      const { rows } = await tx.query<TemplateRecord>(
        `INSERT INTO notification.templates (key, locale, channel, version, subject, body, active)
         SELECT $1, $2, $3, COALESCE(max(version), 0) + 1, $4, $5, false FROM notification.templates WHERE key = $1 AND locale = $2 AND channel = $3
         RETURNING key, locale, channel, version, subject, body, active, created_at`,
        [req.key, req.locale, req.channel, req.subject, req.body],
      );
      await auditAdminAction(tx, "notification", hc, {
        action: AuditAction.TEMPLATE_VERSION_CREATED,
        target: templateTarget(req.key, req.locale, req.channel),
        detail: `version ${rows[0].version}: ${req.body}`,
      });
      return rows[0];
    });
    return { template: toTemplate(row) };
  };
}

function activateTemplateVersionHandler(h: ServiceContext): ServiceImpl<typeof NotificationAdminService>["activateTemplateVersion"] {
  const { pool } = h;
  return async function (req, hc) {
    const row = await withTransaction(pool, async (tx) => {
      const found = await tx.query(
        "SELECT 1 FROM notification.templates WHERE key = $1 AND locale = $2 AND channel = $3 AND version = $4 FOR UPDATE",
        [req.key, req.locale, req.channel, req.version],
      );
      if (!found.rowCount) throw new NotFoundError(`template ${TemplateKey[req.key]}/${req.locale}/${Channel[req.channel]} has no version ${req.version}`);
      await tx.query("UPDATE notification.templates SET active = false WHERE key = $1 AND locale = $2 AND channel = $3 AND active", [req.key, req.locale, req.channel]);
      const { rows } = await tx.query<TemplateRecord>(
        `UPDATE notification.templates SET active = true WHERE key = $1 AND locale = $2 AND channel = $3 AND version = $4
         RETURNING key, locale, channel, version, subject, body, active, created_at`,
        [req.key, req.locale, req.channel, req.version],
      );
      await auditAdminAction(tx, "notification", hc, {
        action: AuditAction.TEMPLATE_VERSION_ACTIVATED,
        target: templateTarget(req.key, req.locale, req.channel),
        detail: `version ${req.version}`,
      });
      return rows[0];
    });
    forgetActiveTemplates();
    return { template: toTemplate(row) };
  };
}

function renderTemplateHandler(h: ServiceContext): ServiceImpl<typeof NotificationAdminService>["renderTemplate"] {
  const { pool } = h;
  return async function (req) {
    const locale = resolveLocale(req.locale);
    const t = await findTemplate(pool, req.key, locale, req.channel, req.version);
    if (!t) throw new NotFoundError(`no ${req.version ? `version ${req.version}` : "active version"} of ${TemplateKey[req.key]}/${locale}/${Channel[req.channel]}`);
    try {
      const variables = withDefaults(req.key, req.variables);
      const subject = render(t.subject, variables);
      const body = render(t.body, variables);
      const size = req.channel === Channel.SMS ? smsSize(body) : undefined;
      return {
        subject,
        body,
        locale: t.locale,
        smsEncoding: size?.encoding ?? SmsEncoding.UNSPECIFIED,
        smsSegments: size?.segments ?? 0,
      };
    } catch (err) {
      if (err instanceof MissingVariablesError) throw fieldError("variables", `missing ${err.missing.join(", ")}`);
      throw err;
    }
  };
}

function getDeliveryHandler(h: ServiceContext): ServiceImpl<typeof NotificationAdminService>["getDelivery"] {
  const { pool } = h;
  return async function (req) {
    const [d] = await loadDeliveries(pool, "id = $1", [req.deliveryId], 1);
    if (!d) throw new NotFoundError(`delivery ${req.deliveryId} not found`);
    return { delivery: d };
  };
}

function listDeliveriesHandler(h: ServiceContext): ServiceImpl<typeof NotificationAdminService>["listDeliveries"] {
  const { pool } = h;
  return async function (req) {
    const cursor = decodeTimeIdToken(req.page?.pageToken);
    const size = pageSize(req.page);
    const rows = await loadDeliveries(
      pool,
      `($1 = '' OR user_id = NULLIF($1, '')::uuid) AND ($2 = '' OR status = $2) AND ($3::smallint = 0 OR channel = $3)
        AND ($4::timestamptz IS NULL OR (created_at, id) < ($4::timestamptz, $5::uuid))`,
      [req.userId, req.status ? STATUS_NAME[req.status] : "", req.channel, cursor?.at ?? null, cursor?.id ?? null],
      size + 1,
    );
    const page = rows.slice(0, size);
    const last = page[page.length - 1];
    return {
      deliveries: page,
      page: { nextPageToken: rows.length > size && last ? encodePageToken([last._pageAt, last.deliveryId]) : "" },
    };
  };
}

function getProviderHealthHandler(h: ServiceContext): ServiceImpl<typeof NotificationAdminService>["getProviderHealth"] {
  const { pool } = h;
  return async function (req) {
    const windowHours = req.windowHours || 24;
    const { rows } = await pool.query<{ provider: string; channel: number; sent: string; failed: string; in_doubt: string; last_error: string | null; last_error_at: Date | null; last_success_at: Date | null }>(
      `SELECT a.provider, d.channel,
              count(*) FILTER (WHERE a.status = 'sent') AS sent,
              count(*) FILTER (WHERE a.status = 'failed') AS failed,
              count(*) FILTER (WHERE a.status = 'in_doubt') AS in_doubt,
              (array_agg(a.error ORDER BY a.started_at DESC) FILTER (WHERE a.status = 'failed'))[1] AS last_error,
              max(a.started_at) FILTER (WHERE a.status = 'failed') AS last_error_at,
              max(a.started_at) FILTER (WHERE a.status = 'sent') AS last_success_at
         FROM notification.delivery_attempts a JOIN notification.deliveries d ON d.id = a.delivery_id
        WHERE a.started_at > now() - make_interval(hours => $1)
        GROUP BY a.provider, d.channel ORDER BY d.channel, a.provider`,
      [windowHours],
    );
    return {
      windowHours,
      providers: rows.map((r) => ({
        provider: r.provider,
        channel: r.channel,
        sent: BigInt(r.sent),
        failed: BigInt(r.failed),
        inDoubt: BigInt(r.in_doubt),
        lastError: maskNumbers(r.last_error ?? ""),
        lastErrorAt: r.last_error_at ? timestampFromDate(r.last_error_at) : undefined,
        lastSuccessAt: r.last_success_at ? timestampFromDate(r.last_success_at) : undefined,
      })),
    };
  };
}

function sendNotificationHandler(h: ServiceContext): ServiceImpl<typeof NotificationInternalService>["sendNotification"] {
  const { pool } = h;
  return async function (req, ctx) {
    let to: Recipient;
    if (req.recipient.case === "userId") to = { userId: req.recipient.value };
    else if (req.recipient.case === "phone") to = { phone: req.recipient.value };
    else if (req.recipient.case === "email") to = { email: req.recipient.value };
    else throw fieldError("recipient", "one of user_id, phone or email is required");
    if (req.templateKey === TemplateKey.OTP && req.recipient.case === "email") throw fieldError("email", "sign-in codes go by SMS only");
    try {
      const sourceKey = `rpc:${req.idempotencyKey}`;
      const idempotent = idempotentRequest("notification", ctx, req);
      const ids = await withTransaction(pool, async (tx) => {
        // The key's deliveries are found again by their source key; the claim refuses another request under it.
        await claimIdempotencyKey(tx, idempotent, sourceKey);
        return enqueue(tx, {
          sourceKey,
          to,
          templateKey: req.templateKey,
          variables: req.variables,
          locale: req.locale,
          channels: req.channels,
        });
      });
      return { deliveryIds: ids };
    } catch (err) {
      if (err instanceof MissingVariablesError) throw fieldError("variables", `missing ${err.missing.join(", ")}`);
      throw err;
    }
  };
}

function upsertContactHandler(h: ServiceContext): ServiceImpl<typeof NotificationInternalService>["upsertContact"] {
  const { pool } = h;
  return async function (req) {
    await pool.query(
      `INSERT INTO notification.recipients (user_id, phone, email, locale) VALUES ($1, NULLIF($2, ''), NULLIF($3, ''), $4)
       ON CONFLICT (user_id) DO UPDATE SET phone = COALESCE(NULLIF($2, ''), recipients.phone),
         email = COALESCE(NULLIF($3, ''), recipients.email),
         locale = CASE WHEN $4 = '' THEN recipients.locale ELSE $4 END, updated_at = now()`,
      [req.userId, normalisePhone(req.phone), req.email, req.locale === "sw" || req.locale === "en" ? req.locale : ""],
    );
    return {};
  };
}

/** A template's audit target, e.g. "template:tip_received/sw/sms". */
function templateTarget(key: TemplateKey, locale: string, channel: Channel): string {
  return `template:${TemplateKey[key].toLowerCase()}/${locale}/${Channel[channel].toLowerCase()}`;
}

/** A provider's error may quote the number it refused: the console sees it masked. */
function maskNumbers(text: string): string {
  return text.replace(/\+?\d{9,15}/g, (n) => maskPhone(n.replace(/^\+/, "")));
}
