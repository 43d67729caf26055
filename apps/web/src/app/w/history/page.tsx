"use client";
import { useQuery } from "@connectrpc/connect-query";
import Link from "next/link";
import { useState } from "react";
import { timestampDate } from "@bufbuild/protobuf/wkt";
import { TipStatus } from "@ttip/proto/ttip/payment/v1/payment_pb.js";
import { PaymentService } from "@ttip/proto/ttip/payment/v1/payment_service_pb.js";
import { plainError } from "../../../lib/errors";
import { formatMoney } from "../../../lib/money";
import { WorkerNav } from "../nav";

/** Every tip, newest first, by status, a page at a time. */
export default function History() {
  const [status, setStatus] = useState(TipStatus.UNSPECIFIED);
  const [tokens, setTokens] = useState<string[]>([""]);
  const { data, error } = useQuery(PaymentService.method.listTips, { status, page: { pageSize: 20, pageToken: tokens.at(-1) } });
  return (
    <>
      <WorkerNav />
      <h1>History</h1>
      <label className="field" htmlFor="status">Show</label>
      <select id="status" value={status} onChange={(e) => (setStatus(Number(e.target.value)), setTokens([""]))}>
        <option value={TipStatus.UNSPECIFIED}>All tips</option>
        <option value={TipStatus.SUCCEEDED}>Received</option>
        <option value={TipStatus.FAILED}>Failed</option>
        <option value={TipStatus.PENDING}>Waiting</option>
      </select>
      {error ? <p className="error" role="alert">{plainError(error)}</p> : null}
      <table>
        <thead><tr><th>When</th><th>Amount</th><th>Status</th></tr></thead>
        <tbody>
          {(data?.tips ?? []).map((t) => (
            <tr key={t.tipId}>
              <td>{t.createdAt ? timestampDate(t.createdAt).toLocaleDateString() : ""}</td>
              <td><Link href={`/w/tips/${t.tipId}`}>{formatMoney(t.amount?.amountMinor ?? 0n)}</Link></td>
              <td>{TipStatus[t.status].toLowerCase().replace(/_/g, " ")}</td>
            </tr>
          ))}
        </tbody>
      </table>
      {tokens.length > 1 ? <button type="button" className="secondary" onClick={() => setTokens(tokens.slice(0, -1))}>Newer</button> : null}
      {data?.page?.nextPageToken ? <button type="button" className="secondary" onClick={() => setTokens([...tokens, data.page!.nextPageToken])}>Older</button> : null}
    </>
  );
}
