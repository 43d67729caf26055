// The Daraja simulator and the OTP SMS simulator as a process of their own: development
// and staging clusters (values-dev.yaml) run it from the development image, never the
// production one. The SMS simulator lists what it "delivered" (GET /simulator/messages),
// so a person signing up on a dev cluster can read the OTP.
import { ConfigError, createLogger, env, loadConfig, onShutdown } from "@ttip/runtime";
import { startSmsSimulator } from "@ttip/auth/testing";
import { startDarajaSimulator } from "@ttip/payment/testing";
import { common } from "./process.js";

const config = { ...common, SMS_SIMULATOR_PORT: env.port(8081) };

export async function runSimulators(): Promise<void> {
  if (process.env.NODE_ENV === "production") throw new ConfigError(["NODE_ENV: simulators never run in production"]);
  const cfg = loadConfig(config);
  const logger = createLogger({ level: cfg.LOG_LEVEL, base: { role: "simulators" } });
  // Callbacks leave from the pod's own address (the default, loopback, reaches nothing in a cluster).
  const daraja = await startDarajaSimulator({ host: cfg.HOST, port: cfg.PORT, callbackSourceAddress: "0.0.0.0" });
  const sms = await startSmsSimulator({ host: cfg.HOST, port: cfg.SMS_SIMULATOR_PORT });
  logger.info({ url: daraja.url, sms: sms.url }, "Daraja and SMS simulators listening");
  onShutdown(logger, [() => daraja.close(), () => sms.close()], cfg.DRAIN_TIMEOUT_MS);
}
