// What auth refuses to start with in production.
import assert from "node:assert/strict";
import { test } from "node:test";
import { loadAuthConfig } from "../src/config.js";

const production = { NODE_ENV: "production", AUTH_KEY_ENCRYPTION_SECRET: "a-production-key-encryption-secret-0123456789" };

test("production sends OTPs by SMS with its own account: the sandbox's username or key is refused by name; its own starts", () => {
  const sms = { ...production, AUTH_OTP_SENDER: "sms", AUTH_SMS_URL: "https://api.africastalking.com" };
  assert.throws(() => loadAuthConfig(sms), /AUTH_SMS_USERNAME, AUTH_SMS_API_KEY: production sends OTPs by SMS with its own account/);
  assert.throws(() => loadAuthConfig({ ...sms, AUTH_SMS_USERNAME: "ttip" }), /AUTH_SMS_API_KEY/);
  assert.equal(loadAuthConfig({ ...sms, AUTH_SMS_USERNAME: "ttip", AUTH_SMS_API_KEY: "at-live-key" }).production, true);
  assert.equal(loadAuthConfig({ ...production, AUTH_OTP_SENDER: "notification" }).production, true, "through notification: no SMS account here");
  assert.doesNotThrow(() => loadAuthConfig({ AUTH_OTP_SENDER: "sms" }), "development: the simulator's sandbox account");
});
