// A partner key's calls per Nairobi day, as the gateway counted them: ok, refused
// for the partner's mistake (client error) and failed on our side (server error).
import { useEffect, useState } from "react";
import type { PartnerKeyUsageDay } from "@ttip/proto/ttip/auth/v1/auth_service_pb.js";
import { AuthAdminService } from "@ttip/proto/ttip/auth/v1/auth_service_pb.js";
import { api, errorText } from "./api";
import { Section } from "./ui";

const DAY_CHOICES = [7, 14, 35];

export function PartnerUsage({ keyId, partnerName }: { keyId: string; partnerName: string }) {
  const [days, setDays] = useState(7);
  const [usage, setUsage] = useState<PartnerKeyUsageDay[]>([]);
  const [error, setError] = useState("");
  useEffect(() => {
    setError("");
    api(AuthAdminService)
      .getPartnerKeyUsage({ keyId, days })
      .then((r) => setUsage([...r.days].reverse()), (err) => setError(errorText(err)));
  }, [keyId, days]);
  const total = (pick: (d: PartnerKeyUsageDay) => bigint) => usage.reduce((n, d) => n + pick(d), 0n).toString();
  return (
    <Section title={`Usage of ${partnerName}'s key`}>
      <label>
        Days{" "}
        <select aria-label="Usage days" value={days} onChange={(e) => setDays(Number(e.target.value))}>
          {DAY_CHOICES.map((n) => <option key={n} value={n}>{n}</option>)}
        </select>
      </label>
      {error && <p role="alert" className="error">{error}</p>}
      <table aria-label="Partner key usage">
        <thead><tr><th>Day (Nairobi)</th><th>OK</th><th>Client errors</th><th>Server errors</th></tr></thead>
        <tbody>
          {usage.map((d) => (
            <tr key={d.day}><td>{d.day}</td><td>{d.ok.toString()}</td><td>{d.clientErrors.toString()}</td><td>{d.serverErrors.toString()}</td></tr>
          ))}
        </tbody>
        <tfoot><tr><th>Total</th><td>{total((d) => d.ok)}</td><td>{total((d) => d.clientErrors)}</td><td>{total((d) => d.serverErrors)}</td></tr></tfoot>
      </table>
    </Section>
  );
}
