import { create } from "@bufbuild/protobuf";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import type { ServiceImpl } from "@connectrpc/connect";
import { AuditAction } from "@ttip/proto/ttip/auth/v1/auth_pb.js";
import { Channel, SmsEncoding, TemplateKey, TemplateSchema } from "@ttip/proto/ttip/notification/v1/notification_pb.js";
import { NotificationAdminService } from "@ttip/proto/ttip/notification/v1/notification_service_pb.js";
import { auditAdminAction, fieldError, NotFoundError, withTransaction } from "@ttip/runtime";
import { findTemplate, forgetActiveTemplates, type TemplateRecord } from "../store.js";
import { MissingVariablesError, render, resolveLocale, smsSize, TEMPLATE_VARIABLES, unknownVariables, withDefaults } from "../templates.js";
import type { NotificationHandlerContext } from "./context.js";

/** Message templates: versions, activation and a preview render, each change audited. */
export function templateHandlers(h: NotificationHandlerContext): Partial<ServiceImpl<typeof NotificationAdminService>> {
  return {
    listTemplates: listTemplatesHandler(h),
    createTemplateVersion: createTemplateVersionHandler(h),
    activateTemplateVersion: activateTemplateVersionHandler(h),
    renderTemplate: renderTemplateHandler(h),
  };
}

function listTemplatesHandler(h: NotificationHandlerContext): ServiceImpl<typeof NotificationAdminService>["listTemplates"] {
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

function createTemplateVersionHandler(h: NotificationHandlerContext): ServiceImpl<typeof NotificationAdminService>["createTemplateVersion"] {
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

function activateTemplateVersionHandler(h: NotificationHandlerContext): ServiceImpl<typeof NotificationAdminService>["activateTemplateVersion"] {
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

function renderTemplateHandler(h: NotificationHandlerContext): ServiceImpl<typeof NotificationAdminService>["renderTemplate"] {
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

/** A template's audit target, e.g. "template:tip_received/sw/sms". */
function templateTarget(key: TemplateKey, locale: string, channel: Channel): string {
  return `template:${TemplateKey[key].toLowerCase()}/${locale}/${Channel[channel].toLowerCase()}`;
}
