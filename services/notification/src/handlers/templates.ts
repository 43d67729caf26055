import type { ServiceImpl } from "@connectrpc/connect";
import { AuditAction } from "@ttip/proto/ttip/auth/v1/auth_pb.js";
import { Channel, SmsEncoding, TemplateKey } from "@ttip/proto/ttip/notification/v1/notification_pb.js";
import { NotificationAdminService } from "@ttip/proto/ttip/notification/v1/notification_service_pb.js";
import { auditAdminAction, fieldError, NotFoundError, withTransaction } from "@ttip/runtime";
import { activateTemplateVersion, findTemplate, forgetActiveTemplates, insertTemplateVersion, listTemplates, toTemplate } from "../stores/templates.js";
import { smsSize, smsTemplateTooLong } from "@ttip/runtime/sms-size";
import { missingRequired, MissingVariablesError, mistypedPlaceholders, render, resolveLocale, TEMPLATE_VARIABLES, unknownVariables, withDefaults } from "../templates.js";
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
    const rows = await listTemplates(pool, req.key, req.locale);
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
    // An SMS carries its text alone (the providers send no subject): a code or link in its subject never arrives.
    for (const [field, text] of [["subject", req.subject], ["body", req.body]] as const) {
      const mistyped = mistypedPlaceholders(text);
      if (mistyped.length) {
        throw fieldError(field, `${mistyped.map((m) => `"${m}"`).join(", ")}: not a placeholder; write one as {{name}}, in lower case (${TemplateKey[req.key]} allows ${TEMPLATE_VARIABLES[req.key].map((v) => `{{${v}}}`).join(", ")})`);
      }
    }
    const missing = req.channel === Channel.SMS ? missingRequired(req.key, req.body) : missingRequired(req.key, req.subject, req.body);
    if (missing.length) {
      throw fieldError("body", `${TemplateKey[req.key]} must use ${missing.map((v) => `{{${v}}}`).join(", ")}: without it the message is of no use to whoever gets it`);
    }
    const tooLong = req.channel === Channel.SMS ? smsTemplateTooLong(req.body) : undefined;
    if (tooLong) throw fieldError("body", tooLong);
    const row = await withTransaction(pool, async (tx) => {
      const created = await insertTemplateVersion(tx, req, req.subject, req.body);
      await auditAdminAction(tx, "notification", hc, {
        action: AuditAction.TEMPLATE_VERSION_CREATED,
        target: templateTarget(req.key, req.locale, req.channel),
        detail: `version ${created.version}: ${req.body}`,
      });
      return created;
    });
    return { template: toTemplate(row) };
  };
}

function activateTemplateVersionHandler(h: NotificationHandlerContext): ServiceImpl<typeof NotificationAdminService>["activateTemplateVersion"] {
  const { pool } = h;
  return async function (req, hc) {
    const row = await withTransaction(pool, async (tx) => {
      const activated = await activateTemplateVersion(tx, req, req.version);
      if (!activated) throw new NotFoundError(`template ${TemplateKey[req.key]}/${req.locale}/${Channel[req.channel]} has no version ${req.version}`);
      await auditAdminAction(tx, "notification", hc, {
        action: AuditAction.TEMPLATE_VERSION_ACTIVATED,
        target: templateTarget(req.key, req.locale, req.channel),
        detail: `version ${req.version}`,
      });
      return activated;
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

/** A template's audit target, e.g. "template:tip_received/sw/sms". */
function templateTarget(key: TemplateKey, locale: string, channel: Channel): string {
  return `template:${TemplateKey[key].toLowerCase()}/${locale}/${Channel[channel].toLowerCase()}`;
}
