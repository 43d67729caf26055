"use client";
import { useTransport } from "@connectrpc/connect-query";
import { createClient } from "@connectrpc/connect";
import { useState } from "react";
import { StatementFormat, WalletService } from "@ttip/proto/ttip/wallet/v1/wallet_service_pb.js";
import { saveBytes } from "../../../lib/download";
import { nairobiMonthOf } from "../../../lib/nairobi-time";
import { statementPdf } from "../../../lib/statement-pdf";
import { WorkerNav } from "../nav";
import { useT } from "../use-t";

/** Monthly statements as CSV (the wallet's) and PDF (made from the same rows). */
export default function Statements() {
  const transport = useTransport();
  const { t, err } = useT();
  const [month, setMonth] = useState(() => {
    const current = nairobiMonthOf(new Date());
    return `${current.year}-${String(current.month).padStart(2, "0")}`;
  });
  const [error, setError] = useState("");
  const download = async (format: "csv" | "pdf") => {
    setError("");
    const [year, m] = month.split("-").map(Number);
    try {
      const wallet = createClient(WalletService, transport);
      if (format === "csv") {
        const res = await wallet.getStatement({ year, month: m, currency: "KES", format: StatementFormat.CSV });
        saveBytes(res.csv, "text/csv", `ttip-statement-${month}.csv`);
      } else {
        const res = await wallet.getStatement({ year, month: m, currency: "KES", format: StatementFormat.ROWS });
        saveBytes(statementPdf(res, month, t), "application/pdf", `ttip-statement-${month}.pdf`);
      }
    } catch (x) {
      setError(err(x));
    }
  };
  return (
    <>
      <WorkerNav />
      <h1>{t("statements")}</h1>
      <label className="field" htmlFor="month">{t("month")}</label>
      <input id="month" type="month" value={month} onChange={(e) => setMonth(e.target.value)} />
      {error ? <p className="error" role="alert">{error}</p> : null}
      <button type="button" onClick={() => download("csv")}>{t("downloadCsv")}</button>
      <button type="button" className="secondary" onClick={() => download("pdf")}>{t("downloadPdf")}</button>
    </>
  );
}
