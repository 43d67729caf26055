import { fileURLToPath } from "node:url";
import { z } from "zod";
import { WalletService, WalletAdminService, WalletInternalService } from "@ttip/proto/ttip/wallet/v1/wallet_service_pb.js";
import { loadConfig, type ModuleOptions, type ServiceModule } from "@ttip/runtime";
import { DEFAULT_FX_RATES, FixedRateSource } from "./fx.js";
import { registerWallet } from "./handlers/index.js";

export { FixedRateSource, type RateSource } from "./fx.js";

export const walletConfigShape = {
  // KES per unit of each currency; a live rate feed implements RateSource instead.
  WALLET_FX_RATES: z.string().default(DEFAULT_FX_RATES),
  WALLET_FX_SOURCE: z.string().default("configured"),
};

/** The double-entry ledger: accounts, balanced immutable journal entries, holds for withdrawals, fees, limits, FX, tip pools, history, statements and the trial balance. */
export function createWalletModule(options: ModuleOptions = {}): ServiceModule {
  let rates: FixedRateSource | undefined;
  const ratesOf = () => {
    if (!rates) {
      const cfg = loadConfig(walletConfigShape, options.env);
      rates = new FixedRateSource(cfg.WALLET_FX_RATES, cfg.WALLET_FX_SOURCE);
    }
    return rates;
  };
  return {
    name: "wallet",
    migrations: fileURLToPath(new URL("../migrations", import.meta.url)),
    services: [WalletService, WalletAdminService, WalletInternalService],
    routes(router, ctx) {
      registerWallet(router, ctx, ratesOf());
    },
  };
}

export const wallet: ServiceModule = createWalletModule();
