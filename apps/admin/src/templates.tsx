// Notification templates: each kind, channel and language with its versions;
// an edit saves a new (inactive) version, previewed as sent, then activated.
import { useEffect, useState } from "react";
import { Channel, TemplateKey, type Template } from "@ttip/proto/ttip/notification/v1/notification_pb.js";
import { NotificationAdminService, type RenderTemplateResponse } from "@ttip/proto/ttip/notification/v1/notification_service_pb.js";
import { SMS_TEMPLATE_MAX_SEGMENTS, smsSize, smsTemplateTooLong } from "@ttip/runtime/sms-size";
import { api, errorText, hasRole, type Session } from "./api";
import { Action, Section, when, words } from "./ui";

const placeholders = (body: string) => [...new Set([...body.matchAll(/\{\{\s*([a-z_]+)\s*\}\}/g)].map((m) => m[1]))];

export function Templates({ session }: { session: Session }) {
  const [templates, setTemplates] = useState<Template[]>([]);
  const [error, setError] = useState("");
  const [editing, setEditing] = useState<Template>();
  const load = async () => {
    setError("");
    try {
      setTemplates((await api(NotificationAdminService).listTemplates({})).templates);
    } catch (err) {
      setError(errorText(err));
    }
  };
  useEffect(() => void load(), []);
  const active = templates.filter((t) => t.active).sort((a, b) => a.key - b.key || a.channel - b.channel || a.locale.localeCompare(b.locale));
  return (
    <div className="split">
      <div>
        {error && <p role="alert" className="error">{error}</p>}
        <table>
          <thead><tr><th>Kind</th><th>Channel</th><th>Language</th><th>Version</th><th>Text</th></tr></thead>
          <tbody>
            {active.map((t) => (
              <tr key={`${t.key}-${t.channel}-${t.locale}`} data-template={`${TemplateKey[t.key]}-${Channel[t.channel]}-${t.locale}`}>
                <td><button className="link" onClick={() => setEditing(t)}>{words(TemplateKey[t.key])}</button></td>
                <td>{words(Channel[t.channel])}</td><td>{t.locale}</td><td>v{t.version}</td><td>{t.body.slice(0, 80)}</td>
              </tr>
            ))}
          </tbody>
        </table>
      </div>
      {editing && (
        <TemplateEditor
          key={`${editing.key}-${editing.channel}-${editing.locale}`}
          template={editing}
          versions={templates.filter((t) => t.key === editing.key && t.channel === editing.channel && t.locale === editing.locale).sort((a, b) => b.version - a.version)}
          canEdit={hasRole(session, "admin")}
          changed={load}
        />
      )}
    </div>
  );
}

function TemplateEditor({ template, versions, canEdit, changed }: { template: Template; versions: Template[]; canEdit: boolean; changed: () => Promise<void> }) {
  const [subject, setSubject] = useState(template.subject);
  const [body, setBody] = useState(template.body);
  const [previews, setPreviews] = useState<Record<string, RenderTemplateResponse | string>>({});
  const admin = api(NotificationAdminService);
  const notAdmin = canEdit ? undefined : "needs the admin role";
  const id = { key: template.key, channel: template.channel };
  // An SMS's parts as it is typed, and too many refused before it is sent, as notification refuses them.
  const sms = template.channel === Channel.SMS ? smsSize(body) : undefined;
  const tooLong = () => {
    const problem = sms && smsTemplateTooLong(body);
    return problem ? `body: ${problem}` : undefined;
  };

  // Both languages of one version, with each placeholder shown by name.
  const preview = async (version: number) => {
    const out: Record<string, RenderTemplateResponse | string> = {};
    for (const locale of ["en", "sw"]) {
      const source = versions.find((v) => v.version === version && v.locale === locale)?.body ?? body;
      const variables = Object.fromEntries(placeholders(source).map((p) => [p, `[${p}]`]));
      try {
        out[locale] = await admin.renderTemplate({ ...id, locale, version: locale === template.locale ? version : 0, variables });
      } catch (err) {
        out[locale] = errorText(err);
      }
    }
    setPreviews(out);
  };
  useEffect(() => void preview(template.version), [template.version]);

  return (
    <div className="detail" aria-label="Template editor">
      <h2>{words(TemplateKey[template.key])} · {words(Channel[template.channel])} · {template.locale}</h2>
      {template.channel === Channel.EMAIL || template.channel === Channel.PUSH ? (
        <label>Subject <input data-field="subject" aria-label="Subject" value={subject} onChange={(e) => setSubject(e.target.value)} disabled={!canEdit} /></label>
      ) : null}
      <label>
        Text (placeholders: {placeholders(template.body).map((p) => `{{${p}}}`).join(" ") || "none"})
        <textarea data-field="body" aria-label="Template text" rows={5} value={body} onChange={(e) => setBody(e.target.value)} disabled={!canEdit} />
      </label>
      {sms ? <p className="muted" data-testid="sms-size">{sms.units} SMS characters, {sms.segments} SMS part{sms.segments === 1 ? "" : "s"} (at most {SMS_TEMPLATE_MAX_SEGMENTS})</p> : null}
      <Action
        label="Save as new version"
        disabledWhy={notAdmin}
        precheck={tooLong}
        run={async () => {
          const { template: t } = await admin.createTemplateVersion({ ...id, locale: template.locale, subject, body });
          await changed();
          await preview(t!.version);
          return `Saved as v${t!.version} (not active yet).`;
        }}
      />
      <Section title="Preview (as sent)">
        {(["en", "sw"] as const).map((l) => {
          const p = previews[l];
          return (
            <div key={l} data-testid={`preview-${l}`}>
              <strong>{l === "en" ? "English" : "Swahili"}</strong>
              {typeof p === "string" ? <p className="error">{p}</p> : p ? <pre className="raw">{p.subject ? `${p.subject}\n\n` : ""}{p.body}{p.smsSegments ? `\n\n(${p.smsSegments} SMS segment${p.smsSegments > 1 ? "s" : ""})` : ""}</pre> : null}
            </div>
          );
        })}
      </Section>
      <Section title="Versions">
        <table>
          <thead><tr><th>Version</th><th>Created</th><th>Text</th><th /></tr></thead>
          <tbody>
            {versions.map((v) => (
              <tr key={v.version} data-version={v.version}>
                <td>v{v.version}{v.active ? " (active)" : ""}</td>
                <td>{when(v.createdAt)}</td>
                <td>{v.body.slice(0, 60)}</td>
                <td>
                  <button onClick={() => void preview(v.version)}>Preview</button>
                  {!v.active && <Action label="Activate" confirm={`v${v.version} will be the text of every ${words(TemplateKey[template.key])} ${words(Channel[template.channel])} in ${template.locale} from now on.`} disabledWhy={notAdmin} run={async () => void (await admin.activateTemplateVersion({ ...id, locale: template.locale, version: v.version }))} done={() => void changed()} />}
                </td>
              </tr>
            ))}
          </tbody>
        </table>
      </Section>
    </div>
  );
}
