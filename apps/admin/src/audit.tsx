// The audit log of every admin action: auth's own (sign-ins, roles, blocks,
// keys) and the other services' (payout holds, reviews, suspense, refunds,
// fee schedules, templates), newest first; searched by actor, user, action,
// target and dates, and exported as CSV with the same filters.
import { useEffect, useState } from "react";
import { timestampDate } from "@bufbuild/protobuf/wkt";
import { nairobiDay } from "../../web/src/lib/nairobi-time";
import { AuditAction, type AuditEvent } from "@ttip/proto/ttip/auth/v1/auth_pb.js";
import { AuthAdminService } from "@ttip/proto/ttip/auth/v1/auth_service_pb.js";
import { api, errorText } from "./api";
import { MoreButton, usePages, type Page } from "./paging";
import { focusRefused, nairobiDayInput, useDateFields, when } from "./ui";

/** Rows one export may hold: beyond that, narrow the filters (the message says so). */
export const MAX_EXPORT_ROWS = 10_000;
const PAGE = 50;
const EXPORT_PAGE = 500;

const ACTIONS = Object.values(AuditAction).filter((v): v is AuditAction => typeof v === "number" && v !== AuditAction.UNSPECIFIED);
const actionName = (a: AuditAction) => (AuditAction[a] ?? String(a)).toLowerCase().replace(/_/g, " ");

interface Filters {
  actorUserId: string;
  userId: string;
  target: string;
  action: string;
  from: string;
  to: string;
}

const FROM = "From date (Nairobi)";
const TO = "To date (Nairobi)";
const NO_FILTERS: Filters = { actorUserId: "", userId: "", target: "", action: "", from: "", to: "" };

/** The request's filters; dates are whole Nairobi days, `to` inclusive. */
function requestOf(f: Filters) {
  return {
    actorUserId: f.actorUserId.trim(),
    userId: f.userId.trim(),
    target: f.target.trim(),
    actions: f.action ? [Number(f.action) as AuditAction] : [],
    from: nairobiDayInput(f.from),
    to: nairobiDayInput(f.to, 1),
  };
}

const CSV_COLUMNS = ["occurred_at", "service", "action", "target", "user_id", "actor_user_id", "ip_address", "detail", "audit_event_id"];

/** RFC 4180: every field quoted, quotes doubled; a leading =, +, - or @ is defused for spreadsheets. */
function csvField(v: string): string {
  const safe = /^[=+\-@]/.test(v) ? `'${v}` : v;
  return `"${safe.replace(/"/g, '""')}"`;
}

export function auditCsv(events: AuditEvent[]): string {
  const rows = events.map((e) =>
    [
      e.occurredAt ? timestampDate(e.occurredAt).toISOString() : "",
      e.service || "auth",
      (AuditAction[e.action] ?? String(e.action)).toLowerCase(),
      e.target,
      e.userId,
      e.actorUserId,
      e.ipAddress,
      e.detail,
      e.auditEventId,
    ].map(csvField).join(","),
  );
  return [CSV_COLUMNS.join(","), ...rows].join("\r\n") + "\r\n";
}

function download(name: string, text: string) {
  const url = URL.createObjectURL(new Blob([text], { type: "text/csv;charset=utf-8" }));
  const a = document.createElement("a");
  a.href = url;
  a.download = name;
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10_000);
}

export function Audit() {
  const pages = usePages<AuditEvent>();
  const events = pages.rows;
  const [filters, setFilters] = useState<Filters>(NO_FILTERS);
  const [error, setError] = useState("");
  const [exporting, setExporting] = useState("");
  const dates = useDateFields([FROM, TO]);
  const set = (k: keyof Filters) => (e: { target: { value: string } }) => setFilters({ ...filters, [k]: e.target.value });

  const pagesOf = (asked: Filters) => async (pageToken: string): Promise<Page<AuditEvent>> => {
    const r = await api(AuthAdminService).listAuditEvents({ ...requestOf(asked), page: { pageSize: PAGE, pageToken } });
    return { rows: r.events, next: r.page?.nextPageToken ?? "" };
  };
  const load = async (more = false) => {
    setError("");
    if (!more && !dates.check()) return;
    try {
      await (more ? pages.more() : pages.first(pagesOf(filters)));
    } catch (err) {
      setError(errorText(err));
      focusRefused(document.forms.namedItem("audit-search"), err);
    }
  };

  const exportCsv = async () => {
    setError("");
    if (!dates.check()) return;
    setExporting("exporting…");
    try {
      const all: AuditEvent[] = [];
      let pageToken = "";
      do {
        const r = await api(AuthAdminService).listAuditEvents({ ...requestOf(filters), page: { pageSize: EXPORT_PAGE, pageToken } });
        all.push(...r.events);
        pageToken = r.page?.nextPageToken ?? "";
        if (pageToken && all.length >= MAX_EXPORT_ROWS) {
          throw new Error(`more than ${MAX_EXPORT_ROWS} records match: narrow the dates or filters and export again`);
        }
      } while (pageToken);
      download(`audit-log-${nairobiDay(new Date())}.csv`, auditCsv(all));
      setExporting(`exported ${all.length} records`);
    } catch (err) {
      setExporting("");
      setError(errorText(err));
      focusRefused(document.forms.namedItem("audit-search"), err);
    }
  };

  useEffect(() => void load(), []);
  return (
    <div>
      <form name="audit-search" className="inline" aria-label="Audit search" noValidate onSubmit={(e) => (e.preventDefault(), void load())}>
        <input data-field="actor_user_id" aria-label="Actor id" placeholder="Actor (admin id)" value={filters.actorUserId} onChange={set("actorUserId")} />
        <input data-field="user_id" aria-label="User id" placeholder="User id" value={filters.userId} onChange={set("userId")} />
        <input data-field="target" aria-label="Target" placeholder="Target, e.g. worker:<id>" value={filters.target} onChange={set("target")} />
        <select aria-label="Action" value={filters.action} onChange={set("action")}>
          <option value="">any action</option>
          {ACTIONS.map((a) => (
            <option key={a} value={a}>{actionName(a)}</option>
          ))}
        </select>
        <label>From <input type="date" data-field="from" {...dates.field(FROM)} value={filters.from} onChange={set("from")} /></label>
        <label>To <input type="date" data-field="to" {...dates.field(TO)} value={filters.to} onChange={set("to")} /></label>
        <button>Search</button>
        <button type="button" onClick={() => void exportCsv()}>Export CSV</button>
      </form>
      {exporting && <p role="status">{exporting}</p>}
      {dates.message}
      {error && <p role="alert" className="error">{error}</p>}
      <table aria-label="Audit log">
        <thead><tr><th>When (EAT)</th><th>Service</th><th>Action</th><th>Target</th><th>User</th><th>By</th><th>Address</th><th>Detail</th></tr></thead>
        <tbody>
          {events.map((e) => (
            <tr key={e.auditEventId} data-audit-id={e.auditEventId}>
              <td>{when(e.occurredAt)}</td>
              <td>{e.service || "auth"}</td>
              <td>{actionName(e.action)}</td>
              <td><code>{e.target}</code></td>
              <td><code>{e.userId}</code></td>
              <td><code>{e.actorUserId}</code></td>
              <td>{e.ipAddress}</td>
              <td>{e.detail}</td>
            </tr>
          ))}
        </tbody>
      </table>
      <MoreButton pages={pages} onClick={() => void load(true)} />
    </div>
  );
}
