// Users: search by phone, name or id; a user's roles, block, PIN unlock, sessions and payout hold.
import { useEffect, useState, type FormEvent } from "react";
import { Code, ConnectError } from "@connectrpc/connect";
import { Role, type Session as UserSession, type User } from "@ttip/proto/ttip/auth/v1/auth_pb.js";
import { AuthAdminService } from "@ttip/proto/ttip/auth/v1/auth_service_pb.js";
import { PaymentAdminService } from "@ttip/proto/ttip/payment/v1/payment_service_pb.js";
import { api, errorText, hasRole, MONEY_ROLES, stepUp, type Session } from "./api";
import { MoreButton, usePages, type Page } from "./paging";
import { Action, focusRefused, Section, when } from "./ui";

const ROLE_NAMES: Array<[Role, string]> = [
  [Role.ADMIN, "admin"],
  [Role.SUPPORT, "support"],
  [Role.FINANCE, "finance"],
  [Role.WORKER, "worker"],
  [Role.VENUE_MANAGER, "venue_manager"],
  [Role.CUSTOMER, "customer"],
];
const roleName = (r: Role) => ROLE_NAMES.find(([v]) => v === r)?.[1] ?? String(r);

function status(u: User): string {
  if (u.blockedAt) return "blocked";
  if (u.lockedUntil) return "PIN locked";
  return "active";
}

export function Users({ session }: { session: Session }) {
  const [query, setQuery] = useState("");
  const pages = usePages<User>();
  const users = pages.rows;
  const [error, setError] = useState("");
  const [selected, setSelected] = useState<string>();

  const fetchPage = async (pageToken: string): Promise<Page<User>> => {
    const r = await api(AuthAdminService).searchUsers({ query, page: { pageSize: 20, pageToken } });
    return { rows: r.users, next: r.page?.nextPageToken ?? "" };
  };
  const search = async (more = false) => {
    setError("");
    try {
      await (more ? pages.more() : pages.first(fetchPage));
    } catch (err) {
      setError(errorText(err));
      focusRefused(document.forms.namedItem("user-search"), err);
    }
  };
  useEffect(() => void search(), []);

  return (
    <div className="split">
      <div>
        <form name="user-search" onSubmit={(e: FormEvent) => (e.preventDefault(), void search())} className="inline" aria-label="Search users">
          <input name="query" data-field="query" value={query} onChange={(e) => setQuery(e.target.value)} placeholder="Phone, name or user id" aria-label="Search" />
          <button>Search</button>
        </form>
        {error && <p role="alert" className="error">{error}</p>}
        <table>
          <thead>
            <tr><th>Name</th><th>Phone</th><th>Roles</th><th>Status</th><th>Since</th></tr>
          </thead>
          <tbody>
            {users.map((u) => (
              <tr key={u.userId} onClick={() => setSelected(u.userId)} className={u.userId === selected ? "selected" : undefined} data-user-id={u.userId}>
                <td><button className="link">{u.displayName || "(no name)"}</button></td>
                <td>{u.phoneMasked}</td>
                <td>{u.roles.map(roleName).join(", ")}</td>
                <td>{status(u)}</td>
                <td>{when(u.createdAt).slice(0, 10)}</td>
              </tr>
            ))}
          </tbody>
        </table>
        {!users.length && !error && <p className="muted">No users match.</p>}
        <MoreButton pages={pages} onClick={() => void search(true)} />
      </div>
      {selected && <UserDetail key={selected} userId={selected} session={session} onChanged={(u) => pages.setRows((shown) => shown.map((x) => (x.userId === u.userId ? u : x)))} />}
    </div>
  );
}

