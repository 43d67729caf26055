// The Daraja simulator as a process of its own: development and staging clusters
// (values-dev.yaml) run it from the simulators image, never the production one.
import { ConfigError, createLogger, loadConfig, onShutdown } from "@ttip/runtime";
import { startDarajaSimulator } from "@ttip/payment/testing";
import { common } from "./process.js";

export async function runSimulators(): Promise<void> {
  if (process.env.NODE_ENV === "production") throw new ConfigError(["NODE_ENV: simulators never run in production"]);
  const cfg = loadConfig(common);
  const logger = createLogger({ level: cfg.LOG_LEVEL, base: { role: "simulators" } });
  // Callbacks leave from the pod's own address (the default, loopback, reaches nothing in a cluster).
  const daraja = await startDarajaSimulator({ host: cfg.HOST, port: cfg.PORT, callbackSourceAddress: "0.0.0.0" });
  logger.info({ url: daraja.url }, "Daraja simulator listening");
  onShutdown(logger, [() => daraja.close()], cfg.DRAIN_TIMEOUT_MS);
}
