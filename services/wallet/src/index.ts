import { fileURLToPath } from "node:url";
import { z } from "zod";
import { WalletService, WalletAdminService, WalletInternalService } from "@ttip/proto/ttip/wallet/v1/wallet_service_pb.js";
import { loadConfig, type ServiceModule } from "@ttip/runtime";
import { DEFAULT_FX_RATES, FixedRateSource } from "./fx.js";
import { registerWallet } from "./handlers.js";

export { FixedRateSource, type RateSource } from "./fx.js";

/** The double-entry ledger: accounts, balanced immutable journal entries, holds for withdrawals, fees, limits, FX, tip pools, history, statements and the trial balance. */
export const wallet: ServiceModule = {
  name: "wallet",
  migrations: fileURLToPath(new URL("../migrations", import.meta.url)),
  services: [WalletService, WalletAdminService, WalletInternalService],
  routes(router, ctx) {
    const cfg = loadConfig({
      // KES per unit of each currency; a live rate feed implements RateSource instead.
      WALLET_FX_RATES: z.string().default(DEFAULT_FX_RATES),
      WALLET_FX_SOURCE: z.string().default("configured"),
    });
    registerWallet(router, ctx, new FixedRateSource(cfg.WALLET_FX_RATES, cfg.WALLET_FX_SOURCE));
  },
};
