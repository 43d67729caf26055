"use client";
import { useTransport } from "@connectrpc/connect-query";
import { createClient } from "@connectrpc/connect";
import { useState } from "react";
import { StatementFormat, WalletService } from "@ttip/proto/ttip/wallet/v1/wallet_service_pb.js";
import { plainError } from "../../../lib/errors";
import { WorkerNav } from "../nav";

/** Monthly statements as CSV (what the wallet service produces). */
export default function Statements() {
  const transport = useTransport();
  const now = new Date();
  const [month, setMonth] = useState(`${now.getFullYear()}-${String(now.getMonth() + 1).padStart(2, "0")}`);
  const [error, setError] = useState("");
  const download = async () => {
    setError("");
    const [year, m] = month.split("-").map(Number);
    try {
      const res = await createClient(WalletService, transport).getStatement({ year, month: m, currency: "KES", format: StatementFormat.CSV });
      const url = URL.createObjectURL(new Blob([res.csv as BlobPart], { type: "text/csv" }));
      const a = document.createElement("a");
      a.href = url;
      a.download = `ttip-statement-${month}.csv`;
      document.body.append(a);
      a.click();
      a.remove();
      setTimeout(() => URL.revokeObjectURL(url), 10_000);
    } catch (err) {
      setError(plainError(err));
    }
  };
  return (
    <>
      <WorkerNav />
      <h1>Statements</h1>
      <label className="field" htmlFor="month">Month</label>
      <input id="month" type="month" value={month} onChange={(e) => setMonth(e.target.value)} />
      {error ? <p className="error" role="alert">{error}</p> : null}
      <button type="button" onClick={download}>Download CSV</button>
    </>
  );
}
