"use client";
import { useQuery } from "@connectrpc/connect-query";
import { useParams } from "next/navigation";
import { timestampDate } from "@bufbuild/protobuf/wkt";
import { TipStatus } from "@ttip/proto/ttip/payment/v1/payment_pb.js";
import { PaymentService } from "@ttip/proto/ttip/payment/v1/payment_service_pb.js";
import { plainError } from "../../../../lib/errors";
import { formatMoney } from "../../../../lib/money";
import { WorkerNav } from "../../nav";

/** A tip's detail: amount, fee, rating, message, the payer's number masked. */
export default function TipDetail() {
  const { tipId } = useParams<{ tipId: string }>();
  const { data, error } = useQuery(PaymentService.method.getTip, { tipId });
  const t = data?.tip;
  return (
    <>
      <WorkerNav />
      <h1>Tip</h1>
      {error ? <p className="error" role="alert">{plainError(error)}</p> : null}
      {t ? (
        <table>
          <tbody>
            <tr><th>Amount</th><td>{formatMoney(t.amount?.amountMinor ?? 0n)}</td></tr>
            <tr><th>Fee</th><td>{formatMoney(t.fee?.amountMinor ?? 0n)}</td></tr>
            <tr><th>Status</th><td>{TipStatus[t.status].toLowerCase().replace(/_/g, " ")}</td></tr>
            <tr><th>From</th><td>{t.customerPhoneMasked}</td></tr>
            <tr><th>Rating</th><td>{t.rating ? `${t.rating} of 5` : "none"}</td></tr>
            <tr><th>Message</th><td>{t.message || "none"}</td></tr>
            <tr><th>M-Pesa receipt</th><td>{t.mpesaReceipt || "none"}</td></tr>
            <tr><th>When</th><td>{t.createdAt ? timestampDate(t.createdAt).toLocaleString() : ""}</td></tr>
          </tbody>
        </table>
      ) : null}
    </>
  );
}
