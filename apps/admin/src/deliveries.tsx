// Notifications: a user's delivery log (every message, its channel, template
// version, status and each provider attempt with its error) and the
// providers' health over the last day (sent, failed, in doubt, last error).
import { useEffect, useState } from "react";
import { Channel, DeliveryStatus, TemplateKey, type Delivery, type ProviderHealth } from "@ttip/proto/ttip/notification/v1/notification_pb.js";
import { NotificationAdminService } from "@ttip/proto/ttip/notification/v1/notification_service_pb.js";
import { api, errorText } from "./api";
import { MoreButton, usePages, type Page } from "./paging";
import { focusRefused, Section, when, words } from "./ui";


export function Deliveries() {
  return (
    <>
      <DeliveryLog />
      <ProviderHealthTable />
    </>
  );
}

function DeliveryLog() {
  const [userId, setUserId] = useState("");
  const pages = usePages<Delivery>();
  const deliveries = pages.rows;
  const [error, setError] = useState("");
  // The user id of the rows on screen, for the empty state to name (the box may be edited since).
  const [searched, setSearched] = useState<string>();
  const fetchPage = async (pageToken: string): Promise<Page<Delivery>> => {
    const r = await api(NotificationAdminService).listDeliveries({ userId: userId.trim(), page: { pageSize: 25, pageToken } });
    return { rows: r.deliveries, next: r.page?.nextPageToken ?? "" };
  };
  const load = async (more = false) => {
    setError("");
    try {
      await (more ? pages.more() : pages.first(fetchPage));
      if (!more) setSearched(userId.trim());
    } catch (err) {
      setError(errorText(err));
      focusRefused(document.forms.namedItem("delivery-search"), err);
    }
  };
  return (
    <Section title="Delivery log">
      <form name="delivery-search" className="inline" aria-label="Delivery search" onSubmit={(e) => (e.preventDefault(), void load())}>
        <input data-field="user_id" aria-label="Delivery user id" placeholder="User id" value={userId} onChange={(e) => setUserId(e.target.value)} />
        <button>Show deliveries</button>
      </form>
      {error && <p role="alert" className="error">{error}</p>}
      <table aria-label="Deliveries">
        <thead><tr><th>When</th><th>Channel</th><th>Template</th><th>To</th><th>Status</th><th>Attempts</th></tr></thead>
        <tbody>
          {deliveries.map((d) => (
            <tr key={d.deliveryId} data-delivery-id={d.deliveryId}>
              <td>{when(d.createdAt)}</td>
              <td>{words(Channel[d.channel])}</td>
              <td>{words(TemplateKey[d.templateKey])} v{d.templateVersion}</td>
              <td>{d.recipientMasked}</td>
              <td>{words(DeliveryStatus[d.status])}</td>
              <td>
                {d.attempts.map((a) => (
                  <div key={a.attempt} data-attempt={a.attempt}>
                    {a.attempt}. {a.provider}: {words(DeliveryStatus[a.status])}{a.error ? ` (${a.error})` : ""}
                  </div>
                ))}
              </td>
            </tr>
          ))}
        </tbody>
      </table>
      {searched !== undefined && !deliveries.length && !error && <p className="muted">{searched ? `No deliveries to user ${searched}.` : "No deliveries."}</p>}
      <MoreButton pages={pages} onClick={() => void load(true)} />
    </Section>
  );
}

function ProviderHealthTable() {
  const [providers, setProviders] = useState<ProviderHealth[]>([]);
  const [hours, setHours] = useState(24);
  const [error, setError] = useState("");
  useEffect(() => {
    api(NotificationAdminService)
      .getProviderHealth({})
      .then((r) => (setProviders(r.providers), setHours(r.windowHours)), (err) => setError(errorText(err)));
  }, []);
  return (
    <Section title="Provider health">
      <p className="muted">Attempts in the last {hours} hours.</p>
      {error && <p role="alert" className="error">{error}</p>}
      <table aria-label="Provider health">
        <thead><tr><th>Provider</th><th>Channel</th><th>Sent</th><th>Failed</th><th>In doubt</th><th>Last error</th><th>Last success</th></tr></thead>
        <tbody>
          {providers.map((p) => (
            <tr key={`${p.provider}-${p.channel}`} data-provider={p.provider}>
              <td>{p.provider}</td>
              <td>{words(Channel[p.channel])}</td>
              <td data-testid="sent">{String(p.sent)}</td>
              <td data-testid="failed">{String(p.failed)}</td>
              <td>{String(p.inDoubt)}</td>
              <td>{p.lastError ? `${p.lastError} (${when(p.lastErrorAt)})` : ""}</td>
              <td>{when(p.lastSuccessAt)}</td>
            </tr>
          ))}
        </tbody>
      </table>
      {!providers.length && !error && <p className="muted">No attempts in this window.</p>}
    </Section>
  );
}
