import { type ServiceImpl } from "@connectrpc/connect";
import { type Logger, type Pool, type Queryable, type ServiceContext, withTransaction } from "@ttip/runtime";
import { WalletAdminService, WalletInternalService, WalletService } from "@ttip/proto/ttip/wallet/v1/wallet_service_pb.js";
import type { RateSource } from "../fx.js";

/** What every wallet handler shares: the pool, a transaction on it, the exchange rates, and the logger. */
export interface WalletHandlerContext {
  pool: Pool;
  logger: Logger;
  tx: <T>(fn: (db: Queryable) => Promise<T>) => Promise<T>;
  rates: RateSource;
}

/** The context every wallet handler is given. */
export function walletHandlerContext(ctx: ServiceContext, rates: RateSource): WalletHandlerContext {
  const { pool, logger } = ctx;
  return { pool, logger, tx: (fn) => withTransaction(pool, fn), rates };
}

/** One area's RPCs, by the service they belong to; merged per service in handlers/index.ts. */
export interface WalletAreaHandlers {
  public?: Partial<ServiceImpl<typeof WalletService>>;
  admin?: Partial<ServiceImpl<typeof WalletAdminService>>;
  internal?: Partial<ServiceImpl<typeof WalletInternalService>>;
}
