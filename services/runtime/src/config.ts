import { z } from "zod";

/** A configuration problem, reported before anything starts. */
export class ConfigError extends Error {
  constructor(readonly problems: string[]) {
    super(`Invalid configuration:\n${problems.map((p) => `  - ${p}`).join("\n")}`);
    this.name = "ConfigError";
  }
}

/** Environment variables as a service reads them: process.env in a cluster, a record of its own in embedded runs and tests. */
export type Env = Readonly<Record<string, string | undefined>>;

/**
 * What every service factory (create<Name>Module) takes: where its
 * configuration comes from. Each parses it once, at its first use, and never
 * writes it back; values known only after start (the service's own URL) are
 * passed to the factory as functions.
 */
export interface ModuleOptions {
  /** Default: process.env. */
  env?: Env;
}

/**
 * Parses environment variables with a zod object schema whose keys are the
 * variable names. Every problem is reported at once, naming the variable, so a
 * misconfigured pod fails at start with one readable message.
 */
export function loadConfig<S extends z.ZodRawShape>(
  shape: S,
  env: Env = process.env,
): z.infer<z.ZodObject<S>> {
  const result = z.object(shape).safeParse(env);
  if (result.success) return result.data;
  throw new ConfigError(
    result.error.issues.map((issue) => {
      const name = issue.path.join(".");
      const given = env[name];
      return given === undefined || given === ""
        ? `${name}: is required (${issue.message})`
        : `${name}: ${issue.message}`;
    }),
  );
}

/** Reusable variable parsers. */
export const env = {
  port: (fallback?: number) => {
    const p = z.coerce.number().int().min(0).max(65535);
    return fallback === undefined ? p : p.default(fallback);
  },
  url: (protocols: string[]) =>
    z
      .string({ required_error: `a ${protocols.join(" or ")} URL` })
      .url(`must be a URL (${protocols.join(" or ")})`)
      .refine((v) => protocols.some((p) => v.startsWith(`${p}:`)), `must start with ${protocols.map((p) => `${p}://`).join(" or ")}`),
  flag: (fallback: boolean) =>
    z
      .enum(["true", "false", "1", "0"], { message: "must be true or false" })
      .default(fallback ? "true" : "false")
      .transform((v) => v === "true" || v === "1"),
  logLevel: () => z.enum(["trace", "debug", "info", "warn", "error", "fatal", "silent"]).default("info"),
  duration: (fallbackMs: number) => z.coerce.number().int().positive("must be a positive number of milliseconds").default(fallbackMs),
  /** A comma-separated list: entries trimmed, empty ones dropped. */
  list: (fallback = "") => z.string().default(fallback).transform((v) => v.split(",").map((e) => e.trim()).filter(Boolean)),
};
