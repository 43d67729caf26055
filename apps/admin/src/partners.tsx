// Partner API keys: issue (the secret is shown once), scopes, last use, revoke
// (admins); the webhook delivery log (every console role) and replay (admins).
import { useEffect, useState } from "react";
import type { PartnerApiKey } from "@ttip/proto/ttip/auth/v1/auth_pb.js";
import { AuthAdminService } from "@ttip/proto/ttip/auth/v1/auth_service_pb.js";
import { api, errorText, hasRole, stepUp, type Session } from "./api";
import { PartnerUsage } from "./partner-usage";
import { PartnerWebhooks } from "./partner-webhooks";
import { Action, Section, when } from "./ui";

/** The scopes the gateway knows (declared on the RPCs in the contracts). */
const SCOPES = ["tips:create", "tips:read", "payouts:read", "statements:read", "qr:read", "qr:write", "fees:read", "webhooks:read", "webhooks:write"];

export function Partners({ session }: { session: Session }) {
  const [keys, setKeys] = useState<PartnerApiKey[]>([]);
  const [name, setName] = useState("");
  const [scopes, setScopes] = useState<string[]>(["tips:create", "tips:read"]);
  const [secret, setSecret] = useState("");
  const [error, setError] = useState("");
  const [usageOf, setUsageOf] = useState<PartnerApiKey>();
  const admin = api(AuthAdminService);
  const notAdmin = hasRole(session, "admin") ? undefined : "needs the admin role";
  const load = async () => {
    try {
      setKeys((await admin.listPartnerApiKeys({ page: { pageSize: 100 } })).keys);
    } catch (err) {
      setError(errorText(err));
    }
  };
  useEffect(() => void (notAdmin ? undefined : load()), []);
  if (notAdmin) return <PartnerWebhooks session={session} keys={[]} />;
  return (
    <div>
      <Section title="Issue a key">
        <input data-field="partner_name" aria-label="Partner name" placeholder="Partner name" value={name} onChange={(e) => setName(e.target.value)} />
        {SCOPES.map((s, i) => (
          <label key={s} className="check">
            <input type="checkbox" data-field={i === 0 ? "scopes" : undefined} checked={scopes.includes(s)} onChange={(e) => setScopes(e.target.checked ? [...scopes, s] : scopes.filter((x) => x !== s))} /> {s}
          </label>
        ))}
        <Action
          label="Issue key"
          intent={JSON.stringify([name.trim(), [...scopes].sort()])}
          disabledWhy={notAdmin}
          run={async (_, send) => {
            const proof = await stepUp();
            const r = await send((key) => admin.issuePartnerApiKey({ partnerName: name.trim(), scopes, idempotencyKey: key }, proof));
            setSecret(r.secret);
            await load();
            return `Issued ${r.key!.prefix}…`;
          }}
        />
        {secret && <p className="ok">Secret (shown once; give it to the partner now): <code className="secret" data-testid="partner-secret">{secret}</code></p>}
      </Section>
      <Section title="Keys">
        {error && <p role="alert" className="error">{error}</p>}
        <table>
          <thead><tr><th>Partner</th><th>Prefix</th><th>Scopes</th><th>Created</th><th>Last used</th><th>State</th><th /><th /></tr></thead>
          <tbody>
            {keys.map((k) => (
              <tr key={k.keyId}>
                <td>{k.partnerName}</td><td><code>{k.prefix}</code></td><td>{k.scopes.join(" ")}</td><td>{when(k.createdAt)}</td><td>{when(k.lastUsedAt)}</td>
                <td>{k.revokedAt ? `revoked ${when(k.revokedAt)}` : "active"}</td>
                <td><button aria-label={`Usage of ${k.prefix}`} onClick={() => setUsageOf(k)}>Usage</button></td>
                <td>{!k.revokedAt && <Action label="Revoke" danger confirm={`${k.partnerName}'s calls with this key will be refused from now on.`} disabledWhy={notAdmin} run={async () => void (await admin.revokePartnerApiKey({ keyId: k.keyId }))} done={() => void load()} />}</td>
              </tr>
            ))}
          </tbody>
        </table>
        {!keys.length && !error && <p className="muted">No partner keys issued yet.</p>}
      </Section>
      {usageOf && <PartnerUsage key={usageOf.keyId} keyId={usageOf.keyId} partnerName={usageOf.partnerName} />}
      <PartnerWebhooks session={session} keys={keys} />
    </div>
  );
}
