"use client";
import { useMutation, useQuery } from "@connectrpc/connect-query";
import Link from "next/link";
import { useRouter } from "next/navigation";
import { timestampDate } from "@bufbuild/protobuf/wkt";
import { AuthService } from "@ttip/proto/ttip/auth/v1/auth_service_pb.js";
import { TipStatus, type Tip } from "@ttip/proto/ttip/payment/v1/payment_pb.js";
import { PaymentService } from "@ttip/proto/ttip/payment/v1/payment_service_pb.js";
import { WalletService } from "@ttip/proto/ttip/wallet/v1/wallet_service_pb.js";
import { plainError } from "../../lib/errors";
import { formatMoney } from "../../lib/money";
import { clearSession } from "../../lib/session";
import { WorkerNav } from "./nav";

const startOfDay = () => new Date(new Date().setHours(0, 0, 0, 0));
const startOfWeek = () => {
  const d = startOfDay();
  d.setDate(d.getDate() - ((d.getDay() + 6) % 7));
  return d;
};
const sum = (tips: Tip[], since: Date) =>
  tips.filter((t) => t.status === TipStatus.SUCCEEDED && t.createdAt && timestampDate(t.createdAt) >= since).reduce((a, t) => a + (t.amount?.amountMinor ?? 0n), 0n);

/** Home: balance (available and held), today and this week, the latest tips arriving live. */
export default function Home() {
  const router = useRouter();
  const balance = useQuery(WalletService.method.getBalance, { currency: "KES" }, { refetchInterval: 3000 });
  // New tips appear without a reload: the list is asked again every two seconds.
  const tips = useQuery(PaymentService.method.listTips, { page: { pageSize: 50 } }, { refetchInterval: 2000 });
  const signOutAll = useMutation(AuthService.method.revokeAllSessions);
  const b = balance.data?.balances[0];
  const list = tips.data?.tips ?? [];
  return (
    <>
      <WorkerNav />
      <h1>Your tips</h1>
      {balance.error ? <p className="error" role="alert">{plainError(balance.error)}</p> : null}
      <section aria-label="Balance" className="notice">
        <div>Available: <strong data-testid="available">{formatMoney(b?.available?.amountMinor ?? 0n)}</strong></div>
        <div className="muted">Held for withdrawals: {formatMoney(b?.held?.amountMinor ?? 0n)}</div>
        <div>Today: {formatMoney(sum(list, startOfDay()))} · This week: {formatMoney(sum(list, startOfWeek()))}</div>
      </section>
      <h2>Latest tips</h2>
      <ul aria-live="polite" data-testid="latest-tips">
        {list.slice(0, 10).map((t) => (
          <li key={t.tipId}>
            <Link href={`/w/tips/${t.tipId}`}>
              {formatMoney(t.amount?.amountMinor ?? 0n)} · {TipStatus[t.status].toLowerCase().replace(/_/g, " ")}
              {t.rating ? ` · ${t.rating}★` : ""}
            </Link>
          </li>
        ))}
        {list.length === 0 && !tips.isLoading ? <li>No tips yet. Share your QR code!</li> : null}
      </ul>
      <button
        type="button"
        className="secondary"
        onClick={async () => {
          await signOutAll.mutateAsync({}).catch(() => undefined);
          clearSession();
          router.replace("/w/signin");
        }}
      >
        Sign out of every device
      </button>
    </>
  );
}
