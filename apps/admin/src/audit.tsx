// The audit log: every sign-in, role change, block, key and bootstrap, newest first.
import { useEffect, useState } from "react";
import { AuditAction, type AuditEvent } from "@ttip/proto/ttip/auth/v1/auth_pb.js";
import { AuthAdminService } from "@ttip/proto/ttip/auth/v1/auth_service_pb.js";
import { api, errorText } from "./api";
import { when } from "./ui";

export function Audit() {
  const [events, setEvents] = useState<AuditEvent[]>([]);
  const [userId, setUserId] = useState("");
  const [next, setNext] = useState("");
  const [error, setError] = useState("");
  const load = async (pageToken = "") => {
    setError("");
    try {
      const r = await api(AuthAdminService).listAuditEvents({ userId: userId.trim(), page: { pageSize: 50, pageToken } });
      setEvents(pageToken ? [...events, ...r.events] : r.events);
      setNext(r.page?.nextPageToken ?? "");
    } catch (err) {
      setError(errorText(err));
    }
  };
  useEffect(() => void load(), []);
  return (
    <div>
      <form className="inline" onSubmit={(e) => (e.preventDefault(), void load())}>
        <input aria-label="User id" placeholder="User id (optional)" value={userId} onChange={(e) => setUserId(e.target.value)} />
        <button>Filter</button>
      </form>
      {error && <p role="alert" className="error">{error}</p>}
      <table>
        <thead><tr><th>When</th><th>Action</th><th>User</th><th>By</th><th>Address</th><th>Detail</th></tr></thead>
        <tbody>
          {events.map((e) => (
            <tr key={e.auditEventId}>
              <td>{when(e.occurredAt)}</td>
              <td>{(AuditAction[e.action] ?? "").toLowerCase().replace(/_/g, " ")}</td>
              <td><code>{e.userId}</code></td>
              <td><code>{e.actorUserId}</code></td>
              <td>{e.ipAddress}</td>
              <td>{e.detail}</td>
            </tr>
          ))}
        </tbody>
      </table>
      {next && <button onClick={() => void load(next)}>More</button>}
    </div>
  );
}
