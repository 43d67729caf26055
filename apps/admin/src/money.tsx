// Money: the ledger's trial balance (each currency must net to zero).
import { useEffect, useState } from "react";
import type { GetTrialBalanceResponse } from "@ttip/proto/ttip/wallet/v1/wallet_service_pb.js";
import { WalletAdminService } from "@ttip/proto/ttip/wallet/v1/wallet_service_pb.js";
import { api, errorText } from "./api";
import { money, Section } from "./ui";

export function Money() {
  const [trial, setTrial] = useState<GetTrialBalanceResponse>();
  const [error, setError] = useState("");
  useEffect(() => {
    api(WalletAdminService).getTrialBalance({}).then(setTrial, (err) => setError(errorText(err)));
  }, []);
  return (
    <Section title="Trial balance">
      {error && <p role="alert" className="error">{error}</p>}
      {trial && (
        <>
          <p data-testid="balanced" className={trial.balanced ? "ok" : "error"}>{trial.balanced ? "Balanced: every currency nets to zero." : "NOT BALANCED"}</p>
          <table>
            <thead><tr><th>Currency</th><th>Debits</th><th>Credits</th><th>Net</th><th>Accounts</th></tr></thead>
            <tbody>
              {trial.lines.map((l) => (
                <tr key={l.currency}>
                  <td>{l.currency}</td>
                  <td>{money({ currency: l.currency, amountMinor: l.totalDebitsMinor })}</td>
                  <td>{money({ currency: l.currency, amountMinor: l.totalCreditsMinor })}</td>
                  <td>{money({ currency: l.currency, amountMinor: l.netMinor })}</td>
                  <td>{String(l.accountCount)}</td>
                </tr>
              ))}
            </tbody>
          </table>
        </>
      )}
    </Section>
  );
}
