"use server";
// A fee quote for an amount the customer typed, called by the form as they type
// (the form falls back to a confirm step when scripts do not run).
import { PaymentRail } from "@ttip/proto/ttip/wallet/v1/wallet_pb.js";
import { WalletService } from "@ttip/proto/ttip/wallet/v1/wallet_service_pb.js";
import { serverClient } from "../../../lib/api";
import { formatMoney, parseWholeUnits } from "../../../lib/money";

export async function quoteTip(other: string, cover: boolean, workerId: string, currency: string): Promise<{ key: string; fee: string; total: string; receives: string } | undefined> {
  const minor = parseWholeUnits(other);
  if (minor === undefined || !/^[0-9a-f-]{36}$/.test(workerId) || !/^[A-Z]{3}$/.test(currency)) return undefined;
  const { quote } = await serverClient(WalletService).quoteFees({ amount: { amountMinor: minor, currency }, rail: PaymentRail.MPESA, customerCoversFee: cover, workerId });
  const fee = (quote?.platformFee?.amountMinor ?? 0n) + (quote?.processingFee?.amountMinor ?? 0n);
  return {
    key: `${minor}:${cover}`,
    fee: formatMoney(fee, currency),
    total: formatMoney(quote?.customerPays?.amountMinor ?? minor, currency),
    receives: formatMoney(quote?.workerReceives?.amountMinor ?? minor, currency),
  };
}
