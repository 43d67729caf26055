// What every process of the platform shares: its listening and draining settings,
// and how a failed start ends it. Small on purpose: the simulators' bundle takes it too.
import { z } from "zod";
import { ConfigError, DEFAULT_READ_MAX_BYTES, env, StartupError } from "@ttip/runtime";

/** Listening, logging and draining settings every role reads. */
export const common = {
  LOG_LEVEL: env.logLevel(),
  HOST: z.string().default("0.0.0.0"),
  PORT: env.port(8080),
  DRAIN_TIMEOUT_MS: env.duration(10_000),
  // After SIGTERM: NOT_SERVING but still accepting this long, so balancers move clients away first.
  DRAIN_DELAY_MS: z.coerce.number().int().min(0).default(5_000),
  // 0: HTTP/2 sessions are never ended by age (one process; nothing to spread over).
  GRPC_MAX_CONNECTION_AGE_MS: z.coerce.number().int().min(0).default(0),
  // off: our processes' unary calls stay on HTTP/2, sent and served (a mesh's proxy on the port parses only HTTP).
  RPC_FRAMES: z.enum(["on", "off"]).default("on"),
  // Largest request body read; larger ones are refused unread (RESOURCE_EXHAUSTED).
  READ_MAX_BYTES: z.coerce.number().int().min(1024).default(DEFAULT_READ_MAX_BYTES),
  // Unary calls served at once, past which new ones are refused UNAVAILABLE (0: no bound); absent: the role's default.
  MAX_CALLS_IN_FLIGHT: z.coerce.number().int().min(0).optional(),
};

/** Ends the process for a failed start: 78 (EX_CONFIG) for configuration, 1 otherwise. */
export function exitOnStartError(err: unknown): never {
  if (err instanceof ConfigError) {
    console.error(err.message);
    process.exit(78); // EX_CONFIG
  }
  if (err instanceof StartupError) {
    console.error(err.message);
    process.exit(1);
  }
  console.error(err);
  process.exit(1);
}
