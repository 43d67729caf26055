"use client";
import { useQuery } from "@connectrpc/connect-query";
import { useParams } from "next/navigation";
import { timestampDate } from "@bufbuild/protobuf/wkt";
import { PaymentService } from "@ttip/proto/ttip/payment/v1/payment_service_pb.js";
import { formatAmount, WALLET_CURRENCY } from "../../../../lib/money";
import { NAIROBI_ZONE } from "../../../../lib/nairobi-time";
import { WorkerNav } from "../../nav";
import { useT } from "../../use-t";
import { tipWord } from "../../words";

/** A tip's detail: amount, fee, rating, message, the payer's number masked. */
export default function TipDetail() {
  const { tipId } = useParams<{ tipId: string }>();
  const { t, err, locale } = useT();
  const { data, error } = useQuery(PaymentService.method.getTip, { tipId });
  const tip = data?.tip;
  return (
    <>
      <WorkerNav />
      <h1>{t("tip")}</h1>
      {error ? <p className="error" role="alert">{err(error)}</p> : null}
      {tip ? (
        <div className="table-box"><table>
          <tbody>
            <tr><th>{t("amount")}</th><td>{formatAmount(tip.amount, WALLET_CURRENCY)}</td></tr>
            <tr><th>{t("fee")}</th><td>{formatAmount(tip.fee, WALLET_CURRENCY)}</td></tr>
            <tr><th>{t("status")}</th><td data-testid="tip-state">{tipWord(t, tip)}</td></tr>
            <tr><th>{t("from")}</th><td>{tip.customerPhoneMasked}</td></tr>
            <tr><th>{t("rating")}</th><td>{tip.rating ? t("ratingOf", { n: tip.rating }) : t("none")}</td></tr>
            <tr><th>{t("message")}</th><td>{tip.message || t("none")}</td></tr>
            <tr><th>{t("mpesaReceipt")}</th><td>{tip.mpesaReceipt || t("none")}</td></tr>
            <tr><th>{t("when")}</th><td>{tip.createdAt ? timestampDate(tip.createdAt).toLocaleString(locale === "sw" ? "sw-KE" : "en-KE", { timeZone: NAIROBI_ZONE }) : ""}</td></tr>
          </tbody>
        </table></div>
      ) : null}
    </>
  );
}
