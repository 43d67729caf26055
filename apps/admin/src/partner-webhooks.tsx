// Partner webhooks: every key's delivery log (filtered by key and status,
// paged as auth pages it) and an admin's replay of one delivery under the same
// delivery id. Support reads the log; replay is the admin's (auth refuses it
// to others whatever this screen shows).
import { useEffect, useState } from "react";
import type { PartnerApiKey } from "@ttip/proto/ttip/auth/v1/auth_pb.js";
import { WebhookDeliveryStatus, WebhookEventType, type WebhookDelivery } from "@ttip/proto/ttip/auth/v1/partner_pb.js";
import { PartnerAdminService } from "@ttip/proto/ttip/auth/v1/partner_service_pb.js";
import { api, errorText, hasRole, type Session } from "./api";
import { MoreButton, usePages, type Page } from "./paging";
import { Action, Section, when, words } from "./ui";

const PAGE_SIZE = 25;
const STATUSES = [WebhookDeliveryStatus.PENDING, WebhookDeliveryStatus.DELIVERED, WebhookDeliveryStatus.FAILED];

/** `keys`: the partner keys the viewer may list (admins), to filter and label by partner name. */
export function PartnerWebhooks({ session, keys }: { session: Session; keys: PartnerApiKey[] }) {
  const [keyId, setKeyId] = useState("");
  const [status, setStatus] = useState(WebhookDeliveryStatus.UNSPECIFIED);
  const pages = usePages<WebhookDelivery>();
  const deliveries = pages.rows;
  const [error, setError] = useState("");
  const notAdmin = hasRole(session, "admin") ? undefined : "needs the admin role";
  const partnerOf = (id: string) => keys.find((k) => k.keyId === id)?.partnerName ?? id;
  const fetchPage = async (pageToken: string): Promise<Page<WebhookDelivery>> => {
    const r = await api(PartnerAdminService).listAllWebhookDeliveries({ keyId: keyId.trim(), status, page: { pageSize: PAGE_SIZE, pageToken } });
    return { rows: r.deliveries, next: r.page?.nextPageToken ?? "" };
  };
  const load = async (more = false) => {
    setError("");
    try {
      await (more ? pages.more() : pages.first(fetchPage));
    } catch (err) {
      setError(errorText(err));
    }
  };
  useEffect(() => void load(), []);
  return (
    <Section title="Webhook deliveries">
      <form className="inline" aria-label="Webhook delivery filter" onSubmit={(e) => (e.preventDefault(), void load())}>
        {keys.length ? (
          <select aria-label="Webhook key" value={keyId} onChange={(e) => setKeyId(e.target.value)}>
            <option value="">All keys</option>
            {keys.map((k) => <option key={k.keyId} value={k.keyId}>{k.partnerName} ({k.prefix})</option>)}
          </select>
        ) : (
          <input aria-label="Webhook key id" placeholder="Key id (all when empty)" value={keyId} onChange={(e) => setKeyId(e.target.value)} />
        )}
        <select aria-label="Webhook status" value={status} onChange={(e) => setStatus(Number(e.target.value))}>
          <option value={WebhookDeliveryStatus.UNSPECIFIED}>Any status</option>
          {STATUSES.map((s) => <option key={s} value={s}>{words(WebhookDeliveryStatus[s])}</option>)}
        </select>
        <button>Show webhook deliveries</button>
      </form>
      {error && <p role="alert" className="error">{error}</p>}
      <table aria-label="Webhook deliveries">
        <thead><tr><th>Created</th><th>Partner</th><th>Event</th><th>URL</th><th>Status</th><th>Attempts</th><th>Last error</th><th>Next try</th><th /></tr></thead>
        <tbody>
          {deliveries.map((d) => (
            <tr key={d.deliveryId} data-webhook-delivery-id={d.deliveryId}>
              <td>{when(d.createdAt)}</td>
              <td>{partnerOf(d.keyId)}</td>
              <td title={`event ${d.eventId}`}>{words(WebhookEventType[d.eventType])}</td>
              <td><code>{d.url}</code></td>
              <td data-testid="webhook-status">{words(WebhookDeliveryStatus[d.status])}{d.deliveredAt ? ` ${when(d.deliveredAt)}` : ""}</td>
              <td data-testid="webhook-attempts">{d.attempts}</td>
              <td>{d.lastError || (d.lastResponseStatus >= 300 ? `HTTP ${d.lastResponseStatus}` : "")}</td>
              <td>{d.status === WebhookDeliveryStatus.PENDING ? when(d.nextAttemptAt) : ""}</td>
              <td>
                <Action
                  label="Replay"
                  reason="Reason"
                  disabledWhy={notAdmin}
                  run={async (reason) => {
                    const { delivery } = await api(PartnerAdminService).replayWebhookDelivery({ deliveryId: d.deliveryId, reason });
                    // The row shows the replayed delivery in place: reloading under a status filter
                    // would drop it (delivered -> pending) and its confirmation with it.
                    if (delivery) pages.setRows((shown) => shown.map((x) => (x.deliveryId === delivery.deliveryId ? delivery : x)));
                    return "Replay queued.";
                  }}
                />
              </td>
            </tr>
          ))}
        </tbody>
      </table>
      {!deliveries.length && !error && <p className="muted">No deliveries match.</p>}
      <MoreButton pages={pages} onClick={() => void load(true)} />
    </Section>
  );
}
