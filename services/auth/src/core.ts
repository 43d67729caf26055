import type { RateLimiterAbstract } from "rate-limiter-flexible";
import { clockOf, rateLimitRefusal, type ServiceContext } from "@ttip/runtime";
import type { AuthConfig } from "./config.js";
import { Sealer } from "./crypto.js";
import { SigningKeys } from "./keys.js";
import type { OtpSender } from "./otp-sender.js";

/** Everything the handlers share within one running auth service. */
export interface AuthCore {
  ctx: ServiceContext;
  config: AuthConfig;
  sealer: Sealer;
  keys: SigningKeys;
  otpSender: OtpSender;
  limits: {
    otpPerPhone: RateLimiterAbstract;
    otpPerIp: RateLimiterAbstract;
    otpPerPrefix: RateLimiterAbstract;
    otpTotal: RateLimiterAbstract;
    partnerReplay: RateLimiterAbstract;
  };
}

export function createCore(ctx: ServiceContext, config: AuthConfig, otpSender: OtpSender): AuthCore {
  const sealer = new Sealer(config.keyEncryptionSecret);
  return {
    ctx,
    config,
    sealer,
    keys: new SigningKeys(ctx.pool, sealer, {
      accessTokenTtlSeconds: config.accessTokenTtlSeconds,
      maxAgeSeconds: config.signingKeyMaxAgeSeconds,
      activationSeconds: config.signingKeyActivationSeconds,
    }, clockOf(ctx)),
    otpSender,
    limits: {
      otpPerPhone: ctx.cache.rateLimiter({ keyPrefix: "auth-otp-phone", points: config.otpPerPhonePerHour, durationSeconds: 3600 }),
      otpPerIp: ctx.cache.rateLimiter({ keyPrefix: "auth-otp-ip", points: config.otpPerIpPerHour, durationSeconds: 3600 }),
      otpPerPrefix: ctx.cache.rateLimiter({ keyPrefix: "auth-otp-prefix", points: config.otpDailyPerPrefix, durationSeconds: 86_400 }),
      otpTotal: ctx.cache.rateLimiter({ keyPrefix: "auth-otp-total", points: config.otpDailyTotal, durationSeconds: 86_400 }),
      // One point per signature for twice the window: a second use is a replay.
      partnerReplay: ctx.cache.rateLimiter({
        keyPrefix: "auth-partner-replay",
        points: 1,
        durationSeconds: config.partnerReplayWindowSeconds * 2,
      }),
    },
  };
}

/**
 * Claims a cool-down on `key` (one per `seconds`), timed by the service's
 * clock so a test moves it on instead of sleeping; RESOURCE_EXHAUSTED with
 * retry-after while it runs.
 */
export async function coolDownOrRefuse(ctx: ServiceContext, key: string, seconds: number, what: string): Promise<void> {
  const leftMs = await ctx.cache.claimCooldown(key, clockOf(ctx).now(), seconds * 1000);
  if (leftMs === 0) return;
  throw rateLimitRefusal(what, leftMs);
}
