import type { ConnectRouter } from "@connectrpc/connect";
import type { ServiceContext } from "@ttip/runtime";
import { WalletAdminService, WalletInternalService, WalletService } from "@ttip/proto/ttip/wallet/v1/wallet_service_pb.js";
import type { RateSource } from "../fx.js";
import { walletHandlerContext } from "./context.js";
import { feeHandlers } from "./fees.js";
import { holdHandlers } from "./holds.js";
import { ledgerHandlers } from "./ledger.js";
import { policyHandlers } from "./policies.js";
import { poolHandlers } from "./pools.js";
import { walletHandlers } from "./wallets.js";

/** Every RPC of the wallet services: one file per area, merged here per service. */
export function registerWallet(router: ConnectRouter, ctx: ServiceContext, rates: RateSource): void {
  const h = walletHandlerContext(ctx, rates);
  const areas = [walletHandlers(h), feeHandlers(h), ledgerHandlers(h), holdHandlers(h), policyHandlers(h), poolHandlers(h)];
  router.service(WalletService, Object.assign({}, ...areas.map((a) => a.public)));
  router.service(WalletAdminService, Object.assign({}, ...areas.map((a) => a.admin)));
  router.service(WalletInternalService, Object.assign({}, ...areas.map((a) => a.internal)));
}
