"use client";
import { useQuery } from "@connectrpc/connect-query";
import Link from "next/link";
import { useState } from "react";
import { timestampDate } from "@bufbuild/protobuf/wkt";
import { TipStatus } from "@ttip/proto/ttip/payment/v1/payment_pb.js";
import { PaymentService } from "@ttip/proto/ttip/payment/v1/payment_service_pb.js";
import { formatAmount, WALLET_CURRENCY } from "../../../lib/money";
import { NAIROBI_ZONE } from "../../../lib/nairobi-time";
import { WorkerNav } from "../nav";
import { useT } from "../use-t";
import { tipWord } from "../words";

/** Every tip, newest first, by status, a page at a time. */
export default function History() {
  const { t, err, locale } = useT();
  const [status, setStatus] = useState(TipStatus.UNSPECIFIED);
  const [tokens, setTokens] = useState<string[]>([""]);
  const { data, error } = useQuery(PaymentService.method.listTips, { status, page: { pageSize: 20, pageToken: tokens.at(-1) } });
  return (
    <>
      <WorkerNav />
      <h1>{t("history")}</h1>
      <label className="field" htmlFor="status">{t("show")}</label>
      <select id="status" value={status} onChange={(e) => (setStatus(Number(e.target.value)), setTokens([""]))}>
        <option value={TipStatus.UNSPECIFIED}>{t("allTips")}</option>
        <option value={TipStatus.SUCCEEDED}>{t("received")}</option>
        <option value={TipStatus.FAILED}>{t("failed")}</option>
        <option value={TipStatus.PENDING}>{t("waiting")}</option>
      </select>
      {error ? <p className="error" role="alert">{err(error)}</p> : null}
      <div className="table-box"><table>
        <thead><tr><th>{t("when")}</th><th>{t("amount")}</th><th>{t("status")}</th></tr></thead>
        <tbody>
          {(data?.tips ?? []).map((tip) => (
            <tr key={tip.tipId}>
              <td>{tip.createdAt ? timestampDate(tip.createdAt).toLocaleDateString(locale === "sw" ? "sw-KE" : "en-KE", { timeZone: NAIROBI_ZONE }) : ""}</td>
              <td><Link href={`/w/tips/${tip.tipId}`}>{formatAmount(tip.amount, WALLET_CURRENCY)}</Link></td>
              <td>{tipWord(t, tip)}</td>
            </tr>
          ))}
        </tbody>
      </table></div>
      {tokens.length > 1 ? <button type="button" className="secondary" onClick={() => setTokens(tokens.slice(0, -1))}>{t("newer")}</button> : null}
      {data?.page?.nextPageToken ? <button type="button" className="secondary" onClick={() => setTokens([...tokens, data.page!.nextPageToken])}>{t("older")}</button> : null}
    </>
  );
}
