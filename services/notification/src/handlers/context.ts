import { type ServiceContext } from "@ttip/runtime";

/** What every notification handler shares: the service's context (pool, bus, cache, metrics, peers, clock). */
export type NotificationHandlerContext = ServiceContext;
