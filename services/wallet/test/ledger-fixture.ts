import { randomUUID } from "node:crypto";
import type { Client } from "@connectrpc/connect";
import { AccountKind, OwnerKind } from "@ttip/proto/ttip/wallet/v1/wallet_pb.js";
import { WalletAdminService, WalletInternalService } from "@ttip/proto/ttip/wallet/v1/wallet_service_pb.js";
import { startTestService, type TestService } from "@ttip/runtime/testing";
import { wallet } from "../src/index.js";

/** Wallet on a fresh database, with internal and admin clients and the KES accounts a tip posts to besides the worker's. */
export interface LedgerFixture {
  t: TestService;
  internal: Client<typeof WalletInternalService>;
  admin: Client<typeof WalletAdminService>;
  clearing: string;
  fees: string;
}

export async function startLedger(): Promise<LedgerFixture> {
  const t = await startTestService(wallet);
  const internal = t.client(WalletInternalService);
  const admin = t.client(WalletAdminService, { subject: randomUUID(), roles: ["admin"], stepUp: true });
  const clearing = (await internal.ensureAccount({ kind: AccountKind.MPESA_CLEARING, ownerKind: OwnerKind.PLATFORM, currency: "KES" })).account!.accountId;
  const fees = (await internal.ensureAccount({ kind: AccountKind.PLATFORM_FEES, ownerKind: OwnerKind.PLATFORM, currency: "KES" })).account!.accountId;
  return { t, internal, admin, clearing, fees };
}
