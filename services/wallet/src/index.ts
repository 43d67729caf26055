import { WalletService, WalletAdminService, WalletInternalService } from "@ttip/proto/ttip/wallet/v1/wallet_service_pb.js";
import type { ServiceModule } from "@ttip/runtime";

/** The double-entry ledger: accounts, balanced immutable journal entries, holds for withdrawals, fees, limits, FX, tip pools, history, statements and the trial balance. */
export const wallet: ServiceModule = {
  name: "wallet",
  services: [WalletService, WalletAdminService, WalletInternalService],
  routes(router) {
    // No method is built yet: each answers UNIMPLEMENTED, never a fake success.
    for (const service of this.services) router.service(service, {});
  },
};