function UserDetail({ userId, session, onChanged }: { userId: string; session: Session; onChanged: (u: User) => void }) {
  const [user, setUser] = useState<User>();
  const [sessions, setSessions] = useState<UserSession[]>([]);
  const [roles, setRoles] = useState<Role[]>([]);
  const [error, setError] = useState("");
  const admin = api(AuthAdminService);
  const isAdmin = hasRole(session, "admin");
  const notAdmin = isAdmin ? undefined : "needs the admin role";

  const load = async () => {
    try {
      const { user } = await admin.getUser({ userId });
      setUser(user);
      setRoles(user!.roles);
      onChanged(user!);
      setSessions((await admin.listUserSessions({ userId })).sessions);
    } catch (err) {
      setError(errorText(err));
    }
  };
  // Sent with the roles this screen read: a role granted since (a venue's invitation) is not taken away unseen.
  // Refused so, the screen shows the roles held now.
  const saveRoles = async () => {
    try {
      onChanged((await admin.setUserRoles({ userId, roles, expectedRoles: user!.roles }, await stepUp())).user!);
    } catch (err) {
      if (ConnectError.from(err).code === Code.Aborted) await load();
      throw err;
    }
  };
  useEffect(() => void load(), [userId]);
  if (error) return <p role="alert" className="error">{error}</p>;
  if (!user) return <p className="muted">Loading…</p>;

  return (
    <div className="detail" aria-label="User detail">
      <h2>{user.displayName || "(no name)"}</h2>
      <dl>
        <dt>User id</dt><dd><code>{user.userId}</code></dd>
        <dt>Phone</dt><dd>{user.phoneMasked}</dd>
        <dt>Status</dt><dd data-testid="user-status">{status(user)}{user.blockedReason ? ` (${user.blockedReason})` : ""}</dd>
        <dt>PIN</dt><dd>{user.hasPin ? "set" : "not set"}{user.lockedUntil ? `, locked until ${when(user.lockedUntil)}` : ""}</dd>
      </dl>

      <Section title="Roles">
        {ROLE_NAMES.map(([r, name]) => (
          <label key={r} className="check">
            <input type="checkbox" checked={roles.includes(r)} disabled={!isAdmin} onChange={(e) => setRoles(e.target.checked ? [...roles, r] : roles.filter((x) => x !== r))} />
            {name}
          </label>
        ))}
        <Action label="Save roles" disabledWhy={notAdmin} run={saveRoles} done={load} />
      </Section>

      <Section title="Access">
        {user.blockedAt ? (
          <Action label="Unblock" reason="Reason" disabledWhy={notAdmin} run={async (reason) => void (await admin.unblockUser({ userId, reason }))} done={load} />
        ) : (
          <Action label="Block" reason="Reason" danger disabledWhy={notAdmin ?? (userId === session.userId ? "you can't block your own account" : undefined)} run={async (reason) => `Blocked; ${(await admin.blockUser({ userId, reason })).sessionsRevoked} sessions ended.`} done={load} />
        )}
        <Action label="Unlock PIN" reason="Reason" disabledWhy={notAdmin} run={async (reason) => void (await admin.unlockUser({ userId, reason }))} done={load} />
      </Section>

      <Section title={`Sessions (${sessions.length})`}>
        <table>
          <thead><tr><th>Started</th><th>Last used</th><th>Address</th><th>Browser</th><th /></tr></thead>
          <tbody>
            {sessions.map((s) => (
              <tr key={s.sessionId}>
                <td>{when(s.createdAt)}</td><td>{when(s.lastUsedAt)}</td><td>{s.ipAddress}</td><td>{s.userAgent.slice(0, 40)}</td>
                <td><Action label="Revoke" reason="Reason" disabledWhy={notAdmin} run={async (reason) => void (await admin.revokeUserSessions({ userId, sessionId: s.sessionId, reason }))} done={load} /></td>
              </tr>
            ))}
          </tbody>
        </table>
        {sessions.length > 0 && <Action label="Revoke all" reason="Reason" danger disabledWhy={notAdmin} run={async (reason) => `${(await admin.revokeUserSessions({ userId, reason })).revoked} sessions ended.`} done={load} />}
      </Section>

      {user.roles.includes(Role.WORKER) && <PayoutHoldSection workerId={userId} session={session} />}
    </div>
  );
}

/** Whoever placed a hold, by name when auth knows it (the id otherwise). */
async function adminName(userId: string): Promise<string> {
  if (!userId) return "an admin (not recorded)";
  const { user } = await api(AuthAdminService).getUser({ userId }).catch(() => ({ user: undefined }));
  return user?.displayName ? `${user.displayName} (${userId})` : userId;
}

/** A worker's payout hold as payment keeps it, and the one action that applies: Hold when none, Release when held. */
function PayoutHoldSection({ workerId, session }: { workerId: string; session: Session }) {
  const [hold, setHold] = useState<{ held: false } | { held: true; since: string; by: string; reason: string }>();
  const [error, setError] = useState("");
  const payment = api(PaymentAdminService);
  const notMoney = hasRole(session, ...MONEY_ROLES) ? undefined : "needs the finance or admin role";
  const load = async () => {
    try {
      const { hold } = await payment.getPayoutHold({ workerId });
      setError("");
      setHold(hold ? { held: true, since: when(hold.heldAt) || "(time not recorded)", by: await adminName(hold.heldByUserId), reason: hold.reason } : { held: false });
    } catch (err) {
      setError(errorText(err));
    }
  };
  useEffect(() => void load(), [workerId]);
  return (
    <Section title="Payouts">
      {error && <p role="alert" className="error">Could not read the payout hold: {error} <button className="link" onClick={() => void load()}>Retry</button></p>}
      {!hold ? (!error && <p className="muted">Loading…</p>) : hold.held ? (
        <>
          <p data-testid="payout-hold">On hold since {hold.since} by {hold.by}: {hold.reason}</p>
          <Action label="Release payouts" reason="Note" confirm="This worker's withdrawals will go to M-Pesa again." disabledWhy={notMoney}
            run={async (note, send) => { const proof = await stepUp(); await send((key) => payment.releasePayouts({ workerId, note, idempotencyKey: key }, proof)); }} done={load} />
        </>
      ) : (
        <>
          <p data-testid="payout-hold">Payouts run: no hold.</p>
          <Action label="Hold payouts" reason="Reason" disabledWhy={notMoney} run={async (reason, send) => void (await send((key) => payment.holdPayouts({ workerId, reason, idempotencyKey: key })))} done={load} />
        </>
      )}
    </Section>
  );
}
